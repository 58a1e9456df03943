# -*- test-case-name: tests.test_smtp_server,tests.test_pop3,tests.test_imap -*-
"""
What the listeners of every mail protocol (SMTP, POP3, IMAP) share: a
factory holding what all sessions of a listener use, and the refusal a
connection past the listener's caps gets in the protocol's own words (the
caps are counted by L{capture.connections.GuardFactory}, for every
listener alike).
"""

from __future__ import annotations

from typing import Any

from twisted.cred.portal import Portal
from twisted.internet.protocol import Protocol, ServerFactory

from capture.auth import LoginThrottle
from capture.metrics import Metrics
from capture.store.interface import IStore


class SessionFactory(ServerFactory):
    """
    Builds one protocol's sessions for one listener.  Every listener of the
    process shares the store, the portal, the login throttle and the
    metrics.

    @cvar protocolName: The C{protocol} label of the session metrics.
    @cvar refusal: The line a connection past the listener's cap gets, in
        the protocol's own words.
    @cvar addressRefusal: The line a connection past the cap per client
        address gets.
    @ivar clock: What tells the time (the reactor), for delayed answers.
    """

    noisy = False
    protocolName = ""
    refusal = b""
    addressRefusal = b""

    def __init__(
        self,
        store: IStore,
        portal: Portal,
        settings: Any,
        tlsOptions: Any = None,
        throttle: LoginThrottle | None = None,
        metrics: Metrics | None = None,
        clock: Any = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.store = store
        self.portal = portal
        self.settings = settings
        self.tlsOptions = tlsOptions
        self.clock = clock
        self.throttle = throttle if throttle is not None else LoginThrottle(clock)
        self.metrics = metrics if metrics is not None else Metrics()

    def buildProtocol(self, addr: Any) -> Protocol:
        self.metrics.sessionOpened(self.protocolName)
        return self.buildSession()

    def refuse(self, reason: str) -> Protocol:
        """
        What a connection past a cap gets: one line saying why, and the
        end.

        @param reason: C{"listener"} (the listener is full) or
            C{"address"} (the client's address has its share).
        """
        return _Refuse(self.addressRefusal if reason == "address" else self.refusal)

    def buildSession(self) -> Protocol:
        """
        A new session of this factory's protocol.
        """
        raise NotImplementedError

    def connectionClosed(self) -> None:
        """
        A session of this factory ended.
        """
        self.metrics.sessionClosed(self.protocolName)


class _Refuse(Protocol):
    """
    Say why in one line and hang up: the listener, or the client's
    address, has too many connections.
    """

    transport: Any

    def __init__(self, line: bytes) -> None:
        self.line = line

    def connectionMade(self) -> None:
        self.transport.write(self.line + b"\r\n")
        self.transport.loseConnection()
