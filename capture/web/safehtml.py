# -*- test-case-name: tests.test_messagepage -*-
"""
A message's HTML made safe to show in the message page's sandboxed frame.

Three layers, each enough on its own against scripts: the frame's
C{sandbox} attribute (no scripts, an opaque origin), the body document's
own Content-Security-Policy (L{bodyPolicy}), and this sanitizer (nh3), which
keeps formatting, inline styles and images and drops everything that runs
or navigates: scripts, event handlers, C{javascript:} and C{data:} links,
C{<meta refresh>}, C{<base>}, forms, SVG, C{<object>}, C{<embed>} and
frames.

Until the reader asks for remote content, nothing remote may load: the
policy allows images and fonts only from C{data:} URIs, and the sanitizer
also removes remote image sources and every CSS construct that fetches
(C{url()}, C{image-set()}, C{@import}), so a tracking pixel is not even in
the document.  With remote content allowed, images and styles may come from
anywhere; scripts and same-origin access stay off.
"""

from __future__ import annotations

import re

import attrs
import nh3

# Presentational attributes HTML mail leans on (table layouts), none of
# which holds a URL or runs anything.
_LAYOUT = {"align", "valign", "width", "height", "bgcolor", "border", "cellpadding",
           "cellspacing", "colspan", "rowspan", "nowrap", "dir", "lang", "title"}
_TAGS = (set(nh3.ALLOWED_TAGS) - {"area", "map"}) | {"style", "font", "center", "big"}
_ATTRIBUTES = {
    **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": _LAYOUT | {"style", "class", "id"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "align", "border"},
    "font": {"color", "face", "size"},
}
_URL_SCHEMES = {"http", "https", "mailto", "data"}
_INLINE_IMAGE_RE = re.compile(r"data:image/(png|jpeg|gif|webp);", re.IGNORECASE)
_REMOTE_RE = re.compile(r"\s*https?:", re.IGNORECASE)
# CSS that fetches: url() and the image functions that take a bare string,
# and @import; a backslash could spell any of them as an escape.
_CSS_FETCH_RE = re.compile(
    r"(?:url|image-set|-webkit-image-set|image|cross-fade|src)\s*\(|@import|\\",
    re.IGNORECASE,
)
_CSS_FUNCTION_RE = re.compile(
    r"(?:url|image-set|-webkit-image-set|image|cross-fade|src)\s*\((?:[^()]|\([^()]*\))*\)?",
    re.IGNORECASE,
)
_CSS_IMPORT_RE = re.compile(r"@import\b[^;]*;?", re.IGNORECASE)
_STYLE_ELEMENT_RE = re.compile(r"(<style\b[^>]*>)(.*?)(</style>)", re.IGNORECASE | re.DOTALL)

# The body document's policy: no scripts (the C{sandbox} directive applies
# the frame's sandbox even to the document opened on its own), nothing
# remote, no form submission, framed only by Capture's own pages.
BODY_POLICY = (
    b"sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    b"font-src data:; form-action 'none'; frame-ancestors 'self'"
)
# The same once the reader asked for remote content: images, styles and
# fonts from anywhere (links open in a new window, outside the sandbox).
BODY_POLICY_REMOTE = (
    b"sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    b"style-src 'unsafe-inline' *; img-src * data:; font-src * data:; "
    b"form-action 'none'; frame-ancestors 'self'"
)


@attrs.frozen
class SafeHTML:
    """
    A sanitized body.

    @ivar html: The document to serve.
    @ivar remoteBlocked: Whether remote content was held back, or links
        that only open once it is allowed (the page then offers to load
        it).
    @ivar links: The http(s) targets of the document's links, in order,
        each once.
    """

    html: str
    remoteBlocked: bool
    links: tuple[str, ...] = ()


def bodyPolicy(remote: bool) -> bytes:
    """
    The Content-Security-Policy of a body document.
    """
    return BODY_POLICY_REMOTE if remote else BODY_POLICY


def _fetchFree(css: str) -> str | None:
    """
    The declarations of an inline style that fetch nothing, or L{None}
    when none is left.
    """
    kept = [d for d in css.split(";") if d.strip() and not _CSS_FETCH_RE.search(d)]
    return ";".join(kept) or None


def _fetchFreeSheet(css: str) -> str:
    """
    A style sheet without what would fetch: C{@import} rules go, and each
    fetching function becomes C{none} (the declaration then shows nothing
    or is dropped by the browser); a sheet with escapes, which could spell
    C{url(} in disguise, or anything left that looks like a fetch, is
    dropped whole.
    """
    if "\\" in css:
        return ""
    css = _CSS_FUNCTION_RE.sub("none", _CSS_IMPORT_RE.sub("", css))
    return "" if _CSS_FETCH_RE.search(css) else css


def clean(source: str, remote: bool = False) -> SafeHTML:
    """
    Sanitize a message's HTML for the body frame.

    @param remote: Whether the reader asked for remote content: remote
        image sources and CSS that fetches are kept (the frame's policy
        then allows them).
    """
    blocked = False
    links: dict[str, None] = {}

    def attribute(tag: str, name: str, value: str) -> str | None:
        nonlocal blocked
        if name == "style":
            if remote:
                return value
            kept = _fetchFree(value)
            blocked = blocked or kept != value
            return kept
        if tag == "a" and name == "href":
            if _REMOTE_RE.match(value):
                # A link opens only once popups are allowed, with remote
                # content.
                blocked = True
                links.setdefault(value.strip(), None)
                return value
            return value if value.lower().startswith("mailto:") else None
        if tag == "img" and name == "src":
            if _INLINE_IMAGE_RE.match(value):
                return value
            if _REMOTE_RE.match(value):
                blocked = True
                return value if remote else None
            return None
        return value

    cleaned = nh3.clean(
        source,
        tags=_TAGS,
        clean_content_tags={"script", "noscript", "title", "svg", "math", "object", "embed",
                            "iframe", "frame", "frameset", "template", "applet"},
        attributes=_ATTRIBUTES,
        attribute_filter=attribute,
        url_schemes=_URL_SCHEMES,
        url_relative="deny",
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    if "<style" in cleaned:
        def sheet(match: re.Match[str]) -> str:
            nonlocal blocked
            css = match.group(2)
            if remote:
                return match.group(0)
            safe = _fetchFreeSheet(css)
            blocked = blocked or safe != css
            return match.group(1) + safe + match.group(3)

        cleaned = _STYLE_ELEMENT_RE.sub(sheet, cleaned)
    document = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        "<style>html{color-scheme:light;background:#fff;color:#000}body{margin:0;padding:12px;font-family:system-ui,sans-serif;"
        "overflow-wrap:anywhere}img{max-width:100%;height:auto}</style>"
        f"</head><body>{cleaned}</body></html>"
    )
    return SafeHTML(document, blocked, tuple(links))
