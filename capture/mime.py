# -*- test-case-name: tests.test_mime -*-
"""
Parse a message once, at ingest, into everything a reader will need.

The HTTP API needs the subject, addresses, text and HTML bodies, links and
attachment digests; IMAP needs the MIME part tree with the byte offsets of
every part (BODYSTRUCTURE, C{BODY[1.2]}, partial fetches).  All of it is
computed here, from the bytes exactly as stored, so that reading a message
never parses MIME again.

The part tree is found by scanning for boundary delimiters in the raw bytes,
not by Python's C{email} package, because the package does not keep offsets.
The C{email} package (with the fast C{compat32} policy) still parses each
part's header block and decodes leaf bodies.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from email.header import decode_header, make_header
from email.message import Message
from email.policy import Compat32
from email.utils import getaddresses
from typing import Any

import attrs


class _RawHeaders(Compat32):
    """
    The fast C{compat32} policy, minus its habit of turning a header with
    8-bit octets into a C{Header} object that loses them: values stay text,
    with raw octets as surrogate escapes, and L{decodeHeaderValue} reads them
    as UTF-8.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW_POLICY = _RawHeaders()


class _Headers(Message):
    """
    A header-only L{Message} that finds a header by a dictionary lookup
    instead of scanning (and lower-casing) every header on each C{get}:
    parsing asks for a dozen headers per part, on the ingest path.
    """

    def __init__(self) -> None:
        super().__init__(policy=_RAW_POLICY)
        self._index: dict[str, list[str]] = {}

    def add(self, name: str, value: str) -> None:
        self[name] = value
        self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str, failobj: Any = None) -> Any:
        found = self._index.get(name.lower())
        return found[0] if found else failobj

    def get_all(self, name: str, failobj: Any = None) -> Any:
        return list(self._index.get(name.lower(), ())) or failobj

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index
# What a body is read from: the stored message's bytes, or a view of them.
_Octets = bytes | bytearray | memoryview
_MAX_DEPTH = 20
_MAX_LINKS = 500
_ENCODED_WORD_RE = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_ADJACENT_WORDS_RE = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?)")
# The start of a header line: a field name and its colon.
HEADER_LINE_RE = re.compile(rb"[!-9;-~]+[ \t]*:")
_PARAM_PAIR_RE = re.compile(
    r';\s*([A-Za-z0-9!#$%&+.^_`|~-]+)\s*=\s*(?:"([^"\\\r\n]*)"|([^;"\s\\*]*))'
)
_SIMPLE_PARAMS_RE = re.compile(
    r'[^;\s"]*\s*(?:;\s*[A-Za-z0-9!#$%&+.^_`|~-]+\s*=\s*(?:"[^"\\\r\n]*"|[^;"\s\\*]*)\s*)*;?\s*'
)
_FOLD_RE = re.compile(r"\r?\n[ \t]")
_UNFOLD_RE = re.compile(r"\r?\n(?=[ \t])")
_SIMPLE_ADDRESS_RE = re.compile(
    r"\s*(?:([A-Za-z0-9 .'_-]*?)\s*<)?([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+)(?(1)>|)\s*"
)
_LINK_RE = re.compile(r"""https?://[^\s<>"'`{}|\\^\[\]]+""", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?)'\""


@attrs.frozen
class MailAddress:
    """
    One address of a header, as Mailsac's C{EmailRecipient}.
    """

    address: str
    name: str


@attrs.frozen
class Attachment:
    """
    One attachment: a leaf part that is not the message's text or HTML body.

    @ivar part: The IMAP part specifier (C{"2"}, C{"1.3"}).
    @ivar size: Decoded size in octets.
    """

    md5: str
    filename: str | None
    contentType: str
    contentId: str | None
    size: int
    part: str


