"""Login rate benchmark: a new connection per login, IMAP and POP3, plain and TLS.

Starts ``twistd capture`` on a fresh data directory with its IMAP, IMAPS,
POP3 and POP3S listeners on loopback (``--allow-insecure-auth``, so the plain
listeners take a login too) and, for each listener in turn, runs
``--concurrency`` client loops that each connect (implicit TLS for IMAPS and
POP3S, the certificate not verified), read the greeting, log in with the
first account's API key (IMAP ``LOGIN``, POP3 ``USER``/``PASS``), log out
(``LOGOUT``, ``QUIT``), read the answer and drop the connection, until
``--count`` logins are done.  The listeners take turns, ``--rounds`` times,
so plain and TLS see the same load; each line gives the login rate and the
server's CPU per login (utime+stime of ``/proc/PID/stat``), and the summary
the medians and the TLS/plain ratio of each protocol within the same run.

The client is asyncio on one process per ``--processes`` (uvloop when
installed, as ``bench/smtp_ingest.py``); on a small machine shared with the
server its own TLS handshakes cost about as much CPU as the server's.

Usage::

    python bench/tls_logins.py                      # 1000 logins x 3 rounds
    python bench/tls_logins.py --count 2000 --rounds 5 --concurrency 10
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

_LISTENERS = ("imap", "imaps", "pop3", "pop3s")
_LABELS = {"imap": "IMAP (STARTTLS)", "imaps": "IMAPS (implicit TLS)",
           "pop3": "POP3 (STLS)", "pop3s": "POP3S (implicit TLS)"}


def _cpuTicks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


async def _until(reader: asyncio.StreamReader, prefix: bytes) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed early")
        if line.startswith(prefix):
            return line


async def _login(kind: str, port: int, context: ssl.SSLContext | None, key: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname="" if context else None)
    try:
        if kind.startswith("imap"):
            await reader.readline()
            writer.write(f"a LOGIN admin {key}\r\n".encode())
            if not (await _until(reader, b"a ")).startswith(b"a OK"):
                raise RuntimeError("LOGIN refused")
            writer.write(b"b LOGOUT\r\n")
            await _until(reader, b"b ")
        else:
            await reader.readline()
            writer.write(f"USER admin\r\nPASS {key}\r\n".encode())
            await _until(reader, b"+OK")
            if not (await _until(reader, b"")).startswith(b"+OK"):
                raise RuntimeError("PASS refused")
            writer.write(b"QUIT\r\n")
            await _until(reader, b"+OK")
    finally:
        # Dropped, not closed: the figure is the login, not how the server
        # ends a session.
        writer.transport.abort()


async def _loops(kind: str, port: int, key: str, count: int, concurrency: int) -> int:
    context = None
    if kind.endswith("s"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    left = [count]
    failures = [0]

    async def loop() -> None:
        while left[0] > 0:
            left[0] -= 1
            try:
                await _login(kind, port, context, key)
            except (OSError, RuntimeError, ConnectionError):
                failures[0] += 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return failures[0]


def _worker(args: tuple[str, int, str, int, int]) -> int:
    try:
        import uvloop  # type: ignore[import-not-found]

        return uvloop.run(_loops(*args))  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run(_loops(*args))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="logins per listener and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--listeners", default=",".join(_LISTENERS),
                        help="which to time, comma-separated (default: all four)")
    parser.add_argument("--pause", type=float, default=0,
                        help="seconds to wait after start (to attach a profiler)")
    args = parser.parse_args(argv)
    timed = [n for n in _LISTENERS if n in args.listeners.split(",")]

    directory = tempfile.mkdtemp(prefix="capture-logins-")
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    listener = "tcp:0:interface=127.0.0.1"
    log = open(os.path.join(directory, "log"), "w+")
    server = subprocess.Popen(
        [twistd, "-n", "--pidfile=", "capture", "--data", os.path.join(directory, "data"),
         "--tls-dir", os.path.join(directory, "tls"), "--allow-insecure-auth",
         "--smtp", "none", "--smtps", "none", "--http", "none",
         *[a for name in _LISTENERS for a in (f"--{name}", listener)]],
        stdout=log, stderr=subprocess.STDOUT, cwd=directory,
    )
    try:
        ports: dict[str, int] = {}
        key = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (key is None or len(ports) < 4):
            time.sleep(0.2)
            text = open(log.name).read()
            for name in _LISTENERS:
                match = re.search(re.escape(_LABELS[name]) + r" listening on [\d.]+:(\d+)", text)
                if match:
                    ports[name] = int(match.group(1))
            found = re.search(r"API key \(shown this once\): (\S+)", text)
            key = found.group(1) if found else None
        if key is None or len(ports) < 4:
            raise SystemExit("the server did not start:\n" + open(log.name).read())
        print(f"# server pid={server.pid}", flush=True)
        time.sleep(args.pause)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        print(f"# tls_logins count={args.count} rounds={args.rounds} "
              f"concurrency={args.concurrency} processes={args.processes} cpus={os.cpu_count()} "
              f"load={load} date={time.strftime('%Y-%m-%dT%H:%M:%S')}")
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in timed}
        with multiprocessing.Pool(args.processes) as pool:
            for name in timed:  # warm up: imports, first connections
                pool.map(_worker, [(name, ports[name], key, 20, 2)] * args.processes)
            for round in range(1, args.rounds + 1):
                for name in timed:
                    share = args.count // args.processes
                    conc = max(1, args.concurrency // args.processes)
                    before, start = _cpuTicks(server.pid), time.monotonic()
                    failed = sum(pool.map(_worker, [(name, ports[name], key, share, conc)]
                                          * args.processes))
                    elapsed, ticks = time.monotonic() - start, _cpuTicks(server.pid) - before
                    done = share * args.processes
                    rate = (done - failed) / elapsed
                    cpu = ticks / os.sysconf("SC_CLK_TCK") / done * 1000
                    results[name].append((rate, cpu))
                    print(f"round={round} listener={name} logins={done} failed={failed} "
                          f"elapsed={elapsed:.2f}s rate={rate:.0f}/s server_cpu={cpu:.2f}ms/login",
                          flush=True)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        medians = {n: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
                   for n, v in results.items()}
        for name in timed:
            rate, cpu = medians[name]
            print(f"median listener={name} rate={rate:.0f}/s server_cpu={cpu:.2f}ms/login")
        for plain, tls in (("imap", "imaps"), ("pop3", "pop3s")):
            if plain not in medians or tls not in medians:
                continue
            print(f"ratio {tls}/{plain} rate={medians[tls][0] / medians[plain][0]:.2f} "
                  f"server_cpu={medians[tls][1] / medians[plain][1]:.2f}")
        print(f"# end load={load}")
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
