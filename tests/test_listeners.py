"""
What L{capture.tap._Listener} does to every accepted connection: Nagle's
algorithm off (TCP_NODELAY), on plain TCP and behind implicit TLS, checked
on the server's own socket of a real loopback connection.
"""

from __future__ import annotations

import socket
import tempfile
from typing import Any

from twisted.internet import endpoints, reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from capture import tap
from capture.tls import loadCertificate


class _Remember(Protocol):
    def connectionMade(self) -> None:
        self.factory.made.callback(self.transport)


def _noDelay(transport: Any) -> int:
    """
    TCP_NODELAY of the socket beneath C{transport}: wrappers (ours, TLS,
    whose C{getHandle} is its OpenSSL connection) are walked down to it.
    """
    while not isinstance(transport.getHandle(), socket.socket):
        transport = transport.transport
    return int(transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class NoDelayTests(unittest.TestCase):
    async def _accepted(self, endpoint: Any) -> Any:
        """
        The server-side transport of one connection to a listener on
        C{endpoint}.
        """
        factory = Factory.forProtocol(_Remember)
        made: Deferred[Any] = Deferred()
        factory.made = made  # type: ignore[attr-defined]
        listener = tap._Listener("test", endpoint, factory)
        listener.privilegedStartService()
        listener.startService()
        self.addCleanup(listener.stopService)
        port = listener._port
        assert port is not None
        client = socket.create_connection(("127.0.0.1", port.getHost().port))  # type: ignore[attr-defined]
        self.addCleanup(client.close)
        return await made

    async def test_plainTCP(self) -> None:
        transport = await self._accepted(
            endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
        )
        self.assertEqual(_noDelay(transport), 1)

    async def test_implicitTLS(self) -> None:
        certificate = loadCertificate(tempfile.mkdtemp(), "localhost")
        transport = await self._accepted(
            tap._implicitTLS(reactor, "tcp:0:interface=127.0.0.1", certificate.options)
        )
        self.assertEqual(_noDelay(transport), 1)
