"""
Connection lifecycle on every listener of the real server (issue 10,
items 2 and 3): connections that never finish TLS are dropped at the
handshake deadline, and every session closes its socket at QUIT/LOGOUT and
at the idle timeout, TLS or not, even when the client never answers TLS's
C{close_notify}.

The TLS client here is an L{ssl.SSLObject} over memory BIOs on a raw
socket, so the test decides what is sent (nothing, a lone ClientHello, no
C{close_notify}) and sees the raw socket's end (FIN, reset or still open).
"""

from __future__ import annotations

import os
import selectors
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import CaptureServer

_HANDSHAKE = 1
_IDLE = 3

# listener -> (greeting prefix, the command that starts TLS and its answer)
_STARTTLS = {
    "smtp": (b"220 ", [(b"EHLO client.test", b"250 "), (b"STARTTLS", b"220 ")]),
    "pop3": (b"+OK", [(b"STLS", b"+OK")]),
    "imap": (b"* OK", [(b"a STARTTLS", b"a OK")]),
}
_GREETING = {"smtp": b"220 ", "smtps": b"220 ", "pop3": b"+OK", "pop3s": b"+OK",
             "imap": b"* OK", "imaps": b"* OK"}
_QUIT = {"smtp": (b"QUIT", b"221 "), "pop3": (b"QUIT", b"+OK"), "imap": (b"z LOGOUT", b"z OK")}
_IDLE_LINE = {"smtp": b"421 4.4.2", "pop3": b"-ERR Idle for too long", "imap": b"* BYE"}


@pytest.fixture(scope="module")
def quick() -> Iterator[CaptureServer]:
    running = CaptureServer(extra=[
        "--tls-handshake-timeout", f"{_HANDSHAKE}s", "--idle-timeout", f"{_IDLE}s",
    ]).start()
    yield running
    running.stop()


