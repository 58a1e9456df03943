"""
C{/metrics} and C{/readyz}: counters scraped from a real server after real
SMTP traffic, and readiness, including its failures (unit tests with the
API resource in memory, where a store that never answers can be arranged).
"""

from __future__ import annotations

import base64
import json
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from capture.events import InProcessBus
from capture.health import Readiness
from capture.metrics import Histogram, Metrics
from capture.store.sqlite import SQLiteStore
from capture.web.api import MailsacAPI
from tests.harness import CaptureServer
from tests.test_api import call, callJSON, inbox, send

_MESSAGE = b"Subject: counted\r\n\r\nbody\r\n"


def scrape(server: CaptureServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    GET /metrics without a key, parsed with prometheus_client's own parser:
    sample name and sorted labels to value.
    """
    status, headers, body = call(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def sizes(server: CaptureServer, address: str) -> list[int]:
    status, messages = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    assert status == 200
    return [m["size"] for m in messages]


def test_countersMoveByExactlyWhatWasSent(freshServer: CaptureServer) -> None:
    """
    Two messages (one to two inboxes) and one failed AUTH move the message,
    copy, byte, session and auth-failure counters by exactly those amounts,
    and every commit that stored them shows in the commit histogram.
    """
    first, second = inbox(), inbox()
    before = scrape(freshServer)
    assert value(before, "capture_messages_captured_total") == 0

    client = freshServer.smtp()
    client.sendmail("sender@example.com", [first, second], _MESSAGE)
    client.sendmail("sender@example.com", [first], _MESSAGE + b"more\r\n")
    during = scrape(freshServer)
    assert value(during, "capture_sessions_open", protocol="smtp") == 1
    client.quit()

    # One failed AUTH, sent by hand: smtplib's login() would try PLAIN and
    # then LOGIN, two failures.
    failing = freshServer.smtp(login=False)
    credentials = base64.b64encode(b"\0admin\0k_wrong").decode()
    assert failing.docmd("AUTH", "PLAIN " + credentials)[0] == 535
    failing.quit()

    after = _settled(freshServer)
    assert value(after, "capture_messages_captured_total") == 2
    assert value(after, "capture_copies_filed_total") == 3
    # The first inbox holds a copy of each message: their stored sizes.
    assert value(after, "capture_message_bytes_total") == sum(sizes(freshServer, first))
    assert value(after, "capture_sessions_total", protocol="smtp") == 2
    assert value(after, "capture_sessions_open", protocol="smtp") == 0
    assert value(after, "capture_auth_failures_total", protocol="smtp") == 1
    assert value(after, "capture_smtp_replies_total", **{"class": "5xx"}) == 1
    commits = value(after, "capture_store_commit_seconds_count")
    assert commits >= 2 and value(after, "capture_store_batch_operations_sum") >= 2
    assert value(after, "capture_store_commit_seconds_bucket", le="+Inf") == commits
    assert ("capture_store_write_queue_depth", ()) in after
    assert ("capture_store_reads_pending", ()) in after
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_open_fds") > 0


def _settled(server: CaptureServer) -> dict[Any, float]:
    """
    Scrape until the server has seen the last SMTP session close: the client
    hears 221 before the server's connectionLost runs.  A wait for an event
    with a generous deadline, not a timed assertion.
    """
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(server)
        if value(samples, "capture_sessions_open", protocol="smtp") == 0:
            return samples
        assert time.monotonic() < deadline, "an SMTP session never closed"
        time.sleep(0.05)


def test_httpRequestsByMethodAndClass(freshServer: CaptureServer) -> None:
    """
    HTTP requests are counted by method and status class; a method a
    client makes up is counted as C{other}, so clients cannot grow the
    label set, and the server answers the next request.
    """
    assert call(freshServer, "GET", "/no/such/path")[0] == 404
    status, headers, body = call(freshServer, "BREW", "/metrics")
    assert status == 405 and set(json.loads(body)) >= {"message", "error"}
    samples = scrape(freshServer)
    assert value(samples, "capture_http_requests_total", method="GET", **{"class": "4xx"}) == 1
    assert value(samples, "capture_http_requests_total", method="other", **{"class": "4xx"}) == 1
    assert not any(
        name == "capture_http_requests_total" and ("method", "BREW") in labels
        for name, labels in samples
    )
    # The first scrape is counted once it has been answered.
    again = scrape(freshServer)
    assert value(again, "capture_http_requests_total", method="GET", **{"class": "2xx"}) == 1


def test_metricsNeedNoKeyAndShowNoMail(server: CaptureServer) -> None:
    """
    C{/metrics} answers without a key, and nothing of a message (its
    subject, its address) appears in it.
    """
    address = inbox()
    send(server, address, b"Subject: secret-subject-xyzzy\r\n\r\nsecret-body\r\n")
    status, _, body = call(server, "GET", "/metrics")
    assert status == 200
    assert b"xyzzy" not in body and address.encode() not in body


@pytest.mark.serverOptions("--no-metrics")
def test_metricsSwitchedOff(freshServer: CaptureServer) -> None:
    """
    With C{--no-metrics}, C{/metrics} is 404 with the JSON error body, and
    the server goes on serving (C{/readyz}).
    """
    status, body = callJSON(freshServer, "GET", "/metrics")
    assert status == 404
    assert body == {
        "message": "Metrics are switched off (--no-metrics).",
        "error": "Not Found",
    }
    assert callJSON(freshServer, "GET", "/readyz")[0] == 200


def test_noAccessLogByDefault(server: CaptureServer) -> None:
    """
    Requests are counted, not logged one line each, unless asked for.
    """
    status, _, _ = call(server, "GET", "/livez?no-access-log-marker")
    assert status == 200
    assert "no-access-log-marker" not in server.log()


@pytest.mark.serverOptions("--access-log")
def test_accessLog(freshServer: CaptureServer) -> None:
    """
    C{--access-log} logs each request in the combined log format.
    """
    assert call(freshServer, "GET", "/livez?access-log-marker")[0] == 200
    assert '"GET /livez?access-log-marker HTTP/1.1" 200' in freshServer.log()


def test_liveListenersGauge(freshServer: CaptureServer) -> None:
    """
    A client following an inbox's event stream shows in
    C{capture_live_listeners} while it listens, and leaves it when it goes.
    """
    assert value(scrape(freshServer), "capture_live_listeners") == 0
    stream = socket.create_connection(("127.0.0.1", freshServer.ports["http"]), timeout=10)
    stream.sendall(b"GET /api/addresses/" + inbox().encode() + b"/events HTTP/1.1\r\n"
                   b"Host: x\r\n\r\n")
    received = b""
    while b": listening" not in received:
        received += stream.recv(4096)
    assert value(scrape(freshServer), "capture_live_listeners") == 1
    stream.close()
    for _ in range(200):
        if value(scrape(freshServer), "capture_live_listeners") == 0:
            break
        time.sleep(0.01)
    assert value(scrape(freshServer), "capture_live_listeners") == 0


def test_readyOnRunningServer(server: CaptureServer) -> None:
    """
    A running server is ready: its store answers and every listener is
    bound, each check named in the answer.
    """
    status, body = callJSON(server, "GET", "/readyz")
    assert status == 200
    assert body == {
        "status": "ready",
        "checks": {
            "store": "ok", "listener smtp": "ok", "listener smtps": "ok",
            "listener pop3": "ok", "listener pop3s": "ok",
            "listener imap": "ok", "listener imaps": "ok", "listener http": "ok",
        },
    }


# Readiness failures, with the API resource in memory.


class _SilentStore:
    """
    A store whose trivial read never answers (a stuck disk, a saturated
    read pool): only what readiness calls.
    """

    def __init__(self) -> None:
        self.pings: list[Deferred[None]] = []

    def ping(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pings.append(d)
        return d


class _AnsweringStore:
    def ping(self) -> Deferred[None]:
        return succeed(None)


def _get(api: MailsacAPI, path: str, clock: Clock | None = None, wait: float = 0.0
         ) -> tuple[int, Any]:
    """
    GET C{path} from the API resource in memory; with C{clock}, let C{wait}
    seconds pass once the request is in.
    """
    stub = StubTreq(api.app.resource())
    responses: list[Any] = []
    stub.get(f"http://capture.test{path}").addCallback(responses.append)
    stub.flush()
    if clock is not None:
        clock.advance(wait)
        stub.flush()
    assert responses, "no answer"
    response = responses[0]
    contents: list[bytes] = []
    stub.content(response).addCallback(contents.append)
    stub.flush()
    return response.code, json.loads(contents[0])


def test_notReadyWhenTheStoreDoesNotAnswer() -> None:
    """
    A store that does not answer its trivial read within the deadline makes
    C{/readyz} 503 with the error body naming the store; the read is
    cancelled rather than left waiting.
    """
    clock = Clock()
    store = _SilentStore()
    readiness = Readiness(store, clock, timeout=2.0)  # type: ignore[arg-type]
    api = MailsacAPI(store, readiness=readiness, events=InProcessBus())  # type: ignore[arg-type]
    status, body = _get(api, "/readyz", clock, 2.0)
    assert status == 503
    assert body == {
        "message": "Not ready: store: no answer to a read within 2 s.",
        "error": "Service Unavailable",
        "validationErrors": ["store: no answer to a read within 2 s"],
        "checks": {"store": "no answer to a read within 2 s"},
    }
    assert store.pings[0].called


def test_notReadyWhenAListenerIsNotBound() -> None:
    """
    A listener that is not bound (yet, or any more) makes C{/readyz} 503
    naming it; the others are reported ok.
    """
    store = _AnsweringStore()
    readiness = Readiness(store, Clock())  # type: ignore[arg-type]
    readiness.listener("smtp", lambda: True)
    readiness.listener("imap", lambda: False)
    api = MailsacAPI(store, readiness=readiness, events=InProcessBus())  # type: ignore[arg-type]
    status, body = _get(api, "/readyz")
    assert status == 503
    assert body["validationErrors"] == ["listener imap: not listening"]
    assert body["checks"] == {"store": "ok", "listener smtp": "ok", "listener imap": "not listening"}


@pytest.fixture
def stoppedStore() -> Iterator[SQLiteStore]:
    store = SQLiteStore(tempfile.mkdtemp(prefix="capture-ready-"))
    store.start()
    store.stop()
    yield store


def test_notReadyWhenTheStoreIsStopped(stoppedStore: SQLiteStore) -> None:
    """
    A stopped SQLite store fails its ping at once (no deadline needed), and
    C{/readyz} says so with 503.
    """
    readiness = Readiness(stoppedStore, Clock())
    status, body = _get(MailsacAPI(stoppedStore, readiness=readiness, events=InProcessBus()),
                        "/readyz")
    assert status == 503
    assert body["checks"] == {"store": "the store is not running"}


def test_histogramBucketsAreCumulativeWithBoundsInclusive() -> None:
    """
    An observation equal to a bound counts in that bound's bucket (Prometheus'
    C{le}), buckets are cumulative, and C{+Inf} holds everything.
    """
    histogram = Histogram((1.0, 2.0))
    for observed in (0.5, 1.0, 1.5, 3.0):
        histogram.observe(observed)
    assert histogram.buckets() == [("1.0", 2.0), ("2.0", 3.0), ("+Inf", 4.0)]
    assert histogram.total == 6.0


def test_labelValuesAreEscaped() -> None:
    """
    A label value with a quote, a backslash or a newline is escaped in the
    exposition and parses back to itself.
    """
    metrics = Metrics()
    awkward = 'a"b\\c\nd'
    metrics.sessionOpened(awkward)
    text = metrics.exposition().decode("utf-8")
    assert 'protocol="a\\"b\\\\c\\nd"' in text
    parsed = {
        sample.labels.get("protocol")
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "capture_sessions_total"
    }
    assert parsed == {awkward}
