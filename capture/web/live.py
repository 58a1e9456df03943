# -*- test-case-name: tests.test_live -*-
"""
Live events: new mail pushed to the clients waiting for it.

Three ways in share one hub: the wait-for-message route, the Mailsac
websocket (C{/incoming-messages}, C{reference/mailsac-api.md} 9.1) and
Server-Sent Events for the web page.  The hub subscribes to the event
bus's new copies (L{capture.events.NewCopies}) while anyone listens, keeps its
listeners in dicts by inbox, by domain and by account (so a new copy costs
the listeners of its own inbox, not every listener), and checks every copy
against the listener's access with L{capture.access} when it is published,
not when the listener came: an address reserved in between closes it.

The websocket follows Mailsac's routing rule (C{reference/mailsac-api.md}
3 and 9.1): it carries only mail of the account's owned addresses and
catch-alls, each by its own C{enablews} switch (L{IStore.routes}), read
when the mail is published.  The wider stream, any inbox the viewer may
read, is Capture's own Server-Sent Events route.

Deletions (L{capture.events.RemovedCopies}) go the same way, through the same
queue (so a removal never overtakes the arrival it undoes), to the
listeners that asked for them (the event streams), under the same check:
a listener hears of a removed copy only if it could have listed it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import attrs
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from capture.access import Visibility, visibility, visibleTo
from capture.addresses import customDomain
from capture.connections import Slots, peerHost
from capture.emailmessage import messageJSON, messageWithBodiesJSON
from capture.events import IEventBus, NewCopies, RemovedCopies
from capture.store.interface import IMessageStore, IStore
from capture.store.model import Bodies, Copy, InboxOwner, OwnedAddress, RemovedCopy
from capture.web.responses import ApiError

_log = Logger()
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# How far back a wait with C{since} looks through an inbox, newest first.
_SINCE_PAGE = 500
_SINCE_PAGES = 10
# What the hub routes by inbox and domain: new copies and removed ones.
_C = TypeVar("_C", Copy, RemovedCopy)


@attrs.define(eq=False)
class Listener:
    """
    One client waiting for new mail.

    @ivar viewer: The account reading, or L{None} for no key.
    @ivar deliver: Called with each new copy the viewer may read, and
        when C{full} with its websocket email frame, encoded (else L{None}).
    @ivar full: Wants the websocket frame: the copy's
        L{messageWithBodiesJSON}, built once for all listeners.
    @ivar unified: Listens to the account's unified inbox (every copy
        C{listAccountInbox} would show) rather than to inboxes or domains.
    @ivar accepts: A further filter on copies (the wait's subject and
        sender), or L{None}.
    @ivar removed: Called with each deleted copy the viewer could have
        listed, or L{None} for a listener that wants only new mail.
    """

    viewer: str | None
    deliver: Callable[[Copy, bytes | None], None]
    full: bool = False
    unified: bool = False
    accepts: Callable[[Copy], bool] | None = None
    removed: Callable[[RemovedCopy], None] | None = None
    active: bool = True


def messageFilter(subject: str | None, sender: str | None) -> Callable[[Copy], bool] | None:
    """
    The wait's filter: C{subject} a case-insensitive substring of the
    subject, C{sender} of any From address or name; L{None} for neither.
    """
    if not subject and not sender:
        return None
    wantedSubject = (subject or "").casefold()
    wantedSender = (sender or "").casefold()

    def accepts(copy: Copy) -> bool:
        message = copy.message
        if wantedSubject and wantedSubject not in message.subject.casefold():
            return False
        if wantedSender:
            return any(
                wantedSender in a.address.casefold() or wantedSender in a.name.casefold()
                for a in message.fromAddresses
            )
        return True

    return accepts


async def existingMatch(
    store: IMessageStore, inbox: str, visible: Visibility, since: int,
    accepts: Callable[[Copy], bool] | None,
) -> Copy | None:
    """
    The oldest copy of C{inbox} in C{visible} received at or after C{since}
    (ms) that C{accepts} takes: what a wait that had started at C{since}
    would have returned.  Looks at the newest C{_SINCE_PAGE * _SINCE_PAGES}
    copies at most.
    """
    found = None
    before = None
    for _ in range(_SINCE_PAGES):
        page = await store.listInbox(inbox, visible, limit=_SINCE_PAGE, beforeUid=before)
        for copy in page:
            if copy.message.received < since:
                return found
            if accepts is None or accepts(copy):
                found = copy
        if len(page) < _SINCE_PAGE:
            break
        before = page[-1].uid
    return found


class LiveHub:
    """
    Fans the store's new copies out to listeners, each copy only to those
    whose viewer may read it (the listing rule of M1; for the unified inbox,
    the copies C{listAccountInbox} shows).

    Batches are handled one after another, so every listener sees mail in
    commit order.  Bodies and raw bytes for full listeners are read once
    per message, however many listen.
    """

    def __init__(self, store: IStore, events: IEventBus, publicReadable: bool = True) -> None:
        self._store = store
        self._events = events
        self.publicReadable = publicReadable
        self._byInbox: dict[str, set[Listener]] = {}
        self._byDomain: dict[str, set[Listener]] = {}
        self._byAccount: dict[str, set[Listener]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._queue: Deferred[None] = succeed(None)

    def listen(
        self, listener: Listener, inboxes: Iterable[str] = (), domains: Iterable[str] = ()
    ) -> Callable[[], None]:
        """
        Start delivering to C{listener}: copies of C{inboxes}, of addresses
        in C{domains}, or (when C{listener.unified}) of its account's
        unified inbox.

        @return: A function that stops it (safe to call twice).
        """
        registrations: list[tuple[dict[str, set[Listener]], str]] = [
            (self._byInbox, i) for i in inboxes
        ] + [(self._byDomain, d) for d in domains]
        if listener.unified:
            assert listener.viewer is not None
            registrations.append((self._byAccount, listener.viewer))
        for table, key in registrations:
            table.setdefault(key, set()).add(listener)
        if self._unsubscribe is None:
            added = self._events.subscribe(NewCopies, self._published)
            removed = self._events.subscribe(RemovedCopies, self._removed)

            def unsubscribe() -> None:
                added()
                removed()

            self._unsubscribe = unsubscribe

        def stop() -> None:
            if not listener.active:
                return
            listener.active = False
            for table, key in registrations:
                group = table.get(key)
                if group is not None:
                    group.discard(listener)
                    if not group:
                        del table[key]
            if not (self._byInbox or self._byDomain or self._byAccount) and self._unsubscribe:
                self._unsubscribe()
                self._unsubscribe = None

        return stop

    def listeners(self) -> int:
        """
        How many listeners are registered (each counted once per inbox,
        domain or account it listens to).
        """
        tables = (self._byInbox, self._byDomain, self._byAccount)
        return sum(len(group) for table in tables for group in table.values())

    def _interested(
        self, items: list[_C], wants: Callable[[Listener], bool] = lambda _: True
    ) -> list[tuple[_C, list[Listener]]]:
        # Who listens is decided now, synchronously: a listener that comes
        # after the commit does not see this mail (a wait without since
        # counts only mail that arrives after it).
        unified: list[Listener] = [
            one for group in self._byAccount.values() for one in group if wants(one)
        ]
        wanted: list[tuple[_C, list[Listener]]] = []
        for item in items:
            listeners: list[Listener] = [
                one
                for one in self._byInbox.get(item.inbox, set())
                | self._byDomain.get(item.domain, set())
                if wants(one)
            ]
            if listeners or unified:
                wanted.append((item, [*listeners, *unified]))
        return wanted

    def _enqueue(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._queue.addCallback(lambda _: ensureDeferred(work()))
        self._queue.addErrback(lambda f: _log.failure("Live event delivery failed", f))

    def _published(self, event: NewCopies) -> None:
        wanted = self._interested(list(event.copies))
        if wanted:
            self._enqueue(lambda: self._dispatch(wanted))

    def _removed(self, event: RemovedCopies) -> None:
        wanted = self._interested(list(event.copies), lambda one: one.removed is not None)
        if wanted:
            self._enqueue(lambda: self._dispatchRemoved(wanted))

    async def _owners(self, items: Iterable[Copy | RemovedCopy]) -> dict[str, InboxOwner]:
        inboxes = sorted({item.inbox for item in items})
        found = await gatherResults([self._store.inboxOwner(i) for i in inboxes])
        return dict(zip(inboxes, found, strict=True))

    async def _dispatchRemoved(self, wanted: list[tuple[RemovedCopy, list[Listener]]]) -> None:
        owners = await self._owners(gone for gone, _ in wanted)
        for gone, listeners in wanted:
            owner = owners[gone.inbox]
            for listener in listeners:
                if listener.removed is None or not (
                    listener.active and self._sees(listener, gone.savedBy, owner)
                ):
                    continue
                try:
                    listener.removed(gone)
                except Exception:
                    _log.failure("Live listener failed")

    async def _dispatch(self, wanted: list[tuple[Copy, list[Listener]]]) -> None:
        owners = await self._owners(copy for copy, _ in wanted)
        # The websocket carries only routed mail (reference 3, 9.1): looked
        # up once per batch, and only when a websocket listens.
        pushed = {copy.inbox for copy, listeners in wanted if any(o.full for o in listeners)}
        routes = await self._store.routes(pushed) if pushed else {}
        fetched: dict[int, tuple[Bodies, bytes]] = {}
        for copy, listeners in wanted:
            owner = owners[copy.inbox]
            route = routes.get(copy.inbox)
            frame: bytes | None = None
            for listener in listeners:
                if not (listener.active and self._sees(listener, copy.savedBy, owner)):
                    continue
                if listener.full and not _routed(listener, route):
                    continue
                if listener.accepts is not None and not listener.accepts(copy):
                    continue
                if listener.full and frame is None:
                    rowid = copy.message.rowid
                    if rowid not in fetched:
                        bodies = await self._store.getBodies(copy)
                        fetched[rowid] = (bodies, await self._store.getRaw(copy))
                    email = messageWithBodiesJSON(copy, *fetched[rowid])
                    frame = _ENCODER.encode({"status": 200, "email": email}).encode("utf-8")
                    if not listener.active:
                        continue
                try:
                    listener.deliver(copy, frame if listener.full else None)
                except Exception:
                    _log.failure("Live listener failed")

    def _sees(self, listener: Listener, savedBy: str | None, owner: InboxOwner) -> bool:
        """
        Whether the listener's viewer may list a copy of C{owner}'s inbox
        starred by C{savedBy} (for the unified inbox: whether
        C{listAccountInbox} shows it).
        """
        viewer = listener.viewer
        if listener.unified:
            return owner.account == viewer or savedBy == viewer
        visible = visibility(viewer, owner, self.publicReadable)
        return visible is not None and visibleTo(visible, savedBy)


def _routed(listener: Listener, route: OwnedAddress | None) -> bool:
    """
    Whether a websocket listener gets the mail of an inbox routed by
    C{route} (L{IStore.routes}): only its own account's owned address or
    catch-all, with C{enablews} on, each by its own switch.
    """
    return route is not None and route.enablews and route.account == listener.viewer


@implementer(IPushProducer)
class Backlog:
    """
    Bounds what a slow reader makes us buffer.  Registered as the streaming
    producer of a connection, it hears when the connection's send buffer is
    full (L{pauseProducing}) and when it has drained (L{resumeProducing});
    what is written in between is counted, and past C{limit} octets the
    connection is dropped rather than buffered further.
    """

    def __init__(self, limit: int, drop: Callable[[], None]) -> None:
        self.limit = limit
        self._drop = drop
        self._paused = False
        self._pending = 0
        self.dropped = False

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._pending = 0

    def stopProducing(self) -> None:
        self.dropped = True

    def admit(self, size: int) -> bool:
        """
        Whether C{size} more octets may be written; when not, the
        connection is being dropped.
        """
        if self.dropped:
            return False
        if self._paused:
            self._pending += size
            if self._pending > self.limit:
                self.dropped = True
                _log.warn("Dropping a live client that reads too slowly")
                self._drop()
                return False
        return True


def sseEvent(copy: Copy) -> bytes:
    """
    One Server-Sent Event for a new copy: C{event: message}, its id, and its
    C{EmailMessage} JSON on one C{data:} line (the compact JSON has no line
    breaks).
    """
    data = _ENCODER.encode(messageJSON(copy))
    return f"event: message\nid: {copy.id}\ndata: {data}\n\n".encode()


def sseRemoved(gone: RemovedCopy) -> bytes:
    """
    One Server-Sent Event for a deleted copy: C{event: removed} and
    C{{"_id": ...}}.  It carries no C{id:} line, so a reconnecting client's
    C{Last-Event-ID} stays the last message it was sent.
    """
    data = _ENCODER.encode({"_id": gone.id})
    return f"event: removed\ndata: {data}\n\n".encode()


# The websocket

_MAX_WATCHED = 100


class IncomingMessagesProtocol(WebSocketServerProtocol):
    """
    One Mailsac websocket client: checks its key and addresses once open,
    then sends a frame per new message it may read whose address routes
    it here (C{enablews}, reference 9.1).
    Refusals are one C{{"status": 4xx, "msg": ...}} frame and a close.
    """

    factory: IncomingMessagesFactory
    _params: dict[str, list[str]]
    _stop: Callable[[], None] | None = None
    _account: str | None = None
    _backlog: Backlog | None = None

    _counted: str | None | bool = False

    def connectionMade(self) -> None:
        # A stream while it is open (the route refused past the caps).
        self._counted = peerHost(self.transport.getPeer())  # type: ignore[union-attr]
        self.factory.streams.take(self._counted)
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._counted is not False:
            counted, self._counted = self._counted, False
            self.factory.streams.give(counted if isinstance(counted, str) else None)
        super().connectionLost(reason)

    def onConnect(self, request: Any) -> None:
        self._params = request.params

    def onOpen(self) -> None:
        transport: Any = self.transport
        # The HTTP channel was the connection's producer until the
        # websocket took the connection over.
        transport.unregisterProducer()
        self._backlog = Backlog(self.factory.maxBacklog, self._abort)
        transport.registerProducer(self._backlog, True)
        ensureDeferred(self._start()).addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        _log.failure("Websocket start failed", failure)
        self._abort()

    async def _start(self) -> None:
        try:
            account, addresses, domains = await self.factory.authorize(self._params)
        except ApiError as refusal:
            self._sendFrame({"status": refusal.code, "msg": refusal.message})
            self.sendClose(code=4000 + refusal.code, reason=refusal.message)
            return
        if self.state != self.STATE_OPEN:
            return
        self._account = account
        self._stop = self.factory.hub.listen(
            Listener(account, self._email, full=True), addresses, domains
        )
        self._sendFrame({"status": 200, "msg": "Listening", "addresses": addresses,
                    "domains": domains})

    def _email(self, copy: Copy, frame: bytes | None) -> None:
        assert frame is not None
        if self._account is not None:
            # Each publish is one op of the account (reference 9.1).
            self.factory.store.countOp(self._account)
        self._sendBytes(frame)

    def _sendFrame(self, frame: dict[str, Any]) -> None:
        self._sendBytes(_ENCODER.encode(frame).encode("utf-8"))

    def _sendBytes(self, payload: bytes) -> None:
        if self._backlog is not None and not self._backlog.admit(len(payload)):
            return
        self.sendMessage(payload, isBinary=False)

    def _abort(self) -> None:
        if self._stop is not None:
            self._stop()
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


class IncomingMessagesFactory(WebSocketServerFactory):
    """
    The websocket's factory: the hub, the store and the rules for what a
    key may watch.

    @ivar maxBacklog: Octets a client may leave unread beyond the
        connection's own send buffer before it is dropped.
    """

    protocol = IncomingMessagesProtocol  # type: ignore[assignment]
    maxBacklog = 4 * 1024 * 1024

    def __init__(
        self, hub: LiveHub, store: IStore, inboxOf: Callable[[str], str],
        streams: Slots | None = None,
    ) -> None:
        super().__init__()
        self.hub = hub
        self.store = store
        self.streams = streams if streams is not None else Slots(limit=512, perAddress=64)
        self._inboxOf = inboxOf

    async def authorize(
        self, params: dict[str, list[str]]
    ) -> tuple[str, list[str], list[str]]:
        """
        The account of C{key} and the addresses and domains of C{addresses}
        it may watch: its owned addresses, addresses of its domains and its
        domains (C{_id} is taken and ignored, as older Mailsac examples send
        it).

        @raise ApiError: 401 for a missing or bad key, 400 for no or a
            malformed address, 403 for one the account may not read or that
            is not the account's (a public address is never routed).
        """
        keys = params.get("key") or [""]
        if not keys[0].strip():
            raise ApiError(401, "An API key is required (key=).")
        account = await self.store.accountForKey(keys[0].strip())
        if account is None:
            raise ApiError(401, "API key is wrong or was revoked.")
        account = str(account)
        wanted = [
            item.strip() for value in params.get("addresses", []) for item in value.split(",")
        ]
        wanted = [item for item in wanted if item]
        if not wanted:
            raise ApiError(400, "No addresses to listen to (addresses=).")
        if len(wanted) > _MAX_WATCHED:
            raise ApiError(400, f"At most {_MAX_WATCHED} addresses and domains.")
        addresses: list[str] = []
        domains: list[str] = []
        owned = {d.domain for d in await self.store.listDomains(account)}
        for item in wanted:
            if "@" in item:
                inbox = self._inboxOf(item)
                owner = await self.store.inboxOwner(inbox)
                if visibility(account, owner, self.hub.publicReadable) is None:
                    raise ApiError(403, f"{inbox} belongs to another account.")
                if owner.account != account and inbox.rpartition("@")[2] not in owned:
                    # Only owned addresses and custom domains are routed
                    # (reference 9.1); a public inbox streams over SSE.
                    raise ApiError(403, f"{inbox} is not an address of this account: reserve "
                                   "it and set enablews, or follow its /events stream.")
                if inbox not in addresses:
                    addresses.append(inbox)
                continue
            domain = customDomain(item.rstrip("."))
            if domain is None:
                raise ApiError(400, f"{item!r} is neither an address nor a domain.")
            if domain not in owned:
                raise ApiError(403, f"{domain} is not a domain of this account.")
            if domain not in domains:
                domains.append(domain)
        return account, addresses, domains
