# -*- test-case-name: tests.test_tap -*-
"""
C{twistd capture}: the options and the service tree.

L{makeService} builds one L{MultiService}: the store, one listening service
per endpoint (all sharing the store and the portal) and background
retention.  Every option can also be set by an environment variable
C{CAPTURE_<NAME>} (upper case, dashes as underscores), for containers.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from capture.auth import makePortal
from capture.smtp import SMTPFactory, SMTPSettings
from capture.store.model import Retention, SchemaTooNew
from capture.store.sqlite import SQLiteStore
from capture.tls import loadCertificate

_log = Logger()
_MAX_RETENTION_PASSES = 100

_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parseSize(text: str) -> int:
    """
    Octets from C{"25MiB"}, C{"1048576"}, C{"10M"} (binary) or C{"10MB"}.
    """
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise usage.UsageError(f"not a size: {text!r} (try 25MiB)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def parseDuration(text: str) -> int:
    """
    Seconds from C{"4d"}, C{"12h"}, C{"90m"} or C{"3600"}.
    """
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]?)\s*", text)
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        raise usage.UsageError(f"not a duration: {text!r} (try 4d or 12h)")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def _environmentName(option: str) -> str:
    return "CAPTURE_" + option.upper().replace("-", "_")


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise usage.UsageError(f"not a count: {text!r}")
    return int(text)


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Capture accepts every message sent to it over SMTP, delivers none, "
        "and files a copy in the inbox of every recipient. Each listener "
        "takes a Twisted endpoint string (tcp:, ssl:, tls:, unix:), or "
        "'none' to switch it off. Every option can also be set with the "
        "environment variable CAPTURE_<OPTION> (e.g. CAPTURE_SMTP=tcp:2525)."
    )

    optParameters = [
        ["data", None, "./capture-data", "Directory of the message store."],
        ["tls-dir", None, "./tls", "Directory of PEM certificates (key + certificate per file); "
         "a self-signed one for localhost is made when it has none."],
        ["smtp", None, "tcp:5587", "SMTP listener (STARTTLS)."],
        ["smtps", None, "tcp:5465", "SMTP listener with implicit TLS; a tcp: endpoint is "
         "wrapped in TLS with the certificate of --tls-dir."],
        ["hostname", None, "localhost", "Host name in the greeting, Received: lines and the "
         "generated certificate."],
        ["max-message-size", None, "25MiB", "Largest message accepted (advertised with SIZE)."],
        ["max-recipients", None, "100", "Most RCPTs per message."],
        ["max-line-length", None, "1MiB", "Longest line inside a message."],
        ["max-connections", None, "1000", "Most simultaneous connections per SMTP listener."],
        ["idle-timeout", None, "5m", "Close a connection silent this long."],
        ["public-inbox-limit", None, "500", "Copies kept per public inbox (0: no limit)."],
        ["public-max-age", None, "7d", "How long public mail is kept (0: forever)."],
        ["message-limit", None, "100000", "Default limit on an account's stored mail "
         "(owned inboxes and starred), oldest recycled first; starred mail never is."],
        ["retention-interval", None, "60", "Seconds between retention passes."],
        ["max-store-size", None, "0", "Largest the database may grow (0: up to the disk)."],
        ["admin-account", None, "admin", "Name of the account created when the store is empty."],
    ]

    optFlags = [
        ["accept-any-auth", None, "Development mode: accept any user name and password; "
         "an unknown user name becomes an account on first use."],
        ["allow-insecure-auth", None, "Allow AUTH before TLS."],
        ["allow-anonymous", None, "Accept mail without AUTH; it belongs to no account and "
         "is public."],
    ]

    def __init__(self) -> None:
        super().__init__()
        for parameter in self.optParameters:
            name = str(parameter[0])
            env = os.environ.get(_environmentName(name))
            if env is not None:
                self[name] = env
        for flag in self.optFlags:
            name = str(flag[0])
            env = os.environ.get(_environmentName(name), "")
            if env.strip().lower() in ("1", "true", "yes", "on"):
                self[name] = 1

    def postOptions(self) -> None:
        self["max-message-size"] = parseSize(str(self["max-message-size"]))
        self["max-line-length"] = parseSize(str(self["max-line-length"]))
        self["max-store-size"] = parseSize(str(self["max-store-size"]))
        self["idle-timeout"] = parseDuration(str(self["idle-timeout"]))
        self["public-max-age"] = parseDuration(str(self["public-max-age"]))
        self["retention-interval"] = parseDuration(str(self["retention-interval"]))
        for name in ("max-recipients", "max-connections", "public-inbox-limit", "message-limit"):
            self[name] = _count(str(self[name]))
        if self["max-recipients"] < 1:
            raise usage.UsageError("--max-recipients must be at least 1")


def _isOff(description: str) -> bool:
    return description.strip().lower() in ("", "none", "off")


class _Listener(Service):
    """
    Listen on an endpoint while running, and log the address it got (so a
    C{tcp:0} listener tells which port it took).  A listen failure is raised
    at once, so C{twistd} stops instead of running without the port.
    """

    def __init__(self, label: str, endpoint: Any, factory: IProtocolFactory) -> None:
        self._label = label
        self._endpoint = endpoint
        self._factory = factory
        self._port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        failures: list[Failure] = []
        d = self._endpoint.listen(self._factory)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()

    def _listening(self, port: IListeningPort) -> None:
        self._port = port
        address = port.getHost()
        _log.info(
            "{label} listening on {host}:{port}",
            label=self._label,
            host=getattr(address, "host", address),
            port=getattr(address, "port", ""),
        )

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
        return None


class _StoreService(Service):
    """
    Keep the store open while Capture runs; on an empty store, create the
    first account and log its key, once.
    """

    def __init__(self, store: SQLiteStore, adminAccount: str) -> None:
        self.store = store
        self._adminAccount = adminAccount

    def startService(self) -> None:
        super().startService()
        # Threads start here, after twistd has daemonized, not in
        # makeService.
        self.store.start()
        ensureDeferred(self._firstAccount()).addErrback(
            lambda f: _log.failure("Could not create the first account", f)
        )

    async def _firstAccount(self) -> None:
        if await self.store.listAccounts():
            return
        account, key = await self.store.createAccount(self._adminAccount)
        _log.info(
            "Created account {name}; its API key (shown this once): {key}",
            name=account.name,
            key=key,
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.store.stop()


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build Capture's service tree from parsed L{Options}.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    top = MultiService()
    store = SQLiteStore(options["data"], reactor, maxSize=options["max-store-size"])
    try:
        store.open()
    except SchemaTooNew as e:
        raise SystemExit(f"capture: {e}") from None
    _StoreService(store, options["admin-account"]).setServiceParent(top)
    _log.info("Data in {data}", data=os.path.abspath(options["data"]))

    certificate = loadCertificate(options["tls-dir"], options["hostname"])
    _log.info(
        "{what} certificate {path} (SHA-256 {fingerprint})",
        what="Generated self-signed" if certificate.generated else "Using",
        path=certificate.path,
        fingerprint=certificate.fingerprint,
    )
    tlsOptions = certificate.options

    portal = makePortal(store, acceptAny=bool(options["accept-any-auth"]))
    settings = SMTPSettings(
        hostname=options["hostname"],
        maxMessageSize=options["max-message-size"],
        maxRecipients=options["max-recipients"],
        maxLineLength=options["max-line-length"],
        maxConnections=options["max-connections"],
        idleTimeout=float(options["idle-timeout"]),
        allowInsecureAuth=bool(options["allow-insecure-auth"]),
        allowAnonymous=bool(options["allow-anonymous"]),
    )
    if not _isOff(options["smtp"]):
        _Listener(
            "SMTP (STARTTLS)",
            endpoints.serverFromString(reactor, options["smtp"]),
            SMTPFactory(store, portal, settings, tlsOptions),
        ).setServiceParent(top)
    if not _isOff(options["smtps"]):
        description = options["smtps"]
        endpoint = endpoints.serverFromString(reactor, description)
        if not description.startswith(("ssl:", "tls:")):
            endpoint = endpoints.wrapServerTLS(tlsOptions, endpoint)
        _Listener(
            "SMTPS (implicit TLS)",
            endpoint,
            SMTPFactory(store, portal, settings, tlsOptions, implicitTLS=True),
        ).setServiceParent(top)

    retention = Retention(
        publicInboxLimit=options["public-inbox-limit"],
        publicMaxAge=options["public-max-age"],
        messageLimit=options["message-limit"],
    )
    if options["retention-interval"]:
        TimerService(
            options["retention-interval"], _retentionPass, store, retention
        ).setServiceParent(top)
    return top


def _retentionPass(store: SQLiteStore, retention: Retention) -> Deferred[None]:
    """
    Run retention until it finds nothing more to do (or a cap of passes):
    each pass is one bounded write, so ingest goes on between them.
    """

    async def run() -> None:
        total = 0
        for _ in range(_MAX_RETENTION_PASSES):
            removed = await store.enforceRetention(retention, int(time.time() * 1000))
            total += removed
            if not removed:
                break
        if total:
            _log.info("Retention recycled {count} copies", count=total)

    return ensureDeferred(run()).addErrback(lambda f: _log.failure("Retention pass failed", f))