@attrs.frozen
class Part:
    """
    One node of the MIME tree, with offsets into the stored raw message.

    @ivar headerStart: Offset of the part's first header line.
    @ivar bodyStart: Offset of the first octet of the body.
    @ivar end: Offset just past the body.
    @ivar lines: Number of lines of the body (BODYSTRUCTURE needs it for
        C{text/*} and C{message/rfc822}).
    @ivar children: Sub-parts of a multipart, or the one enclosed message of a
        C{message/rfc822} part.
    """

    mainType: str
    subType: str
    params: tuple[tuple[str, str], ...]
    contentId: str | None
    description: str | None
    encoding: str | None
    disposition: str | None
    dispositionParams: tuple[tuple[str, str], ...]
    language: str | None
    md5: str | None
    headerStart: int
    bodyStart: int
    end: int
    lines: int
    children: tuple[Part, ...] = ()

    def toJSON(self) -> dict[str, Any]:
        """
        A compact JSON-able form, stored beside the message.
        """
        return {
            "t": [self.mainType, self.subType],
            "p": [list(p) for p in self.params],
            "id": self.contentId,
            "desc": self.description,
            "enc": self.encoding,
            "disp": self.disposition,
            "dp": [list(p) for p in self.dispositionParams],
            "lang": self.language,
            "md5": self.md5,
            "o": [self.headerStart, self.bodyStart, self.end, self.lines],
            "c": [c.toJSON() for c in self.children],
        }

    @classmethod
    def fromJSON(cls, data: dict[str, Any]) -> Part:
        """
        The inverse of L{toJSON}.
        """
        headerStart, bodyStart, end, lines = data["o"]
        return cls(
            mainType=data["t"][0],
            subType=data["t"][1],
            params=tuple((k, v) for k, v in data["p"]),
            contentId=data["id"],
            description=data["desc"],
            encoding=data["enc"],
            disposition=data["disp"],
            dispositionParams=tuple((k, v) for k, v in data["dp"]),
            language=data["lang"],
            md5=data["md5"],
            headerStart=headerStart,
            bodyStart=bodyStart,
            end=end,
            lines=lines,
            children=tuple(cls.fromJSON(c) for c in data["c"]),
        )


@attrs.frozen
class ParsedMessage:
    """
    Everything parsed from one message at ingest.

    @ivar headers: Every top-level header in order, as C{(name, value)} with
        the value unfolded and RFC 2047-decoded.
    """

    subject: str
    fromAddresses: tuple[MailAddress, ...]
    to: tuple[MailAddress, ...]
    cc: tuple[MailAddress, ...]
    bcc: tuple[MailAddress, ...]
    date: str | None
    messageId: str | None
    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    links: tuple[str, ...]
    structure: Part


def decodeHeaderValue(value: str) -> str:
    """
    Turn a header value as C{compat32} gives it into readable text: unfold it,
    decode RFC 2047 encoded words, and read raw 8-bit octets as UTF-8 (they
    arrive as surrogate escapes).
    """
    value = _fromSurrogates(value)
    if "\n" in value:
        value = _FOLD_RE.sub(" ", value)
    value = value.strip()
    if "=?" not in value:
        return value
    # Adjacent encoded words are joined without the space between them
    # (RFC 2047 6.2); each word is decoded on its own so that raw UTF-8 text
    # beside them survives.
    value = _ADJACENT_WORDS_RE.sub(r"\1", value)
    return _ENCODED_WORD_RE.sub(_decodeWord, value)


def _decodeWord(match: re.Match[str]) -> str:
    try:
        return str(make_header(decode_header(match.group(0))))
    except (LookupError, ValueError, UnicodeError, AssertionError):
        return match.group(0)


def _fromSurrogates(value: str) -> str:
    """
    Text safe to store: raw 8-bit octets (surrogate escapes) read as UTF-8,
    and any other lone surrogate (a codec such as C{unicode_escape} can make
    them) replaced, since SQLite and JSON take only valid UTF-8.
    """
    if value.isascii():
        # Constant time, and no copy: a message body may be megabytes.
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")


