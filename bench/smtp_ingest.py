"""SMTP ingest benchmark: a standalone load generator for any SMTP server.

Measures how fast an SMTP server accepts messages, so that Capture can be
compared with a reference sink (Postfix ``smtp-sink``, a bare Twisted ESMTP
server, ...) under identical conditions.  Only the Python standard library is
used (asyncio + ssl + multiprocessing); Python 3.11 or newer is required.

Usage examples::

    # default matrix: sizes 2048,102400 x concurrency 1,10,50 x both modes
    python bench/smtp_ingest.py --port 5587

    # STARTTLS (certificate not verified) + AUTH PLAIN, server CPU accounting
    python bench/smtp_ingest.py --port 5587 --starttls \\
        --user alice --password secret --server-pid auto

    # one configuration, machine-readable output as well
    python bench/smtp_ingest.py --sizes 2048 --concurrency 10 \\
        --mode persistent --count 5000 --json

Modes:

``persistent``
    Each of the C connections is opened (greeting, EHLO, optional STARTTLS
    and AUTH) before timing starts, then sends messages back to back as
    consecutive MAIL/RCPT/DATA transactions without RSET.  MAIL, RCPT and
    DATA are sent in one write when the server advertises PIPELINING.
``per-connection``
    Every message gets a fresh TCP connection: greeting, EHLO (+ STARTTLS,
    EHLO, AUTH), one transaction, QUIT.  C such loops run concurrently.

Messages are RFC 5322 text/plain messages with unique Subject and Message-ID
headers, padded with 76-character lines to exactly the requested size (as
stored by the server: after un-stuffing, without the final ``.`` line; sizes
smaller than the headers, about 270 bytes, give a header-only message).  Some
body lines start with ``.``, so servers must undo dot-stuffing correctly.

The C connections of a configuration are split across ``--processes`` worker
processes (each running its own asyncio loop) so that the client is less
likely to be the bottleneck.  When client and server share a small machine,
the client's CPU per connection matters: ``--loop uvloop`` (the default when
uvloop is installed, ``pip install uvloop``) runs the workers on uvloop, which
costs several times less per connection than the stock asyncio loop; the loop
is printed with the conditions.  A few warmup messages are sent before the clock
starts.  A message counts as ok only when the server answers the end of DATA
with a 2xx reply; anything else (rejections, timeouts, dropped connections)
counts as a failure.  Latency is measured per message from sending MAIL FROM
to receiving the final reply to the end of DATA.

For each (size, concurrency, mode) one line is printed, e.g.::

    size=2048B conc=10 mode=persistent tls=yes auth=yes count=2000 ok=2000
    fail=0 elapsed=0.81s rate=2469 msg/s server_cpu=0.38ms/msg p50=3.1ms
    p99=9.4ms

(on a single line).  With ``--json`` every header and result line is followed
by the same data as a JSON object on a line of its own (``grep '^{'``).

``--server-pid PID`` (or ``auto``: the process(es) that ``ss -ltnp`` shows
listening on ``--port``) samples utime+stime from ``/proc/PID/stat`` right
before and after the timed part of each run and reports server CPU time per
accepted message.  The kernel accounts CPU in clock ticks (usually 10 ms), so
the figure is only meaningful for runs that last well over a second.  Only
the given processes are counted, not children they spawn per connection.

The exit status is 0 when every timed message was accepted, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import re
import ssl
import subprocess
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Literal

Mode = Literal["persistent", "per-connection"]
MODES: tuple[Mode, ...] = ("persistent", "per-connection")

EHLO_NAME = "capture-bench.localhost"
#: Consecutive connection-level errors after which a connection slot gives up.
MAX_CONSECUTIVE_ERRORS = 3
#: How many distinct failure reasons are printed under a result line.
MAX_REASONS_SHOWN = 3
#: Client CPU use (fraction of its processes' wall time) that triggers a note.
CLIENT_BUSY_WARNING = 0.85
#: How long a worker waits for the go signal before giving up.
GO_TIMEOUT = 3600.0

#: What a broken connection can raise (ssl.SSLError is an OSError; ValueError
#: comes from StreamReader.readline on an overlong line).
_NETWORK_ERRORS = (OSError, TimeoutError, ValueError)


# --------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    """How to reach and talk to the server under test."""

    host: str
    port: int
    starttls: bool
    user: str | None
    password: str | None
    mail_from: str
    rcpt_to: str
    timeout: float


@dataclass(frozen=True)
class WorkerJob:
    """One worker process's share of a configuration."""

    client: ClientConfig
    worker_index: int
    run_id: str
    size: int
    mode: Mode
    connections: int
    messages: int
    warmup: int
    loop: str = "asyncio"


