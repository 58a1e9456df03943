"""Server CPU for long lines sent in small segments.

Line assembly must cost time linear in the bytes received: a line that
arrives in many small TCP segments must not be re-searched or re-copied
whole for every segment.  This starts ``twistd capture`` (tests/harness.py:
loopback, ephemeral ports, a fresh data directory), sends each case, and
prints the server's CPU time (utime+stime from ``/proc/PID/stat``) it cost:

``data-long``
    one message whose body is one line of ``--size`` octets (under
    ``--max-line-length``), sent in ``--segment``-octet writes;
``data-lines``
    the same octets as 998-octet lines, the same writes (the baseline);
``smtp-command``, ``pop3``, ``imap``
    ``--size`` octets of one command line with no line end, then a line
    end and a NOOP (each server refuses the long line and answers NOOP).

Each write is its own ``send`` with ``TCP_NODELAY``; loopback may still
merge writes when the server falls behind, so the figure is what a client
that sends as fast as it can costs.  ``--pace`` sleeps between writes so
that each arrives alone.

Usage::

    python bench/long_line.py                      # every case, 1,000,000 octets
    python bench/long_line.py --cases data-long --size 1000000 --segment 200
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness import CaptureServer, LineSocket  # noqa: E402  (bench/ is not a package)

_CASES = ("data-long", "data-lines", "smtp-command", "pop3", "imap")


def _cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Client(LineSocket):
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=300)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def reply(self) -> bytes:
        """
        One SMTP reply (its last line).
        """
        line = self.line()
        while line[3:4] == b"-":
            line = self.line()
        return line

    def segments(self, data: bytes, size: int, pace: float) -> None:
        for i in range(0, len(data), size):
            self.sock.sendall(data[i : i + size])
            if pace:
                time.sleep(pace)


def _smtpSession(server: CaptureServer) -> _Client:
    client = _Client(server.ports["smtp"])
    client.reply()
    client.sock.sendall(b"EHLO bench.example\r\n")
    client.reply()
    token = base64.b64encode(b"\0" + server.account.encode() + b"\0" + (server.key or "").encode())
    client.sock.sendall(b"AUTH PLAIN " + token + b"\r\n")
    assert client.reply().startswith(b"235"), "login failed"
    return client


def _data(server: CaptureServer, body: bytes, options: argparse.Namespace) -> bytes:
    client = _smtpSession(server)
    client.sock.sendall(b"MAIL FROM:<bench@example.com>\r\nRCPT TO:<long@example.org>\r\nDATA\r\n")
    for _ in range(3):
        client.reply()
    client.segments(b"Subject: long line\r\n\r\n" + body + b"\r\n", options.segment, options.pace)
    client.sock.sendall(b".\r\n")
    reply = client.reply()
    client.sock.close()
    return reply


def _case(server: CaptureServer, case: str, options: argparse.Namespace) -> bytes:
    size = options.size
    if case == "data-long":
        return _data(server, b"x" * size, options)
    if case == "data-lines":
        line = b"x" * 996 + b"\r\n"
        return _data(server, (line * (size // len(line) + 1))[:size], options)
    junk = b"x" * size
    if case == "smtp-command":
        client = _smtpSession(server)
        client.segments(b"NOOP " + junk, options.segment, options.pace)
        client.sock.sendall(b"\r\nNOOP\r\n")
        replies = client.reply() + b" / " + client.reply()
    elif case == "pop3":
        client = _Client(server.ports["pop3"])
        client.line()
        client.segments(b"NOOP " + junk, options.segment, options.pace)
        client.sock.sendall(b"\r\nNOOP\r\n")
        replies = client.line() + b" / " + client.line()
    else:
        client = _Client(server.ports["imap"])
        client.line()
        client.segments(b"a NOOP " + junk, options.segment, options.pace)
        client.sock.sendall(b"\r\nb NOOP\r\n")
        replies = client.line() + b" / " + client.line()
    client.sock.close()
    return replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(_CASES))
    parser.add_argument("--size", type=int, default=1_000_000, help="octets of the long line")
    parser.add_argument("--segment", type=int, default=200, help="octets per write")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between writes")
    options = parser.parse_args()
    server = CaptureServer(extra=["--allow-insecure-auth"]).start()
    try:
        assert server.process is not None
        pid = server.process.pid
        print(f"# size={options.size} segment={options.segment} pace={options.pace}"
              f" cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}"
              f" python={sys.version.split()[0]} server=twistd capture (loopback)")
        for case in options.cases.split(","):
            before = _cpuSeconds(pid)
            started = time.monotonic()
            reply = _case(server, case, options)
            elapsed = time.monotonic() - started
            cpu = _cpuSeconds(pid) - before
            print(f"{case:13} server_cpu={cpu:.3f}s elapsed={elapsed:.2f}s"
                  f" reply={reply[:90].decode('ascii', 'replace')}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
