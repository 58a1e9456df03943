"""
L{capture.connections}: the guard's deadlines on a fake transport and
clock, the slot counts, the descriptor budget and the backlog default.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer

from capture.connections import (
    Guard,
    GuardFactory,
    GuardSettings,
    Slots,
    backlogged,
    fitCaps,
)


@implementer(IHandshakeListener)
class _App(Protocol):
    handshakes = 0

    def handshakeCompleted(self) -> None:
        self.handshakes += 1


class _Transport(StringTransport):
    aborted = False
    started: Any = None

    def abortConnection(self) -> None:
        self.aborted = True

    def startTLS(self, ctx: Any) -> None:
        self.started = ctx


def _guarded(settings: GuardSettings) -> tuple[Guard, _App, _Transport, MemoryReactorClock]:
    clock = MemoryReactorClock()
    factory = GuardFactory(Factory.forProtocol(_App), settings, clock)
    guard = factory.buildProtocol(None)
    transport = _Transport()
    guard.makeConnection(transport)
    return guard, guard.wrappedProtocol, transport, clock  # type: ignore[return-value]


def test_implicitHandshakeDeadline() -> None:
    guard, _, transport, clock = _guarded(GuardSettings(handshakeTimeout=5, implicitTLS=True))
    clock.advance(4.9)
    assert not transport.aborted
    clock.advance(0.2)
    assert transport.aborted


def test_handshakeCompletedCancelsAndIsForwarded() -> None:
    guard, app, transport, clock = _guarded(GuardSettings(handshakeTimeout=5, implicitTLS=True))
    guard.handshakeCompleted()
    clock.advance(60)
    assert not transport.aborted
    assert app.handshakes == 1


def test_startTLSStartsTheDeadline() -> None:
    guard, app, transport, clock = _guarded(GuardSettings(handshakeTimeout=5))
    clock.advance(60)
    assert not transport.aborted
    app.transport.startTLS("context")  # type: ignore[attr-defined]
    assert transport.started == "context"
    clock.advance(5.1)
    assert transport.aborted


def test_loseConnectionUnregistersTheProducer() -> None:
    guard, app, transport, _ = _guarded(GuardSettings())
    app.transport.registerProducer(object(), True)  # type: ignore[union-attr]
    app.transport.loseConnection()  # type: ignore[union-attr]
    assert transport.producer is None
    assert transport.disconnecting


def test_closeDeadlineAborts() -> None:
    guard, app, transport, clock = _guarded(GuardSettings(closeTimeout=10))
    app.transport.loseConnection()  # type: ignore[union-attr]
    clock.advance(9.9)
    assert not transport.aborted
    clock.advance(0.2)
    assert transport.aborted


def test_noCloseDeadlineWhenOff() -> None:
    guard, app, transport, clock = _guarded(GuardSettings(closeTimeout=None))
    app.transport.loseConnection()  # type: ignore[union-attr]
    clock.advance(3600)
    assert not transport.aborted


def test_connectionLostCancelsTimers() -> None:
    guard, app, transport, clock = _guarded(
        GuardSettings(handshakeTimeout=5, implicitTLS=True, closeTimeout=10)
    )
    app.transport.loseConnection()  # type: ignore[union-attr]
    guard.connectionLost(None)  # type: ignore[arg-type]
    assert clock.getDelayedCalls() == []


def test_slots() -> None:
    slots = Slots(limit=3, perAddress=2)
    assert slots.refusal("a") is None
    slots.take("a")
    slots.take("a")
    assert slots.refusal("a") == "address"
    assert slots.refusal("b") is None
    slots.take("b")
    assert slots.refusal("c") == "listener"
    assert slots.refusal(None) == "listener"
    slots.give("a")
    assert slots.refusal("a") is None
    assert slots.fromAddress("a") == 1
    slots.give("a")
    assert slots.fromAddress("a") == 0
    assert slots.total == 1


def test_fitCapsUnchangedWhenRoom() -> None:
    assert fitCaps({"smtp": 1000, "http": 1000}, 1 << 20) == {"smtp": 1000, "http": 1000}


def test_fitCapsLowered() -> None:
    fitted = fitCaps({"smtp": 1000, "imap": 1000, "http": 2000}, 1024, reserve=224)
    assert fitted == {"smtp": 200, "imap": 200, "http": 400}
    assert sum(fitted.values()) + 224 <= 1024


def test_backlogged() -> None:
    assert backlogged("tcp:5587") == "tcp:5587:backlog=1024"
    assert backlogged("tcp:0:interface=127.0.0.1") == "tcp:0:interface=127.0.0.1:backlog=1024"
    assert backlogged("tcp6:25:interface=\\:\\:1") == "tcp6:25:interface=\\:\\:1:backlog=1024"
    assert backlogged("tcp:5587:backlog=10") == "tcp:5587:backlog=10"
    assert backlogged("TCP:5587:Backlog=7") == "TCP:5587:Backlog=7"
    assert backlogged("unix:/tmp/s") == "unix:/tmp/s"
    assert backlogged("ssl:465:privateKey=k.pem") == "ssl:465:privateKey=k.pem:backlog=1024"
    assert backlogged("tls:./tls:465") == "tls:./tls:465"
