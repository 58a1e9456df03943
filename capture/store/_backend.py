# -*- test-case-name: tests.test_store -*-
"""
What the store's core asks of a backend: somewhere to run read and write
operations, and the few spellings of SQL that differ between databases.

The core (L{capture.store._core.StoreCore}) holds Capture's rules and
queries; a backend (L{capture.store.sqlite.SQLiteBackend} now, PostgreSQL
later) runs them.  An operation is a plain function of one connection,
run off the reactor thread: on the read side with any connection, on the
write side inside the backend's transaction (and its own savepoint), so
that an operation that raises changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from capture.store.model import StoreLoad

T = TypeVar("T")


class Cursor(Protocol):
    """
    The part of a DB-API cursor the core uses.
    """

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """
    The part of a DB-API connection the core's operations use.

    The core writes its statements with C{?} and C{:name} placeholders
    (C{sqlite3}'s paramstyles); a backend whose driver takes another style
    (psycopg's C{%s}) hands operations a connection that rewrites the text
    (once per distinct statement), so SQLite pays nothing for it.
    """

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...


Operation = Callable[[Connection], T]


@attrs.frozen
class Dialect:
    """
    The spellings the core's SQL needs that SQLite and PostgreSQL do not
    share.  Everything else the core writes is in their common subset; a
    backend gives one L{Dialect}, and the core builds its statements from
    it once, when the store is made (no per-query cost).

    @ivar integrityError: What the driver raises when a statement breaks a
        uniqueness or foreign key constraint (the core turns it into
        L{capture.store.model.Conflict} where that is the answer).
    @ivar like: The operator for a case-insensitive (ASCII) pattern match
        (SQLite's C{LIKE} is; PostgreSQL's C{ILIKE}).
    @ivar nextUid: A query of one row and column: the highest copy uid ever
        given (or no row at all before the first), which C{UIDNEXT} is one
        more than.
    @ivar notIndexed: C{column} written so that the planner does not use
        an index on it (SQLite's unary C{+}), for the walked spelling of an
        account's copies.
    @ivar truth: A boolean expression as a 0/1 integer, to add or sum.
    @ivar asBytes: A text expression read back as bytes.
    @ivar joinText: The aggregate that joins a text column's values with
        commas between them, in the order of the rows (NULL for no rows).
    @ivar insertOrIgnore: C{INSERT INTO table(columns) VALUES (...)}
        rewritten to skip rows that would break a uniqueness constraint.
    """

    name: str
    integrityError: type[Exception]
    like: str
    nextUid: str
    notIndexed: Callable[[str], str]
    truth: Callable[[str], str]
    asBytes: Callable[[str], str]
    joinText: Callable[[str], str]
    insertOrIgnore: Callable[[str], str]


class IBackend(Interface):
    """
    Where the core's operations run: connections, transactions, threads
    and error mapping.  Operations that fail with the driver's errors fail
    with L{capture.store.model.StoreError} (or L{StoreFull}) instead; the
    core's own errors (L{NotFound}, L{Conflict}, ...) pass through.
    """

    dialect = Attribute("L{Dialect}: how this backend spells what SQL does not share.")
    uidValidity = Attribute("int: the stored UIDVALIDITY, known once L{open} returned.")

    def open() -> None:
        """
        Create or migrate the stored data, synchronously, starting no
        thread (safe before C{twistd} daemonizes).
        """

    def start() -> None:
        """
        L{open} if needed, then start the threads and connections.
        """

    def stop() -> Deferred[None]:
        """
        Run what is queued already, then close.
        """

    def started() -> bool:
        """
        Whether L{start} was called (writes may be queued).
        """

    def read(operation: Operation[T]) -> Deferred[T]:
        """
        Run C{operation} off the reactor on a connection that sees every
        committed write.
        """

    def write(operation: Operation[T]) -> Deferred[T]:
        """
        Run C{operation} in a transaction, in the order writes were asked
        for; its result is delivered once it is committed.
        """

    def offload(function: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        Run CPU work (parsing a large message) off the reactor thread.
        """

    def makeRoom(connection: Connection, size: int) -> None:
        """
        Within a write: count C{size} octets of new mail against the room
        the store has left, or refuse it with L{StoreFull}.
        """

    def ping() -> Deferred[None]:
        """
        Fire when the backend answers a trivial read; fail when it is not
        running or cannot.
        """

    def load() -> StoreLoad:
        """
        How much work is waiting, right now.
        """
