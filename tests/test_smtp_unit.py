"""
Edge cases of L{capture.smtp.CaptureSMTP}, byte by byte, on a
L{StringTransport}.

The store is a real L{SQLiteStore} in a temporary directory.  Its writer and
reader threads report back through C{callFromThread}; here that goes to
L{_HandDrivenReactor}, so each test decides when the store's answers arrive
and can look at the session while a command is still waiting on the store.
"""

from __future__ import annotations

import base64
import os
import queue
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from capture.addresses import baseInbox
from capture.auth import LoginThrottle, makePortal
from capture.connections import GuardFactory, GuardSettings, Slots
from capture.ids import newApiKey
from capture.ingest import Ingest
from capture.smtp import (
    CaptureSMTP,
    IngestBudget,
    SMTPError,
    SMTPFactory,
    SMTPSettings,
    parsePath,
)
from capture.store.sqlite import DATABASE_NAME, SQLiteStore

ACCOUNT = "alice"


class _HandDrivenReactor:
    """
    Receives what the store's threads hand to the reactor thread and runs
    it only when a test pumps.
    """

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = (
            queue.Queue()
        )

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._calls.put((f, args, kwargs))

    def pumpUntil(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            try:
                f, args, kwargs = self._calls.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError("the store did not answer in time") from None
            f(*args, **kwargs)

    def settle(self, d: Deferred[Any]) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        self.pumpUntil(lambda: bool(results))
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]


@implementer(ITLSTransport)
class _TLSStringTransport(StringTransport):  # type: ignore[misc]  # TCP options unused
    """
    A L{StringTransport} that can start TLS, and remembers that it did.
    """

    tlsContext: object = None

    def startTLS(self, contextFactory: object) -> None:
        self.tlsContext = contextFactory


class _Backend:
    """
    One started store with one account, shared by this module's tests.
    """

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="capture-smtp-unit-")
        self.reactor = _HandDrivenReactor()
        self.store = SQLiteStore(self.directory, self.reactor)
        self.store.start()
        self.pool = ThreadPool(minthreads=0, maxthreads=1, name="smtp-unit-ingest")
        self.pool.start()
        self.ingest = Ingest(self.store, self.reactor, self.pool)
        self.key = newApiKey()
        self.reactor.settle(self.store.createAccount(ACCOUNT, self.key))
        self.portal = makePortal(self.store)

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(os.path.join(self.directory, DATABASE_NAME))
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def raw(self, queueId: str) -> bytes:
        rows = self.rows(
            "SELECT r.raw FROM message_raw r JOIN messages m ON m.id = r.message "
            "WHERE m.queue_id = ?",
            queueId,
        )
        assert len(rows) == 1, rows
        return bytes(rows[0][0])

    def messageCount(self) -> int:
        return int(self.rows("SELECT count(*) FROM messages")[0][0])


@pytest.fixture(scope="module")
def backend() -> Iterator[_Backend]:
    made = _Backend()
    yield made
    made.pool.stop()
    made.reactor.settle(made.store.stop())


class _Session:
    """
    One L{CaptureSMTP} on a string transport, with helpers to feed it and
    read its replies.
    """

    def __init__(self, backend: _Backend, tls: bool = False, **settings: Any) -> None:
        self.backend = backend
        self.clock = Clock()
        self.factory = SMTPFactory(
            backend.store, backend.portal, SMTPSettings(**settings),
            tlsOptions=object() if tls else None, clock=self.clock, ingest=backend.ingest,
        )
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert isinstance(proto, CaptureSMTP)
        self.proto = proto
        transportClass = _TLSStringTransport if tls else StringTransport
        self.transport = transportClass(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5587),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
        )
        self.proto.makeConnection(self.transport)
        self._read = 0

    def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.proto.dataReceived(chunk)

    def lines(self) -> list[bytes]:
        return self.transport.value().split(b"\r\n")[:-1]

    def replies(self) -> list[bytes]:
        """
        Every whole reply sent so far (multi-line replies joined by
        newlines), the greeting included.
        """
        out: list[bytes] = []
        current: list[bytes] = []
        for line in self.lines():
            current.append(line)
            if line[3:4] != b"-":
                out.append(b"\n".join(current))
                current = []
        return out

    def new(self) -> list[bytes]:
        """
        The replies sent since the last call.
        """
        replies = self.replies()
        fresh, self._read = replies[self._read :], len(replies)
        return fresh

    def waitForReplies(self, count: int) -> list[bytes]:
        """
        Pump the store until C{count} replies more than already read have
        been sent; return them.
        """
        self.backend.reactor.pumpUntil(lambda: len(self.replies()) >= self._read + count)
        return self.new()

    def login(self) -> None:
        token = base64.b64encode(b"\0" + ACCOUNT.encode() + b"\0" + self.backend.key.encode())
        self.feed(b"AUTH PLAIN " + token + b"\r\n")
        assert self.waitForReplies(1) == [b"235 2.7.0 Authentication successful"]


def _session(backend: _Backend, **settings: Any) -> _Session:
    """
    An anonymous-friendly session past its greeting, so a test can send
    mail without AUTH.
    """
    settings.setdefault("allowAnonymous", True)
    session = _Session(backend, **settings)
    assert session.new() == [b"220 localhost ESMTP Capture ready"]
    return session


def _queueId(reply: bytes) -> str:
    assert reply.startswith(b"250 OK : queued as "), reply
    return reply.rsplit(b" ", 1)[1].decode()


def _body(raw: bytes) -> bytes:
    """
    The stored bytes after Capture's own C{Received:} trace line and its
    folded continuation lines.
    """
    assert raw.startswith(b"Received: from "), raw
    first, rest = raw.split(b"\r\n", 1)
    assert rest.startswith(b"\tby localhost (Capture) with ESMTP"), rest
    while rest.startswith(b"\t"):
        rest = rest.split(b"\r\n", 1)[1]
    return rest


