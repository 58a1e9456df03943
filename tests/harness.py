"""
Start a real Capture server for tests: C{twistd -n capture} in a child
process, on loopback with ephemeral ports and a temporary data directory.

The server logs the address each listener got and the first account's API
key; L{CaptureServer} reads them from its log, exactly as a person would.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from typing import Any

_LISTEN_RE = re.compile(
    r"(SMTP \(STARTTLS\)|SMTPS \(implicit TLS\)|POP3 \(STLS\)|POP3S \(implicit TLS\)"
    r"|IMAP \(STARTTLS\)|IMAPS \(implicit TLS\)|HTTP)"
    r" listening on ([^\s:]+):(\d+)"
)
_LABELS = {
    "SMTP (STARTTLS)": "smtp", "SMTPS (implicit TLS)": "smtps", "POP3 (STLS)": "pop3",
    "POP3S (implicit TLS)": "pop3s", "IMAP (STARTTLS)": "imap", "IMAPS (implicit TLS)": "imaps",
    "HTTP": "http",
}
_LISTENERS = ("smtp", "smtps", "pop3", "pop3s", "imap", "imaps", "http")
_KEY_RE = re.compile(r"Created account (\S+); its API key \(shown this once\): (k_\w+)")


class CaptureServer:
    """
    One running Capture process.

    @ivar ports: Listener label (C{"smtp"}, C{"smtps"}) to port number.
    @ivar key: The API key of the first account (C{admin}), when this start
        created it.
    """

    def __init__(self, directory: str | None = None, extra: list[str] | None = None,
                 env: dict[str, str] | None = None, daemon: bool = False,
                 openFiles: int | None = None) -> None:
        """
        @param openFiles: The server's open-file limit (soft and hard), to
            test what it does when descriptors run short.
        """
        self.directory = directory or tempfile.mkdtemp(prefix="capture-test-")
        self.data = os.path.join(self.directory, "data")
        self.tlsDir = os.path.join(self.directory, "tls")
        self.extra = list(extra or [])
        self.env = env or {}
        self.ports: dict[str, int] = {}
        self.key: str | None = None
        self.account = "admin"
        self.process: subprocess.Popen[str] | None = None
        self.logPath = os.path.join(self.directory, "server.log")
        self.daemon = daemon
        self.pidPath = os.path.join(self.directory, "twistd.pid")
        self.openFiles = openFiles

    def start(self, timeout: float = 20.0) -> CaptureServer:
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if self.daemon:
            # twistd forks into the background and logs to the file itself.
            start = [twistd, "--pidfile", self.pidPath, "--logfile", self.logPath, "capture"]
        else:
            start = [twistd, "-n", "--pidfile=", "capture"]
        args = [
            *start,
            "--data", self.data,
            "--tls-dir", self.tlsDir,
            "--smtp", "tcp:0:interface=127.0.0.1",
            "--smtps", "tcp:0:interface=127.0.0.1",
            "--pop3", "tcp:0:interface=127.0.0.1",
            "--pop3s", "tcp:0:interface=127.0.0.1",
            "--http", "tcp:0:interface=127.0.0.1",
            "--imap", "tcp:0:interface=127.0.0.1",
            "--imaps", "tcp:0:interface=127.0.0.1",
            *self.extra,
        ]
        self.ports = {}
        fresh = not os.path.exists(self.data)
        log = open(self.logPath, "a")
        self._logStart = log.tell()
        if self.daemon:
            log.close()
            log = open(os.devnull, "w")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        limit = self.openFiles

        def limited() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory, env=env, text=True,
            preexec_fn=limited if limit is not None else None,
        )
        log.close()
        deadline = time.monotonic() + timeout
        wanted = set(_LISTENERS) - {name for name in _LISTENERS if f"--{name}" in self.extra}
        while time.monotonic() < deadline:
            text = self.log()
            for label, _, port in _LISTEN_RE.findall(text):
                self.ports[_LABELS[label]] = int(port)
            match = _KEY_RE.search(text)
            if match:
                self.account, self.key = match.group(1), match.group(2)
            if wanted <= set(self.ports) and (self.key is not None or not fresh):
                return self
            if self.process.poll() not in (None, 0) or (
                self.process.poll() == 0 and not self.daemon
            ):
                raise RuntimeError(f"capture exited with {self.process.returncode}:\n{text}")
            time.sleep(0.05)
        raise RuntimeError(f"capture did not start in time:\n{self.log()}")

    def log(self) -> str:
        with open(self.logPath) as f:
            f.seek(self._logStart)
            return f.read()

    def stop(self) -> None:
        if self.daemon:
            self._stopDaemon()
            return
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _stopDaemon(self) -> None:
        if self.process is not None:
            self.process.wait(15)
        self.process = None
        if not os.path.exists(self.pidPath):
            return
        with open(self.pidPath) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        raise RuntimeError("the daemon did not stop on SIGTERM")

    def kill(self) -> None:
        """
        SIGKILL: the server gets no chance to flush anything.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def tlsContext(self) -> ssl.SSLContext:
        """
        A client context that trusts the server's generated certificate and
        checks its name, as a careful client would.
        """
        return ssl.create_default_context(cafile=os.path.join(self.tlsDir, "localhost.pem"))

    def smtp(self, login: bool = True, **kwargs: Any) -> smtplib.SMTP:
        """
        An smtplib client on the STARTTLS port, upgraded and logged in.
        """
        client = smtplib.SMTP("localhost", self.ports["smtp"], timeout=30, **kwargs)
        client.starttls(context=self.tlsContext())
        if login:
            assert self.key is not None
            client.login(self.account, self.key)
        return client

    def smtps(self, login: bool = True) -> smtplib.SMTP_SSL:
        client = smtplib.SMTP_SSL(
            "localhost", self.ports["smtps"], timeout=30, context=self.tlsContext()
        )
        if login:
            assert self.key is not None
            client.login(self.account, self.key)
        return client

    def raw(self) -> RawClient:
        return RawClient(self.ports["smtp"])

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """
        Run the C{capture} admin command on this server's data.
        """
        return subprocess.run(
            [sys.executable, "-m", "capture.cli", "--data", self.data, *args],
            capture_output=True, text=True, check=check, timeout=60,
        )


class LineSocket:
    """
    A socket read line by line (CRLF), the base of the raw protocol clients
    tests use for replies checked byte for byte.
    """

    sock: socket.socket
    buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line


class RawClient(LineSocket):
    """
    A plain socket speaking SMTP byte by byte, for what smtplib will not send.
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.greeting = self.reply()

    def reply(self) -> bytes:
        """
        One whole reply, all its lines joined by newlines.
        """
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"\n".join(lines)

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """
        Whether the server has closed the connection (after any buffered
        replies are read).
        """
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()
