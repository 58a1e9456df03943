# -*- test-case-name: tests.test_connections,tests.test_listeners -*-
"""
What every accepted connection of every listener goes through, whatever
protocol it speaks: Nagle off, a deadline on the TLS handshake, a deadline
on closing, and the count of connections per listener and per client
address.

L{Guard} sits between the transport and the application protocol (beneath
implicit TLS it is the protocol TLS wraps; with STARTTLS, TLS wraps it
later), so it sees both the handshake's end (L{IHandshakeListener}, which
every TLS layer of Twisted calls on the protocol it wraps, whatever context
object made it) and the application's C{loseConnection}.  An application
protocol's own idle timer cannot do this: it runs on application data, and
a TLS layer that never finished its handshake or never got the peer's
C{close_notify} holds a closed session open for ever.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

_log = Logger()

#: Seconds a closing TLS connection waits for the peer's C{close_notify}
#: before the TCP connection beneath is closed anyway (RFC 8446 6.1: the
#: closing side need not wait for it).
CLOSE_NOTIFY_WAIT = 2.0
#: Seconds after C{loseConnection} when a connection still open is
#: aborted: a peer that reads nothing keeps even an orderly TCP close from
#: finishing.
CLOSE_TIMEOUT = 10.0
#: File descriptors kept out of every listener's reach: the store's
#: database files, the log, webhook connections, the reactor's own.
DESCRIPTOR_RESERVE = 256


# A guard's slot: the client address it counts against (or None for a
# peer without one), or one of these: counted nowhere, or as a refusal.
_NONE = object()
_REFUSING = object()


@attrs.frozen
class GuardSettings:
    """
    The deadlines of one listener's connections.

    @ivar handshakeTimeout: Seconds a TLS handshake (implicit, or after
        STARTTLS/STLS) may take before the connection is aborted; L{None}
        for none.
    @ivar implicitTLS: Whether the handshake starts at accept (SMTPS,
        IMAPS, POP3S) rather than when the protocol starts TLS.
    @ivar closeTimeout: Seconds after the application's C{loseConnection}
        before the connection is aborted if still open; L{None} to leave
        closing to the application protocol (HTTP has its own).
    """

    handshakeTimeout: float | None = 10.0
    implicitTLS: bool = False
    closeTimeout: float | None = CLOSE_TIMEOUT
    closeNotifyWait: float = CLOSE_NOTIFY_WAIT


@implementer(IHandshakeListener)
class Guard(ProtocolWrapper):
    """
    One connection's deadlines; otherwise out of the way.

    Nagle's algorithm is off: every protocol here answers small commands
    with small replies, and with Nagle on a reply written in two pieces
    waits for the client's delayed ACK, 40 ms or more per round trip.
    Behind implicit TLS the transport is the TLS wrapper, which hands
    C{setTcpNoDelay} to the TCP connection beneath.
    """

    factory: GuardFactory
    transport: Any
    _handshakeCall: IDelayedCall | None = None
    _lingerCall: IDelayedCall | None = None
    _abortCall: IDelayedCall | None = None
    _producing = False
    _closing = False
    _tls = False
    _slot: object = _NONE

    def makeConnection(self, transport: Any) -> None:
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        if self.factory.settings.implicitTLS:
            self._handshakeStarted()
        super().makeConnection(transport)

    # TLS

    def startTLS(self, *args: Any, **kwargs: Any) -> None:
        """
        STARTTLS/STLS: the handshake starts now, and its deadline with it.
        """
        self._handshakeStarted()
        self.transport.startTLS(*args, **kwargs)

    def _handshakeStarted(self) -> None:
        self._tls = True
        timeout = self.factory.settings.handshakeTimeout
        if timeout is not None and self._handshakeCall is None:
            self._handshakeCall = self.factory.clock.callLater(timeout, self._handshakeExpired)

    def _handshakeExpired(self) -> None:
        self._handshakeCall = None
        # Nothing can be said to a peer that has no TLS session.
        self._abort()

    def handshakeCompleted(self) -> None:
        if self._handshakeCall is not None:
            self._handshakeCall.cancel()
            self._handshakeCall = None
        protocol = self.wrappedProtocol
        if protocol is not None and IHandshakeListener.providedBy(protocol):
            protocol.handshakeCompleted()

    # Producers

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._producing = True
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._producing = False
        self.transport.unregisterProducer()

    # Closing

    def loseConnection(self) -> None:
        """
        Close after what is written, within deadlines.  A producer the
        application left registered is unregistered first: nothing more
        will be written, and TLS would wait for it before its shutdown
        (POP3 over TLS stayed open after C{QUIT} that way).
        """
        if self._closing:
            return
        self._closing = True
        self.disconnecting = 1
        if self._producing:
            self.unregisterProducer()
        self.transport.loseConnection()
        settings = self.factory.settings
        if settings.closeTimeout is None or self.wrappedProtocol is None:
            return
        clock = self.factory.clock
        if self._tls:
            self._lingerCall = clock.callLater(settings.closeNotifyWait, self._closeBeneathTLS)
        self._abortCall = clock.callLater(settings.closeTimeout, self._abort)

    def abortConnection(self) -> None:
        self._abort()

    def _closeBeneathTLS(self) -> None:
        """
        The peer did not answer our C{close_notify} (or TLS is still waiting
        for its handshake to send anything): close the TCP connection
        beneath TLS in order, with what TLS has written.
        """
        self._lingerCall = None
        lowest = self.transport
        while isinstance(lowest, TLSMemoryBIOProtocol) and lowest.transport is not None:
            lowest = lowest.transport
        if getattr(lowest, "TLS", False) and isinstance(lowest, FileDescriptor):
            # TLS inside the connection (STARTTLS, ssl: endpoints): its
            # loseConnection is TLS's, so call the plain one beneath.
            FileDescriptor.loseConnection(lowest)
        else:
            lowest.loseConnection()

    def _abort(self) -> None:
        self._cancelTimers()
        if self.transport is not None:
            self.transport.abortConnection()

    def _cancelTimers(self) -> None:
        for name in ("_handshakeCall", "_lingerCall", "_abortCall"):
            call = getattr(self, name)
            if call is not None:
                if call.active():
                    call.cancel()
                setattr(self, name, None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelTimers()
        slot, self._slot = self._slot, _NONE
        self.factory.released(slot)
        super().connectionLost(reason)


class GuardFactory(WrappingFactory[Guard]):
    """
    Wraps a listener's factory so that each connection goes through a
    L{Guard} with C{settings}, and counts the connections in C{slots}.

    Past a cap the connection gets what the wrapped factory's
    C{refuse(reason)} builds (a line in the protocol's own words, HTTP's
    503) or, when it has none, is closed at once.  Refusals are guarded
    too (deadlines), and at most L{maxRefusing} are in flight: past that a
    connection is closed without a word, so a flood of refused connections
    cannot take the descriptors the caps keep free.
    """

    protocol = Guard
    noisy = False
    maxRefusing = 64

    def __init__(self, wrappedFactory: Any, settings: GuardSettings | None = None,
                 clock: Any = None, slots: Slots | None = None) -> None:
        super().__init__(wrappedFactory)
        if clock is None:
            from twisted.internet import reactor as clock
        self.settings = settings if settings is not None else GuardSettings()
        self.clock = clock
        self.slots = slots
        self.refusing = 0

    def buildProtocol(self, addr: Any) -> Guard | None:  # type: ignore[override]
        host = peerHost(addr)
        reason = self.slots.refusal(host) if self.slots is not None else None
        if reason is not None:
            refuse = getattr(self.wrappedFactory, "refuse", None)
            if refuse is None or self.refusing >= self.maxRefusing:
                return None
            guard = self.protocol(self, refuse(reason))
            guard._slot = _REFUSING
            self.refusing += 1
            return guard
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        guard = self.protocol(self, inner)
        if self.slots is not None:
            self.slots.take(host)
            guard._slot = host
        return guard

    def released(self, slot: object) -> None:
        """
        A guarded connection ended: give back what it counted in.
        """
        if slot is _REFUSING:
            self.refusing -= 1
        elif self.slots is not None and (slot is None or isinstance(slot, str)):
            self.slots.give(slot)


@attrs.define
class Slots:
    """
    The connections one listener serves at once, in all and per client
    address.

    @ivar limit: Most at once.
    @ivar perAddress: Most at once from one client address (a Unix socket
        peer has none and counts only in the total).
    """

    limit: int
    perAddress: int
    total: int = 0
    _byAddress: dict[str, int] = attrs.field(factory=dict)

    def refusal(self, address: str | None) -> str | None:
        """
        Why one more connection from C{address} may not be taken now:
        C{"listener"} or C{"address"}; L{None} when it may.
        """
        if self.total >= self.limit:
            return "listener"
        if address is not None and self._byAddress.get(address, 0) >= self.perAddress:
            return "address"
        return None

    def take(self, address: str | None) -> None:
        self.total += 1
        if address is not None:
            self._byAddress[address] = self._byAddress.get(address, 0) + 1

    def give(self, address: str | None) -> None:
        self.total -= 1
        if address is not None:
            left = self._byAddress.get(address, 0) - 1
            if left > 0:
                self._byAddress[address] = left
            else:
                self._byAddress.pop(address, None)

    def fromAddress(self, address: str) -> int:
        return self._byAddress.get(address, 0)


def peerHost(addr: Any) -> str | None:
    """
    The client address a connection counts against (L{None} for a peer
    without one, such as a Unix socket's).
    """
    host = getattr(addr, "host", None)
    return host if isinstance(host, str) and host else None


def raiseDescriptorLimit() -> int:
    """
    Raise the soft limit on open files to the hard limit (Linux gives 1024
    soft by default, far below what the connection caps add up to), and
    return the limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return int(soft)


def fitCaps(caps: Mapping[str, int], descriptors: int,
            reserve: int = DESCRIPTOR_RESERVE) -> dict[str, int]:
    """
    The caps, lowered in proportion when together they would leave fewer
    than C{reserve} of C{descriptors} free, so that a full listener never
    takes another's descriptors (or the store's).
    """
    room = max(len(caps), descriptors - reserve)
    total = sum(caps.values())
    if total <= room:
        return dict(caps)
    return {name: max(1, cap * room // total) for name, cap in caps.items()}


def backlogged(description: str, backlog: int = 1024) -> str:
    """
    A C{tcp:}/C{tcp6:}/C{ssl:} endpoint description with C{backlog=} added when it
    does not say one: Twisted's default of 50 leaves most of a burst of
    connects unanswered for seconds (SYNs dropped and retried).
    """
    head, _, rest = description.partition(":")
    if head.strip().lower() not in ("tcp", "tcp6", "ssl"):
        return description
    for part in rest.split(":"):
        if part.strip().lower().startswith("backlog="):
            return description
    return f"{description}:backlog={backlog}"
