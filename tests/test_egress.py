"""
The webhook destination policy and its endpoints, as units: every refusal
is decided before a connection is tried (a L{MemoryReactor} records every
connect, and sends nothing anywhere).
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import DNSLookupError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.web.client import URI

from capture.egress import (
    CheckedEndpoint,
    DestinationPolicy,
    DestinationRefused,
    PolicyEndpointFactory,
    parseNetworks,
)

_DEFAULT = DestinationPolicy()


@pytest.mark.parametrize(
    "address, allowed",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::ffff:0.0.0.0", False),
        # IPv6 forms that carry an IPv4 address through a translator.
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b::a00:1", False),
        ("64:ff9b::5db8:d70e", True),
        ("2002:a9fe:a9fe::1", False),
        ("2002:5db8:d70e::1", True),
        ("::a9fe:a9fe", False),
        ("::7f00:1", True),
        ("64:ff9b:1::5db8:d70e", False),
        ("100::1", False),
    ],
)
def test_defaultPolicy(address: str, allowed: bool) -> None:
    """
    By default the non-public ranges are refused (private, shared,
    link-local with the metadata address, unspecified, multicast, reserved,
    and the IPv6 equivalents), IPv4-mapped IPv6 addresses as the IPv4
    address they carry; loopback and public addresses are allowed.
    """
    assert _DEFAULT.permits(ip_address(address)) is allowed


def test_operatorEntriesMostSpecificWins() -> None:
    """
    An operator's allow opens a refused range, a longer deny closes part of
    it again; deny beats allow on the same range; a deny of everything with
    allow entries allows only those; a mapped-IPv6 entry is its IPv4 range.
    """
    policy = DestinationPolicy(
        allow=parseNetworks("10.0.0.0/8"), deny=parseNetworks("10.0.0.5,127.0.0.0/8,::1")
    )
    assert policy.permits(ip_address("10.1.2.3"))
    assert not policy.permits(ip_address("10.0.0.5"))
    assert not policy.permits(ip_address("127.0.0.1"))
    assert not policy.permits(ip_address("::ffff:127.0.0.1"))
    assert not policy.permits(ip_address("::1"))
    assert not policy.permits(ip_address("192.168.0.1"))
    both = DestinationPolicy(allow=parseNetworks("10.0.0.0/8"), deny=parseNetworks("10.0.0.0/8"))
    assert not both.permits(ip_address("10.0.0.1"))
    only = DestinationPolicy(allow=parseNetworks("203.0.113.7"),
                             deny=parseNetworks("0.0.0.0/0,::/0"))
    assert only.permits(ip_address("203.0.113.7"))
    assert not only.permits(ip_address("203.0.113.8"))
    assert not only.permits(ip_address("127.0.0.1"))
    assert parseNetworks("::ffff:127.0.0.0/104") == parseNetworks("127.0.0.0/8")


@pytest.mark.parametrize("text", ["10.0.0.0/33", "localhost", "1.2.3", "::g"])
def test_parseNetworksRefusesOthers(text: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR range"):
        parseNetworks(f"127.0.0.1,{text}")


class _Resolver:
    """
    A resolver that answers from a table, counting its lookups.
    """

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Deferred[list[str]]:
        self.lookups.append((host, port))
        return succeed(self.answers.get(host, []))


def _connect(host: str, policy: DestinationPolicy = _DEFAULT,
             answers: dict[str, list[str]] | None = None
             ) -> tuple[MemoryReactor, _Resolver, list[Failure]]:
    reactor = MemoryReactor()
    resolver = _Resolver(answers or {})
    endpoint = CheckedEndpoint(reactor, policy, resolver, host, 8080)
    failures: list[Failure] = []
    endpoint.connect(Factory.forProtocol(Protocol)).addErrback(failures.append)
    return reactor, resolver, failures


@pytest.mark.parametrize("host", ["10.0.0.1", "169.254.169.254", "0.0.0.0", "[::ffff:10.0.0.1]",
                                  "fe80::1"])
def test_refusedLiteralNeverConnects(host: str) -> None:
    """
    An address literal the policy refuses fails with L{DestinationRefused}
    (whose text names nothing of it) before any connect, and is not looked
    up.
    """
    reactor, resolver, failures = _connect(host)
    [failure] = failures
    assert failure.check(DestinationRefused) and str(failure.value) == "destination not allowed"
    assert reactor.tcpClients == [] and resolver.lookups == []


def test_nameCheckedAtEveryAddressAndConnectedByAddress() -> None:
    """
    A name is looked up once; if any address it resolves to is refused,
    nothing is connected (a name cannot pair a public address with an
    internal one); otherwise the connection goes to the resolved address,
    not to the name (no second lookup that could answer differently).
    """
    reactor, resolver, failures = _connect(
        "rebind.test", answers={"rebind.test": ["127.0.0.1", "10.0.0.1"]}
    )
    assert failures[0].check(DestinationRefused)
    assert reactor.tcpClients == [] and resolver.lookups == [("rebind.test", 8080)]
    reactor, resolver, failures = _connect(
        "hooks.test", answers={"hooks.test": ["::1", "127.0.0.1"]}
    )
    assert failures == []
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("::1", 8080)]
    assert resolver.lookups == [("hooks.test", 8080)]


def test_deniedLoopbackNameNeverConnects() -> None:
    """
    With loopback denied, a name that resolves to loopback is refused
    without a connect, as its literal is.
    """
    policy = DestinationPolicy(deny=parseNetworks("127.0.0.0/8,::1"))
    reactor, _, failures = _connect("localhost", policy, {"localhost": ["127.0.0.1", "::1"]})
    assert failures[0].check(DestinationRefused) and reactor.tcpClients == []


def test_allowedPrivateAddressConnectsThere() -> None:
    """
    With the range allowed, the endpoint connects to the address given
    (in memory: nothing leaves the process).
    """
    policy = DestinationPolicy(allow=parseNetworks("10.0.0.0/8"))
    reactor, _, failures = _connect("10.0.0.1", policy)
    assert failures == []
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("10.0.0.1", 8080)]


def test_unresolvableName() -> None:
    reactor, _, failures = _connect("nowhere.test")
    assert failures[0].check(DNSLookupError) and reactor.tcpClients == []


class _TLSPolicy:
    def __init__(self) -> None:
        self.netlocs: list[tuple[bytes, int]] = []

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        from twisted.internet.ssl import optionsForClientTLS

        self.netlocs.append((hostname, port))
        return optionsForClientTLS(hostname.decode())


def test_httpsVerifiesTheNameAndConnectsToTheAddress() -> None:
    """
    For C{https} the TLS layer is made for the URL's host name (the
    certificate is checked for it and SNI names it) while the TCP
    connection goes to the checked address.
    """
    reactor = MemoryReactor()
    tls = _TLSPolicy()
    factory = PolicyEndpointFactory(reactor, _DEFAULT, _Resolver({"hooks.test": ["127.0.0.1"]}),
                                    tlsPolicy=tls)
    endpoint = factory.endpointForURI(URI.fromBytes(b"https://hooks.test/x"))
    endpoint.connect(Factory.forProtocol(Protocol))
    assert tls.netlocs == [(b"hooks.test", 443)]
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("127.0.0.1", 443)]
