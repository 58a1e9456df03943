"""
IMAP bad input against the real server, fuzzer-style: each class of line
that once reached a Python exception (8-bit command names, SEARCH
nesting and syntax, missing arguments, sequence sets, mailbox names,
literals, tags) gets its exact BAD or NO, the session goes on, the log
stays clean, and the next client reads its mail.
"""

from __future__ import annotations

import threading
import urllib.request

from tests.harness import CaptureServer
from tests.test_api import inbox, send
from tests.test_imap import Raw, _reserve, imaps

BODY = b"Subject: still here\r\n\r\nthe body\r\n"
NOT_SELECTED = b"BAD No mailbox selected"
LOG_IN_FIRST = b"BAD Log in first (LOGIN or AUTHENTICATE)"



def _cut(text: bytes) -> bytes:
    """
    An error text as a reply quotes it: at most 200 characters.
    """
    return text[:197] + b"..."


# (command line, its answer) in a session with a mailbox (one message)
# selected.  The answer is the tagged one, or for a line without a usable
# tag the untagged BAD (RFC 3501 7.1.3: no command can be named).
SELECTED: list[tuple[bytes, bytes]] = [
    # 8-bit bytes in a command line (UnicodeDecodeError in dispatch).
    (b"a \xff", b"a BAD Unsupported command"),
    (b"a FETCH\xff 1 (FLAGS)", b"a BAD Unsupported command"),
    (b"a NOOP\x00", b"a BAD Unsupported command"),
    (b"a UID \xff", b"a BAD Illegal syntax: Malformed ATOM"),
    # Commands without their arguments (AttributeError on None).
    (b"a FETCH", b"a BAD Illegal syntax: Missing message set"),
    (b"a FETCH 1", b"a BAD Illegal syntax: Missing FETCH items"),
    (b"a STORE 1", b"a BAD Illegal syntax: Missing argument"),
    (b"a STORE 1 +FLAGS", b"a BAD Illegal syntax: Missing flag list"),
    (b"a UID", b"a BAD Illegal syntax: Missing argument"),
    (b"a UID STORE", b"a BAD Illegal syntax: Missing message set"),
    (b"a UID EXPUNGE", b"a BAD Illegal syntax: Missing message set"),
    (b"a COPY", b"a BAD Illegal syntax: Missing message set"),
    (b"a COPY 1", b"a BAD Illegal syntax: Missing argument"),
    (b"a LIST", b"a BAD Illegal syntax: Missing argument"),
    (b'a LIST ""', b"a BAD Illegal syntax: Missing argument"),
    (b"a STATUS", b"a BAD Illegal syntax: Missing argument"),
    (b"a STATUS INBOX", b"a BAD Illegal syntax: Missing argument"),
    (b"a SELECT", b"a BAD Illegal syntax: Missing argument"),
    (b"a SEARCH", b"a BAD Empty search"),
    # SEARCH syntax (MismatchedNesting, ValueError, RecursionError).
    (b"a SEARCH )", b"a BAD Unmatched ')' in search keys"),
    (b"a SEARCH (FROM", b"a BAD Unmatched '(' in search keys"),
    (b"a SEARCH " + b"(" * 1000, b"a BAD Search keys nested too deeply (the limit is 32)"),
    (b"a SEARCH " + b"(" * 1000 + b"ALL" + b")" * 1000,
     b"a BAD Search keys nested too deeply (the limit is 32)"),
    (b"a SEARCH " + b"NOT " * 5000 + b"ALL", b"a BAD Search keys nested too deeply (the limit is 32)"),
    (b"a SEARCH " + b"OR ALL " * 5000 + b"ALL",
     b"a BAD Search keys nested too deeply (the limit is 32)"),
    (b"a SEARCH " + b"1:* " * 5000, b"a BAD Too many search keys (the limit is 1000)"),
    (b'a SEARCH FROM "', b"a BAD Unterminated quoted string in search keys"),
    (b"a SEARCH UID", b"a BAD Missing search argument"),
    (b"a SEARCH 1:x", b"a BAD Bad message set b'1:x'"),
    (b"a SEARCH LARGER \xc2\xb2", b"a BAD Bad size '?'"),
    (b"a SEARCH LARGER " + b"9" * 5000, b"a BAD Bad size '" + b"9" * 100 + b"'"),
    (b"a SEARCH SINCE 99-Foo-99999", b"a BAD Bad date '99-Foo-99999' (use 1-Feb-2024)"),
    (b"a SEARCH FROB", b"a BAD Unknown search key 'FROB'"),
    (b"a SEARCH CHARSET", b"a BAD Illegal syntax: Missing charset identifier"),
    (b"a SEARCH CHARSET UTF-8", b"a BAD Empty search"),
    # Sequence sets.
    (b"a UID FETCH x:y (FLAGS)", b"a BAD Illegal syntax: Bad message number b'x:y'"),
    (b"a FETCH 1:" + b"9" * 5000 + b" (FLAGS)",
     b"a BAD Illegal syntax: " + _cut(b"Bad message number b'1:" + b"9" * 5000)),
    (b"a UID EXPUNGE x", b"a BAD Illegal syntax: Bad message number b'x'"),
    # FETCH items.
    (b"a FETCH 1:* (BODY[1.2.3.4.5.",
     b"a BAD Illegal syntax: Unknown FETCH item: Unhandled section contents: b''"),
    (b"a FETCH 1 (FLAGS", b"a BAD Illegal syntax: Unknown FETCH item: Whitespace expected, none found"),
    (b"a FETCH 1 )", b"a BAD Illegal syntax: Unknown FETCH item: Nothing recognized in fetch_att: b')'"),
    (b"a FETCH 1 BINARY[1]",
     b"a BAD Illegal syntax: Unknown FETCH item: Nothing recognized in fetch_att: b'binary[1]'"),
    # STORE.
    (b"a STORE 1 +FLAGS (", b"a BAD Illegal syntax: Mismatched parenthesis"),
    (b"a STORE 1 +FLAGS (\xff)", b"a BAD Illegal syntax: Malformed flag"),
    (b"a STORE 1 FROB.SILENT x", b"a BAD Illegal syntax: Unknown STORE item b'FROB.SILENT'"),
    # Mailbox names (the internal _No escaped from COPY and MOVE).
    # A LIST pattern no mailbox name can match lists nothing (issue 12
    # item 10, as Dovecot answers); the other commands refuse the name.
    (b'a LIST "" &', b"a OK LIST completed"),
    (b'a LIST "\xff" *', b"a OK LIST completed"),
    (b'a COPY 1 "\xff"', b"a NO [CANNOT] Invalid mailbox name (modified UTF-7)"),
    (b"a MOVE 1 &", b"a NO [CANNOT] Invalid mailbox name (modified UTF-7)"),
    (b'a STATUS "\xff" (MESSAGES)', b"a NO [CANNOT] Invalid mailbox name (modified UTF-7)"),
    (b"a STATUS INBOX ((MESSAGES)", b"a BAD Illegal syntax: Mismatched parentheses"),
    (b"a STATUS INBOX MESSAGES", b"a BAD Illegal syntax: Missing parenthesis"),
    (b'a LIST "" "' + b"%*" * 600 + b'Z"', b"a NO [LIMIT] Mailbox pattern over 1024 characters"),
    # Too many arguments, echoed in a bounded reply.
    (b"a COPY 1 Trash extra", b"a BAD Illegal syntax: Too many arguments for command: b'extra'"),
    (b"a NOOP " + b"x" * 1000,
     b"a BAD Illegal syntax: " + _cut(b"Too many arguments for command: b'" + b"x" * 1000)),
    # Literals with bad counts.
    (b"a SELECT {-1}", b"a BAD Illegal syntax: Negative literal size"),
    (b"a SELECT {x}", b"a BAD Illegal syntax: Bad literal size: b'x'"),
    (b"a SELECT {5", b"a BAD Illegal syntax: Malformed literal"),
    (b"a SELECT {" + b"9" * 30 + b"}", b"a BAD [TOOBIG] Literal of " + b"9" * 30
     + b" octets; the limit is 65536"),
    (b"a SEARCH SUBJECT {" + b"9" * 30 + b"}", b"* SEARCH"),
    # A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1).
    (b'a SELECT "\xff"', b"a NO [CANNOT] Invalid mailbox name (modified UTF-7)"),
    (b"a FETCH 1 (FLAGS)", b"a " + NOT_SELECTED),
    # Tags.
    (b"", b"* BAD Null command"),
    (b" NOOP", b"* BAD Invalid tag"),
    (b"\xff NOOP", b"* BAD Invalid tag"),
    (b"a+ NOOP", b"* BAD Invalid tag"),
    (b"a\tNOOP", b"* BAD Invalid tag"),
    (b"t" * 65 + b" NOOP", b"* BAD Invalid tag"),
    (b"a", b"a BAD Missing command"),
]

