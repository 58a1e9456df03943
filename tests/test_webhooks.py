"""
Webhooks on a real server, POSTing to a real HTTP receiver on loopback;
the backoff and the attempt ring as units.
"""

from __future__ import annotations

import http.server
import json
import secrets
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.task import Clock

from capture.events import InProcessBus
from capture.webhooks import WebhookDispatcher, _Delivery
from tests.harness import CaptureServer
from tests.test_api import call, callJSON, send

_HANG = -1


class Receiver:
    """
    A webhook receiver: answers each POST with the next planned status
    (the last one repeats), or never answers (L{_HANG}), and keeps what it
    got.
    """

    def __init__(self, plan: list[int]) -> None:
        self.plan = list(plan)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    receiver.requests.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.plan.pop(0) if len(receiver.plan) > 1 else receiver.plan[0]
                if status == _HANG:
                    receiver.release.wait(60)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[[list[int]], Receiver]]:
    """
    Make receivers; all are closed after the test.
    """
    made: list[Receiver] = []

    def make(plan: list[int]) -> Receiver:
        made.append(Receiver(plan))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def _closedPort() -> int:
    """
    A loopback port nothing listens on: connecting to it is refused.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def _address() -> str:
    return f"hook-{secrets.token_hex(6)}@example.com"


def _put(server: CaptureServer, path: str, body: Any, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}{path}", data=json.dumps(body).encode(),
        method="PUT", headers={"Content-Type": "application/json", "Mailsac-Key": key},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def _ownWithWebhook(server: CaptureServer, address: str, url: str | None,
                    key: str | None = None) -> None:
    key = key or server.key
    assert key is not None
    assert callJSON(server, "POST", f"/api/addresses/{address}", key)[0] == 200
    if url is not None:
        status, body = _put(server, f"/api/addresses/{address}", {"webhook": url}, key)
        assert status == 200 and body["webhook"] == url


def _waitFor(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    """
    Poll until C{condition()} is true and return it; fail after C{timeout}
    seconds (a deadline for a hung test, not a speed check).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s: {condition}")


def _attempts(server: CaptureServer, address: str, key: str | None = None) -> list[Any]:
    status, body = callJSON(
        server, "GET", f"/api/addresses/{address}/webhook-attempts", key or server.key
    )
    assert status == 200
    return list(body)


def _finished(server: CaptureServer, address: str, count: int) -> Callable[[], list[Any]]:
    """
    A condition: C{count} attempts recorded and no retry scheduled.
    """

    def check() -> list[Any]:
        attempts = _attempts(server, address)
        if len(attempts) >= count and not attempts[0]["retryScheduled"]:
            return attempts
        return []

    return check


_MESSAGE = (
    b"From: Shop <shop@example.net>\r\n"
    b"To: someone@example.com\r\n"
    b"Subject: Your code\r\n"
    b"Received: from a by b\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=b1\r\n"
    b"\r\n"
    b"--b1\r\nContent-Type: text/plain\r\n\r\ncode 4711 https://example.com/c\r\n"
    b"--b1\r\nContent-Type: text/html\r\n\r\n<p>code <b>4711</b></p>\r\n"
    b"--b1--\r\n"
)