@dataclass
class Stats:
    """Outcome of a batch of messages."""

    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    #: Time to connect, read the greeting, EHLO, STARTTLS and AUTH.
    setup_latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    first_failure: str | None = None

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def success(self, latency: float) -> None:
        self.ok += 1
        self.latencies.append(latency)

    def fail(self, reason: str, count: int = 1) -> None:
        reason = reason[:200]
        if self.first_failure is None:
            self.first_failure = reason
        self.failures[reason] += count

    def merge(self, other: Stats) -> None:
        self.ok += other.ok
        self.latencies.extend(other.latencies)
        self.setup_latencies.extend(other.setup_latencies)
        if self.first_failure is None:
            self.first_failure = other.first_failure
        self.failures.update(other.failures)


@dataclass
class WorkerResult:
    """What a worker process sends back to the parent."""

    timed: Stats
    warmup: Stats
    started: float
    finished: float
    #: CPU seconds the worker process used during the timed part.
    cpu: float


@dataclass
class RunResult:
    """Aggregated result of one (size, concurrency, mode) configuration."""

    size: int
    concurrency: int
    mode: Mode
    tls: bool
    auth: bool
    count: int
    stats: Stats
    warmup: Stats
    elapsed: float
    server_cpu: float | None
    processes: int
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.stats.ok / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def server_cpu_per_msg(self) -> float | None:
        if self.server_cpu is None or self.stats.ok == 0:
            return None
        return self.server_cpu / self.stats.ok

    @property
    def client_busy(self) -> float:
        """Fraction of the timed part the client workers spent on the CPU."""
        wall = self.elapsed * self.processes
        return self.client_cpu / wall if wall > 0 else 0.0

    def percentile(self, pct: float) -> float | None:
        return percentile(self.stats.latencies, pct)

    def human(self) -> str:
        cpu = self.server_cpu_per_msg
        return " ".join(
            [
                f"size={self.size}B",
                f"conc={self.concurrency}",
                f"mode={self.mode}",
                f"tls={_yes_no(self.tls)}",
                f"auth={_yes_no(self.auth)}",
                f"count={self.count}",
                f"ok={self.stats.ok}",
                f"fail={self.stats.failed}",
                f"elapsed={self.elapsed:.2f}s",
                f"rate={self.rate:.0f} msg/s",
                "server_cpu=" + ("n/a" if cpu is None else f"{cpu * 1000:.2f}ms/msg"),
                f"p50={_fmt_ms(self.percentile(50))}",
                f"p99={_fmt_ms(self.percentile(99))}",
            ]
        )

    def note_lines(self) -> list[str]:
        """Failure details and warnings to print under the result line."""
        lines: list[str] = []
        if self.client_busy > CLIENT_BUSY_WARNING:
            lines.append(
                f"  note: client workers were {self.client_busy:.0%} busy;"
                " the client may be the bottleneck (see --processes)"
            )
        for label, stats in (
            ("failures", self.stats),
            ("warmup failures", self.warmup),
        ):
            if not stats.failed:
                continue
            lines.append(f"  {label}: {stats.failed}, first: {stats.first_failure}")
            for reason, n in stats.failures.most_common(MAX_REASONS_SHOWN):
                lines.append(f"    {n} x {reason}")
        return lines

    def as_json(self) -> dict[str, object]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "type": "result",
            "size": self.size,
            "concurrency": self.concurrency,
            "mode": self.mode,
            "tls": self.tls,
            "auth": self.auth,
            "count": self.count,
            "ok": self.stats.ok,
            "fail": self.stats.failed,
            "elapsed_s": round(self.elapsed, 4),
            "rate_msg_s": round(self.rate, 1),
            "server_cpu_s": None if self.server_cpu is None else round(self.server_cpu, 4),
            "server_cpu_ms_per_msg": ms(self.server_cpu_per_msg),
            "p50_ms": ms(self.percentile(50)),
            "p90_ms": ms(self.percentile(90)),
            "p99_ms": ms(self.percentile(99)),
            "max_ms": ms(max(self.stats.latencies, default=None)),
            "client_cpu_s": round(self.client_cpu, 4),
            "client_busy": round(self.client_busy, 3),
            "setup_count": len(self.stats.setup_latencies),
            "setup_p50_ms": ms(percentile(self.stats.setup_latencies, 50)),
            "setup_p99_ms": ms(percentile(self.stats.setup_latencies, 99)),
            "first_failure": self.stats.first_failure,
            "failures": dict(self.stats.failures),
            "warmup_ok": self.warmup.ok,
            "warmup_fail": self.warmup.failed,
        }


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _fmt_ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}ms"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


