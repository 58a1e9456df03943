"""Mail reader benchmark: POP3 and IMAP over one large mailbox.

Fills a data directory with ``--messages`` messages of about 2 KiB in ONE
public inbox (the same generator and store fill as ``bench/api.py``),
starts ``twistd capture`` on it with every listener on loopback, and times,
one client at a time, over plaintext loopback (``--allow-insecure-auth``,
so TLS cost is not measured):

``POP3 login``   ``USER``/``PASS`` of the address (the session's snapshot
                 of the whole mailbox is taken here)
``POP3 UIDL``    the whole listing
``POP3 RETR``    ``--fetches`` RETRs of random messages, one after another
``IMAP``         LOGIN+SELECT, ``UID FETCH 1:* (UID FLAGS RFC822.SIZE
                 ENVELOPE)``, ``FETCH 1:* (BODYSTRUCTURE)``, then ``--fetches``
                 ``BODY.PEEK[]`` fetches of random messages, one after another
                 and then pipelined (all sent at once, as clients sync)

After each it prints the server's peak resident memory (``VmHWM`` from
``/proc/<pid>/status``), so a figure that grows with the mailbox shows.
Resident memory includes the pages of the database file SQLite maps and
has touched (reads use mmap), so it grows with the part of the file read.

Usage::

    python bench/imap_pop3.py                          # 10,000 messages
    python bench/imap_pop3.py --data /var/tmp/capture-10k   # keep and reuse the fill

"""

from __future__ import annotations

import argparse
import os
import poplib
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api import inboxAddress, prepareData  # noqa: E402  (bench/ is not a package)

_LISTEN_RE = re.compile(r"(POP3 \(STLS\)|IMAP \(STARTTLS\)) listening on ([^\s:]+):(\d+)")


def peakMemory(pid: int) -> str:
    """
    The process's peak resident set (VmHWM) and, of the resident set now,
    what is anonymous (the heap: RssAnon) and what is mapped file pages
    (RssFile: mostly the database file SQLite maps).
    """
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) / 1024
    return (
        f"{fields.get('VmHWM', 0):.0f} MiB (now anon {fields.get('RssAnon', 0):.0f}, "
        f"file {fields.get('RssFile', 0):.0f})"
    )


class Server:
    """
    C{twistd capture} on a filled data directory, listeners on loopback.
    """

    def __init__(self, data: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="capture-bench-readers-")
        self.logPath = os.path.join(self.directory, "server.log")
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        listener = "tcp:0:interface=127.0.0.1"
        args = [
            twistd, "-n", "--pidfile=", "capture", "--data", data,
            "--tls-dir", os.path.join(self.directory, "tls"),
            "--smtp", "none", "--smtps", "none", "--http", "none",
            "--pop3", listener, "--pop3s", "none", "--imap", listener, "--imaps", "none",
            "--allow-insecure-auth",
            "--public-inbox-limit", "0", "--public-max-age", "0", "--retention-interval", "0",
        ]
        with open(self.logPath, "w") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.ports: dict[str, int] = {}
        # Generous: a store filled by an older Capture is migrated first.
        deadline = time.monotonic() + 600
        while len(self.ports) < 2:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(open(self.logPath).read())
            for label, _, port in _LISTEN_RE.findall(open(self.logPath).read()):
                self.ports["pop3" if label.startswith("POP3") else "imap"] = int(port)
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.directory, ignore_errors=True)