_ENVELOPE = b"EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
_MESSAGE = (
    b"Subject: split\r\n"
    b"\r\n"
    b"..leading dot\r\n"
    b"..\r\n"
    b"...\r\n"
    b"last line\n\r\n"
    b".\r\n"
)
_UNSTUFFED = b"Subject: split\r\n\r\n.leading dot\r\n.\r\n..\r\nlast line\n\r\n"


def _checkSplitSession(session: _Session) -> str:
    replies = session.waitForReplies(5)
    assert [r[:4] for r in replies] == [b"250-", b"250 ", b"250 ", b"354 ", b"250 "], replies
    queueId = _queueId(replies[-1])
    assert _body(session.backend.raw(queueId)) == _UNSTUFFED
    return queueId


def test_sessionSplitAtEveryByteBoundary(backend: _Backend) -> None:
    """
    A whole transaction cut into two packets at every possible place
    (including between each CR and its LF) gets the same replies, and the
    same message is stored, dot-unstuffed, each time.
    """
    script = _ENVELOPE + _MESSAGE
    for cut in range(1, len(script)):
        session = _session(backend)
        session.feed(script[:cut], script[cut:])
        _checkSplitSession(session)


def test_sessionOneByteAtATime(backend: _Backend) -> None:
    """
    A transaction fed one byte per packet is understood exactly like one
    sent in a single packet.
    """
    session = _session(backend)
    script = _ENVELOPE + _MESSAGE
    session.feed(*(script[i : i + 1] for i in range(len(script))))
    _checkSplitSession(session)


def test_dotUnstuffing() -> None:
    """
    Lines that start with a dot lose exactly one leading dot; a lone dot
    ends the data.  (Checked end to end in
    L{test_sessionSplitAtEveryByteBoundary}; this states the expected
    transformation on its own.)
    """
    assert _UNSTUFFED.count(b"\r\n.leading dot\r\n") == 1
    assert b"\r\n..\r\n" in _UNSTUFFED


def test_lineOfExactlyTheLimitSplitBeforeItsLF(backend: _Backend) -> None:
    """
    A data line exactly as long as the limit is accepted however it is
    split, even when a packet ends between its CR and its LF.
    """
    limit = 100
    line = b"x" * limit
    session = _session(backend, maxLineLength=limit)
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    assert [r[:3] for r in session.new()] == [b"250", b"250", b"354"]
    session.feed(b"Subject: limit\r\n\r\n" + line + b"\r", b"\n.\r\n")
    queueId = _queueId(session.waitForReplies(1)[0])
    assert _body(backend.raw(queueId)) == b"Subject: limit\r\n\r\n" + line + b"\r\n"


def test_commandOfExactlyTheLimitSplitBeforeItsLF(backend: _Backend) -> None:
    """
    A command line exactly as long as the command limit is run, even when
    a packet ends between its CR and its LF.
    """
    session = _session(backend, maxCommandLength=64)
    command = b"NOOP " + b"x" * 59
    assert len(command) == 64
    session.feed(command + b"\r", b"\n")
    assert session.new() == [b"250 2.0.0 OK"]


def test_overlongCommandInPiecesGetsOneError(backend: _Backend) -> None:
    """
    A command line over the limit, arriving in small pieces (one of them
    ending between CR and LF), gets exactly one C{500}, is never run (it
    reads QUIT), and the session goes on.
    """
    session = _session(backend, maxCommandLength=64)
    line = b"QUIT " + b"y" * 300 + b"\r\n"
    pieces = [line[i : i + 7] for i in range(0, len(line) - 1, 7)]
    if pieces[-1].endswith(b"\r\n"):
        pieces[-1:] = [pieces[-1][:-1], b"\n"]
    session.feed(*pieces)
    assert session.new() == [b"500 5.5.2 Line too long"]
    assert not session.transport.disconnecting
    session.feed(b"NOOP\r\n")
    assert session.new() == [b"250 2.0.0 OK"]


def test_overlongDataLineNeverBecomesCommands(backend: _Backend) -> None:
    """
    A data line over the limit, arriving in pieces, rejects the message at
    its end with one reply; the command-looking lines after it are message
    data, never run (gap S2), and nothing is stored.
    """
    session = _session(backend, maxLineLength=100)
    before = backend.messageCount()
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    assert [r[:3] for r in session.new()] == [b"250", b"250", b"354"]
    longLine = b"z" * 250 + b"\r"
    session.feed(b"Subject: long\r\n\r\n")
    session.feed(*(longLine[i : i + 30] for i in range(0, len(longLine), 30)))
    session.feed(b"\nRSET\r\nQUIT\r\nMAIL FROM:<x@example.com>\r\nNOOP\r\n")
    assert session.new() == []
    session.feed(b".\r\n")
    assert session.new() == [b"500 5.5.2 Line too long (limit 100 octets); message rejected"]
    assert not session.transport.disconnecting
    session.feed(b"RCPT TO:<c@example.org>\r\n")
    assert session.new() == [b"503 5.5.1 Need MAIL before RCPT"]
    assert backend.messageCount() == before


def test_bareLineFeedEndAnsweredPromptly(backend: _Backend) -> None:
    """
    DATA ended with LF.LF gets a C{554} once the client has been silent for
    a second (no waiting for the idle timeout), nothing is stored, and the
    connection is closed so nothing sent after it can be read as commands.
    """
    session = _session(backend)
    before = backend.messageCount()
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    session.new()
    session.feed(b"Subject: bare\n\nhello\n.\n")
    assert session.new() == []
    session.clock.advance(1)
    assert session.new() == [
        b"554 5.6.0 Message ended with a bare LF; end DATA with <CRLF>.<CRLF>"
    ]
    assert session.transport.disconnecting
    session.feed(b"RSET\r\nMAIL FROM:<smuggled@example.com>\r\nNOOP\r\n")
    assert session.new() == []
    assert backend.messageCount() == before


