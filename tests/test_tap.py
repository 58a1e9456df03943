"""
C{twistd capture} options (L{capture.tap.Options}) and the service tree
L{capture.tap.makeService} builds from them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from OpenSSL import SSL
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.testing import MemoryReactor
from twisted.python import usage

from capture import tap
from capture.smtp import SMTPFactory
from capture.tls import generateSelfSigned
from capture.webhooks import WebhookDispatcher
from tests.harness import CaptureServer

# A valid value for every parameter, as a person would type it, and what
# the parsed Options hold for it.
_PARAMETERS: dict[str, tuple[str, Any]] = {
    "data": ("/srv/capture/data", "/srv/capture/data"),
    "tls-dir": ("/srv/capture/tls", "/srv/capture/tls"),
    "smtp": ("tcp:2525", "tcp:2525"),
    "smtps": ("tcp:2465:interface=127.0.0.1", "tcp:2465:interface=127.0.0.1"),
    "http": ("tcp:8080:interface=127.0.0.1", "tcp:8080:interface=127.0.0.1"),
    "pop3": ("tcp:110", "tcp:110"),
    "pop3s": ("tcp:995:interface=127.0.0.1", "tcp:995:interface=127.0.0.1"),
    "imap": ("tcp:143", "tcp:143"),
    "imaps": ("tcp:993:interface=127.0.0.1", "tcp:993:interface=127.0.0.1"),
    "hostname": ("mail.example.com", "mail.example.com"),
    "max-message-size": ("10MB", 10_000_000),
    "max-recipients": ("7", 7),
    "max-line-length": ("2000", 2000),
    "max-connections": ("12", 12),
    "max-connections-per-address": ("7", 7),
    "max-http-connections": ("30", 30),
    "max-streams": ("20", 20),
    "max-streams-per-address": ("4", 4),
    "anonymous-stream-lifetime": ("1h", 3600),
    "max-ingest-memory": ("1GiB", 1024**3),
    "max-failed-logins": ("5", 5),
    "idle-timeout": ("90m", 90 * 60),
    "public-inbox-limit": ("0", 0),
    "public-max-age": ("12h", 12 * 3600),
    "message-limit": ("250", 250),
    "retention-interval": ("0", 0),
    "max-store-size": ("1GiB", 1024**3),
    "store-reserve": ("64MiB", 64 * 1024**2),
    "admin-account": ("root", "root"),
    "webhook-queue": ("50", 50),
    "webhook-timeout": ("2m", 120),
    "webhook-retries": ("0", 0),
    "webhook-allow": ("10.0.0.0/8,fd00::1", (ip_network("10.0.0.0/8"), ip_network("fd00::1"))),
    "webhook-deny": ("127.0.0.0/8, ::1", (ip_network("127.0.0.0/8"), ip_network("::1"))),
    "sse-heartbeat": ("2m", 120),
    "tls-handshake-timeout": ("3s", 3),
}
_FLAGS = [
    "accept-any-auth", "allow-insecure-auth", "allow-anonymous", "require-key", "no-metrics",
    "access-log",
]


@pytest.fixture(autouse=True)
def _cleanEnvironment(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    No C{CAPTURE_*} variable of the caller's environment leaks into these
    tests.
    """
    for name in list(os.environ):
        if name.startswith("CAPTURE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def directory() -> Iterator[Path]:
    """
    A fresh directory for --data and --tls-dir.
    """
    path = Path(tempfile.mkdtemp(prefix="capture-tap-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _parse(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(args))
    return options


def _usageError(*args: str) -> str:
    with pytest.raises(usage.UsageError) as raised:
        _parse(*args)
    message = str(raised.value)
    assert "\n" not in message, "twistd prints the error as one line"
    return message


# Defaults and the environment


def test_defaults() -> None:
    """
    With no options and no environment, Options hold the documented
    defaults, parsed into numbers.
    """
    options = _parse()
    assert {name: options[name] for name in _PARAMETERS} == {
        "data": "./capture-data",
        "tls-dir": "./tls",
        "smtp": "tcp:5587",
        "smtps": "tcp:5465",
        "http": "tcp:8025",
        "pop3": "tcp:1110",
        "pop3s": "tcp:1995",
        "imap": "tcp:1143",
        "imaps": "tcp:1993",
        "hostname": "localhost",
        "max-message-size": 25 * 1024 * 1024,
        "max-recipients": 100,
        "max-line-length": 1024 * 1024,
        "max-connections": 1000,
        "max-connections-per-address": 128,
        "max-http-connections": 1024,
        "max-streams": 512,
        "max-streams-per-address": 64,
        "anonymous-stream-lifetime": 600,
        "max-ingest-memory": 512 * 1024 * 1024,
        "max-failed-logins": 30,
        "idle-timeout": 300,
        "public-inbox-limit": 500,
        "public-max-age": 7 * 86400,
        "message-limit": 100000,
        "retention-interval": 60,
        "max-store-size": 0,
        "store-reserve": 16 * 1024**2,
        "admin-account": "admin",
        "webhook-queue": 10000,
        "webhook-timeout": 10,
        "webhook-retries": 5,
        "webhook-allow": (),
        "webhook-deny": (),
        "sse-heartbeat": 15,
        "tls-handshake-timeout": 10,
    }
    assert [options[flag] for flag in _FLAGS] == [0] * len(_FLAGS)


def test_tableCoversEveryOption() -> None:
    """
    The tables of this module name every parameter and flag Options has, so
    the environment tests below cover them all.
    """
    assert {str(p[0]) for p in tap.Options.optParameters} == set(_PARAMETERS)
    assert {str(f[0]) for f in tap.Options.optFlags} == set(_FLAGS)


@pytest.mark.parametrize("name", sorted(_PARAMETERS))
def test_parameterFromEnvironment(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """
    Every parameter is read from C{CAPTURE_<NAME>} (upper case, dashes as
    underscores) and parsed like its command-line form.
    """
    text, expected = _PARAMETERS[name]
    monkeypatch.setenv("CAPTURE_" + name.upper().replace("-", "_"), text)
    assert _parse()[name] == expected


def test_allParametersFromEnvironmentAtOnce(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    All parameters set from the environment together give the same options
    as the command line.
    """
    for name, (text, _) in _PARAMETERS.items():
        monkeypatch.setenv("CAPTURE_" + name.upper().replace("-", "_"), text)
    fromEnvironment = _parse()
    monkeypatch.undo()
    fromCommandLine = _parse(*[a for n, (t, _) in _PARAMETERS.items() for a in (f"--{n}", t)])
    assert {n: fromEnvironment[n] for n in _PARAMETERS} == {
        n: fromCommandLine[n] for n in _PARAMETERS
    } == {n: expected for n, (_, expected) in _PARAMETERS.items()}


@pytest.mark.parametrize("flag", _FLAGS)
@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "TRUE", " Yes ", "On"])
def test_flagOnFromEnvironment(monkeypatch: pytest.MonkeyPatch, flag: str, value: str) -> None:
    """
    A flag is switched on by C{CAPTURE_<FLAG>} set to 1, true, yes or on,
    in any case.
    """
    monkeypatch.setenv("CAPTURE_" + flag.upper().replace("-", "_"), value)
    options = _parse()
    assert options[flag] == 1
    assert [options[f] for f in _FLAGS if f != flag] == [0] * (len(_FLAGS) - 1)


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "", "OFF"])
def test_flagOffFromEnvironment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """
    C{CAPTURE_<FLAG>} set to 0, false, no, off or nothing leaves the flag
    off.
    """
    monkeypatch.setenv("CAPTURE_ALLOW_ANONYMOUS", value)
    assert _parse()["allow-anonymous"] == 0


def test_flagGarbageFromEnvironment(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A flag variable that is neither on nor off is a usage error naming the
    variable, not silently off.
    """
    monkeypatch.setenv("CAPTURE_ALLOW_ANONYMOUS", "maybe")
    message = _usageError()
    assert "CAPTURE_ALLOW_ANONYMOUS" in message and "'maybe'" in message


def test_flagOnCommandLineWithEnvironmentOff(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A flag given on the command line is on whatever the environment says.
    """
    monkeypatch.setenv("CAPTURE_ALLOW_ANONYMOUS", "0")
    assert _parse("--allow-anonymous")["allow-anonymous"] == 1


def test_commandLineOverridesEnvironment(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An option on the command line wins over its environment variable; the
    others still come from the environment.
    """
    monkeypatch.setenv("CAPTURE_HOSTNAME", "env.example")
    monkeypatch.setenv("CAPTURE_MAX_MESSAGE_SIZE", "1MiB")
    monkeypatch.setenv("CAPTURE_SMTP", "tcp:2525")
    options = _parse("--hostname", "cli.example", "--max-message-size", "2MiB")
    assert options["hostname"] == "cli.example"
    assert options["max-message-size"] == 2 * 1024 * 1024
    assert options["smtp"] == "tcp:2525"


def test_commandLineFixesBadEnvironment(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A bad value in the environment does not matter when the command line
    overrides it.
    """
    monkeypatch.setenv("CAPTURE_IDLE_TIMEOUT", "0")
    assert _parse("--idle-timeout", "30")["idle-timeout"] == 30


# Units


@pytest.mark.parametrize(
    "text, octets",
    [
        ("25MiB", 25 * 1024**2),
        ("1k", 1024),
        ("1K", 1024),
        ("1kb", 1000),
        ("10MB", 10_000_000),
        ("10M", 10 * 1024**2),
        ("2GiB", 2 * 1024**3),
        ("1048576", 1048576),
        (" 64 KiB ", 64 * 1024),
    ],
)
def test_sizes(text: str, octets: int) -> None:
    """
    Sizes take binary (k, M, KiB, MiB, GiB) and decimal (kB, MB, GB) units,
    or none.
    """
    assert tap.parseSize(text) == octets
    assert _parse("--max-store-size", text)["max-store-size"] == octets


@pytest.mark.parametrize(
    "text, seconds",
    [("4d", 4 * 86400), ("12h", 12 * 3600), ("90m", 90 * 60), ("3600", 3600),
     ("45s", 45), ("1w", 7 * 86400), ("2H", 7200)],
)
def test_durations(text: str, seconds: int) -> None:
    """
    Durations take s, m, h, d, w, or plain seconds.
    """
    assert tap.parseDuration(text) == seconds
    assert _parse("--public-max-age", text)["public-max-age"] == seconds


@pytest.mark.parametrize(
    "option, value",
    [
        ("--max-message-size", "lots"),
        ("--max-message-size", "10XB"),
        ("--max-message-size", "-5MiB"),
        ("--max-line-length", "1.5k"),
        ("--max-store-size", "big"),
        ("--idle-timeout", "5 minutes"),
        ("--public-max-age", "1y"),
        ("--retention-interval", "-1"),
        ("--max-recipients", "ten"),
        ("--max-connections", "1e3"),
        ("--public-inbox-limit", "-1"),
        ("--message-limit", ""),
        ("--webhook-queue", "many"),
        ("--webhook-queue", "-1"),
        ("--webhook-timeout", "1.5"),
        ("--webhook-timeout", "soon"),
        ("--webhook-retries", "-1"),
        ("--webhook-retries", "3x"),
        ("--webhook-allow", "10.0.0.0/33"),
        ("--webhook-deny", "localhost"),
    ],
)
def test_unparsableValues(option: str, value: str) -> None:
    """
    A value that is not a size, duration or count is a usage error naming
    the option and the value.
    """
    message = _usageError(option, value)
    assert message.startswith(f"{option}: ") and repr(value) in message


def test_errorFromEnvironmentNamesVariable(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    When the bad value came from the environment, the error names the
    variable too, so a container's configuration can be found.
    """
    monkeypatch.setenv("CAPTURE_MAX_MESSAGE_SIZE", "huge")
    message = _usageError()
    assert message.startswith("--max-message-size (from CAPTURE_MAX_MESSAGE_SIZE): ")
    monkeypatch.setenv("CAPTURE_MAX_MESSAGE_SIZE", "1k")
    monkeypatch.setenv("CAPTURE_IDLE_TIMEOUT", "0s")
    assert _usageError().startswith("--idle-timeout (from CAPTURE_IDLE_TIMEOUT): ")
    assert _usageError("--idle-timeout", "0m").startswith("--idle-timeout: ")


# Limits


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--idle-timeout", "0", "more than 0"),
        ("--idle-timeout", "0s", "more than 0"),
        ("--max-message-size", "1023", "at least 1KiB"),
        ("--max-message-size", "0", "at least 1KiB"),
        ("--max-line-length", "999", "at least 1000"),
        ("--max-line-length", "0", "at least 1000"),
        ("--max-connections", "0", "at least 1"),
        ("--max-recipients", "0", "at least 1"),
        ("--max-ingest-memory", "74MiB", "at least --max-message-size × 3"),
        ("--max-failed-logins", "0", "at least 1"),
        ("--webhook-queue", "0", "at least 1"),
        ("--webhook-timeout", "0", "more than 0"),
        ("--webhook-timeout", "0s", "more than 0"),
        ("--sse-heartbeat", "0", "at least 1 second"),
    ],
)
def test_limitsTooLow(option: str, value: str, words: str) -> None:
    """
    Limits below what can work are usage errors naming the option: an idle
    timeout of 0 would drop every client at once, a message size under
    1 KiB or a line length under RFC 5321's 1000 octets refuses ordinary
    mail, and no connection or recipient at all serves nobody.
    """
    message = _usageError(option, value)
    assert message.startswith(f"{option}: ") and words in message


@pytest.mark.parametrize(
    "option, value, parsed",
    [
        ("--idle-timeout", "1", 1),
        ("--max-message-size", "1KiB", 1024),
        ("--max-message-size", "1k", 1024),
        ("--max-line-length", "1000", 1000),
        ("--max-connections", "1", 1),
        ("--max-recipients", "1", 1),
        ("--webhook-queue", "1", 1),
        ("--webhook-timeout", "1", 1),
        ("--webhook-retries", "0", 0),
    ],
)
def test_limitsAtMinimum(option: str, value: str, parsed: int) -> None:
    """
    Each limit's smallest allowed value is accepted.
    """
    assert _parse(option, value)[option[2:]] == parsed


# Host name


@pytest.mark.parametrize(
    "given, used",
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.Example", "xn--bcher-kva.example"),
        ("☃.net", "xn--n3h.net"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("Mail.Example.COM", "mail.example.com"),
        ("mail.example.com.", "mail.example.com"),
        ("localhost", "localhost"),
        ("a-b.c1", "a-b.c1"),
        ("127.0.0.1", "127.0.0.1"),
        ("x" * 63 + ".example", "x" * 63 + ".example"),
        (".".join(["a" * 63] * 3 + ["b" * 61]), ".".join(["a" * 63] * 3 + ["b" * 61])),
    ],
)
def test_hostnameAccepted(given: str, used: str) -> None:
    """
    A host name is kept in lower case without a final dot; an
    internationalized one is turned into its A-label, which is what the
    greeting, C{Received:} lines and the certificate then use.  Labels of
    63 characters and names of 253 are the longest allowed.
    """
    assert _parse("--hostname", given)["hostname"] == used


def test_hostnameFromEnvironmentConverted(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An internationalized host name from the environment is converted too.
    """
    monkeypatch.setenv("CAPTURE_HOSTNAME", "bücher.example")
    assert _parse()["hostname"] == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "given, words",
    [
        ("a..b", "empty label"),
        (".example", "empty label"),
        (".", "empty label"),
        ("", "cannot be empty"),
        ("mail example", "only letters, digits and hyphens"),
        (" localhost", "only letters, digits and hyphens"),
        ("under_score.example", "only letters, digits and hyphens"),
        ("-lead.example", "cannot start or end with a hyphen"),
        ("trail-.example", "cannot start or end with a hyphen"),
        ("mail@example.com", "only letters, digits and hyphens"),
        ("::1", "only letters, digits and hyphens"),
        ("x" * 64 + ".example", "longer than 63"),
        ("ü" * 60 + ".example", "internationalized label"),
        (".".join(["a" * 63] * 3 + ["b" * 62]), "at most 253"),
        ("xn--zzzz.example", "not a valid A-label"),
    ],
)
def test_hostnameRejected(given: str, words: str) -> None:
    """
    What is not a host name is a usage error naming C{--hostname} and
    saying what is wrong.
    """
    message = _usageError("--hostname", given)
    assert message.startswith("--hostname: ") and words in message


# Listeners


@pytest.mark.parametrize("value", ["none", "off", "NONE", "Off", ""])
def test_listenerOff(value: str) -> None:
    """
    C{none} or C{off} (any case, or empty) switches a listener off.
    """
    options = _parse("--smtp", value, "--smtps", value)
    assert options["smtp"] == options["smtps"] == value


@pytest.mark.parametrize(
    "value",
    ["tcp:0", "tcp:2525:interface=127.0.0.1", "tcp6:2525:interface=\\:\\:1",
     "unix:/tmp/capture-test.sock", "tls:./tls:2465"],
)
def test_listenerAccepted(value: str) -> None:
    """
    Endpoint strings Twisted parses are accepted unchanged, without
    listening (the tls: endpoint reads its directory only when it listens).
    """
    options = _parse("--smtp", value, "--smtps", value)
    assert options["smtp"] == options["smtps"] == value


@pytest.mark.parametrize("option", ["--smtp", "--smtps"])
@pytest.mark.parametrize(
    "value, words",
    [
        ("tcp:abc", "is not a listener"),
        ("tcp", "is not a listener"),
        ("5587", "Unknown endpoint type"),
        ("bogus:25", "Unknown endpoint type"),
        ("tcp:25:color=blue", "is not a listener"),
        ("ssl:465:privateKey=/nonexistent/key.pem", "No such file"),
        ("tcp:70000", "not between 0 and 65535"),
    ],
)
def test_listenerRejected(option: str, value: str, words: str) -> None:
    """
    A listener description that does not parse is a usage error naming the
    option and the description, with Twisted's reason.
    """
    message = _usageError(option, value)
    assert message.startswith(f"{option}: {value!r}") and words in message


def test_listenerFromEnvironmentRejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A bad listener from the environment names the variable.
    """
    monkeypatch.setenv("CAPTURE_SMTPS", "tcp:nope")
    assert _usageError().startswith("--smtps (from CAPTURE_SMTPS): 'tcp:nope'")


# makeService


def _build(directory: Path, *args: str) -> list[Any]:
    options = _parse(
        "--data", str(directory / "data"), "--tls-dir", str(directory / "tls"), *args
    )
    service = tap.makeService(options, MemoryReactor())
    assert isinstance(service, MultiService)
    return list(service)


def _factories(services: list[Any]) -> list[SMTPFactory]:
    factories = []
    for service in services:
        if isinstance(service, tap._Listener) and service._label.startswith("SMTP"):
            assert isinstance(service._factory, SMTPFactory)
            factories.append(service._factory)
    return factories


def test_makeServiceWithoutListeners(directory: Path) -> None:
    """
    With both listeners C{none}, the service tree has the store and
    retention and no listener; the store and certificate are made.
    """
    services = _build(directory, "--smtp", "none", "--smtps", "off", "--http", "none",
                      "--pop3", "none", "--pop3s", "off", "--imap", "none", "--imaps", "off")
    assert [type(s) for s in services] == [
        tap._StoreService, WebhookDispatcher, TimerService, tap._FreezeStartupHeap,
    ]
    assert (directory / "data").is_dir()
    assert (directory / "tls" / "localhost.pem").is_file()


def test_makeServiceWithoutRetention(directory: Path) -> None:
    """
    C{--retention-interval 0} leaves retention out of the tree.
    """
    services = _build(directory, "--smtp", "none", "--smtps", "none", "--http", "none",
                      "--pop3", "none", "--pop3s", "none", "--imap", "none", "--imaps", "none",
                      "--retention-interval", "0")
    assert [type(s) for s in services] == [
        tap._StoreService, WebhookDispatcher, tap._FreezeStartupHeap,
    ]


def test_startupHeapFrozen() -> None:
    """
    The last service to start freezes the heap: what exists then is out of
    the cyclic collector's sight.
    """
    import gc

    gc.unfreeze()
    before = gc.get_freeze_count()
    service = tap._FreezeStartupHeap()
    service.startService()
    try:
        assert gc.get_freeze_count() > before
        assert service.running
    finally:
        gc.unfreeze()


def test_makeServiceListenersUseOptions(directory: Path) -> None:
    """
    Each listener gets an SMTP factory with the parsed settings (A-label
    host name included); the generated certificate names the A-label.
    """
    services = _build(
        directory, "--smtp", "tcp:0:interface=127.0.0.1", "--smtps", "tcp:0:interface=127.0.0.1",
        "--hostname", "bücher.example", "--max-message-size", "1MiB", "--idle-timeout", "2m",
    )
    listeners = [s for s in services if isinstance(s, tap._Listener)]
    assert [s._label for s in listeners] == [
        "SMTP (STARTTLS)", "SMTPS (implicit TLS)", "POP3 (STLS)", "POP3S (implicit TLS)",
        "IMAP (STARTTLS)", "IMAPS (implicit TLS)", "HTTP",
    ]
    factories = _factories(services)
    for factory in factories:
        assert factory.settings.hostname == "xn--bcher-kva.example"
        assert factory.settings.maxMessageSize == 1024 * 1024
        assert factory.settings.idleTimeout == 120.0
    with open(directory / "tls" / "localhost.pem", "rb") as f:
        certificate = x509.load_pem_x509_certificate(f.read())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "xn--bcher-kva.example" in names.get_values_for_type(x509.DNSName)


def test_makeServicePrefersHostnamePEM(directory: Path) -> None:
    """
    The A-label names the PEM file looked for: C{xn--bcher-kva.example.pem}
    is used over C{localhost.pem}.
    """
    (directory / "tls").mkdir()
    generateSelfSigned(str(directory / "tls" / "localhost.pem"), [])
    generateSelfSigned(str(directory / "tls" / "xn--bcher-kva.example.pem"),
                       ["xn--bcher-kva.example"])
    services = _build(directory, "--smtp", "tcp:0", "--smtps", "none",
                      "--hostname", "BÜCHER.example")
    [factory] = _factories(services)
    served = SSL.Connection(factory.tlsOptions.getContext(), None).get_certificate()
    assert served is not None
    with open(directory / "tls" / "xn--bcher-kva.example.pem", "rb") as f:
        expected = x509.load_pem_x509_certificate(f.read())
    assert served.to_cryptography() == expected


def test_makeServiceBrokenCertificate(directory: Path) -> None:
    """
    An unusable PEM file stops makeService with one line (SystemExit)
    naming the file, not a traceback.
    """
    (directory / "tls").mkdir()
    (directory / "tls" / "localhost.pem").write_text("not a certificate\n")
    with pytest.raises(SystemExit) as raised:
        _build(directory, "--smtp", "none", "--smtps", "none")
    message = str(raised.value.code)
    assert message.startswith("capture: ") and "localhost.pem" in message
    assert "\n" not in message


# The real twistd


def test_twistdBadHostnameExits(directory: Path) -> None:
    """
    C{twistd capture --hostname bad..name} exits non-zero before
    listening, printing one line that names the option and the problem,
    and no traceback.
    """
    server = CaptureServer(directory=str(directory), extra=["--hostname", "bad..name"])
    with pytest.raises(RuntimeError) as raised:
        server.start()
    assert server.process is not None and server.process.returncode not in (0, None)
    log = server.log()
    lines = [line for line in log.splitlines() if "--hostname: 'bad..name'" in line]
    assert len(lines) == 1, log
    assert lines[0].endswith("--hostname: 'bad..name' is not a host name: it has an empty label")
    assert "Traceback" not in log and "listening on" not in log
    assert "bad..name" in str(raised.value)


def test_twistdBadListenerExits(directory: Path) -> None:
    """
    A listener description that does not parse stops twistd with one line
    naming the option.
    """
    server = CaptureServer(directory=str(directory), extra=["--smtps", "tcp:port"])
    with pytest.raises(RuntimeError):
        server.start()
    log = server.log()
    assert [line for line in log.splitlines() if "--smtps: 'tcp:port' is not a listener" in line]
    assert "Traceback" not in log


def test_twistdInternationalHostname(directory: Path) -> None:
    """
    A server started with an internationalized host name greets with its
    A-label.
    """
    server = CaptureServer(directory=str(directory), extra=["--hostname", "bücher.example"])
    server.start()
    try:
        raw = server.raw()
        assert raw.greeting == b"220 xn--bcher-kva.example ESMTP Capture ready"
        raw.close()
    finally:
        server.stop()


def test_makeServiceWebhookOptions(directory: Path) -> None:
    """
    The webhook dispatcher is in the tree, after the store (so it stops
    first), with the parsed queue bound, timeout and retries.
    """
    services = _build(directory, "--smtp", "none", "--smtps", "none", "--http", "none",
                      "--imap", "none", "--imaps", "none",
                      "--webhook-queue", "7", "--webhook-timeout", "3", "--webhook-retries", "1")
    [dispatcher] = [s for s in services if isinstance(s, WebhookDispatcher)]
    assert services.index(dispatcher) == 1
    assert (dispatcher._queueLimit, dispatcher._timeout, dispatcher._retries) == (7, 3.0, 1)


def _listening(directory: Path, *args: str) -> tuple[MemoryReactor, dict[str, Any]]:
    """
    Build the service tree on a memory reactor and start its listeners:
    the reactor's C{tcpServers} then hold what each really asked for.
    """
    reactor = MemoryReactor()
    options = _parse(
        "--data", str(directory / "data"), "--tls-dir", str(directory / "tls"), *args
    )
    service = tap.makeService(options, reactor)
    listeners = {s.option: s for s in service if isinstance(s, tap._Listener)}
    for listener in listeners.values():
        listener.privilegedStartService()
    return reactor, listeners


def test_listenBacklogDefault(directory: Path) -> None:
    """
    Every tcp: listener, implicit TLS included, listens with a backlog of
    1024 (Twisted's 50 left most of a 900-connect burst waiting).
    """
    reactor, _ = _listening(directory)
    backlogs = {port: backlog for port, _, backlog, _ in reactor.tcpServers}
    assert backlogs == {
        5587: 1024, 5465: 1024, 1110: 1024, 1995: 1024, 1143: 1024, 1993: 1024, 8025: 1024,
    }


def test_listenBacklogGiven(directory: Path) -> None:
    """
    An endpoint that says its backlog keeps it.
    """
    reactor, _ = _listening(directory, "--smtp", "tcp:2525:backlog=7", "--imaps",
                            "tcp:1993:backlog=9")
    backlogs = {port: backlog for port, _, backlog, _ in reactor.tcpServers}
    assert backlogs[2525] == 7
    assert backlogs[1993] == 9
    assert backlogs[5465] == 1024


def test_connectionCaps(directory: Path) -> None:
    """
    Each listener counts its connections against its cap and the cap per
    address.
    """
    _, listeners = _listening(directory, "--max-connections", "40",
                              "--max-connections-per-address", "5",
                              "--max-http-connections", "60")
    limits = {name: (s.slots.limit, s.slots.perAddress) for name, s in listeners.items()}
    assert limits == {name: (40, 5) for name in ("smtp", "smtps", "pop3", "pop3s", "imap",
                                                  "imaps")} | {"http": (60, 5)}


def test_connectionCapsFitTheDescriptors(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    When the caps together do not fit in the open file limit with the
    reserve, they are lowered in proportion (and that is logged).
    """
    monkeypatch.setattr(tap, "raiseDescriptorLimit", lambda: 1024)
    _, listeners = _listening(directory, "--max-connections", "1000",
                              "--max-http-connections", "1000")
    limits = {name: listener.slots.limit for name, listener in listeners.items()}
    assert set(limits.values()) == {(1024 - 256) // 7}
    assert sum(limits.values()) + 256 <= 1024