def splitAddresses(values: list[str]) -> list[tuple[str, str]]:
    """
    The C{(display name as written, address)} pairs of address header
    values; an empty list for a list the email package cannot read.
    """
    if len(values) == 1:
        # Most headers hold one plain address; the email package's address
        # parser is thorough but slow, so it only sees the others.
        simple = _SIMPLE_ADDRESS_RE.fullmatch(values[0])
        if simple:
            return [(" ".join((simple.group(1) or "").split()), simple.group(2))]
    try:
        return getaddresses([_fromSurrogates(v) for v in values])
    except RecursionError:
        # The email package's address parser recurses on nested comments:
        # a header of thousands of "(" is no address list worth keeping.
        return []


def _addresses(values: list[str]) -> tuple[MailAddress, ...]:
    return tuple(
        MailAddress(address=address, name=decodeHeaderValue(name))
        for name, address in splitAddresses(values)
        if address
    )


def _headerBlockEnd(buf: bytes, start: int, end: int) -> tuple[int, int]:
    """
    Find where a part's header block ends.

    @return: C{(headersEnd, bodyStart)}: the offset just past the last header
        line's CRLF and the offset of the body's first octet.
    """
    if buf.startswith(b"\r\n", start):
        return start, start + 2
    if not HEADER_LINE_RE.match(buf, start, end):
        # No header block at all: the part is all body.
        return start, start
    i = buf.find(b"\r\n\r\n", start, end)
    if i < 0:
        return end, end
    return i + 2, i + 4


def _parseHeaders(buf: bytes, start: int, stop: int) -> Message:
    """
    Split a header block into a C{compat32} L{Message} of headers.

    This does what C{BytesHeaderParser} does for a header block (octets read
    as ASCII with surrogate escapes, continuation lines kept in the value)
    at a fraction of its cost, which matters on the ingest path; lines that
    are not headers are skipped, as the email package skips them as defects.
    """
    headers = _Headers()
    name: str | None = None
    value = ""
    for line in buf[start:stop].decode("ascii", "surrogateescape").split("\r\n"):
        if line[:1] in (" ", "\t"):
            if name is not None:
                value += "\r\n" + line
            continue
        if name is not None:
            headers.add(name, value)
            name = None
        field, colon, rest = line.partition(":")
        field = field.rstrip(" \t")
        if colon and field and not any(c in field for c in " \t"):
            name, value = field, rest.lstrip(" \t")
    if name is not None:
        headers.add(name, value)
    return headers


def headerBlock(buf: bytes, start: int = 0) -> tuple[list[tuple[str, str]], int]:
    """
    The header fields of the part starting at C{start} (the raw values,
    unfolded, 8-bit octets read as UTF-8) and the offset of its body: what
    IMAP's ENVELOPE is built from at ingest.
    """
    headersEnd, bodyStart = _headerBlockEnd(buf, start, len(buf))
    headers = _parseHeaders(buf, start, headersEnd)
    fields = []
    for name, value in headers.items():
        value = _fromSurrogates(str(value))
        if "\n" in value:
            value = _FOLD_RE.sub(" ", value)
        fields.append((_fromSurrogates(name), value.strip()))
    return fields, bodyStart


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = decodeHeaderValue(str(value))
    return value or None


def _params(headers: Message, name: str) -> tuple[tuple[str, str], ...]:
    value = headers.get(name)
    if value is None:
        return ()
    if "\n" in value:
        # RFC 5322 unfolding: the line break goes, the white space after
        # it stays (a boundary folded inside its quotes is "foo bar").
        value = _UNFOLD_RE.sub("", value)
    if value.isascii() and _SIMPLE_PARAMS_RE.fullmatch(value):
        # Plain "type; key=value; key="value"" (nearly every header): read
        # at C speed; anything else (RFC 2231, escapes, odd quoting) goes
        # to the email package.
        return tuple(
            (key.lower(), quoted or token)
            for key, quoted, token in _PARAM_PAIR_RE.findall(value)
        )
    try:
        params = headers.get_params(header=name) or []
    except TypeError:
        # The email package cannot sort RFC 2231 continuations that mix
        # numbered and unnumbered sections (name*=...; name*0=...).
        return ()
    out = []
    for key, value in params[1:]:
        if not key:
            continue
        if isinstance(value, tuple):
            value = _rfc2231(value)
        out.append((_fromSurrogates(key.lower()), _fromSurrogates(str(value))))
    return tuple(out)