def test_lineFeedDotAtPacketEndInsideAMessage(backend: _Backend) -> None:
    """
    A proper message whose packet happens to end in LF.LF, with CRLF.CRLF
    still to come, is not cut there: it is stored whole, and what looks
    like a second transaction inside it stays message content (no SMTP
    smuggling).
    """
    session = _session(backend)
    before = backend.messageCount()
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    session.new()
    session.feed(b"Subject: s\r\n\r\nx\n.\n")
    session.clock.advance(0.5)
    session.feed(
        b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\n.\r\n"
    )
    session.clock.advance(5)
    replies = session.waitForReplies(1)
    queueId = _queueId(replies[0])
    assert _body(backend.raw(queueId)) == (
        b"Subject: s\r\n\r\nx\n.\nMAIL FROM:<evil@example.com>\r\n"
        b"RCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\n"
    )
    assert backend.messageCount() == before + 1
    assert not session.transport.disconnecting


def test_storeThatNeverAnswers(backend: _Backend) -> None:
    """
    When the store does not answer within its timeout, the client gets
    C{451 4.3.0} instead of waiting forever, and the session goes on.
    """
    session = _session(backend, storeTimeout=30.0)
    stuck = threading.Event()
    held = backend.store._write(lambda conn: stuck.wait(30))
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    session.new()
    session.feed(b"Subject: stuck\r\n\r\nhi\r\n.\r\nNOOP\r\n")
    assert session.new() == []
    session.clock.advance(30)
    assert session.new() == [
        b"451 4.3.0 Temporary storage failure, try again later",
        b"250 2.0.0 OK",
    ]
    stuck.set()
    backend.reactor.settle(held)


def test_lineFeedAtPacketEndIsNotTakenForTheEnd(backend: _Backend) -> None:
    """
    Packets of a CRLF message that end in an LF (a bare LF inside a line,
    or the LF of a dot line) are not mistaken for a bare-LF end of data.
    """
    session = _session(backend)
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    session.new()
    session.feed(b"Subject: lf\r\n\r\nodd\n", b"line\r\n.", b".\n", b"\r\n.\r", b"\n")
    queueId = _queueId(session.waitForReplies(1)[0])
    assert _body(backend.raw(queueId)) == b"Subject: lf\r\n\r\nodd\nline\r\n.\n\r\n"


def test_headerlessBodyGetsBlankLineAfterReceived(backend: _Backend) -> None:
    """
    A message that starts with body text, not a header, is stored with an
    empty line between Capture's C{Received:} header and that text; one
    that starts with a header is stored as sent.
    """
    session = _session(backend)
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    session.feed(b"just a body line\r\n.\r\n")
    queueId = _queueId(session.waitForReplies(4)[-1])
    assert _body(backend.raw(queueId)) == b"\r\njust a body line\r\n"
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    session.feed(b"X-Header: yes\r\n\r\nbody\r\n.\r\n")
    queueId = _queueId(session.waitForReplies(4)[-1])
    assert _body(backend.raw(queueId)) == b"X-Header: yes\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("argument", "keyword", "address", "params"),
    [
        (b"FROM:<a@example.com>", b"FROM", "a@example.com", {}),
        (b"from:<a@example.com>", b"FROM", "a@example.com", {}),
        (b"FROM: <a@example.com>", b"FROM", "a@example.com", {}),
        (b"FROM:a@example.com", b"FROM", "a@example.com", {}),
        (b"FROM:<>", b"FROM", "", {}),
        (b'FROM:<"john doe"@example.com>', b"FROM", '"john doe"@example.com', {}),
        (b'TO:<"a@b"@example.com>', b"TO", '"a@b"@example.com', {}),
        (b"TO:<@r1.example,@r2.example:user@example.com>", b"TO", "user@example.com", {}),
        (
            b"FROM:<a@example.com> SIZE=1000 BODY=8BITMIME SMTPUTF8",
            b"FROM",
            "a@example.com",
            {"SIZE": "1000", "BODY": "8BITMIME", "SMTPUTF8": ""},
        ),
        (b"FROM:<a@example.com> x-unknown=1", b"FROM", "a@example.com", {"X-UNKNOWN": "1"}),
        (
            "TO:<δοκιμή@παράδειγμα.δοκιμή>".encode(),
            b"TO",
            "δοκιμή@παράδειγμα.δοκιμή",
            {},
        ),
    ],
)
def test_parsePathAccepts(
    argument: bytes, keyword: bytes, address: str, params: dict[str, str]
) -> None:
    """
    Well-formed MAIL and RCPT arguments: any case, optional brackets,
    quoted local parts, source routes (dropped), ESMTP parameters and
    UTF-8 addresses.
    """
    assert parsePath(argument, keyword) == (address, params)


@pytest.mark.parametrize(
    ("argument", "keyword", "code", "text"),
    [
        (b"TO:<>", b"TO", 553, b"5.1.3 Bad recipient address syntax"),
        (b"TO:<a@example.com>", b"FROM", 501, b"5.5.4 Syntax: MAIL FROM:<address>"),
        (b"", b"TO", 501, b"5.5.4 Syntax: RCPT TO:<address>"),
        (b"FROM:<nodomain>", b"FROM", 501, b"5.1.7 Bad sender address syntax"),
        (b"TO:<nodomain>", b"TO", 553, b"5.1.3 <nodomain>: not a valid address"),
        (b"TO:<a\x00 b@x.test>", b"TO", 553, b"5.1.3 <a\\x00 b@x.test>: not a valid address"),
        (b"FROM:<a b@example.com>", b"FROM", 501, b"5.1.7 Bad sender address syntax"),
        (b"FROM:<a@example.com> =x", b"FROM", 501, b"5.5.4 Bad parameter syntax"),
        (b"TO:<\xff@example.com>", b"TO", 553, b"5.6.7 Address is not valid UTF-8"),
    ],
)
def test_parsePathRejects(argument: bytes, keyword: bytes, code: int, text: bytes) -> None:
    """
    Malformed arguments raise L{SMTPError} with the reply to send; the
    empty reverse path is fine for MAIL but not for RCPT.
    """
    with pytest.raises(SMTPError) as caught:
        parsePath(argument, keyword)
    assert (caught.value.code, caught.value.text) == (code, text)


