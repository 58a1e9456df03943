"""
The byte handling of L{capture.pop3}: dot-stuffing, line ends and TOP.
"""

from __future__ import annotations

from capture.pop3 import multiline, top


def test_multilineStuffsEveryLineStart() -> None:
    assert multiline(b".first\r\nx\r\n.\r\n..\r\n") == b"..first\r\nx\r\n..\r\n...\r\n.\r\n"


def test_multilineWithoutFinalCRLF() -> None:
    """
    A message that does not end with CRLF gets one before the terminator,
    so the terminator stands on its own line.
    """
    assert multiline(b"Subject: a\r\n\r\nno end") == b"Subject: a\r\n\r\nno end\r\n.\r\n"
    assert multiline(b"") == b".\r\n"


def test_multilineKeepsCRLFAndFixesBareLF() -> None:
    """
    CRLF stays CRLF (never CR CR LF, gap P2); a bare LF becomes CRLF, and
    a dot after it is stuffed too.
    """
    assert multiline(b"a\r\nb\r\n") == b"a\r\nb\r\n.\r\n"
    assert multiline(b"a\n.b\r\nc\n") == b"a\r\n..b\r\nc\r\n.\r\n"


def test_top() -> None:
    raw = b"Subject: s\r\nFrom: f\r\n\r\n1\r\n2\r\n3\r\n"
    assert top(raw, 0) == b"Subject: s\r\nFrom: f\r\n\r\n"
    assert top(raw, 2) == b"Subject: s\r\nFrom: f\r\n\r\n1\r\n2\r\n"
    assert top(raw, 10) == raw
    # No body separator: all of it is header.
    assert top(b"Subject: s\r\n", 1) == b"Subject: s\r\n"
    # No header at all.
    assert top(b"\r\nbody\r\nmore\r\n", 1) == b"\r\nbody\r\n"