# --------------------------------------------------------------------------
# Message generation
# --------------------------------------------------------------------------

#: Printable ASCII without space; contains "." so some lines need stuffing.
_ALPHABET = "".join(chr(c) for c in range(33, 127))
_DOT_OFFSET = _ALPHABET.index(".")
_LINE_CHARS = 76
_LINE_BYTES = _LINE_CHARS + 2


def dot_stuff(message: bytes) -> bytes:
    """Return ``message`` ready to follow DATA: dot-stuffed, CRLF, ``.``."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = (b"\r\n" + message).replace(b"\r\n.", b"\r\n..")[2:]
    return stuffed + b".\r\n"


def _pad_line(index: int, width: int = _LINE_CHARS) -> str:
    # The first body line starts with "." and so does every 94th after it.
    start = (index + _DOT_OFFSET) % len(_ALPHABET)
    return (_ALPHABET * 2)[start : start + width]


def padding_body(length: int) -> bytes:
    """Body of (at least) ``length`` bytes made of 76-character CRLF lines."""
    full, rest = divmod(max(length, 0), _LINE_BYTES)
    lines = [_pad_line(i) for i in range(full)]
    if rest == 1 and lines:
        lines[-1] = _pad_line(full - 1, _LINE_CHARS + 1)  # absorb the odd byte
    elif rest >= 1:
        lines.append(_pad_line(full, max(rest - 2, 0)))
    if not lines:
        lines.append("")
    return "".join(line + "\r\n" for line in lines).encode("ascii")


class MessageFactory:
    """Builds unique RFC 5322 messages of a given size, ready for DATA."""

    def __init__(self, size: int, mail_from: str, rcpt_to: str, tag: str) -> None:
        self.size = size
        self.mail_from = mail_from
        self.rcpt_to = rcpt_to
        self.tag = tag
        self._bodies: dict[int, bytes] = {}

    def headers(self, seq: int) -> bytes:
        lines = [
            f"From: Capture Bench <{self.mail_from}>",
            f"To: <{self.rcpt_to}>",
            f"Subject: capture-bench {self.tag} #{seq:08d}",
            f"Date: {formatdate(usegmt=True)}",
            f"Message-ID: <{self.tag}.{seq:08d}@capture-bench.invalid>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=us-ascii",
            "Content-Transfer-Encoding: 7bit",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    def message(self, seq: int) -> bytes:
        """The raw message (before dot-stuffing)."""
        head = self.headers(seq)
        return head + padding_body(self.size - len(head))

    def payload(self, seq: int) -> bytes:
        """The dot-stuffed message including the terminating ``.`` line."""
        head = self.headers(seq)
        body_len = self.size - len(head)
        body = self._bodies.get(body_len)
        if body is None:
            body = self._bodies[body_len] = dot_stuff(padding_body(body_len))
        # Headers never start with "." and end with CRLF: stuffing the body
        # separately is equivalent to stuffing the whole message.
        return head + body


# --------------------------------------------------------------------------
# SMTP client
# --------------------------------------------------------------------------


class SmtpProtocolError(Exception):
    """The server said something that is not a valid SMTP reply."""


class SmtpCommandError(Exception):
    """A setup command (greeting, EHLO, STARTTLS, AUTH) was refused."""


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"{self.code} " + " / ".join(self.lines)

    def is_class(self, first_digit: int) -> bool:
        return self.code // 100 == first_digit


def _client_ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _sni_name(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


class SmtpSession:
    """One SMTP client connection, set up and ready for transactions."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.extensions: dict[str, str] = {}

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    @classmethod
    async def open(cls, config: ClientConfig, tls_context: ssl.SSLContext | None) -> SmtpSession:
        """Connect, read the greeting, EHLO, then STARTTLS and AUTH if asked."""
        async with asyncio.timeout(config.timeout):
            reader, writer = await asyncio.open_connection(config.host, config.port)
        session = cls(reader, writer, config.timeout)
        try:
            await session._setup(config, tls_context)
        except BaseException:
            session.abort()
            raise
        return session

    async def _setup(self, config: ClientConfig, tls_context: ssl.SSLContext | None) -> None:
        self._expect("greeting", await self.read_reply(), 2)
        await self.ehlo()
        if config.starttls:
            self._expect("STARTTLS", await self.command(b"STARTTLS"), 2)
            async with asyncio.timeout(self.timeout):
                await self.writer.start_tls(
                    tls_context or _client_ssl_context(),
                    server_hostname=_sni_name(config.host),
                )
            await self.ehlo()
        if config.user is not None:
            secret = f"\0{config.user}\0{config.password or ''}".encode()
            token = base64.b64encode(secret)
            self._expect("AUTH", await self.command(b"AUTH PLAIN " + token), 2)

    async def ehlo(self) -> None:
        reply = await self.command(f"EHLO {EHLO_NAME}".encode())
        if reply.is_class(2):
            self.extensions = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params
            return
        self._expect("HELO", await self.command(f"HELO {EHLO_NAME}".encode()), 2)
        self.extensions = {}

    @staticmethod
    def _expect(stage: str, reply: Reply, first_digit: int) -> None:
        if not reply.is_class(first_digit):
            raise SmtpCommandError(f"{stage}: {reply.text}")

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def command(self, line: bytes) -> Reply:
        await self._send(line + b"\r\n")
        return await self.read_reply()

    async def read_reply(self) -> Reply:
        """Read one (possibly multi-line) reply, within the reply timeout."""
        async with asyncio.timeout(self.timeout):
            return await self._read_reply()

    async def _read_reply(self) -> Reply:
        lines: list[str] = []
        while True:
            raw = await self.reader.readline()
            if not raw.endswith(b"\n"):
                raise ConnectionError(
                    "connection closed by server" + (f" mid-reply: {raw!r}" if raw or lines else "")
                )
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            code = line[:3]
            separator = line[3:4]
            if not (code.isascii() and code.isdigit()) or separator not in ("", " ", "-"):
                raise SmtpProtocolError(f"malformed reply line: {line!r}")
            lines.append(line[4:])
            if separator != "-":
                return Reply(int(code), tuple(lines))

    async def send_message(self, mail_from: str, rcpt_to: str, payload: bytes) -> tuple[bool, str]:
        """Run one MAIL/RCPT/DATA transaction.

        Returns ``(True, final reply)`` when the message was accepted and
        ``(False, reason)`` when the server refused it.  Connection problems
        and timeouts raise.
        """
        commands = (
            ("MAIL", f"MAIL FROM:<{mail_from}>\r\n".encode(), 2),
            ("RCPT", f"RCPT TO:<{rcpt_to}>\r\n".encode(), 2),
            ("DATA", b"DATA\r\n", 3),
        )
        refusal: str | None = None
        data_reply: Reply | None = None
        if self.pipelining:
            await self._send(b"".join(cmd for _, cmd, _ in commands))
            for stage, _, expected in commands:
                reply = await self.read_reply()
                if refusal is None and not reply.is_class(expected):
                    refusal = f"{stage}: {reply.text}"
                data_reply = reply
        else:
            for stage, cmd, expected in commands:
                await self._send(cmd)
                reply = await self.read_reply()
                if not reply.is_class(expected):
                    refusal = f"{stage}: {reply.text}"
                    break
                data_reply = reply
        if data_reply is None or not data_reply.is_class(3):
            return False, refusal or "DATA: no reply"
        if refusal is not None:
            # Pipelined DATA was accepted although MAIL/RCPT failed; close it.
            await self._send(b".\r\n")
            await self.read_reply()
            return False, refusal
        await self._send(payload)
        final = await self.read_reply()
        if final.is_class(2):
            return True, final.text
        return False, f"end of DATA: {final.text}"

    async def reset(self) -> None:
        """RSET after a refused transaction; raises if that fails too."""
        self._expect("RSET", await self.command(b"RSET"), 2)

    async def quit(self) -> None:
        """Polite QUIT and close; never raises."""
        try:
            await self._send(b"QUIT\r\n")
            async with asyncio.timeout(min(self.timeout, 5.0)):
                await self._read_reply()
        except (*_NETWORK_ERRORS, SmtpProtocolError):
            pass
        await self.close()

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(2.0):
                await self.writer.wait_closed()
        except (*_NETWORK_ERRORS, SmtpProtocolError):
            self.abort()

    def abort(self) -> None:
        self.writer.transport.abort()


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout waiting for the server"
    if isinstance(exc, SmtpCommandError):
        return f"setup refused: {exc}"
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------
# Worker side: one asyncio loop per process
# --------------------------------------------------------------------------


