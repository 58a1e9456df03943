"""
The HTTP listener under hostile input, against a real server of its own:
malformed request lines and headers over raw sockets, a C{Host} that is
not a host name, percent-encoded garbage in every path parameter of every
route (API and pages, taken from the Klein route maps), bad query values,
bad bodies and content types.  Nothing may answer 5xx; an API refusal is
Mailsac's JSON error body, a page's refusal is the pages' HTML error page;
the server's log holds no traceback; and the next client is served with
the mail stored before the fuzzing.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import secrets
import socket
from collections.abc import Iterator

import pytest

from capture.web.api import MailsacAPI
from capture.web.pagebase import pages
from capture.web.root import API_SEGMENTS
from tests.harness import CaptureServer
from tests.test_api import call, callJSON, send

_SEED = 10
# Routes that answer when mail comes (or after a timeout): their bad
# inputs are sent with timeout=1 below, not at random.
_LIVE = re.compile(r"/events$|/messages/wait$|^/incoming-messages$")
_LONG_LABEL = "a" * 70

# Path parameter values: valid ones (so a request goes deep), and garbage.
_GARBAGE = [
    "%ff", "%c0%af", "%ed%a0%80", "%fe%ff", "a%ffb@example.com", "%00", "%0d%0a", "%25",
    "%2F", "..", "%2e%2e", "%F0%9F%92%A9", "\u00b2".encode().hex(), "%C2%B2",
    "x" * 3000, f"a@{_LONG_LABEL}.example", f"{_LONG_LABEL}.example", "a@-.test",
    "%E2%80%AE", "a@b", "@", "*@example.com", "%20", "+", "a+b@example.com",
]
_QUERY_NAMES = [
    "limit", "until", "since", "skip", "timeout", "messageHeadersFormat", "format",
    "download", "query", "andSubjectIncludes", "andFrom", "andTo", "andRead",
    "deleteAddressMessages", "_mailsacKey", "overrideAccountId", "next", "q", "before",
    "address", "remote", "inline", "%ff", "",
]
_QUERY_VALUES = [
    "", "0", "-1", "1", "99999999999999999999999999999999", "1e9", "%C2%B2", "%D9%A1",
    "%ff", "%00", "2020-13-45", "0000-01-01", "9999-12-31T23:59:59-23:59",
    "2020-02-30", "2020-01-01T25:00", "true", "false", "x" * 5000, "%ed%a0%80", "NaN",
    "/account", "//evil.example", "/%5Cevil", "json", "plain",
]
_BODIES = [
    b"", b"{", b"[]", b"null", b"1e999", b"{\"labels\": 5}", b"{\"labels\": [1, 2]}",
    b"{\"labels\": [\"" + b"x" * 100 + b"\"]}", b"[" * 50000 + b"]" * 50000,
    b"{\"addresses\": [\"\\ud800@example.com\"]}", b"{\"forward\": \"\\udfff\"}",
    b"\xff\xfe\x00", b"{\"_mailsacKey\": 5}", b"{\"_mailsacKey\": \"\\ud800\"}",
    b"{\"webhook\": \"http://[::1\"}", b"{\"info\": " + b"\"x\"" + b"}",
    b"{\"addresses\": " + json.dumps([f"a{i}@example.com" for i in range(200)]).encode() + b"}",
    b"key=%ff&next=%ff&csrf=%ff", b"a=b&a=c&" * 100, b"\x00" * 100,
]
_CONTENT_TYPES = [
    None, b"application/json", b"application/x-www-form-urlencoded", b"text/plain",
    b"multipart/form-data; boundary=x", b"multipart/form-data", b"application/json; charset=latin-9",
    b"\xff/\xff",
]


def _exchange(port: int, data: bytes, method: bytes = b"GET",
              timeout: float = 20.0) -> tuple[int, dict[str, str], bytes] | None:
    """
    Send C{data} as is and read one answer: status, headers and body, or
    L{None} if the server closed without answering.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock, method=method.decode("latin-1"))
        try:
            response.begin()
        except http.client.RemoteDisconnected:
            return None
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def _request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
             body: bytes = b"") -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Connection: close"]
    if not any(name.lower() == b"host" for name, _ in headers):
        lines.append(b"Host: localhost")
    lines += [name + b": " + value for name, value in headers]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _isApi(target: bytes) -> bool:
    return target.split(b"?")[0].split(b"/")[1] in API_SEGMENTS


