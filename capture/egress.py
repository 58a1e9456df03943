# -*- test-case-name: tests.test_egress,tests.test_webhooks -*-
"""
Where webhooks may connect: the operator's destination policy, and the
endpoints that enforce it.

A webhook URL is chosen by an account, so without a policy Capture would
POST mail to whatever the URL names: its own host's other services, the
private network behind it, a cloud metadata service.  L{DestinationPolicy}
says which addresses may be reached (longest matching prefix wins, over
built-in refusals of the non-public ranges); L{PolicyEndpointFactory}
makes the webhook L{Agent}'s endpoints resolve a name once, check every
address it resolves to, and connect to a checked address itself, so a
name that answers differently the second time (DNS rebinding) cannot slip
past the check.  A refusal is decided before any connection is tried.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.web.client import URI, BrowserLikePolicyForHTTPS
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Refused unless the operator allows them: what is not a public unicast
#: address.  Loopback is not here: see L{DestinationPolicy}.
DEFAULT_DENIED: tuple[str, ...] = (
    "0.0.0.0/8",        # "this network", with the unspecified 0.0.0.0
    "10.0.0.0/8",       # private (RFC 1918)
    "100.64.0.0/10",    # shared address space (carrier-grade NAT)
    "169.254.0.0/16",   # link-local, with the metadata service 169.254.169.254
    "172.16.0.0/12",    # private
    "192.0.0.0/24",     # IETF protocol assignments
    "192.168.0.0/16",   # private
    "198.18.0.0/15",    # benchmarking
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, with the broadcast 255.255.255.255
    "::/128",           # unspecified
    "64:ff9b:1::/48",   # local-use NAT64 (RFC 8215): any embedding, any network
    "100::/64",         # discard-only
    "fc00::/7",         # unique local
    "fe80::/10",        # link-local
    "fec0::/10",        # site-local (deprecated)
    "ff00::/8",         # multicast
)


class DestinationRefused(Exception):
    """
    The policy refuses (an address of) the webhook's destination; no
    connection was tried.  Its text says nothing about the destination.
    """

    def __str__(self) -> str:
        return "destination not allowed"


def parseNetworks(text: str) -> tuple[Network, ...]:
    """
    Addresses and CIDR ranges from C{"10.0.0.0/8, 127.0.0.1,::1"}; an
    address is a range of one.

    @raise ValueError: An entry is neither; the message names it.
    """
    networks = []
    for entry in text.replace(" ", ",").split(","):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or CIDR range (e.g. 10.0.0.0/8, "
                "192.168.1.5, fd00::/8)"
            ) from None
        networks.append(_unmapNetwork(network))
    return tuple(networks)


def _unmap(address: Address) -> Address:
    """
    An IPv4-mapped IPv6 address (C{::ffff:127.0.0.1}) is the IPv4 address
    it carries: the kernel connects to that one.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _carried(address: Address) -> ipaddress.IPv4Address | None:
    """
    The IPv4 address a translated IPv6 address delivers to: NAT64's
    well-known prefix (RFC 6052), 6to4 (RFC 3056) or IPv4-compatible
    (RFC 4291 2.5.5.1); C{None} for any other address.
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _unmapNetwork(network: Network) -> Network:
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.network_address.ipv4_mapped is not None
    ):
        return ipaddress.ip_network(
            f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}"
        )
    return network


@attrs.frozen
class DestinationPolicy:
    """
    Which addresses webhooks may connect to.

    The most specific range that contains an address decides: an
    operator's C{allow} or C{deny} entry, or a built-in refusal
    (L{DEFAULT_DENIED}); an address no range holds is allowed.  On a tie an
    operator's entry beats a built-in one, and C{deny} beats C{allow}.
    So C{allow=10.0.0.0/8} opens the private range and C{deny=10.0.0.5}
    closes one host of it again; C{deny=0.0.0.0/0,::/0} with C{allow}
    entries allows only those.

    Loopback is allowed by default: the single developer's receiver runs on
    the same machine (C{http://localhost:3000/hook}); a shared server
    denies it with C{deny=127.0.0.0/8,::1}.
    """

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    def permits(self, address: Address) -> bool:
        address = _unmap(address)
        # An IPv6 address that carries an IPv4 one through a translator
        # (NAT64, 6to4, the old IPv4-compatible form) reaches that IPv4
        # address: both must be allowed, or [64:ff9b::a9fe:a9fe] would reach
        # 169.254.169.254 on a host whose IPv6 egress goes through NAT64.
        carried = _carried(address)
        if carried is not None and not self._permits(carried):
            return False
        return self._permits(address)

    def _permits(self, address: Address) -> bool:
        best: tuple[int, int] | None = None
        allowed = True
        # Rank: prefix length first, then built-in < allow < deny.
        for rank, networks, verdict in (
            (0, _DEFAULT_DENIED, False),
            (1, self.allow, True),
            (2, self.deny, False),
        ):
            for network in networks:
                if address.version == network.version and address in network:
                    key = (network.prefixlen, rank)
                    if best is None or key > best:
                        best, allowed = key, verdict
        return allowed


_DEFAULT_DENIED = tuple(ipaddress.ip_network(n) for n in DEFAULT_DENIED)

Resolve = Callable[[str, int], Deferred[list[str]]]


def resolverFor(reactor: Any) -> Resolve:
    """
    Resolve a host name with C{getaddrinfo} on the reactor's thread pool
    (as Twisted's own name resolver does), to the addresses as text.
    """

    def lookUp(host: str, port: int) -> list[str]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise DNSLookupError(host) from e
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def resolve(host: str, port: int) -> Deferred[list[str]]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), lookUp, host, port)

    return resolve


@implementer(IStreamClientEndpoint)
@attrs.frozen
class CheckedEndpoint:
    """
    Connect to C{host} only at an address the policy permits: an address
    literal is checked as it is; a name is resolved once, every address it
    resolves to is checked (one refused address refuses the name), and the
    connection goes to those addresses, tried in turn, not to the name.
    """

    reactor: Any
    policy: DestinationPolicy
    resolve: Resolve
    host: str
    port: int
    timeout: float = 30.0

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return ensureDeferred(self._connect(protocolFactory))

    async def _connect(self, protocolFactory: IProtocolFactory) -> IProtocol:
        addresses = await self._addresses()
        if not addresses:
            raise DNSLookupError(self.host)
        if not all(self.policy.permits(a) for a in addresses):
            raise DestinationRefused()
        failure: Exception | None = None
        for address in dict.fromkeys(_unmap(a) for a in addresses):
            endpoint: IStreamClientEndpoint
            if isinstance(address, ipaddress.IPv4Address):
                endpoint = TCP4ClientEndpoint(self.reactor, str(address), self.port,
                                              timeout=self.timeout)
            else:
                endpoint = TCP6ClientEndpoint(self.reactor, str(address), self.port,
                                              timeout=self.timeout)
            try:
                return await endpoint.connect(protocolFactory)
            except Exception as e:
                failure = e
        assert failure is not None
        raise failure

    async def _addresses(self) -> list[Address]:
        literal = _literal(self.host)
        if literal is not None:
            return [literal]
        resolved = await self.resolve(self.host, self.port)
        addresses = []
        for text in resolved:
            address = _literal(text.partition("%")[0])
            if address is None:
                raise DNSLookupError(self.host)
            addresses.append(address)
        return addresses


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@implementer(IAgentEndpointFactory)
@attrs.frozen
class PolicyEndpointFactory:
    """
    The webhook Agent's endpoints: TCP (and TLS for C{https}) through a
    L{CheckedEndpoint}.  TLS verifies the certificate for, and sends SNI
    with, the URL's host name, whatever address was connected to; the
    C{Host} header is the Agent's, from the URL.
    """

    reactor: Any
    policy: DestinationPolicy
    resolve: Resolve
    tlsPolicy: IPolicyForHTTPS = attrs.field(factory=BrowserLikePolicyForHTTPS)
    timeout: float = 30.0

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"The host of the URI ({uri.host!r}) is not ASCII") from None
        endpoint: IStreamClientEndpoint = CheckedEndpoint(
            self.reactor, self.policy, self.resolve, host, uri.port, self.timeout
        )
        if uri.scheme == b"http":
            return endpoint
        if uri.scheme == b"https":
            return wrapClientTLS(self.tlsPolicy.creatorForNetloc(uri.host, uri.port), endpoint)
        raise SchemeNotSupported(f"Unsupported scheme: {uri.scheme!r}")
