# -*- test-case-name: tests.test_autoconfig -*-
"""
Thunderbird's autoconfig file (clientConfig version 1.1): the mail
settings a client's account wizard finds by itself.

Thunderbird asks C{http://<domain>/.well-known/autoconfig/mail/config-v1.1.xml}
(and C{/mail/config-v1.1.xml}); the answer names each enabled listener,
with the user name as the address typed in (C{%EMAILADDRESS%}: an address
login opens that inbox) and the password sent as typed (the API key).
See U{https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat}.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.etree import ElementTree

import attrs

# What each listener is, in the file's words: (element, type, socketType).
_KINDS = {
    "imaps": ("incomingServer", "imap", "SSL"),
    "imap": ("incomingServer", "imap", "STARTTLS"),
    "pop3s": ("incomingServer", "pop3", "SSL"),
    "pop3": ("incomingServer", "pop3", "STARTTLS"),
    "smtps": ("outgoingServer", "smtp", "SSL"),
    "smtp": ("outgoingServer", "smtp", "STARTTLS"),
}
# Implicit TLS first: the wizard prefers the first server of a type.
_ORDER = ("imaps", "imap", "pop3s", "pop3", "smtps", "smtp")


@attrs.frozen
class MailSettings:
    """
    The server's mail listeners as a client reaches them.

    @ivar hostname: The host name clients connect to (C{--hostname}).
    @ivar ports: Listener name (C{"imaps"}, C{"pop3"}, C{"smtp"}, ...) to
        a function giving its port now (a C{tcp:0} listener knows its port
        only once it listens), or L{None} when it is not listening.  Only
        the listeners named here appear.
    """

    hostname: str
    ports: dict[str, Callable[[], int | None]]

    def clientConfig(self, documentation: str, domain: str | None = None) -> bytes:
        """
        The autoconfig XML.

        @param documentation: Where a person reads about the settings.
        @param domain: The domain of the address the client asked about
            (its C{emailaddress} parameter), named as a domain this
            configuration serves.
        """
        root = ElementTree.Element("clientConfig", version="1.1")
        provider = ElementTree.SubElement(root, "emailProvider", id=self.hostname)
        for name in dict.fromkeys(d for d in (domain, self.hostname) if d):
            ElementTree.SubElement(provider, "domain").text = name
        ElementTree.SubElement(provider, "displayName").text = f"Capture ({self.hostname})"
        ElementTree.SubElement(provider, "displayShortName").text = "Capture"
        for name in _ORDER:
            portOf = self.ports.get(name)
            port = portOf() if portOf is not None else None
            if port is None:
                continue
            element, kind, socketType = _KINDS[name]
            server = ElementTree.SubElement(provider, element, type=kind)
            for tag, text in (
                ("hostname", self.hostname),
                ("port", str(port)),
                ("socketType", socketType),
                ("username", "%EMAILADDRESS%"),
                ("authentication", "password-cleartext"),
            ):
                ElementTree.SubElement(server, tag).text = text
        docs = ElementTree.SubElement(provider, "documentation", url=documentation)
        ElementTree.SubElement(docs, "descr", lang="en").text = (
            "User name: the address to read (or the account name); password: an API key."
        )
        return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