@pytest.mark.parametrize(
    ("address", "inbox"),
    [
        ("Bob@Example.COM", "bob@example.com"),
        ("bob+tag@example.com", "bob@example.com"),
        ("bob+a+b@example.com", "bob@example.com"),
        ("+tag@example.com", "+tag@example.com"),
        ("Δοκιμή+x@Παράδειγμα.δοκιμή", "δοκιμή@παράδειγμα.δοκιμή"),
        ('"john+doe"@example.com', "john@example.com"),
        ("Info@XN--EXMPLE-CUA.test", "info@exämple.test"),
    ],
)
def test_baseInbox(address: str, inbox: str) -> None:
    """
    Plus-addressing files into the base inbox, lower-cased, the domain as
    U-labels; a local part that is only a tag is kept whole, and quotes
    that change nothing are dropped (RFC 5322 3.4.1).
    """
    assert baseInbox(address) == inbox


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"MAIL FROM:<a@example.com> FOO=bar", b"555 5.5.4 Unsupported parameter FOO"),
        (b"MAIL FROM:<a@example.com> BODY=BINARYMIME", b"555 5.5.4 Unsupported BODY type"),
        (b"MAIL FROM:<a@example.com> SIZE=big", b"501 5.5.4 Bad SIZE parameter"),
        (
            b"MAIL FROM:<a@example.com> SIZE=1001",
            b"552 5.3.4 Message size exceeds fixed maximum message size",
        ),
    ],
)
def test_mailParametersChecked(backend: _Backend, command: bytes, reply: bytes) -> None:
    """
    MAIL parameters Capture does not support, or a declared SIZE over the
    limit, are refused with the matching code; the session goes on.
    """
    session = _session(backend, maxMessageSize=1000)
    session.feed(command + b"\r\n", b"MAIL FROM:<a@example.com> SIZE=1000 BODY=7BIT\r\n")
    assert session.new() == [reply, b"250 2.1.0 Accepted"]


def test_rcptParametersRefused(backend: _Backend) -> None:
    """
    RCPT takes no parameters (DSN is not offered): C{555}, and the
    transaction goes on.
    """
    session = _session(backend)
    session.feed(
        b"MAIL FROM:<a@example.com>\r\n",
        b"RCPT TO:<b@example.org> NOTIFY=NEVER\r\n",
        b"RCPT TO:<b@example.org>\r\n",
    )
    assert session.new() == [
        b"250 2.1.0 Accepted",
        b"555 5.5.4 Unsupported parameter NOTIFY",
        b"250 2.1.5 Accepted",
    ]


def test_commandOrder(backend: _Backend) -> None:
    """
    Commands out of order get C{503}/C{554} and change nothing: RCPT or
    DATA before MAIL, DATA without a recipient, a second MAIL, AUTH inside
    a transaction.
    """
    session = _session(backend, allowInsecureAuth=True)
    session.feed(
        b"RCPT TO:<b@example.org>\r\n",
        b"DATA\r\n",
        b"MAIL FROM:<a@example.com>\r\n",
        b"DATA\r\n",
        b"MAIL FROM:<c@example.com>\r\n",
        b"AUTH PLAIN AGFsaWNlAGtleQ==\r\n",
        b"RCPT TO:<b@example.org>\r\n",
    )
    assert session.new() == [
        b"503 5.5.1 Need MAIL before RCPT",
        b"503 5.5.1 Need MAIL before DATA",
        b"250 2.1.0 Accepted",
        b"554 5.5.1 No valid recipients",
        b"503 5.5.1 Sender already specified",
        b"503 5.5.1 AUTH not allowed during a mail transaction",
        b"250 2.1.5 Accepted",
    ]


@pytest.mark.parametrize("greeting", [b"HELO client.example", b"EHLO client.example"])
def test_greetingResetsTheTransaction(backend: _Backend, greeting: bytes) -> None:
    """
    HELO and EHLO in the middle of a transaction abandon it (RFC 5321
    4.1.4): DATA afterwards has no sender.
    """
    session = _session(backend)
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
    session.feed(greeting + b"\r\n", b"DATA\r\n")
    replies = session.new()
    assert replies[2].split(b"\n")[0][4:] == b"localhost Hello client.example"
    assert replies[3] == b"503 5.5.1 Need MAIL before DATA"


def test_rsetResetsTheTransaction(backend: _Backend) -> None:
    """
    RSET abandons the transaction: DATA afterwards has no sender.
    """
    session = _session(backend)
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nRSET\r\nDATA\r\n")
    assert session.new()[2:] == [b"250 2.0.0 OK", b"503 5.5.1 Need MAIL before DATA"]


def test_pipelinedMailWaitsForAuth(backend: _Backend) -> None:
    """
    A MAIL pipelined right behind AUTH is not read until the store has
    checked the key: nothing is answered meanwhile, then C{235} and the
    MAIL's C{250}, in order (gap S3).
    """
    session = _Session(backend, allowInsecureAuth=True)
    session.new()
    token = base64.b64encode(b"\0" + ACCOUNT.encode() + b"\0" + backend.key.encode())
    session.feed(b"AUTH PLAIN " + token + b"\r\nMAIL FROM:<a@example.com>\r\n")
    assert session.new() == []
    assert session.waitForReplies(2) == [
        b"235 2.7.0 Authentication successful",
        b"250 2.1.0 Accepted",
    ]


