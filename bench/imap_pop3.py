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
                 ``BODY.PEEK[]`` fetches of random distinct messages three
                 ways: one command after another, the same commands
                 pipelined (all sent at once, as clients sync), and one
                 ``UID FETCH`` whose UID set names the same messages

Each session runs ``--runs`` times (a new connection and login each time);
each step prints its best and median time over the runs (warm caches), the
first run's (cold), and the server's peak resident memory (``VmHWM`` from
``/proc/<pid>/status``) after it, so a figure that grows with the mailbox
shows. Resident memory includes the pages of the database file SQLite maps
and has touched (reads use mmap), so it grows with the part of the file read.

The sessions (``Target``, ``runSessions``) are the client half alone:
``bench/dovecot.py`` runs them against Dovecot on the same messages.

Usage::

    python bench/imap_pop3.py                          # 10,000 messages
    python bench/imap_pop3.py --data /var/tmp/capture-10k   # keep and reuse the fill
    python bench/imap_pop3.py --data /var/tmp/capture-10k --copy   # only read it

"""

from __future__ import annotations

import argparse
import os
import poplib
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api import inboxAddress, prepareData  # noqa: E402  (bench/ is not a package)

_DATABASE = "capture.sqlite3"

# What one recv asks for. Not 1 MiB: allocating (and shrinking) a buffer
# that large for every small answer cost this client about 18 us a round
# trip (1,000 NOOPs to Dovecot: 53 ms against 35 ms), a third of what the
# one-at-a-time FETCH step measured.
_READ = 1 << 16

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

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=120)
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
        answer, tagged = self._until(tag)
        if not tagged.startswith(b"OK"):
            raise RuntimeError(f"{text!r}: {tagged!r}")
        return answer

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
        return self._until(b"b%d" % self.count)[0]

    def _until(self, tag: bytes) -> tuple[bytes, bytes]:
        """
        Read up to and including C{tag}'s tagged line: everything read, and
        that line's text after the tag.
        """
        chunks: list[bytes] = []
        tail = b"\r\n"
        marker = b"\r\n" + tag + b" "
        while True:
            chunk = self.sock.recv(_READ)
            if not chunk:
                raise ConnectionError("closed")
            chunks.append(chunk)
            # Look only where the tagged line can be: the end of the answer.
            window = tail + chunk
            at = window.rfind(marker)
            if at >= 0 and window.endswith(b"\r\n"):
                return b"".join(chunks), window[at + len(marker):]
            tail = window[-(len(marker) + 200):]


@dataclass(frozen=True)
class Target:
    """
    Where the client steps go: one server's POP3 and IMAP listeners, a
    login that opens the filled mailbox, and how to read the server's
    memory (a process of Capture's, or Dovecot's session processes).
    """

    name: str
    host: str
    pop3: int
    imap: int
    user: str
    password: str
    memory: Callable[[], str]


class Steps:
    """
    The times of each step over several runs of the same session, and the
    server's memory after the step's last run.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.times: dict[str, list[float]] = {}
        self.memory: dict[str, str] = {}
        self.notes: dict[str, str] = {}

    def timed(self, label: str, run: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        result = run()
        self.times.setdefault(label, []).append(time.perf_counter() - began)
        self.memory[label] = self.target.memory()
        return result

    def report(self) -> None:
        """
        One line a step: best and median of the runs (warm), the first
        (cold caches: Capture's page cache, Dovecot's index and cache
        files being built), and memory.
        """
        print(f"{self.target.name}: {'best':>9} {'median':>9} {'first':>9}  (ms; runs)")
        for label, times in self.times.items():
            print(f"  {label:<52} {min(times) * 1000:9.1f} {statistics.median(times) * 1000:9.1f}"
                  f" {times[0] * 1000:9.1f}  ({len(times)})  server {self.memory[label]}")
        for name, note in self.notes.items():
            print(f"  {name}: {note}")


def sample(count: int, fetches: int, seed: int) -> list[int]:
    """
    The message numbers every fetch step reads: C{fetches} distinct
    numbers out of 1..C{count} in random order (distinct, so the one-command
    UID set names exactly the messages the single fetches read).
    """
    return random.Random(seed).sample(range(1, count + 1), min(fetches, count))


def pop3Session(target: Target, steps: Steps, fetches: int, seed: int) -> None:
    """
    Login (the server takes its snapshot of the mailbox here), UIDL, then
    C{fetches} RETRs one after another, and QUIT.
    """
    client = poplib.POP3(target.host, target.pop3, timeout=120)

    def login() -> None:
        client.user(target.user)
        client.pass_(target.password)

    steps.timed("POP3 login (USER/PASS + snapshot)", login)
    listing = steps.timed("POP3 UIDL", client.uidl)
    numbers = sample(len(listing[1]), fetches, seed)

    def retrieve() -> int:
        return sum(len(b"\r\n".join(client.retr(n)[1])) for n in numbers)

    octets = steps.timed(f"POP3 {len(numbers)} RETR", retrieve)
    steps.notes["POP3"] = (f"{len(listing[1])} messages listed, "
                           f"{octets / len(numbers):.0f} octets per RETR on average")
    client.quit()


_FETCH_UID_RE = re.compile(rb"\* (\d+) FETCH \(UID (\d+)")


def imapSession(target: Target, steps: Steps, fetches: int, seed: int) -> None:
    """
    LOGIN+SELECT, the two whole-mailbox FETCHes, then C{fetches}
    BODY.PEEK[] fetches of random messages three ways: one command at a
    time, all the single commands pipelined, and one UID FETCH naming the
    same messages as a UID set.
    """
    client = Client(target.imap, target.host)

    def login() -> bytes:
        client.command(f'LOGIN "{target.user}" "{target.password}"')
        return client.command("SELECT INBOX")

    selected = steps.timed("IMAP LOGIN+SELECT", login)
    count = int(re.search(rb"\* (\d+) EXISTS", selected).group(1))  # type: ignore[union-attr]
    headers = steps.timed("IMAP UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)",
                          lambda: client.command("UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"))
    uids = {int(n): int(u) for n, u in _FETCH_UID_RE.findall(headers)}
    assert len(uids) == count, f"{len(uids)} UIDs for {count} messages"
    structures = steps.timed("IMAP FETCH 1:* (BODYSTRUCTURE)",
                lambda: client.command("FETCH 1:* (BODYSTRUCTURE)"))
    numbers = sample(count, fetches, seed)

    def fetch() -> int:
        return sum(len(client.command(f"FETCH {n} (BODY.PEEK[])")) for n in numbers)

    octets = steps.timed(f"IMAP {len(numbers)} FETCH n (BODY.PEEK[])", fetch)
    together = steps.timed(
        f"IMAP {len(numbers)} FETCH n (BODY.PEEK[]), pipelined",
        lambda: client.pipelined([f"FETCH {n} (BODY.PEEK[])" for n in numbers]),
    )
    assert together.count(b" OK ") >= len(numbers), "a pipelined FETCH failed"
    uidSet = ",".join(str(u) for u in sorted(uids[n] for n in numbers))
    one = steps.timed(f"IMAP UID FETCH <{len(numbers)} UIDs> (BODY.PEEK[])",
                      lambda: client.command(f"UID FETCH {uidSet} (BODY.PEEK[])"))
    answered = one.count(b" FETCH (")
    assert answered == len(numbers), f"{answered} FETCH answers for {len(numbers)} UIDs"
    steps.notes["IMAP"] = (
        f"{count} messages; {len(headers)} and {len(structures)} octets answered to the "
        f"whole-mailbox FETCHes; {octets / len(numbers):.0f} octets per BODY.PEEK[] answer, "
        f"{len(one)} to the one UID FETCH"
    )
    client.command("LOGOUT")


def runSessions(targets: list[Target], fetches: int, seed: int, runs: int) -> list[Steps]:
    """
    C{runs} POP3 sessions then C{runs} IMAP sessions with each target, each
    a new connection and login, one client at a time; each target's
    steps' times. With several targets the sessions alternate (one with
    each, then the next run), so a change in the machine's load falls on
    all of them alike.
    """
    steps = [Steps(target) for target in targets]
    for session in (pop3Session, imapSession):
        for _ in range(runs):
            for record in steps:
                session(record.target, record, fetches, seed)
    return steps


def conditions(messages: int) -> str:
    return (f"{messages} messages of about 2 KiB in one mailbox; loopback, one client, "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")


def copyData(source: str, destination: str) -> None:
    """
    A consistent copy of a filled data directory (SQLite's backup, safe
    while another process has it open), so a run never writes the original.
    """
    os.makedirs(destination, exist_ok=True)
    for name in os.listdir(source):
        if not name.startswith(_DATABASE):
            shutil.copy(os.path.join(source, name), destination)
    original = sqlite3.connect(f"file:{os.path.join(source, _DATABASE)}?mode=ro", uri=True)
    copy = sqlite3.connect(os.path.join(destination, _DATABASE))
    try:
        original.backup(copy)
    finally:
        copy.close()
        original.close()


def captureTarget(server: Server, address: str, key: str) -> Target:
    pid = server.process.pid
    return Target("Capture", "127.0.0.1", server.ports["pop3"], server.ports["imap"],
                  address, key, lambda: peakMemory(pid))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--fetches", type=int, default=1000)
    parser.add_argument("--data", help="data directory to fill, or reuse when it holds this fill")
    parser.add_argument("--copy", action="store_true",
                        help="run on a copy of --data (which is then only read)")
    parser.add_argument("--runs", type=int, default=5, help="sessions of each protocol")
    parser.add_argument("--outstanding", type=int, default=2000,
                        help="addMessage calls in flight while filling")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    scratch = tempfile.mkdtemp(prefix="capture-bench-readers-data-")
    try:
        data = args.data or scratch
        key = prepareData(data, args.messages, 1, args.outstanding)
        if args.data and args.copy:
            copyData(args.data, scratch)
            data = scratch
        print(f"{conditions(args.messages)}; {args.runs} runs of each session")
        server = Server(data)
        try:
            target = captureTarget(server, inboxAddress(0), key)
            print(f"server started: {target.memory()}")
            runSessions([target], args.fetches, args.seed, args.runs)[0].report()
        finally:
            server.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
