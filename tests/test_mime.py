"""
L{capture.mime.parseMessage} on hand-written raw messages: decoded headers,
the MIME part tree with its byte offsets, bodies, attachments and links.

Multipart messages are built from their parts' exact bytes, so each test
knows independently which bytes every part must span.
"""

from __future__ import annotations

import base64
import hashlib
import json
import quopri
import random

import pytest

from capture.mime import MailAddress, ParsedMessage, Part, parseMessage


def crlf(data: bytes) -> bytes:
    """
    Hand-written text with LF line ends, as stored: CRLF.
    """
    return data.replace(b"\n", b"\r\n")


def b64(data: bytes) -> bytes:
    """
    Base64 in 76-column CRLF lines, without the last line's CRLF (which
    belongs to the boundary delimiter that follows).
    """
    return base64.encodebytes(data).replace(b"\n", b"\r\n")[:-2]


def walk(part: Part) -> list[Part]:
    """
    Every part of a tree, depth first.
    """
    found = [part]
    for child in part.children:
        found.extend(walk(child))
    return found


# A multipart/mixed with a multipart/alternative (QP latin-1 text and base64
# UTF-8 HTML), an inline image and an attachment with an RFC 2231 filename.
# The boundary of the alternative starts with the boundary of the mixed.

PNG = bytes(range(256)) * 3
PDF = b"%PDF-1.4 fake\r\n\x00\x01\x02\xff binary\r\n"
HTML = (
    '<p>Caf\u00e9 <a href="https://example.com/reset?token=abc&amp;next=1">reset</a>'
    ' <a href="https://example.org/help">help</a></p>'
).encode()

