# -*- test-case-name: tests.test_store -*-
"""
The embedded SQLite backend: L{SQLiteStore} is the store's core
(L{capture.store._core.StoreCore}) on L{SQLiteBackend}.

Writes go through one writer thread that takes every operation waiting in
its queue and runs them in one transaction: one commit, one sync, many
messages (group commit).  Each operation runs in its own savepoint, so one
that fails is rolled back alone and the rest of the batch still commits.
Reads run on a small thread pool, each thread with its own connection; the
database is in WAL mode, so readers never wait for the writer.
"""

from __future__ import annotations

import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from capture.events import IEventBus
from capture.store._backend import Connection, Dialect, IBackend, Operation
from capture.store._core import StoreCore
from capture.store._sqlitemigrations import (
    _canonicalNames,
    _fillIMAP,
    _fillListings,
    _fillSummaries,
    _migrations,
    _refreshIMAP,
)
from capture.store.errors import SchemaTooNew, StoreError, StoreFull, StoreUnavailable
from capture.store.model import (
    StoreLoad,
)

T = TypeVar("T")
_log = Logger()

DATABASE_NAME = "capture.sqlite3"
_BATCH_LIMIT = 500
_PAGE_SIZE = 4096
# What new mail leaves free of the disk (and of --max-store-size, up to a
# quarter of it) for deletions, purges, retention and settings: a delete
# writes its pages to the WAL, and a checkpoint copies them into the
# database file, so both grow before anything is freed.  The WAL
# checkpoints at 1,000 pages (4 MiB), hence four times that.
DEFAULT_RESERVE = 16 * 1024 * 1024
# Bytes of the database file each reader maps (SQLite maps at most the file).
_READ_MMAP = 1 << 30

SQLITE = Dialect(
    name="sqlite",
    integrityError=sqlite3.IntegrityError,
    # ASCII case-insensitive already.
    like="LIKE",
    nextUid="SELECT seq FROM sqlite_sequence WHERE name = 'copies'",
    # A unary + keeps SQLite's planner off the column's indexes.
    notIndexed=lambda column: "+" + column,
    # Comparisons are integers already.
    truth=lambda expression: f"({expression})",
    asBytes=lambda expression: f"CAST({expression} AS BLOB)",
    # The order of an ordered, limited subquery is kept (the store tests
    # check it).
    joinText=lambda column: f"group_concat({column}, ',')",
    insertOrIgnore=lambda insert: insert.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1),
)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 2000")
    return conn


def _storeError(error: sqlite3.Error) -> StoreError:
    if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
        return StoreFull(str(error))
    return StoreError(str(error))


def _unavailable(directory: str, error: sqlite3.Error | OSError) -> StoreUnavailable:
    """
    What a caller is told when the data cannot be opened: one line, naming
    the directory (no driver exception leaves the store).
    """
    return StoreUnavailable(f"cannot open the data in {directory}: {error}")