# The same kinds of line before login, and the login commands' own.
UNAUTH: list[tuple[bytes, bytes]] = [
    (b"a \xff", b"a BAD Unsupported command"),
    (b"a LOGIN", b"a BAD Illegal syntax: Missing argument"),
    (b"a LOGIN x", b"a BAD Illegal syntax: Missing argument"),
    (b"a LOGIN {-1}", b"a BAD Illegal syntax: Negative literal size"),
    (b"a LOGIN x y z", b"a BAD Illegal syntax: Too many arguments for command: b'z'"),
    (b"a AUTHENTICATE", b"a BAD Illegal syntax: Missing argument"),
    (b"a STARTTLS x", b"a BAD Illegal syntax: Too many arguments for command: b'x'"),
    (b"a CAPABILITY x", b"a BAD Illegal syntax: Too many arguments for command: b'x'"),
    (b"a FETCH", b"a " + LOG_IN_FIRST),
    (b"a SEARCH " + b"(" * 1000, b"a " + LOG_IN_FIRST),
    (b'a SELECT "\xff"', b"a " + LOG_IN_FIRST),
    (b"", b"* BAD Null command"),
    (b"\xff NOOP", b"* BAD Invalid tag"),
    (b"t" * 65 + b" NOOP", b"* BAD Invalid tag"),
]