class WorkPool:
    """Hands out message sequence numbers to the connections of a worker."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.next = 0

    def take(self) -> int | None:
        if self.next >= self.count:
            return None
        self.next += 1
        return self.next - 1

    @property
    def remaining(self) -> int:
        return self.count - self.next


class Worker:
    """The connections of one worker process and the loops that drive them."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job
        self.config = job.client
        self.tls_context = _client_ssl_context() if job.client.starttls else None
        prefix = f"{job.run_id}-w{job.worker_index}"
        cfg = job.client
        self.timed_messages = MessageFactory(job.size, cfg.mail_from, cfg.rcpt_to, prefix)
        self.warmup_messages = MessageFactory(
            job.size, cfg.mail_from, cfg.rcpt_to, prefix + "-warmup"
        )

    async def _transaction(
        self, session: SmtpSession, factory: MessageFactory, seq: int, stats: Stats
    ) -> bool:
        """Send message ``seq``; return False if the connection is unusable."""
        payload = factory.payload(seq)
        started = time.perf_counter()
        try:
            accepted, detail = await session.send_message(
                self.config.mail_from, self.config.rcpt_to, payload
            )
        except (*_NETWORK_ERRORS, SmtpProtocolError) as exc:
            stats.fail(describe_error(exc))
            return False
        if accepted:
            stats.success(time.perf_counter() - started)
            return True
        stats.fail(detail)
        try:
            await session.reset()
        except (*_NETWORK_ERRORS, SmtpProtocolError, SmtpCommandError):
            return False
        return True

    async def _open(self, stats: Stats) -> SmtpSession:
        started = time.perf_counter()
        session = await SmtpSession.open(self.config, self.tls_context)
        stats.setup_latencies.append(time.perf_counter() - started)
        return session

    async def persistent_slot(
        self,
        session: SmtpSession | None,
        pool: WorkPool,
        factory: MessageFactory,
        stats: Stats,
    ) -> SmtpSession | None:
        """Send messages from ``pool`` over one (re)used connection."""
        errors = 0
        while errors < MAX_CONSECUTIVE_ERRORS and (seq := pool.take()) is not None:
            if session is None:
                try:
                    session = await self._open(stats)
                except (*_NETWORK_ERRORS, SmtpProtocolError, SmtpCommandError) as exc:
                    stats.fail(describe_error(exc))
                    errors += 1
                    continue
            if await self._transaction(session, factory, seq, stats):
                errors = 0
            else:
                session.abort()
                session = None
                errors += 1
        return session

    async def per_connection_slot(
        self, pool: WorkPool, factory: MessageFactory, stats: Stats
    ) -> None:
        """Send messages from ``pool``, each over a brand-new connection."""
        errors = 0
        while errors < MAX_CONSECUTIVE_ERRORS and (seq := pool.take()) is not None:
            try:
                session = await self._open(stats)
            except (*_NETWORK_ERRORS, SmtpProtocolError, SmtpCommandError) as exc:
                stats.fail(describe_error(exc))
                errors += 1
                continue
            if await self._transaction(session, factory, seq, stats):
                errors = 0
                await session.quit()
            else:
                session.abort()
                errors += 1

    async def _open_quietly(self, stats: Stats) -> SmtpSession | None:
        """Open a connection ahead of time; on failure the slot retries later."""
        try:
            return await self._open(stats)
        except (*_NETWORK_ERRORS, SmtpProtocolError, SmtpCommandError) as exc:
            stats.fail(f"connection setup: {describe_error(exc)}")
            return None

    async def _run_phase(
        self,
        sessions: list[SmtpSession | None],
        pool: WorkPool,
        factory: MessageFactory,
        stats: Stats,
    ) -> list[SmtpSession | None]:
        """Drain ``pool`` with one task per connection slot."""
        if self.job.mode == "persistent":
            slots = (self.persistent_slot(s, pool, factory, stats) for s in sessions)
            return list(await asyncio.gather(*slots))
        await asyncio.gather(*(self.per_connection_slot(pool, factory, stats) for _ in sessions))
        return sessions

    async def run(self, ready: Connection, go: Event) -> WorkerResult:
        """Warm up, report ready, wait for the go signal, then run timed."""
        job = self.job
        warmup_stats, timed_stats = Stats(), Stats()
        sessions: list[SmtpSession | None] = [None] * job.connections
        if job.mode == "persistent":
            opening = (self._open_quietly(warmup_stats) for _ in sessions)
            sessions = list(await asyncio.gather(*opening))
        sessions = await self._run_phase(
            sessions, WorkPool(job.warmup), self.warmup_messages, warmup_stats
        )

        ready.send(("ready", None))
        if not await asyncio.to_thread(go.wait, GO_TIMEOUT):
            raise RuntimeError("no go signal from the parent process")

        timed_pool = WorkPool(job.messages)
        started, cpu_started = time.monotonic(), time.process_time()
        sessions = await self._run_phase(sessions, timed_pool, self.timed_messages, timed_stats)
        finished, cpu_used = time.monotonic(), time.process_time() - cpu_started
        if timed_pool.remaining:
            timed_stats.fail(
                "not attempted: every connection gave up after repeated errors",
                timed_pool.remaining,
            )
        await asyncio.gather(*(s.quit() for s in sessions if s is not None))
        return WorkerResult(timed_stats, warmup_stats, started, finished, cpu_used)