def _rfc2231(value: tuple[str | None, str | None, str]) -> str:
    """
    Decode an RFC 2231 encoded parameter value, C{(charset, language,
    text)} with one character of C{text} per octet (raw 8-bit octets as
    surrogate escapes).  Unlike C{email.utils.collapse_rfc2231_value}, never
    raises: an unusable charset falls back to UTF-8.
    """
    charset, _, text = value
    try:
        octets = text.encode("latin-1", "surrogateescape")
    except UnicodeEncodeError:
        return _fromSurrogates(text)
    try:
        return octets.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError):
        return octets.decode("utf-8", "replace")


def _filename(
    params: tuple[tuple[str, str], ...], dispositionParams: tuple[tuple[str, str], ...]
) -> str | None:
    """
    A part's filename, found where C{Message.get_filename} looks for it,
    but decoded by L{_params}, which survives charsets and octets that make
    C{get_filename} raise.
    """
    for found, name in ((dispositionParams, "filename"), (params, "name")):
        for key, value in found:
            if key == name:
                return value.strip()
    return None


def _findDelimiter(buf: bytes, delimiter: bytes, start: int, end: int) -> int:
    """
    Find the next boundary delimiter line at or after C{start}.

    @return: The offset of the CRLF that precedes the delimiter (the CRLF
        belongs to the delimiter, RFC 2046 5.1.1), or C{-1}.
    """
    needle = b"\r\n" + delimiter
    i = start
    while True:
        i = buf.find(needle, i, end)
        if i < 0:
            return -1
        after = buf[i + len(needle) : i + len(needle) + 2]
        # A boundary may be a prefix of a nested part's boundary: the
        # delimiter must be followed by "--", white space or the line end.
        if after[:1] in (b"", b"\r", b" ", b"\t") or after == b"--":
            return i
        i += 2