def test_postsMessageOnceWithFullJSON(
    server: CaptureServer, receivers: Callable[[list[int]], Receiver]
) -> None:
    """
    A message to an owned address with a webhook is POSTed once, as
    C{application/json} with Capture's User-Agent: the EmailMessage fields
    plus text, html, body, raw and headers (one value as a string, a
    repeated header as a list); the attempt is listed with its 200.
    """
    receiver = receivers([200])
    address = _address()
    _ownWithWebhook(server, address, receiver.url)
    queueId = send(server, address, _MESSAGE)
    attempts = _waitFor(_finished(server, address, 1))
    assert len(receiver.requests) == 1
    path, headers, body = receiver.requests[0]
    assert path == "/hook"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("Capture/")
    payload = json.loads(body)
    status, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages/{queueId}-0",
                              server.key)
    assert status == 200
    assert {k: payload[k] for k in listed} == listed
    assert payload["_id"] == f"{queueId}-0" and payload["subject"] == "Your code"
    assert payload["text"] == "code 4711 https://example.com/c"
    assert payload["html"] == payload["body"] == "<p>code <b>4711</b></p>"
    status, _, raw = call(server, "GET", f"/api/raw/{address}/{queueId}-0", server.key)
    assert payload["raw"] == raw.decode()
    assert payload["headers"]["subject"] == "Your code"
    assert isinstance(payload["headers"]["received"], list)
    assert len(payload["headers"]["received"]) == 2
    assert "{status" not in body.decode()[:10] and "email" not in payload
    [attempt] = attempts
    assert attempt["address"] == address and attempt["messageId"] == f"{queueId}-0"
    assert attempt["url"] == receiver.url and attempt["attempt"] == 1
    assert (attempt["outcome"], attempt["status"], attempt["retryScheduled"]) == ("200", 200, False)
    assert isinstance(attempt["durationMs"], int) and attempt["time"].endswith("Z")
    everything = callJSON(server, "GET", "/api/webhook-attempts", server.key)[1]
    assert attempt in everything


def test_retriedAfterServerError(
    server: CaptureServer, receivers: Callable[[list[int]], Receiver]
) -> None:
    """
    A receiver that answers 500 and then 200 is tried again; the attempts
    list (newest first) shows both, the first with a retry scheduled.
    """
    receiver = receivers([500, 200])
    address = _address()
    _ownWithWebhook(server, address, receiver.url)
    queueId = send(server, address, b"Subject: again\r\n\r\nbody\r\n")
    second, first = _waitFor(_finished(server, address, 2))
    assert (first["attempt"], first["status"], first["retryScheduled"]) == (1, 500, True)
    assert (second["attempt"], second["status"], second["retryScheduled"]) == (2, 200, False)
    assert first["messageId"] == second["messageId"] == f"{queueId}-0"
    assert len(receiver.requests) == 2


def test_addressWithoutWebhookGetsNothing(
    server: CaptureServer, receivers: Callable[[list[int]], Receiver]
) -> None:
    """
    Mail to an owned address without a webhook is POSTed nowhere, and its
    attempts list stays empty; mail after it to an address with one is.
    """
    receiver = receivers([200])
    quiet, loud = _address(), _address()
    _ownWithWebhook(server, quiet, None)
    _ownWithWebhook(server, loud, receiver.url)
    send(server, quiet, b"Subject: quiet\r\n\r\nbody\r\n")
    loudId = send(server, loud, b"Subject: loud\r\n\r\nbody\r\n")
    _waitFor(_finished(server, loud, 1))
    assert [json.loads(body)["_id"] for _, _, body in receiver.requests] == [f"{loudId}-0"]
    assert _attempts(server, quiet) == []


def test_anotherAccountsAttemptsRefused(
    server: CaptureServer, receivers: Callable[[list[int]], Receiver]
) -> None:
    """
    The attempts of an address are its owner's alone: without a key or
    with another account's key it is 401 with nothing of the owner's in
    the body, and the other account's own list does not hold them; a
    malformed address is 400; the server then serves the owner.
    """
    receiver = receivers([200])
    address = _address()
    _ownWithWebhook(server, address, receiver.url)
    queueId = send(server, address, b"Subject: private\r\n\r\nbody\r\n")
    _waitFor(_finished(server, address, 1))
    other = f"other{secrets.token_hex(4)}"
    otherKey = server.cli("account", "create", other).stdout.strip().splitlines()[-1]
    for key in (None, otherKey):
        status, headers, body = call(server, "GET", f"/api/addresses/{address}/webhook-attempts",
                                     key)
        assert status == 401 and headers["content-type"].startswith("application/json")
        assert queueId.encode() not in body and b"/hook" not in body
        assert set(json.loads(body)) == {"message", "error"}
    assert callJSON(server, "GET", "/api/webhook-attempts", otherKey) == (200, [])
    assert callJSON(server, "GET", "/api/webhook-attempts")[0] == 401
    status, body = callJSON(server, "GET", "/api/addresses/not-an-address/webhook-attempts",
                            server.key)
    assert status == 400 and body["validationErrors"]
    assert [a["messageId"] for a in _attempts(server, address)] == [f"{queueId}-0"]


