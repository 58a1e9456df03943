"""A/B of two Capture checkouts on SMTP ingest: both servers up, runs paired.

On a small machine shared with other work, server CPU per message moves by
a quarter from one minute to the next; comparing a run of one version with
a run of the other made minutes apart says little.  This starts
``twistd capture`` from each checkout (its own ``.venv``; a fresh data and
TLS directory each, ``--accept-any-auth --allow-insecure-auth
--allow-anonymous``, only the SMTP listener, on loopback), then for each
round runs ``bench/smtp_ingest.py`` (2 KiB, C = 10, a new connection per
message by default) against one and then the other, in ABBA order (A
first in odd rounds, B first in even ones), configuration by
configuration, so that each pair of figures is measured seconds apart.

Every run is printed (tree, configuration, load, rate, server CPU per
message), then the medians of each tree and configuration, and the
median of the paired changes B/A - 1 of server CPU per message.

Usage::

    python bench/smtp_ab.py /path/to/base /path/to/branch
    python bench/smtp_ab.py A B --configs tls --rounds 10 --count 1500
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_CONFIGS = {
    "plain": [],
    "auth": ["--user", "bench@capture-bench.invalid", "--password", "p"],
    "tls": ["--starttls", "--user", "bench@capture-bench.invalid", "--password", "p"],
}


def _start(tree: str, directory: str) -> tuple[subprocess.Popen[bytes], int]:
    """
    Start C{tree}'s server; its process and the SMTP port it took.
    """
    log = os.path.join(directory, "log")
    server = subprocess.Popen(
        [os.path.join(tree, ".venv", "bin", "twistd"), "-n", "--pidfile=", "capture",
         "--data", os.path.join(directory, "data"), "--tls-dir", os.path.join(directory, "tls"),
         "--accept-any-auth", "--allow-insecure-auth", "--allow-anonymous",
         "--smtp", "tcp:0:interface=127.0.0.1", "--smtps", "none", "--pop3", "none",
         "--pop3s", "none", "--imap", "none", "--imaps", "none", "--http", "none"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=directory,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        with open(log) as f:
            match = re.search(r"SMTP \(STARTTLS\) listening on [\d.]+:(\d+)", f.read())
        if match:
            return server, int(match.group(1))
        if server.poll() is not None:
            break
    server.kill()
    with open(log) as f:
        raise SystemExit(f"{tree}: the server did not start:\n{f.read()}")


def _run(port: int, pid: int, config: str, args: argparse.Namespace) -> dict[str, object]:
    ingest = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smtp_ingest.py")
    out = subprocess.run(
        [sys.executable, ingest, "--port", str(port), "--sizes", str(args.size),
         "--concurrency", str(args.concurrency), "--mode", args.mode, "--count", str(args.count),
         "--server-pid", str(pid), "--json", *_CONFIGS[config]],
        capture_output=True, text=True, timeout=600,
    ).stdout
    for line in out.splitlines():
        if line.startswith("{") and '"type": "result"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    raise SystemExit(f"smtp_ingest printed no result:\n{out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="checkout A (with its .venv)")
    parser.add_argument("b", help="checkout B (with its .venv)")
    parser.add_argument("--configs", default="plain,auth,tls",
                        help="comma-separated, of plain, auth, tls (default: all three)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--count", type=int, default=1500, help="messages per run")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--mode", default="per-connection", choices=("per-connection", "persistent"))
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    for config in configs:
        if config not in _CONFIGS:
            parser.error(f"unknown configuration {config!r}")
    trees = {"A": os.path.abspath(args.a), "B": os.path.abspath(args.b)}
    directories = {name: tempfile.mkdtemp(prefix=f"capture-ab-{name}-") for name in trees}
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    pairs: dict[str, list[float]] = {config: [] for config in configs}
    try:
        for name, tree in trees.items():
            servers[name] = _start(tree, directories[name])
            print(f"# {name} = {tree} pid={servers[name][0].pid} port={servers[name][1]}")
        print(f"# smtp_ab rounds={args.rounds} count={args.count} size={args.size} "
              f"concurrency={args.concurrency} mode={args.mode} cpus={os.cpu_count()} "
              f"date={time.strftime('%Y-%m-%dT%H:%M:%S')}", flush=True)
        for round in range(1, args.rounds + 1):
            order = ["A", "B"] if round % 2 else ["B", "A"]
            for config in configs:
                got: dict[str, float] = {}
                for name in order:
                    server, port = servers[name]
                    with open("/proc/loadavg") as f:
                        load = f.read().split()[0]
                    result = _run(port, server.pid, config, args)
                    ms = result["server_cpu_ms_per_msg"]
                    print(f"round={round} tree={name} config={config} load={load} "
                          f"ok={result['ok']} fail={result['fail']} rate={result['rate_msg_s']} "
                          f"server_cpu={ms}ms/msg", flush=True)
                    if isinstance(ms, float):
                        got[name] = ms
                        cpu.setdefault((name, config), []).append(ms)
                if len(got) == 2:
                    pairs[config].append(got["B"] / got["A"] - 1)
        for config in configs:
            for name in trees:
                values = cpu.get((name, config), [])
                if values:
                    print(f"median tree={name} config={config} "
                          f"server_cpu={statistics.median(values):.2f}ms/msg runs={len(values)}")
            if pairs[config]:
                print(f"paired config={config} B/A-1 median={statistics.median(pairs[config]):+.1%} "
                      f"each=" + ",".join(f"{p:+.0%}" for p in pairs[config]))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(30)
        for directory in directories.values():
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
