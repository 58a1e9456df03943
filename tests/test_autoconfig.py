"""
Thunderbird's autoconfig file on a real server, parsed as XML.
"""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from tests.harness import CaptureServer
from tests.test_api import call


def _servers(body: bytes) -> list[tuple[str, ...]]:
    root = ElementTree.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None
    found = []
    for server in provider:
        if server.tag in ("incomingServer", "outgoingServer"):
            found.append((
                server.tag, server.get("type") or "",
                *(server.findtext(t) or "" for t in
                  ("hostname", "port", "socketType", "username", "authentication")),
            ))
    return found


@pytest.mark.parametrize(
    "path", ["/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"]
)
def test_autoconfigNamesEveryListener(server: CaptureServer, path: str) -> None:
    """
    Both paths answer the same XML: each mail listener with the port it
    really listens on, implicit TLS first, the address as user name.
    """
    status, headers, body = call(server, "GET", path + "?emailaddress=someone%40example.com")
    assert status == 200
    assert headers["content-type"] == "application/xml; charset=utf-8"
    p = server.ports
    user, auth = "%EMAILADDRESS%", "password-cleartext"
    assert _servers(body) == [
        ("incomingServer", "imap", "localhost", str(p["imaps"]), "SSL", user, auth),
        ("incomingServer", "imap", "localhost", str(p["imap"]), "STARTTLS", user, auth),
        ("incomingServer", "pop3", "localhost", str(p["pop3s"]), "SSL", user, auth),
        ("incomingServer", "pop3", "localhost", str(p["pop3"]), "STARTTLS", user, auth),
        ("outgoingServer", "smtp", "localhost", str(p["smtps"]), "SSL", user, auth),
        ("outgoingServer", "smtp", "localhost", str(p["smtp"]), "STARTTLS", user, auth),
    ]
    root = ElementTree.fromstring(body)
    assert [d.text for d in root.iter("domain")] == ["example.com", "localhost"]
    documentation = root.find("emailProvider/documentation")
    assert documentation is not None
    assert documentation.get("url") == f"http://127.0.0.1:{p['http']}/api/openapi.json"


@pytest.mark.serverOptions("--pop3", "none", "--smtps", "none", "--hostname", "mail.test")
def test_autoconfigOnlyEnabledListeners(freshServer: CaptureServer) -> None:
    """
    A listener switched off is not offered; the host name is --hostname.
    """
    _, _, body = call(freshServer, "GET", "/mail/config-v1.1.xml")
    assert [(s[1], s[4], s[2]) for s in _servers(body)] == [
        ("imap", "SSL", "mail.test"), ("imap", "STARTTLS", "mail.test"),
        ("pop3", "SSL", "mail.test"), ("smtp", "STARTTLS", "mail.test"),
    ]
    # A bad address parameter is ignored, not reflected.
    _, _, body = call(freshServer, "GET", "/mail/config-v1.1.xml?emailaddress=%3Cx%3E")
    assert [d.text for d in ElementTree.fromstring(body).iter("domain")] == ["mail.test"]




@pytest.mark.parametrize("spelling", ["me%40xn--exmple-cua.test", "me%40EX%C3%84MPLE.test"])
def test_autoconfigDomainAsStored(server: CaptureServer, spelling: str) -> None:
    """
    The wizard's address names its domain as the store keeps it (lower-case
    U-labels), whichever spelling it came in: the one address rule.
    """
    _, _, body = call(server, "GET", "/mail/config-v1.1.xml?emailaddress=" + spelling)
    assert [d.text for d in ElementTree.fromstring(body).iter("domain")] == [
        "exämple.test", "localhost"]