def test_publishCountsOneOpOfTheOwner(
    server: CaptureServer, receivers: Callable[[list[int]], Receiver]
) -> None:
    """
    Each webhook POST counts one op of the address's owner (as Mailsac
    counts a publish), shown in /api/me.
    """
    receiver = receivers([200])
    owner = f"hooked{secrets.token_hex(4)}"
    key = server.cli("account", "create", owner).stdout.strip().splitlines()[-1]
    address = _address()
    _ownWithWebhook(server, address, receiver.url, key)
    send(server, address, b"Subject: counted\r\n\r\nbody\r\n")
    _waitFor(lambda: receiver.requests)
    # Reserve, set the webhook, the publish, and this call.
    assert callJSON(server, "GET", "/api/me", key)[1]["moAPICount"] == 4


@pytest.mark.serverOptions("--webhook-retries", "2", "--webhook-timeout", "1")
def test_deadAndSilentReceiversRetriedWhileSMTPGoesOn(
    freshServer: CaptureServer, receivers: Callable[[list[int]], Receiver]
) -> None:
    """
    A closed port (connection refused) and a receiver that never answers
    (timeout) are each tried 1 + --webhook-retries times, every attempt
    recorded; meanwhile a burst of mail over SMTP is all accepted (250) and
    all stored.
    """
    server = freshServer
    silent = receivers([_HANG])
    dead, hanging = _address(), _address()
    _ownWithWebhook(server, dead, f"http://127.0.0.1:{_closedPort()}/hook")
    _ownWithWebhook(server, hanging, silent.url)
    send(server, dead, b"Subject: to a dead hook\r\n\r\nbody\r\n")
    send(server, hanging, b"Subject: to a silent hook\r\n\r\nbody\r\n")
    public = _address()
    client = server.smtp()
    codes = []
    for n in range(50):
        client.mail("burst@example.com")
        client.rcpt(public)
        codes.append(client.data(b"Subject: %d\r\n\r\nx\r\n" % n)[0])
    client.quit()
    assert codes == [250] * 50
    assert callJSON(server, "GET", f"/api/addresses/{public}/message-count")[1]["count"] == 50
    for address, outcome in ((dead, "connection refused"), (hanging, "timeout")):
        attempts = _waitFor(_finished(server, address, 3))
        assert [a["attempt"] for a in attempts] == [3, 2, 1]
        assert {a["outcome"] for a in attempts} == {outcome}
        assert [a["retryScheduled"] for a in attempts] == [False, True, True]
        assert all(a["status"] is None for a in attempts)
    assert all(a["durationMs"] >= 900 for a in _attempts(server, hanging))
    assert len(silent.requests) == 3


@pytest.mark.serverOptions("--webhook-queue", "2")
def test_fullQueueDropsNewest(
    freshServer: CaptureServer, receivers: Callable[[list[int]], Receiver]
) -> None:
    """
    With --webhook-queue 2 and a receiver that never answers, the first two
    deliveries are held and every later one is refused and recorded as
    dropped (with a log line); SMTP takes every message; stopping the
    server with POSTs in flight logs no unhandled error.
    """
    server = freshServer
    silent = receivers([_HANG])
    address = _address()
    _ownWithWebhook(server, address, silent.url)
    sent = [send(server, address, b"Subject: %d\r\n\r\nbody\r\n" % n) for n in range(5)]
    dropped = _waitFor(
        lambda: [a for a in _attempts(server, address) if a["outcome"] == "dropped"]
        if len(_attempts(server, address)) >= 3 else []
    )
    assert len(dropped) == 3
    assert {a["messageId"] for a in dropped} == {f"{q}-0" for q in sent[2:]}
    assert all(not a["retryScheduled"] and a["status"] is None for a in dropped)
    _waitFor(lambda: len(silent.requests) == 2)
    count = callJSON(server, "GET", f"/api/addresses/{address}/message-count", server.key)[1]
    assert count["count"] == 5
    assert "Webhook queue full" in server.log()
    server.stop()
    log = server.log()
    assert "Unhandled error" not in log and "Traceback" not in log


# Units


