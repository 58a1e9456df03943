# -*- test-case-name: tests.test_events -*-
"""
What happened to copies, told to whoever listens: the one event bus.

The store publishes an event after each commit that added, removed or
changed copies; IMAP sessions (C{EXISTS}, C{EXPUNGE}, unsolicited C{FETCH
(FLAGS ...)}), the live hub (waits, event streams, websockets) and the
webhook dispatcher subscribe.  No reader fans out on its own, and none asks
the store who is affected: an event carries what a listener needs to route
it (inbox, uid, copy id, who starred it, the sending account, the new
state).

Events are plain values (frozen attrs of primitives, tuples and the
store's own plain values, L{Copy} and L{RemovedCopy}): nothing shared by
identity, no callables, so a bus that crosses processes (PostgreSQL
C{LISTEN}/C{NOTIFY}, a later issue) can serialise them and give every node
the same value.  That is also why the interface promises what such a bus
can keep and no more: events in commit order, on the reactor thread, a
failing subscriber logged and never in the way of the others.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TypeVar

import attrs
from twisted.logger import Logger
from zope.interface import Interface, implementer

from capture.store.model import Copy, FlagState, RemovedCopy

_log = Logger()


@attrs.frozen
class NewCopies:
    """
    One committed message's copies (one per recipient inbox).
    """

    copies: tuple[Copy, ...]


@attrs.frozen
class RemovedCopies:
    """
    Copies one commit deleted (a delete, purge, expunge, retention pass or
    account deletion), as the deleting transaction read them.
    """

    copies: tuple[RemovedCopy, ...]


@attrs.frozen
class ChangedCopy:
    """
    One copy's state after a change of its flags, labels, folder or star.

    @ivar sender: The account that sent the message (L{None}: sent
        without one): the sent-mail mailbox of that account shows it.
    @ivar read: Mailsac's C{read} as IMAP's C{\\Seen} (never set: unseen).
    """

    uid: int
    id: str
    inbox: str
    savedBy: str | None
    sender: str | None
    read: bool
    deleted: bool
    answered: bool
    flagged: bool
    labels: tuple[str, ...]
    folder: str

    @classmethod
    def of(cls, copy: Copy) -> ChangedCopy:
        return cls(
            copy.uid, copy.id, copy.inbox, copy.savedBy, copy.message.account,
            bool(copy.read), copy.deleted, copy.answered, copy.flagged, copy.labels, copy.folder,
        )

    @property
    def domain(self) -> str:
        return self.inbox.rpartition("@")[2]

    @property
    def flags(self) -> FlagState:
        """
        The copy's IMAP flags.
        """
        return FlagState(
            self.uid, self.read, self.deleted, self.answered, self.flagged, self.labels
        )


@attrs.frozen
class ChangedCopies:
    """
    Copies one commit changed (read/unread, IMAP flags and keywords,
    labels, folder, star), each with its new state.
    """

    copies: tuple[ChangedCopy, ...]


Event = NewCopies | RemovedCopies | ChangedCopies
E = TypeVar("E", NewCopies, RemovedCopies, ChangedCopies)


class IEventBus(Interface):
    """
    Where the store tells what it committed and readers hear of it.

    Every implementation guarantees: events reach subscribers in the order
    they were published (commit order), on the reactor thread, each
    subscriber called once per event of its kind; an exception a
    subscriber raises is logged and the others are still called.
    """

    def publish(event: Event) -> None:
        """
        Tell every subscriber of the event's kind; call it on the reactor
        thread, after the commit that made the event true.
        """

    def subscribe(kind: type[E], callback: Callable[[E], None]) -> Callable[[], None]:
        """
        Call C{callback} with every event of type C{kind} published from
        now on.

        @return: A function that unsubscribes (harmless to call twice).
        """


@implementer(IEventBus)
class InProcessBus:
    """
    The bus of one process: events delivered as they are published.

    An event published while another is being delivered (a subscriber that
    writes) waits until every subscriber has the first, so order holds.
    """

    def __init__(self) -> None:
        self._subscribers: dict[type, list[Callable[[object], None]]] = {}
        self._queue: deque[Event] = deque()
        self._delivering = False

    def publish(self, event: Event) -> None:
        self._queue.append(event)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                one = self._queue.popleft()
                for callback in list(self._subscribers.get(type(one), ())):
                    try:
                        callback(one)
                    except Exception:
                        _log.failure("{kind} subscriber failed", kind=type(one).__name__)
        finally:
            self._delivering = False

    def subscribe(self, kind: type[E], callback: Callable[[E], None]) -> Callable[[], None]:
        callbacks = self._subscribers.setdefault(kind, [])
        # One entry per subscription, so the same callable may be subscribed
        # twice and each unsubscribe removes its own.
        entry: Callable[[object], None] = lambda event: callback(event)  # type: ignore[arg-type]  # noqa: E731
        callbacks.append(entry)

        def unsubscribe() -> None:
            if entry in callbacks:
                callbacks.remove(entry)

        return unsubscribe
