# -*- test-case-name: tests.test_tap -*-
"""
C{twistd capture}: the options and the service tree.

L{makeService} builds one L{MultiService}: the store, one listening service
per endpoint (all sharing the store and the portal) and background
retention.  Every option can also be set by an environment variable
C{CAPTURE_<NAME>} (upper case, dashes as underscores), for containers.
"""

from __future__ import annotations

import gc
import os
import re
import time
from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from capture.auth import LoginThrottle, makePortal
from capture.connections import (
    CLOSE_TIMEOUT,
    DESCRIPTOR_RESERVE,
    GuardFactory,
    GuardSettings,
    Slots,
    backlogged,
    fitCaps,
    raiseDescriptorLimit,
)
from capture.egress import DestinationPolicy, parseNetworks
from capture.events import InProcessBus
from capture.health import Readiness
from capture.imap import IMAPFactory, IMAPSettings
from capture.imaprecent import RecentCopies
from capture.ingest import Ingest
from capture.memory import returnLargeBlocks
from capture.metrics import Metrics
from capture.pop3 import POP3Factory, POP3Settings
from capture.smtp import IngestBudget, SMTPFactory, SMTPSettings
from capture.store import makeStore
from capture.store.errors import StoreError
from capture.store.interface import IMaintenanceStore, IStore
from capture.store.model import Retention
from capture.tls import loadCertificate
from capture.web.api import BoundedRequest, MailsacAPI
from capture.web.autoconfig import MailSettings
from capture.web.pages import WebPages
from capture.web.root import Root
from capture.web.site import MeteredSite
from capture.web.websession import WebSessions, loadSecret
from capture.webhooks import WebhookDispatcher

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


_FLAG_ON = ("1", "true", "yes", "on")
_FLAG_OFF = ("", "0", "false", "no", "off")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def parseHostname(text: str) -> str:
    """
    A host name as Capture uses it everywhere (greeting, C{Received:} lines,
    certificate, C{<hostname>.pem}): lower case, internationalized labels as
    A-labels (C{bücher.example} becomes C{xn--bcher-kva.example}), without a
    final dot.

    @raise usage.UsageError: C{text} is not a host name (RFC 1123 letters,
        digits and inner hyphens; labels of 1 to 63 characters; 253 in all).
    """
    name = text[:-1] if text.endswith(".") and text != "." else text
    if not name:
        raise usage.UsageError("a host name cannot be empty")
    labels = []
    for label in name.split("."):
        if not label:
            raise usage.UsageError(f"{text!r} is not a host name: it has an empty label")
        if not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                raise usage.UsageError(
                    f"{text!r} is not a host name: label {label!r} is not a valid "
                    "internationalized label (or is over 63 characters as an A-label)"
                ) from None
        label = label.lower()
        if len(label) > 63:
            raise usage.UsageError(
                f"{text!r} is not a host name: label {label[:20]!r}... is longer than "
                "63 characters"
            )
        if not _LABEL_RE.fullmatch(label):
            raise usage.UsageError(
                f"{text!r} is not a host name: label {label!r} may hold only letters, "
                "digits and hyphens, and cannot start or end with a hyphen"
            )
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                raise usage.UsageError(
                    f"{text!r} is not a host name: {label!r} is not a valid A-label "
                    "(punycode)"
                ) from None
        labels.append(label)
    result = ".".join(labels)
    if len(result) > 253:
        raise usage.UsageError(
            f"{text[:20]!r}... is not a host name: it is {len(result)} characters long "
            "(at most 253)"
        )
    return result


