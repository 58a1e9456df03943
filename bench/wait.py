"""Wait-for-message benchmark: how soon a waiting HTTP client gets new mail.

Each of N rounds starts ``GET /api/addresses/{fresh}/messages/wait`` on a
fresh address, gives the server a moment to start listening, sends one
message to that address over one persistent SMTP connection (STARTTLS +
AUTH), and records the time from the SMTP ``250`` reply to the complete HTTP
response.  Prints p50/p99/max and the conditions.  Target: p99 < 50 ms.

Usage::

    # against a running server (the account name is found with /api/me)
    python bench/wait.py --http 127.0.0.1:8025 --smtp 127.0.0.1:5587 --key k_...

    # or let it start its own server (twistd capture on loopback, temporary data)
    python bench/wait.py --rounds 500

The wait carries ``since`` (the round's start), so a round whose message
lands before the server listens is still answered (from the store rather
than from the new-message event); ``--settle`` (ms, default 20) is the pause
between sending the wait and sending the message.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import secrets
import smtplib
import ssl
import statistics
import sys
import time


def _hostPort(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, not {text!r}")
    return host, int(port)


def _account(api: tuple[str, int], key: str) -> str:
    connection = _connection(api)
    connection.request("GET", "/api/me", headers={"Mailsac-Key": key})
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    if response.status != 200:
        raise SystemExit(f"/api/me answered {response.status}: {body}")
    return str(body["_id"])


def _connection(api: tuple[str, int]) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(api[0], api[1], timeout=60)


def run(api: tuple[str, int], smtp: tuple[str, int], key: str, user: str, rounds: int,
        settle: float, size: int) -> list[float]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = smtplib.SMTP(smtp[0], smtp[1], timeout=60)
    client.starttls(context=context)
    client.login(user, key)
    connection = _connection(api)
    padding = b"x" * max(0, size - 100)
    latencies = []
    for i in range(rounds):
        address = f"wait-{secrets.token_hex(6)}@bench.example"
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
        connection.request(
            "GET",
            f"/api/addresses/{address}/messages/wait?timeout=30&since="
            + since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            headers={"Mailsac-Key": key},
        )
        time.sleep(settle)
        message = b"Subject: round %d\r\n\r\n%s\r\n" % (i, padding)
        client.sendmail("bench@example.com", [address], message)
        sent = time.perf_counter()
        response = connection.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - sent)
        if response.status != 200 or json.loads(body)["inbox"] != address:
            raise SystemExit(f"round {i}: {response.status} {body[:200]!r}")
    client.quit()
    connection.close()
    return latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--http", type=_hostPort, help="the API (host:port)")
    parser.add_argument("--smtp", type=_hostPort, help="SMTP with STARTTLS (host:port)")
    parser.add_argument("--key", help="an API key (its account sends the mail)")
    parser.add_argument("--user", help="the AUTH user name (default: the key's account)")
    parser.add_argument("--rounds", type=int, default=200, help="rounds (default 200)")
    parser.add_argument("--settle", type=float, default=20,
                        help="ms between sending the wait and the message (default 20)")
    parser.add_argument("--size", type=int, default=1024, help="message size (default 1024)")
    options = parser.parse_args(argv)
    server = None
    if options.http is None or options.smtp is None or options.key is None:
        if options.http or options.smtp or options.key:
            parser.error("give --http, --smtp and --key together, or none to start a server")
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from tests.harness import CaptureServer

        server = CaptureServer().start()
        options.http = ("127.0.0.1", server.ports["http"])
        options.smtp = ("127.0.0.1", server.ports["smtp"])
        options.key = server.key
    try:
        user = options.user or _account(options.http, options.key)
        latencies = run(options.http, options.smtp, options.key, user, options.rounds,
                        options.settle / 1000, options.size)
    finally:
        if server is not None:
            server.stop()
    ms = [1000 * x for x in latencies]
    print(
        f"rounds={len(ms)} size={options.size}B settle={options.settle:g}ms "
        f"server={'own (twistd capture, loopback)' if server else 'given'} "
        f"smtp=STARTTLS+AUTH persistent http=keep-alive cpus={os.cpu_count()}"
    )
    print(
        f"SMTP 250 -> HTTP response: p50={statistics.median(ms):.2f}ms "
        f"p99={_percentile(ms, 0.99):.2f}ms max={max(ms):.2f}ms mean={statistics.fmean(ms):.2f}ms"
    )


if __name__ == "__main__":
    main()