class _Parser:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.text: list[str] = []
        self.html: list[str] = []
        self.attachments: list[Attachment] = []

    def parsePart(
        self,
        start: int,
        end: int,
        path: str,
        depth: int,
        defaultType: str = "text/plain",
        inMessage: bool = False,
    ) -> tuple[Part, Message]:
        buf = self.buf
        headersEnd, bodyStart = _headerBlockEnd(buf, start, end)
        bodyStart = min(bodyStart, end)
        headers = _parseHeaders(buf, start, headersEnd)
        if "content-type" in headers:
            contentType = _fromSurrogates(headers.get_content_type())
        else:
            contentType = defaultType
        mainType, _, subType = contentType.partition("/")
        params = _params(headers, "content-type")
        encoding = headers.get("content-transfer-encoding")
        encoding = _fromSurrogates(encoding.strip().lower()) if encoding else None
        disposition = headers.get_content_disposition()
        disposition = _fromSurrogates(disposition) if disposition else None
        dispositionParams = _params(headers, "content-disposition")
        lines = buf.count(b"\n", bodyStart, end)
        if end > bodyStart and not buf.endswith(b"\n", bodyStart, end):
            lines += 1
        children: tuple[Part, ...] = ()
        md5 = None
        boundary = dict(params).get("boundary")
        if mainType == "multipart" and boundary and depth < _MAX_DEPTH:
            children = self._multipart(
                bodyStart, end, boundary, path, depth, subType == "digest", inMessage
            )
        if mainType == "multipart" and not children:
            # A multipart with no usable delimiter: show its body as text.
            mainType, subType, params = "text", "plain", ()
        if mainType == "message" and subType == "rfc822" and depth < _MAX_DEPTH:
            inner, _ = self.parsePart(
                bodyStart, end, path, depth + 1, inMessage=True
            )
            children = (inner,)
        if not children or mainType == "message":
            md5 = self._leaf(
                headers, mainType, subType, params, disposition, dispositionParams,
                bodyStart, end, path or "1", inMessage,
            )
        part = Part(
            mainType=mainType.lower(),
            subType=subType.lower(),
            params=params,
            contentId=_clean(headers.get("content-id")),
            description=_clean(headers.get("content-description")),
            encoding=encoding,
            disposition=disposition,
            dispositionParams=dispositionParams,
            language=_clean(headers.get("content-language")),
            md5=md5,
            headerStart=start,
            bodyStart=bodyStart,
            end=end,
            lines=lines,
            children=children,
        )
        return part, headers

    def _multipart(
        self,
        bodyStart: int,
        end: int,
        boundary: str,
        path: str,
        depth: int,
        digest: bool,
        inMessage: bool,
    ) -> tuple[Part, ...]:
        buf = self.buf
        delimiter = b"--" + boundary.encode("utf-8", "surrogateescape")
        if buf.startswith(delimiter, bodyStart):
            lineStart = bodyStart
        else:
            at = _findDelimiter(buf, delimiter, bodyStart, end)
            if at < 0:
                return ()
            lineStart = at + 2
        children: list[Part] = []
        while len(children) < 1000:
            if buf.startswith(b"--", lineStart + len(delimiter)):
                break
            lineEnd = buf.find(b"\r\n", lineStart, end)
            if lineEnd < 0:
                break
            partStart = lineEnd + 2
            nextAt = _findDelimiter(buf, delimiter, lineEnd, end)
            partEnd = end if nextAt < 0 else max(nextAt, partStart)
            number = len(children) + 1
            child, _ = self.parsePart(
                partStart,
                partEnd,
                f"{path}.{number}" if path else str(number),
                depth + 1,
                defaultType="message/rfc822" if digest else "text/plain",
                inMessage=inMessage,
            )
            children.append(child)
            if nextAt < 0:
                break
            lineStart = nextAt + 2
        return tuple(children)

    def _leaf(
        self,
        headers: Message,
        mainType: str,
        subType: str,
        params: tuple[tuple[str, str], ...],
        disposition: str | None,
        dispositionParams: tuple[tuple[str, str], ...],
        bodyStart: int,
        end: int,
        path: str,
        inMessage: bool,
    ) -> str | None:
        # A view, not a slice: the part's octets are not copied to decode them.
        body = memoryview(self.buf)[bodyStart:end]
        decoded = decodeBody(body, headers.get("content-transfer-encoding"))
        filename = _filename(params, dispositionParams)
        isBody = (
            mainType == "text"
            and subType in ("plain", "html")
            and disposition != "attachment"
            and not filename
            and not inMessage
        )
        if isBody:
            charset = dict(params).get("charset") or "utf-8"
            try:
                text = str(decoded, charset, "replace")
            except (LookupError, ValueError, TypeError, AttributeError):
                # An unknown charset, or a codec that refuses "replace"
                # (idna), or a view, or is not a text codec at all.
                text = str(decoded, "utf-8", "replace")
            (self.html if subType == "html" else self.text).append(_fromSurrogates(text))
            return None
        if inMessage:
            return None
        md5 = hashlib.md5(decoded, usedforsecurity=False).hexdigest()
        self.attachments.append(
            Attachment(
                md5=md5,
                filename=_clean(filename),
                contentType=f"{mainType}/{subType}".lower(),
                contentId=_clean(headers.get("content-id")),
                size=len(decoded),
                part=path,
            )
        )
        return md5


