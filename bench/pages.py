"""Web page benchmark: how long Capture takes to render its pages with
100,000 stored messages.

Two stores, each filled (or reused) by ``bench/api.py``'s ``prepareData``:

``spread``   ``--data`` (default ``/var/tmp/capture-bench-100k``): 100,000
             messages over 1,000 public inboxes, the API bench's store.
``one``      ``--one-data`` (default ``/var/tmp/capture-bench-pages-1inbox``):
             100,000 messages in a single inbox, the worst case for an
             inbox page's count, deep paging and search.

On each it starts ``twistd capture`` (retention off), signs in with the
bench account's key (for the account pages), and sends ``--requests``
sequential GETs per page over one keep-alive connection with
``http.client``, timing each from the request to the last byte of the
answer. One client at a time on loopback, so the time is the server's
(render and store reads) plus a loopback round trip. It prints p50, p99
and mean per page after a line of conditions.

Pages: the home page; the inbox page's first page; a deep page (``before``
a cursor half-way down the inbox); a search for a common word (the page
fills at once) and for a word no message has (the search examines its
whole bounded window of 10,000 copies); a message page and the account
pages when those routes exist on this Capture (else skipped, with a note).

Usage::

    python bench/pages.py
    python bench/pages.py --requests 500 --stores one
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api import Server, inboxAddress, prepareData  # noqa: E402

_CSRF = re.compile(rb'<meta name="csrf-token" content="([^"]*)"')
_ROW = re.compile(rb'<a href="(/inbox/[^"]+)" class="open"')
_OLDER = re.compile(rb'href="[^"]*before=(\d+)[^"]*" rel="next"')


class Browser:
    """
    One keep-alive connection with its cookies.
    """

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def request(self, method: str, path: str, body: dict[str, str] | None = None
                ) -> tuple[int, bytes]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        answer = response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                self.cookies[key.strip()] = val.strip()
        found = _CSRF.search(answer)
        if found:
            self.csrf = found.group(1).decode()
        return response.status, answer

    def signIn(self, key: str) -> bool:
        self.request("GET", "/")
        status, _ = self.request("POST", "/signin", {"key": key, "csrf": self.csrf})
        return status == 303


def timePage(browser: Browser, paths: list[str], count: int) -> tuple[list[float], int]:
    """
    Milliseconds of C{count} GETs cycling through C{paths}, and how many
    were not answered 200.
    """
    times = []
    failed = 0
    for i in range(count):
        began = time.perf_counter()
        status, _ = browser.request("GET", paths[i % len(paths)])
        times.append((time.perf_counter() - began) * 1000)
        failed += status != 200
    return times, failed


def report(name: str, times: list[float], failed: int) -> None:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"  {name:<22} p50 {statistics.median(ordered):6.1f} ms   p99 {p99:6.1f} ms   "
          f"mean {statistics.fmean(ordered):6.1f} ms   non-200 {failed}", flush=True)


def benchStore(label: str, data: str, inboxes: int, key: str, requests: int,
               workdir: str) -> None:
    server = Server(data, os.path.join(workdir, label))
    os.makedirs(server.workdir, exist_ok=True)
    server.start()
    try:
        browser = Browser(server.address)
        signedIn = browser.signIn(key)
        quote = urllib.parse.quote
        boxes = [inboxAddress(i) for i in range(inboxes)]
        first = f"/inbox/{quote(boxes[0], safe='@')}"
        _, page = browser.request("GET", first)
        older = _OLDER.search(page)
        rows = _ROW.findall(page)
        # Half-way down the first inbox (uids ascend with time).
        deep = int(older.group(1)) // 2 if older else None
        print(f"{label}: store=100000 messages in {inboxes} inbox{'es' if inboxes > 1 else ''}"
              f" requests={requests} per page, sequential, one keep-alive connection"
              f" cores={os.cpu_count()} load={os.getloadavg()[0]:.1f} server=twistd capture",
              flush=True)
        pages: list[tuple[str, list[str]]] = [
            ("home", ["/"]),
            ("inbox first page", [f"/inbox/{quote(b, safe='@')}" for b in boxes[:requests]]),
        ]
        if deep is not None:
            pages.append(("inbox deep page", [f"{first}?before={deep}"]))
        pages += [
            ("search, common word", [f"{first}?q=order"]),
            ("search, no match", [f"{first}?q=zzqqxx"]),
        ]
        if rows:
            status, _ = browser.request("GET", rows[0].decode())
            if status == 200:
                pages.append(("message page", [r.decode() for r in rows]))
            else:
                print(f"  message page: skipped (GET {rows[0].decode()} answered {status}: "
                      "no message page on this Capture)")
        if signedIn:
            for path in ("/account", "/account/settings"):
                status, _ = browser.request("GET", path)
                if status == 200:
                    pages.append((path, [path]))
                else:
                    print(f"  {path}: skipped (answered {status}: no such page on this Capture)")
        for name, paths in pages:
            timePage(browser, paths, min(20, requests))
            report(name, *timePage(browser, paths, requests))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/var/tmp/capture-bench-100k")
    parser.add_argument("--one-data", default="/var/tmp/capture-bench-pages-1inbox")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--stores", default="spread,one")
    parser.add_argument("--fill-outstanding", type=int, default=4000)
    options = parser.parse_args()
    stores = {"spread": (options.data, 1000), "one": (options.one_data, 1)}
    with tempfile.TemporaryDirectory(prefix="capture-bench-pages-") as workdir:
        for label in options.stores.split(","):
            data, inboxes = stores[label]
            key = prepareData(data, 100_000, inboxes, options.fill_outstanding)
            benchStore(label, data, inboxes, key, options.requests, workdir)


if __name__ == "__main__":
    main()