def _answer(raw: Raw) -> bytes:
    """
    The answer to the line just sent: its tagged line, or an untagged BAD,
    or (a SEARCH) its untagged SEARCH, whose OK follows.
    """
    while True:
        line = raw.line()
        if line.startswith((b"a ", b"* BAD", b"* BYE")):
            return line
        if line.startswith(b"* SEARCH"):
            assert raw.line() == b"a OK SEARCH completed"
            return line


def _runCorpus(raw: Raw, corpus: list[tuple[bytes, bytes]]) -> None:
    """
    Send each line, check its answer exactly, and that the session still
    serves a command (which also resets the count of errors in a row).
    """
    for line, expected in corpus:
        raw.send(line + b"\r\n")
        assert _answer(raw) == expected, line[:80]
        assert raw.command(b"n NOOP") == b"n OK NOOP completed", line[:80]


def _clean(log: str) -> None:
    assert "Traceback" not in log
    assert "Unhandled" not in log
    assert "IMAP command failed" not in log


def test_fuzzCorpusGetsBadOrNo(freshServer: CaptureServer) -> None:
    """
    Every line of the corpus, in a session with a mailbox selected and in
    one not logged in, gets its exact BAD or NO and the session goes on;
    nothing reaches the log; the next client logs in and reads its mail,
    unchanged.
    """
    server = freshServer
    account, key, address = _reserve(server)
    send(server, address, BODY)
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN " + account.encode() + b" " + key.encode()).startswith(b"a OK")
    assert raw.command(b"s SELECT Inboxes/" + address.encode()).startswith(b"s OK [READ-WRITE]")
    _runCorpus(raw, SELECTED)
    raw.close()
    raw = Raw(server, login=False)
    _runCorpus(raw, UNAUTH)
    raw.close()
    raw = Raw(server)
    assert raw.command(b"a FETCH 1 (FLAGS)") == b"a " + NOT_SELECTED
    raw.close()
    _clean(server.log())
    client = imaps(server, address, key)
    assert client.select("INBOX") == ("OK", [b"1"])
    status, data = client.fetch("1", "(FLAGS BODY.PEEK[TEXT])")
    assert status == "OK" and data[0][1] == b"the body\r\n"
    assert data[0][0].startswith(b"1 (FLAGS () BODY[TEXT]")
    client.logout()