def test_pipelinedMailAfterFailedAuth(backend: _Backend) -> None:
    """
    A MAIL pipelined behind an AUTH with a wrong key is answered after
    the C{535}, with C{530}.
    """
    session = _Session(backend, allowInsecureAuth=True)
    session.new()
    token = base64.b64encode(b"\0" + ACCOUNT.encode() + b"\0k_wrong")
    session.feed(b"AUTH PLAIN " + token + b"\r\nMAIL FROM:<a@example.com>\r\n")
    assert session.new() == []
    assert session.waitForReplies(2) == [
        b"535 5.7.8 Authentication credentials invalid",
        b"530 5.7.0 Authentication required",
    ]


def test_pipelinedTransactionsWaitForTheStore(backend: _Backend) -> None:
    """
    A second transaction pipelined behind the end of DATA waits until the
    first message is durable, so the replies keep their order; while it
    waits and more than 1 MiB is buffered, reading from the socket pauses,
    and resumes after.
    """
    session = _session(backend)
    transaction = (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
        b"Subject: pipelined\r\n\r\nbody\r\n.\r\n"
    )
    session.feed(transaction + transaction)
    assert [r[:3] for r in session.new()] == [b"250", b"250", b"354"]
    session.feed(*(b"NOOP " + b"n" * 4000 + b"\r\n" for _ in range(300)))
    assert session.transport.producerState == "paused"
    replies = session.waitForReplies(4)
    assert [r[:4] for r in replies] == [b"250 ", b"250 ", b"250 ", b"354 "]
    assert replies[0].startswith(b"250 OK : queued as ")
    replies = session.waitForReplies(1)
    assert replies[0].startswith(b"250 OK : queued as ")
    assert session.transport.producerState == "producing"


