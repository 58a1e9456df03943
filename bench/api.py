"""HTTP API benchmark: Capture's Mailsac-compatible reads under load.

Fills a data directory with ``--messages`` realistic messages (about 2 KiB:
From, To, Subject, Date, Message-ID, a text part; every third one with an
HTML alternative) spread over ``--inboxes`` public inboxes, starts
``twistd capture`` on it (or uses ``--http host:port``), and drives four
read paths with ``wrk`` at ``--concurrency`` keep-alive connections:

``list``      ``GET /api/addresses/{addr}/messages?limit=50`` over all inboxes
``metadata``  ``GET /api/addresses/{addr}/messages/{id}``
``text``      ``GET /api/text/{addr}/{id}``
``raw``       ``GET /api/raw/{addr}/{id}``

For each it prints requests/s, p50 and p99 latency (wrk's ``--latency``
histogram) and the count of non-2xx answers, after a line with the
conditions (store size, message size, concurrency, duration, cores, load).

Usage::

    python bench/api.py                                   # 100,000 messages
    python bench/api.py --messages 1000000 --data /var/tmp/capture-1m
    python bench/api.py --http 127.0.0.1:8025 --key k_... # an external server

The fill opens a ``SQLiteStore`` on the data directory in this process and
calls ``addMessage`` with thousands outstanding, so the writer commits
hundreds per transaction; it is several times faster than SMTP. With
``--data DIR`` the filled directory is kept and a later run with the same
``--messages`` and ``--inboxes`` reuses it (``bench-fill.json`` records
what it holds and the API key of the ``bench`` account). Without it a
temporary directory is used and removed.

The server runs with retention off (``--public-inbox-limit 0
--public-max-age 0 --retention-interval 0``): a public inbox keeps 500
copies by default, which would trim the store below the asked size.

Message ids for the per-message paths are found through the API itself
(the newest 50 of up to ``--sample-inboxes`` inboxes), so an external
server works the same way. ``wrk`` comes from Debian's package
(``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

_FILL_RECORD = "bench-fill.json"
_DOMAIN = "bench.example"
_LISTEN_RE = re.compile(r"HTTP listening on ([^\s:]+):(\d+)")
_KEY_RE = re.compile(r"Created account (\S+); its API key \(shown this once\): (k_\w+)")

_WORDS = (
    "account order invoice shipping password reset confirm welcome team update "
    "report weekly meeting project release notes customer support ticket status "
    "payment receipt delivery schedule review request access token verify link"
).split()


def inboxAddress(index: int) -> str:
    return f"user{index:05d}@{_DOMAIN}"


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def makeMessage(seq: int, to: str, when: float, rng: random.Random) -> bytes:
    """
    One realistic message of about 2 KiB: the headers a mail library writes,
    a text part with a link, and every third message an HTML alternative.
    """
    sender = f"noreply{seq % 97}@sender{seq % 13}.example"
    subject = _sentence(rng, 5)[:-1] + f" #{seq}"
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when))
    link = f"https://app.example/confirm/{seq:08d}"
    paragraphs = [_sentence(rng, 14) for _ in range(7)]
    headers = (
        f"From: Sender {seq % 97} <{sender}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: <{seq}.{int(when)}@sender{seq % 13}.example>\r\n"
        "MIME-Version: 1.0\r\n"
    )
    text = "Hello,\r\n\r\n" + "\r\n\r\n".join(paragraphs) + f"\r\n\r\nOpen {link}\r\n"
    if seq % 3:
        # Text only: pad to about 2 KiB with another paragraph or two.
        text += "\r\n" + "\r\n\r\n".join(_sentence(rng, 14) for _ in range(6)) + "\r\n"
        return (
            headers + "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n" + text
        ).encode()
    html = (
        "<html><body>"
        + "".join(f"<p>{p}</p>" for p in paragraphs)
        + f'<p><a href="{link}">Confirm</a></p></body></html>\r\n'
    )
    boundary = f"=_alt_{seq}"
    return (
        headers + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"
        f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}"
        f"--{boundary}--\r\n"
    ).encode()


def generateMessages(messages: int, inboxes: int,
                     start: float | None = None) -> Iterator[tuple[int, str, float, bytes]]:
    """
    The bench's fill, oldest first, as C{(seq, to, when, raw)}: message
    C{seq} to inbox C{seq % inboxes}, received times spread over the day
    before C{start} (default now). Every bench that needs "the same
    messages" (a Capture store here, Dovecot's maildir in C{dovecot.py})
    takes them from this one generator, so only the dates differ.
    """
    rng = random.Random(1)
    first = (time.time() if start is None else start) - 86400
    step = 86400 / messages
    for seq in range(messages):
        to = inboxAddress(seq % inboxes)
        when = first + seq * step
        yield seq, to, when, makeMessage(seq, to, when, rng)


# Filling


def _fillStore(data: str, messages: int, inboxes: int, outstanding: int) -> str:
    """
    Add C{messages} messages to a new store in C{data} through
    C{SQLiteStore.addMessage}, C{outstanding} at a time; return the API key
    of the C{bench} account it creates.
    """
    from twisted.internet import defer, task

    from capture.ids import newQueueId
    from capture.ingest import prepare
    from capture.store.model import Envelope, Recipient
    from capture.store.sqlite import SQLiteStore

    result: dict[str, str] = {}

    async def fill(reactor: Any) -> None:
        store = SQLiteStore(data, reactor)
        store.start()
        try:
            _, key = await store.createAccount("bench")
            result["key"] = key
            began = time.monotonic()
            fill = generateMessages(messages, inboxes)
            filled = 0
            while filled < messages:
                batch = []
                for seq, to, when, raw in itertools.islice(fill, outstanding):
                    envelope = Envelope(
                        queueId=newQueueId(), mailFrom=f"noreply{seq % 97}@sender.example",
                        recipients=(Recipient(to, to),), account=None, helo="bench",
                        ip="192.0.2.1", via="127.0.0.1", tls=True, received=int(when * 1000),
                    )
                    batch.append(store.addMessage(prepare(envelope, raw)))
                filled += len(batch)
                await defer.gatherResults(batch, consumeErrors=True)
                elapsed = time.monotonic() - began
                print(
                    f"\rfilled {filled}/{messages} ({filled / elapsed:.0f} msg/s)",
                    end="", file=sys.stderr, flush=True,
                )
            print(file=sys.stderr)
        finally:
            await store.stop()

    try:
        task.react(lambda reactor: defer.ensureDeferred(fill(reactor)))
    except SystemExit as stop:
        if stop.code:
            raise
    finally:
        # react() left its SIGTERM handler (stop the reactor: a no-op now)
        # installed, so the pool's terminate() would wait for this worker
        # forever; restore the default so it can end it.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return result["key"]


def prepareData(data: str, messages: int, inboxes: int, outstanding: int) -> str:
    """
    Reuse C{data} if it holds this fill, else fill it (it must be empty or
    missing); return the bench account's API key.
    """
    record = os.path.join(data, _FILL_RECORD)
    if os.path.exists(record):
        with open(record) as f:
            held = json.load(f)
        if (held["messages"], held["inboxes"]) == (messages, inboxes):
            print(f"reusing {data}: {messages} messages in {inboxes} inboxes", file=sys.stderr)
            return str(held["key"])
        sys.exit(f"{data} holds {held['messages']} messages in {held['inboxes']} inboxes; "
                 "give another --data")
    if os.path.exists(data) and os.listdir(data):
        sys.exit(f"{data} is not empty and has no {_FILL_RECORD}")
    began = time.monotonic()
    # A child process: the reactor runs once per process, and the fill's
    # memory and threads are gone before the measured server starts.
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        key = pool.apply(_fillStore, (data, messages, inboxes, outstanding))
    print(f"filled in {time.monotonic() - began:.0f} s", file=sys.stderr)
    with open(record, "w") as f:
        json.dump({"messages": messages, "inboxes": inboxes, "key": key}, f)
    return key


# The server


class Server:
    """
    C{twistd -n capture} on a data directory, HTTP on an ephemeral loopback
    port, retention off.
    """

    def __init__(self, data: str, workdir: str) -> None:
        self.data = data
        self.workdir = workdir
        self.logPath = os.path.join(workdir, "server.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, timeout: float = 900.0) -> None:
        # Generous: a store filled by an older Capture is migrated before
        # the server listens (about 2.5 minutes for 1M messages here).
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        loopback = "tcp:0:interface=127.0.0.1"
        args = [
            twistd, "-n", "--pidfile=", "capture", "--data", self.data,
            "--tls-dir", os.path.join(self.workdir, "tls"),
            "--smtp", loopback, "--smtps", loopback, "--http", loopback,
            "--public-inbox-limit", "0", "--public-max-age", "0", "--retention-interval", "0",
        ]
        with open(self.logPath, "wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.logPath) as f:
                match = _LISTEN_RE.search(f.read())
            if match:
                self.address = f"{match.group(1)}:{match.group(2)}"
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        with open(self.logPath) as f:
            sys.exit(f"capture did not start:\n{f.read()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# Load


def _get(base: str, path: str, key: str | None) -> Any:
    request = urllib.request.Request(base + path, headers={"Mailsac-Key": key} if key else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def samplePaths(base: str, key: str | None, inboxes: int, sample: int,
                rng: random.Random) -> dict[str, list[str]]:
    """
    The paths each scenario rotates through: listings of every inbox,
    and for the per-message paths, ids found by listing C{sample} inboxes.
    """
    quote = urllib.parse.quote
    addresses = [inboxAddress(i) for i in range(inboxes)]
    rng.shuffle(addresses)
    ids: list[tuple[str, str]] = []
    for address in addresses[:sample]:
        listed = _get(base, f"/api/addresses/{quote(address)}/messages?limit=50", key)
        ids.extend((address, m["_id"]) for m in listed)
    if not ids:
        sys.exit("no messages found: is this the filled store?")
    rng.shuffle(ids)
    return {
        "list": [f"/api/addresses/{quote(a)}/messages?limit=50" for a in addresses],
        "metadata": [f"/api/addresses/{quote(a)}/messages/{i}" for a, i in ids],
        "text": [f"/api/text/{quote(a)}/{i}" for a, i in ids],
        "raw": [f"/api/raw/{quote(a)}/{i}" for a, i in ids],
    }


def _luaScript(paths: list[str], key: str | None, directory: str) -> str:
    """
    A wrk script that sends the paths in turn, each thread from its own
    offset, with the API key header.
    """
    path = os.path.join(directory, f"paths-{len(paths)}-{abs(hash(tuple(paths)))}.lua")
    lines = ["local paths = {"]
    lines.extend(f"  {json.dumps(p)}," for p in paths)
    lines.append("}")
    if key:
        lines.append(f'wrk.headers["Mailsac-Key"] = {json.dumps(key)}')
    lines.append(
        "local i = 0\n"
        "function init(args) i = math.random(#paths) end\n"
        "function request()\n"
        "  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\n'
        "end\n"
    )
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def runWrk(address: str, script: str, connections: int, threads: int,
           duration: float) -> dict[str, Any]:
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
         "-s", script, f"http://{address}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    requests = re.search(r"(\d+) requests in", output)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    if not (rate and p50 and p99 and requests):
        sys.exit(f"cannot read wrk's output:\n{output}")
    return {
        "rps": float(rate.group(1)), "p50": _ms(p50.group(1)), "p99": _ms(p99.group(1)),
        "requests": int(requests.group(1)), "non2xx": int(bad.group(1)) if bad else 0,
        "socketErrors": errors.group(1) if errors else "",
    }


def _cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rawSize(base: str, key: str | None, path: str) -> int:
    request = urllib.request.Request(base + path, headers={"Mailsac-Key": key} if key else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return len(response.read())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--inboxes", type=int, default=1000)
    parser.add_argument("--data", help="data directory to fill or reuse (kept)")
    parser.add_argument("--http", help="host:port of a running server (no fill, no start)")
    parser.add_argument("--key", help="API key (default: the bench account's, or none)")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each scenario")
    parser.add_argument("--scenarios", default="list,metadata,text,raw")
    parser.add_argument("--sample-inboxes", type=int, default=100)
    parser.add_argument("--fill-outstanding", type=int, default=4000,
                        help="addMessage calls in flight while filling")
    parser.add_argument("--json", action="store_true", help="also print each result as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    scenarios = options.scenarios.split(",")
    workdir = tempfile.mkdtemp(prefix="capture-bench-api-")
    server: Server | None = None
    try:
        key = options.key
        if options.http:
            address = options.http
        else:
            data = options.data or os.path.join(workdir, "data")
            filled = prepareData(data, options.messages, options.inboxes,
                                 options.fill_outstanding)
            key = key or filled
            server = Server(data, workdir)
            server.start()
            address = server.address
        base = f"http://{address}"
        paths = samplePaths(base, key, options.inboxes, options.sample_inboxes,
                            random.Random(2))
        sizes = [_rawSize(base, key, p) for p in paths["raw"][:200]]
        print(
            f"store={options.messages} messages in {options.inboxes} inboxes"
            f" message~{sum(sizes) // len(sizes)}B (raw, mean of {len(sizes)})"
            f" concurrency={options.concurrency} (wrk -t{options.threads}, keep-alive)"
            f" duration={options.duration:g}s cores={os.cpu_count()}"
            f" load={os.getloadavg()[0]:.1f} server={'external ' + address if options.http else 'twistd capture'}"
            f" key={'yes' if key else 'no'}",
            flush=True,
        )
        for name in scenarios:
            script = _luaScript(paths[name], key, workdir)
            if options.warmup:
                runWrk(address, script, options.concurrency, options.threads, options.warmup)
            cpuBefore = _cpuSeconds(server.pid) if server else None
            result = runWrk(address, script, options.concurrency, options.threads,
                            options.duration)
            line = (
                f"{name:<9} {result['rps']:8.0f} req/s  p50={result['p50']:.2f}ms"
                f"  p99={result['p99']:.2f}ms  requests={result['requests']}"
                f"  non2xx={result['non2xx']}"
            )
            if server and cpuBefore is not None:
                cpu = _cpuSeconds(server.pid) - cpuBefore
                result["serverCpuMsPerRequest"] = 1000 * cpu / max(result["requests"], 1)
                line += f"  server_cpu={result['serverCpuMsPerRequest']:.3f}ms/req"
            if result["socketErrors"]:
                line += f"  socket_errors=({result['socketErrors']})"
            print(line, flush=True)
            if options.json:
                print(json.dumps({"scenario": name, "messages": options.messages, **result}))
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
