# -*- test-case-name: tests.test_webhooks -*-
"""
Webhooks: each new message of an owned address that has a C{webhook} URL is
POSTed there as JSON (C{reference/mailsac-api.md} 9.2).

The store's new-mail callback only appends the new copies to a list, so
ingest never waits on a receiver.  Later, one store read finds which of a
batch of inboxes have a webhook; each copy that does becomes a delivery in a
bounded queue; at most L{WebhookDispatcher.maxInFlight} deliveries run at
once, each reading the message (the copy's current state, bodies, raw bytes)
and POSTing it with a timeout; a failure is retried with exponential backoff
and jitter, on C{reactor.callLater}.

Every attempt is recorded in memory, the newest
L{WebhookDispatcher.attemptsKept} per account, and shown by the API; the
record does not survive a restart (it is a debugging aid, like Mailsac's
"Recent Activity", not an audit log).
"""

from __future__ import annotations

import itertools
import json
import random
from collections import deque
from collections.abc import Callable
from importlib import metadata
from io import BytesIO
from typing import Any

import attrs
from OpenSSL import SSL
from twisted.application.service import Service
from twisted.internet import error as netError
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import ParseError
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseFailed,
    _HTTP11ClientFactory,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from capture.access import Action, permits
from capture.egress import (
    DestinationPolicy,
    DestinationRefused,
    PolicyEndpointFactory,
    Resolve,
    resolverFor,
)
from capture.emailmessage import messageWithBodiesJSON
from capture.events import IEventBus, NewCopies
from capture.store.errors import NotFound
from capture.store.interface import IStore
from capture.store.model import Copy, InboxOwner

_log = Logger()


def _userAgent() -> bytes:
    try:
        version = metadata.version("capture")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"Capture/{version}".encode("ascii")


@attrs.frozen
class WebhookAttempt:
    """
    One try at delivering one message to one webhook.

    @ivar time: When it started, in milliseconds since the epoch.
    @ivar attempt: 1 for the first try, 2 for the first retry, ...
    @ivar outcome: The HTTP status as text (C{"200"}), or C{"timeout"},
        C{"connection refused"}, C{"host not found"}, C{"destination not
        allowed"} (the operator's policy, L{capture.egress}), C{"TLS
        error"}, C{"not an HTTP response"}, C{"connection closed"},
        C{"error"}, C{"dropped"} (the queue was full), or why no POST was
        made (C{"message deleted"}); never an error's own text.
    @ivar status: The HTTP status, when the receiver answered.
    @ivar duration: Milliseconds from start to outcome.
    @ivar retrying: Whether another try is scheduled.
    """

    time: int
    account: str
    address: str
    messageId: str
    url: str
    attempt: int
    outcome: str
    status: int | None
    duration: int
    retrying: bool


@attrs.frozen
class _Delivery:
    """
    A copy to deliver to the webhook of C{address}, owned by C{account}.
    """

    copy: Copy
    account: str
    address: str
    url: str
    attempt: int = 1


_DONE = Failure(netError.ConnectionDone())


class _QuietFactory(_HTTP11ClientFactory):
    # Not a log line per webhook connection.
    noisy = False


class _QuietPool(HTTPConnectionPool):
    _factory = _QuietFactory


class _Discard(Protocol):
    """
    Read a response body to its end (so the connection can be reused),
    keeping none of it; a body over C{limit} octets ends the connection.
    """

    def __init__(self, limit: int) -> None:
        self._left = limit
        self.done: Deferred[None] = Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        self._left -= len(data)
        if self._left < 0 and self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if not self.done.called:
            self.done.callback(None)

    def _cancel(self, d: Deferred[None]) -> None:
        # The transport is the response's proxy: abort the connection
        # underneath, as twisted.web.client.readBody does.
        producer = getattr(self.transport, "_producer", None)
        abort = getattr(producer, "abortConnection", None)
        if abort is not None:
            abort()