def test_starttlsDropsPipelinedCommands(backend: _Backend) -> None:
    """
    Commands pipelined in the same packet as STARTTLS are thrown away
    (gap S1); after TLS the session starts over: AUTH is offered, STARTTLS
    is not, and the transaction from before is forgotten.
    """
    session = _Session(backend, tls=True, allowAnonymous=True)
    session.new()
    session.feed(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\n")
    ehlo = session.new()[0]
    assert b"250-STARTTLS" in ehlo and b"AUTH" not in ehlo
    session.feed(b"STARTTLS\r\nNOOP\r\nRCPT TO:<b@example.org>\r\n")
    assert session.new() == [b"220 2.0.0 Ready to start TLS"]
    assert isinstance(session.transport, _TLSStringTransport)
    assert session.transport.tlsContext is not None
    session.feed(b"EHLO c\r\nRCPT TO:<b@example.org>\r\n")
    ehlo, rcpt = session.new()
    assert b"250-AUTH PLAIN LOGIN" in ehlo and b"STARTTLS" not in ehlo
    assert rcpt == b"503 5.5.1 Need MAIL before RCPT"


def test_tooManyRecipients(backend: _Backend) -> None:
    """
    RCPT past the recipient limit gets C{452 4.5.3}; the message goes on
    with the recipients already accepted.
    """
    session = _session(backend, maxRecipients=3)
    session.feed(b"MAIL FROM:<a@example.com>\r\n")
    session.feed(*(b"RCPT TO:<r%d@example.org>\r\n" % i for i in range(4)))
    assert session.new()[1:] == [b"250 2.1.5 Accepted"] * 3 + [b"452 4.5.3 Too many recipients"]
    session.feed(b"DATA\r\nSubject: x\r\n\r\n.\r\n")
    queueId = _queueId(session.waitForReplies(2)[-1])
    assert backend.rows(
        "SELECT c.inbox FROM copies c JOIN messages m ON m.id = c.message "
        "WHERE m.queue_id = ? ORDER BY c.n",
        queueId,
    ) == [("r0@example.org",), ("r1@example.org",), ("r2@example.org",)]


def test_messageTooBigWhileStreaming(backend: _Backend) -> None:
    """
    A message that grows past the size limit is swallowed to its end and
    refused with C{552 5.3.4}; nothing is stored and the next transaction
    on the same session works.
    """
    session = _session(backend, maxMessageSize=1000)
    before = backend.messageCount()
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    session.feed(b"Subject: big\r\n\r\n", *(b"%0100d\r\nQUIT\r\n" % i for i in range(20)))
    assert session.new()[2:] == [b'354 Enter message, ending with "." on a line by itself']
    session.feed(b".\r\n")
    assert session.new() == [b"552 5.3.4 Message size exceeds fixed maximum message size"]
    assert backend.messageCount() == before
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nhi\r\n.\r\n")
    _queueId(session.waitForReplies(4)[-1])


def test_tooManyErrorsCloses(backend: _Backend) -> None:
    """
    After C{maxErrors} protocol errors the server answers C{421} and hangs
    up.
    """
    session = _session(backend, maxErrors=4)
    session.feed(b"BOGUS\r\n" * 3)
    assert session.new() == [b"500 5.5.2 Syntax error, command unrecognized"] * 3
    assert not session.transport.disconnecting
    session.feed(b"\x00\xff\xfe junk\r\nNOOP\r\n")
    assert session.new() == [b"421 4.7.0 localhost Too many errors, closing connection"]
    assert session.transport.disconnecting


@pytest.mark.parametrize(
    ("lines", "replies"),
    [
        ([b"AUTH"], [b"501 5.5.4 Syntax: AUTH mechanism [initial-response]"]),
        ([b"AUTH PLAIN !!!"], [b"501 5.5.2 Cannot decode the authentication response"]),
        (
            [b"AUTH PLAIN " + base64.b64encode(b"no nuls")],
            [b"501 5.5.2 Cannot decode the authentication response"],
        ),
        ([b"AUTH CRAM-MD5"], [b"504 5.5.4 Unrecognized authentication type"]),
        ([b"AUTH LOGIN", b"*"], [b"334 VXNlcm5hbWU6", b"501 5.0.0 Authentication cancelled"]),
        (
            [b"AUTH LOGIN " + base64.b64encode(b"alice"), b"*"],
            [b"334 UGFzc3dvcmQ6", b"501 5.0.0 Authentication cancelled"],
        ),
        ([b"AUTH PLAIN", b"*"], [b"334 ", b"501 5.0.0 Authentication cancelled"]),
    ],
)
def test_badAuthKeepsTheSession(backend: _Backend, lines: list[bytes], replies: list[bytes]) -> None:
    """
    A bare AUTH, bad base64, a malformed PLAIN response, an unknown
    mechanism and a cancelled exchange each get their error (gap S7) and
    the session goes on.
    """
    session = _Session(backend, allowInsecureAuth=True)
    session.new()
    session.feed(*(line + b"\r\n" for line in lines))
    assert session.new() == replies
    session.feed(b"NOOP\r\n")
    assert session.new() == [b"250 2.0.0 OK"]


def test_authBeforeTLSRefused(backend: _Backend) -> None:
    """
    Without TLS (and without C{allowInsecureAuth}) AUTH is not offered and
    is refused with C{538}; MAIL without AUTH gets C{530}.
    """
    session = _Session(backend, tls=True)
    session.new()
    token = base64.b64encode(b"\0" + ACCOUNT.encode() + b"\0" + backend.key.encode())
    session.feed(b"EHLO c\r\n", b"AUTH PLAIN " + token + b"\r\n", b"MAIL FROM:<a@example.com>\r\n")
    ehlo, auth, mail = session.new()
    assert b"AUTH" not in ehlo
    assert auth == b"538 5.7.11 Encryption required for requested authentication mechanism"
    assert mail == b"530 5.7.0 Authentication required"


def test_authLoginStepByStep(backend: _Backend) -> None:
    """
    AUTH LOGIN without an initial response asks for the user name, then
    the password, and logs in; the account's mail is tagged with it.
    """
    session = _Session(backend, allowInsecureAuth=True)
    session.new()
    session.feed(b"AUTH LOGIN\r\n", base64.b64encode(ACCOUNT.encode()) + b"\r\n")
    assert session.new() == [b"334 VXNlcm5hbWU6", b"334 UGFzc3dvcmQ6"]
    session.feed(base64.b64encode(backend.key.encode()) + b"\r\n")
    assert session.waitForReplies(1) == [b"235 2.7.0 Authentication successful"]
    session.feed(b"AUTH PLAIN =\r\n")
    assert session.new() == [b"503 5.5.1 Already authenticated"]
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nhi\r\n.\r\n")
    queueId = _queueId(session.waitForReplies(4)[-1])
    assert backend.rows("SELECT account FROM messages WHERE queue_id = ?", queueId) == [(ACCOUNT,)]


def test_idleTimeout(backend: _Backend) -> None:
    """
    A session silent for the idle timeout gets C{421 4.4.2} and is closed;
    every packet received restarts the wait.
    """
    session = _session(backend, idleTimeout=30.0)
    session.clock.advance(29)
    session.feed(b"NO")
    session.clock.advance(29)
    assert not session.transport.disconnecting
    session.clock.advance(1)
    assert session.new() == [b"421 4.4.2 localhost Idle timeout, closing connection"]
    assert session.transport.disconnecting


def test_tooManyConnections(backend: _Backend) -> None:
    """
    Past the listener's cap (counted by the guard every listener has) a
    client gets C{421} at once; when a session ends, a new client is served
    again.
    """
    clock = Clock()
    factory = GuardFactory(
        SMTPFactory(backend.store, backend.portal, SMTPSettings(), ingest=backend.ingest),
        GuardSettings(), clock,
        Slots(limit=1, perAddress=1),
    )
    address = IPv4Address("TCP", "127.0.0.1", 40001)
    first = factory.buildProtocol(address)
    assert first is not None
    first.wrappedProtocol.callLater = clock.callLater  # type: ignore[attr-defined]
    first.makeConnection(StringTransport())
    refused = factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 40001))
    assert refused is not None
    transport = StringTransport()
    refused.makeConnection(transport)
    assert transport.value() == b"421 4.7.0 Too many connections, try again later\r\n"
    assert transport.disconnecting
    refused.connectionLost(Failure(ConnectionError()))
    first.connectionLost(Failure(ConnectionError()))
    served = factory.buildProtocol(address)
    assert served is not None
    assert isinstance(served.wrappedProtocol, CaptureSMTP)
    served.wrappedProtocol.callLater = clock.callLater  # type: ignore[method-assign,assignment]
    transport = StringTransport()
    served.makeConnection(transport)
    assert transport.value() == b"220 localhost ESMTP Capture ready\r\n"


def test_tooManyConnectionsFromOneAddress(backend: _Backend) -> None:
    """
    Past the cap per client address, that address gets its own C{421};
    another address is still served.
    """
    clock = Clock()
    factory = GuardFactory(
        SMTPFactory(backend.store, backend.portal, SMTPSettings(), ingest=backend.ingest),
        GuardSettings(), clock,
        Slots(limit=10, perAddress=1),
    )
    first = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
    assert first is not None
    first.wrappedProtocol.callLater = clock.callLater  # type: ignore[attr-defined]
    first.makeConnection(StringTransport())
    refused = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40002))
    assert refused is not None
    transport = StringTransport()
    refused.makeConnection(transport)
    assert transport.value() == (
        b"421 4.7.0 Too many connections from your address, try again later\r\n"
    )
    other = factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 40001))
    assert other is not None
    assert isinstance(other.wrappedProtocol, CaptureSMTP)


