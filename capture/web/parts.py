# -*- test-case-name: tests.test_messagepage -*-
"""
A stored message's parts read back for the API and the message page: an
attachment's bytes (cut from the raw message at the offsets found at
ingest, never re-parsed), C{cid:} images inlined, a plain-text rendering of
an HTML-only message, and file names safe to put in a header.
"""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

from twisted.internet.threads import deferToThread

from capture.mime import Attachment, Part, decodeBody, findPart
from capture.store.interface import IMessageStore
from capture.store.model import Bodies, Copy

_SAFE_FILENAME_RE = re.compile(r"[^A-Za-z0-9._ -]")
# Blocks (a paragraph of their own), elements that end a line, and those
# whose content is not text.
_BLOCKS = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol",
                     "blockquote", "pre", "hr", "dl", "section", "article", "header", "footer"})
_LINES = frozenset({"br", "li", "tr", "dt", "dd"})
_HIDDEN = frozenset({"script", "style", "head", "title", "template"})
_BLANKS_RE = re.compile(r"\s+")
_LINE_ENDS_RE = re.compile(r" *\n *")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
# HTML longer than this is read as text on a thread: the parser costs
# about 1 s a MiB of Python, which the reactor must not wait for.
_THREAD_ABOVE = 16 * 1024


class _TextOfHTML(HTMLParser):
    """
    HTML read as text: tags dropped, entities decoded, a line break where a
    block ends, each link followed by its target in parentheses.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        # The target of each open link, and where its text begins.
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "a":
            href = dict(attrs).get("href")
            self._links.append(((href or "").strip() or None, len(self.parts)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS or tag in _LINES:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag in _LINES:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "a" and self._links:
            self._endLink()

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            # Whitespace in HTML source is a space, as a browser shows it.
            self.parts.append(_BLANKS_RE.sub(" ", data))

    def close(self) -> None:
        super().close()
        while self._links:
            self._endLink()

    def _endLink(self) -> None:
        href, start = self._links.pop()
        if href is None or href.startswith("#"):
            return
        shown = "".join(self.parts[start:]).strip()
        target = href[len("mailto:"):] if href.lower().startswith("mailto:") else href
        if shown != target and shown != href:
            # "Reset (https://example.com/reset?t=1)"; a link that shows
            # its own address keeps it once.
            self.parts.append(f" ({href})" if shown else f" {href} ")


def plainText(htmlText: str) -> str:
    """
    A plain-text rendering of an HTML-only message, as Mailsac's C{/text}
    makes one, keeping each link's target after its text in parentheses
    (C{Reset your password (https://example.com/reset?t=1)}): test scripts
    take reset and sign-up links from it.
    """
    parser = _TextOfHTML()
    parser.feed(htmlText)
    parser.close()
    text = _LINE_ENDS_RE.sub("\n", "".join(parser.parts).replace("  ", " "))
    # A block ends a line; blocks in a row leave at most one blank line.
    return _BLANK_LINES_RE.sub("\n\n", text).strip() + "\n"


async def textOf(bodies: Bodies) -> str:
    """
    A message's text: its text part, else a plain rendering of its HTML
    part (on a thread when it is long), else nothing.
    """
    if bodies.text is not None:
        return bodies.text
    if bodies.html is None:
        return ""
    if len(bodies.html) > _THREAD_ABOVE:
        return await deferToThread(plainText, bodies.html)
    return plainText(bodies.html)


def safeFilename(attachment: Attachment) -> str:
    """
    The attachment's file name with everything but letters, digits, dots,
    dashes, underscores and spaces replaced, so it can be quoted in a
    C{Content-Disposition} header as it is (its md5 when it has none).
    """
    return _SAFE_FILENAME_RE.sub("_", attachment.filename or attachment.md5)


def partData(raw: bytes, structure: Part, attachment: Attachment) -> bytes | None:
    """
    The decoded bytes of one attachment of the message C{raw}, or L{None}
    when its part is not in the stored structure.
    """
    part = findPart(structure, attachment.part)
    if part is None:
        return None
    return bytes(decodeBody(raw[part.bodyStart : part.end], part.encoding))


async def attachmentData(store: IMessageStore, copy: Copy, attachment: Attachment) -> bytes | None:
    """
    L{partData} of one attachment of a stored copy: two reads (the part
    tree, the raw bytes).
    """
    structure = Part.fromJSON((await store.getBodies(copy)).structure)
    return partData(await store.getRaw(copy), structure, attachment)


async def inlineImages(store: IMessageStore, copy: Copy, htmlText: str, bodies: Bodies) -> str:
    """
    C{htmlText} with each C{cid:} reference to an attachment of the message
    replaced by a C{data:} URI of its bytes, so that the HTML shows whole
    on its own (a sandboxed frame has no origin from which to fetch them).
    """
    inline = [a for a in copy.message.attachments if a.contentId]
    if not inline or "cid:" not in htmlText.lower():
        return htmlText
    structure = Part.fromJSON(bodies.structure)
    raw = await store.getRaw(copy)
    for attachment in inline:
        data = partData(raw, structure, attachment)
        if data is None:
            continue
        uri = f"data:{attachment.contentType};base64,{base64.b64encode(data).decode()}"
        cid = (attachment.contentId or "").strip("<>")
        htmlText = re.sub(
            r"cid:" + re.escape(cid) + r"(?=[\"')\s>])",
            lambda match, uri=uri: uri,  # type: ignore[misc]
            htmlText,
            flags=re.IGNORECASE,
        )
    return htmlText