def _describe(failure: Failure) -> str:
    """
    A short outcome for a failed POST, from a fixed vocabulary.

    Never the error's text: a receiver that is not an HTTP server would
    otherwise have its answer (an SSH or SMTP banner, say) shown to the
    account through the attempts list, which would make webhooks a probe
    of whatever listens where the URL points.
    """
    if failure.check(DestinationRefused):
        return _REFUSED
    if failure.check(netError.ConnectionRefusedError):
        return "connection refused"
    if failure.check(netError.DNSLookupError):
        return "host not found"
    if failure.check(netError.TCPTimedOutError, netError.TimeoutError):
        return _TIMEOUT
    if failure.check(SSL.Error):
        return "TLS error"
    if failure.check(ParseError):
        return "not an HTTP response"
    if failure.check(netError.ConnectionDone, netError.ConnectionLost):
        return "connection closed"
    if failure.check(ResponseFailed):
        reasons = getattr(failure.value, "reasons", [])
        if reasons:
            return _describe(reasons[0])
    return "error"


class WebhookDispatcher(Service):
    """
    Deliver new mail to webhooks while running.

    @cvar backoffBase: Seconds before the first retry; each next one waits
        twice as long, up to L{backoffCap}, times a random factor in
        [0.5, 1) so that retries after an outage do not arrive together.
    @cvar maxInFlight: POSTs at once.
    @cvar attemptsKept: Attempts remembered per account.
    @cvar lookupBacklog: New copies that may wait to be checked for a
        webhook (the lookups are one read per batch, so this fills only if
        the store cannot answer reads).
    """

    backoffBase = 1.0
    backoffCap = 600.0
    maxInFlight = 8
    attemptsKept = 200
    lookupBacklog = 100_000
    maxResponseBody = 64 * 1024
    dropLogInterval = 60.0
    _lookupBatch = 500

    def __init__(
        self,
        store: IStore,
        reactor: Any,
        queueLimit: int = 10_000,
        timeout: float = 10.0,
        retries: int = 5,
        agent: IAgent | None = None,
        jitter: Callable[[], float] = random.random,
        policy: DestinationPolicy | None = None,
        resolve: Resolve | None = None,
        *,
        events: IEventBus,
    ) -> None:
        """
        @param events: The bus the store publishes to: each new copy is
            checked for a webhook.
        """
        self._store = store
        self._events = events
        self._reactor = reactor
        self._queueLimit = queueLimit
        self._timeout = timeout
        self._retries = retries
        self._agent = agent
        self._policy = policy or DestinationPolicy()
        self._resolve = resolve
        self._pool: HTTPConnectionPool | None = None
        self._jitter = jitter
        self._userAgent = _userAgent()
        self._unsubscribe: Callable[[], None] | None = None
        # New copies, not yet checked for a webhook.
        self._incoming: deque[list[Copy]] = deque()
        self._incomingCopies = 0
        self._looking = False
        self._lookup: Deferred[None] | None = None
        # Deliveries ready for an attempt, and how many deliveries are held
        # in all (ready, in flight or waiting to retry): the bounded queue.
        self._ready: deque[_Delivery] = deque()
        self._held = 0
        self._inFlight: set[Deferred[None]] = set()
        # Retries waiting for their time, by a token of their own.
        self._waiting: dict[int, IDelayedCall] = {}
        self._tokens = itertools.count()
        self._attempts: dict[str, deque[WebhookAttempt]] = {}
        self._unlogged = {"dropped": 0, "unchecked": 0}
        self._lastLog: dict[str, float | None] = {"dropped": None, "unchecked": None}

    # Life cycle

    def startService(self) -> None:
        super().startService()
        if self._agent is None:
            self._pool = _QuietPool(self._reactor, persistent=True)
            self._pool.maxPersistentPerHost = self.maxInFlight
            self._agent = Agent.usingEndpointFactory(
                self._reactor,
                PolicyEndpointFactory(
                    self._reactor, self._policy, self._resolve or resolverFor(self._reactor),
                    timeout=self._timeout,
                ),
                pool=self._pool,
            )
        self._unsubscribe = self._events.subscribe(NewCopies, self._newCopies)

    def stopService(self) -> Deferred[None] | None:
        """
        Stop taking new mail, cancel waiting retries and POSTs in flight,
        and close idle connections.
        """
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for call in self._waiting.values():
            if call.active():
                call.cancel()
        self._waiting.clear()
        self._incoming.clear()
        self._incomingCopies = 0
        self._ready.clear()
        if self._lookup is not None:
            self._lookup.cancel()
        for d in list(self._inFlight):
            d.cancel()
        self._held = 0
        if self._pool is not None:
            pool, self._pool, self._agent = self._pool, None, None
            return pool.closeCachedConnections()
        return None

    # What the API reads

    def attempts(self, account: str, address: str | None = None) -> list[WebhookAttempt]:
        """
        The account's recorded attempts, newest first; only those for
        C{address} when given.
        """
        kept = self._attempts.get(account, ())
        return [a for a in reversed(kept) if address is None or a.address == address]

    # New mail

    def _newCopies(self, event: NewCopies) -> None:
        """
        The bus's callback: queue the copies and return (no I/O here).
        """
        copies = list(event.copies)
        if not self.running:
            return
        if self._incomingCopies + len(copies) > self.lookupBacklog:
            self._logLater("unchecked", len(copies))
            return
        self._incoming.append(copies)
        self._incomingCopies += len(copies)
        if not self._looking:
            # The lookup starts on the next turn: the commit that called
            # us goes on at once.
            self._looking = True
            self._reactor.callLater(0, self._startLookUp)

    def _startLookUp(self) -> None:
        self._lookup = ensureDeferred(self._lookUp())

    async def _lookUp(self) -> None:
        """
        Find, a batch of copies at a time, those whose inbox has a webhook.
        """
        try:
            while self._incoming and self.running:
                batch: list[Copy] = []
                while self._incoming and len(batch) < self._lookupBatch:
                    batch.extend(self._incoming.popleft())
                self._incomingCopies -= len(batch)
                try:
                    targets = await self._store.webhookTargets({c.inbox for c in batch})
                except CancelledError:
                    return
                except Exception:
                    _log.failure("Could not look up webhooks for {count} new copies",
                                 count=len(batch))
                    continue
                for copy in batch:
                    target = targets.get(copy.inbox)
                    if target is not None and target.webhook:
                        self._accept(
                            _Delivery(copy, target.account, target.address, target.webhook)
                        )
        finally:
            self._lookup = None
            self._looking = False

    def _accept(self, delivery: _Delivery) -> None:
        if self._held >= self._queueLimit:
            now = self._reactor.seconds()
            self._record(delivery, now, now, "dropped", None, False)
            self._logLater("dropped", 1)
            return
        self._held += 1
        self._ready.append(delivery)
        self._pump()

    def _pump(self) -> None:
        while self.running and self._ready and len(self._inFlight) < self.maxInFlight:
            d = ensureDeferred(self._attempt(self._ready.popleft()))
            self._inFlight.add(d)
            d.addErrback(lambda f: _log.failure("Webhook delivery failed", f))
            d.addBoth(self._finished, d)

    def _finished(self, result: None, d: Deferred[None]) -> None:
        self._inFlight.discard(d)
        self._pump()

    # One attempt

    async def _attempt(self, delivery: _Delivery) -> None:
        started = self._reactor.seconds()
        try:
            outcome, status, url = await self._post(delivery)
        except CancelledError:
            # Stopping: nothing to record, nothing to retry.
            return
        except Exception:
            # The store could not be read: a try like any other.
            outcome, status, url = _describe(Failure()), None, delivery.url
        ok = status is not None and 200 <= status < 300
        retrying = (
            not ok
            and outcome not in _FINAL
            and delivery.attempt <= self._retries
            and bool(self.running)
        )
        self._record(
            attrs.evolve(delivery, url=url), started, self._reactor.seconds(), outcome, status,
            retrying,
        )
        if retrying:
            token = next(self._tokens)
            self._waiting[token] = self._reactor.callLater(
                self.backoff(delivery.attempt), self._retry, token,
                attrs.evolve(delivery, attempt=delivery.attempt + 1),
            )
        else:
            self._held -= 1

    def backoff(self, attempt: int) -> float:
        """
        Seconds to wait after failed attempt number C{attempt}.
        """
        delay = min(self.backoffCap, self.backoffBase * 2 ** (attempt - 1))
        return delay * (0.5 + self._jitter() / 2)

    def _retry(self, token: int, delivery: _Delivery) -> None:
        del self._waiting[token]
        self._ready.append(delivery)
        self._pump()

    async def _post(self, delivery: _Delivery) -> tuple[str, int | None, str]:
        """
        Read the message as it is now and POST it.

        @return: The outcome, the HTTP status (if any) and the URL used.
        """
        copy = delivery.copy
        # The address may have been released, or its webhook changed,
        # since the mail came: ask again, and read the copy as it is now.
        target = (await self._store.webhookTargets([copy.inbox])).get(copy.inbox)
        if target is None or not target.webhook or target.account != delivery.account:
            return _NO_WEBHOOK, None, delivery.url
        url = target.webhook
        try:
            current = await self._store.getCopy(copy.id)
            if current.inbox != copy.inbox:
                raise NotFound(copy.id)
            bodies = await self._store.getBodies(current)
            raw = await self._store.getRaw(current)
        except NotFound:
            return _DELETED, None, url
        if not permits(target.account, Action.READ, InboxOwner(target.account),
                       current.savedBy):
            return _NO_WEBHOOK, None, url
        payload = json.dumps(
            messageWithBodiesJSON(current, bodies, raw), ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        # A publish is one op of the owner, answered or not (as at Mailsac).
        self._store.countOp(target.account)
        # One timer for connecting, sending and the whole answer.  Agent
        # wraps a cancellation in ResponseNeverReceived, so the timer says
        # itself whether it ran out.
        expired: list[bool] = []
        d = ensureDeferred(self._send(url, payload))

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer = self._reactor.callLater(self._timeout, expire)
        try:
            status = await d
        except Exception:
            if expired:
                return _TIMEOUT, None, url
            if not self.running:
                raise CancelledError() from None
            return _describe(Failure()), None, url
        finally:
            if timer.active():
                timer.cancel()
        return str(status), status, url

    async def _send(self, url: str, payload: bytes) -> int:
        assert self._agent is not None
        response: IResponse = await self._agent.request(
            b"POST",
            url.encode("utf-8"),
            Headers({
                b"content-type": [b"application/json"],
                b"user-agent": [self._userAgent],
            }),
            FileBodyProducer(BytesIO(payload)),
        )
        discard = _Discard(self.maxResponseBody)
        response.deliverBody(discard)
        await discard.done
        return int(response.code)

    # Records and logs

    def _record(self, delivery: _Delivery, started: float, ended: float, outcome: str,
                status: int | None, retrying: bool) -> None:
        kept = self._attempts.get(delivery.account)
        if kept is None:
            kept = self._attempts[delivery.account] = deque(maxlen=self.attemptsKept)
        kept.append(
            WebhookAttempt(
                time=int(started * 1000), account=delivery.account, address=delivery.address,
                messageId=delivery.copy.id, url=delivery.url, attempt=delivery.attempt,
                outcome=outcome, status=status, duration=int((ended - started) * 1000),
                retrying=retrying,
            )
        )

    def _logLater(self, what: str, count: int) -> None:
        """
        Log lost deliveries at most once per L{dropLogInterval}, with how
        many there were since the last line.
        """
        self._unlogged[what] += count
        now = self._reactor.seconds()
        last = self._lastLog[what]
        if last is not None and now - last < self.dropLogInterval:
            return
        self._lastLog[what] = now
        count, self._unlogged[what] = self._unlogged[what], 0
        if what == "dropped":
            _log.warn(
                "Webhook queue full ({limit} held): dropped {count} deliveries",
                limit=self._queueLimit, count=count,
            )
        else:
            _log.warn(
                "Webhook lookups behind: {count} new copies not checked for a webhook",
                count=count,
            )


_TIMEOUT = "timeout"
_NO_WEBHOOK = "webhook removed"
_DELETED = "message deleted"
_REFUSED = "destination not allowed"
# Outcomes that another try cannot change.
_FINAL = (_NO_WEBHOOK, _DELETED, _REFUSED)
