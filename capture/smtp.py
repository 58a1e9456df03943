# -*- test-case-name: tests.test_smtp_unit,tests.test_smtp_server -*-
"""
The SMTP capture relay: accept every message, deliver none, store a copy
per recipient.

Built on Twisted's L{ESMTP} for its AUTH machinery (challengers, the
portal), with the gaps of C{reference/twisted-gaps.md} section 1 fixed here:

  - S1: STARTTLS discards everything pipelined after it and forgets the
    session (RFC 3207 4.2).
  - S2: an over-long line never escapes DATA: the message is rejected at its
    end and no part of it is run as a command.
  - S3: commands are read one at a time; while a command waits on the store
    (AUTH, end of DATA) later pipelined commands wait too, and reading from
    the socket pauses.
  - S4/S5: SIZE, 8BITMIME, PIPELINING, ENHANCEDSTATUSCODES and SMTPUTF8,
    with our own MAIL/RCPT parser that takes UTF-8 addresses.
  - S6: NOOP, VRFY, HELP.
  - S7: a bare or malformed AUTH gets 501 and the session goes on.
  - S8: AUTH only after TLS unless C{--allow-insecure-auth}.
  - S9: C{250 OK : queued as <id>}, as Mailsac answers, once it is durable.
  - S10: DATA ended with a bare-LF C{\\n.\\n} gets an error and a hang-up at
    once instead of hanging until the idle timeout.
  - S11: one stored message per transaction, whatever the number of RCPTs;
    the idle timeout is a setting; our own C{Received:} line.
"""

from __future__ import annotations

import base64
import datetime
import functools
import re
import time
import unicodedata
from collections.abc import Callable
from email.utils import format_datetime
from typing import Any, ClassVar, cast

import attrs
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.mail.interfaces import IChallengeResponse
from twisted.mail.smtp import ESMTP
from twisted.python.failure import Failure

from capture.addresses import inboxOf, shown
from capture.auth import MECHANISMS, ISubmitter, LoginThrottle
from capture.ids import newQueueId
from capture.ingest import Ingest
from capture.metrics import Metrics
from capture.mime import HEADER_LINE_RE
from capture.sessions import SessionFactory
from capture.store.errors import StoreFull
from capture.store.interface import IStore
from capture.store.model import Envelope, Recipient

_log = Logger()

_COMMAND = "command"
_DATA = "data"
_AUTH = "auth"