def test_literalsWithOddCounts(freshServer: CaptureServer) -> None:
    """
    A literal shorter than what follows it leaves arguments over (BAD), an
    empty literal is an empty name, a LITERAL+ search string is searched;
    the session goes on and nothing is logged.
    """
    server = freshServer
    address = inbox()
    send(server, address, BODY)
    raw = Raw(server, login=False)
    raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode())
    raw.send(b"b SELECT {3}\r\n")
    assert raw.line() == b"+ Ready for 3 octets of text"
    raw.send(b"INBOXES\r\n")
    assert raw.line() == b"b BAD Illegal syntax: Too many arguments for command: b'OXES'"
    raw.send(b"c SELECT {0}\r\n")
    assert raw.line() == b"+ Ready for 0 octets of text"
    raw.send(b"\r\n")
    assert raw.line() == b"c NO [NONEXISTENT] No such mailbox"
    assert raw.command(b"d SELECT INBOX").startswith(b"d OK")
    raw.send(b"e SEARCH SUBJECT {5+}\r\nstill\r\n")
    assert raw.until(b"e") == [b"* SEARCH 1", b"e OK SEARCH completed"]
    raw.close()
    _clean(server.log())


def test_floodOfBadLinesClosedAfterTenErrors(freshServer: CaptureServer) -> None:
    """
    20,000 lines of C{a \\xff} in one burst (100 KB): nine tagged BADs, the
    tenth, then C{* BYE} and the connection closes, as SMTP closes after
    10 errors; the log gets nothing for it; errors separated by a tagged
    OK never add up (the corpus test); the next client is served.
    """
    server = freshServer
    before = len(server.log())
    raw = Raw(server)
    raw.send(b"a \xff\r\n" * 20_000)
    lines = []
    try:
        while True:
            lines.append(raw.line())
    except (ConnectionError, OSError):
        pass
    assert lines == [b"a BAD Unsupported command"] * 10 + [
        b"* BYE Too many errors, closing connection"]
    grown = server.log()[before:]
    _clean(grown)
    assert "\xff" not in grown and len(grown) < 1000
    client = imaps(server, server.account)
    assert client.noop()[0] == "OK"
    client.logout()


def test_listPatternDoesNotFreezeTheServer(freshServer: CaptureServer) -> None:
    """
    C{LIST "" "%*%*%*%*%*%*Z"} and the same with twelve wildcard pairs
    (Twisted's regular expression took 49 s on one name) answer with what
    they match, while an HTTP C{/livez} sent at the same time is answered;
    a pattern that does match lists its mailbox, and C{%} stays within one
    level.
    """
    server = freshServer
    account, key, address = _reserve(server)
    send(server, address, BODY)
    raw = Raw(server, login=False)
    raw.command(b"a LOGIN " + account.encode() + b" " + key.encode())
    livez: list[int] = []

    def probe() -> None:
        url = f"http://127.0.0.1:{server.ports['http']}/livez"
        with urllib.request.urlopen(url, timeout=20) as response:
            livez.append(response.status)

    for pattern in (b"%*" * 6 + b"Z", b"%*" * 12 + b"Z", b"%*" * 12 + b"Z" * 40):
        thread = threading.Thread(target=probe)
        raw.send(b'b LIST "" "' + pattern + b'"\r\n')
        thread.start()
        assert raw.until(b"b") == [b"b OK LIST completed"]
        thread.join()
    assert livez == [200, 200, 200]
    assert raw.exchange(b'c LIST "" "%*%*%*%*%*%*%*%*%*%*%*%*m"') == [
        b'* LIST (\\HasNoChildren) "/" "Inboxes/' + address.encode() + b'"',
        b"c OK LIST completed",
    ]
    assert raw.exchange(b'd LSUB "" "%"') == [
        b'* LSUB (\\HasNoChildren) "/" "INBOX"',
        b'* LSUB (\\Trash \\HasNoChildren) "/" "Trash"',
        b'* LSUB (\\Noselect \\HasChildren) "/" "Inboxes"',
        b"d OK LSUB completed",
    ]
    assert raw.exchange(b'e LIST "Inboxes/" "%"') == [
        b'* LIST (\\HasNoChildren) "/" "Inboxes/' + address.encode() + b'"',
        b"e OK LIST completed",
    ]
    assert raw.exchange(b'f LIST "" "Inboxes"') == [
        b'* LIST (\\Noselect \\HasChildren) "/" "Inboxes"', b"f OK LIST completed"]
    raw.close()
    _clean(server.log())
    client = imaps(server, address, key)
    assert client.select("INBOX") == ("OK", [b"1"])
    client.logout()
