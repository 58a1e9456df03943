# -*- test-case-name: tests.test_addresses -*-
"""
What an address is, and which inbox it files into: the one rule shared by
SMTP (which refuses, at RCPT, what no reader could open) and every reader
(the API, the pages, the admin command, POP3 and IMAP logins, the live
streams, owned addresses and custom domains).

An address is C{local@domain}:

  - the local part is 1 to 64 octets of UTF-8 (RFC 5321 4.5.3.1.1, kept by
    RFC 6531), with no space, no control or format character, no
    unassigned code point, and none of C{@ / \\ " < >}: path characters
    could walk out of a URL segment or a mailbox name.  A quoted local part
    is taken only when its content is one of these without the quotes
    (C{"john"} is C{john}); one that needs them (spaces, escapes) is not;
  - the domain is a host name: LDH labels of 1 to 63 octets, 253 octets in
    all, as A-labels; a label may also be an internationalized U-label or
    an C{xn--} A-label that IDNA 2008 (with UTS 46 mapping) accepts.
    Address literals (C{[192.0.2.1]}) are not taken.

The canonical inbox name (what the store keeps and every reader looks up):
the local part lower-cased in NFC, C{+tag} removed, and the domain
lower-cased as U-labels, so C{info@exämple.test}, C{INFO@EXÄMPLE.test} and
C{info@xn--exmple-cua.test} are one inbox.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import idna

_LOCAL_LIMIT = 64
_DOMAIN_LIMIT = 253
# What an ASCII local part may hold: printable ASCII but the characters
# named in the module docstring.
_ASCII_LOCAL_RE = re.compile(r"[!#-.0-;=?A-\[\]-~]+")
_LDH_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_LDH_RE = re.compile(rf"(?=.{{1,{_DOMAIN_LIMIT}}}$){_LDH_LABEL}(?:\.{_LDH_LABEL})*")
# Unicode categories never in an address: controls, format characters
# (zero-width and bidi controls among them), surrogates, private use,
# unassigned, and separators (spaces).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
_REFUSED_LOCAL = frozenset('@/\\"<>')


def _localPart(local: str) -> str | None:
    """
    The canonical form of a local part (NFC, lower case), or L{None} when
    it is not one.
    """
    if local.isascii():
        if not _ASCII_LOCAL_RE.fullmatch(local) or len(local) > _LOCAL_LIMIT:
            return None
        return local.lower()
    # Lower-casing may undo NFC (and NFC may allow more lower-casing).
    local = unicodedata.normalize("NFC", unicodedata.normalize("NFC", local).lower())
    for char in local:
        if char in _REFUSED_LOCAL or (
            not char.isascii() and unicodedata.category(char) in _REFUSED_CATEGORIES
        ) or (char.isascii() and not ("!" <= char <= "~")):
            return None
    # No surrogate is left (category Cs), so this encodes.
    if not local or len(local.encode("utf-8")) > _LOCAL_LIMIT:
        return None
    return local


@functools.lru_cache(maxsize=4096)
def canonicalDomain(text: str) -> str | None:
    """
    The canonical form of a host name: lower case, internationalized
    labels as U-labels; L{None} when C{text} is not a host name.
    """
    lowered = text.lower()
    if lowered.isascii() and "xn--" not in lowered:
        return lowered if _LDH_RE.fullmatch(lowered) else None
    # UTS 46 would silently drop some of these (a zero-width space): a name
    # that only looks like another is not taken as it.
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in text if not c.isascii()):
        return None
    try:
        # UTS 46 maps case and compatibility forms (full-width letters)
        # the way browsers and mail clients do; the A-label form is what
        # the length limits apply to.
        alabels = idna.encode(text, uts46=True)
        if len(alabels) > _DOMAIN_LIMIT:
            return None
        ulabels: str = idna.decode(alabels)
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    # UTS 46 keeps an empty root label ("example.test."): not a host name
    # here, as on the fast path.
    if "" in ulabels.split("."):
        return None
    return ulabels


def canonicalAddress(text: str) -> str | None:
    """
    C{text} as the store names it (local part lower case in NFC, domain as
    lower-case U-labels), C{+tag} kept; L{None} when it is not an address.
    """
    local, at, domain = text.rpartition("@")
    if not at:
        return None
    if len(local) > 2 and local[0] == local[-1] == '"' and '"' not in local[1:-1]:
        # A quoted local part whose content needs no quotes names the same
        # mailbox unquoted (RFC 5322 3.4.1); any other is refused below.
        local = local[1:-1]
    canonicalLocal = _localPart(local)
    if canonicalLocal is None:
        return None
    canonical = canonicalDomain(domain)
    if canonical is None:
        return None
    return f"{canonicalLocal}@{canonical}"


def isAddress(text: str) -> bool:
    """
    Whether C{text} is an address (SMTP files it, every reader opens it).
    """
    return canonicalAddress(text) is not None


def inboxOf(text: str) -> str | None:
    """
    The inbox C{text} files into: its canonical form with any C{+tag} of
    the local part removed (plus-addressing); L{None} when it is not an
    address.
    """
    canonical = canonicalAddress(text)
    if canonical is None:
        return None
    local, _, domain = canonical.rpartition("@")
    if not local.startswith("+"):
        local = local.split("+", 1)[0]
    return f"{local}@{domain}"


def baseInbox(address: str) -> str:
    """
    L{inboxOf} for an address already known to be one.

    @raise ValueError: When it is not an address.
    """
    inbox = inboxOf(address)
    if inbox is None:
        raise ValueError(f"{address!r} is not an address")
    return inbox


def customDomain(text: str) -> str | None:
    """
    The canonical form of a name a custom domain may have (a host name of
    at least two labels), or L{None}.
    """
    canonical = canonicalDomain(text)
    if canonical is None or "." not in canonical:
        return None
    return canonical


def isDomain(text: str) -> bool:
    """
    Whether C{text} may name a custom domain.
    """
    return customDomain(text) is not None


def shown(text: str, limit: int = 80) -> bytes:
    """
    C{text} as ASCII safe to put in a protocol reply or a log line: every
    character outside printable ASCII as a C{\\x}/C{\\u} escape (so a NUL or
    CR is never echoed raw), cut to about C{limit} characters.
    """
    escaped = "".join(
        c if " " <= c <= "~" and c != "\\" else ascii(c)[1:-1] for c in text[: limit + 1]
    )
    if len(text) > limit:
        escaped = escaped[:limit] + "..."
    return escaped.encode("ascii")