def _worker_entry(job: WorkerJob, channel: Connection, go: Event) -> None:
    """Entry point of a worker process (must be importable for spawn)."""
    # asyncio logs noisy tracebacks for connections the server drops; the
    # failures are accounted for in the results instead.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    try:
        if job.loop == "uvloop":
            import uvloop

            result = uvloop.run(Worker(job).run(channel, go))
        else:
            result = asyncio.run(Worker(job).run(channel, go))
    except Exception:
        channel.send(("error", traceback.format_exc()))
        raise  # the traceback also goes to stderr
    else:
        channel.send(("result", result))
    finally:
        channel.close()


# --------------------------------------------------------------------------
# Parent side: orchestration, server CPU, output
# --------------------------------------------------------------------------


def split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def split_proportionally(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder)."""
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_cpu_seconds(pids: Sequence[int]) -> float | None:
    """Sum of utime+stime of ``pids`` from /proc, or None if unreadable."""
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
            # Fields after the parenthesised command name; utime/stime are
            # fields 14 and 15 of the whole line.
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    return total / _CLOCK_TICKS


_SS_PID = re.compile(r"pid=(\d+)")


def find_listening_pids(port: int) -> list[int]:
    """PIDs listening on TCP ``port`` according to ``ss -ltnp`` (best effort)."""
    try:
        output = subprocess.run(
            ["ss", "-ltnpH"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    pids: list[int] = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[3].rsplit(":", 1)[-1] != str(port):
            continue
        for pid in map(int, _SS_PID.findall(" ".join(fields[5:]))):
            if pid not in pids:
                pids.append(pid)
    return pids


@dataclass(frozen=True)
class BenchOptions:
    client: ClientConfig
    count: int
    warmup: int
    processes: int
    server_pids: tuple[int, ...]
    loop: str = "asyncio"


def run_configuration(options: BenchOptions, size: int, concurrency: int, mode: Mode) -> RunResult:
    """Run one (size, concurrency, mode) configuration across worker processes."""
    processes = min(options.processes, concurrency)
    connections = split_evenly(concurrency, processes)
    messages = split_proportionally(options.count, connections)
    warmups = split_evenly(options.warmup, processes)
    run_id = uuid.uuid4().hex[:10]

    context = multiprocessing.get_context("spawn")
    go = context.Event()
    channels: dict[int, Connection] = {}
    workers: list[BaseProcess] = []
    for index in range(processes):
        job = WorkerJob(
            client=options.client,
            worker_index=index,
            run_id=run_id,
            size=size,
            mode=mode,
            connections=connections[index],
            messages=messages[index],
            warmup=warmups[index],
            loop=options.loop,
        )
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_entry,
            args=(job, sender, go),
            name=f"smtp-ingest-{index}",
            daemon=True,
        )
        process.start()
        sender.close()  # so that a dead worker shows up as EOF
        channels[index] = receiver
        workers.append(process)

    stats, warmup_stats = Stats(), Stats()
    results: dict[int, WorkerResult] = {}
    waiting_ready = set(channels)
    waiting_result = set(channels)
    cpu_before: float | None = None

    def lost(index: int, reason: str) -> None:
        stats.fail(f"worker {index} failed: {reason}", messages[index])
        waiting_ready.discard(index)
        waiting_result.discard(index)

    while waiting_result:
        if not waiting_ready and not go.is_set():
            cpu_before = read_cpu_seconds(options.server_pids) if options.server_pids else None
            go.set()
        open_channels = [channels[i] for i in waiting_result]
        for channel in multiprocessing.connection.wait(open_channels):
            assert isinstance(channel, Connection)
            index = next(i for i, c in channels.items() if c is channel)
            try:
                kind, payload = channel.recv()
            except EOFError:
                lost(index, "exited without reporting")
                continue
            if kind == "ready":
                waiting_ready.discard(index)
            elif kind == "result":
                assert isinstance(payload, WorkerResult)
                results[index] = payload
                waiting_result.discard(index)
            else:
                last_line = str(payload).strip().splitlines()[-1:] or ["?"]
                lost(index, last_line[0])
    if not go.is_set():
        go.set()
    cpu_after = read_cpu_seconds(options.server_pids) if options.server_pids else None

    for worker in workers:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
    for channel in channels.values():
        channel.close()

    for result in results.values():
        stats.merge(result.timed)
        warmup_stats.merge(result.warmup)
    # time.monotonic() is CLOCK_MONOTONIC on Linux: comparable across processes.
    elapsed = 0.0
    if results:
        elapsed = max(r.finished for r in results.values()) - min(
            r.started for r in results.values()
        )
    server_cpu = None
    if cpu_before is not None and cpu_after is not None:
        server_cpu = cpu_after - cpu_before
    return RunResult(
        size=size,
        concurrency=concurrency,
        mode=mode,
        tls=options.client.starttls,
        auth=options.client.user is not None,
        count=options.count,
        stats=stats,
        warmup=warmup_stats,
        elapsed=elapsed,
        server_cpu=server_cpu,
        processes=processes,
        client_cpu=sum(r.cpu for r in results.values()),
    )


def _positive_int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers: {text!r}")
    return values


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer: {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number: {text!r}")
    return value


def _server_pid(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return _positive_int(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected a PID or 'auto': {text!r}") from None


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp_ingest",
        description="Measure how fast an SMTP server ingests messages.",
        epilog="Latency is per message, from MAIL FROM sent to the final reply to DATA.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="server (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5587, help="server port (default 5587)")
    parser.add_argument(
        "--count",
        type=_positive_int,
        default=2000,
        help="timed messages per run (default 2000)",
    )
    parser.add_argument(
        "--sizes",
        type=_positive_int_list,
        default=[2048, 102400],
        help="comma-separated message sizes in bytes (default 2048,102400)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int_list,
        default=[1, 10, 50],
        help="comma-separated connection counts (default 1,10,50)",
    )
    parser.add_argument(
        "--mode",
        choices=["persistent", "per-connection", "both"],
        default="both",
        help="many messages per connection, one per connection, or both (default)",
    )
    parser.add_argument(
        "--starttls",
        action="store_true",
        help="upgrade with STARTTLS (certificate not verified)",
    )
    parser.add_argument("--user", help="AUTH PLAIN user (after STARTTLS when --starttls)")
    parser.add_argument("--password", help="AUTH PLAIN password")
    parser.add_argument(
        "--server-pid",
        type=_server_pid,
        help="server PID to sample CPU time from /proc, or 'auto' to find it with ss -ltnp",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="client event loop: uvloop (C) spends far less client CPU per connection, "
        "which matters when client and server share the machine; 'auto' (default) "
        "uses uvloop when it is installed (pip install uvloop)",
    )
    parser.add_argument(
        "--processes",
        type=_positive_int,
        default=2,
        help="client worker processes to split the connections across (default 2)",
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=10,
        help="untimed warmup messages before each run (default 10)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        help="seconds to wait for each reply (default 30)",
    )
    parser.add_argument(
        "--mail-from", default="bench@capture-bench.invalid", help="envelope sender"
    )
    parser.add_argument(
        "--rcpt-to", default="sink@capture-bench.invalid", help="envelope recipient"
    )
    parser.add_argument("--json", action="store_true", help="also print results as JSON lines")
    return parser


def _resolve_server_pids(spec: int | str | None, port: int) -> tuple[int, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, int):
        pids = find_listening_pids(port)
        if not pids:
            print(
                f"warning: --server-pid auto found no process listening on port {port};"
                " server CPU will not be reported",
                file=sys.stderr,
            )
        return tuple(pids)
    if read_cpu_seconds([spec]) is None:
        print(
            f"warning: cannot read /proc/{spec}/stat; server CPU will not be reported",
            file=sys.stderr,
        )
        return ()
    return (spec,)


def _resolve_loop(choice: str) -> str:
    """
    The client event loop to use: C{auto} picks uvloop when it is installed.
    """
    if choice != "auto":
        if choice == "uvloop":
            import uvloop  # noqa: F401 - fail here, not in every worker
        return choice
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark matrix described by ``argv``; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.password is not None and args.user is None:
        parser.error("--password needs --user")
    client = ClientConfig(
        host=args.host,
        port=args.port,
        starttls=args.starttls,
        user=args.user,
        password=args.password,
        mail_from=args.mail_from,
        rcpt_to=args.rcpt_to,
        timeout=args.timeout,
    )
    options = BenchOptions(
        client=client,
        count=args.count,
        warmup=args.warmup,
        processes=args.processes,
        server_pids=_resolve_server_pids(args.server_pid, args.port),
        loop=_resolve_loop(args.loop),
    )
    modes: tuple[Mode, ...] = MODES if args.mode == "both" else (args.mode,)

    header = {
        "type": "header",
        "host": client.host,
        "port": client.port,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processes": options.processes,
        "loop": options.loop,
        "count": options.count,
        "warmup": options.warmup,
        "tls": client.starttls,
        "auth": client.user is not None,
        "server_pids": list(options.server_pids),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(
        f"# smtp_ingest host={client.host} port={client.port}"
        f" python={header['python']} cpus={header['cpus']}"
        f" processes={options.processes} loop={options.loop}"
        f" count={options.count} warmup={options.warmup}"
        f" tls={_yes_no(client.starttls)} auth={_yes_no(client.user is not None)}"
        f" server_pid={','.join(map(str, options.server_pids)) or 'n/a'}"
        f" date={header['date']}",
        flush=True,
    )
    if args.json:
        print(json.dumps(header), flush=True)

    all_ok = True
    for size in args.sizes:
        for concurrency in args.concurrency:
            for mode in modes:
                result = run_configuration(options, size, concurrency, mode)
                all_ok = all_ok and result.stats.failed == 0
                print(result.human(), flush=True)
                for line in result.note_lines():
                    print(line, flush=True)
                if args.json:
                    print(json.dumps(result.as_json()), flush=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
