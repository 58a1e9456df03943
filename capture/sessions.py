# -*- test-case-name: tests.test_smtp_server,tests.test_pop3,tests.test_imap -*-
"""
What the listeners of every mail protocol (SMTP, POP3, IMAP) share: a
factory holding what all sessions of a listener use, and a cap on how many
sessions it serves at once.
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
    metrics; past C{settings.maxConnections} sessions at once, a new
    connection gets L{refusal} and is closed.

    @cvar protocolName: The C{protocol} label of the session metrics.
    @cvar refusal: The line a connection past the cap gets, in the
        protocol's own words.
    @ivar clock: What tells the time (the reactor), for delayed answers.
    """

    noisy = False
    protocolName = ""
    refusal = b""

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
        self.connections = 0

    def buildProtocol(self, addr: Any) -> Protocol:
        if self.connections >= self.settings.maxConnections:
            return _Refuse(self.refusal)
        self.connections += 1
        self.metrics.sessionOpened(self.protocolName)
        return self.buildSession()

    def buildSession(self) -> Protocol:
        """
        A new session of this factory's protocol (the cap is checked).
        """
        raise NotImplementedError

    def connectionClosed(self) -> None:
        """
        A session of this factory ended.
        """
        self.connections -= 1
        self.metrics.sessionClosed(self.protocolName)


class _Refuse(Protocol):
    """
    Say why in one line and hang up: the listener has too many connections.
    """

    transport: Any

    def __init__(self, line: bytes) -> None:
        self.line = line

    def connectionMade(self) -> None:
        self.transport.write(self.line + b"\r\n")
        self.transport.loseConnection()
