# -*- test-case-name: tests.test_metrics -*-
"""
The process's counters, in one place, and their Prometheus text exposition
(served at C{GET /metrics}).

Every count is a plain integer (or a list of bucket counts) changed on the
reactor thread only: a hook on a hot path costs an attribute or dict
increment, with no lock.  What another thread measures (the store writer's
commit time) reaches the reactor with the results it already hands over, and
is recorded there.  Gauges that belong to someone else (queue depths, open
sessions per listener) are read when Prometheus scrapes.

C{prometheus_client} is used only at scrape time, through a collector of our
own on a registry of our own (never the global default one): it gives the
exposition format (escaping, C{+Inf}, float formatting) and the process
metrics (memory, open files, CPU, start time) without our writing either.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Sequence

import attrs
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# The text format Prometheus has read since 2.0; every scraper takes it.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

COMMIT_SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)

# HTTP methods counted by name; anything else a client makes up is "other",
# so a client cannot grow the label set without bound.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@attrs.define
class Histogram:
    """
    Cumulative-on-read bucket counts for one measured quantity.

    @ivar bounds: Upper bounds of the buckets, ascending (C{+Inf} is
        implied).
    @ivar counts: Observations per bucket (not cumulative); the last one
        counts those above every bound.
    """

    bounds: Sequence[float]
    counts: list[int] = attrs.field(init=False)
    total: float = 0.0

    def __attrs_post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """
        The cumulative C{(le, count)} pairs of the exposition, C{+Inf} last.
        """
        result = []
        running = 0
        for bound, count in zip([*map(_number, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            result.append((bound, float(running)))
        return result


def _number(value: float) -> str:
    return repr(float(value))


@attrs.define
class Metrics:
    """
    Every count Capture keeps about itself.  Protocols call the small hooks
    below; L{exposition} renders the lot.

    Label values for C{protocol} are open: C{"smtp"} now, C{"imap"} and
    C{"pop3"} when those listeners call the same hooks.
    """

    messages: int = 0
    copies: int = 0
    messageBytes: int = 0
    sessionsOpen: dict[str, int] = attrs.field(factory=dict)
    sessionsTotal: dict[str, int] = attrs.field(factory=dict)
    authFailures: dict[str, int] = attrs.field(factory=dict)
    smtpReplies: dict[int, int] = attrs.field(factory=dict)
    httpRequests: dict[tuple[str, str], int] = attrs.field(factory=dict)
    commitSeconds: Histogram = attrs.field(factory=lambda: Histogram(COMMIT_SECONDS_BUCKETS))
    batchSize: Histogram = attrs.field(factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    startTime: float = attrs.field(factory=time.time)
    _gauges: list[tuple[str, str, Callable[[], float]]] = attrs.field(factory=list)
    _registry: CollectorRegistry | None = attrs.field(default=None, init=False)

    # Hooks (reactor thread)

    def sessionOpened(self, protocol: str) -> None:
        self.sessionsOpen[protocol] = self.sessionsOpen.get(protocol, 0) + 1
        self.sessionsTotal[protocol] = self.sessionsTotal.get(protocol, 0) + 1

    def sessionClosed(self, protocol: str) -> None:
        self.sessionsOpen[protocol] -= 1

    def authFailed(self, protocol: str) -> None:
        self.authFailures[protocol] = self.authFailures.get(protocol, 0) + 1

    def captured(self, size: int, copies: int) -> None:
        """
        One message is durably stored: C{size} octets as stored, filed as
        C{copies} copies.
        """
        self.messages += 1
        self.copies += copies
        self.messageBytes += size

    def smtpReply(self, code: int) -> None:
        # Keyed by the class digit; "2xx" is spelt at scrape time.
        key = code // 100
        self.smtpReplies[key] = self.smtpReplies.get(key, 0) + 1

    def httpRequest(self, method: bytes, code: int) -> None:
        name = method.decode("ascii", "replace").upper()
        key = (name if name in _METHODS else "other", f"{code // 100}xx")
        self.httpRequests[key] = self.httpRequests.get(key, 0) + 1

    def committed(self, seconds: float, operations: int) -> None:
        """
        The store writer committed one batch of C{operations} in
        C{seconds} (BEGIN to COMMIT, the fsync included).
        """
        self.commitSeconds.observe(seconds)
        self.batchSize.observe(operations)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """
        Expose C{read()} as the gauge C{name}, read at each scrape (queue
        depths and other values someone else keeps).
        """
        self._gauges.append((name, documentation, read))

    # Exposition

    def exposition(self) -> bytes:
        """
        Everything, in the Prometheus text format 0.0.4 (see L{CONTENT_TYPE}).
        """
        if self._registry is None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Collector(self))
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            self._registry = registry
        return generate_latest(self._registry)

    def families(self) -> Iterator[Metric]:
        """
        Capture's own metric families, as of now.
        """
        yield _counter("capture_messages_captured", "Messages durably stored.", self.messages)
        yield _counter("capture_copies_filed", "Copies filed (one per recipient inbox).",
                       self.copies)
        yield _counter("capture_message_bytes", "Octets of stored messages, Received: line "
                       "included.", self.messageBytes)
        yield _labelled(GaugeMetricFamily("capture_sessions_open", "Client sessions open now.",
                                          labels=["protocol"]), self.sessionsOpen)
        yield _labelled(CounterMetricFamily("capture_sessions", "Client sessions accepted.",
                                            labels=["protocol"]), self.sessionsTotal)
        yield _labelled(CounterMetricFamily("capture_auth_failures", "Failed logins.",
                                            labels=["protocol"]), self.authFailures)
        replies = {f"{digit}xx": count for digit, count in self.smtpReplies.items()}
        yield _labelled(CounterMetricFamily("capture_smtp_replies", "SMTP replies sent, by "
                                            "class.", labels=["class"]), replies)
        requests = CounterMetricFamily("capture_http_requests", "HTTP requests answered, by "
                                       "method and status class.", labels=["method", "class"])
        for (method, status), count in sorted(self.httpRequests.items()):
            requests.add_metric([method, status], count)
        yield requests
        yield _histogram("capture_store_commit_seconds", "Time the store writer took per "
                         "batch, BEGIN to COMMIT (the sync included).", self.commitSeconds)
        yield _histogram("capture_store_batch_operations", "Write operations per committed "
                         "batch (group commit).", self.batchSize)
        yield GaugeMetricFamily("capture_uptime_seconds", "Seconds since this process "
                                "started serving.", value=time.time() - self.startTime)
        for name, documentation, read in self._gauges:
            yield GaugeMetricFamily(name, documentation, value=read())


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _labelled(family: Metric, values: dict[str, int]) -> Metric:
    for label, count in sorted(values.items()):
        family.add_metric([label], count)  # type: ignore[attr-defined]
    return family


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=histogram.buckets(), sum_value=histogram.total
    )


@attrs.frozen(eq=False)
class _Collector:
    """
    Hands L{Metrics} to C{prometheus_client}'s registry at scrape time.
    """

    metrics: Metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics.families()