def decodeBody(raw: _Octets, encoding: str | None) -> _Octets:
    """
    A part's body with its Content-Transfer-Encoding undone (base64,
    quoted-printable, uuencode); anything unknown is returned as it is.

    Base64 and quoted-printable are decoded by C{binascii} straight from
    C{raw} (a view of the message, at ingest): the C{email} package's way
    makes text of the body, bytes of that, and a list of its lines first,
    several copies of what may be a 25 MiB attachment.  It is still what
    decodes base64 that C{binascii} refuses (bad padding), as before.
    """
    if encoding is None or encoding.strip().lower() in ("7bit", "8bit", "binary"):
        return raw
    # Matched as the email package matches it (lower case, not stripped).
    cte = encoding.lower()
    if cte == "quoted-printable":
        return binascii.a2b_qp(raw)
    if cte == "base64":
        try:
            return binascii.a2b_base64(raw)
        except binascii.Error:
            pass
    leaf = Message()
    leaf["Content-Transfer-Encoding"] = _fromSurrogates(str(encoding))
    leaf.set_payload(bytes(raw).decode("ascii", "surrogateescape"))
    payload = leaf.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else raw


def findPart(structure: Part, path: str) -> Part | None:
    """
    The part of a message named by an IMAP part specifier (C{"2"},
    C{"1.3"}), numbered as RFC 3501 6.4.5 numbers them (and as Dovecot
    finds them): a multipart's numbers are its children; a part that is
    not multipart is part C{1} of itself (so C{"1"} of a single-part
    message is the message); and the numbers after a C{message/rfc822}
    part's number are those of the message it encloses.  C{BODY[1]} of a
    message/rfc822 message is then the whole enclosed message, C{[1.1]}
    its body (or first part), as BODYSTRUCTURE shows them.
    """
    numbers = path.split(".")
    if not all(n.isdigit() for n in numbers):
        return None
    node = structure
    for i, number in enumerate(numbers):
        n = int(number)
        if node.mainType == "multipart" and node.children:
            if not 1 <= n <= len(node.children):
                return None
            node = node.children[n - 1]
        elif n != 1 or (i + 1 < len(numbers) and not _encloses(node)):
            return None
        if i + 1 < len(numbers) and _encloses(node):
            node = node.children[0]
    return node


def _encloses(part: Part) -> bool:
    return part.mainType == "message" and part.subType == "rfc822" and bool(part.children)


def _links(text: str | None, html: str | None) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for source in (text, html):
        if not source or "://" not in source:
            continue
        for match in _LINK_RE.finditer(source):
            link = match.group(0).rstrip(_TRAILING_PUNCTUATION)
            if html is source:
                link = link.replace("&amp;", "&")
            seen.setdefault(link, None)
            if len(seen) >= _MAX_LINKS:
                return tuple(seen)
    return tuple(seen)


def parseMessage(buf: bytes) -> ParsedMessage:
    """
    Parse a whole stored message (CRLF line ends).

    Never raises on malformed input: whatever cannot be understood is kept
    as opaque text, since a capture server must file every message it took.
    """
    parser = _Parser(buf)
    structure, headers = parser.parsePart(0, len(buf), "", 0)
    text = "\n".join(parser.text) if parser.text else None
    html = "\n".join(parser.html) if parser.html else None
    return ParsedMessage(
        subject=decodeHeaderValue(str(headers.get("subject", ""))),
        fromAddresses=_addresses(headers.get_all("from", [])),
        to=_addresses(headers.get_all("to", [])),
        cc=_addresses(headers.get_all("cc", [])),
        bcc=_addresses(headers.get_all("bcc", [])),
        date=_clean(headers.get("date")),
        messageId=_clean(headers.get("message-id")),
        headers=tuple(
            (_fromSurrogates(name), decodeHeaderValue(str(value)))
            for name, value in headers.items()
        ),
        text=text,
        html=html,
        attachments=tuple(parser.attachments),
        links=_links(text, html),
        structure=structure,
    )