@pytest.mark.parametrize("verb", [b"HELO", b"EHLO"])
def test_greetingNeedsAnArgument(backend: _Backend, verb: bytes) -> None:
    """
    HELO and EHLO without a host name get C{501} (RFC 5321 4.1.1.1) and
    the session goes on.
    """
    session = _session(backend)
    session.feed(verb + b"\r\n", verb + b" \r\n", b"NOOP\r\n")
    assert session.new() == [b"501 5.5.4 Syntax: " + verb + b" hostname"] * 2 + [b"250 2.0.0 OK"]


def test_postmasterWithoutDomainAccepted(backend: _Backend) -> None:
    """
    C{RCPT TO:<Postmaster>} with no domain is accepted (RFC 5321 4.5.1) and
    filed in the postmaster inbox of the server's host name.
    """
    session = _session(backend)
    session.feed(
        b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nhi\r\n.\r\n"
    )
    replies = session.waitForReplies(5)
    assert replies[2] == b"250 2.1.5 Accepted"
    queueId = _queueId(replies[-1])
    rows = backend.rows(
        "SELECT c.inbox, c.original_inbox FROM copies c JOIN messages m ON m.id = c.message "
        "WHERE m.queue_id = ?",
        queueId,
    )
    assert rows == [("postmaster@localhost", "postmaster@localhost")]


def test_sameRecipientTwiceIsOneCopy(backend: _Backend) -> None:
    """
    The same address given twice (in any case) is one recipient and gets
    one copy; a different plus-address of the same inbox gets its own.
    """
    session = _session(backend)
    session.feed(
        b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
        b"RCPT TO:<B@Example.org>\r\nRCPT TO:<b+x@example.org>\r\nDATA\r\nhi\r\n.\r\n"
    )
    replies = session.waitForReplies(7)
    assert replies[2:5] == [b"250 2.1.5 Accepted"] * 3
    queueId = _queueId(replies[-1])
    rows = backend.rows(
        "SELECT c.inbox, c.original_inbox FROM copies c JOIN messages m ON m.id = c.message "
        "WHERE m.queue_id = ? ORDER BY c.n",
        queueId,
    )
    assert rows == [("b@example.org", "b@example.org"), ("b@example.org", "b+x@example.org")]