class _Writer:
    """
    The one thread that writes, committing whatever is queued as one batch.
    """

    def __init__(
        self,
        path: str,
        reactor: IReactorFromThreads,
        maxPageCount: int,
        observeCommit: Callable[[float, int], None] | None = None,
        reserve: int = 0,
    ) -> None:
        """
        @param reserve: Octets of the disk, and of C{maxPageCount}'s size,
            that new mail may not use (L{makeRoom}): deletions, purges,
            retention and settings write into them, so a full store can
            always be emptied through Capture.
        """
        self._path = path
        self._reactor = reactor
        self._maxPageCount = maxPageCount
        self._observeCommit = observeCommit
        self._reserve = reserve
        # What the messages of the running batch will take, not yet on
        # disk: each one's room is checked with the ones before it counted,
        # against the room measured at the batch's first message.
        self._batchBytes = 0
        self._room: int | None = None
        # SimpleQueue: a C queue, several times cheaper per put than
        # queue.Queue, and a put per message is on the ingest path.
        self._queue: queue.SimpleQueue[
            tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._stopped: Deferred[None] = Deferred()

    def start(self) -> None:
        """
        Connect, then start the writer thread.

        @raise sqlite3.Error: The connection could not be made (raised
            here, where the store maps it, rather than in the thread, which
            would die and leave every write waiting).
        """
        self._conn = _connect(self._path)
        # Debian's SQLite is built with SECURE_DELETE, which zeroes every
        # freed page: a delete then writes as much to the WAL as it frees,
        # so on a full disk nothing could be deleted, and every retention
        # pass doubled its I/O.  FAST zeroes only what is written anyway;
        # freed pages keep old bytes until reused (disposable test mail).
        self._conn.execute("PRAGMA secure_delete = FAST")
        if self._maxPageCount:
            self._conn.execute(f"PRAGMA max_page_count = {int(self._maxPageCount)}")
        self._thread.start()

    def submit(self, operation: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        self._queue.put((operation, d))
        return d

    def stop(self) -> Deferred[None]:
        self._queue.put(None)
        return self._stopped

    def alive(self) -> bool:
        return self._thread.is_alive()

    def makeRoom(self, conn: sqlite3.Connection, size: int) -> None:
        """
        Count C{size} octets of new mail into the running batch, or refuse
        it: new mail stops while the disk (or C{--max-store-size}) has no
        more than the reserve left beyond it.  Called on the writer
        thread, by the operation that inserts a message, before it writes.

        @raise StoreFull: There is no room for it outside the reserve.
        """
        if self._room is None:
            # Measured once a batch (about 8 us with statvfs): the batch's
            # messages are counted against it as they come.
            self._room = self._measureRoom(conn)
        if self._batchBytes + size > self._room:
            raise StoreFull("the disk (or --max-store-size) is full up to the store's reserve")
        self._batchBytes += size

    def _measureRoom(self, conn: sqlite3.Connection) -> int:
        """
        Octets new mail may still take: the smaller of the disk's free space
        and what C{max_page_count} allows, each less the reserve.  Pages
        freed by deletions stay in the file, on its free list, and are used
        again before the file grows, so they count as room.
        """
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * _PAGE_SIZE
        disk = os.statvfs(os.path.dirname(self._path))
        room = disk.f_bavail * disk.f_frsize + free
        if self._maxPageCount:
            pageCount = conn.execute("PRAGMA page_count").fetchone()[0]
            room = min(room, (self._maxPageCount - pageCount) * _PAGE_SIZE + free)
        return room - self._reserve

    def depth(self) -> int:
        """
        Operations waiting for the writer (approximate, as any queue size
        read from another thread).
        """
        return self._queue.qsize()

    def _run(self) -> None:
        conn = self._conn
        while self._writeBatch(conn):
            pass
        try:
            conn.close()
        except sqlite3.Error:
            # Everything was committed (or failed to its caller) already.
            _log.failure("closing the store's writer connection failed")
        self._reactor.callFromThread(self._stopped.callback, None)

    def _writeBatch(self, conn: sqlite3.Connection) -> bool:
        """
        Wait for operations and commit what is waiting as one batch.

        A method of its own so that the batch (messages of up to
        C{--max-message-size} each) is freed once written, not kept alive
        by the loop's variables while the writer waits for the next one.

        @return: Whether to go on (no stop was asked).
        """
        first = self._queue.get()
        if first is None:
            return False
        batch = [first]
        going = True
        while len(batch) < _BATCH_LIMIT:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                going = False
                break
            batch.append(item)
        started = time.perf_counter()
        results = self._commit(conn, batch)
        # Timed here, recorded on the reactor with the results it
        # already receives: no counter is shared between threads.
        elapsed = time.perf_counter() - started
        self._reactor.callFromThread(self._deliver, results, elapsed)
        return going

    def _commit(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]]],
    ) -> list[tuple[Deferred[Any], bool, Any]]:
        """
        Run a batch in one transaction.  Operations almost never fail, so
        the batch is first run as it is; only if something fails is it run
        again with a savepoint per operation, so that the failure stays its
        operation's own.
        """
        self._batchBytes, self._room = 0, None
        whole = self._commitWhole(conn, batch)
        if whole is not None:
            return whole
        self._batchBytes, self._room = 0, None
        return self._commitEach(conn, batch)

    def _commitWhole(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]]],
    ) -> list[tuple[Deferred[Any], bool, Any]] | None:
        """
        Run every operation and commit, or undo everything and return
        L{None} if anything fails.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [(d, True, operation(conn)) for operation, d in batch]
            conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            return None
        return results

    def _commitEach(
        self,
        conn: sqlite3.Connection,
        batch: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]]],
    ) -> list[tuple[Deferred[Any], bool, Any]]:
        results: list[tuple[Deferred[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            error = _storeError(e)
            return [(d, False, Failure(error)) for _, d in batch]
        for index, (operation, d) in enumerate(batch):
            try:
                conn.execute("SAVEPOINT op")
                value = operation(conn)
                conn.execute("RELEASE op")
                results.append((d, True, value))
            except BaseException as e:
                failure = Failure(_storeError(e) if isinstance(e, sqlite3.Error) else e)
                try:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                except sqlite3.Error:
                    pass
                results.append((d, False, failure))
                if not conn.in_transaction:
                    # On some errors (SQLITE_FULL, I/O errors) SQLite rolls
                    # back the whole transaction, not just the savepoint:
                    # the operations before this one are undone and must not
                    # be reported as stored, and the rest of the batch needs
                    # a transaction of its own.
                    undone = [
                        (rd, False, failure if ok else rv) for rd, ok, rv in results
                    ]
                    return undone + self._commitEach(conn, batch[index + 1 :])
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            error = _storeError(e)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return [
                (d, False, value if not ok else Failure(error))
                for d, ok, value in results
            ]
        return results

    def _deliver(self, results: list[tuple[Deferred[Any], bool, Any]], elapsed: float) -> None:
        if self._observeCommit is not None:
            self._observeCommit(elapsed, len(results))
        for d, ok, value in results:
            if ok:
                d.callback(value)
            else:
                d.errback(value)


@implementer(IBackend)
class SQLiteBackend:
    """
    L{IBackend} on one SQLite database in a data directory: a writer
    thread (L{_Writer}) and a pool of reader threads, each with its own
    connection.

    @ivar _maxSize: The largest the database may grow, in bytes (0: only
        the disk limits it).
    @ivar _observeCommit: Called on the reactor after each write batch with
        the seconds it took (BEGIN to COMMIT) and its number of operations.
    """

    dialect = SQLITE

    def __init__(
        self,
        directory: str,
        reactor: Any,
        maxSize: int = 0,
        readThreads: int = 4,
        observeCommit: Callable[[float, int], None] | None = None,
        reserve: int = DEFAULT_RESERVE,
    ) -> None:
        """
        @param reserve: Octets of the disk new mail may not use (at most a
            quarter of C{maxSize} of the store), kept for deletions, purges,
            retention and settings, so that a full store can be emptied.
        """
        self._directory = directory
        self._path = os.path.join(directory, DATABASE_NAME)
        self._reactor = reactor
        self._maxSize = maxSize
        self._reserve = reserve
        self._pool = ThreadPool(minthreads=1, maxthreads=readThreads, name="capture-read")
        self._local = threading.local()
        self.writer: _Writer | None = None
        self._opened = False
        self._running = False
        self._readsPending = 0
        self._observeCommit = observeCommit
        self.uidValidity = 0

    # Life cycle

    def open(self) -> None:
        """
        Create or migrate the database, synchronously and without starting
        any thread, so that C{twistd} can do it before it daemonizes (a
        thread started before the fork would not survive it).

        @raise SchemaTooNew: The data was written by a newer Capture.
        @raise StoreUnavailable: The data cannot be opened or created.
        """
        try:
            self._open()
        except (sqlite3.Error, OSError) as e:
            raise _unavailable(self._directory, e) from e

    def _open(self) -> None:
        if self._opened:
            return
        os.makedirs(self._directory, mode=0o700, exist_ok=True)
        # Stores opening the same data at once (processes started together,
        # or two in one process) take turns: the first creates and migrates,
        # the next finds the schema current.  An flock() on a file of its
        # own, never on the database: closing any descriptor of the database
        # would drop SQLite's own (POSIX) locks held in this process.
        lock = os.open(self._path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Mail and key hashes are for Capture alone; SQLite gives the
            # -wal and -shm files the permissions of the database file.
            os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = _connect(self._path)
            try:
                # Migrate (which first refuses a newer schema) before
                # switching to WAL: that switch rewrites the file header,
                # and data from a newer Capture must be left untouched.
                self._migrate(conn)
                conn.execute("PRAGMA journal_mode = WAL")
                row = conn.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
                self.uidValidity = int(row[0])
            finally:
                conn.close()
        finally:
            os.close(lock)
        self._opened = True

    def start(self) -> None:
        """
        Open the store if L{open} was not called, then start the writer
        thread and the read pool.
        """
        self.open()
        maxPages = self._maxSize // _PAGE_SIZE if self._maxSize else 0
        reserve = min(self._reserve, self._maxSize // 4) if self._maxSize else self._reserve
        writer = _Writer(self._path, self._reactor, maxPages, self._observeCommit, reserve=reserve)
        try:
            writer.start()
        except sqlite3.Error as e:
            raise _unavailable(self._directory, e) from e
        self.writer = writer
        self._pool.start()
        self._running = True

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrations = _migrations()
        latest = migrations[-1][0]
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > latest:
            raise SchemaTooNew(
                f"The data in {self._directory} has schema version {current}, "
                f"but this Capture knows versions up to {latest}: it was "
                f"written by a newer Capture. Upgrade Capture; the data was "
                f"left untouched."
            )
        for version, script in migrations:
            if version <= current:
                continue
            _log.info("Applying schema migration {version}", version=version)
            conn.executescript(
                "BEGIN IMMEDIATE;\n" + script + f"\nPRAGMA user_version = {version};\n"
            )
            if version == 1:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('uidvalidity', ?)",
                    (str(int(time.time())),),
                )
            if version == 2:
                _fillSummaries(conn)
            if version == 3:
                _fillIMAP(conn)
            if version == 4:
                _canonicalNames(conn)
            if version == 6:
                _refreshIMAP(conn)
            if version == 7:
                _fillListings(conn)
            conn.execute("COMMIT")

    def stop(self) -> Deferred[None]:
        self._running = False
        self._pool.stop()
        if self.writer is None:
            return succeed(None)
        return self.writer.stop()

    def started(self) -> bool:
        return self.writer is not None

    # Running operations

    def read(self, operation: Operation[T]) -> Deferred[T]:
        def run() -> T:
            try:
                conn = getattr(self._local, "conn", None)
                if conn is None:
                    conn = _connect(self._path)
                    # Readers map the file: a page read is then a memory
                    # access, not a pread() and a copy into SQLite's small
                    # page cache (a 50-message listing touches 50 message
                    # rows).
                    conn.execute(f"PRAGMA mmap_size = {_READ_MMAP}")
                    self._local.conn = conn
                return operation(conn)
            except sqlite3.Error as e:
                raise _storeError(e) from e

        # Counted on the reactor, on the way in and out: no lock needed.
        self._readsPending += 1
        return deferToThreadPool(self._reactor, self._pool, run).addBoth(self._readDone)

    def _readDone(self, result: T) -> T:
        self._readsPending -= 1
        return result

    def write(self, operation: Operation[T]) -> Deferred[T]:
        assert self.writer is not None, "store not started"
        return self.writer.submit(operation)

    def offload(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, function, *args)

    def makeRoom(self, connection: Connection, size: int) -> None:
        assert self.writer is not None, "store not started"
        # Called within a write: the connection is the writer's own.
        self.writer.makeRoom(cast(sqlite3.Connection, connection), size)

    def ping(self) -> Deferred[None]:
        if not self._running or self.writer is None:
            return fail(StoreUnavailable("the store is not running"))
        if not self.writer.alive():
            return fail(StoreUnavailable("the store's writer thread has stopped"))
        return self.read(_ping)

    def load(self) -> StoreLoad:
        return StoreLoad(
            writesQueued=self.writer.depth() if self.writer is not None else 0,
            readsPending=self._readsPending,
        )


def _ping(conn: Connection) -> None:
    conn.execute("SELECT 1 FROM meta LIMIT 1").fetchone()


class SQLiteStore(StoreCore):
    """
    The store on one SQLite database in a data directory: what C{twistd
    capture}, the CLI and the tests construct.
    """

    def __init__(
        self,
        directory: str,
        reactor: Any = None,
        maxSize: int = 0,
        readThreads: int = 4,
        observeCommit: Callable[[float, int], None] | None = None,
        reserve: int = DEFAULT_RESERVE,
        events: IEventBus | None = None,
    ) -> None:
        """
        @param maxSize: The largest the database may grow, in bytes (0:
            only the disk limits it).
        @param observeCommit: Called on the reactor after each write batch
            with the seconds it took (BEGIN to COMMIT) and its number of
            operations.
        @param reserve: Octets of the disk new mail may not use (at most a
            quarter of C{maxSize} of the store), kept for deletions, purges,
            retention and settings, so that a full store can be emptied.
        @param events: Where every committed change to copies is published
            (L{None}: a bus of its own that nobody hears).
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._sqlite = SQLiteBackend(
            directory, reactor, maxSize, readThreads, observeCommit, reserve
        )
        super().__init__(self._sqlite, reactor, events)

    @property
    def _writer(self) -> _Writer | None:
        """
        The writer thread, once started (tests hold and count its batches).
        """
        return self._sqlite.writer
