"""Signed-in pages benchmark: how long C{/account} and C{/account/settings}
take with a large unified inbox.

Fills (or reuses, with ``--data``) a store as ``bench/api.py`` does:
``--messages`` messages over ``--inboxes`` inboxes of ``bench.example``,
then makes ``bench.example`` a private domain of the ``bench`` account, so
every message is in its unified inbox.  Starts ``twistd capture`` on it,
signs in through ``POST /signin`` and times sequential GETs (one client,
loopback, so each time is the server's time plus a loopback round trip):

``first``     ``/account`` (newest 50, unread count over the whole inbox)
``middle``    ``/account?skip=<half>``
``cursor``    ``/account?before=<uid>`` (the same page by the Older link's cursor)
``last``      ``/account?skip=<messages - 50>``
``search``    ``/account?q=invoice`` (newest 100 matches)
``settings``  ``/account/settings`` (keys, addresses, domains, usage)

Prints, after the conditions, the median, 90th and 99th percentile of each.

Usage::

    python bench/account_pages.py                      # 100,000 messages
    python bench/account_pages.py --data /var/tmp/capture-100k --requests 50
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api import _DOMAIN, Server, prepareData  # noqa: E402

_CSRF = re.compile(rb'<meta name="csrf-token" content="([^"]*)"')
_OLDER = re.compile(rb'href="/account\?before=(\d+)" rel="next"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _signedIn(base: str, key: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect
    )
    with opener.open(base + "/") as response:
        found = _CSRF.search(response.read())
    assert found
    body = urllib.parse.urlencode({"key": key, "csrf": found.group(1).decode()}).encode()
    try:
        opener.open(base + "/signin", data=body)
    except urllib.error.HTTPError as answer:
        if answer.code != 303:
            raise
    return opener


def _time(opener: urllib.request.OpenerDirector, url: str, requests: int) -> list[float]:
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        with opener.open(url) as response:
            response.read()
            assert response.status == 200, response.status
        times.append((time.perf_counter() - began) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--inboxes", type=int, default=1000)
    parser.add_argument("--data", help="data directory to fill or reuse (kept)")
    parser.add_argument("--requests", type=int, default=30, help="GETs per page")
    options = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="capture-bench-pages-")
    data = options.data or os.path.join(workdir, "data")
    try:
        key = prepareData(data, options.messages, options.inboxes, 4000)
        subprocess.run(
            [sys.executable, "-m", "capture.cli", "--data", data, "domain", "add", "bench",
             _DOMAIN], capture_output=True, check=False,
        )
        server = Server(data, workdir)
        server.start()
        try:
            base = f"http://{server.address}"
            opener = _signedIn(base, key)
            half = options.messages // 2
            with opener.open(f"{base}/account?skip={max(0, half - 50)}") as response:
                older = _OLDER.search(response.read())
            pages = {
                "first": "/account",
                "middle": f"/account?skip={half}",
                "cursor": f"/account?before={older.group(1).decode() if older else 0}",
                "last": f"/account?skip={max(0, options.messages - 50)}",
                "search": "/account?q=invoice",
                "settings": "/account/settings",
            }
            print(f"{options.messages} messages in {options.inboxes} inboxes of a private "
                  f"domain; {options.requests} sequential GETs per page, one client on "
                  f"loopback; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
            for name, path in pages.items():
                _time(opener, base + path, 2)
                times = sorted(_time(opener, base + path, options.requests))
                p90 = times[int(len(times) * 0.9) - 1]
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                print(f"{name:9} {path:28} median {statistics.median(times):7.1f} ms"
                      f"   p90 {p90:7.1f} ms   p99 {p99:7.1f} ms")
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