def _checkShape(target: bytes, method: bytes, answer: tuple[int, dict[str, str], bytes],
                wantsJSON: bool = False) -> None:
    """
    No 5xx; a refusal (4xx) is in the shape of the side it came from (a
    page's form sent by the pages' scripts, with C{Accept:
    application/json}, is answered in JSON).
    """
    status, headers, body = answer
    assert status < 500, (method, target[:200], status, body[:300])
    if status < 400 or method == b"HEAD" or status == 413:
        # 413 is written by BoundedRequest before routing, as JSON too;
        # HEAD has no body to look at.
        return
    if _isApi(target) or (wantsJSON and headers.get("content-type", "").startswith(
            "application/json")):
        assert headers.get("content-type") == "application/json; charset=utf-8", (
            target[:200], status, headers, body[:200])
        error = json.loads(body)
        assert isinstance(error["message"], str) and isinstance(error["error"], str), error
    else:
        assert headers.get("content-type") == "text/html; charset=utf-8", (
            target[:200], status, headers, body[:200])
        # The pages' error page, or a form shown again with what was wrong
        # beside the field (Check the mail's 400, a sign-in's 401).
        assert body.startswith(b"<!DOCTYPE html>"), (target[:200], status, body[:300])
        assert b'class="error-page"' in body or b'role="alert"' in body, (
            target[:200], status, body[:300])