def test_receivedLineTagsIPv6(backend: _Backend) -> None:
    """
    The C{Received:} line writes an IPv6 peer as an RFC 5321 address
    literal, C{[IPv6:::1]}.
    """
    session = _Session(backend, allowAnonymous=True)
    session.proto.connectionLost()
    factory = session.factory
    proto = factory.buildProtocol(IPv6Address("TCP", "::1", 40000))
    assert isinstance(proto, CaptureSMTP)
    proto.callLater = session.clock.callLater  # type: ignore[method-assign,assignment]
    transport = StringTransport(
        hostAddress=IPv6Address("TCP", "::1", 5587), peerAddress=IPv6Address("TCP", "::1", 40000)
    )
    proto.makeConnection(transport)
    proto.dataReceived(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    proto.dataReceived(b"Subject: v6\r\n\r\nhi\r\n.\r\n")
    backend.reactor.pumpUntil(lambda: b"queued as" in transport.value())
    queueId = transport.value().rsplit(b" ", 1)[1].strip().decode()
    assert backend.raw(queueId).startswith(b"Received: from c ([IPv6:::1])\r\n")


def test_errorCountResetsAfterDelivery(backend: _Backend) -> None:
    """
    Errors scattered over a long-lived connection that keeps delivering do
    not add up to C{421}: a delivered message clears the count.
    """
    session = _session(backend, maxErrors=3)
    for _ in range(3):
        session.feed(b"BOGUS\r\nBOGUS\r\n")
        session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nhi\r\n.\r\n")
        replies = session.waitForReplies(6)
        assert replies[:2] == [b"500 5.5.2 Syntax error, command unrecognized"] * 2
        _queueId(replies[-1])
    assert not session.transport.disconnecting


def test_idleTimeoutPausedWhileTheStoreWorks(backend: _Backend) -> None:
    """
    The idle timeout measures the client's silence: while the end of DATA
    waits on the store, the clock does not run out on the client.
    """
    session = _session(backend, idleTimeout=30.0)
    session.feed(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    session.new()
    session.feed(b"hi\r\n.\r\n")
    session.clock.advance(50)
    assert not session.transport.disconnecting
    _queueId(session.waitForReplies(1)[-1])
    session.clock.advance(29)
    assert not session.transport.disconnecting
    session.clock.advance(1)
    assert session.new() == [b"421 4.4.2 localhost Idle timeout, closing connection"]


def test_ingestBudgetRefusesPastItsLimit(backend: _Backend) -> None:
    """
    Message data held by all sessions together is bounded: a session whose
    message would cross the budget gets C{452 4.3.1} at the end of DATA and
    nothing stored, while another session's message under way is unharmed;
    every octet goes back to the budget once stored or refused.
    """
    budget = IngestBudget(4096 * IngestBudget.copies)
    first = _session(backend)
    second = _session(backend)
    first.factory.budget = second.factory.budget = budget
    before = backend.messageCount()
    envelope = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    first.feed(envelope)
    second.feed(envelope)
    first.new()
    second.new()
    first.feed(b"Subject: first\r\n\r\n" + b"x" * 3000 + b"\r\n")
    assert budget.used > 3000
    second.feed(b"Subject: second\r\n\r\n" + b"y" * 2000 + b"\r\n.\r\n")
    assert second.new() == [b"452 4.3.1 Insufficient system storage, try again later"]
    first.feed(b".\r\n")
    _queueId(first.waitForReplies(1)[0])
    assert budget.used == 0
    second.feed(envelope + b"Subject: again\r\n\r\n" + b"y" * 2000 + b"\r\n.\r\n")
    replies = second.waitForReplies(4)
    _queueId(replies[-1])
    assert budget.used == 0
    assert backend.messageCount() == before + 2


def test_ingestBudgetGivenBackOnReset(backend: _Backend) -> None:
    """
    A transaction abandoned in the middle of DATA (the connection lost)
    gives its share of the budget back.
    """
    budget = IngestBudget(1024 * 1024)
    session = _session(backend)
    session.factory.budget = budget
    session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    session.feed(b"Subject: cut\r\n\r\n" + b"x" * 5000 + b"\r\n")
    assert budget.used > 5000
    session.proto.connectionLost()
    assert budget.used == 0


def test_loginThrottleDelaysThenRefuses() -> None:
    """
    The login throttle answers failures late past C{delayAfter}, refuses a
    client past C{refuseAfter}, forgets failures older than its window and
    forgives a client that logs in.
    """
    clock = Clock()
    throttle = LoginThrottle(clock, window=60, delayAfter=2, refuseAfter=4, delay=1.0)
    assert [throttle.failed("192.0.2.1") for _ in range(4)] == [0.0, 0.0, 1.0, 1.0]
    assert throttle.refused("192.0.2.1")
    assert not throttle.refused("192.0.2.2")
    clock.advance(61)
    assert not throttle.refused("192.0.2.1")
    throttle.failed("192.0.2.1")
    throttle.succeeded("192.0.2.1")
    assert [throttle.failed("192.0.2.1") for _ in range(3)] == [0.0, 0.0, 1.0]


def test_loginThrottleForgetsTheOldestClientWhenFull() -> None:
    """
    The throttle keeps at most C{maxClients} addresses: a new one pushes
    out the one whose last failure is oldest.
    """
    clock = Clock()
    throttle = LoginThrottle(clock, refuseAfter=1, maxClients=2)
    throttle.failed("a")
    clock.advance(1)
    throttle.failed("b")
    clock.advance(1)
    throttle.failed("c")
    assert [throttle.refused(c) for c in ("a", "b", "c")] == [False, True, True]


def test_failedLoginsSlowedThenRefused(backend: _Backend) -> None:
    """
    Over SMTP, failed logins past the throttle's first allowance are
    answered a second late (nothing is read meanwhile), and past its limit
    AUTH gets C{421} and the connection closes, also on a new connection
    from the same client.
    """
    session = _Session(backend, allowInsecureAuth=True)
    session.factory.throttle = LoginThrottle(session.clock, delayAfter=1, refuseAfter=2)
    session.new()
    wrong = b"AUTH PLAIN " + base64.b64encode(b"\0" + ACCOUNT.encode() + b"\0k_wrong") + b"\r\n"
    session.feed(wrong)
    assert session.waitForReplies(1) == [b"535 5.7.8 Authentication credentials invalid"]
    session.feed(wrong, b"NOOP\r\n")
    # The store's answer arrives; the 535 then waits on the clock, beside
    # the store timeout of the held session.
    backend.reactor.pumpUntil(lambda: len(session.clock.getDelayedCalls()) == 2)
    assert session.new() == []
    session.clock.advance(1)
    assert session.new() == [b"535 5.7.8 Authentication credentials invalid", b"250 2.0.0 OK"]
    session.feed(wrong)
    assert session.new() == [b"421 4.7.0 localhost Too many failed logins, try again later"]
    assert session.transport.disconnecting
    again = _Session(backend, allowInsecureAuth=True)
    again.factory.throttle = session.factory.throttle
    again.new()
    again.feed(wrong)
    assert again.new() == [b"421 4.7.0 localhost Too many failed logins, try again later"]


def test_failureInAHeldCommandIsAnswered(backend: _Backend) -> None:
    """
    A bug in what answers a held command (here the throttle failing while
    a wrong login is answered) still gets the client an answer, C{421},
    and the connection closes, instead of a session that waits forever.
    """

    class _Broken(LoginThrottle):
        def failed(self, client: str) -> float:
            raise RuntimeError("broken throttle")

    session = _Session(backend, allowInsecureAuth=True)
    session.factory.throttle = _Broken(session.clock)
    session.new()
    wrong = b"AUTH PLAIN " + base64.b64encode(b"\0" + ACCOUNT.encode() + b"\0k_wrong") + b"\r\n"
    session.feed(wrong)
    assert session.waitForReplies(1) == [
        b"421 4.3.0 localhost Internal error, closing connection"
    ]
    assert session.transport.disconnecting


@pytest.mark.parametrize("segment", [1, 7, 200, 4096])
def test_longLinesInSegmentsStoredExactly(backend: _Backend, segment: int) -> None:
    """
    Long lines arriving in small segments (the receive buffer searched
    from where the last search stopped) are stored byte for byte: CRLFs,
    stuffed dots and the end of DATA falling at any place in a segment,
    with a lone CR inside a line.
    """
    session = _session(backend)
    session.feed(_ENVELOPE)
    body = (
        b"Subject: long\r\n\r\n" + b"x" * 20_000 + b"\r\n"
        + b"..dot after a long line" + b"y" * 9_999 + b"\r\n"
        + b"cr\rinside" + b"z" * 5_003 + b"\r\n.\r\n"
    )
    for i in range(0, len(body), segment):
        session.feed(body[i : i + segment])
    replies = session.waitForReplies(5)
    queueId = _queueId(replies[-1])
    assert _body(backend.raw(queueId)) == (
        b"Subject: long\r\n\r\n" + b"x" * 20_000 + b"\r\n"
        + b".dot after a long line" + b"y" * 9_999 + b"\r\n"
        + b"cr\rinside" + b"z" * 5_003 + b"\r\n"
    )
    session.feed(b"NOOP\r\n")
    assert session.new() == [b"250 2.0.0 OK"]
