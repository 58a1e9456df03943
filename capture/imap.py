# -*- test-case-name: tests.test_imap -*-
"""
IMAP4rev1 over the store: Thunderbird, mutt, Apple Mail and imaplib read
captured mail here.

L{CaptureIMAP} keeps what Twisted's L{IMAP4Server} does well (line and
literal reading, argument parsers, STARTTLS, IDLE, the C{blocked} queue
that keeps pipelined commands in order) and replaces what it gets wrong or
does slowly (reference C{twisted-gaps.md} section 2): command dispatch
answers every bad input with BAD or NO and logs none of it; login goes
through the one Portal as an L{IMailboxReader}; a selected mailbox is a
snapshot of uids and flags read in one query; FETCH reads every message of
the set in one store read and writes ready text (ENVELOPE and BODYSTRUCTURE
computed at ingest, sections cut from the raw bytes at stored offsets,
partial fetches exact); SEARCH runs against the store and always answers
C{* SEARCH}; STORE and EXPUNGE write the same facts the HTTP API shows.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
from collections.abc import Callable
from typing import Any

import attrs
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer, interfaces
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer

from capture.access import Visibility, visibility
from capture.auth import MECHANISMS, IMailboxReader, LoginLogin, LoginThrottle, PlainLogin
from capture.events import ChangedCopies, ChangedCopy, IEventBus, NewCopies, RemovedCopies
from capture.imapitems import (
    METADATA_ITEMS,
    applyFlags,
    fetchBatches,
    fetchItem,
    flagList,
    headersOnly,
    isSection,
    keywords,
    metadataFlags,
    metadataItems,
)
from capture.imapmatch import MailboxPattern, PatternTooLong
from capture.imaprecent import RecentCopies
from capture.imapsearch import SearchError, parseSearch, splitSearchKeys
from capture.imapsets import parseSequenceSet, uidsIn
from capture.metrics import Metrics
from capture.sessions import SessionFactory
from capture.store.interface import IStore
from capture.store.model import (
    Copy,
    FetchedMessage,
    FlagState,
    MailboxQuery,
    MetadataRow,
)

_log = Logger()

DELIMITER = "/"
INBOXES = "Inboxes"
# Mail clients delete by moving to Trash (Thunderbird by default): Capture's
# Trash is always empty, and what is moved there is deleted.
TRASH = "Trash"
_SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
_PERMANENT = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted")
# RFC 3501 7.4.1: no EXPUNGE while answering these (their sequence numbers
# would shift under a pipelined client); their UID forms may carry one.
_NO_EXPUNGE = {b"FETCH", b"STORE", b"SEARCH"}
_FETCH_BATCH_OCTETS = 4 * 1024 * 1024
# Messages per store read when FETCH asks no whole bodies (the header sync):
# a mailbox of any size is then answered in bounded memory.
_FETCH_BATCH_MESSAGES = 2000
_TRAILING_LITERAL = re.compile(rb"\{(\d{1,19})(\+?)\}$")
# RFC 3501's tag (ASTRING-CHARs but "+"), here at most 64 of them: a tag
# that is not one cannot be echoed back, so it gets an untagged BAD.
_TAG = re.compile(rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]{1,64}")
_COMMAND = re.compile(rb"[A-Za-z][A-Za-z0-9-]{0,31}")
# Failures of our own (bugs, a failing store) logged per session, one line
# each; past this they are only counted.
_LOGGED_FAILURES = 3
_NOT_SELECTED = {
    b"FETCH", b"STORE", b"SEARCH", b"EXPUNGE", b"CLOSE", b"UNSELECT", b"COPY", b"MOVE",
    b"UID", b"CHECK",
}
_AFTER_LOGIN = {
    b"SELECT", b"EXAMINE", b"LIST", b"LSUB", b"STATUS", b"NAMESPACE", b"CREATE", b"DELETE",
    b"RENAME", b"SUBSCRIBE", b"UNSUBSCRIBE", b"APPEND", b"IDLE", b"ENABLE",
} | _NOT_SELECTED


@attrs.frozen
class IMAPSettings:
    """
    How the IMAP listeners behave.

    @ivar allowInsecureAuth: Allow LOGIN and AUTHENTICATE before TLS.
    @ivar idleTimeout: Seconds of silence before a client that has not
        logged in is dropped; after login, at least 30 minutes.
    @ivar maxLiteral: The largest literal a command argument may carry.
    @ivar maxLineLength: The longest command line.
    @ivar maxErrors: C{BAD} answers in a row (no tagged C{OK} between them)
        before C{* BYE} and close, as SMTP closes after as many errors.
    """

    allowInsecureAuth: bool = False
    idleTimeout: float = 300.0
    maxLiteral: int = 64 * 1024
    maxLineLength: int = 64 * 1024
    maxErrors: int = 10


@attrs.define
class _View:
    """
    The selected mailbox as this session knows it: IMAP's sequence numbers
    are positions in C{uids}.
    """

    name: str
    query: MailboxQuery
    writable: bool
    uids: list[int]
    flags: dict[int, FlagState]
    uidNext: int
    key: tuple[str, str] = ("", "")
    # The keywords the client was told of (FLAGS, PERMANENTFLAGS), in order.
    keywords: dict[str, None] = attrs.Factory(dict)
    # The copies that are \Recent in this session (capture.imaprecent).
    recent: set[int] = attrs.Factory(set)

    def seq(self, uid: int) -> int:
        return bisect.bisect_left(self.uids, uid) + 1

    def add(self, state: FlagState) -> bool:
        if state.uid in self.flags:
            return False
        self.flags[state.uid] = state
        bisect.insort(self.uids, state.uid)
        self.uidNext = max(self.uidNext, state.uid + 1)
        return True

    def remove(self, uid: int) -> int:
        seq = self.seq(uid)
        del self.uids[seq - 1]
        del self.flags[uid]
        self.recent.discard(uid)
        return seq


class _Hub:
    """
    What the event bus tells of copies, for the sessions that have their
    mailbox selected: one subscription for the listener while any session
    has a mailbox selected, sessions kept per inbox (and per sending
    account, for the sent-mail C{INBOX}).
    """

    def __init__(self, events: IEventBus) -> None:
        self._events = events
        self._sessions: dict[tuple[str, str], set[CaptureIMAP]] = {}
        self._unsubscribe: list[Callable[[], None]] = []

    def watch(self, key: tuple[str, str], session: CaptureIMAP) -> None:
        if not self._unsubscribe:
            self._unsubscribe = [
                self._events.subscribe(NewCopies, self._arrived),
                self._events.subscribe(RemovedCopies, self._removed),
                self._events.subscribe(ChangedCopies, self._changed),
            ]
        self._sessions.setdefault(key, set()).add(session)

    def unwatch(self, key: tuple[str, str], session: CaptureIMAP) -> None:
        sessions = self._sessions.get(key)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._sessions[key]
        if not self._sessions:
            stops, self._unsubscribe = self._unsubscribe, []
            for stop in stops:
                stop()

    def _removed(self, event: RemovedCopies) -> None:
        uids = [r.uid for r in event.copies]
        for sessions in list(self._sessions.values()):
            for session in list(sessions):
                session.copiesRemoved(uids)

    def _arrived(self, event: NewCopies) -> None:
        copies = event.copies
        for copy in copies:
            for session in list(self._sessions.get(("inbox", copy.inbox), ())):
                session.newCopy(copy)
        for account in {c.message.account for c in copies if c.message.account is not None}:
            for session in list(self._sessions.get(("sent", account), ())):
                session.sentMail()

    def _changed(self, event: ChangedCopies) -> None:
        byKey: dict[tuple[str, str], list[ChangedCopy]] = {}
        for change in event.copies:
            byKey.setdefault(("inbox", change.inbox), []).append(change)
            if change.sender is not None:
                byKey.setdefault(("sent", change.sender), []).append(change)
        for key, changes in byKey.items():
            for session in list(self._sessions.get(key, ())):
                session.copiesChanged(changes)


def _command(*parts: Any) -> Any:
    """
    A command table entry as Twisted's dispatcher reads it: the handler,
    then its argument parsers and fixed arguments.
    """
    return parts


# Pipelined FETCHes read ahead together, at most this many.
_READ_AHEAD = 256
# A pipelined single-message FETCH: tag, command (FETCH or UID), the rest.
_SINGLE_FETCH_RE = re.compile(rb"(\S+) ((?i:UID|FETCH)) ((?i:FETCH )?(\d+) .*)\Z", re.S)


def _fetchShape(cmd: bytes, rest: bytes | None) -> tuple[bool, bytes] | None:
    """
    What makes two FETCH commands the same but for their message number:
    whether it is a UID FETCH, and the items asked for; L{None} for any
    other command (or a FETCH of a set).
    """
    if rest is None:
        return None
    uid = cmd.upper() == b"UID"
    if uid:
        command, _, rest = rest.partition(b" ")
        if command.upper() != b"FETCH":
            return None
    elif cmd.upper() != b"FETCH":
        return None
    number, _, items = rest.partition(b" ")
    if not number.isdigit():
        return None
    return uid, items.strip().upper()


class CaptureIMAP(imap4.IMAP4Server):
    """
    One IMAP session.
    """

    IDENT = b"Capture IMAP4rev1 ready"
    factory: IMAPFactory
    transport: Any
    portal: Any
    _pendingLiteral: Any
    reader: Any = None
    view: _View | None = None

    def __init__(self, factory: IMAPFactory) -> None:
        super().__init__(chal={}, contextFactory=factory.tlsOptions)
        self.factory = factory
        self.portal = factory.portal
        self.settings = factory.settings
        self.MAX_LENGTH = self.settings.maxLineLength
        self._literalStringLimit = self.settings.maxLiteral
        self.timeOut = int(self.settings.idleTimeout)
        # RFC 3501 5.4: a logged-in client may stay silent 30 minutes (an
        # IDLE client re-issues IDLE every 29).
        self.POSTAUTH_TIMEOUT = int(max(self.settings.idleTimeout, 1800.0))
        self._peerIP = ""
        self._skipLine = False
        self._again = False
        self._discard = 0
        self._nonSync = False
        # Octets after a literal's announcement that arrived while earlier
        # commands ran (see lineReceived), and whether reading is paused
        # because too many are held.
        self._held: bytes | None = None
        self._paused = False
        self._watching: tuple[str, str] | None = None
        self._gone: list[int] = []
        # Flags changed elsewhere, not yet told (see copiesChanged), and the
        # command being answered (see _beforeTagged).
        self._changed: dict[int, FlagState] = {}
        self._commandName = b""
        self._refreshing = False
        self._refreshAgain = False
        # Read-ahead of pipelined single-message FETCHes (see _readAhead):
        # the current command's (is UID, query text), and what was read for
        # the FETCHes still waiting in `blocked`, by uid.
        self._current: tuple[bool, bytes] | None = None
        self._ahead: dict[int, FetchedMessage] = {}
        self._waiting: list[bytes] = []
        # BAD answers since the last tagged OK (see sendBadResponse), and
        # failures of our own so far (see _serverBug).
        self._errors = 0
        self._closing = False
        self._bugs = 0

    # Connection

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self._peerIP = str(getattr(peer, "host", peer))
        super().connectionMade()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._bugs > _LOGGED_FAILURES:
            _log.warn("{count} more failed IMAP commands in this session were not logged",
                      count=self._bugs - _LOGGED_FAILURES)
        self._unselect()
        super().connectionLost(reason)
        self.factory.connectionClosed()

    def _secure(self) -> bool:
        # An ssl:/tls: listener (or a tcp: one wrapped in TLS) hands us a
        # transport that is TLS already.
        return self.startedTLS or interfaces.ISSLTransport.providedBy(self.transport)

    def _loginAllowed(self) -> bool:
        return self._secure() or self.settings.allowInsecureAuth

    # Lines, literals and limits

    def dataReceived(self, data: bytes) -> None:
        if self._discard:
            taken = min(self._discard, len(data))
            self._discard -= taken
            data = data[taken:]
        if self._skipLine:
            end = data.find(b"\r\n")
            if end < 0:
                return
            self._skipLine = False
            data = data[end + 2 :]
        while data or self._again:
            self._again = False
            super().dataReceived(data)
            data = b""

    def _skipLiteral(self, size: int) -> None:
        """
        Throw away the C{size} octets of a literal the client sends without
        waiting (LITERAL+) and the rest of its command line, whether they
        are in the buffer already or still to come.
        """
        taken = min(size, len(self._buffer))
        self._buffer = self._buffer[taken:]
        self._discard = size - taken
        if self._discard:
            self._skipLine = True
            return
        end = self._buffer.find(b"\r\n")
        if end < 0:
            self._buffer = b""
            self._skipLine = True
        else:
            self._buffer = self._buffer[end + 2 :]

    def lineLengthExceeded(self, line: bytes) -> None:
        # Answered, not disconnected (Twisted drops the connection, gap
        # I10); the rest of the line, still arriving, is skipped.
        self.sendBadResponse(None, b"[TOOBIG] Command line too long")
        if b"\r\n" not in line:
            self._skipLine = True
        else:
            # What followed the long line in the same read is read next
            # (LineReceiver stops reading after this call).
            self._buffer = line.split(b"\r\n", 1)[1]
            self._again = bool(self._buffer)

    def arg_astring(self, line: bytes, final: bool = False) -> Any:
        stripped = line.strip()
        if stripped[:1] == b"{" and stripped.endswith(b"+}"):
            # LITERAL+: the client sends the octets without waiting.
            self._nonSync = True
            line = stripped[:-2] + b"}"
        return super().arg_astring(line, final)

    def arg_finalastring(self, line: bytes) -> Any:
        return self.arg_astring(line, final=True)

    def _stringLiteral(self, size: int) -> Any:
        nonSync, self._nonSync = self._nonSync, False
        if size < 0:
            raise imap4.IllegalClientResponse("Negative literal size")
        if size > self._literalStringLimit:
            # A LITERAL+ literal is skipped once this is answered
            # (lineReceived).
            raise imap4.IllegalClientResponse(
                f"[TOOBIG] Literal of {size} octets; the limit is {self._literalStringLimit}"
            )
        d: defer.Deferred[Any] = defer.Deferred()
        self.parseState = "pending"
        self._pendingLiteral = imap4.LiteralString(size, d)
        if not nonSync:
            self.sendContinuationRequest(b"Ready for %d octets of text" % size)
        self.setRawMode()
        return d

    def _fileLiteral(self, size: int) -> Any:
        # Only APPEND takes a message literal, and it is refused before the
        # literal is asked for: none is ever buffered (gap 2.4).
        raise imap4.IllegalClientResponse("Literal not expected here")

    # Dispatch
    #
    # Twisted's dispatch is replaced whole: it decodes the command
    # name as ASCII (a UnicodeDecodeError for any 8-bit byte), hands a
    # missing argument to the next parser as None (AttributeError), and
    # answers anything but its three exception classes with "BAD Server
    # error" and a traceback in the log, one per line received.  Here every
    # error a parser or handler raises for bad input is a tagged BAD or NO
    # (_commandFailed), and only our own failures are logged, one bounded
    # line each (_serverBug).

    def lineReceived(self, line: bytes) -> None:
        if self._closing:
            return
        if self.blocked is not None:
            self.blocked.append(line)
            if _TRAILING_LITERAL.search(line) is not None:
                # The octets after this line are its literal, not lines:
                # held as they are until the command is read (_unblock).
                self._held = b""
                self.setRawMode()
            return
        self.resetTimeout()
        try:
            getattr(self, "parse_" + self.parseState)(line)
        except Exception:
            self._serverBug(Failure(), None)
        literal = _TRAILING_LITERAL.search(line)
        if literal is not None and literal.group(2) and self.line_mode and not self._closing:
            # A command answered before it read its LITERAL+ literal (a
            # refused or unknown command, a bad argument before it): the
            # octets the client sends unasked are skipped, never read as
            # commands.
            self._skipLiteral(int(literal.group(1)))

    def rawDataReceived(self, data: bytes) -> None:
        if self._held is None:
            super().rawDataReceived(data)
            return
        self._held += data
        if len(self._held) > self._literalStringLimit + self.MAX_LENGTH and not self._paused:
            # Enough is held: the client waits (TCP) until the commands
            # before it are answered.
            self._paused = True
            self.transport.pauseProducing()

    def parse_command(self, line: bytes) -> None:
        if not line.strip():
            self.sendBadResponse(None, b"Null command")
            return
        tag, _, rest = line.partition(b" ")
        if _TAG.fullmatch(tag) is None:
            self.sendBadResponse(None, b"Invalid tag")
            return
        parts = rest.split(None, 1)
        if not parts:
            self.sendBadResponse(tag, b"Missing command")
            return
        self._commandName = parts[0].upper()
        try:
            self.dispatchCommand(tag, parts[0].upper(), parts[1] if len(parts) > 1 else None)
        except Exception:
            self._commandFailed(Failure(), tag)

    def lookupCommand(self, cmd: bytes) -> Any:
        if _COMMAND.fullmatch(cmd) is None:
            return None
        return getattr(self, self.state + "_" + cmd.decode("ascii").upper(), None)

    def dispatchCommand(self, tag: bytes, cmd: bytes, rest: bytes | None, uid: Any = None) -> None:
        self._current = _fetchShape(cmd, rest)
        if self._current is None:
            # Anything but a FETCH may change what a read-ahead read.
            self._ahead.clear()
        entry = self.lookupCommand(cmd)
        if entry is None:
            if self.state == "unauth" and cmd.upper() in _AFTER_LOGIN:
                self.sendBadResponse(tag, b"Log in first (LOGIN or AUTHENTICATE)")
            elif self.state == "auth" and cmd.upper() in _NOT_SELECTED:
                self.sendBadResponse(tag, b"No mailbox selected")
            else:
                self.sendBadResponse(tag, b"Unsupported command")
            return
        self._doCommand(tag, entry[0], [self, tag], entry[1:], rest or b"", uid)

    def _doCommand(self, tag: bytes, handler: Any, args: list[Any], parsers: Any, line: bytes,
                   uid: Any) -> None:
        """
        Parse the next argument of a command (maybe waiting for its
        literal), or with all of them parsed run the handler.  Whatever a
        parser or handler raises reaches L{_commandFailed}: synchronously
        through L{parse_command}, or through the Deferred of a parser.
        """
        for i, parser in enumerate(parsers):
            if callable(parser):
                d = defer.maybeDeferred(parser, self, line)
                d.addCallback(self._parsedArgument, tag, handler, args, parsers[i + 1 :], uid)
                d.addErrback(self._commandFailed, tag)
                return
            args.append(parser)
        if line.strip():
            raise imap4.IllegalClientResponse("Too many arguments for command: " + repr(line))
        if uid is not None:
            handler(*args, uid=uid)
        else:
            handler(*args)

    def _parsedArgument(self, result: tuple[Any, bytes | None], tag: bytes, handler: Any,
                        args: list[Any], parsers: Any, uid: Any) -> None:
        arg, rest = result
        # Twisted's parsers give None for "nothing left".
        self._doCommand(tag, handler, [*args, arg], parsers, rest or b"", uid)

    def _commandFailed(self, failure: Failure, tag: bytes) -> None:
        """
        A command's arguments or handler raised: bad input is a tagged BAD
        (syntax) or NO (refused), logged nowhere; anything else is ours.
        """
        value = failure.value
        if isinstance(value, imap4.IllegalClientResponse):
            self.sendBadResponse(tag, b"Illegal syntax: " + _said(value))
        elif isinstance(value, SearchError):
            self.sendBadResponse(tag, _said(value))
        elif isinstance(value, imap4.MismatchedNesting):
            self.sendBadResponse(tag, b"Illegal syntax: Mismatched parentheses")
        elif isinstance(value, imap4.MismatchedQuoting):
            self.sendBadResponse(tag, b"Illegal syntax: Mismatched quotes")
        elif isinstance(value, imap4.IllegalOperation):
            self.sendNegativeResponse(tag, b"Illegal operation: " + _said(value))
        elif isinstance(value, imap4.IllegalMailboxEncoding):
            self.sendNegativeResponse(tag, b"Illegal mailbox name: " + _said(value))
        elif isinstance(value, _No):
            self.sendNegativeResponse(tag, _said(value))
        else:
            self._serverBug(failure, tag)

    def _serverBug(self, failure: Failure, tag: bytes | None, refusal: bytes = b"") -> None:
        """
        The last resort, for a failure of our own: the command is answered
        (C{BAD}, or the given C{NO} text), and the first few of a session
        are logged in one line each, naming where it was raised; the rest
        are counted (L{connectionLost}), so no client can fill the log.
        """
        self._bugs += 1
        if self._bugs <= _LOGGED_FAILURES:
            frames = failure.frames
            where = f"{frames[-1][1]}:{frames[-1][2]} in {frames[-1][0]}" if frames else "?"
            _log.error(
                "IMAP command failed at {where}: {kind}: {text}",
                where=where, kind=getattr(failure.type, "__name__", "?"),
                text=_said(failure.value).decode("ascii"),
            )
        if refusal:
            self.sendNegativeResponse(tag, refusal)
        else:
            self.sendBadResponse(tag, b"Server error")

    def sendBadResponse(self, tag: bytes | None = None, message: bytes = b"") -> None:
        # Twisted prefixes every parse error; a response code must come
        # first to be one ("BAD [TOOBIG] ...").
        prefix = b"Illegal syntax: "
        if message.startswith(prefix + b"["):
            message = message[len(prefix) :]
        super().sendBadResponse(tag, message)
        # A session that only errs is closed, as SMTP closes one (10 errors).
        self._errors += 1
        if self._errors >= self.settings.maxErrors and not self._closing:
            self._closing = True
            self.sendLine(b"* BYE Too many errors, closing connection")
            self.transport.loseConnection()

    def sendPositiveResponse(self, tag: bytes | None = None, message: bytes = b"") -> None:
        if tag is not None:
            self._errors = 0
            self._beforeTagged()
        super().sendPositiveResponse(tag, message)

    def sendNegativeResponse(self, tag: bytes | None = None, message: bytes = b"") -> None:
        if tag is not None:
            self._beforeTagged()
        super().sendNegativeResponse(tag, message)

    def _beforeTagged(self) -> None:
        """
        A command is about to complete: tell what changed elsewhere
        meanwhile (RFC 3501 5.2, 7.4.1), flags always, expunges unless the
        command is one whose answer must keep sequence numbers still.
        """
        if self.view is None:
            return
        if self._gone and self._commandName not in _NO_EXPUNGE:
            self._announceGone()
        if self._changed:
            self._announceChanged()

    def do_IDLE(self, tag: bytes) -> None:
        self.sendLine(b"+ idling")
        self.parseTag = tag
        self.lastState = self.parseState
        self.parseState = "idle"
        self._announceGone()
        self._announceChanged()

    def do_NOOP(self, tag: bytes) -> None:
        self.sendPositiveResponse(tag, b"NOOP completed")

    unauth_NOOP = auth_NOOP = select_NOOP = _command(do_NOOP)

    auth_IDLE = select_IDLE = _command(do_IDLE)

    def _run(self, tag: bytes, work: Any) -> None:
        """
        Run one asynchronous command: later commands wait (in C{blocked})
        until it answers, so pipelined commands see its effect (gap I9).
        """
        self.blocked = []
        d = defer.ensureDeferred(work)
        d.addErrback(self._failed, tag)
        d.addBoth(lambda _: self._unblock())

    def _unblock(self) -> None:
        # Twisted's, but the commands still waiting stay visible (in
        # _waiting) while each one runs, for the FETCH read-ahead; and
        # what was held after a line that announced a literal (the last
        # line waiting) is read on, in whatever mode its command left.
        commands = self.blocked or []
        held, self._held = self._held, None
        if held is not None:
            self.setLineMode()
        # None is Twisted's own "not blocked", whatever its stub says.
        self.blocked = None  # type: ignore[assignment]
        while commands and self.blocked is None:
            line = commands.pop(0)
            self._waiting = commands
            self.lineReceived(line)
        self._waiting = []
        if self.blocked is not None:
            self.blocked.extend(commands)
            if held is not None and commands:
                # Still waiting: the literal stays held.
                self._held = held
                self.setRawMode()
                return
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        if held:
            self.dataReceived(held)

    def _failed(self, failure: Failure, tag: bytes) -> None:
        if failure.check(imap4.IllegalClientResponse, SearchError):
            self.sendBadResponse(tag, _said(failure.value))
            return
        if failure.check(_No):
            self.sendNegativeResponse(tag, _said(failure.value))
            return
        self._serverBug(failure, tag, b"[SERVERBUG] Internal error; try again")

    # Capabilities, ID, ENABLE

    def listCapabilities(self) -> list[bytes]:
        caps = [b"IMAP4rev1", b"LITERAL+", b"IDLE", b"NAMESPACE", b"UIDPLUS", b"MOVE",
                b"UNSELECT", b"ID", b"ENABLE", b"CHILDREN"]
        if self.state == "unauth":
            if not self._secure() and self.ctx is not None and self.canStartTLS:
                caps.append(b"STARTTLS")
            if self._loginAllowed():
                caps += [b"AUTH=" + m for m in MECHANISMS]
            else:
                caps.append(b"LOGINDISABLED")
        return caps

    def capabilities(self) -> dict[bytes, Any]:
        return {c: None for c in self.listCapabilities()[1:]}

    def do_ID(self, tag: bytes, line: bytes) -> None:
        self.sendUntaggedResponse(b'ID ("name" "Capture" "vendor" "Capture")')
        self.sendPositiveResponse(tag, b"ID completed")

    unauth_ID = _command(do_ID, imap4.IMAP4Server.arg_line)
    auth_ID = select_ID = unauth_ID

    def do_ENABLE(self, tag: bytes, line: bytes) -> None:
        # None of the extensions ENABLE turns on is supported.
        self.sendUntaggedResponse(b"ENABLED")
        self.sendPositiveResponse(tag, b"ENABLE completed")

    auth_ENABLE = select_ENABLE = _command(do_ENABLE, imap4.IMAP4Server.arg_line)

    # STARTTLS and login

    def do_STARTTLS(self, tag: bytes) -> None:
        if self._secure():
            self.sendBadResponse(tag, b"TLS is already on")
            return
        if self.ctx is None or not self.canStartTLS:
            self.sendNegativeResponse(tag, b"TLS not available")
            return
        # Whatever was pipelined after STARTTLS came in the clear: dropped
        # (RFC 3501 6.2.1; CVE-2011-0411 class, gap I10).
        self._buffer = b""
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        self.transport.startTLS(self.ctx)
        self.startedTLS = True

    unauth_STARTTLS = _command(do_STARTTLS,)

    def do_LOGIN(self, tag: bytes, user: bytes, password: bytes) -> None:
        if not self._loginAllowed():
            self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] Use STARTTLS (or the IMAPS port) first")
            return
        self._run(tag, self._login(tag, UsernamePassword(user, password)))

    unauth_LOGIN = _command(do_LOGIN, arg_astring, arg_finalastring)

    def do_AUTHENTICATE(self, tag: bytes, mechanism: bytes) -> None:
        if not self._loginAllowed():
            self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] Use STARTTLS (or the IMAPS port) first")
            return
        factory = MECHANISMS.get(mechanism.upper())
        if factory is None:
            self.sendNegativeResponse(tag, b"Unsupported mechanism; use PLAIN or LOGIN")
            return
        challenger = factory()
        self._ask(tag, challenger, challenger.getChallenge())

    unauth_AUTHENTICATE = _command(do_AUTHENTICATE, imap4.IMAP4Server.arg_atom)

    def _ask(self, tag: bytes, challenger: PlainLogin | LoginLogin, challenge: bytes) -> None:
        """
        Send one SASL challenge; the client's next line is its response.
        """
        d: defer.Deferred[bytes] = defer.Deferred()
        self.parseState = "pending"
        self._pendingLiteral = d
        self.sendLine(b"+ " + base64.b64encode(challenge))
        d.addCallback(self._saslResponse, tag, challenger)

    def _saslResponse(self, line: bytes, tag: bytes, challenger: PlainLogin | LoginLogin) -> None:
        if line.strip() == b"*":
            self.sendBadResponse(tag, b"AUTHENTICATE cancelled")
            return
        try:
            challenger.setResponse(base64.b64decode(line.strip(), validate=True))
        except (binascii.Error, ValueError):
            self.sendBadResponse(tag, b"Malformed " + challenger.name + b" response")
            return
        if challenger.moreChallenges():
            self._ask(tag, challenger, challenger.getChallenge())
            return
        # A PLAIN authorization identity is the checker's to judge
        # (auth.mayActAs), as for every protocol.
        self._run(tag, self._login(tag, challenger))

    async def _login(self, tag: bytes, credentials: UsernamePassword) -> None:
        throttle = self.factory.throttle
        if throttle.refused(self._peerIP):
            self.sendNegativeResponse(tag, b"[UNAVAILABLE] Too many failed logins; try later")
            return
        try:
            _, reader, logout = await self.portal.login(
                credentials, None, IMailboxReader
            )
        except UnauthorizedLogin:
            self.factory.metrics.authFailed("imap")
            wait = throttle.failed(self._peerIP)
            if wait:
                await deferLater(self.factory.clock, wait, lambda: None)
            self.sendNegativeResponse(tag, b"[AUTHENTICATIONFAILED] Invalid credentials")
            return
        throttle.succeeded(self._peerIP)
        self.reader = reader
        self._onLogout = logout
        self.state = "auth"
        self.setTimeout(self.POSTAUTH_TIMEOUT)
        caps = b" ".join(self.listCapabilities())
        self.sendPositiveResponse(tag, b"[CAPABILITY " + caps + b"] Logged in")

    # Mailboxes

    def _names(self) -> Any:
        return self.factory.store.readerInboxes(self.reader.account)

    def _decodeName(self, name: bytes) -> str:
        try:
            text: str = name.decode("imap4-utf-7")
            # Twisted's decoder takes malformed names ("&Jjo", "a&"); only
            # a name in its one canonical spelling is modified UTF-7.
            canonical = text.encode("imap4-utf-7") == name
        except (UnicodeError, ValueError):
            canonical = False
        if not canonical:
            raise _No("[CANNOT] Invalid mailbox name (modified UTF-7)")
        if "\0" in text or ".." in text.split(DELIMITER) or any(ord(c) < 32 for c in text):
            raise _No("[CANNOT] Invalid mailbox name")
        return text

    async def _resolve(self, name: str) -> tuple[str, MailboxQuery, bool] | None:
        """
        The mailbox a name stands for, as this reader may see it: its
        canonical name, query, and whether it may be written.
        """
        reader = self.reader
        if name.upper() == TRASH.upper():
            # A mailbox no copy is in (no inbox has an empty name).
            return TRASH, MailboxQuery("", Visibility(everything=False)), True
        if name.upper() == "INBOX":
            if reader.inbox is not None:
                return "INBOX", await self._inboxQuery(reader.inbox), True
            # What the account sent: the store lists only copies it may
            # read, flag and delete (in public inboxes or its own).
            return "INBOX", MailboxQuery(None, sentBy=reader.account), True
        prefix = INBOXES + DELIMITER
        if reader.inbox is None and name.startswith(prefix):
            address = name[len(prefix) :].lower()
            if address in await self._names():
                return prefix + address, await self._inboxQuery(address), True
        return None

    async def _inboxQuery(self, inbox: str) -> MailboxQuery:
        owner = await self.factory.store.inboxOwner(inbox)
        seen = visibility(self.reader.account, owner)
        if seen is None:
            raise _No("[NOPERM] This inbox is not yours to read")
        return MailboxQuery(inbox, seen)

    async def _folders(self) -> list[tuple[str, str]]:
        """
        Every mailbox of this reader, with its LIST attributes.
        """
        trash = (TRASH, "\\Trash \\HasNoChildren")
        if self.reader.inbox is not None:
            return [("INBOX", "\\HasNoChildren"), trash]
        names = await self._names()
        folders = [("INBOX", "\\HasNoChildren"), trash]
        if names:
            folders.append((INBOXES, "\\Noselect \\HasChildren"))
        else:
            folders.append((INBOXES, "\\Noselect \\HasNoChildren"))
        folders += [(INBOXES + DELIMITER + n, "\\HasNoChildren") for n in names]
        return folders

    def _listWork(self, tag: bytes, ref: bytes, pattern: bytes, sub: int, cmdName: bytes) -> None:
        self._run(tag, self._list(tag, ref, pattern, cmdName))

    async def _list(self, tag: bytes, ref: bytes, pattern: bytes, cmdName: bytes) -> None:
        try:
            reference = self._decodeName(ref) if ref else ""
            wildcard = reference + self._decodeName(pattern) if pattern else ""
        except _No:
            # A pattern no mailbox name can match (not modified UTF-7:
            # "a&b", a control character) lists nothing, as Dovecot
            # answers it; only SELECT, STATUS and the like refuse the name.
            self.sendPositiveResponse(tag, cmdName + b" completed")
            return
        if not wildcard:
            # LIST "" "": the hierarchy delimiter.
            self.sendUntaggedResponse(cmdName + b' (\\Noselect) "/" ""')
        else:
            try:
                matcher = MailboxPattern.compile(wildcard, DELIMITER)
            except PatternTooLong as e:
                raise _No(f"[LIMIT] {e}") from None
            for name, attributes in await self._folders():
                if matcher.matches(name):
                    self.sendUntaggedResponse(
                        b"%s (%s) \"/\" %s"
                        % (cmdName, attributes.encode("ascii"), _mailboxName(name))
                    )
        self.sendPositiveResponse(tag, cmdName + b" completed")

    auth_LIST = _command(_listWork, arg_astring, arg_astring, 0,
                 b"LIST")
    select_LIST = auth_LIST
    auth_LSUB = _command(_listWork, arg_astring, arg_astring, 1,
                 b"LSUB")
    select_LSUB = auth_LSUB

    def do_NAMESPACE(self, tag: bytes) -> None:
        self.sendUntaggedResponse(b'NAMESPACE (("" "/")) NIL NIL')
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = select_NAMESPACE = _command(do_NAMESPACE,)

    def do_STATUS(self, tag: bytes, name: bytes, items: list[bytes]) -> None:
        self._run(tag, self._status(tag, name, items))

    async def _status(self, tag: bytes, name: bytes, items: list[Any]) -> None:
        found = await self._resolve(self._decodeName(name))
        if found is None:
            raise _No("[NONEXISTENT] No such mailbox")
        canonical, query, _ = found
        states = await self.factory.store.mailboxFlags(query)
        nextUid = await self.factory.store.nextUid()
        key = _mailboxKey(query)
        recent = len(self.factory.recent.unclaimed(key, [s.uid for s in states], nextUid))
        if self.view is not None and self.view.key == key:
            # This session's own \Recent copies are recent too.
            recent += len(self.view.recent)
        values = {
            b"MESSAGES": len(states),
            b"RECENT": recent,
            b"UIDNEXT": nextUid,
            b"UIDVALIDITY": self.factory.store.uidValidity,
            b"UNSEEN": sum(1 for s in states if not s.read),
        }
        answer = []
        for item in items:
            if not isinstance(item, bytes) or item.upper() not in values:
                raise imap4.IllegalClientResponse(f"Unknown STATUS item {item!r}")
            answer.append(b"%s %d" % (item.upper(), values[item.upper()]))
        self.sendUntaggedResponse(
            b"STATUS " + _mailboxName(canonical) + b" (" + b" ".join(answer) + b")"
        )
        self.sendPositiveResponse(tag, b"STATUS completed")

    auth_STATUS = select_STATUS = _command(do_STATUS, arg_astring,
                                   imap4.IMAP4Server.arg_plist)

    def _selectWork(self, tag: bytes, name: bytes, rw: int, cmdName: bytes) -> None:
        self._unselect()
        self.state = "auth"
        self._run(tag, self._select(tag, name, bool(rw), cmdName))

    async def _select(self, tag: bytes, name: bytes, rw: bool, cmdName: bytes) -> None:
        found = await self._resolve(self._decodeName(name))
        if found is None:
            raise _No("[NONEXISTENT] No such mailbox")
        canonical, query, writable = found
        states = await self.factory.store.mailboxFlags(query)
        nextUid = await self.factory.store.nextUid()
        key = _mailboxKey(query)
        uids = [s.uid for s in states]
        # SELECT claims the copies no session has seen as \Recent; EXAMINE
        # shows them so but leaves them recent (RFC 3501 6.3.2).
        if writable and rw:
            recent = self.factory.recent.claim(key, uids, nextUid)
        else:
            recent = set(self.factory.recent.unclaimed(key, uids, nextUid))
        view = _View(
            name=canonical, query=query, writable=writable and rw,
            uids=uids, flags={s.uid: s for s in states},
            uidNext=max(nextUid, (states[-1].uid + 1) if states else 1),
            key=key, recent=recent,
        )
        self.view = view
        self._gone = []
        self._changed = {}
        for state in states:
            view.keywords.update(dict.fromkeys(keywords(state.labels)))
        self.state = "select"
        self._watching = key
        self.factory.hub.watch(self._watching, self)
        unseen = next((i for i, s in enumerate(states, 1) if not s.read), None)
        self.sendUntaggedResponse(b"%d EXISTS" % len(states))
        self.sendUntaggedResponse(b"%d RECENT" % len(recent))
        for line in _flagsLines(view):
            self.sendUntaggedResponse(line)
        self.sendUntaggedResponse(b"OK [UIDVALIDITY %d] UIDs valid" % self.factory.store.uidValidity)
        self.sendUntaggedResponse(b"OK [UIDNEXT %d] Predicted next UID" % view.uidNext)
        if unseen is not None:
            self.sendUntaggedResponse(b"OK [UNSEEN %d] First unseen" % unseen)
        mode = b"[READ-WRITE]" if view.writable else b"[READ-ONLY]"
        self.sendPositiveResponse(tag, mode + b" " + cmdName + b" completed")

    auth_SELECT = select_SELECT = _command(_selectWork, arg_astring, 1, b"SELECT")
    auth_EXAMINE = select_EXAMINE = _command(_selectWork, arg_astring, 0, b"EXAMINE")

    def _unselect(self) -> None:
        if self._watching is not None:
            self.factory.hub.unwatch(self._watching, self)
            self._watching = None
        self.view = None
        if self.state == "select":
            self.state = "auth"

    def do_UNSELECT(self, tag: bytes) -> None:
        self._unselect()
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = _command(do_UNSELECT,)

    def do_CLOSE(self, tag: bytes) -> None:
        view = self.view
        assert view is not None
        if not view.writable:
            self._unselect()
            self.sendPositiveResponse(tag, b"CLOSE completed")
            return

        async def close() -> None:
            await self._expunge(view, None, silent=True)
            self._unselect()
            self.sendPositiveResponse(tag, b"CLOSE completed")

        self._run(tag, close())

    select_CLOSE = _command(do_CLOSE,)

    def do_CHECK(self, tag: bytes) -> None:
        self.sendPositiveResponse(tag, b"CHECK completed")

    select_CHECK = _command(do_CHECK,)

    def newCopy(self, copy: Copy) -> None:
        """
        A copy just stored in the selected inbox: announced with C{EXISTS}
        if this reader may see it.
        """
        view = self.view
        if view is None or view.query.inbox is None:
            return
        if not _visibleTo(view.query.visibility, copy.savedBy):
            return
        if view.add(FlagState(copy.uid, False, False, False, False, ())):
            self._arrivedRecent(view, [copy.uid])
            self.sendUntaggedResponse(b"%d EXISTS" % len(view.uids), isAsync=True)
            self.sendUntaggedResponse(b"%d RECENT" % len(view.recent), isAsync=True)

    def sentMail(self) -> None:
        """
        The selected account's sent mail has new messages: which copy of
        each the mailbox shows depends on who owns each recipient inbox,
        so the store says (one read, however much mail came at once).
        """
        view = self.view
        if view is None or view.query.inbox is not None:
            return
        if self._refreshing:
            self._refreshAgain = True
            return
        self._refreshing = True

        def got(states: list[FlagState]) -> None:
            if self.view is view:
                known = view.uidNext
                added = [s.uid for s in states if s.uid >= known and view.add(s)]
                if added:
                    self._arrivedRecent(view, added)
                    self.sendUntaggedResponse(b"%d EXISTS" % len(view.uids), isAsync=True)
                    self.sendUntaggedResponse(b"%d RECENT" % len(view.recent), isAsync=True)

        def done(result: object) -> None:
            self._refreshing = False
            if self._refreshAgain:
                self._refreshAgain = False
                self.sentMail()

        d = self.factory.store.mailboxFlags(view.query)
        d.addCallback(got)
        d.addErrback(lambda f: _log.failure("Refreshing sent mail failed", f))
        d.addBoth(done)

    def _arrivedRecent(self, view: _View, uids: list[int]) -> None:
        """
        Copies that arrived while this session has their mailbox selected:
        C{\\Recent} here if no other session claimed them first (an EXAMINE
        session shows them recent and leaves them so).
        """
        recent = self.factory.recent
        if view.writable:
            view.recent |= recent.claim(view.key, uids, view.uidNext)
        else:
            view.recent.update(recent.unclaimed(view.key, uids, view.uidNext))

    def copiesRemoved(self, uids: list[int]) -> None:
        """
        Copies deleted elsewhere (the HTTP API, another session): announced
        with C{EXPUNGE} at once while idling, else when the next command
        completes but FETCH, STORE and SEARCH (RFC 3501 7.4.1 forbids it
        between commands and during those three).
        """
        view = self.view
        if view is None:
            return
        gone = [u for u in uids if u in view.flags]
        if gone:
            self._gone.extend(gone)
            if self.parseState == "idle":
                self._announceGone()

    def _announceGone(self) -> None:
        gone, self._gone = self._gone, []
        view = self.view
        if view is None:
            return
        for uid in sorted(set(gone), reverse=True):
            if uid in view.flags:
                self.sendUntaggedResponse(b"%d EXPUNGE" % view.remove(uid))

    def copiesChanged(self, changes: list[ChangedCopy]) -> None:
        """
        Copies of the selected mailbox whose flags changed (the HTTP API,
        another session, this one): told with an unsolicited C{FETCH
        (FLAGS ...)} at once while idling, else when the next command
        completes.  Only what differs from what this session last showed
        is told, so a session's own STORE is not echoed (RFC 3501 6.4.6).
        """
        view = self.view
        if view is None:
            return
        for change in changes:
            if change.uid in view.flags:
                self._changed[change.uid] = change.flags
        if self._changed and self.parseState == "idle":
            self._announceChanged()

    def _announceChanged(self) -> None:
        changed, self._changed = self._changed, {}
        view = self.view
        if view is None:
            return
        gone = set(self._gone)
        for uid in sorted(changed):
            state = changed[uid]
            # An expunged copy's last flags are not worth telling.
            if uid in gone or view.flags.get(uid, state) == state:
                continue
            view.flags[uid] = state
            for line in _newKeywords(view, state.labels):
                self.sendUntaggedResponse(line)
            self.sendUntaggedResponse(b"%d FETCH (FLAGS %s)" % (view.seq(uid), flagList(state)))

    # Unsupported changes

    def _refuse(self, tag: bytes, *args: Any) -> None:
        self.sendNegativeResponse(
            tag, b"[CANNOT] Capture's folders are its inboxes: they cannot be created, "
            b"renamed, deleted or appended to"
        )

    auth_CREATE = select_CREATE = _command(_refuse, imap4.IMAP4Server.arg_line)
    auth_DELETE = select_DELETE = _command(_refuse, imap4.IMAP4Server.arg_line)
    auth_RENAME = select_RENAME = _command(_refuse, imap4.IMAP4Server.arg_line)

    def _append(self, tag: bytes, line: bytes) -> None:
        # A LITERAL+ client sends the message without waiting: it is
        # skipped once this is answered (lineReceived), unless it is too
        # large to be worth reading past.
        stripped = line.rstrip()
        if stripped.endswith(b"+}") and b"{" in stripped:
            size = stripped[stripped.rindex(b"{") + 1 : -2]
            if size.isdigit() and (len(size) > 9 or int(size) > 64 * 1024 * 1024):
                self.sendBadResponse(tag, b"[TOOBIG] Literal too large")
                self.transport.loseConnection()
                return
        self._refuse(tag)

    auth_APPEND = select_APPEND = _command(_append, imap4.IMAP4Server.arg_line)

    def do_COPY(self, tag: bytes, messages: imap4.MessageSet, mailbox: bytes,
                uid: int = 0) -> None:
        self._toTrash(tag, messages, mailbox, bool(uid), move=False)

    def do_MOVE(self, tag: bytes, messages: imap4.MessageSet, mailbox: bytes,
                uid: int = 0) -> None:
        self._toTrash(tag, messages, mailbox, bool(uid), move=True)

    def _toTrash(self, tag: bytes, messages: imap4.MessageSet, mailbox: bytes, uid: bool,
                 move: bool) -> None:
        """
        Each copy belongs to its inbox, so it can go nowhere else; but a
        client deletes by moving to Trash, and that deletes the copy (MOVE)
        or does nothing (COPY, which a client follows with \\Deleted and
        EXPUNGE).
        """
        if self._decodeName(mailbox).upper() != TRASH.upper():
            self.sendNegativeResponse(
                tag, b"[CANNOT] Each copy belongs to its inbox; it can only be moved to Trash, "
                b"which deletes it"
            )
            return
        view = self.view
        assert view is not None
        uids = self._select_set(messages, uid)
        if not view.writable:
            self.sendNegativeResponse(tag, b"[READ-ONLY] This mailbox is read-only")
            return
        if not move:
            self.sendPositiveResponse(tag, b"COPY completed (Trash keeps nothing)")
            return
        self._run(tag, self._moveToTrash(tag, view, uids))

    async def _moveToTrash(self, tag: bytes, view: _View, uids: list[int]) -> None:
        gone = await self.factory.store.deleteCopies(uids)
        for u in sorted(gone, reverse=True):
            if u in view.flags:
                self.sendUntaggedResponse(b"%d EXPUNGE" % view.remove(u))
        self.sendPositiveResponse(tag, b"MOVE completed")

    def do_SUBSCRIBE(self, tag: bytes, name: bytes) -> None:
        # Every folder is always subscribed (LSUB lists what LIST lists).
        self.sendPositiveResponse(tag, b"SUBSCRIBE completed")

    auth_SUBSCRIBE = select_SUBSCRIBE = _command(do_SUBSCRIBE, arg_finalastring)
    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = auth_SUBSCRIBE

    # Message sets

    def _select_set(self, messages: imap4.MessageSet, uid: bool) -> list[int]:
        """
        The uids a sequence set (or a UID set) names, ascending.

        @raise imap4.IllegalClientResponse: A sequence number past the end,
            or C{*} in an empty mailbox.
        """
        view = self.view
        assert view is not None
        uids = view.uids
        if uid:
            return uidsIn(messages, uids)
        if not uids:
            raise imap4.IllegalClientResponse("No messages in this mailbox")
        messages.last = len(uids)
        chosen: set[int] = set()
        for low, high in messages.ranges:
            if high > len(uids) or low < 1:
                raise imap4.IllegalClientResponse(
                    f"Message sequence number out of range (1:{len(uids)})"
                )
            chosen.update(range(low, high + 1))
        return [uids[s - 1] for s in sorted(chosen)]

    def arg_searchkeys(self, line: bytes) -> Any:
        # A search string may come as a literal (imapclient sends non-ASCII
        # ones so): read it, put it back into the line as a quoted string,
        # and go on parsing what follows it.
        literal = _TRAILING_LITERAL.search(line)
        if literal is None:
            return splitSearchKeys(line), b""
        self._nonSync = bool(literal.group(2))
        size = int(literal.group(1))
        d = self._stringLiteral(size)

        def got(result: tuple[bytes, bytes]) -> Any:
            data, rest = result
            quoted = b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
            return self.arg_searchkeys(line[: literal.start()] + quoted + rest)

        return d.addCallback(got)

    def arg_flaglist(self, line: bytes) -> Any:
        # Twisted's takes no flags at all for an empty list.
        if not line.strip():
            raise imap4.IllegalClientResponse("Missing flag list")
        return super().arg_flaglist(line)

    def arg_fetchatt(self, line: bytes) -> Any:
        try:
            items, rest = super().arg_fetchatt(line)
        except Exception as e:
            raise imap4.IllegalClientResponse(f"Unknown FETCH item: {e}") from None
        if not items:
            raise imap4.IllegalClientResponse("Missing FETCH items")
        return items, rest

    def arg_seqset(self, line: bytes) -> Any:
        # Twisted's, with the set parsed in one pass (capture.imapsets).
        text, _, rest = line.lstrip().partition(b" ")
        if not text:
            raise imap4.IllegalClientResponse("Missing message set")
        try:
            return parseSequenceSet(text), rest
        except imap4.IllegalIdentifierError as e:
            raise imap4.IllegalClientResponse("Bad message number " + str(e)) from None
        except (ValueError, TypeError) as e:
            raise imap4.IllegalClientResponse(f"Malformed message set: {e}") from None

    # FETCH

    def do_FETCH(self, tag: bytes, messages: imap4.MessageSet, query: list[Any],
                 uid: int = 0) -> None:
        uids = self._select_set(messages, bool(uid))
        self._run(tag, self._fetch(tag, uids, query, bool(uid)))

    select_FETCH = _command(do_FETCH, arg_seqset, arg_fetchatt)
    # Here, after arg_seqset: COPY and MOVE are above, with the refused changes.
    select_COPY = _command(do_COPY, arg_seqset, arg_astring)
    select_MOVE = _command(do_MOVE, arg_seqset, arg_astring)

    async def _fetch(self, tag: bytes, uids: list[int], query: list[Any], uid: bool) -> None:
        view = self.view
        assert view is not None
        kinds = {type(q).__name__ for q in query}
        if uid and "UID" not in kinds:
            query = [imap4._FetchParser.UID(), *query]
        bodies = [q for q in query if type(q).__name__ == "Body"]
        needRaw = any(not headersOnly(b) for b in bodies) or bool(
            kinds & {"RFC822", "RFC822Text"}
        )
        needHeaders = bool(bodies) or "RFC822Header" in kinds
        needPart = any(b.part or not isSection(b) for b in bodies)
        # Only a section (BODY[...]) without .PEEK is reading the message:
        # bare BODY (and so FULL) is its structure (RFC 3501 6.4.5).
        marksSeen = view.writable and (
            any(not b.peek and isSection(b) for b in bodies)
            or bool(kinds & {"RFC822", "RFC822Text"})
        )
        if marksSeen and "Flags" not in kinds:
            query = [*query, imap4._FetchParser.Flags()]
        store = self.factory.store
        # Whole messages are read a few MiB at a time, everything else (the
        # header fetch of a sync) a few thousand messages at a time, each
        # batch written before the next read, at the pace the client reads
        # them: a FETCH of a large mailbox never holds it in memory.
        batches = [uids]
        if needRaw and len(uids) > 1:
            batches = fetchBatches(uids, await store.fetchMessages(uids), _FETCH_BATCH_OCTETS)
        elif len(uids) > _FETCH_BATCH_MESSAGES:
            batches = [
                uids[i : i + _FETCH_BATCH_MESSAGES]
                for i in range(0, len(uids), _FETCH_BATCH_MESSAGES)
            ]
        options = {
            "envelope": "Envelope" in kinds,
            "structure": "BodyStructure" in kinds,
            "raw": needRaw or needHeaders,
            "headersOnly": not needRaw,
            "part": needPart,
        }
        # Metadata of many messages (a client syncing a folder): plain rows
        # written straight out, no object per message (_fetchedMetadata).
        metadata = len(uids) > 1 and kinds <= METADATA_ITEMS
        formatRow = metadataItems(query, view.recent) if metadata else None
        showsFlags = "Flags" in kinds
        # Messages of the view the store no longer has: expunged elsewhere,
        # and not told yet (no EXPUNGE may be sent during a FETCH).
        missing = 0

        async def answer(batch: list[int]) -> bool:
            nonlocal missing
            if formatRow is not None:
                rows = await store.fetchMetadata(
                    batch, envelope=options["envelope"], structure=options["structure"]
                )
                if self.view is not view:
                    return False
                self._fetchedMetadata(view, rows, formatRow, showsFlags)
                missing += len(batch) - len(rows)
                return True
            if len(uids) == 1 and not marksSeen and not showsFlags:
                fetched = await self._readAhead(view, batch[0], uid, options)
            else:
                fetched = await store.fetchMessages(batch, **options)
            if self.view is not view:
                return False
            await self._fetched(view, batch, fetched, query, marksSeen, showsFlags)
            missing += sum(1 for u in batch if u not in fetched)
            return True

        if len(batches) == 1:
            if await answer(uids):
                self._fetchCompleted(tag, missing)
            return
        pressure = _Pressure()
        self.transport.registerProducer(pressure, True)
        try:
            for batch in batches:
                if not await answer(batch):
                    return
                await pressure.writable()
        finally:
            self.transport.unregisterProducer()
        self._fetchCompleted(tag, missing)

    def _fetchCompleted(self, tag: bytes, missing: int) -> None:
        """
        A FETCH's tagged answer: C{NO [EXPUNGEISSUED]} when some of the
        messages it named were expunged elsewhere meanwhile (RFC 2180
        4.1.2, RFC 5530), what was still there having been sent; the
        C{EXPUNGE} follows at the next command that may carry it.
        """
        if missing:
            self.sendNegativeResponse(
                tag, b"[EXPUNGEISSUED] Some of the requested messages no longer exist"
            )
        else:
            self.sendPositiveResponse(tag, b"FETCH completed")

    async def _readAhead(
        self, view: _View, wanted: int, uid: bool, options: dict[str, bool]
    ) -> dict[int, FetchedMessage]:
        """
        Fetch one message, and with it the messages of the identical
        single-message FETCHes pipelined right behind this one (a client
        syncing a folder sends hundreds at once): one store read instead of
        one each, since each read is a trip to a store thread and back.

        Only FETCHes that change nothing and show no flags read ahead, and
        only up to the first other command in C{blocked}; anything but a
        FETCH drops what was read ahead (L{dispatchCommand}).
        """
        if wanted in self._ahead:
            return {wanted: self._ahead.pop(wanted)}
        self._ahead.clear()
        uids = [wanted]
        for line in (self._waiting or self.blocked or [])[:_READ_AHEAD]:
            match = _SINGLE_FETCH_RE.match(line)
            if match is None or _fetchShape(match[2], match[3]) != self._current:
                break
            number = int(match[4])
            if uid:
                if number in view.flags:
                    uids.append(number)
            elif 1 <= number <= len(view.uids):
                uids.append(view.uids[number - 1])
        fetched = await self.factory.store.fetchMessages(sorted(set(uids)), **options)
        self._ahead = {u: m for u, m in fetched.items() if u != wanted}
        return {wanted: fetched[wanted]} if wanted in fetched else {}

    async def _fetched(self, view: _View, uids: list[int], fetched: dict[int, FetchedMessage],
                       query: list[Any], marksSeen: bool, showsFlags: bool) -> None:
        for u, message in fetched.items():
            # Flags as stored now: the API or another session may have
            # changed them since SELECT.
            if u in view.flags and message.flags is not None:
                view.flags[u] = message.flags
        if marksSeen:
            changed = [
                attrs.evolve(view.flags[u], read=True)
                for u in uids if u in fetched and u in view.flags and not view.flags[u].read
            ]
            if changed:
                await self.factory.store.setFlags(changed)
                for state in changed:
                    view.flags[state.uid] = state
        out: list[bytes] = []
        for u in uids:
            found = fetched.get(u)
            flags = view.flags.get(u)
            if found is None or flags is None:
                continue
            items = [fetchItem(q, found, flags, u in view.recent) for q in query]
            if showsFlags and flags.labels:
                out.extend(b"* %s\r\n" % line for line in _newKeywords(view, flags.labels))
            out.append(b"* %d FETCH (%s)\r\n" % (view.seq(u), b" ".join(items)))
            if len(out) >= 256:
                self.transport.write(b"".join(out))
                out = []
        if out:
            self.transport.write(b"".join(out))

    def _fetchedMetadata(self, view: _View, rows: list[MetadataRow],
                         formatRow: Callable[[MetadataRow], bytes], showsFlags: bool) -> None:
        """
        Write the FETCH responses of metadata rows (ascending by uid), what
        L{_fetched} writes for the same items: the view takes each copy's
        flags as stored now, a new L{FlagState} only where they changed.
        """
        flags = view.flags
        uids = view.uids
        known: dict[tuple[int, str], FlagState] = {}
        out: list[bytes] = []
        seq = 0
        for row in rows:
            u = row[0]
            state = flags.get(u)
            if state is None:
                continue
            key = (row[1], row[2])
            stored = known.get(key)
            if stored is None:
                stored = known[key] = metadataFlags(0, row[1], row[2])
                if showsFlags and stored.labels:
                    out.extend(b"* %s\r\n" % line for line in _newKeywords(view, stored.labels))
            if (
                state.read != stored.read
                or state.deleted != stored.deleted
                or state.answered != stored.answered
                or state.flagged != stored.flagged
                or state.labels != stored.labels
            ):
                flags[u] = attrs.evolve(stored, uid=u)
            seq = bisect.bisect_left(uids, u, seq)
            out.append(b"* %d FETCH (%s)\r\n" % (seq + 1, formatRow(row)))
            if len(out) >= 256:
                self.transport.write(b"".join(out))
                out = []
        if out:
            self.transport.write(b"".join(out))

    # STORE

    def do_STORE(self, tag: bytes, messages: imap4.MessageSet, mode: bytes, flags: list[Any],
                 uid: int = 0) -> None:
        view = self.view
        assert view is not None
        if not view.writable:
            self.sendNegativeResponse(tag, b"[READ-ONLY] This mailbox is read-only")
            return
        uids = self._select_set(messages, bool(uid))
        name = mode.upper()
        silent = name.endswith(b".SILENT")
        name = name.removesuffix(b".SILENT")
        modes = {b"FLAGS": 0, b"+FLAGS": 1, b"-FLAGS": -1}
        if name not in modes:
            raise imap4.IllegalClientResponse(f"Unknown STORE item {mode!r}")
        texts = [f.decode("utf-8", "replace") if isinstance(f, bytes) else str(f) for f in flags]
        self._run(tag, self._store(tag, uids, texts, modes[name], silent, bool(uid)))

    select_STORE = _command(do_STORE, arg_seqset, imap4.IMAP4Server.arg_atom, arg_flaglist)

    async def _store(self, tag: bytes, uids: list[int], flags: list[str], mode: int,
                     silent: bool, uid: bool) -> None:
        view = self.view
        assert view is not None
        # Changed from the flags as stored now, not as this session last
        # saw them, so a label set over the API meanwhile is kept.
        current = await self.factory.store.fetchMessages(uids)
        new = [
            applyFlags(current[u].flags or view.flags[u], flags, mode)
            for u in uids if u in view.flags and u in current
        ]
        await self.factory.store.setFlags(new)
        for state in new:
            if view.flags.get(state.uid) is not None:
                view.flags[state.uid] = state
                if not silent:
                    uidPart = b" UID %d" % state.uid if uid else b""
                    for line in _newKeywords(view, state.labels):
                        self.sendUntaggedResponse(line)
                    self.sendUntaggedResponse(
                        b"%d FETCH (FLAGS %s%s)"
                        % (view.seq(state.uid), flagList(state, state.uid in view.recent),
                           uidPart)
                    )
        self.sendPositiveResponse(tag, b"STORE completed")

    # EXPUNGE

    def do_EXPUNGE(self, tag: bytes) -> None:
        view = self.view
        assert view is not None
        if not view.writable:
            self.sendNegativeResponse(tag, b"[READ-ONLY] This mailbox is read-only")
            return
        self._run(tag, self._expungeCommand(tag, view, None))

    select_EXPUNGE = _command(do_EXPUNGE,)

    async def _expungeCommand(self, tag: bytes, view: _View, only: set[int] | None) -> None:
        await self._expunge(view, only, silent=False)
        self.sendPositiveResponse(tag, b"EXPUNGE completed")

    async def _expunge(self, view: _View, only: set[int] | None, silent: bool) -> None:
        doomed = [
            u for u in view.uids
            if view.flags[u].deleted and (only is None or u in only)
        ]
        if not doomed:
            return
        gone = await self.factory.store.deleteCopies(doomed)
        for u in sorted(gone, reverse=True):
            if u in view.flags:
                seq = view.remove(u)
                if not silent:
                    self.sendUntaggedResponse(b"%d EXPUNGE" % seq)

    # SEARCH

    def do_SEARCH(self, tag: bytes, charset: Any, query: list[Any], uid: int = 0) -> None:
        if charset is not None and charset.upper() not in (b"UTF-8", b"US-ASCII"):
            self.sendNegativeResponse(tag, b"[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
            return
        view = self.view
        assert view is not None
        try:
            search = parseSearch(query, view.uids, frozenset(view.recent))
        except SearchError as e:
            self.sendBadResponse(tag, _said(e))
            return
        self._run(tag, self._search(tag, search, bool(uid)))

    select_SEARCH = _command(do_SEARCH, imap4.IMAP4Server.opt_charset,
                     arg_searchkeys)

    async def _search(self, tag: bytes, search: Any, uid: bool) -> None:
        view = self.view
        assert view is not None
        found = await self.factory.store.searchMessages(
            list(view.uids), search.match, bodies=search.bodies
        )
        numbers = [u if uid else view.seq(u) for u in found if u in view.flags]
        self.sendUntaggedResponse(b" ".join([b"SEARCH", *(b"%d" % n for n in numbers)]))
        self.sendPositiveResponse(tag, b"SEARCH completed")

    # UID

    def do_UID(self, tag: bytes, command: bytes, line: bytes) -> None:
        command = command.upper()
        if command == b"EXPUNGE":
            self._commandName = b"UID EXPUNGE"
            view = self.view
            assert view is not None
            messages, _ = self.arg_seqset(line)
            only = set(self._select_set(messages, True))
            if not view.writable:
                self.sendNegativeResponse(tag, b"[READ-ONLY] This mailbox is read-only")
                return
            self._run(tag, self._expungeCommand(tag, view, only))
            return
        if command not in (b"FETCH", b"STORE", b"SEARCH", b"COPY", b"MOVE"):
            raise imap4.IllegalClientResponse(f"Unknown UID command {command!r}")
        self._commandName = b"UID " + command
        self.dispatchCommand(tag, command, line, uid=1)

    select_UID = _command(do_UID, imap4.IMAP4Server.arg_atom, imap4.IMAP4Server.arg_line)


@implementer(IPushProducer)
class _Pressure:
    """
    The transport's say on when a long FETCH may write more: registered
    while it runs, paused when the client reads slower than we write.
    """

    def __init__(self) -> None:
        self._paused = False
        self._waiting: list[defer.Deferred[None]] = []

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def stopProducing(self) -> None:
        # The connection is gone: let the FETCH finish writing into nothing.
        self.resumeProducing()

    def writable(self) -> defer.Deferred[None]:
        if not self._paused:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d


class _No(Exception):
    """
    A command refused with a tagged C{NO} and this text.
    """


def _said(error: BaseException | None) -> bytes:
    """
    An exception's text as a reply may quote it: printable ASCII, at most
    200 characters (errors quote what the client sent, up to a whole line).
    """
    text = re.sub(r"[^\x20-\x7e]", "?", str(error))
    if len(text) > 200:
        text = text[:197] + "..."
    return text.encode("ascii")


def _flagsLines(view: _View) -> list[bytes]:
    """
    The untagged C{FLAGS} and C{OK [PERMANENTFLAGS]} of a mailbox: the
    system flags and every keyword the session was shown (RFC 3501 7.2.6:
    a client learns the keywords in use from these).
    """
    known = list(view.keywords)
    flags = " ".join([*_SYSTEM_FLAGS, *known]).encode("ascii")
    permanent = " ".join([*_PERMANENT, *known, "\\*"]).encode("ascii") if view.writable else b""
    return [
        b"FLAGS (" + flags + b")",
        b"OK [PERMANENTFLAGS (" + permanent + b")] Flags and keywords persist",
    ]


def _newKeywords(view: _View, labels: tuple[str, ...]) -> list[bytes]:
    """
    What must precede a C{FETCH} showing C{labels}: a new C{FLAGS} and
    C{PERMANENTFLAGS} if one of them is a keyword the session was not told
    of (a client must see a keyword in FLAGS before it is used), else
    nothing.
    """
    new = [k for k in keywords(labels) if k not in view.keywords]
    if not new:
        return []
    view.keywords.update(dict.fromkeys(new))
    return _flagsLines(view)


def _visibleTo(seen: Visibility | None, savedBy: str | None) -> bool:
    return seen is not None and (seen.everything or savedBy is None or savedBy == seen.starredBy)


def _mailboxKey(query: MailboxQuery) -> tuple[str, str]:
    """
    A mailbox as the hub and L{RecentCopies} name it.
    """
    if query.inbox is not None:
        return ("inbox", query.inbox)
    return ("sent", str(query.sentBy))


def _mailboxName(name: str) -> bytes:
    encoded: bytes = name.encode("imap4-utf-7")
    return b'"' + encoded.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class IMAPFactory(SessionFactory):
    """
    Build IMAP sessions for one listener; every listener shares the store,
    the portal, the login throttle and the metrics.

    @ivar hub: New, deleted and changed copies, to the sessions that
        selected their inbox.
    @ivar recent: Which copies have had their C{\\Recent} claimed; one for
        every IMAP listener of the process (each copy is recent in one
        session, whichever listener it came through).
    """

    protocolName = "imap"
    refusal = b"* BYE Too many connections, try again later"
    addressRefusal = b"* BYE Too many connections from your address, try again later"

    def __init__(
        self,
        store: IStore,
        portal: Portal,
        settings: IMAPSettings,
        tlsOptions: Any = None,
        throttle: LoginThrottle | None = None,
        metrics: Metrics | None = None,
        recent: RecentCopies | None = None,
        *,
        events: IEventBus,
    ) -> None:
        """
        @param events: The bus the store publishes to: new, removed and
            changed copies reach the sessions that have them selected.
        """
        super().__init__(store, portal, settings, tlsOptions, throttle, metrics)
        self.hub = _Hub(events)
        self.recent = recent if recent is not None else RecentCopies()

    def startFactory(self) -> None:
        # The first listener to start tells every one which copies were
        # there before this process (not \Recent).
        if self.recent.needsStart():
            self.recent.start(defer.maybeDeferred(self.store.nextUid))

    def buildSession(self) -> CaptureIMAP:
        return CaptureIMAP(self)