class Client:
    """
    Commands and their whole answers as bytes.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.count = 0
        greeting = b""
        while b"\r\n" not in greeting:
            greeting += self.sock.recv(4096)

    def command(self, text: str) -> bytes:
        """
        Send a command; its answer up to and including the tagged line
        (the server sends nothing unasked here, so the buffer is empty
        between commands).
        """
        self.count += 1
        tag = b"b%d" % self.count
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        chunks: list[bytes] = []
        tail = b"\r\n"
        marker = b"\r\n" + tag + b" "
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            chunks.append(chunk)
            # Look only where the tagged line can be: the end of the answer.
            window = tail + chunk
            at = window.rfind(marker)
            if at >= 0 and window.endswith(b"\r\n"):
                if not window[at + len(marker):].startswith(b"OK"):
                    raise RuntimeError(f"{text!r}: {window[at:]!r}")
                return b"".join(chunks)
            tail = window[-(len(marker) + 200):]

    def pipelined(self, texts: list[str]) -> bytes:
        """
        Send every command in one write, then read until the last one's
        tagged answer (as a client syncing a folder pipelines its fetches).
        """
        first = self.count + 1
        self.count += len(texts)
        self.sock.sendall(b"".join(
            b"b%d %s\r\n" % (first + i, t.encode()) for i, t in enumerate(texts)
        ))
        marker = b"\r\nb%d " % self.count
        chunks: list[bytes] = []
        tail = b"\r\n"
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            chunks.append(chunk)
            window = tail + chunk
            at = window.rfind(marker)
            if at >= 0 and window.endswith(b"\r\n"):
                return b"".join(chunks)
            tail = window[-(len(marker) + 200):]


def timed(label: str, pid: int, run: Callable[[], Any]) -> Any:
    began = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - began
    print(f"{label:<34} {elapsed * 1000:9.1f} ms   server peak {peakMemory(pid)}")
    return result


def pop3Benchmarks(server: Server, address: str, key: str, fetches: int, seed: int) -> None:
    pid = server.process.pid
    print(f"{'server started':<34} {'':>12}   server peak {peakMemory(pid)}")
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=120)

    def login() -> None:
        client.user(address)
        client.pass_(key)

    timed("POP3 login (USER/PASS + snapshot)", pid, login)
    listing = timed("POP3 UIDL", pid, client.uidl)
    count = len(listing[1])
    rng = random.Random(seed)
    numbers = [rng.randint(1, count) for _ in range(fetches)]

    def retrieve() -> int:
        total = 0
        for n in numbers:
            total += len(b"\r\n".join(client.retr(n)[1]))
        return total

    octets = timed(f"POP3 {fetches} RETR", pid, retrieve)
    print(f"  ({count} messages listed, {octets / fetches:.0f} octets per RETR on average)")
    client.quit()


def imapBenchmarks(server: Server, address: str, key: str, fetches: int, seed: int) -> None:
    """
    LOGIN+SELECT, the two whole-mailbox FETCHes, then C{fetches} single
    BODY.PEEK[] fetches of random messages.
    """
    pid = server.process.pid
    print(f"{'server started':<50} {'':>12}   server peak {peakMemory(pid)}")
    client = Client(server.ports["imap"])

    def login() -> bytes:
        client.command(f'LOGIN "{address}" "{key}"')
        return client.command("SELECT INBOX")

    selected = timed("IMAP LOGIN+SELECT", pid, login)
    count = int(re.search(rb"\* (\d+) EXISTS", selected).group(1))  # type: ignore[union-attr]
    headers = timed("IMAP UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)", pid,
                    lambda: client.command("UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"))
    structures = timed("IMAP FETCH 1:* (BODYSTRUCTURE)", pid,
                       lambda: client.command("FETCH 1:* (BODYSTRUCTURE)"))
    rng = random.Random(seed)
    numbers = [rng.randint(1, count) for _ in range(fetches)]

    def fetch() -> int:
        return sum(len(client.command(f"FETCH {n} (BODY.PEEK[])")) for n in numbers)

    octets = timed(f"IMAP {fetches} FETCH n (BODY.PEEK[])", pid, fetch)
    together = timed(
        f"IMAP {fetches} FETCH n (BODY.PEEK[]), pipelined", pid,
        lambda: client.pipelined([f"FETCH {n} (BODY.PEEK[])" for n in numbers]),
    )
    assert together.count(b" OK ") >= fetches, "a pipelined FETCH failed"
    print(f"  ({count} messages; {len(headers)} and {len(structures)} octets answered; "
          f"{octets / fetches:.0f} octets per BODY.PEEK[] answer on average)")
    client.command("LOGOUT")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--fetches", type=int, default=1000)
    parser.add_argument("--data", help="data directory to fill, or reuse when it holds this fill")
    parser.add_argument("--outstanding", type=int, default=2000,
                        help="addMessage calls in flight while filling")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    temporary = args.data is None
    data = args.data or tempfile.mkdtemp(prefix="capture-bench-readers-data-")
    try:
        key = prepareData(data, args.messages, 1, args.outstanding)
        address = inboxAddress(0)
        print(
            f"{args.messages} messages of about 2 KiB in {address}; loopback, one client, "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
        )
        server = Server(data)
        try:
            pop3Benchmarks(server, address, key, args.fetches, args.seed)
            imapBenchmarks(server, address, key, args.fetches, args.seed)
        finally:
            server.stop()
    finally:
        if temporary:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