def _fill(rule: str, rng: random.Random, real: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[-1]
        if rng.random() < 0.3 and name in real:
            return real[name]
        return rng.choice(_GARBAGE)
    return re.sub(r"<([^>]+)>", value, rule)


def _query(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return ""
    pairs = [f"{rng.choice(_QUERY_NAMES)}={rng.choice(_QUERY_VALUES)}"
             for _ in range(rng.randint(1, 3))]
    return "?" + "&".join(pairs)


def _routes() -> list[tuple[str, str]]:
    found = []
    for app in (MailsacAPI.app, pages):
        for rule in app.url_map.iter_rules():
            if _LIVE.search(rule.rule):
                continue
            for method in sorted(rule.methods or ()):
                found.append((method, rule.rule))
    return sorted(set(found))


@pytest.fixture(scope="module")
def fuzzServer() -> Iterator[CaptureServer]:
    """
    A server of its own: its log is read for tracebacks.
    """
    running = CaptureServer().start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def kept(fuzzServer: CaptureServer) -> dict[str, str]:
    """
    Mail stored before the fuzzing, in an owned inbox, which must still be
    there after it: the fuzzer's key is another account's.
    """
    keeper = f"keeper{secrets.token_hex(3)}"
    key = fuzzServer.cli("account", "create", keeper).stdout.strip().splitlines()[-1]
    address = f"kept-{secrets.token_hex(4)}@example.com"
    assert call(fuzzServer, "POST", f"/api/addresses/{address}", key)[0] == 200
    queued = send(fuzzServer, address, b"Subject: kept\r\n\r\nkept\r\n")
    return {"address": address, "key": key, "id": f"{queued}-0"}


def _realValues(server: CaptureServer) -> dict[str, str]:
    public = f"fuzz-{secrets.token_hex(4)}@example.com"
    queued = send(server, public, b"Subject: fuzz\r\nContent-Type: text/html\r\n\r\n"
                  b"<p>Hi <a href=\"https://example.com/x\">x</a></p>\r\n")
    domain = f"fuzz{secrets.token_hex(3)}.example"
    assert call(server, "POST", f"/api/domains/{domain}", server.key)[0] == 200
    return {"email": public, "address": public, "messageId": f"{queued}-0",
            "message": f"{queued}-0", "label": "x", "folder": "inbox", "state": "true",
            "isPrivate": "true", "domain": domain, "index": "0", "n": "0"}


def _assertServed(server: CaptureServer, kept: dict[str, str]) -> None:
    status, body = callJSON(server, "GET", f"/api/addresses/{kept['address']}/messages",
                            kept["key"])
    assert status == 200 and [m["_id"] for m in body] == [kept["id"]]


def _assertQuietLog(server: CaptureServer) -> None:
    log = server.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]
    assert "Unhandled Error" not in log


def test_routesUnderGarbage(fuzzServer: CaptureServer, kept: dict[str, str]) -> None:
    """
    Every route of both Klein apps, each method, 38 times (about 3,000
    requests): garbage or real values in its path parameters, garbage
    query strings, keys, bodies and content types.  No 5xx, refusals in their side's shape, no
    traceback logged, and the kept mail is there after.
    """
    rng = random.Random(_SEED)
    real = _realValues(fuzzServer)
    port = fuzzServer.ports["http"]
    keys = [fuzzServer.key or "", "k_wrong", "\xff\xfe", ""]
    sent = 0
    for method, rule in _routes():
        for _ in range(38):
            target = (_fill(rule, rng, real) + _query(rng)).encode("utf-8")
            headers: list[tuple[bytes, bytes]] = []
            key = rng.choice(keys)
            if key:
                headers.append((b"Mailsac-Key", key.encode("latin-1")))
            body = b""
            if method in ("POST", "PUT", "PATCH", "DELETE") and rng.random() < 0.8:
                body = rng.choice(_BODIES)
                contentType = rng.choice(_CONTENT_TYPES)
                if contentType is not None:
                    headers.append((b"Content-Type", contentType))
            wantsJSON = rng.random() < 0.1
            if wantsJSON:
                headers.append((b"Accept", b"application/json"))
            answer = _exchange(port, _request(method.encode(), target, headers, body),
                               method.encode())
            assert answer is not None, (method, target[:200])
            _checkShape(target, method.encode(), answer, wantsJSON)
            sent += 1
    assert sent > 3000
    _assertQuietLog(fuzzServer)
    _assertServed(fuzzServer, kept)


@pytest.mark.parametrize(("target", "code"), [
    (b"/api/addresses/a@example.com/messages/wait?timeout=%C2%B2", 400),
    (b"/api/addresses/a@example.com/messages/wait?timeout=99999999999999999999999", 400),
    (b"/api/addresses/a@example.com/messages/wait?timeout=1&since=2020-13-45", 400),
    (b"/api/addresses/a@example.com/messages/wait?timeout=1&since=%D9%A1%D9%A1-01-01", 400),
    (b"/api/addresses/%ff/messages/wait?timeout=1", 400),
    (b"/api/addresses/%ff/events", 400),
    (b"/api/inbox/events?_mailsacKey=%ff", 401),
])
def test_liveRoutesRefuseGarbage(fuzzServer: CaptureServer, target: bytes, code: int) -> None:
    """
    The live routes' parameters, which the random walk leaves out (a good
    request there waits): each bad one is refused in Mailsac's shape.
    """
    answer = _exchange(fuzzServer.ports["http"], _request(b"GET", target, []))
    assert answer is not None
    assert answer[0] == code, answer
    _checkShape(target, b"GET", answer)
    _assertQuietLog(fuzzServer)


@pytest.mark.parametrize(("target", "expected"), [
    (b"/api/addresses/a@example.com/messages?limit=%C2%B2", b"Invalid limit."),
    (b"/api/addresses/a@example.com/messages?limit=99999999999999999999999", b"Invalid limit."),
    (b"/api/addresses/a@example.com/messages?until=2020-13-45", b"Invalid until."),
    (b"/api/addresses/a@example.com/messages?until=0000-01-01", b"Invalid until."),
    (b"/api/addresses/a@example.com/messages?until=%D9%A1%D9%A1%D9%A1%D9%A1-01-01",
     b"Invalid until."),
    (b"/api/inbox?since=2020-02-30", b"Invalid since."),
    (b"/api/inbox?skip=%C2%B2", b"Invalid skip."),
    (b"/api/inbox?skip=99999999999999999999999", b"Invalid skip."),
])
def test_numbersAndDates(fuzzServer: CaptureServer, target: bytes, expected: bytes) -> None:
    """
    Numbers in other scripts' digits, numbers past SQLite's integers and
    dates of the right shape that are no date: 400 with the parameter
    named (each was a 500).
    """
    headers = [(b"Mailsac-Key", (fuzzServer.key or "").encode())]
    answer = _exchange(fuzzServer.ports["http"], _request(b"GET", target, headers))
    assert answer is not None and answer[0] == 400, answer
    assert json.loads(answer[2])["message"] == expected.decode()


@pytest.mark.parametrize("body", [
    b"[" * 100000 + b"]" * 100000,
    b"{\"addresses\": [\"\\ud800@example.com\"]}",
    b"{\"_mailsacKey\": \"\\udfff\"}",
])
def test_badJSONBodies(fuzzServer: CaptureServer, body: bytes) -> None:
    """
    JSON nested past the decoder's stack and JSON holding a lone surrogate
    (which nothing can store or answer) are "not JSON": 400.
    """
    headers = [(b"Mailsac-Key", (fuzzServer.key or "").encode()),
               (b"Content-Type", b"application/json")]
    answer = _exchange(fuzzServer.ports["http"],
                       _request(b"POST", b"/api/private-addresses-bulk", headers, body))
    assert answer is not None and answer[0] == 400, answer
    assert json.loads(answer[2]) == {"message": "The request body is not JSON.",
                                     "error": "Bad Request",
                                     "validationErrors": ["body must be JSON"]}
    _assertQuietLog(fuzzServer)


_LONG_HOST = _LONG_LABEL.encode() + b".example"


@pytest.mark.parametrize(("target", "host"), [
    (b"/livez", _LONG_HOST), (b"/api/addresses/a@example.com/messages", _LONG_HOST),
    (b"/", _LONG_HOST), (b"/inbox/a@example.com", _LONG_HOST), (b"/foo", _LONG_HOST),
    (b"/livez", b"a..b"), (b"/", b"\xff\xfe"), (b"/livez", b"\xff\xfe"),
    (b"/api/addresses/%ff/messages", b"localhost"), (b"/api/%c0%af", b"localhost"),
    (b"/inbox/%ff", b"localhost"), (b"/%ed%a0%80", b"localhost"),
    (b"/static/%ff", b"localhost"),
])
def test_hostAndPathKleinCannotRoute(fuzzServer: CaptureServer, target: bytes,
                                     host: bytes) -> None:
    """
    A Host label over 63 octets (or empty, or not UTF-8) made every route
    answer 500; a path not UTF-8 got Klein's text/html 400.  Both are a
    400 in the shape of the side the path belongs to.
    """
    answer = _exchange(fuzzServer.ports["http"], _request(b"GET", target, [(b"Host", host)]))
    assert answer is not None and answer[0] == 400, answer
    _checkShape(target, b"GET", answer)
    if _isApi(target):
        assert json.loads(answer[2])["message"] in ("The Host header is not a host name.",
                                                    "The request's path is not UTF-8.")
    _assertQuietLog(fuzzServer)


@pytest.mark.parametrize("host", [b"localhost", b"127.0.0.1", b"[::1]", b"localhost:8025",
                                  b"m\xc3\xbcller.example", b"capture.example."])
def test_goodHostsServed(fuzzServer: CaptureServer, host: bytes) -> None:
    """
    Host names that are names (an IPv6 literal, a port, a U-label, a
    trailing dot) are served as before.
    """
    answer = _exchange(fuzzServer.ports["http"], _request(b"GET", b"/livez", [(b"Host", host)]))
    assert answer is not None and answer[0] == 200, answer


_RAW = [
    b"GET\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: localhost\r\n\r\n",
    b"\x00\x01\x02\x03\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: localhost\r\n\r\n",
    b"GET http://other.example/livez HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET http://" + _LONG_HOST + b"/livez HTTP/1.1\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"x" * 20000 + b"\r\n\r\n",
    b"GET /livez HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /livez HTTP/1.1\r\nHost:\r\n\r\n",
    b"GET /livez HTTP/1.1\r\nHost: [\r\n\r\n",
    b"GET /livez HTTP/1.1\r\nHost: localhost:abc\r\n\r\n",
    b"GET /livez HTTP/1.0\r\n\r\n",
    b"POST /api/addresses/a@example.com HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/addresses/a@example.com HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n",
    b"POST /api/addresses/a@example.com HTTP/1.1\r\nHost: localhost\r\n"
    b"Content-Length: 99999999999999999999\r\n\r\n",
    b"POST /api/addresses/a@example.com HTTP/1.1\r\nHost: localhost\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
    b"POST /api/addresses/a@example.com HTTP/1.1\r\nHost: localhost\r\n"
    b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"POST /signin HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; "
    b"boundary=x\r\nContent-Length: 9\r\n\r\n--x\r\nbad\r\n",
    b"get /livez HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"G\xffT /livez HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"TRACE / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"CONNECT localhost:25 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /livez?%ff=%ff&&&=& HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /api/addresses/a@example.com/messages HTTP/1.1\r\nHost: localhost\r\n"
    b"Mailsac-Key: \xff\xfe\r\n\r\n",
    b"GET /account HTTP/1.1\r\nHost: localhost\r\nCookie: capture_session=\xff\xfe.x; "
    b"capture_browser=\xff\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nCookie: " + b"a=b; " * 4000 + b"\r\n\r\n",
]


@pytest.mark.parametrize("data", _RAW, ids=range(len(_RAW)))
def test_malformedRequests(fuzzServer: CaptureServer, kept: dict[str, str], data: bytes) -> None:
    """
    Malformed request lines and headers over a raw socket: whatever the
    answer (Twisted's own 400 for what it cannot parse, or none), it is
    never a 5xx nor a logged traceback, and the next client is served.
    """
    answer = _exchange(fuzzServer.ports["http"], data, data.split(b" ")[0] or b"GET")
    if answer is not None:
        assert answer[0] < 500, answer
    _assertQuietLog(fuzzServer)
    _assertServed(fuzzServer, kept)