def parseListener(description: str) -> str:
    """
    Check a listener description by parsing it (which does not listen), so
    a typo stops C{twistd} with a usage error.

    @return: C{description}, unchanged.
    @raise usage.UsageError: It is neither C{none}/C{off} nor an endpoint
        string that parses.
    """
    if _isOff(description):
        return description
    try:
        endpoint = endpoints.serverFromString(MemoryReactor(), description)
    except Exception as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise usage.UsageError(
            f"{description!r} is not a listener ({reason}); use an endpoint such as "
            "tcp:5587, tcp:5587:interface=127.0.0.1, tls:./tls:465 or unix:/path, "
            "or none to switch it off"
        ) from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(f"{description!r}: port {port} is not between 0 and 65535")
    return description


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
        ["http", None, "tcp:8025", "HTTP listener: the Mailsac-compatible API under /api."],
        ["smtps", None, "tcp:5465", "SMTP listener with implicit TLS; a tcp: endpoint is "
         "wrapped in TLS with the certificate of --tls-dir."],
        ["pop3", None, "tcp:1110", "POP3 listener (STLS)."],
        ["pop3s", None, "tcp:1995", "POP3 listener with implicit TLS; a tcp: endpoint is "
         "wrapped in TLS with the certificate of --tls-dir."],
        ["imap", None, "tcp:1143", "IMAP listener (STARTTLS; LOGINDISABLED until TLS unless "
         "--allow-insecure-auth)."],
        ["imaps", None, "tcp:1993", "IMAP listener with implicit TLS; a tcp: endpoint is "
         "wrapped in TLS with the certificate of --tls-dir."],
        ["hostname", None, "localhost", "Host name in the greeting, Received: lines and the "
         "generated certificate (an internationalized name is used as its xn-- A-label)."],
        ["max-message-size", None, "25MiB", "Largest message accepted (advertised with SIZE; "
         "at least 1KiB)."],
        ["max-recipients", None, "100", "Most RCPTs per message."],
        ["max-line-length", None, "1MiB", "Longest line inside a message (at least 1000)."],
        ["max-connections", None, "1000", "Most simultaneous connections per SMTP, POP3 or "
         "IMAP listener."],
        ["max-connections-per-address", None, "128", "Most simultaneous connections from one "
         "client address, per listener (HTTP too)."],
        ["max-http-connections", None, "1024", "Most simultaneous connections to the HTTP "
         "listener; past it API requests get 503."],
        ["max-streams", None, "512", "Most live streams at once (waits for mail, event "
         "streams, websockets); past it they get 503."],
        ["max-streams-per-address", None, "64", "Most live streams at once from one client "
         "address."],
        ["anonymous-stream-lifetime", None, "10m", "How long a live stream without a key may "
         "last (an event stream then ends and EventSource reconnects; a wait answers 408); "
         "0: for ever."],
        ["max-failed-logins", None, "30", "Failed logins one client address may make in "
         "5 minutes; past 10, each answer is a second late, past this number logins are "
         "refused with 421 until older failures age out."],
        ["max-ingest-memory", None, "512MiB", "Memory all SMTP sessions' message data "
         "may take while receiving, parsing and storing (each octet counts 3 times, for "
         "its copies); past it, mail gets 452 4.3.1 (try again later)."],
        ["idle-timeout", None, "5m", "Close a connection silent this long (more than 0); "
         "a logged-in IMAP client gets at least 30 minutes (RFC 3501)."],
        ["tls-handshake-timeout", None, "10s", "Time a TLS handshake may take (implicit TLS "
         "from accept, STARTTLS/STLS from the command) before the connection is dropped "
         "(more than 0)."],
        ["public-inbox-limit", None, "500", "Copies kept per public inbox (0: no limit)."],
        ["public-max-age", None, "7d", "How long public mail is kept (0: forever)."],
        ["message-limit", None, "100000", "Default limit on an account's stored mail "
         "(owned inboxes and starred), oldest recycled first; starred mail never is."],
        ["retention-interval", None, "60", "Seconds between retention passes."],
        ["sse-heartbeat", None, "15", "Seconds between the heartbeat comments of an idle "
         "Server-Sent Events stream (at least 1)."],
        ["max-store-size", None, "0", "Largest the database may grow (0: up to the disk)."],
        ["store-reserve", None, "16MiB", "Room new mail leaves free on the disk (and of "
         "--max-store-size, at most a quarter of it) so deletes, purges and retention can "
         "still write: past it SMTP answers 452 4.3.1."],
        ["admin-account", None, "admin", "Name of the account created when the store is empty."],
        ["webhook-queue", None, "10000", "Most webhook deliveries held at once (waiting, in "
         "flight or waiting to retry); past it, new ones are dropped, and recorded as dropped."],
        ["webhook-timeout", None, "10s", "Time one webhook POST may take, connecting and "
         "answering (more than 0)."],
        ["webhook-retries", None, "5", "Retries after a failed webhook POST (no 2xx), waiting "
         "1 s, 2 s, 4 s, ... (jittered) between tries."],
        ["webhook-allow", None, "", "Addresses and CIDR ranges webhooks may reach although "
         "refused by default (private, link-local, ...), comma-separated; the most specific "
         "range decides."],
        ["webhook-deny", None, "", "Addresses and CIDR ranges webhooks may not reach, "
         "comma-separated (e.g. 127.0.0.0/8,::1 on a shared server: loopback is allowed by "
         "default)."],
    ]

    optFlags = [
        ["accept-any-auth", None, "Development mode: accept any user name and password; "
         "an unknown user name becomes an account on first use."],
        ["allow-insecure-auth", None, "Allow login before TLS (SMTP AUTH, POP3 USER/PASS, "
         "IMAP LOGIN/AUTHENTICATE)."],
        ["allow-anonymous", None, "Accept mail without AUTH; it belongs to no account and "
         "is public."],
        ["require-key", None, "Public inboxes need an API key to be read over HTTP too "
         "(by default anyone may read them, as at Mailsac)."],
        ["access-log", None, "Log a line per HTTP request (combined log format) into the "
         "server's log."],
        ["no-metrics", None, "Do not serve Prometheus metrics at /metrics (served by "
         "default, without a key: counts only, never mail)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[str, str] = {}
        self._given: dict[str, str] = {}
        self._badFlags: list[str] = []
        for parameter in self.optParameters:
            name = str(parameter[0])
            env = os.environ.get(_environmentName(name))
            if env is not None:
                self[name] = env
                self._environment[name] = env
        for flag in self.optFlags:
            name = str(flag[0])
            env = os.environ.get(_environmentName(name), "")
            value = env.strip().lower()
            if value in _FLAG_ON:
                self[name] = 1
            elif value not in _FLAG_OFF:
                self._badFlags.append(name)

    def _error(self, name: str, problem: str) -> usage.UsageError:
        """
        A usage error that names the option, and the environment variable
        when the value came from there.
        """
        source = ""
        if name in self._environment and self._given.get(name) == self._environment[name]:
            source = f" (from {_environmentName(name)})"
        return usage.UsageError(f"--{name}{source}: {problem}")

    def _convert(self, name: str, parse: Callable[[str], Any]) -> None:
        try:
            value = parse(str(self[name]))
        except usage.UsageError as e:
            raise self._error(name, str(e)) from None
        self[name] = value

    def _atLeast(self, name: str, minimum: int, why: str) -> None:
        if self[name] < minimum:
            raise self._error(name, f"must be at least {why}, not {self[name]}")

    def postOptions(self) -> None:
        # The values as given, before parsing, to tell which came from the
        # environment (the command line overrides it).
        self._given = {str(p[0]): str(self[str(p[0])]) for p in self.optParameters}
        for name in self._badFlags:
            variable = _environmentName(name)
            raise usage.UsageError(
                f"{variable}={os.environ.get(variable, '')!r} is not a switch: use "
                "1, true, yes or on (or 0, false, no, off, empty)"
            )
        self._convert("hostname", parseHostname)
        for name in ("max-message-size", "max-line-length", "max-store-size", "max-ingest-memory",
                     "store-reserve"):
            self._convert(name, parseSize)
        for name in (
            "idle-timeout", "public-max-age", "retention-interval", "webhook-timeout",
            "sse-heartbeat", "tls-handshake-timeout", "anonymous-stream-lifetime",
        ):
            self._convert(name, parseDuration)
        for name in (
            "max-recipients", "max-connections", "max-connections-per-address",
            "max-http-connections", "max-streams", "max-streams-per-address",
            "public-inbox-limit", "message-limit",
            "max-failed-logins", "webhook-queue", "webhook-retries",
        ):
            self._convert(name, _count)
        self._atLeast("max-recipients", 1, "1")
        self._atLeast("max-connections", 1, "1")
        self._atLeast("max-connections-per-address", 1, "1")
        self._atLeast("max-http-connections", 1, "1")
        self._atLeast("max-streams", 1, "1")
        self._atLeast("max-streams-per-address", 1, "1")
        self._atLeast("max-failed-logins", 1, "1")
        self._atLeast("webhook-queue", 1, "1")
        self._atLeast("sse-heartbeat", 1, "1 second")
        self._atLeast("max-message-size", 1024, "1KiB (1024 octets)")
        # RFC 5321 4.5.3.1.6: a text line may be 1000 octets with its CRLF.
        self._atLeast("max-line-length", 1000, "1000 octets (RFC 5321's line length)")
        self._atLeast(
            "max-ingest-memory", self["max-message-size"] * IngestBudget.copies,
            f"--max-message-size × {IngestBudget.copies} "
            f"({self['max-message-size'] * IngestBudget.copies} octets: each octet of a message "
            "counts for its copies), or no message that large could ever be taken",
        )
        if self["webhook-timeout"] <= 0:
            raise self._error("webhook-timeout", "must be more than 0 seconds")
        if self["tls-handshake-timeout"] <= 0:
            raise self._error("tls-handshake-timeout", "must be more than 0 seconds")
        if self["idle-timeout"] <= 0:
            raise self._error(
                "idle-timeout", "must be more than 0 seconds (0 would close every connection "
                "at once with 421)"
            )
        for name in ("smtp", "smtps", "pop3", "pop3s", "imap", "imaps", "http"):
            self._convert(name, parseListener)
        for name in ("webhook-allow", "webhook-deny"):
            self._convert(name, _networks)


def _networks(text: str) -> tuple[Any, ...]:
    try:
        return parseNetworks(text)
    except ValueError as e:
        raise usage.UsageError(str(e)) from None


def _listenProblem(error: Any) -> str:
    """
    Why a listener could not listen, in a few words (C{address already in
    use}, C{permission denied}).
    """
    reason = getattr(error, "socketError", None)
    number = getattr(reason, "errno", None)
    if isinstance(number, int):
        return os.strerror(number).lower()
    return " ".join(str(reason or error).split()) or type(error).__name__


def _isOff(description: str) -> bool:
    return description.strip().lower() in ("", "none", "off")


def _implicitTLS(reactor: Any, description: str, tlsOptions: Any) -> Any:
    """
    The endpoint of an implicit-TLS listener: C{ssl:} and C{tls:} bring
    their own certificates; anything else is wrapped in TLS with ours.
    """
    endpoint = endpoints.serverFromString(reactor, backlogged(description))
    if not description.startswith(("ssl:", "tls:")):
        endpoint = endpoints.wrapServerTLS(tlsOptions, endpoint)
    return endpoint


class _Listener(Service):
    """
    Listen on an endpoint while running, and log the address it got (so a
    C{tcp:0} listener tells which port it took).  Every connection goes
    through a L{Guard} (Nagle off, TLS handshake and closing deadlines).
    A listen failure stops C{twistd} at once with one line naming the
    option, instead of running without the port.

    @ivar option: The option that configured it (C{"smtp"}), for that line.
    """

    def __init__(self, label: str, endpoint: Any, factory: IProtocolFactory,
                 guard: GuardSettings | None = None, option: str = "",
                 description: str = "", slots: Slots | None = None) -> None:
        self._label = label
        self._endpoint = endpoint
        self._factory = factory
        self._guard = guard if guard is not None else GuardSettings()
        self.slots = slots
        self._port: IListeningPort | None = None
        self.option = option
        self.description = description

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        failures: list[Failure] = []
        d = self._endpoint.listen(GuardFactory(self._factory, self._guard, slots=self.slots))
        d.addCallbacks(self._listening, failures.append)
        if failures:
            failure = failures[0]
            if failure.check(CannotListenError) and self.option:
                raise SystemExit(
                    f"capture: --{self.option} {self.description}: {_listenProblem(failure.value)}"
                )
            failure.raiseException()

    def boundPort(self) -> int | None:
        """
        The port it listens on now, if it is a listening TCP port.
        """
        if self._port is None:
            return None
        port = getattr(self._port.getHost(), "port", None)
        return port if isinstance(port, int) else None

    def isBound(self) -> bool:
        """
        Whether the endpoint is listening now.
        """
        return self._port is not None

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


class _FreezeStartupHeap(Service):
    """
    Move everything alive once the server has started (modules, the
    service tree, the routing map: hundreds of thousands of objects) out of
    the cyclic garbage collector's sight, with C{gc.freeze}.

    Requests leave a little cyclic garbage behind, so a full collection runs
    about once a second under load; scanning the startup heap each time
    stalled the reactor for 25-30 ms and made the 99th percentile of API
    latency four times its median (bench/api.py).  Frozen objects are never
    freed, which is what startup objects are anyway.
    """

    def startService(self) -> None:
        super().startService()
        gc.freeze()


class _StoreService(Service):
    """
    Keep the store open while Capture runs; on an empty store, create the
    first account and log its key, once.
    """

    def __init__(self, store: IStore, adminAccount: str) -> None:
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
    # Big messages' buffers go back to the system once stored.
    returnLargeBlocks()
    top = MultiService()
    metrics = Metrics()
    # What the store commits, told to IMAP sessions, live listeners and
    # webhooks.
    events = InProcessBus()
    store = makeStore(
        options["data"], reactor, maxSize=options["max-store-size"],
        observeCommit=metrics.committed, reserve=options["store-reserve"], events=events,
    )
    metrics.gauge("capture_store_write_queue_depth", "Write operations waiting for the "
                  "store writer.", lambda: store.load().writesQueued)
    metrics.gauge("capture_store_reads_pending", "Reads handed to the store's read "
                  "threads and not answered yet.", lambda: store.load().readsPending)
    readiness = Readiness(store, reactor)
    try:
        store.open()
    except StoreError as e:
        # SchemaTooNew, or StoreUnavailable naming the data directory.
        raise SystemExit(f"capture: {e}") from None
    _StoreService(store, options["admin-account"]).setServiceParent(top)
    _log.info("Data in {data}", data=os.path.abspath(options["data"]))
    # After the store, so it stops first: no delivery reads a closed store.
    webhooks = WebhookDispatcher(
        store, reactor, queueLimit=options["webhook-queue"],
        timeout=float(options["webhook-timeout"]), retries=options["webhook-retries"],
        policy=DestinationPolicy(allow=options["webhook-allow"], deny=options["webhook-deny"]),
        events=events,
    )
    webhooks.setServiceParent(top)

    try:
        certificate = loadCertificate(options["tls-dir"], options["hostname"])
    except ValueError as e:
        raise SystemExit(f"capture: {e}") from None
    _log.info(
        "{what} certificate {path} (SHA-256 {fingerprint})",
        what="Generated self-signed" if certificate.generated else "Using",
        path=certificate.path,
        fingerprint=certificate.fingerprint,
    )
    tlsOptions = certificate.options

    if options["accept-any-auth"]:
        _log.warn(
            "--accept-any-auth: any user name and password log in, to any "
            "account; use it only where every client is trusted"
        )
    portal = makePortal(store, acceptAny=bool(options["accept-any-auth"]))
    settings = SMTPSettings(
        hostname=options["hostname"],
        maxMessageSize=options["max-message-size"],
        maxRecipients=options["max-recipients"],
        maxLineLength=options["max-line-length"],
        idleTimeout=float(options["idle-timeout"]),
        allowInsecureAuth=bool(options["allow-insecure-auth"]),
        allowAnonymous=bool(options["allow-anonymous"]),
    )
    # One budget and one login throttle for every listener: they bound the
    # process and the client, not a port.
    budget = IngestBudget(options["max-ingest-memory"])
    throttle = LoginThrottle(
        reactor,
        refuseAfter=options["max-failed-logins"],
        delayAfter=min(10, options["max-failed-logins"]),
    )
    pop3Settings = POP3Settings(
        hostname=options["hostname"],
        allowInsecureAuth=bool(options["allow-insecure-auth"]),
        idleTimeout=float(options["idle-timeout"]),
    )
    imapSettings = IMAPSettings(
        allowInsecureAuth=bool(options["allow-insecure-auth"]),
        idleTimeout=float(options["idle-timeout"]),
    )
    handshakeTimeout = float(options["tls-handshake-timeout"])
    caps = _connectionCaps(options)
    perAddress = options["max-connections-per-address"]
    listeners: list[tuple[str, _Listener]] = []

    def listen(name: str, label: str, factory: IProtocolFactory, implicit: bool = False,
               closeTimeout: float | None = CLOSE_TIMEOUT) -> None:
        description = options[name]
        if _isOff(description):
            return
        if implicit:
            endpoint = _implicitTLS(reactor, description, tlsOptions)
        else:
            endpoint = endpoints.serverFromString(reactor, backlogged(description))
        guard = GuardSettings(
            handshakeTimeout=handshakeTimeout,
            implicitTLS=implicit or description.startswith(("ssl:", "tls:")),
            closeTimeout=closeTimeout,
        )
        slots = Slots(limit=caps[name], perAddress=min(perAddress, caps[name]))
        listeners.append(
            (name, _Listener(label, endpoint, factory, guard, name, description, slots))
        )

    # Large messages are parsed on the reactor's thread pool.
    ingest = Ingest(store, reactor)
    listen("smtp", "SMTP (STARTTLS)",
           SMTPFactory(store, portal, settings, tlsOptions, budget, throttle, metrics,
                       ingest=ingest))
    listen("smtps", "SMTPS (implicit TLS)",
           SMTPFactory(store, portal, settings, tlsOptions, budget, throttle, metrics,
                       ingest=ingest),
           implicit=True)
    listen("pop3", "POP3 (STLS)",
           POP3Factory(store, portal, pop3Settings, tlsOptions, throttle, metrics, reactor))
    listen("pop3s", "POP3S (implicit TLS)",
           POP3Factory(store, portal, pop3Settings, tlsOptions, throttle, metrics, reactor),
           implicit=True)
    # One \Recent bookkeeping for both IMAP listeners: a copy is recent in
    # one session, whichever listener it came through.
    recent = RecentCopies()
    listen("imap", "IMAP (STARTTLS)",
           IMAPFactory(store, portal, imapSettings, tlsOptions, throttle, metrics, recent,
                       events=events))
    listen("imaps", "IMAPS (implicit TLS)",
           IMAPFactory(store, portal, imapSettings, tlsOptions, throttle, metrics, recent,
                       events=events),
           implicit=True)
    # Mail clients learn the mail listeners from the HTTP listener
    # (Thunderbird's autoconfig), with the ports they are bound to.
    mailPorts: dict[str, Callable[[], int | None]] = {
        name: listener.boundPort for name, listener in listeners
    }
    mailSettings = MailSettings(options["hostname"], mailPorts)
    if not _isOff(options["http"]):
        sessions = WebSessions(loadSecret(options["data"]))
        api = MailsacAPI(
            store,
            publicReadable=not options["require-key"],
            metrics=None if options["no-metrics"] else metrics,
            readiness=readiness,
            webhooks=webhooks,
            mailSettings=mailSettings,
            sessions=sessions,
            messageLimit=options["message-limit"],
            events=events,
        )
        api.sseHeartbeat = options["sse-heartbeat"]
        # Streams are HTTP connections: never more than the listener takes.
        api.limitStreams(
            min(options["max-streams"], caps["http"]),
            min(options["max-streams-per-address"], perAddress),
            float(options["anonymous-stream-lifetime"]),
        )
        metrics.gauge("capture_live_listeners", "Clients waiting for new mail over HTTP (waits, "
                      "event streams, websockets), once per inbox, domain or account each "
                      "listens to.", api.liveListeners)
        webPages = WebPages(
            store,
            sessions,
            throttle,
            mailSettings=mailSettings,
            publicReadable=not options["require-key"],
            messageLimit=options["message-limit"],
        )
        site = MeteredSite(
            Root(webPages, api), metrics, accessLog=bool(options["access-log"]),
            requestFactory=BoundedRequest,
        )
        # HTTP bounds its own closing (the channel's abortTimeout).
        listen("http", "HTTP", site, closeTimeout=None)
    for name, listener in listeners:
        listener.setServiceParent(top)
        readiness.listener(name, listener.isBound)

    retention = Retention(
        publicInboxLimit=options["public-inbox-limit"],
        publicMaxAge=options["public-max-age"],
        messageLimit=options["message-limit"],
    )
    if options["retention-interval"]:
        TimerService(
            options["retention-interval"], _retentionPass, store, retention
        ).setServiceParent(top)
    # Last, so it runs once everything else has started.
    _FreezeStartupHeap().setServiceParent(top)
    return top


_LISTENER_OPTIONS = ("smtp", "smtps", "pop3", "pop3s", "imap", "imaps", "http")


def _connectionCaps(options: Options) -> dict[str, int]:
    """
    Each enabled listener's cap on connections at once: C{--max-connections}
    for the mail listeners, C{--max-http-connections} for HTTP, lowered in
    proportion when together they would not fit in the process's file
    descriptors with a reserve (after raising the soft limit to the hard
    one), so that one full listener never makes the others fail to accept.
    """
    wanted = {
        name: options["max-http-connections"] if name == "http" else options["max-connections"]
        for name in _LISTENER_OPTIONS
        if not _isOff(options[name])
    }
    descriptors = raiseDescriptorLimit()
    caps = fitCaps(wanted, descriptors)
    if caps != wanted:
        _log.warn(
            "Open file limit {limit}: connection caps lowered to {caps} so that they fit "
            "with {reserve} descriptors to spare (raise the limit, e.g. ulimit -n, to "
            "keep them)",
            limit=descriptors, caps=", ".join(f"{n} {c}" for n, c in caps.items()),
            reserve=DESCRIPTOR_RESERVE,
        )
    return caps


def _retentionPass(store: IMaintenanceStore, retention: Retention) -> Deferred[None]:
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