_PATH_RE = re.compile(rb"^(?:FROM|TO):\s*(<[^<>]*>|[^\s<>]+)(?:\s+(.*))?$", re.IGNORECASE | re.DOTALL)
_PARAM_RE = re.compile(rb"^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([!-<>-~\x80-\xff]*))?$")
_HELO_SAFE = re.compile(r"[^!-~]")
_BAD_CREDENTIALS = b"5.7.8 Authentication credentials invalid"
# How long a client that ended DATA with LF.LF has to send more before it is
# told so and disconnected.
_BARE_LF_WAIT = 1.0
_POSTMASTER_RE = re.compile(rb"(?<=^TO:)\s*<postmaster>$", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s")
# RFC 6531 3.4: non-ASCII in the envelope needs MAIL's SMTPUTF8 parameter
# (RFC 6533's X.6.7, "Non-ASCII addresses not permitted").
_NEEDS_SMTPUTF8 = b"5.6.7 <%s>: a non-ASCII address needs SMTPUTF8 on MAIL FROM"
_QUOTED_RE = re.compile(r'"(?:[^"\\\x00-\x1f\x7f]|\\[ -~])*"')


@attrs.frozen
class SMTPSettings:
    """
    The limits and switches of the SMTP listeners (the twistd options).

    @ivar maxLineLength: Longest line inside DATA, CRLF excluded.
    @ivar maxCommandLength: Longest command line.
    @ivar maxErrors: Protocol errors tolerated before C{421} and close.
    """

    hostname: str = "localhost"
    maxMessageSize: int = 25 * 1024 * 1024
    maxRecipients: int = 100
    maxLineLength: int = 1024 * 1024
    maxCommandLength: int = 4096
    maxErrors: int = 10
    idleTimeout: float = 300.0
    storeTimeout: float = 60.0
    allowInsecureAuth: bool = False
    allowAnonymous: bool = False


@functools.lru_cache(maxsize=4)
def _rfc5322Date(seconds: int) -> str:
    """
    The date of a C{Received:} line, made once per second rather than once
    per message.
    """
    return format_datetime(datetime.datetime.fromtimestamp(seconds, datetime.UTC))


@attrs.define
class IngestBudget:
    """
    How much memory the message data of every SMTP session together may
    take, from the first data line until the store has it: without it, a
    thousand clients each sending a message of the maximum size would
    exhaust memory.

    Each octet of data counts L{copies} times, reserved as it arrives: the
    data itself (one buffer per message, the C{Received:} line put in front
    in place), what parsing makes (a text body as text, an attachment
    decoded) and the copy SQLite binds when it writes the message.  Measured
    by C{bench/ingest_memory.py}; text of characters outside the Basic
    Multilingual Plane costs more (Python keeps it at 4 octets a character).

    @ivar used: Octets reserved now (L{copies} per octet of data).
    """

    limit: int
    used: int = 0
    copies: ClassVar[int] = 3

    def take(self, octets: int) -> bool:
        """
        Reserve room for C{octets} of message data, unless that would
        cross the limit.
        """
        cost = octets * self.copies
        if self.used + cost > self.limit:
            return False
        self.used += cost
        return True

    def give(self, octets: int) -> None:
        """
        Give back the room of C{octets} of message data.
        """
        self.used -= octets * self.copies


class SMTPError(Exception):
    """
    A command failed with this reply.
    """

    def __init__(self, code: int, text: bytes) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


def _longestLine(data: bytearray | memoryview) -> int:
    """
    The length of the longest CRLF-ended line in C{data}.
    """
    found = bytes(data) if isinstance(data, memoryview) else data
    return max(len(line) for line in found.split(b"\r\n"))


def parsePath(argument: bytes, keyword: bytes) -> tuple[str, dict[str, str]]:
    """
    Parse the argument of MAIL (C{FROM:<a> params}) or RCPT (C{TO:<a>}).

    Addresses may be UTF-8 (SMTPUTF8) and are returned as text; a source
    route (C{<@a,@b:user@c>}) is dropped, as RFC 5321 allows.

    @raise SMTPError: On bad syntax, bad UTF-8 or an unknown parameter.
    """
    what = b"MAIL FROM" if keyword == b"FROM" else b"RCPT TO"
    match = _PATH_RE.match(argument.strip())
    if match is None or not argument.strip().upper().startswith(keyword + b":"):
        raise SMTPError(501, b"5.5.4 Syntax: " + what + b":<address>")
    path, rest = match.group(1), match.group(2) or b""
    if path.startswith(b"<"):
        path = path[1:-1]
    if path.startswith(b"@") and b":" in path:
        path = path.split(b":", 1)[1]
    try:
        address = path.decode("utf-8")
    except UnicodeDecodeError:
        raise SMTPError(553, b"5.6.7 Address is not valid UTF-8") from None
    params: dict[str, str] = {}
    for word in rest.split():
        param = _PARAM_RE.match(word)
        if param is None:
            raise SMTPError(501, b"5.5.4 Bad parameter syntax")
        params[param.group(1).decode("ascii").upper()] = (param.group(2) or b"").decode(
            "utf-8", "replace"
        )
    if address:
        local, at, domain = address.rpartition("@")
        # RFC 5321 allows spaces inside a quoted local part, nowhere else.
        unquoted = _QUOTED_RE.sub('""', address)
        if not at or not local or not domain or _SPACE_RE.search(unquoted):
            if keyword == b"FROM":
                raise SMTPError(501, b"5.1.7 Bad sender address syntax")
            raise SMTPError(553, b"5.1.3 <" + shown(address) + b">: not a valid address")
    elif keyword == b"TO":
        raise SMTPError(553, b"5.1.3 Bad recipient address syntax")
    return address, params


def _checkSender(address: str, smtputf8: bool) -> None:
    """
    Refuse a reverse-path no record of it should hold: control or format
    characters (a NUL, a CR), or non-ASCII without C{SMTPUTF8}.  A sender
    names no inbox, so it is not held to the whole address rule: mail from
    an unusual but harmless sender is still captured.

    @raise SMTPError: 553 with the address escaped.
    """
    if any(
        not (" " <= c <= "~") and (c.isascii() or unicodedata.category(c) in ("Cc", "Cf", "Cs"))
        for c in address
    ):
        raise SMTPError(553, b"5.1.7 <" + shown(address) + b">: not a valid sender address")
    if not smtputf8 and not address.isascii():
        raise SMTPError(553, _NEEDS_SMTPUTF8 % shown(address))


class CaptureSMTP(ESMTP):
    """
    One SMTP session.

    Lines are split here rather than by L{LineOnlyReceiver}, so that a
    command waiting on the store can hold back the lines behind it, an
    over-long line is skipped without buffering it, and STARTTLS can drop
    what was pipelined after it.
    """

    factory: SMTPFactory
    # A TCP transport: ITCPTransport, ITLSTransport and IPushProducer.
    transport: Any
    portal: Portal  # type: ignore[assignment]
    challenger: Any
    timeout: float  # type: ignore[assignment]
    # Not LineReceiver's bytes: see _newBuffer.
    _buffer: bytearray  # type: ignore[assignment]

    def __init__(self, ingest: Ingest, settings: SMTPSettings, tlsOptions: Any) -> None:
        challengers: dict[bytes, Callable[[], IChallengeResponse]] = dict(MECHANISMS)
        super().__init__(chal=challengers, contextFactory=tlsOptions)
        self._ingest = ingest
        self.settings = settings
        self.host = settings.hostname.encode("idna")
        self.timeout = settings.idleTimeout
        self._newBuffer()
        self._held = False
        self._heldFor: Deferred[Any] | None = None
        self._draining = False
        self._skippingLine = False
        self._paused = False
        self._errors = 0
        self._submitter: str | None = None
        self._implicitTLS = False
        self._lost = False
        self._bareLFCall: Any = None
        self.mode = _COMMAND
        self._budgeted = 0
        self._resetTransaction()

    # Connection and line handling

    def connectionMade(self) -> None:
        # A listener on ssl: or tls: (or a tcp: one we wrapped) hands us a
        # transport that is TLS already.
        self._implicitTLS = ISSLTransport.providedBy(self.transport)
        self.canStartTLS = (
            not self._implicitTLS
            and ITLSTransport.providedBy(self.transport)
            and self.ctx is not None
        )
        if hasattr(self.transport, "setTcpNoDelay"):
            # Replies are small and each one is awaited: Nagle's algorithm
            # would hold them back (about 40 ms per TLS handshake here).
            self.transport.setTcpNoDelay(True)
        peer = self.transport.getPeer()
        self._peerIP = str(getattr(peer, "host", peer))
        host = self.transport.getHost()
        self._localIP = str(getattr(host, "host", host))
        self._helo = (None, self._peerIP)
        self.sendCode(220, self.host + b" ESMTP Capture ready")
        self.setTimeout(self.timeout)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._lost = True
        self.setTimeout(None)
        self._cancelBareLF()
        self._newBuffer()
        self._resetTransaction()
        self.factory.connectionClosed()

    @property
    def secure(self) -> bool:
        """
        Whether this session is encrypted, by STARTTLS or implicit TLS.
        """
        return self._implicitTLS or self.startedTLS

    def _newBuffer(self) -> None:
        """
        Start with nothing buffered, dropping what was (a new object, so a
        loop still reading the old one sees that it was replaced).

        The buffer is a C{bytearray}, grown in place and cut from the
        front: a line arriving in thousands of segments is neither copied
        nor searched whole again for each one (C{_scanned}), so assembling
        lines costs time linear in the octets received.
        """
        self._buffer = bytearray()
        # No CRLF starts before this offset of the buffer: searches resume
        # here (one octet back from the end, for a CR whose LF is to come).
        self._scanned = 0

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self._cancelBareLF()
        self._buffer += data
        self._drain()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            self._drainLines()
        finally:
            self._draining = False
        if (
            self.mode == _DATA
            and not self._held
            and self._bareLFCall is None
            and self._endsWithBareLF()
        ):
            # LF.LF may also be the middle of a proper message that was cut
            # there by TCP: only a client that then falls silent gets the
            # error (and the connection closed).
            self._bareLFCall = self.callLater(_BARE_LF_WAIT, self._bareLineFeedEnd)
        if self._held and not self._paused and len(self._buffer) > 1024 * 1024:
            self._paused = True
            self.transport.pauseProducing()

    def _drainLines(self) -> None:
        buf = self._buffer
        pos = 0
        while not self._held and not self.transport.disconnecting:
            scan = max(pos, self._scanned)
            if self.mode == _DATA and not self._skippingLine:
                consumed = self._dataChunk(buf, pos, scan)
                if consumed != pos:
                    pos = consumed
                    continue
                # No whole line buffered: only the length check below is left.
            end = buf.find(b"\r\n", scan)
            limit = self._lineLimit()
            if end < 0:
                self._scanned = len(buf) - 1
                # A trailing CR may be the first half of the CRLF ending a
                # line of exactly the limit: it does not count.
                if len(buf) - pos - buf.endswith(b"\r") > limit:
                    self._lineTooLong()
                    # Keep a trailing CR: it may be the first half of CRLF.
                    pos = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
                    self._skippingLine = True
                break
            line = bytes(buf[pos:end])
            pos = end + 2
            if self._skippingLine:
                self._skippingLine = False
                continue
            if len(line) > limit:
                self._lineTooLong()
                continue
            self.lineReceived(line)
            if self._buffer is not buf:
                # STARTTLS threw away what was pipelined after it.
                return
        # Cutting a bytearray's front moves its start, not its contents.
        del buf[:pos]
        self._scanned = max(self._scanned - pos, 0)

    def _lineLimit(self) -> int:
        if self.mode == _DATA:
            return self.settings.maxLineLength
        return self.settings.maxCommandLength

    def _lineTooLong(self) -> None:
        if self._skippingLine:
            return
        if self.mode == _DATA:
            self._tooLongLine = True
        else:
            self.mode = _COMMAND
            self._error(500, b"5.5.2 Line too long")

    def _endsWithBareLF(self) -> bool:
        # The buffer holds what follows the last CRLF, so a "." there is at
        # the start of a line.
        buf = self._buffer
        return buf == b".\n" or buf.endswith(b"\n.\n")

    def _cancelBareLF(self) -> None:
        if self._bareLFCall is not None:
            if self._bareLFCall.active():
                self._bareLFCall.cancel()
            self._bareLFCall = None

    def _bareLineFeedEnd(self) -> None:
        """
        The client ended DATA with LF.LF, which is no end in SMTP: rather
        than wait for the idle timeout, reject the message and hang up.

        Hanging up, not reading on, is what keeps this safe: LF.LF at the
        end of a packet may also be inside a message whose CRLF.CRLF is
        still to come, and the rest of that message must never be run as
        commands (SMTP smuggling).
        """
        self._bareLFCall = None
        self._newBuffer()
        self.mode = _COMMAND
        self._resetTransaction()
        self.sendCode(554, b"5.6.0 Message ended with a bare LF; end DATA with <CRLF>.<CRLF>")
        self.transport.loseConnection()

    def lineReceived(self, line: bytes) -> None:
        if self.mode == _AUTH:
            self.state_AUTH(line)
        else:
            self._command(line)

    def _hold(self, d: Deferred[Any]) -> None:
        """
        Read no further command until C{d} has fired.
        """
        self._held = True
        self._heldFor = d
        # While the store works, the session's one timer watches the store
        # (storeTimeout) instead of the client's silence (idle timeout).
        self.setTimeout(self.settings.storeTimeout)

        def release(result: object) -> object:
            self._held = False
            self._heldFor = None
            if self._lost:
                return None
            if isinstance(result, Failure):
                # The command's own callbacks answer every expected outcome:
                # a failure here is a bug, and the client must still hear
                # something rather than wait for an answer that never comes.
                self._internalError(result)
                return None
            self.setTimeout(self.timeout)
            if self._paused:
                self._paused = False
                self.transport.resumeProducing()
            # When d fired at once, the loop in _drainLines is still
            # running and carries on by itself.
            if not self.transport.disconnecting:
                try:
                    self._drain()
                except Exception:
                    # Nothing may leave a session hanging without a reply.
                    self._internalError(Failure())
            return None

        d.addBoth(release)

    def _internalError(self, reason: Failure) -> None:
        _log.failure("SMTP session failed", reason)
        self.sendCode(421, b"4.3.0 " + self.host + b" Internal error, closing connection")
        self.transport.loseConnection()

    def callLater(self, period: float, func: Callable[[], object]) -> Any:
        """
        Every timer of the session (idle, store and bare-LF deadlines, late
        answers) runs on the factory's clock: the reactor, or a L{Clock} in
        tests.
        """
        return self.factory.clock.callLater(period, func)

    def sendCode(self, code: int, message: bytes = b"") -> None:
        """
        Send a reply, all its lines in one write (Twisted's writes each line
        on its own, which an EHLO reply pays for eight times).
        """
        lines = message.splitlines() or [b""]
        reply = [b"%03d-%s\r\n" % (code, line) for line in lines[:-1]]
        reply.append(b"%03d %s\r\n" % (code, lines[-1]))
        self.transport.write(b"".join(reply))
        self.factory.metrics.smtpReply(code)

    def _error(self, code: int, text: bytes) -> None:
        self._errors += 1
        if self._errors >= self.settings.maxErrors:
            self.sendCode(421, b"4.7.0 " + self.host + b" Too many errors, closing connection")
            self.transport.loseConnection()
            return
        self.sendCode(code, text)

    def timeoutConnection(self) -> None:
        if self._heldFor is not None:
            # The store did not answer in time: give up on it (the command
            # gets its temporary failure) and read on.
            self._heldFor.cancel()
            return
        self.sendCode(421, b"4.4.2 " + self.host + b" Idle timeout, closing connection")
        self.transport.loseConnection()

    # Commands

    def _command(self, line: bytes) -> None:
        parts = line.strip().split(None, 1)
        if not parts:
            self._error(500, b"5.5.2 Syntax error, command unrecognized")
            return
        verb = parts[0].upper()
        argument = parts[1] if len(parts) > 1 else b""
        if not verb.isalpha() or not verb.isascii():
            self._error(500, b"5.5.2 Syntax error, command unrecognized")
            return
        handler = getattr(self, "smtp_" + verb.decode("ascii"), None)
        if handler is None:
            self._error(500, b"5.5.2 Syntax error, command unrecognized")
            return
        handler(argument)

    def _resetTransaction(self) -> None:
        if self._budgeted:
            self.factory.budget.give(self._budgeted)
        self._budgeted = 0
        self._overBudget = False
        self._from: str | None = None
        self._smtputf8 = False
        self._to: list[Recipient] = []
        self._data = bytearray()
        self._size = 0
        self._tooBig = False
        self._tooLongLine = False

    def smtp_HELO(self, argument: bytes) -> None:
        if self._greeted(b"HELO", argument):
            self.sendCode(250, self.host + b" Hello " + self._heloText().encode())

    def smtp_EHLO(self, argument: bytes) -> None:
        if self._greeted(b"EHLO", argument):
            hello = self.host + b" Hello " + self._heloText().encode()
            self.sendCode(250, hello + b"\n" + self.listExtensions())

    def _greeted(self, verb: bytes, argument: bytes) -> bool:
        """
        Take a HELO or EHLO: it names the client (RFC 5321 4.1.1.1 requires
        the argument) and resets the transaction.
        """
        if not argument.strip():
            self._error(501, b"5.5.4 Syntax: " + verb + b" hostname")
            return False
        self._helo = (argument.strip(), self._peerIP)
        self._resetTransaction()
        return True

    def _heloText(self) -> str:
        helo = (self._helo[0] or b"").decode("utf-8", "replace")  # type: ignore[index]
        return _HELO_SAFE.sub("", helo)[:255] or "unknown"

    def extensions(self) -> dict[bytes, list[bytes] | None]:
        ext: dict[bytes, list[bytes] | None] = {
            b"SIZE": [str(self.settings.maxMessageSize).encode()],
            b"8BITMIME": None,
            b"PIPELINING": None,
            b"ENHANCEDSTATUSCODES": None,
            b"SMTPUTF8": None,
        }
        if self.canStartTLS and not self.secure:
            ext[b"STARTTLS"] = None
        if self._authAllowed() and self._submitter is None:
            ext[b"AUTH"] = list(MECHANISMS)
        ext[b"HELP"] = None
        return ext

    def _authAllowed(self) -> bool:
        return self.secure or self.settings.allowInsecureAuth

    def smtp_STARTTLS(self, argument: bytes) -> None:
        if self.secure:
            self._error(503, b"5.5.1 TLS already active")
            return
        if not self.canStartTLS:
            self._error(454, b"4.7.0 TLS not available")
            return
        self.sendCode(220, b"2.0.0 Ready to start TLS")
        # RFC 3207 4.2: forget everything learnt before TLS, including lines
        # the client pipelined after STARTTLS (gap S1).
        self._newBuffer()
        self._resetTransaction()
        self._helo = (None, self._peerIP)
        self._submitter = None
        self.transport.startTLS(self.ctx)
        self.startedTLS = True

    def smtp_AUTH(self, argument: bytes) -> None:
        if self._submitter is not None:
            self._error(503, b"5.5.1 Already authenticated")
            return
        if self._from is not None:
            self._error(503, b"5.5.1 AUTH not allowed during a mail transaction")
            return
        parts = argument.split(None, 1)
        if not parts:
            self._error(501, b"5.5.4 Syntax: AUTH mechanism [initial-response]")
            return
        if not self._authAllowed():
            self._error(538, b"5.7.11 Encryption required for requested authentication mechanism")
            return
        if self.factory.throttle.refused(self._peerIP):
            self.sendCode(421, b"4.7.0 " + self.host + b" Too many failed logins, try again later")
            self.transport.loseConnection()
            return
        factory = self.challengers.get(parts[0].upper())
        if factory is None:
            self._error(504, b"5.5.4 Unrecognized authentication type")
            return
        self.challenger = factory()
        self.mode = _AUTH
        if len(parts) > 1:
            # The client skipped the first challenge (RFC 4954 initial
            # response): consume it so LOGIN asks for the password next.
            self.challenger.getChallenge()
            initial = parts[1].strip()
            self.state_AUTH(b"" if initial == b"=" else initial)
        else:
            self.sendCode(334, base64.b64encode(self.challenger.getChallenge()))

    def state_AUTH(self, response: bytes | None) -> None:
        """
        One step of the SASL exchange; never lets a malformed response
        escape and drop the connection (gap S7).
        """
        assert response is not None
        if response.strip() == b"*":
            self.mode = _COMMAND
            self._error(501, b"5.0.0 Authentication cancelled")
            return
        try:
            decoded = base64.b64decode(response, validate=True)
            self.challenger.setResponse(decoded)
        except Exception:
            # binascii.Error for bad base64; IllegalResponse for a PLAIN
            # response without its two NULs.
            self.mode = _COMMAND
            self._error(501, b"5.5.2 Cannot decode the authentication response")
            return
        if self.challenger.moreChallenges():
            self.sendCode(334, base64.b64encode(self.challenger.getChallenge()))
            return
        self.mode = _COMMAND
        d = self.portal.login(self.challenger, None, ISubmitter)
        d.addCallbacks(self._authenticated, self._authFailed)
        self._hold(d)

    def _authenticated(self, result: tuple[Any, Any, Callable[[], None]]) -> None:
        if self._lost:
            return
        _, avatar, _ = result
        self._submitter = avatar.account
        self.factory.throttle.succeeded(self._peerIP)
        self.sendCode(235, b"2.7.0 Authentication successful")

    def _authFailed(self, reason: Failure) -> Deferred[None] | None:
        if self._lost:
            return None
        if reason.check(UnauthorizedLogin):
            self.factory.metrics.authFailed("smtp")
            wait = self.factory.throttle.failed(self._peerIP)
            if wait:
                # Answered late: the session (held until this fires) reads
                # nothing meanwhile.
                return deferLater(self.factory.clock, wait, self._error, 535, _BAD_CREDENTIALS)
            self._error(535, _BAD_CREDENTIALS)
        else:
            _log.failure("SMTP authentication error", reason)
            self.sendCode(454, b"4.7.0 Temporary authentication failure")
        return None

    def smtp_MAIL(self, argument: bytes) -> None:
        if self._submitter is None and not self.settings.allowAnonymous:
            self._error(530, b"5.7.0 Authentication required")
            return
        if self._from is not None:
            self._error(503, b"5.5.1 Sender already specified")
            return
        try:
            address, params = parsePath(argument, b"FROM")
            self._checkMailParams(params)
            _checkSender(address, "SMTPUTF8" in params)
        except SMTPError as e:
            self._error(e.code, e.text)
            return
        self._resetTransaction()
        self._from = address
        self._smtputf8 = "SMTPUTF8" in params
        self.sendCode(250, b"2.1.0 Accepted")

    def _checkMailParams(self, params: dict[str, str]) -> None:
        for name, value in params.items():
            if name == "SIZE":
                if not value.isdigit():
                    raise SMTPError(501, b"5.5.4 Bad SIZE parameter")
                if int(value) > self.settings.maxMessageSize:
                    raise SMTPError(552, b"5.3.4 Message size exceeds fixed maximum message size")
            elif name == "BODY":
                if value.upper() not in ("7BIT", "8BITMIME"):
                    raise SMTPError(555, b"5.5.4 Unsupported BODY type")
            elif name not in ("SMTPUTF8", "AUTH"):
                raise SMTPError(555, b"5.5.4 Unsupported parameter " + name.encode())

    def smtp_RCPT(self, argument: bytes) -> None:
        if self._from is None:
            self._error(503, b"5.5.1 Need MAIL before RCPT")
            return
        try:
            # RFC 5321 4.5.1: RCPT TO:<Postmaster> with no domain must be
            # accepted; it is filed as the postmaster of our host name.
            argument = _POSTMASTER_RE.sub(b"<postmaster@" + self.host + b">", argument.strip())
            address, params = parsePath(argument, b"TO")
        except SMTPError as e:
            self._error(e.code, e.text)
            return
        if params:
            self._error(555, b"5.5.4 Unsupported parameter " + next(iter(params)).encode())
            return
        # The one rule of capture.addresses: what no reader could open is
        # refused here rather than stored where nobody can reach it.
        inbox = inboxOf(address)
        if inbox is None:
            self._error(553, b"5.1.3 <" + shown(address) + b">: not a valid address")
            return
        if not self._smtputf8 and not address.isascii():
            self._error(553, _NEEDS_SMTPUTF8 % shown(address))
            return
        if len(self._to) >= self.settings.maxRecipients:
            self.sendCode(452, b"4.5.3 Too many recipients")
            return
        # The same address twice is one recipient, as MTAs deliver it once.
        if all(r.original.lower() != address.lower() for r in self._to):
            self._to.append(Recipient(inbox=inbox, original=address))
        self.sendCode(250, b"2.1.5 Accepted")

    def smtp_DATA(self, argument: bytes) -> None:
        if self._from is None:
            self._error(503, b"5.5.1 Need MAIL before DATA")
            return
        if not self._to:
            self._error(554, b"5.5.1 No valid recipients")
            return
        self.mode = _DATA
        self._queueId = newQueueId()
        self.sendCode(354, b'Enter message, ending with "." on a line by itself')

    def smtp_RSET(self, argument: bytes) -> None:
        self._resetTransaction()
        self.sendCode(250, b"2.0.0 OK")

    def smtp_NOOP(self, argument: bytes) -> None:
        self.sendCode(250, b"2.0.0 OK")

    def smtp_VRFY(self, argument: bytes) -> None:
        if not argument.strip():
            self._error(501, b"5.5.4 Syntax: VRFY address")
            return
        self.sendCode(252, b"2.5.0 Cannot VRFY user, but will accept message")

    def smtp_EXPN(self, argument: bytes) -> None:
        self.sendCode(252, b"2.5.0 Cannot EXPN, but will accept message")

    def smtp_HELP(self, argument: bytes) -> None:
        self.sendCode(
            214,
            b"2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
        )

    def smtp_QUIT(self, argument: bytes) -> None:
        self.sendCode(221, b"2.0.0 Bye")
        self.transport.loseConnection()

    # Message data

    def _dataChunk(self, buf: bytearray, pos: int, scan: int) -> int:
        """
        Take the message data in C{buf} from C{pos} (a line start): every
        whole line at once, up to and including the end of DATA if it is
        there.  Handling a chunk rather than line by line keeps a message's
        cost off Python's per-call overhead.

        @param scan: No CRLF starts between C{pos} and this offset (searched
            already), so neither does CRLF.CRLF: searching from here keeps
            a long line's cost linear.
        @return: Where the unconsumed bytes start.
        """
        if buf.startswith(b".\r\n", pos):
            self._endOfData()
            return pos + 3
        end = buf.find(b"\r\n.\r\n", scan)
        if end >= 0:
            self._dataBytes(buf, pos, end + 2)
            self._endOfData()
            return end + 5
        last = buf.rfind(b"\r\n", scan)
        if last < 0:
            return pos
        self._dataBytes(buf, pos, last + 2)
        return last + 2

    def _dataBytes(self, buf: bytearray, start: int, stop: int) -> None:
        """
        Keep the whole lines of message data in C{buf[start:stop]},
        dot-unstuffed (RFC 5321 4.5.2), at the end of the message's one
        buffer: copied once from what was received, never joined again.
        """
        if buf.startswith(b".", start):
            start += 1
        chunk: bytes | bytearray | memoryview
        if buf.find(b"\r\n.", start, stop) >= 0:
            chunk = buf[start:stop].replace(b"\r\n.", b"\r\n")
        else:
            chunk = memoryview(buf)[start:stop]
        try:
            self._keep(chunk)
        finally:
            if isinstance(chunk, memoryview):
                # The receive buffer cannot be resized while a view is out.
                chunk.release()

    def _keep(self, chunk: bytearray | memoryview) -> None:
        size = len(chunk)
        limit = self.settings.maxLineLength
        if size > limit and _longestLine(chunk) > limit:
            self._tooLongLine = True
        self._size += size
        if self._size > self.settings.maxMessageSize:
            self._tooBig = True
            self._data = bytearray()
        if self._tooBig or self._overBudget:
            return
        if not self.factory.budget.take(size):
            # The server holds all the message data it may: the client gets
            # a temporary failure at the end and tries again later.
            self._overBudget = True
            self._data = bytearray()
            self.factory.budget.give(self._budgeted)
            self._budgeted = 0
            return
        self._budgeted += size
        self._data += chunk

    def _endOfData(self) -> None:
        self.mode = _COMMAND
        if self._tooBig:
            self._resetTransaction()
            self.sendCode(552, b"5.3.4 Message size exceeds fixed maximum message size")
            return
        if self._tooLongLine:
            self._resetTransaction()
            self.sendCode(
                500,
                b"5.5.2 Line too long (limit %d octets); message rejected"
                % self.settings.maxLineLength,
            )
            return
        if self._overBudget:
            self._resetTransaction()
            self.sendCode(452, b"4.3.1 Insufficient system storage, try again later")
            return
        envelope = self._envelope()
        raw = self._messageBytes(self._receivedLine(envelope))
        # The message stays in memory until the store has it: its share of
        # the budget goes back then, not when the transaction resets.
        budgeted, self._budgeted = self._budgeted, 0
        self._resetTransaction()
        # The session's buffer itself (a bytes copy would double it):
        # what ingest and the store do with it only reads it.
        d = self._ingest.add(envelope, cast(bytes, raw))
        d.addBoth(self._giveBack, budgeted)
        d.addCallbacks(
            self._stored, self._storeFailed, callbackArgs=(envelope.queueId, len(raw))
        )
        self._hold(d)

    def _giveBack(self, result: object, octets: int) -> object:
        self.factory.budget.give(octets)
        return result

    def _envelope(self) -> Envelope:
        assert self._from is not None
        return Envelope(
            queueId=self._queueId,
            mailFrom=self._from,
            recipients=tuple(self._to),
            account=self._submitter,
            helo=self._heloText(),
            ip=self._peerIP,
            via=self._localIP,
            tls=self.secure,
            received=int(time.time() * 1000),
        )

    def _messageBytes(self, received: bytes) -> bytearray:
        """
        The message as stored: our C{Received:} line put in front of the
        data, in the data's own buffer (a message may be as large as
        C{--max-message-size}: a joined copy would double it).  The buffer
        is the store's from here on.
        """
        data, self._data = self._data, bytearray()
        # A message that starts without a header gets the empty line that
        # separates our Received: header from its body.
        if data and not data.startswith(b"\r\n") and not HEADER_LINE_RE.match(data):
            received += b"\r\n"
        data[:0] = received
        return data

    def _receivedLine(self, envelope: Envelope) -> bytes:
        """
        The trace line Capture prepends (RFC 5321 4.4), with the protocol
        keyword of RFC 3848.
        """
        protocol = "ESMTP" + ("S" if envelope.tls else "") + ("A" if envelope.account else "")
        when = _rfc5322Date(envelope.received // 1000)
        recipient = ""
        if len(envelope.recipients) == 1:
            recipient = f"\r\n\tfor <{envelope.recipients[0].original}>"
        # RFC 5321 4.1.3: an IPv6 address literal carries its tag.
        ip = f"IPv6:{envelope.ip}" if ":" in envelope.ip else envelope.ip
        text = (
            f"Received: from {envelope.helo} ([{ip}])\r\n"
            f"\tby {self.settings.hostname} (Capture) with {protocol} id {envelope.queueId}"
            f"{recipient}; {when}\r\n"
        )
        return text.encode("utf-8")

    def _stored(self, copies: list[Any], queueId: str, size: int) -> None:
        # Stored is stored, whether or not the client stayed to hear it.
        self.factory.metrics.captured(size, len(copies))
        if self._lost:
            return
        # The error limit is for sessions that go astray, not for errors
        # scattered over a long-lived connection that keeps delivering.
        self._errors = 0
        self.sendCode(250, b"OK : queued as " + queueId.encode("ascii"))

    def _storeFailed(self, reason: Failure) -> None:
        # A full store is the operator's to fix, not a fault of Capture's:
        # one line (no traceback), or a sender retrying against a full disk
        # would fill the log too.
        if reason.check(StoreFull):
            _log.warn("The store is full: a message was put off with 452 4.3.1")
        else:
            _log.failure("Could not store a message", reason)
        if self._lost:
            return
        if reason.check(StoreFull):
            self.sendCode(452, b"4.3.1 Insufficient system storage, try again later")
        else:
            self.sendCode(451, b"4.3.0 Temporary storage failure, try again later")


class SMTPFactory(SessionFactory):
    """
    Builds L{CaptureSMTP} sessions for one listener; a session finds out
    from its transport whether it is TLS from the first byte (SMTPS).

    @ivar metrics: The process's L{Metrics}, shared by every listener
        (sessions, replies, failed logins and captured messages are counted
        there, as C{protocol="smtp"} for SMTP and SMTPS alike).
    @ivar budget: The process's L{IngestBudget}.
    @ivar ingest: Where sessions file the messages they receive.
    """

    protocol = CaptureSMTP  # type: ignore[assignment]
    protocolName = "smtp"
    refusal = b"421 4.7.0 Too many connections, try again later"
    addressRefusal = b"421 4.7.0 Too many connections from your address, try again later"

    def __init__(
        self,
        store: IStore,
        portal: Portal,
        settings: SMTPSettings,
        tlsOptions: Any = None,
        budget: IngestBudget | None = None,
        throttle: LoginThrottle | None = None,
        metrics: Metrics | None = None,
        clock: Any = None,
        *,
        ingest: Ingest,
    ) -> None:
        super().__init__(store, portal, settings, tlsOptions, throttle, metrics, clock)
        self.budget = budget if budget is not None else IngestBudget(512 * 1024 * 1024)
        self.ingest = ingest

    def buildSession(self) -> CaptureSMTP:
        p = CaptureSMTP(self.ingest, self.settings, self.tlsOptions)
        p.factory = self
        p.portal = self.portal
        return p