TEXT_BODY = crlf(b"Caf=E9 cr=E8me: https://example.com/reset?token=3Dabc&next=3D1.\nBye")
TEXT_PART = (
    crlf(
        b"Content-Type: text/plain; charset=iso-8859-1\n"
        b"Content-Transfer-Encoding: quoted-printable\n\n"
    )
    + TEXT_BODY
)
HTML_BODY = b64(HTML)
HTML_PART = (
    crlf(b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n")
    + HTML_BODY
)
ALT_HEAD = crlf(b'Content-Type: multipart/alternative; boundary="mix-alt"\n\n')
ALT_BODY = (
    b"--mix-alt\r\n" + TEXT_PART + b"\r\n--mix-alt\r\n" + HTML_PART + b"\r\n--mix-alt--"
)
ALT_PART = ALT_HEAD + ALT_BODY
IMG_BODY = b64(PNG)
IMG_PART = (
    crlf(
        b'Content-Type: image/png; name="dot.png"\n'
        b"Content-Transfer-Encoding: base64\n"
        b"Content-ID: <dot@example.com>\n"
        b'Content-Disposition: inline; filename="dot.png"\n\n'
    )
    + IMG_BODY
)
PDF_BODY = b64(PDF)
PDF_PART = (
    crlf(
        b"Content-Type: application/pdf\n"
        b"Content-Transfer-Encoding: base64\n"
        b"Content-Description: the =?utf-8?q?r=C3=A9sum=C3=A9?=\n"
        b"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\n\n"
    )
    + PDF_BODY
)
TREE_HEAD = crlf(
    b"From: Sender <sender@example.com>\n"
    b"To: rcpt@example.org\n"
    b"Subject: tree\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="mix"\n\n'
)
TREE_BODY = (
    b"This is a multi-part message in MIME format.\r\n"
    + b"--mix\r\n" + ALT_PART
    + b"\r\n--mix\r\n" + IMG_PART
    + b"\r\n--mix\r\n" + PDF_PART
    + b"\r\n--mix--\r\nepilogue\r\n"
)
TREE = TREE_HEAD + TREE_BODY


@pytest.fixture(scope="module")
def tree() -> ParsedMessage:
    """
    The parsed tree message.
    """
    return parseMessage(TREE)


# Headers


def test_subjectEncodedWords() -> None:
    """
    RFC 2047 encoded words in Q and B encoding are decoded; the white space
    between two adjacent encoded words is dropped (RFC 2047 6.2), while the
    space between an encoded word and plain text is kept.
    """
    raw = crlf(
        b"Subject: =?utf-8?q?Caf=C3=A9?= =?utf-8?b?IOKCrA==?= and =?iso-8859-1?q?cr=E8me?=\n\nx"
    )
    assert parseMessage(raw).subject == "Caf\u00e9 \u20ac and cr\u00e8me"


def test_subjectAdjacentWordsAcrossFold() -> None:
    """
    Adjacent encoded words split over a folded line join into one word, as
    mailers split long subjects.
    """
    raw = crlf(b"Subject: =?utf-8?q?Pass?=\n =?utf-8?q?word_reset?=\n\nx")
    assert parseMessage(raw).subject == "Password reset"


def test_subjectRawUTF8() -> None:
    """
    Raw 8-bit UTF-8 in a header (SMTPUTF8 mail) is read as UTF-8, not lost
    or turned into mojibake.
    """
    raw = b"Subject: \xc3\xa9t\xc3\xa9 \xe2\x82\xac\r\n\r\nx"
    assert parseMessage(raw).subject == "\u00e9t\u00e9 \u20ac"


def test_subjectMixedRawAndEncoded() -> None:
    """
    Raw UTF-8 text beside encoded words survives, and each part decodes.
    """
    raw = b"Subject: \xc3\xa9t\xc3\xa9 =?utf-8?b?4oKs?= fin\r\n\r\nx"
    assert parseMessage(raw).subject == "\u00e9t\u00e9 \u20ac fin"


def test_subjectUnknownCharsetKept() -> None:
    """
    An encoded word in a charset Python does not know stays as it was
    sent instead of failing the parse.
    """
    raw = b"Subject: =?x-unknown?q?abc?= tail\r\n\r\nx"
    assert parseMessage(raw).subject == "=?x-unknown?q?abc?= tail"


def test_addressHeaders() -> None:
    """
    From, To and Cc become address lists with decoded display names, an
    encoded comma inside a name does not split the address, and raw UTF-8
    names are read as UTF-8.
    """
    raw = crlf(
        b"From: =?utf-8?b?SsO8cmdlbg==?= <jurgen@example.com>\n"
        b"To: =?utf-8?q?Doe=2C_John?= <john@example.org>, plain@example.org,\n"
        b' "B. Person" <b@example.org>\n'
        b"Cc: \xc3\x89lodie <elodie@example.net>, =?iso-8859-1?q?Andr=E9?= <andre@example.net>\n"
        b"Subject: s\n\nbody"
    )
    parsed = parseMessage(raw)
    assert parsed.fromAddresses == (MailAddress("jurgen@example.com", "J\u00fcrgen"),)
    assert parsed.to == (
        MailAddress("john@example.org", "Doe, John"),
        MailAddress("plain@example.org", ""),
        MailAddress("b@example.org", "B. Person"),
    )
    assert parsed.cc == (
        MailAddress("elodie@example.net", "\u00c9lodie"),
        MailAddress("andre@example.net", "Andr\u00e9"),
    )
    assert parsed.bcc == ()


def test_headersInOrderDecoded() -> None:
    """
    C{headers} lists every top-level header once, in order, unfolded and
    decoded; Date and Message-ID are kept.
    """
    raw = crlf(
        b"Received: from a\n by b\n"
        b"Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
        b"Message-ID: <id@example.com>\n"
        b"Subject: =?utf-8?q?h=C3=A9llo?=\n"
        b"X-Dup: 1\nX-Dup: 2\n\nbody"
    )
    parsed = parseMessage(raw)
    assert parsed.headers == (
        ("Received", "from a by b"),
        ("Date", "Mon, 1 Jan 2024 00:00:00 +0000"),
        ("Message-ID", "<id@example.com>"),
        ("Subject", "h\u00e9llo"),
        ("X-Dup", "1"),
        ("X-Dup", "2"),
    )
    assert parsed.date == "Mon, 1 Jan 2024 00:00:00 +0000"
    assert parsed.messageId == "<id@example.com>"


# The part tree


def test_treeShape(tree: ParsedMessage) -> None:
    """
    The mixed/alternative tree is found with the right types, in order,
    although the inner boundary C{mix-alt} starts with the outer C{mix}.
    """
    root = tree.structure
    assert (root.mainType, root.subType) == ("multipart", "mixed")
    assert root.params == (("boundary", "mix"),)
    assert [(c.mainType, c.subType) for c in root.children] == [
        ("multipart", "alternative"),
        ("image", "png"),
        ("application", "pdf"),
    ]
    alt = root.children[0]
    assert [(c.mainType, c.subType) for c in alt.children] == [
        ("text", "plain"),
        ("text", "html"),
    ]
    assert all(not c.children for c in alt.children + root.children[1:])


def test_treeRootOffsets(tree: ParsedMessage) -> None:
    """
    The root spans the whole message; its header block is the message's
    header block with the blank line, and its body is everything after.
    """
    root = tree.structure
    assert (root.headerStart, root.end) == (0, len(TREE))
    assert TREE[root.headerStart : root.bodyStart] == TREE_HEAD
    assert TREE[root.bodyStart : root.end] == TREE_BODY


def test_treePartOffsets(tree: ParsedMessage) -> None:
    """
    Each part spans exactly its own bytes: headers from C{headerStart},
    body from C{bodyStart}, and C{end} stops before the CRLF that precedes
    the next boundary delimiter (RFC 2046 5.1.1).
    """
    alt, img, pdf = tree.structure.children
    text, html = alt.children
    expected = [
        (alt, ALT_PART, ALT_BODY),
        (text, TEXT_PART, TEXT_BODY),
        (html, HTML_PART, HTML_BODY),
        (img, IMG_PART, IMG_BODY),
        (pdf, PDF_PART, PDF_BODY),
    ]
    for part, whole, body in expected:
        assert TREE[part.headerStart : part.end] == whole
        assert TREE[part.bodyStart : part.end] == body
        assert TREE[part.end : part.end + 4] == b"\r\n--"
        assert TREE[part.headerStart : part.bodyStart].endswith(b"\r\n\r\n")


def test_treeLineCounts(tree: ParsedMessage) -> None:
    """
    C{lines} counts the body's lines, the last one counted although its
    CRLF belongs to the delimiter.
    """
    alt, img, pdf = tree.structure.children
    text, html = alt.children
    assert text.lines == 2
    # 768 octets: 13 full base64 lines of 57 octets and one short line.
    assert img.lines == 14
    assert pdf.lines == 1
    # Its delimiter line, the text part's 3 header and 2 body lines, a
    # delimiter, the HTML part's 3 header and 3 body lines, the close.
    assert html.lines == 3
    assert alt.lines == 14


def test_treeEncodingsAndDispositions(tree: ParsedMessage) -> None:
    """
    Transfer encodings, dispositions with their parameters, content ids
    and descriptions are recorded per part, decoded where encoded.
    """
    alt, img, pdf = tree.structure.children
    text, html = alt.children
    assert text.encoding == "quoted-printable"
    assert text.params == (("charset", "iso-8859-1"),)
    assert html.encoding == "base64"
    assert img.disposition == "inline"
    assert img.dispositionParams == (("filename", "dot.png"),)
    assert img.params == (("name", "dot.png"),)
    assert img.contentId == "<dot@example.com>"
    assert pdf.disposition == "attachment"
    assert pdf.dispositionParams == (("filename", "r\u00e9sum\u00e9.pdf"),)
    assert pdf.description == "the r\u00e9sum\u00e9"
    assert alt.encoding is None and alt.md5 is None


def test_attachments(tree: ParsedMessage) -> None:
    """
    The inline image and the PDF are attachments, with the md5 and size of
    their decoded content, their filenames (the PDF's from RFC 2231
    C{filename*}), content ids and IMAP part numbers; the text and HTML
    bodies are not attachments.
    """
    img, pdf = tree.attachments
    assert img.md5 == hashlib.md5(PNG).hexdigest()
    assert img.size == len(PNG)
    assert img.filename == "dot.png"
    assert img.contentType == "image/png"
    assert img.contentId == "<dot@example.com>"
    assert img.part == "2"
    assert pdf.md5 == hashlib.md5(PDF).hexdigest()
    assert pdf.size == len(PDF)
    assert pdf.filename == "r\u00e9sum\u00e9.pdf"
    assert pdf.contentType == "application/pdf"
    assert pdf.contentId is None
    assert pdf.part == "3"
    assert tree.structure.children[1].md5 == img.md5
    assert tree.structure.children[2].md5 == pdf.md5


def test_treeBodies(tree: ParsedMessage) -> None:
    """
    The text body is decoded from quoted-printable latin-1 and the HTML body
    from base64 UTF-8.
    """
    assert tree.text == "Caf\u00e9 cr\u00e8me: https://example.com/reset?token=abc&next=1.\r\nBye"
    assert tree.html == HTML.decode("utf-8")
    assert tree.subject == "tree"


def test_treeLinks(tree: ParsedMessage) -> None:
    """
    Links are found in the text and in the HTML; C{&amp;} in HTML is
    unescaped, the sentence's full stop is not part of the link, and the
    same link in both bodies is listed once.
    """
    assert tree.links == (
        "https://example.com/reset?token=abc&next=1",
        "https://example.org/help",
    )


@pytest.mark.parametrize("charset", ["iso-8859-1", "utf-8"])
@pytest.mark.parametrize("subType", ["plain", "html"])
@pytest.mark.parametrize("encoding", ["quoted-printable", "base64"])
def test_bodyDecoding(charset: str, subType: str, encoding: str) -> None:
    """
    A single-part text or HTML body is decoded from either transfer
    encoding, in either charset.
    """
    content = "na\u00efve caf\u00e9 \u00e0 la cr\u00e8me = x\r\nline two"
    octets = content.encode(charset)
    if encoding == "base64":
        body = b64(octets)
    else:
        lines = content.replace("\r\n", "\n").encode(charset)
        body = crlf(quopri.encodestring(lines))
    raw = (
        f"Content-Type: text/{subType}; charset={charset}\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode() + body
    parsed = parseMessage(raw)
    got = parsed.html if subType == "html" else parsed.text
    other = parsed.text if subType == "html" else parsed.html
    assert got is not None and got.rstrip("\r\n") == content
    assert other is None
    assert parsed.attachments == ()


def test_linksPunctuationAndDedup() -> None:
    """
    Links keep their query strings; trailing punctuation of the sentence
    around them is dropped; repeats are listed once, first seen first.
    """
    raw = crlf(
        b"Content-Type: text/plain\n\n"
        b"Go to https://example.com/a?b=1&c=2, or (https://example.com/b).\n"
        b"Again: https://example.com/a?b=1&c=2! And http://example.net/x?\n"
        b"Not a link: ftp://example.com/y\n"
    )
    assert parseMessage(raw).links == (
        "https://example.com/a?b=1&c=2",
        "https://example.com/b",
        "http://example.net/x",
    )


# Boundaries


def test_boundaryPrefixOfNestedBoundary() -> None:
    """
    A nested part whose boundary starts with the enclosing boundary does
    not end the enclosing part early: only a delimiter followed by C{--},
    white space or the line end counts.
    """
    inner = crlf(
        b"Content-Type: multipart/alternative; boundary=abcdef\n\n"
        b"--abcdef\nContent-Type: text/plain\n\none\n"
        b"--abcdef\nContent-Type: text/html\n\n<i>two</i>\n"
        b"--abcdef--"
    )
    last = crlf(b"Content-Type: text/plain; name=x.txt\nContent-Disposition: attachment\n\nthree")
    raw = (
        crlf(b"Content-Type: multipart/mixed; boundary=abc\n\n--abc\n")
        + inner + b"\r\n--abc \t\r\n" + last + b"\r\n--abc--\r\n"
    )
    root = parseMessage(raw).structure
    assert len(root.children) == 2
    first, second = root.children
    assert raw[first.headerStart : first.end] == inner
    assert [raw[c.bodyStart : c.end] for c in first.children] == [b"one", b"<i>two</i>"]
    assert raw[second.headerStart : second.end] == last


def test_missingCloseDelimiter() -> None:
    """
    Without the close delimiter the last part runs to the end of the
    message, and nothing is lost.
    """
    second = crlf(b"Content-Type: text/html\n\n<b>two</b>\n")
    raw = crlf(
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\none\n--b\n"
    ) + second
    parsed = parseMessage(raw)
    first, last = parsed.structure.children
    assert raw[first.bodyStart : first.end] == b"one"
    assert raw[last.headerStart : last.end] == second
    assert last.end == len(raw)
    assert parsed.text == "one"
    assert parsed.html == "<b>two</b>\r\n"


def test_multipartWithoutDelimiter() -> None:
    """
    A multipart whose body has no delimiter line is shown as one
    text/plain part holding the whole body.
    """
    raw = crlf(b"Content-Type: multipart/mixed; boundary=b\n\njust words\nno parts\n")
    parsed = parseMessage(raw)
    root = parsed.structure
    assert (root.mainType, root.subType, root.children) == ("text", "plain", ())
    assert raw[root.bodyStart : root.end] == b"just words\r\nno parts\r\n"
    assert parsed.text == "just words\r\nno parts\r\n"


def test_multipartWithoutBoundaryParameter() -> None:
    """
    A multipart that names no boundary at all falls back to text/plain too.
    """
    parsed = parseMessage(crlf(b"Content-Type: multipart/mixed\n\nhello\n"))
    assert (parsed.structure.mainType, parsed.structure.subType) == ("text", "plain")
    assert parsed.text == "hello\r\n"


def test_emptyPartsAndImplicitType() -> None:
    """
    A part with no headers is text/plain (RFC 2045), a part with headers
    but no body has an empty body, and an empty part between delimiters
    spans nothing.
    """
    raw = crlf(
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\n\nimplicit\n"
        b"--b\nContent-Type: text/html\n"
        b"--b\n"
        b"--b--\n"
    )
    implicit, headersOnly, empty = parseMessage(raw).structure.children
    assert (implicit.mainType, implicit.subType) == ("text", "plain")
    assert raw[implicit.headerStart : implicit.bodyStart] == b"\r\n"
    assert raw[implicit.bodyStart : implicit.end] == b"implicit"
    assert headersOnly.subType == "html"
    assert headersOnly.bodyStart == headersOnly.end
    assert raw[headersOnly.headerStart : headersOnly.end] == b"Content-Type: text/html"
    assert empty.headerStart == empty.bodyStart == empty.end


def test_trailingSemicolonInContentType() -> None:
    """
    C{charset=utf-8;} with a stray trailing semicolon still gives the
    charset, and no empty parameter.
    """
    raw = b"Content-Type: text/plain; charset=utf-8;\r\n\r\ncaf\xc3\xa9"
    parsed = parseMessage(raw)
    assert parsed.text == "caf\u00e9"
    assert parsed.structure.params == (("charset", "utf-8"),)


# message/rfc822

INNER_TEXT_PART = crlf(b"Content-Type: text/plain\n\ninner text")
INNER_FILE_PART = crlf(
    b"Content-Type: application/octet-stream\n"
    b"Content-Disposition: attachment; filename=inner.bin\n\nxyz"
)
INNER = crlf(
    b"From: inner@example.com\nSubject: =?utf-8?q?inn=C3=A9r?=\n"
    b"Content-Type: multipart/mixed; boundary=in\n\n--in\n"
) + INNER_TEXT_PART + b"\r\n--in\r\n" + INNER_FILE_PART + b"\r\n--in--"
FORWARD = (
    crlf(
        b"Subject: fwd\nContent-Type: multipart/mixed; boundary=out\n\n"
        b"--out\nContent-Type: text/plain\n\nouter text\n"
        b"--out\nContent-Type: message/rfc822\n"
        b"Content-Disposition: attachment; filename=fwd.eml\n\n"
    )
    + INNER
    + b"\r\n--out--\r\n"
)


def test_messageRfc822Structure() -> None:
    """
    An attached message's own structure is parsed, with offsets into the
    outer message and IMAP part numbers under the attachment's, and the
    attachment's md5 is that of the whole enclosed message.
    """
    parsed = parseMessage(FORWARD)
    body, attached = parsed.structure.children
    assert (attached.mainType, attached.subType) == ("message", "rfc822")
    assert FORWARD[attached.bodyStart : attached.end] == INNER
    assert attached.md5 == hashlib.md5(INNER).hexdigest()
    assert attached.lines == len(INNER.split(b"\r\n"))
    (inner,) = attached.children
    assert (inner.mainType, inner.subType) == ("multipart", "mixed")
    assert inner.headerStart == attached.bodyStart
    assert inner.end == attached.end
    innerText, innerFile = inner.children
    assert FORWARD[innerText.headerStart : innerText.end] == INNER_TEXT_PART
    assert FORWARD[innerFile.headerStart : innerFile.end] == INNER_FILE_PART
    assert parsed.attachments[0].part == "2"
    assert parsed.attachments[0].filename == "fwd.eml"
    assert parsed.attachments[0].contentType == "message/rfc822"
    assert parsed.attachments[0].size == len(INNER)


def test_messageRfc822ContentStaysInside() -> None:
    """
    The enclosed message's text and attachments belong to it, not to the
    outer message: the outer text is only its own, and the only attachment
    listed is the enclosed message itself.
    """
    parsed = parseMessage(FORWARD)
    assert parsed.text == "outer text"
    assert parsed.html is None
    assert [a.filename for a in parsed.attachments] == ["fwd.eml"]


def test_messageRfc822SinglePart() -> None:
    """
    An enclosed single-part message is parsed too, and its text does not
    become the outer message's body.
    """
    inner = crlf(b"Subject: hi\n\nhello inside")
    raw = crlf(b"Content-Type: message/rfc822\n\n") + inner
    parsed = parseMessage(raw)
    (child,) = parsed.structure.children
    assert raw[child.headerStart : child.bodyStart] == crlf(b"Subject: hi\n\n")
    assert raw[child.bodyStart : child.end] == b"hello inside"
    assert parsed.text is None
    assert parsed.structure.md5 == hashlib.md5(inner).hexdigest()


def test_digestDefaultsToMessages() -> None:
    """
    In a multipart/digest a part without Content-Type is a message/rfc822.
    """
    raw = crlf(
        b"Content-Type: multipart/digest; boundary=d\n\n"
        b"--d\n\nSubject: one\n\nfirst\n--d--\n"
    )
    (part,) = parseMessage(raw).structure.children
    assert (part.mainType, part.subType) == ("message", "rfc822")
    assert part.children[0].mainType == "text"
    assert raw[part.children[0].bodyStart : part.children[0].end] == b"first"


# Degenerate messages


def test_noHeaderBlock() -> None:
    """
    A message that starts with the blank line has no headers and is all
    body.
    """
    raw = b"\r\nonly a body\r\n"
    parsed = parseMessage(raw)
    assert parsed.headers == ()
    assert parsed.subject == ""
    assert parsed.fromAddresses == ()
    assert parsed.structure.bodyStart == 2
    assert parsed.text == "only a body\r\n"


def test_bodyWithoutHeaderLines() -> None:
    """
    Text whose first line is not a header line is taken as body, not as a
    broken header block.
    """
    raw = b"hello world, no headers here\r\nsecond line\r\n"
    parsed = parseMessage(raw)
    assert parsed.headers == ()
    assert parsed.structure.bodyStart == 0
    assert parsed.text == raw.decode()


def test_emptyMessage() -> None:
    """
    Zero bytes parse into an empty text/plain message.
    """
    parsed = parseMessage(b"")
    root = parsed.structure
    assert (root.mainType, root.subType) == ("text", "plain")
    assert (root.headerStart, root.bodyStart, root.end, root.lines) == (0, 0, 0, 0)
    assert parsed.subject == ""
    assert parsed.headers == ()
    assert not parsed.text
    assert parsed.attachments == () and parsed.links == ()


def test_headersOnly() -> None:
    """
    A message with headers and no blank line or body has its headers and an
    empty body at the end of the message.
    """
    raw = b"Subject: just headers\r\nFrom: a@example.com\r\n"
    parsed = parseMessage(raw)
    assert parsed.subject == "just headers"
    assert parsed.fromAddresses == (MailAddress("a@example.com", ""),)
    root = parsed.structure
    assert root.bodyStart == root.end == len(raw)
    assert root.lines == 0
    assert not parsed.text


def test_deepNestingDoesNotCrash() -> None:
    """
    Multiparts nested far beyond the depth limit parse without recursion
    errors; the tree stops at a bounded depth and keeps the rest as text.
    """
    depth = 200
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    ) + b"Content-Type: text/plain\r\n\r\ndeep" + b"".join(
        b"\r\n--b%d--" % i for i in reversed(range(depth))
    )
    parsed = parseMessage(raw)
    parts = walk(parsed.structure)
    assert 10 < len(parts) < 50
    assert parsed.text is not None and "deep" in parsed.text


def test_deepMessageNestingDoesNotCrash() -> None:
    """
    Messages enclosed in messages far beyond the depth limit parse without
    recursion errors either.
    """
    raw = b"Content-Type: message/rfc822\r\n\r\n" * 500 + b"Subject: x\r\n\r\nbody"
    parts = walk(parseMessage(raw).structure)
    assert 10 < len(parts) < 50


# Regressions found by the random inputs below


@pytest.mark.parametrize("charset", ["idna", "undefined", "iso-88\x0059-1", "base64", "nonesuch"])
def test_unusableBodyCharset(charset: str) -> None:
    """
    A text body in a charset that is unknown, not a text codec, refuses
    C{errors="replace"} (idna) or is not a valid name is read as UTF-8
    rather than failing the parse.
    """
    raw = f"Content-Type: text/plain; charset=\"{charset}\"\r\n\r\n".encode() + b"caf\xc3\xa9"
    assert parseMessage(raw).text == "caf\u00e9"


def test_rfc2231FilenameUnknownCharsetAndRawOctets() -> None:
    """
    An RFC 2231 filename in an unusable charset, or with raw 8-bit octets,
    is decoded as well as can be instead of failing the parse.
    """
    raw = crlf(
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: application/octet-stream\n"
        b"Content-Disposition: attachment; filename*=\xc3tf-8''a%C3%A9.bin\n\nx\n"
        b"--b\nContent-Type: application/octet-stream\n"
        b"Content-Disposition: attachment; filename*=utf-8''caf\xc3\xa9.bin\n\ny\n"
        b"--b--\n"
    )
    first, second = parseMessage(raw).attachments
    assert first.filename == "a\u00e9.bin"
    assert second.filename == "caf\u00e9.bin"


def test_rfc2231Continuations() -> None:
    """
    An RFC 2231 filename split into numbered sections is joined and
    decoded; sections that mix numbered and unnumbered forms (which the
    C{email} package cannot sort) do not fail the parse.
    """
    raw = crlf(
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: application/octet-stream\n"
        b"Content-Disposition: attachment; filename*0*=utf-8''r%C3%A9;\n"
        b" filename*1*=sum%C3%A9; filename*2=.txt\n\nx\n"
        b"--b\nContent-Type: text/plain; name*=a; name*0=b\n"
        b"Content-Disposition: attachment\n\ny\n"
        b"--b--\n"
    )
    first, second = parseMessage(raw).attachments
    assert first.filename == "r\u00e9sum\u00e9.txt"
    assert second.md5 == hashlib.md5(b"y").hexdigest()


def test_encodedWordFilename() -> None:
    """
    A filename sent as an RFC 2047 encoded word inside quotes (as some
    mailers do) is decoded.
    """
    raw = crlf(
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="=?utf-8?q?caf=C3=A9?=.pdf"\n\nx\n'
        b"--b--\n"
    )
    assert parseMessage(raw).attachments[0].filename == "caf\u00e9.pdf"


# Serialization


def test_partJSONRoundTrip(tree: ParsedMessage) -> None:
    """
    L{Part.toJSON} and L{Part.fromJSON} are inverse, through real JSON
    text, for a whole tree with parameters, dispositions and md5s.
    """
    for parsed in (tree, parseMessage(FORWARD)):
        data = json.loads(json.dumps(parsed.structure.toJSON()))
        assert Part.fromJSON(data) == parsed.structure


# Random input


def _checkInvariants(raw: bytes, parsed: ParsedMessage) -> None:
    assert isinstance(parsed, ParsedMessage)

    def check(part: Part, low: int, high: int) -> None:
        assert low <= part.headerStart <= part.bodyStart <= part.end <= high
        for child in part.children:
            check(child, part.bodyStart, part.end)

    check(parsed.structure, 0, len(raw))
    assert Part.fromJSON(json.loads(json.dumps(parsed.structure.toJSON()))) == parsed.structure


_TOKENS = [
    b"\r\n", b"\r\n\r\n", b"--mix", b"--mix-alt", b"--mix--", b"--", b";", b'"', b"=",
    b"=?utf-8?b?", b"=?utf-8?q?=C3", b"?=", b"=?x?q?=ZZ?=", b"\xff\xfe", b"\xc3", b"\x00",
    b"boundary=", b"filename*=", b"filename*0*=", b"''", b"%", b"%C3", b"charset=idna",
    b"charset=", b"From: ", b"To: \"", b"<", b">", b",", b"@", b"(", b"\\",
    b"Content-Type: multipart/mixed; boundary=mix\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*=utf-8''%FF\r\n",
]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 12)):
        pos = rng.randrange(len(buf) + 1)
        op = rng.randrange(4)
        if op == 0 and buf:
            del buf[pos : pos + rng.randrange(1, 40)]
        elif op == 1:
            buf[pos:pos] = rng.choice(_TOKENS)
        elif op == 2 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        else:
            cut = rng.randrange(len(buf) + 1)
            buf = buf[:cut] + buf[pos:]
    return bytes(buf)


def test_randomBytesNeverRaise() -> None:
    """
    Hundreds of random byte strings, with and without CRLFs and header
    shapes, parse without an exception, into a tree whose offsets stay in
    bounds and nest.
    """
    rng = random.Random(20240601)
    for _ in range(300):
        size = rng.randrange(400)
        if rng.random() < 0.5:
            raw = bytes(rng.randrange(256) for _ in range(size))
        else:
            raw = b"".join(rng.choice(_TOKENS) for _ in range(size // 8))
        _checkInvariants(raw, parseMessage(raw))


def test_randomMutationsNeverRaise() -> None:
    """
    Hundreds of random mutations of valid multipart messages (cut, spliced,
    overwritten, sprinkled with MIME syntax) parse without an exception,
    into a tree whose offsets stay in bounds and nest.
    """
    rng = random.Random(1337)
    for i in range(600):
        raw = _mutate(rng, TREE if i % 2 else FORWARD)
        _checkInvariants(raw, parseMessage(raw))
