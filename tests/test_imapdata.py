"""
ENVELOPE and BODYSTRUCTURE text, as ingest stores it (capture.imapdata):
plain ASCII whatever the message holds, and never broken by odd headers.
"""

from __future__ import annotations

import base64

from capture.imapdata import bodyStructure, envelope, quote
from capture.mime import parseMessage


def test_quoteEscapesAndEncodes() -> None:
    """
    Quotes and backslashes are escaped, missing values are NIL, non-ASCII
    text becomes an RFC 2047 encoded word, control characters go.
    """
    assert quote(None) == "NIL"
    assert quote('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'
    assert quote("Köln") == '"=?utf-8?b?' + base64.b64encode("Köln".encode()).decode() + '?="'
    assert quote("a\r\nb\0") == '"a b"'


def test_envelopeDefaultsSenderAndReplyToToFrom() -> None:
    """
    Sender and Reply-To default to From; absent fields are NIL; groups and
    bare names do not break the address lists.
    """
    raw = (b"From: A <a@x.example>\r\nTo: undisclosed-recipients:;\r\n"
           b"Cc: just-a-name\r\nSubject: s\r\n\r\nbody\r\n")
    text = envelope(raw)
    assert text.startswith('(NIL "s" (("A" NIL "a" "x.example")) (("A" NIL "a" "x.example")) '
                           '(("A" NIL "a" "x.example")) ')
    assert text.endswith(" NIL NIL NIL)")
    assert text.isascii()


def test_bodyStructureOfOddContentTypes() -> None:
    """
    A trailing ';', a missing subtype, 8-bit parameter values and a
    message/rfc822 part all give well-formed, ASCII BODYSTRUCTURE text.
    """
    for contentType in (b"text/plain; charset=utf-8;", b"text", b"text/plain; name=\xc3\xa9.txt",
                        b"multipart/mixed; boundary=x;;\xff\xfe=1", b"text/plain; a=b;\xff",
                        b"application/x-odd; a=\"b\\\"c\""):
        raw = b"Content-Type: " + contentType + b"\r\n\r\nhello\r\n"
        text = bodyStructure(raw, parseMessage(raw).structure)
        assert text.isascii() and text.startswith("(") and text.endswith(")")
        assert text.count("(") == text.count(")")
    raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nin\r\n--b--\r\n")
    text = bodyStructure(raw, parseMessage(raw).structure)
    assert '("message" "rfc822" NIL NIL NIL "7BIT" 20 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) ' \
           '("text" "plain" NIL NIL NIL "7BIT" 2 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)' in text
    basic = bodyStructure(raw, parseMessage(raw).structure, extended=False)
    assert basic.endswith(' "mixed")')
