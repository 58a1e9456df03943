# -*- test-case-name: tests.test_store -*-
"""
The shared state of the store's core, and the plumbing every role's
methods use to reach their backend.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from capture.events import ChangedCopies, ChangedCopy, IEventBus, InProcessBus, RemovedCopies
from capture.store._backend import Connection, Dialect, IBackend, Operation
from capture.store._ops import OpCounter
from capture.store._privacy import Privacy
from capture.store._retention import RetentionPass
from capture.store.errors import NotFound
from capture.store.model import (
    Account,
    Copy,
    RemovedCopy,
    StoreLoad,
)

T = TypeVar("T")
_log = Logger()
def _now() -> int:
    return int(time.time() * 1000)


class CoreBase:
    """
    What every part of the store's core shares: its backend and dialect,
    the privacy terms built from it, the statements built once, the
    event bus its changes are published to, retention's and op counting's
    bookkeeping.  The role classes (L{Accounts}, L{Ownership},
    L{Messages}, L{Mailboxes}) add the methods; L{StoreCore} is all of
    them.
    """

    def __init__(
        self, backend: IBackend, reactor: Any = None, events: IEventBus | None = None
    ) -> None:
        """
        @param events: Where every committed change to copies is published
            (L{None}: a bus of its own that nobody hears, for the admin
            command, whose process has no readers).
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._backend = backend
        self._reactor = reactor
        self._dialect: Dialect = backend.dialect
        self._privacy = Privacy(self._dialect)
        self._events: IEventBus = events if events is not None else InProcessBus()
        self._retention = RetentionPass()
        self._ops = OpCounter(reactor, backend)
        # Statements built from the dialect once, not per call.
        self._nextUid = self._dialect.nextUid
        self._metadataSelect = (
            f"SELECT c.uid, {self._dialect.truth('coalesce(c.read, 0) != 0')} "
            f"+ 2 * {self._dialect.truth('c.deleted != 0')} "
            f"+ 4 * {self._dialect.truth('c.answered != 0')} "
            f"+ 8 * {self._dialect.truth('c.flagged != 0')}, c.labels_json, m.size, m.received, "
        )
        self._attachmentInsert = self._dialect.insertOrIgnore(
            "INSERT INTO attachments(message, md5, part) VALUES (?, ?, ?)"
        )

    @property
    def uidValidity(self) -> int:
        return int(self._backend.uidValidity)

    # Life cycle

    def open(self) -> None:
        """
        Create or migrate the stored data (L{IBackend.open}).
        """
        self._backend.open()

    def start(self) -> None:
        self._backend.start()

    def stop(self) -> Deferred[None]:
        # Queued before the backend's stop, so the counts are written first.
        self._ops.stop()
        return self._backend.stop()

    # Plumbing

    def _read(self, operation: Operation[T]) -> Deferred[T]:
        return self._backend.read(operation)

    def _write(self, operation: Operation[T]) -> Deferred[T]:
        return self._backend.write(operation)

    def ping(self) -> Deferred[None]:
        return self._backend.ping()

    def load(self) -> StoreLoad:
        return self._backend.load()

    def _publishRemoved(self, removed: list[RemovedCopy]) -> None:
        if removed:
            self._events.publish(RemovedCopies(tuple(removed)))

    def _publishChanged(self, changed: list[ChangedCopy]) -> None:
        if changed:
            self._events.publish(ChangedCopies(tuple(changed)))

    def _changedCopy(self, copy: Copy) -> Copy:
        self._publishChanged([ChangedCopy.of(copy)])
        return copy

    def _removed(self, removed: list[RemovedCopy]) -> list[RemovedCopy]:
        self._publishRemoved(removed)
        return removed


def _account(conn: Connection, name: str) -> Account:
    row = conn.execute(
        "SELECT name, created, capture_private, message_limit FROM accounts WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no account {name!r}")
    return Account(row[0], row[1], bool(row[2]), row[3])


