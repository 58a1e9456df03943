"""
Messages whose ENVELOPE, BODYSTRUCTURE and sections are easy to get wrong
(issue 12 items 3, 4, 5): RFC 5322 groups, routes, comments, missing
domains, message/rfc822 parts at every level, a boundary folded inside its
quotes. Shared by tests/test_imap_compliance.py (exact answers) and
tests/test_imap_dovecot.py (the same answers as Dovecot's).
"""

from __future__ import annotations

CORPUS: dict[str, bytes] = {
    "group": (
        b"From: Alice <alice@example.com>\r\n"
        b"To: group: a@b.test, Carl <c@d.test>;, after@x.test\r\n"
        b"Cc: empty:;\r\nSubject: groups\r\n\r\nbody\r\n"
    ),
    "senderempty": (
        b"From: Alice <alice@example.com>\r\nSender:\r\nReply-To: \r\n"
        b"To: bob@example.org\r\nSubject: defaults\r\n\r\nbody\r\n"
    ),
    "route": (
        b"From: Joe <@relay.test,@two.test:joe@example.com>\r\n"
        b"To: <@r.test:x@y.test>\r\nSubject: route\r\n\r\nbody\r\n"
    ),
    "nodomain": (
        b"From: user\r\nTo: justlocal, other@x.test\r\nCc: \"Name\" <nodom>\r\n"
        b"Subject: nodomain\r\n\r\nbody\r\n"
    ),
    "comments": (
        b"From: user-from (comment) @ (comment) domain.org\r\n"
        b"To: a@b.test (A Person)\r\n"
        b"Cc: <user-from (comment)@ (comment) domain.org>\r\n"
        b"Bcc: (lead) x@y.test\r\nSubject: comments\r\n\r\nbody\r\n"
    ),
    "quoted": (
        b"From: \"Last, First\" <lf@example.com>\r\n"
        b"To: \"quoted\\\"q\" <q@x.test>, =?utf-8?q?J=C3=BCrgen?= <j@x.test>,\r\n"
        b" John Q. Public <jqp@x.test>\r\nSubject: quoted\r\n\r\nbody\r\n"
    ),
    "foldedboundary": (
        b"From: a@b.test\r\nSubject: folded\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"foo\r\n bar\"\r\n\r\n"
        b"--foo bar\r\nContent-Type: text/plain\r\n\r\none\r\n"
        b"--foo bar\r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n--foo bar--\r\n"
    ),
    "toprfc822": (
        b"From: outer@x.test\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: message/rfc822\r\n\r\n"
        b"From: inner@x.test\r\nSubject: inner\r\n\r\ninner body\r\n"
    ),
    "toprfc822multi": (
        b"From: outer@x.test\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: message/rfc822\r\n\r\n"
        b"From: inner@x.test\r\nSubject: inner\r\n"
        b"Content-Type: multipart/mixed; boundary=in\r\n\r\n"
        b"--in\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
        b"--in\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--in--\r\n"
    ),
    "nested": (
        b"From: outer@x.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=out\r\n\r\n"
        b"--out\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--out\r\nContent-Type: message/rfc822\r\nContent-Description: fwd\r\n\r\n"
        b"From: inner@x.test\r\nTo: group: a@b.test;\r\nSubject: inner\r\n"
        b"Content-Type: multipart/alternative; boundary=in\r\n\r\n"
        b"--in\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        b"--in\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--in--\r\n\r\n"
        b"--out\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: single@x.test\r\nSubject: single\r\n\r\nsingle body\r\n--out--\r\n"
    ),
    "plain": b"From: a@b.test\r\nSubject: plain\r\n\r\njust text\r\n",
}

SECTIONS = [
    "1", "1.MIME", "1.HEADER", "1.TEXT", "1.1", "1.2", "2", "2.MIME", "2.HEADER", "2.TEXT",
    "2.1", "2.2", "2.1.MIME", "3", "3.HEADER", "3.1", "3.TEXT", "HEADER", "TEXT", "1.1.1",
    "2.HEADER.FIELDS (SUBJECT)",
]
