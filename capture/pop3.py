# -*- test-case-name: tests.test_pop3,tests.test_pop3_unit -*-
"""
POP3 (RFC 1939, 2449, 2595, 5034): captured mail for any mail client.

L{CapturePOP3} is Twisted's L{twisted.mail.pop3.POP3} (its idle timeout
and reply helpers) with the parts that are wrong for us replaced, the gaps
of C{reference/twisted-gaps.md} section 3:

  - P1: C{STLS}, with whatever was pipelined after it dropped, and login
    refused before TLS unless C{--allow-insecure-auth};
  - P2: C{RETR}/C{TOP} send the stored bytes as they are (they are CRLF
    already), dot-stuffed on every line including the first, each reply
    with its terminator in one write;
  - P3: a message marked by C{DELE} leaves C{STAT}, C{LIST} and C{UIDL} at
    once; it is removed from the store at C{QUIT}, through the access rule;
  - P4: bad arguments answer C{-ERR} and the session goes on;
  - P5: C{CAPA} lists only what is implemented.

A login (C{USER}/C{PASS}, or C{AUTH} PLAIN or LOGIN) goes through the one portal for
an L{IMailboxReader}: an address opens that inbox (the copies the API
lists), the account's own name its C{INBOX} (the mail it sent through
Capture).  The session numbers a snapshot taken at login
(L{MailboxEntry}: a few numbers per message) and reads each message's
bytes only when asked for, one at a time, so memory does not grow with the
mailbox; writes wait while the client is not reading.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from typing import Any, cast

import attrs
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IPushProducer, ISSLTransport, ITLSTransport
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.mail import pop3
from twisted.python.failure import Failure
from zope.interface import implementer

from capture.access import Action, permits, visibility
from capture.auth import MECHANISMS, IMailboxReader, LoginLogin, MailboxReader, PlainLogin
from capture.sessions import SessionFactory
from capture.store.errors import NotFound
from capture.store.interface import IStore
from capture.store.model import MailboxEntry

_log = Logger()

# RFC 2449 allows 255 octets in a command line; a little more is harmless,
# far more is not a POP3 client.
MAX_LINE = 1024
# Commands a client may give before it logs in (RFC 1939 AUTHORIZATION
# state, with RFC 2449's CAPA, RFC 2595's STLS and RFC 5034's AUTH).
# Unanswered command bytes held before the session stops reading.
_MAX_UNREAD = 64 * 1024
_BEFORE_LOGIN = frozenset({b"CAPA", b"USER", b"PASS", b"AUTH", b"STLS", b"QUIT"})
_BARE_LINE_END = re.compile(rb"(?<!\r)\n")
_BAD_LOGIN = b"-ERR [AUTH] Invalid user name or API key"


def multiline(body: bytes) -> bytes:
    """
    C{body} as the data of a multi-line reply: CRLF line ends (a bare LF
    becomes CRLF; stored mail is CRLF already), a dot doubled at the start
    of every line (the first too), a final CRLF if it lacks one, then the
    terminating C{.CRLF}.
    """
    if b"\n" in body and body.count(b"\n") != body.count(b"\r\n"):
        body = _BARE_LINE_END.sub(b"\r\n", body)
    body = body.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def top(raw: bytes, lines: int) -> bytes:
    """
    The header of a message, its blank line, and the first C{lines} lines
    of its body (RFC 1939 TOP).
    """
    if raw.startswith(b"\r\n"):
        end = 0
    else:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            return raw
        end += 2
    cut = end + 2
    for _ in range(lines):
        following = raw.find(b"\r\n", cut)
        if following < 0:
            return raw
        cut = following + 2
    return raw[:cut]


@attrs.frozen
class POP3Settings:
    """
    What every POP3 session of a listener shares.

    @ivar allowInsecureAuth: Whether a client may log in before TLS.
    """

    hostname: str = "localhost"
    allowInsecureAuth: bool = False
    idleTimeout: float = 300.0


@attrs.define
class MailboxView:
    """
    A session's mailbox: the snapshot taken at login, numbered from 1, and
    what it marked deleted.
    """

    account: str
    entries: list[MailboxEntry]
    deleted: set[int] = attrs.field(factory=set)

    def live(self) -> Iterator[tuple[int, MailboxEntry]]:
        """
        The messages not marked deleted, with their numbers.
        """
        for index, entry in enumerate(self.entries):
            if index + 1 not in self.deleted:
                yield index + 1, entry

    def find(self, argument: bytes) -> MailboxEntry | bytes:
        """
        The message C{argument} numbers, or the C{-ERR} reply saying why
        there is none.
        """
        if not argument.isdigit():
            return b"-ERR Invalid message number: " + argument[:40]
        number = int(argument)
        if not 1 <= number <= len(self.entries):
            return b"-ERR No such message: %d" % number
        if number in self.deleted:
            return b"-ERR Message %d is deleted" % number
        return self.entries[number - 1]


@implementer(IPushProducer)
class CapturePOP3(pop3.POP3):
    """
    One POP3 session.  Lines are split here, not by C{LineOnlyReceiver}:
    commands wait (unread, in order) while one waits on the store or the
    client is not reading replies, an over-long line is skipped without
    being buffered, and whatever follows STLS is dropped.
    """

    factory: POP3Factory  # type: ignore[assignment]
    # Not LineReceiver's bytes: see __init__.
    _buffer: bytearray  # type: ignore[assignment]
    portal: Portal  # type: ignore[assignment]
    transport: Any

    def __init__(self, store: IStore, portal: Portal, settings: POP3Settings,
                 tlsOptions: Any = None) -> None:
        self.store = store
        self.portal = portal
        self.settings = settings
        self.ctx = tlsOptions
        self.timeOut = int(settings.idleTimeout)
        # Cut from the front line by line: a bytearray moves its start
        # instead of copying what follows (pipelined lines cost linear time).
        self._buffer = bytearray()
        self._skipping = False
        self._held: Deferred[Any] | None = None
        self._writePaused = False
        self._readPaused = False
        self._lost = False
        self._tls = False
        self._user: bytes | None = None
        # The SASL exchange waiting for the client's next response.
        self._sasl: PlainLogin | LoginLogin | None = None
        self.view: MailboxView | None = None
        self._peerIP = ""

    # Connection

    def connectionMade(self) -> None:
        self._tls = ISSLTransport.providedBy(self.transport)
        peer = self.transport.getPeer()
        self._peerIP = str(getattr(peer, "host", peer))
        self.transport.registerProducer(self, True)
        self.transport.write(b"+OK Capture POP3 server ready\r\n")
        self.setTimeout(self.timeOut)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._lost = True
        self.setTimeout(None)
        self.view = None
        self.factory.connectionClosed()

    def timeoutConnection(self) -> None:
        self.transport.write(b"-ERR Idle for too long, closing\r\n")
        self.transport.loseConnection()

    def pauseProducing(self) -> None:
        # The client is not reading what we write: answer nothing more
        # until it catches up.  (Not by pausing the transport's reading:
        # TLS pauses its producer during the handshake, and the handshake
        # needs reading.)
        self._writePaused = True

    def resumeProducing(self) -> None:
        self._writePaused = False
        self._process()

    def stopProducing(self) -> None:
        self._lost = True

    # Lines

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        self._process()

    def _process(self) -> None:
        self._lines()
        if self._lost:
            return
        # Commands pile up while they wait (for the store, or for the
        # client to read): stop reading until they are answered.
        unread = len(self._buffer) > _MAX_UNREAD
        if unread != self._readPaused:
            self._readPaused = unread
            if unread:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    def _lines(self) -> None:
        while not (self._held or self._writePaused or self._lost):
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    if not self._skipping:
                        self._tooLong()
                    self._skipping = True
                    self._buffer.clear()
                return
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > MAX_LINE:
                self._tooLong()
                continue
            self.resetTimeout()
            self.lineReceived(line.rstrip(b"\r"))

    def _tooLong(self) -> None:
        self.transport.write(b"-ERR Line too long\r\n")

    def lineReceived(self, line: bytes) -> None:
        if self._sasl is not None:
            challenger, self._sasl = self._sasl, None
            self._saslResponse(challenger, line.strip())
            return
        parts = line.split(None, 1)
        if not parts:
            self.transport.write(b"-ERR Empty command\r\n")
            return
        command = parts[0].upper()
        argument = parts[1].strip() if len(parts) > 1 else b""
        handler = getattr(self, "pop3_" + command.decode("ascii", "replace"), None)
        if handler is None or not command.isalpha():
            self.transport.write(b"-ERR Unknown command: " + command[:40] + b"\r\n")
            return
        if self.view is None and command not in _BEFORE_LOGIN:
            self.transport.write(b"-ERR Log in first (USER and PASS, or AUTH PLAIN)\r\n")
            return
        handler(argument)

    def _hold(self, d: Deferred[Any]) -> None:
        """
        Read no further command until C{d} fires.
        """
        self._held = d

        def release(result: object) -> None:
            self._held = None
            if isinstance(result, Failure):
                _log.failure("POP3 command failed", result)
                if not self._lost:
                    self.transport.write(b"-ERR [SYS/TEMP] Temporary failure, try again\r\n")
            if not self._lost:
                self._process()

        d.addBoth(release)

    # Before login

    def _loginAllowed(self) -> bool:
        return self._tls or self.settings.allowInsecureAuth

    def _canStartTLS(self) -> bool:
        return (
            not self._tls
            and self.view is None
            and self.ctx is not None
            and ITLSTransport.providedBy(self.transport)
        )

    def pop3_CAPA(self, argument: bytes) -> None:
        capabilities = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self._canStartTLS():
            capabilities.append(b"STLS")
        if self.view is None and self._loginAllowed():
            capabilities += [b"USER", b"SASL " + b" ".join(MECHANISMS)]
        capabilities.append(b"IMPLEMENTATION Capture")
        self.transport.write(
            b"+OK Capability list follows\r\n" + b"".join(c + b"\r\n" for c in capabilities)
            + b".\r\n"
        )

    def pop3_STLS(self, argument: bytes) -> None:
        if self._tls:
            self.transport.write(b"-ERR Already using TLS\r\n")
            return
        if not self._canStartTLS():
            self.transport.write(b"-ERR STLS not available now\r\n")
            return
        self.transport.write(b"+OK Begin TLS negotiation\r\n")
        # RFC 2595 section 4: nothing the client sent before the handshake
        # may count as sent over it (gap P1, the S1 injection).
        self._buffer = bytearray()
        self._user = None
        self.transport.startTLS(self.ctx)
        self._tls = True

    def _refuseLogin(self) -> bool:
        """
        Answer for a login that may not be tried now, and say whether it
        was refused.
        """
        if self.view is not None:
            self.transport.write(b"-ERR Already logged in\r\n")
            return True
        if not self._loginAllowed():
            self.transport.write(b"-ERR [AUTH] Use STLS first: no login before TLS here\r\n")
            return True
        if self.factory.throttle.refused(self._peerIP):
            self.transport.write(b"-ERR [LOGIN-DELAY] Too many failed logins, try again later\r\n")
            self.transport.loseConnection()
            return True
        return False

    def pop3_USER(self, argument: bytes) -> None:
        if self._refuseLogin():
            return
        if not argument:
            self.transport.write(b"-ERR USER needs a user name\r\n")
            return
        self._user = argument
        self.transport.write(b"+OK Send the API key with PASS\r\n")

    def pop3_PASS(self, argument: bytes) -> None:
        if self._refuseLogin():
            return
        if self._user is None:
            self.transport.write(b"-ERR USER first\r\n")
            return
        user, self._user = self._user, None
        self._login(UsernamePassword(user, argument))

    def pop3_AUTH(self, argument: bytes) -> None:
        if not argument:
            # The mechanism list some clients ask for (RFC 1734 practice).
            self.transport.write(b"+OK\r\n" + b"".join(m + b"\r\n" for m in MECHANISMS) + b".\r\n")
            return
        if self._refuseLogin():
            return
        parts = argument.split(None, 1)
        factory = MECHANISMS.get(parts[0].upper())
        if factory is None:
            self.transport.write(b"-ERR Unsupported mechanism (PLAIN or LOGIN)\r\n")
            return
        challenger = factory()
        challenge = challenger.getChallenge()
        if len(parts) == 1:
            self._ask(challenger, challenge)
            return
        # An initial response (RFC 5034): "=" stands for an empty one.
        initial = parts[1].strip()
        self._saslResponse(challenger, b"" if initial == b"=" else initial)

    def _ask(self, challenger: PlainLogin | LoginLogin, challenge: bytes) -> None:
        self._sasl = challenger
        self.transport.write(b"+ " + base64.b64encode(challenge) + b"\r\n")

    def _saslResponse(self, challenger: PlainLogin | LoginLogin, response: bytes) -> None:
        if response == b"*":
            self.transport.write(b"-ERR Authentication cancelled\r\n")
            return
        try:
            challenger.setResponse(base64.b64decode(response, validate=True))
        except (binascii.Error, ValueError):
            self.transport.write(b"-ERR Cannot decode the " + challenger.name + b" response\r\n")
            return
        if challenger.moreChallenges():
            self._ask(challenger, challenger.getChallenge())
            return
        # A PLAIN authorization identity is the checker's to judge
        # (auth.mayActAs), as for every protocol.
        self._login(challenger)

    def _login(self, credentials: UsernamePassword) -> None:
        self._hold(
            ensureDeferred(self._open(credentials)).addCallbacks(
                self._loggedIn, self._loginFailed
            )
        )

    async def _open(self, credentials: UsernamePassword) -> MailboxView:
        _, avatar, _ = await self.portal.login(credentials, None, IMailboxReader)
        reader = cast(MailboxReader, avatar)
        if reader.inbox is None:
            entries = await self.store.listSent(reader.account)
        else:
            owner = await self.store.inboxOwner(reader.inbox)
            seen = visibility(reader.account, owner)
            if seen is None:
                raise UnauthorizedLogin()
            entries = await self.store.listMailbox(reader.inbox, seen)
        return MailboxView(reader.account, entries)

    def _loggedIn(self, view: MailboxView) -> None:
        if self._lost:
            return
        self.factory.throttle.succeeded(self._peerIP)
        self.view = view
        self.transport.write(
            b"+OK Logged in, %d messages (%d octets)\r\n"
            % (len(view.entries), sum(e.size for e in view.entries))
        )

    def _loginFailed(self, reason: Failure) -> Deferred[None] | None:
        if self._lost:
            return None
        if not reason.check(UnauthorizedLogin):
            return reason  # type: ignore[return-value]  # answered by _hold
        self.factory.metrics.authFailed("pop3")
        wait = self.factory.throttle.failed(self._peerIP)
        if wait:
            return deferLater(self.factory.clock, wait, self._answerLate, _BAD_LOGIN)
        self.transport.write(_BAD_LOGIN + b"\r\n")
        return None

    def _answerLate(self, reply: bytes) -> None:
        if not self._lost:
            self.transport.write(reply + b"\r\n")

    # After login

    def _view(self) -> MailboxView:
        assert self.view is not None
        return self.view

    def pop3_STAT(self, argument: bytes) -> None:
        live = [e.size for _, e in self._view().live()]
        self.transport.write(b"+OK %d %d\r\n" % (len(live), sum(live)))

    def _listing(self, argument: bytes, line: Callable[[int, MailboxEntry], bytes]) -> None:
        view = self._view()
        if argument:
            found = view.find(argument)
            if isinstance(found, bytes):
                self.transport.write(found + b"\r\n")
            else:
                self.transport.write(b"+OK " + line(int(argument), found) + b"\r\n")
            return
        self.transport.write(
            b"+OK\r\n" + b"".join(line(n, e) + b"\r\n" for n, e in view.live()) + b".\r\n"
        )

    def pop3_LIST(self, argument: bytes) -> None:
        self._listing(argument, lambda n, e: b"%d %d" % (n, e.size))

    def pop3_UIDL(self, argument: bytes) -> None:
        self._listing(argument, lambda n, e: b"%d %s" % (n, e.copyId.encode("ascii")))

    def pop3_RETR(self, argument: bytes) -> None:
        self._send(argument, None)

    def pop3_TOP(self, argument: bytes) -> None:
        parts = argument.split()
        if len(parts) != 2 or not parts[1].isdigit():
            self.transport.write(b"-ERR Syntax: TOP message lines\r\n")
            return
        self._send(parts[0], int(parts[1]))

    def _send(self, argument: bytes, lines: int | None) -> None:
        found = self._view().find(argument)
        if isinstance(found, bytes):
            self.transport.write(found + b"\r\n")
            return
        number = int(argument)

        def reply(raw: bytes) -> None:
            if self._lost:
                return
            body = raw if lines is None else top(raw, lines)
            # One write: status line, data and terminator together.
            self.transport.write(b"+OK %d octets\r\n" % len(body) + multiline(body))

        def gone(reason: Failure) -> None:
            reason.trap(NotFound)
            if not self._lost:
                self.transport.write(b"-ERR Message %d is no longer in the store\r\n" % number)

        self._hold(self.store.getEntryRaw(found).addCallbacks(reply, gone))

    def pop3_DELE(self, argument: bytes) -> None:
        view = self._view()
        found = view.find(argument)
        if isinstance(found, bytes):
            self.transport.write(found + b"\r\n")
            return
        view.deleted.add(int(argument))
        self.transport.write(b"+OK Message %d deleted\r\n" % int(argument))

    def pop3_RSET(self, argument: bytes) -> None:
        view = self._view()
        view.deleted.clear()
        self.transport.write(b"+OK %d messages\r\n" % len(view.entries))

    def pop3_NOOP(self, argument: bytes) -> None:
        self.transport.write(b"+OK\r\n")

    def pop3_QUIT(self, argument: bytes) -> None:
        view = self.view
        if view is None or not view.deleted:
            self.transport.write(b"+OK Bye\r\n")
            self.transport.loseConnection()
            return
        marked = [view.entries[n - 1] for n in sorted(view.deleted)]
        self._hold(ensureDeferred(self._update(view.account, marked)).addCallback(self._bye))

    async def _update(self, account: str, marked: list[MailboxEntry]) -> tuple[int, int]:
        """
        RFC 1939 UPDATE state: remove the marked copies the account may
        delete (the same rule as the API's DELETE), as they are now.
        """
        removed = kept = 0
        for entry in marked:
            try:
                copy = await self.store.getCopy(entry.copyId)
            except NotFound:
                removed += 1  # someone else removed it meanwhile
                continue
            owner = await self.store.inboxOwner(copy.inbox)
            if not permits(account, Action.DELETE, owner, copy.savedBy):
                kept += 1
                continue
            try:
                await self.store.deleteCopy(copy)
            except NotFound:
                pass
            removed += 1
        return removed, kept

    def _bye(self, counts: tuple[int, int]) -> None:
        removed, kept = counts
        if self._lost:
            return
        if kept:
            self.transport.write(
                b"-ERR %d messages deleted, %d not removed: the account may not delete them\r\n"
                % (removed, kept)
            )
        else:
            self.transport.write(b"+OK Bye, %d messages deleted\r\n" % removed)
        self.transport.loseConnection()


class POP3Factory(SessionFactory):
    """
    Builds L{CapturePOP3} sessions for one listener (POP3 with STLS, or
    POP3S: a session tells from its transport).

    @ivar metrics: Counted as C{protocol="pop3"} for both.
    """

    protocolName = "pop3"
    refusal = b"-ERR [SYS/TEMP] Too many connections, try again later"
    addressRefusal = b"-ERR [SYS/TEMP] Too many connections from your address, try again later"

    def buildSession(self) -> CapturePOP3:
        p = CapturePOP3(self.store, self.portal, self.settings, self.tlsOptions)
        p.factory = self
        return p