def test_backoffDoublesWithJitterUpToCap() -> None:
    """
    The wait after attempt n is base * 2**(n-1), capped, times a factor in
    [0.5, 1) from the jitter.
    """
    low = WebhookDispatcher(None, Clock(), jitter=lambda: 0.0,  # type: ignore[arg-type]
                            events=InProcessBus())
    high = WebhookDispatcher(None, Clock(), jitter=lambda: 0.999,  # type: ignore[arg-type]
                             events=InProcessBus())
    assert [low.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert high.backoff(1) == pytest.approx(0.9995)
    assert low.backoff(40) == low.backoffCap / 2
    low.backoffBase = 0.01
    assert low.backoff(3) == pytest.approx(0.02)


def test_attemptRingKeepsNewestPerAccount() -> None:
    """
    Each account keeps its newest C{attemptsKept} attempts, listed newest
    first; one account's attempts never show in another's.
    """
    clock = Clock()
    dispatcher = WebhookDispatcher(None, clock, events=InProcessBus())  # type: ignore[arg-type]
    copy: Any = type("FakeCopy", (), {"id": "q-0"})()
    for n in range(dispatcher.attemptsKept + 50):
        clock.advance(1)
        delivery = _Delivery(copy, "alice", f"a{n % 2}@example.com", "http://h/", attempt=n)
        dispatcher._record(delivery, clock.seconds(), clock.seconds(), "200", 200, False)
    dispatcher._record(_Delivery(copy, "bob", "b@example.com", "http://h/"), 0, 0, "500", 500,
                       True)
    kept = dispatcher.attempts("alice")
    assert len(kept) == dispatcher.attemptsKept
    assert [a.attempt for a in kept] == list(range(249, 49, -1))
    assert {a.account for a in kept} == {"alice"}
    assert [a.attempt for a in dispatcher.attempts("alice", "a1@example.com")][:2] == [249, 247]
    assert [a.outcome for a in dispatcher.attempts("bob")] == ["500"]
    assert dispatcher.attempts("carol") == []


@pytest.mark.serverOptions("--webhook-retries", "5")
def test_stopWithRetriesPending(freshServer: CaptureServer) -> None:
    """
    Stopping the server while a retry waits for its time cancels it: the
    server stops cleanly, with no unhandled error.
    """
    server = freshServer
    address = _address()
    _ownWithWebhook(server, address, f"http://127.0.0.1:{_closedPort()}/hook")
    send(server, address, b"Subject: never delivered\r\n\r\nbody\r\n")
    [attempt] = _waitFor(lambda: _attempts(server, address))
    assert attempt["retryScheduled"] and attempt["outcome"] == "connection refused"
    server.stop()
    log = server.log()
    assert "Unhandled error" not in log and "Traceback" not in log
    assert "Main loop terminated" in log


# Where webhooks may connect


class _Trap:
    """
    A listening socket no webhook may reach: a connection to it waits in
    its backlog, where L{reached} finds it.
    """

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def reached(self) -> bool:
        try:
            connection, _ = self.sock.accept()
        except BlockingIOError:
            return False
        connection.close()
        return True

    def close(self) -> None:
        self.sock.close()


def _refusedAttempt(server: CaptureServer, address: str) -> dict[str, Any]:
    [attempt] = _waitFor(_finished(server, address, 1))
    return dict(attempt)


def test_internalDestinationsRefusedByDefault(
    server: CaptureServer, receivers: Callable[[list[int]], Receiver]
) -> None:
    """
    By default a webhook to a private address, the metadata address or
    0.0.0.0 is refused before any connection (10.0.0.1 and 169.254.169.254
    are never connected to: the refusal comes from the policy, not from the
    network, and 0.0.0.0, which Linux connects to loopback, leaves a trap
    there untouched): one attempt, C{destination not allowed}, no status, no
    retry.  Loopback stays allowed, by literal, by name, as a decimal
    number and IPv4-mapped, and the next mail is delivered.
    """
    trap = _Trap("127.0.0.1")
    try:
        for host in ("10.0.0.1", "169.254.169.254", "0.0.0.0", "[::ffff:10.0.0.1]"):
            address = _address()
            _ownWithWebhook(server, address, f"http://{host}:{trap.port}/hook")
            send(server, address, b"Subject: internal\r\n\r\nbody\r\n")
            attempt = _refusedAttempt(server, address)
            assert (attempt["outcome"], attempt["status"], attempt["retryScheduled"]) == (
                "destination not allowed", None, False), host
        assert not trap.reached()
    finally:
        trap.close()
    receiver = receivers([200])
    port = receiver.server.server_address[1]
    for host in ("127.0.0.1", "localhost", "2130706433", "[::ffff:127.0.0.1]"):
        address = _address()
        _ownWithWebhook(server, address, f"http://{host}:{port}/hook")
        send(server, address, b"Subject: local\r\n\r\nbody\r\n")
        [attempt] = _waitFor(_finished(server, address, 1))
        assert (attempt["outcome"], attempt["status"]) == ("200", 200), host
    assert len(receiver.requests) == 4
    assert "Traceback" not in server.log()


@pytest.mark.serverOptions("--webhook-deny", "127.0.0.0/8,::1")
def test_deniedLoopbackNeverConnected(
    freshServer: CaptureServer, receivers: Callable[[list[int]], Receiver]
) -> None:
    """
    With --webhook-deny 127.0.0.0/8,::1 no form of a loopback destination
    is connected to (listening traps on 127.0.0.1 and 127.0.0.2 see no
    connection): 127.0.0.2, the decimal 2130706433, [::ffff:127.0.0.1],
    [::1], the name localhost, 0.0.0.0; each is one refused attempt that
    tells nothing of the port (a closed port and a listening one read the
    same); mail goes on being stored.
    """
    server = freshServer
    trap1, trap2 = _Trap("127.0.0.1"), _Trap("127.0.0.2")
    closed = _closedPort()
    try:
        urls = [
            f"http://127.0.0.2:{trap2.port}/hook",
            f"http://2130706433:{trap1.port}/hook",
            f"http://[::ffff:127.0.0.1]:{trap1.port}/hook",
            f"http://[::1]:{trap1.port}/hook",
            f"http://localhost:{trap1.port}/hook",
            f"https://localhost:{trap1.port}/hook",
            f"http://0.0.0.0:{trap1.port}/hook",
            f"http://127.0.0.1:{closed}/hook",
        ]
        addresses = []
        for url in urls:
            address = _address()
            addresses.append(address)
            _ownWithWebhook(server, address, url)
            send(server, address, b"Subject: probe\r\n\r\nbody\r\n")
        for address, url in zip(addresses, urls, strict=True):
            attempt = _refusedAttempt(server, address)
            assert (attempt["outcome"], attempt["status"], attempt["retryScheduled"]) == (
                "destination not allowed", None, False), url
        assert not trap1.reached() and not trap2.reached()
    finally:
        trap1.close()
        trap2.close()
    public = _address()
    send(server, public, b"Subject: still served\r\n\r\nbody\r\n")
    assert callJSON(server, "GET", f"/api/addresses/{public}/message-count")[1]["count"] == 1
    assert "Traceback" not in server.log()


@pytest.mark.serverOptions("--webhook-retries", "0")
def test_attemptsTellNothingOfANonHTTPAnswer(freshServer: CaptureServer) -> None:
    """
    A destination that answers with another protocol's banner is recorded
    as C{not an HTTP response}: neither the banner nor any of the
    error's text is in the attempts list.
    """
    server = freshServer
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.sendall(b"SSH-2.0-OpenSSH_9.6 secret-banner-4711\r\n")
            connection.settimeout(5)
            try:
                connection.recv(65536)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        address = _address()
        _ownWithWebhook(server, address, f"http://127.0.0.1:{listener.getsockname()[1]}/hook")
        send(server, address, b"Subject: banner\r\n\r\nbody\r\n")
        [attempt] = _waitFor(_finished(server, address, 1))
    finally:
        listener.close()
        thread.join(10)
    assert (attempt["outcome"], attempt["status"]) == ("not an HTTP response", None)
    status, _, body = call(server, "GET", "/api/webhook-attempts", server.key)
    assert status == 200 and b"SSH" not in body and b"secret" not in body and b"4711" not in body
