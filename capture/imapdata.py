# -*- test-case-name: tests.test_imapdata -*-
"""
IMAP's ENVELOPE and BODYSTRUCTURE of a message, as ready protocol text.

Both are computed once, at ingest, from the raw bytes and the part tree
L{capture.mime.parseMessage} found, and stored beside the message; a FETCH
of ten thousand envelopes then concatenates stored strings instead of
re-reading headers (Twisted's own C{getEnvelope}/C{getBodyStructure} cost
over a second for that, gap I2.5).

The text is plain ASCII whatever the message holds: a value with 8-bit
characters is sent as an RFC 2047 encoded word (gap I1, where Twisted drops
the connection), and every value is quoted here, so an odd Content-Type
cannot break the structure (gap I3).
"""

from __future__ import annotations

import base64

from capture.addresslist import parseAddressList
from capture.mime import Part, headerBlock

NIL = "NIL"


def quote(value: str | None) -> str:
    """
    An IMAP nstring for C{value}: C{NIL}, a quoted string, or (for
    non-ASCII text) a quoted RFC 2047 encoded word.
    """
    if value is None:
        return NIL
    if not value.isascii():
        try:
            octets = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            octets = value.encode("utf-8", "replace")
        encoded = base64.b64encode(octets).decode("ascii")
        return f'"=?utf-8?b?{encoded}?="'
    if "\r" in value or "\n" in value or "\0" in value:
        value = value.replace("\r", "").replace("\n", " ").replace("\0", "")
    if '"' in value or "\\" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def _addressList(values: list[str]) -> str:
    """
    An ENVELOPE address list: C{((name adl mailbox host) ...)}, group
    markers included, or C{NIL}.
    """
    items = []
    for value in values:
        for a in parseAddressList(value):
            items.append(
                f"({quote(a.name)} {quote(a.adl)} {quote(a.mailbox)} {quote(a.host)})"
            )
    if not items:
        return NIL
    return "(" + "".join(items) + ")"


def envelope(buf: bytes, start: int = 0) -> str:
    """
    The ENVELOPE of the message whose header block starts at C{start}.
    """
    fields, _ = headerBlock(buf, start)
    found: dict[str, list[str]] = {}
    for name, value in fields:
        found.setdefault(name.lower(), []).append(value)

    def first(name: str) -> str | None:
        values = found.get(name)
        return values[0] if values else None

    sender = _addressList(found.get("from", []))

    def orFrom(name: str) -> str:
        text = _addressList(found.get(name, []))
        return sender if text == NIL else text

    # RFC 3501 7.4.2: an absent Sender or Reply-To is From, and so is an
    # empty one ("Sender:"), as Dovecot reads it.
    return "({} {} {} {} {} {} {} {} {} {})".format(
        quote(first("date")),
        quote(first("subject")),
        sender,
        orFrom("sender"),
        orFrom("reply-to"),
        _addressList(found.get("to", [])),
        _addressList(found.get("cc", [])),
        _addressList(found.get("bcc", [])),
        quote(first("in-reply-to")),
        quote(first("message-id")),
    )


def _params(params: tuple[tuple[str, str], ...]) -> str:
    if not params:
        return NIL
    return "(" + " ".join(f"{quote(k)} {quote(v)}" for k, v in params) + ")"


def _disposition(part: Part) -> str:
    if part.disposition is None:
        return NIL
    return f"({quote(part.disposition)} {_params(part.dispositionParams)})"


def bodyStructure(buf: bytes, part: Part, extended: bool = True) -> str:
    """
    The BODYSTRUCTURE (or, with C{extended} false, the BODY) of C{part}.
    """
    if part.mainType == "multipart" and part.children:
        children = "".join(bodyStructure(buf, c, extended) for c in part.children)
        text = f"({children} {quote(part.subType)}"
        if extended:
            text += f" {_params(part.params)} {_disposition(part)} {quote(part.language)} NIL"
        return text + ")"
    fields = [
        quote(part.mainType),
        quote(part.subType),
        _params(part.params),
        quote(part.contentId),
        quote(part.description),
        quote((part.encoding or "7bit").upper()),
        str(part.end - part.bodyStart),
    ]
    if part.mainType == "message" and part.subType == "rfc822" and part.children:
        inner = part.children[0]
        fields.append(envelope(buf, inner.headerStart))
        fields.append(bodyStructure(buf, inner, extended))
        fields.append(str(part.lines))
    elif part.mainType == "text":
        fields.append(str(part.lines))
    if extended:
        # The MD5 field is the part's Content-MD5 header, which Capture
        # does not keep: NIL.
        fields += [NIL, _disposition(part), quote(part.language), NIL]
    return "(" + " ".join(fields) + ")"