class Peer:
    """
    A raw socket that may speak TLS through memory BIOs.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.tls: ssl.SSLObject | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.buffer = b""

    def startTLS(self, context: ssl.SSLContext) -> None:
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self._flush()

    def clientHelloOnly(self, context: ssl.SSLContext) -> None:
        tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        self.sock.sendall(self.outgoing.read())

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.incoming.write(data)

    def send(self, line: bytes) -> None:
        if self.tls is None:
            self.sock.sendall(line + b"\r\n")
        else:
            self.tls.write(line + b"\r\n")
            self._flush()

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if self.tls is None:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; buffered {self.buffer!r}")
                self.buffer += chunk
                continue
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._fill()
                continue
            if not chunk:
                raise ConnectionError(f"TLS closed; buffered {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def expect(self, prefix: bytes) -> bytes:
        """
        The next line starting with C{prefix}, skipping others (multi-line
        replies, untagged IMAP lines).
        """
        while True:
            line = self.line()
            if line.startswith(prefix):
                return line

    def end(self, within: float) -> tuple[str, float]:
        """
        How the raw socket ends within C{within} seconds, without ever
        answering the server's C{close_notify}: C{"fin"}, C{"reset"} or
        C{"open"}, and the seconds it took.
        """
        start = time.monotonic()
        self.sock.settimeout(0.2)
        while time.monotonic() - start < within:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return "reset", time.monotonic() - start
            if not data:
                return "fin", time.monotonic() - start
        return "open", time.monotonic() - start

    def close(self) -> None:
        self.sock.close()


def _served(server: CaptureServer) -> None:
    """
    The next client is served: a message goes through STARTTLS + AUTH.
    """
    with server.smtp() as client:
        client.sendmail("from@sender.test", ["next@public.test"], b"Subject: next\r\n\r\nok\r\n")


# Item 2: the TLS handshake has a deadline


@pytest.mark.parametrize("name", ["smtps", "pop3s", "imaps"])
def test_implicitTLSSilentDropped(quick: CaptureServer, name: str) -> None:
    peer = Peer(quick.ports[name])
    try:
        how, _ = peer.end(_HANDSHAKE + 4)
    finally:
        peer.close()
    assert how in ("fin", "reset")


@pytest.mark.parametrize("name", ["smtps", "pop3s", "imaps"])
def test_implicitTLSClientHelloOnlyDropped(quick: CaptureServer, name: str) -> None:
    peer = Peer(quick.ports[name])
    try:
        peer.clientHelloOnly(quick.tlsContext())
        # The server answers the hello; the client never finishes.
        how, _ = peer.end(_HANDSHAKE + 4)
    finally:
        peer.close()
    assert how in ("fin", "reset")


@pytest.mark.parametrize("name", sorted(_STARTTLS))
def test_startTLSThenSilenceDropped(quick: CaptureServer, name: str) -> None:
    greeting, steps = _STARTTLS[name]
    peer = Peer(quick.ports[name])
    try:
        peer.expect(greeting)
        for command, answer in steps:
            peer.send(command)
            peer.expect(answer)
        how, _ = peer.end(_HANDSHAKE + 4)
    finally:
        peer.close()
    assert how in ("fin", "reset")
    _served(quick)


def test_handshakeDeadlineFreesTheListener() -> None:
    """
    With C{--max-connections 3}, three connections that never handshake
    fill SMTPS; once the deadline drops them, a real client is served.
    """
    server = CaptureServer(extra=["--tls-handshake-timeout", "1s", "--max-connections", "3"])
    server.start()
    try:
        stuck = [Peer(server.ports["smtps"]) for _ in range(3)]
        time.sleep(0.3)
        refused = Peer(server.ports["smtps"])
        refused.startTLS(server.tlsContext())
        assert refused.line() == b"421 4.7.0 Too many connections, try again later"
        refused.close()
        for peer in stuck:
            assert peer.end(5)[0] in ("fin", "reset")
            peer.close()
        with server.smtps() as client:
            client.sendmail("a@sender.test", ["after@public.test"], b"Subject: x\r\n\r\nok\r\n")
    finally:
        server.stop()


# Item 3: every listener closes at QUIT/LOGOUT and at the idle timeout


def _open(server: CaptureServer, name: str, tls: bool) -> Peer:
    """
    A session on listener C{name}, over TLS (implicit, or upgraded with
    STARTTLS/STLS) when C{tls}, greeted.
    """
    peer = Peer(server.ports[name])
    if name.endswith("s"):
        peer.startTLS(server.tlsContext())
        peer.expect(_GREETING[name])
        return peer
    greeting, steps = _STARTTLS[name]
    peer.expect(greeting)
    if tls:
        for command, answer in steps:
            peer.send(command)
            peer.expect(answer)
        peer.startTLS(server.tlsContext())
    return peer


_SESSIONS = [
    ("smtp", False), ("smtp", True), ("smtps", True),
    ("pop3", False), ("pop3", True), ("pop3s", True),
    ("imap", False), ("imap", True), ("imaps", True),
]


@pytest.mark.parametrize(("name", "tls"), _SESSIONS)
def test_closedAtQuit(quick: CaptureServer, name: str, tls: bool) -> None:
    command, answer = _QUIT[name.rstrip("s") if name != "smtps" else "smtp"]
    peer = _open(quick, name, tls)
    try:
        peer.send(command)
        peer.expect(answer)
        how, _ = peer.end(6)
    finally:
        peer.close()
    assert how == "fin"
    _served(quick)


@pytest.mark.parametrize(("name", "tls"), _SESSIONS)
def test_closedAtIdleTimeout(quick: CaptureServer, name: str, tls: bool) -> None:
    protocol = "smtp" if name.startswith("smtp") else name[:4]
    peer = _open(quick, name, tls)
    try:
        assert peer.expect(_IDLE_LINE[protocol]).startswith(_IDLE_LINE[protocol])
        how, _ = peer.end(6)
    finally:
        peer.close()
    assert how == "fin"
    _served(quick)


def test_pop3sQuitFreesTheListener() -> None:
    """
    The issue's case: POP3S sessions ended with QUIT used to stay open and
    fill the listener.  With C{--max-connections 2}, two sessions that quit
    (and never answer C{close_notify}) leave room for a third.
    """
    server = CaptureServer(extra=["--max-connections", "2"])
    server.start()
    try:
        for _ in range(2):
            peer = _open(server, "pop3s", True)
            peer.send(b"QUIT")
            peer.expect(b"+OK")
            assert peer.end(6)[0] == "fin"
            peer.close()
        peer = _open(server, "pop3s", True)
        peer.send(b"CAPA")
        assert peer.line() == b"+OK Capability list follows"
        peer.close()
    finally:
        server.stop()


def test_smtplibStillQuitsCleanly(quick: CaptureServer) -> None:
    """
    A client that does answer C{close_notify} (smtplib over SMTPS) sees an
    ordinary QUIT.
    """
    client = smtplib.SMTP_SSL("localhost", quick.ports["smtps"], timeout=10,
                              context=quick.tlsContext())
    assert client.noop()[0] == 250
    assert client.quit()[0] == 221


# Item 19: a busy port is one line naming the option


@pytest.mark.parametrize("name", ["smtp", "imaps", "http"])
def test_busyPortIsOneLine(tmp_path: Any, name: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        args = [os.path.join(os.path.dirname(sys.executable), "twistd"), "-n", "--pidfile=",
                "capture", "--data", str(tmp_path / "data"), "--tls-dir", str(tmp_path / "tls")]
        for listener in ("smtp", "smtps", "pop3", "pop3s", "imap", "imaps", "http"):
            where = f"tcp:{port}:interface=127.0.0.1" if listener == name else (
                "tcp:0:interface=127.0.0.1")
            args += [f"--{listener}", where]
        result = subprocess.run(args, capture_output=True, text=True, timeout=60,
                                cwd=str(tmp_path))
    finally:
        taken.close()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    problems = [line for line in output.splitlines() if "capture: --" in line]
    assert len(problems) == 1
    assert problems[0].endswith(
        f"capture: --{name} tcp:{port}:interface=127.0.0.1: address already in use"
    )


# Item 5: a cap per client address on every listener

_ADDRESS_REFUSAL = {
    "smtp": b"421 4.7.0 Too many connections from your address, try again later",
    "pop3": b"-ERR [SYS/TEMP] Too many connections from your address, try again later",
    "imap": b"* BYE Too many connections from your address, try again later",
}


def _from(server: CaptureServer, name: str, source: str) -> Peer:
    peer = Peer.__new__(Peer)
    peer.sock = socket.create_connection(("127.0.0.1", server.ports[name]), timeout=10,
                                         source_address=(source, 0))
    peer.tls = None
    peer.incoming = ssl.MemoryBIO()
    peer.outgoing = ssl.MemoryBIO()
    peer.buffer = b""
    if name.endswith("s"):
        peer.startTLS(server.tlsContext())
    return peer


@pytest.fixture(scope="module")
def perAddress() -> Iterator[CaptureServer]:
    running = CaptureServer(extra=["--max-connections-per-address", "2"]).start()
    yield running
    running.stop()


@pytest.mark.parametrize("name", ["smtp", "smtps", "pop3", "pop3s", "imap", "imaps"])
def test_capPerAddress(perAddress: CaptureServer, name: str) -> None:
    protocol = "smtp" if name.startswith("smtp") else name[:4]
    held = [_from(perAddress, name, "127.0.0.1") for _ in range(2)]
    for peer in held:
        peer.expect(_GREETING[name])
    refused = _from(perAddress, name, "127.0.0.1")
    assert refused.line() == _ADDRESS_REFUSAL[protocol]
    assert refused.end(6)[0] == "fin"
    refused.close()
    # Another client address is served meanwhile.
    other = _from(perAddress, name, "127.0.0.2")
    other.expect(_GREETING[name])
    other.close()
    # A slot given back is taken again.
    held.pop().close()
    deadline = time.monotonic() + 10
    while True:
        again = _from(perAddress, name, "127.0.0.1")
        line = again.line()
        again.close()
        if line.startswith(_GREETING[name]) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert line.startswith(_GREETING[name])
    for peer in held:
        peer.close()


def test_capPerAddressKeepsMailFlowing(perAddress: CaptureServer) -> None:
    """
    One address holding its share of SMTP does not stop it taking mail
    from another address, and nothing it sent before is lost.
    """
    with perAddress.smtp() as client:
        client.sendmail("a@sender.test", ["kept@public.test"], b"Subject: kept\r\n\r\nok\r\n")
    held = [_from(perAddress, "smtp", "127.0.0.3") for _ in range(2)]
    for peer in held:
        peer.expect(b"220 ")
    _served(perAddress)
    for peer in held:
        peer.close()
    import json
    import urllib.request

    with urllib.request.urlopen(
        f"http://127.0.0.1:{perAddress.ports['http']}/api/addresses/kept@public.test/messages"
    ) as answer:
        assert [m["subject"] for m in json.load(answer)] == ["kept"]


def test_burstOfConnects(quick: CaptureServer) -> None:
    """
    300 connects at once (from a few loopback addresses, inside the cap per
    address) are all greeted within 10 seconds: the backlog takes the
    burst.  At Twisted's default backlog of 50, 114 of them were still not
    greeted after 20 s here (their handshakes dropped and retried); with
    1024, all were greeted in 0.04 s.
    """
    sockets = []
    selector = selectors.DefaultSelector()
    try:
        for n in range(300):
            sock = socket.socket()
            sock.bind((f"127.0.0.{10 + n % 5}", 0))
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", quick.ports["smtp"]))
            except BlockingIOError:
                pass
            sockets.append(sock)
            selector.register(sock, selectors.EVENT_READ)
        greeted = 0
        deadline = time.monotonic() + 10
        while greeted < len(sockets) and time.monotonic() < deadline:
            for key, _ in selector.select(0.5):
                selector.unregister(key.fileobj)
                assert key.fileobj.recv(100).startswith(b"220 ")  # type: ignore[union-attr]
                greeted += 1
        assert greeted == len(sockets)
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
