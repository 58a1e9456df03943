# -*- test-case-name: tests.test_store -*-
"""
The embedded SQLite backend of L{IStore}.

Writes go through one writer thread that takes every operation waiting in
its queue and runs them in one transaction: one commit, one sync, many
messages (group commit).  Each operation runs in its own savepoint, so one
that fails is rolled back alone and the rest of the batch still commits.
Reads run on a small thread pool, each thread with its own connection; the
database is in WAL mode, so readers never wait for the writer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from capture import imapdata
from capture.access import Visibility
from capture.addresses import canonicalAddress, canonicalDomain
from capture.ids import copyId, newApiKey, splitCopyId
from capture.mime import Attachment, MailAddress, ParsedMessage, Part, parseMessage
from capture.store.interface import IStore
from capture.store.model import (
    PUBLIC,
    Account,
    AccountDeletion,
    AccountStats,
    ApiKeyInfo,
    Bodies,
    Conflict,
    Copy,
    Domain,
    Envelope,
    FetchedMessage,
    FlagState,
    InboxOwner,
    MailboxEntry,
    MailboxQuery,
    MessageInfo,
    MetadataRow,
    NotFound,
    OwnedAddress,
    RemovedCopy,
    Retention,
    SchemaTooNew,
    StoreError,
    StoreFull,
    StoreLoad,
)
from capture.summary import summaryJSON

T = TypeVar("T")
_log = Logger()

DATABASE_NAME = "capture.sqlite3"
_BATCH_LIMIT = 500
_RETENTION_BATCH = 1000
_INLINE_PARSE_LIMIT = 32 * 1024
_PAGE_SIZE = 4096
# Octets a message's rows take besides its raw bytes and bodies.
_ROW_OVERHEAD = 16 * 1024
# What new mail leaves free of the disk (and of --max-store-size, up to a
# quarter of it) for deletions, purges, retention and settings: a delete
# writes its pages to the WAL, and a checkpoint copies them into the
# database file, so both grow before anything is freed.  The WAL
# checkpoints at 1,000 pages (4 MiB), hence four times that.
DEFAULT_RESERVE = 16 * 1024 * 1024
_OPS_FLUSH_INTERVAL = 1.0
_KEY_LENGTH = len(newApiKey())
# What is kept of a key besides its hash, to name it: "k_" and 6 characters.
_PREFIX_LENGTH = 8

_COPY_COLUMNS = """
    c.uid, c.n, c.inbox, c.original_inbox, c.saved_by, c.read, c.deleted,
    c.answered, c.flagged, c.labels_json, c.folder,
    m.id, m.queue_id, m.received, m.account, m.mail_from, m.size, m.subject,
    m.from_json, m.to_json, m.cc_json, m.bcc_json, m.date, m.message_id,
    m.links_json, m.attachments_json, m.ip, m.via, m.tls
"""
_COPY_FROM = "FROM copies c JOIN messages m ON m.id = c.message"
# Bytes of the database file each reader maps (SQLite maps at most the file).
_READ_MMAP = 1 << 30
# One copy's EmailMessage JSON, joined by SQLite: the copy's own fields,
# then the message's stored summary without its opening brace.
_COPY_JSON = """
    '{"_id":"' || m.queue_id || '-' || c.n || '","savedBy":' || json_quote(c.saved_by)
    || ',"inbox":' || json_quote(c.inbox) || ',"originalInbox":' || json_quote(c.original_inbox)
    || ',"domain":' || json_quote(c.domain) || ',"folder":' || json_quote(c.folder)
    || ',"labels":' || c.labels_json
    || ',"read":' || CASE c.read WHEN 1 THEN 'true' WHEN 0 THEN 'false' ELSE 'null' END
    || ',' || substr(m.summary_json, 2)
"""


def _now() -> int:
    return int(time.time() * 1000)


def _keyHash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _migrations() -> list[tuple[int, str]]:
    """
    The schema migrations shipped with this Capture, in order.
    """
    found = []
    for entry in resources.files("capture.store").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text("utf-8")))
    return sorted(found)


def _addresses(data: str) -> tuple[MailAddress, ...]:
    return tuple(MailAddress(address=a, name=n) for a, n in json.loads(data))


# One encoder for every column: json.dumps with options builds a new
# encoder on each call, which shows on the ingest path.
_toJSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _addressesJSON(addresses: tuple[MailAddress, ...]) -> str:
    if not addresses:
        return "[]"
    return _toJSON([[a.address, a.name] for a in addresses])


def _windowPage(rows: list[Any], limit: int, bound: Any) -> tuple[list[Copy], int | None]:
    """
    A bounded search's page and where the next one starts: below its last
    copy when the page is full, else below the window (C{bound}, the
    window's oldest uid row) when the window ended before the oldest copy,
    else nowhere.
    """
    copies = [_copyFromRow(r) for r in rows[:limit]]
    if len(rows) > limit:
        return copies, copies[-1].uid
    return copies, None if bound is None else int(bound[0])


def _copyFromRow(row: tuple[Any, ...]) -> Copy:
    (
        uid, n, inbox, original, savedBy, read, deleted, answered, flagged,
        labels, folder, rowid, queueId, received, account, mailFrom, size,
        subject, fromJSON, toJSON, ccJSON, bccJSON, date, messageId, links,
        attachments, ip, via, tls,
    ) = row
    return Copy(
        uid=uid,
        n=n,
        inbox=inbox,
        originalInbox=original,
        savedBy=savedBy,
        read=None if read is None else bool(read),
        deleted=bool(deleted),
        answered=bool(answered),
        flagged=bool(flagged),
        labels=tuple(json.loads(labels)),
        folder=folder,
        message=MessageInfo(
            rowid=rowid,
            queueId=queueId,
            received=received,
            account=account,
            mailFrom=mailFrom,
            size=size,
            subject=subject,
            fromAddresses=_addresses(fromJSON),
            to=_addresses(toJSON),
            cc=_addresses(ccJSON),
            bcc=_addresses(bccJSON),
            date=date,
            messageId=messageId,
            links=tuple(json.loads(links)),
            attachments=tuple(Attachment(*a) for a in json.loads(attachments)),
            ip=ip,
            via=via,
            tls=bool(tls),
        ),
    )


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 2000")
    return conn


def _fillSummaries(conn: sqlite3.Connection) -> None:
    """
    Write the summary of every message stored before migration 2, from its
    parsed columns (within the migration's transaction).
    """
    while True:
        rows = conn.execute(
            "SELECT id, received, size, subject, from_json, to_json, cc_json, bcc_json, "
            "links_json, attachments_json, ip, via, tls FROM messages "
            "WHERE summary_json IS NULL LIMIT 1000"
        ).fetchall()
        if not rows:
            return
        conn.executemany(
            "UPDATE messages SET summary_json = ? WHERE id = ?",
            [
                (
                    summaryJSON(
                        fromAddresses=_addresses(f), to=_addresses(t), cc=_addresses(c),
                        bcc=_addresses(b), subject=subject, received=received, size=size,
                        attachments=[a[0] for a in json.loads(attachments)], ip=ip, via=via,
                        tls=bool(tls), links=json.loads(links),
                    ),
                    rowid,
                )
                for (rowid, received, size, subject, f, t, c, b, links, attachments, ip, via,
                     tls) in rows
            ],
        )


# Names that may not be canonical: any character outside printable ASCII,
# or an A-label.
_MAYBE_IDN = "{0} GLOB '*[^ -~]*' OR {0} LIKE '%xn--%'"


def _canonicalNames(conn: sqlite3.Connection) -> None:
    """
    Rename inboxes, owned addresses and custom domains stored in another
    spelling than L{canonicalAddress}'s (migration 4, within its
    transaction).  Two spellings of one inbox merge; an owned address or
    domain whose canonical name is taken already keeps its old name (and a
    warning is logged), since two accounts cannot own one name.
    """
    inboxes = [r[0] for r in conn.execute(
        f"SELECT DISTINCT inbox FROM copies WHERE {_MAYBE_IDN.format('inbox')}"
    )]
    for inbox in inboxes:
        canonical = canonicalAddress(inbox)
        if canonical is not None and canonical != inbox:
            conn.execute(
                "UPDATE copies SET inbox = ?, domain = ? WHERE inbox = ?",
                (canonical, canonical.rpartition("@")[2], inbox),
            )
    for table, column, canonicalOf in (
        ("addresses", "address", canonicalAddress),
        ("domains", "domain", canonicalDomain),
    ):
        names = [r[0] for r in conn.execute(
            f"SELECT {column} FROM {table} WHERE {_MAYBE_IDN.format(column)}"
        )]
        for name in names:
            canonical = canonicalOf(name)
            if canonical is None or canonical == name:
                continue
            cursor = conn.execute(
                f"UPDATE OR IGNORE {table} SET {column} = ? WHERE {column} = ?", (canonical, name)
            )
            if cursor.rowcount == 0:
                _log.warn(
                    "{name!r} is also stored as {canonical!r}: kept under its old name",
                    name=name, canonical=canonical,
                )


def _fillIMAP(conn: sqlite3.Connection) -> None:
    """
    Write the IMAP texts of every message stored before migration 3, from
    its raw bytes and stored part tree (within the migration's transaction).
    """
    while True:
        rows = conn.execute(
            "SELECT m.id, r.raw, b.structure_json FROM messages m "
            "JOIN message_raw r ON r.message = m.id JOIN message_bodies b ON b.message = m.id "
            "WHERE m.imap_envelope IS NULL LIMIT 1000"
        ).fetchall()
        if not rows:
            return
        updates = []
        for rowid, raw, structureJSON in rows:
            raw = bytes(raw)
            try:
                part = Part.fromJSON(json.loads(structureJSON))
                texts = (imapdata.envelope(raw), imapdata.bodyStructure(raw, part))
            except Exception:
                # One odd message must not keep the store from opening:
                # it is served as the unparsed fallback would be.
                part = _fallbackParse(raw).structure
                texts = ("(" + " ".join(["NIL"] * 10) + ")", imapdata.bodyStructure(raw, part))
            updates.append((*texts, part.bodyStart, rowid))
        conn.executemany(
            "UPDATE messages SET imap_envelope = ?, imap_structure = ?, header_size = ? "
            "WHERE id = ?",
            updates,
        )


# A parameter folded inside its quotes (boundary="a<CRLF> b"), which the
# part tree found before migration 6 missed: such messages are parsed again.
_FOLDED_PARAMETER = re.compile(rb'="[^"\r\n]*\r\n[ \t]')


def _refreshIMAP(conn: sqlite3.Connection) -> None:
    """
    Migration 6: write again the IMAP texts of every message stored before
    it (ENVELOPE groups, routes and defaults, and the ENVELOPEs inside
    BODYSTRUCTURE, issue 12), and the part tree of those whose raw bytes
    hold a parameter folded inside its quotes (the multipart once seen as
    text). A message whose texts cannot be made keeps the ones it had.
    """
    last = 0
    while True:
        rows = conn.execute(
            "SELECT m.id, r.raw, b.structure_json FROM messages m "
            "JOIN message_raw r ON r.message = m.id JOIN message_bodies b ON b.message = m.id "
            "WHERE m.id > ? ORDER BY m.id LIMIT 1000",
            (last,),
        ).fetchall()
        if not rows:
            return
        updates = []
        trees = []
        for rowid, raw, structureJSON in rows:
            last = rowid
            raw = bytes(raw)
            try:
                if _FOLDED_PARAMETER.search(raw):
                    part = parseMessage(raw).structure
                    trees.append((_toJSON(part.toJSON()), rowid))
                else:
                    part = Part.fromJSON(json.loads(structureJSON))
                updates.append(
                    (imapdata.envelope(raw), imapdata.bodyStructure(raw, part), rowid)
                )
            except Exception:
                continue
        conn.executemany(
            "UPDATE messages SET imap_envelope = ?, imap_structure = ? WHERE id = ?", updates
        )
        conn.executemany("UPDATE message_bodies SET structure_json = ? WHERE message = ?", trees)


def _storeError(error: sqlite3.Error) -> StoreError:
    if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
        return StoreFull(str(error))
    return StoreError(str(error))


def _fallbackParse(raw: bytes) -> ParsedMessage:
    """
    What to file when the parser itself fails: the raw bytes are kept, so
    nothing the client sent is lost; only the parsed facts are missing.
    """
    return ParsedMessage(
        subject="",
        fromAddresses=(),
        to=(),
        cc=(),
        bcc=(),
        date=None,
        messageId=None,
        headers=(),
        text=raw.decode("utf-8", "replace"),
        html=None,
        attachments=(),
        links=(),
        structure=Part(
            mainType="text", subType="plain", params=(), contentId=None,
            description=None, encoding=None, disposition=None,
            dispositionParams=(), language=None, md5=None, headerStart=0,
            bodyStart=0, end=len(raw), lines=raw.count(b"\n"),
        ),
    )


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
        conn = _connect(self._path)
        # Debian's SQLite is built with SECURE_DELETE, which zeroes every
        # freed page: a delete then writes as much to the WAL as it frees,
        # so on a full disk nothing could be deleted, and every retention
        # pass doubled its I/O.  FAST zeroes only what is written anyway;
        # freed pages keep old bytes until reused (disposable test mail).
        conn.execute("PRAGMA secure_delete = FAST")
        if self._maxPageCount:
            conn.execute(f"PRAGMA max_page_count = {int(self._maxPageCount)}")
        while self._writeBatch(conn):
            pass
        conn.close()
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


@implementer(IStore)
class SQLiteStore:
    """
    L{IStore} on one SQLite database in a data directory.

    @ivar _maxSize: The largest the database may grow, in bytes (0: only
        the disk limits it).
    @ivar _observeCommit: Called on the reactor after each write batch with
        the seconds it took (BEGIN to COMMIT) and its number of operations.
    """

    def __init__(
        self,
        directory: str,
        reactor: Any = None,
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
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._directory = directory
        self._path = os.path.join(directory, DATABASE_NAME)
        self._reactor = reactor
        self._maxSize = maxSize
        self._reserve = reserve
        self._pool = ThreadPool(minthreads=1, maxthreads=readThreads, name="capture-read")
        self._local = threading.local()
        self._subscribers: list[Callable[[list[Copy]], None]] = []
        self._removedSubscribers: list[Callable[[list[RemovedCopy]], None]] = []
        self._writer: _Writer | None = None
        self._touchedInboxes: set[str] = set()
        self._touchedAccounts: set[str] = set()
        self._pendingOps: dict[tuple[str, str], int] = {}
        self._opsFlush: Any = None
        self._retentionFullScan = True
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
        """
        if self._opened:
            return
        os.makedirs(self._directory, mode=0o700, exist_ok=True)
        if not os.path.exists(self._path):
            # Mail and key hashes are for Capture alone; SQLite gives the
            # -wal and -shm files the permissions of the database file.
            os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = _connect(self._path)
        try:
            # Migrate (which first refuses a newer schema) before switching
            # to WAL: that switch rewrites the file header, and data from a
            # newer Capture must be left untouched.
            self._migrate(conn)
            conn.execute("PRAGMA journal_mode = WAL")
            row = conn.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
            self.uidValidity = int(row[0])
        finally:
            conn.close()
        self._opened = True

    def start(self) -> None:
        """
        Open the store if L{open} was not called, then start the writer
        thread and the read pool.
        """
        self.open()
        maxPages = self._maxSize // _PAGE_SIZE if self._maxSize else 0
        reserve = min(self._reserve, self._maxSize // 4) if self._maxSize else self._reserve
        self._writer = _Writer(
            self._path, self._reactor, maxPages, self._observeCommit, reserve=reserve
        )
        self._writer.start()
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
            conn.execute("COMMIT")

    def stop(self) -> Deferred[None]:
        self._running = False
        self._pool.stop()
        if self._writer is None:
            return succeed(None)
        if self._opsFlush is not None and self._opsFlush.active():
            self._opsFlush.cancel()
        # Queued before the writer's stop, so the counts are written first.
        self._flushOps()
        return self._writer.stop()

    # Plumbing

    def _read(self, operation: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        def run() -> T:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = _connect(self._path)
                # Readers map the file: a page read is then a memory access,
                # not a pread() and a copy into SQLite's small page cache
                # (a 50-message listing touches 50 message rows).
                conn.execute(f"PRAGMA mmap_size = {_READ_MMAP}")
            try:
                return operation(conn)
            except sqlite3.Error as e:
                raise _storeError(e) from e

        # Counted on the reactor, on the way in and out: no lock needed.
        self._readsPending += 1
        return deferToThreadPool(self._reactor, self._pool, run).addBoth(self._readDone)

    def _readDone(self, result: T) -> T:
        self._readsPending -= 1
        return result

    def _write(self, operation: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        assert self._writer is not None, "store not started"
        return self._writer.submit(operation)

    def ping(self) -> Deferred[None]:
        if not self._running or self._writer is None:
            return fail(StoreError("the store is not running"))
        if not self._writer.alive():
            return fail(StoreError("the store's writer thread has stopped"))
        return self._read(_ping)

    def load(self) -> StoreLoad:
        return StoreLoad(
            writesQueued=self._writer.depth() if self._writer is not None else 0,
            readsPending=self._readsPending,
        )

    def subscribe(self, callback: Callable[[list[Copy]], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def subscribeRemoved(
        self, callback: Callable[[list[RemovedCopy]], None]
    ) -> Callable[[], None]:
        self._removedSubscribers.append(callback)
        return lambda: self._removedSubscribers.remove(callback)

    def _publishRemoved(self, removed: list[RemovedCopy]) -> None:
        if not removed:
            return
        for callback in list(self._removedSubscribers):
            try:
                callback(list(removed))
            except Exception:
                _log.failure("removed-copy subscriber failed")

    def _published(self, copies: list[Copy]) -> None:
        for callback in list(self._subscribers):
            try:
                callback(list(copies))
            except Exception:
                _log.failure("new-message subscriber failed")

    # Accounts and keys

    def createAccount(self, name: str, key: str | None = None) -> Deferred[tuple[Account, str]]:
        theKey = key or newApiKey()

        def op(conn: sqlite3.Connection) -> tuple[Account, str]:
            now = _now()
            try:
                conn.execute(
                    "INSERT INTO accounts(name, created) VALUES (?, ?)", (name, now)
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"account {name!r} exists already") from None
            try:
                _insertKey(conn, name, theKey, "", now)
            except sqlite3.IntegrityError:
                # Only a chosen key (--accept-any-auth) can collide.
                raise Conflict("that key belongs to another account") from None
            return Account(name, now, False, None), theKey

        return self._write(op)

    def getAccount(self, name: str) -> Deferred[Account]:
        return self._read(lambda conn: _account(conn, name))

    def listAccounts(self) -> Deferred[list[Account]]:
        def op(conn: sqlite3.Connection) -> list[Account]:
            rows = conn.execute(
                "SELECT name, created, capture_private, message_limit "
                "FROM accounts ORDER BY name"
            )
            return [Account(r[0], r[1], bool(r[2]), r[3]) for r in rows]

        return self._read(op)

    def setAccountSettings(
        self,
        name: str,
        capturePrivate: bool | None = None,
        messageLimit: int | None = None,
    ) -> Deferred[Account]:
        def op(conn: sqlite3.Connection) -> Account:
            _account(conn, name)
            if capturePrivate is not None:
                conn.execute(
                    "UPDATE accounts SET capture_private = ? WHERE name = ?",
                    (int(capturePrivate), name),
                )
            if messageLimit is not None:
                conn.execute(
                    "UPDATE accounts SET message_limit = ? WHERE name = ?",
                    (messageLimit, name),
                )
            return _account(conn, name)

        return self._write(op)

    def createKey(self, account: str, label: str = "") -> Deferred[str]:
        key = newApiKey()

        def op(conn: sqlite3.Connection) -> str:
            _account(conn, account)
            _insertKey(conn, account, key, label, _now())
            return key

        return self._write(op)

    def listKeys(self, account: str) -> Deferred[list[ApiKeyInfo]]:
        def op(conn: sqlite3.Connection) -> list[ApiKeyInfo]:
            _account(conn, account)
            rows = conn.execute(
                "SELECT account, prefix, label, created, revoked FROM api_keys "
                "WHERE account = ? ORDER BY created",
                (account,),
            )
            return [ApiKeyInfo(*r) for r in rows]

        return self._read(op)

    def deleteAccount(self, name: str) -> Deferred[AccountDeletion]:
        def op(conn: sqlite3.Connection) -> tuple[AccountDeletion, list[RemovedCopy]]:
            _account(conn, name)
            keys = conn.execute(
                "SELECT count(*) FROM api_keys WHERE account = ?", (name,)
            ).fetchone()[0]
            addresses = tuple(r[0] for r in conn.execute(
                "SELECT address FROM addresses WHERE account = ? ORDER BY address", (name,)))
            domains = tuple(r[0] for r in conn.execute(
                "SELECT domain FROM domains WHERE account = ? ORDER BY domain", (name,)))
            # Its inboxes' copies, but those another account starred (theirs
            # to keep) and, in its domains, addresses others reserved.
            uids = [r[0] for r in conn.execute(
                "SELECT c.uid FROM copies c WHERE (c.saved_by IS NULL OR c.saved_by = ?) AND ("
                "c.inbox IN (SELECT address FROM addresses WHERE account = ?) OR ("
                "c.domain IN (SELECT domain FROM domains WHERE account = ?) AND "
                f"{_NOT_OTHERS}))",
                (name, name, name, name),
            )]
            removed = _deleteCopies(conn, uids)
            stars = conn.execute(
                "UPDATE copies SET saved_by = NULL WHERE saved_by = ?", (name,)
            ).rowcount
            conn.execute("UPDATE messages SET account = NULL WHERE account = ?", (name,))
            conn.execute("DELETE FROM usage WHERE account = ?", (name,))
            # Keys, addresses and domains go with it (ON DELETE CASCADE).
            conn.execute("DELETE FROM accounts WHERE name = ?", (name,))
            return AccountDeletion(keys, addresses, domains, len(removed), stars), removed

        def done(result: tuple[AccountDeletion, list[RemovedCopy]]) -> AccountDeletion:
            self._pendingOps = {k: v for k, v in self._pendingOps.items() if k[0] != name}
            self._removed(result[1])
            return result[0]

        return self._write(op).addCallback(done)

    def sessionGeneration(self, account: str, keyPrefix: str) -> Deferred[int | None]:
        def op(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT a.session_generation FROM accounts a JOIN api_keys k "
                "ON k.account = a.name WHERE a.name = ? AND k.prefix = ? "
                "AND k.revoked IS NULL LIMIT 1",
                (account, keyPrefix),
            ).fetchone()
            return None if row is None else int(row[0])

        return self._read(op)

    def endSessions(self, account: str) -> Deferred[int]:
        def op(conn: sqlite3.Connection) -> int:
            _account(conn, account)
            conn.execute(
                "UPDATE accounts SET session_generation = session_generation + 1 "
                "WHERE name = ?",
                (account,),
            )
            return int(conn.execute(
                "SELECT session_generation FROM accounts WHERE name = ?", (account,)
            ).fetchone()[0])

        return self._write(op)

    def revokeKey(self, account: str, prefix: str) -> Deferred[ApiKeyInfo]:
        def op(conn: sqlite3.Connection) -> ApiKeyInfo:
            _account(conn, account)
            rows = conn.execute(
                "SELECT hash, account, prefix, label, created FROM api_keys "
                "WHERE account = ? AND revoked IS NULL",
                (account,),
            ).fetchall()
            if len(prefix) == _KEY_LENGTH:
                # A whole key: match it exactly.
                matches = [r for r in rows if r[0] == _keyHash(prefix)]
            elif len(prefix) > _PREFIX_LENGTH:
                # Only the prefix is stored; more of the key cannot be
                # checked, and matching on part of what was given would
                # revoke a key the caller did not name.
                raise NotFound(
                    f"a key prefix has at most {_PREFIX_LENGTH} characters "
                    f"(as 'capture key list' shows them); or give the whole key"
                )
            else:
                matches = [r for r in rows if r[2].startswith(prefix)]
            if not prefix or not matches:
                raise NotFound(f"no live key of {account!r} starts with {prefix!r}")
            if len(matches) > 1:
                raise Conflict(f"{len(matches)} keys of {account!r} start with {prefix!r}")
            now = _now()
            conn.execute("UPDATE api_keys SET revoked = ? WHERE hash = ?", (now, matches[0][0]))
            _, acct, pfx, label, created = matches[0]
            return ApiKeyInfo(acct, pfx, label, created, now)

        return self._write(op)

    def accountForKey(self, key: str) -> Deferred[str | None]:
        digest = _keyHash(key)
        return self._read(lambda conn: _keyAccount(conn, digest))

    def accountAndOwner(self, key: str, inbox: str) -> Deferred[tuple[str | None, InboxOwner]]:
        digest = _keyHash(key)
        inbox = inbox.lower()
        return self._read(lambda conn: (_keyAccount(conn, digest), _owner(conn, inbox)))

    def resolveLogin(self, username: str) -> Deferred[str | None]:
        return self._read(lambda conn: _resolveLogin(conn, username))

    def checkLogin(self, username: str, key: str) -> Deferred[tuple[str | None, str | None]]:
        digest = _keyHash(key) if key else None
        return self._read(lambda conn: (
            _keyAccount(conn, digest) if digest is not None else None,
            _resolveLogin(conn, username),
        ))

    # Owned addresses and domains

    def reserveAddress(self, account: str, address: str) -> Deferred[OwnedAddress]:
        address = address.lower()

        def op(conn: sqlite3.Connection) -> OwnedAddress:
            _account(conn, account)
            row = conn.execute(
                "SELECT account FROM addresses WHERE address = ?", (address,)
            ).fetchone()
            if row is not None:
                raise Conflict(f"{address} is owned already")
            now = _now()
            conn.execute(
                "INSERT INTO addresses(address, account, created, updated) VALUES (?, ?, ?, ?)",
                (address, account, now, now),
            )
            return OwnedAddress(address, account, now, now)

        return self._write(op)

    def releaseAddress(self, account: str, address: str) -> Deferred[None]:
        address = address.lower()

        def op(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "DELETE FROM addresses WHERE address = ? AND account = ?", (address, account)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"{account!r} does not own {address}")

        return self._write(op)

    def updateAddress(
        self, account: str, address: str, settings: dict[str, Any]
    ) -> Deferred[OwnedAddress]:
        address = address.lower()
        unknown = set(settings) - _ADDRESS_SETTINGS
        if unknown:
            return fail(ValueError(f"unknown address settings: {sorted(unknown)}"))

        def op(conn: sqlite3.Connection) -> OwnedAddress:
            now = _now()
            for name, value in settings.items():
                conn.execute(
                    f"UPDATE addresses SET {name} = ?, updated = ? "
                    "WHERE address = ? AND account = ?",
                    (int(value) if name == "enablews" else value, now, address, account),
                )
            row = conn.execute(
                f"SELECT {_ADDRESS_COLUMNS} FROM addresses WHERE address = ? AND account = ?",
                (address, account),
            ).fetchone()
            if row is None:
                raise NotFound(f"{account!r} does not own {address}")
            return _addressFromRow(row)

        return self._write(op)

    def listAddresses(self, account: str) -> Deferred[list[OwnedAddress]]:
        def op(conn: sqlite3.Connection) -> list[OwnedAddress]:
            rows = conn.execute(
                f"SELECT {_ADDRESS_COLUMNS} FROM addresses WHERE account = ? ORDER BY address",
                (account,),
            )
            return [_addressFromRow(r) for r in rows]

        return self._read(op)

    def addDomain(self, account: str, domain: str, isPrivate: bool = True) -> Deferred[Domain]:
        domain = domain.lower()

        def op(conn: sqlite3.Connection) -> Domain:
            _account(conn, account)
            now = _now()
            try:
                conn.execute(
                    "INSERT INTO domains(domain, account, is_private, created) VALUES (?, ?, ?, ?)",
                    (domain, account, int(isPrivate), now),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"{domain} is owned already") from None
            return Domain(domain, account, isPrivate, now)

        return self._write(op)

    def removeDomain(self, account: str, domain: str) -> Deferred[None]:
        domain = domain.lower()

        def op(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "DELETE FROM domains WHERE domain = ? AND account = ?", (domain, account)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"{account!r} does not own {domain}")

        return self._write(op)

    def listDomains(self, account: str) -> Deferred[list[Domain]]:
        def op(conn: sqlite3.Connection) -> list[Domain]:
            rows = conn.execute(
                "SELECT domain, account, is_private, created FROM domains "
                "WHERE account = ? ORDER BY domain",
                (account,),
            )
            return [Domain(r[0], r[1], bool(r[2]), r[3]) for r in rows]

        return self._read(op)

    def domainOwner(self, domain: str) -> Deferred[str | None]:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT account FROM domains WHERE domain = ?", (domain.lower(),)
            ).fetchone()
            return None if row is None else str(row[0])

        return self._read(op)

    def setDomainPrivacy(self, account: str, domain: str, isPrivate: bool) -> Deferred[Domain]:
        domain = domain.lower()

        def op(conn: sqlite3.Connection) -> Domain:
            cursor = conn.execute(
                "UPDATE domains SET is_private = ? WHERE domain = ? AND account = ?",
                (int(isPrivate), domain, account),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"{account!r} does not own {domain}")
            row = conn.execute(
                "SELECT domain, account, is_private, created FROM domains WHERE domain = ?",
                (domain,),
            ).fetchone()
            return Domain(row[0], row[1], bool(row[2]), row[3])

        return self._write(op)

    def reserveAddresses(
        self, account: str, addresses: list[str]
    ) -> Deferred[list[OwnedAddress]]:
        wanted = list(dict.fromkeys(a.lower() for a in addresses))

        def op(conn: sqlite3.Connection) -> list[OwnedAddress]:
            _account(conn, account)
            marks = ",".join("?" * len(wanted))
            held = {
                r[0]: r
                for r in conn.execute(
                    f"SELECT {_ADDRESS_COLUMNS} FROM addresses WHERE address IN ({marks})",
                    wanted,
                )
            }
            # Another account's address, or an address in its private domain.
            taken = [a for a in wanted if _owner(conn, a).account not in (None, account)]
            if taken:
                raise Conflict(", ".join(taken))
            now = _now()
            conn.executemany(
                "INSERT INTO addresses(address, account, created, updated) VALUES (?, ?, ?, ?)",
                [(a, account, now, now) for a in wanted if a not in held],
            )
            return [
                _addressFromRow(held[a]) if a in held else OwnedAddress(a, account, now, now)
                for a in wanted
            ]

        return self._write(op)

    def inboxOwner(self, address: str) -> Deferred[InboxOwner]:
        return self._read(lambda conn: _owner(conn, address.lower()))

    def routes(self, inboxes: Iterable[str]) -> Deferred[dict[str, OwnedAddress]]:
        wanted = sorted({inbox.lower() for inbox in inboxes})
        return self._read(lambda conn: _routes(conn, wanted))

    def webhookTargets(self, inboxes: Iterable[str]) -> Deferred[dict[str, OwnedAddress]]:
        wanted = sorted({inbox.lower() for inbox in inboxes})

        def op(conn: sqlite3.Connection) -> dict[str, OwnedAddress]:
            return {i: r for i, r in _routes(conn, wanted).items() if r.webhook}

        return self._read(op)

    # Messages

    def addMessage(self, envelope: Envelope, raw: bytes) -> Deferred[list[Copy]]:
        # Parsing is CPU work, done here rather than in the writer: a small
        # message (most of them) is parsed at once on the calling thread,
        # which costs less than handing it to a thread; a large one on the
        # read pool, so the reactor never stalls on it.
        d: Deferred[_Inserted]
        if len(raw) <= _INLINE_PARSE_LIMIT:
            try:
                d = self._submitPrepared(_prepare(envelope, raw))
            except Exception:
                d = fail()
        else:
            parsed = deferToThreadPool(self._reactor, self._pool, _prepare, envelope, raw)
            d = parsed.addCallback(self._submitPrepared)

        def stored(inserted: _Inserted) -> list[Copy]:
            copies = _newCopies(inserted)
            self._touchedInboxes.update(c.inbox for c in copies)
            if inserted.starredBy is not None:
                # Starred mail counts toward its account's limit wherever
                # it was filed.
                self._touchedAccounts.add(inserted.starredBy)
            self._published(copies)
            return list(copies)

        return d.addCallback(stored)

    def _submitPrepared(self, prepared: _PreparedMessage) -> Deferred[_Inserted]:
        writer = self._writer
        assert writer is not None, "store not started"
        # The raw bytes, and about as much again for the parsed bodies and
        # rows (the text and HTML are stored beside the raw message).
        size = 2 * len(prepared.raw) + _ROW_OVERHEAD

        def insert(conn: sqlite3.Connection) -> _Inserted:
            writer.makeRoom(conn, size)
            return _insertMessage(conn, prepared)

        return self._write(insert)

    def getCopy(self, copyId: str) -> Deferred[Copy]:
        split = splitCopyId(copyId)
        if split is None:
            return fail(NotFound(f"no message {copyId!r}"))
        queueId, n = split

        def op(conn: sqlite3.Connection) -> Copy:
            row = conn.execute(
                f"SELECT {_COPY_COLUMNS} {_COPY_FROM} WHERE m.queue_id = ? AND c.n = ?",
                (queueId, n),
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {copyId!r}")
            return _copyFromRow(row)

        return self._read(op)

    def listInbox(
        self,
        inbox: str,
        visibility: Visibility,
        limit: int = 50,
        beforeUid: int | None = None,
        until: int | None = None,
    ) -> Deferred[list[Copy]]:
        inbox = inbox.lower()

        def op(conn: sqlite3.Connection) -> list[Copy]:
            sql, params = _newest(
                _COPY_COLUMNS, "c.inbox = ?", [inbox], visibility, limit, until, beforeUid
            )
            return [_copyFromRow(r) for r in conn.execute(sql, params)]

        return self._read(op)

    def listInboxJSON(
        self, inbox: str, visibility: Visibility, limit: int = 50, until: int | None = None
    ) -> Deferred[bytes]:
        inbox = inbox.lower()

        def op(conn: sqlite3.Connection) -> bytes:
            sql, params = _newest(
                f"{_COPY_JSON} AS j", "c.inbox = ?", [inbox], visibility, limit, until
            )
            # One row, aggregated by SQLite: a row per message would take
            # and give back the GIL fifty times, each time waiting on the
            # reactor thread.  The subquery's order is kept by group_concat
            # (what SQLite does with an ordered, limited subquery; the store
            # tests check the order).
            (joined,) = conn.execute(
                f"SELECT '[' || coalesce(group_concat(j, ','), '') || ']' FROM ({sql})", params
            ).fetchone()
            return str(joined).encode("utf-8")

        return self._read(op)

    def countInbox(self, inbox: str, visibility: Visibility) -> Deferred[int]:
        inbox = inbox.lower()

        def op(conn: sqlite3.Connection) -> int:
            where, args = _visibleWhere(visibility)
            row = conn.execute(
                f"SELECT count(*) FROM copies c WHERE c.inbox = ?{where}", (inbox, *args)
            ).fetchone()
            return int(row[0])

        return self._read(op)

    def getRaw(self, copy: Copy) -> Deferred[bytes]:
        def op(conn: sqlite3.Connection) -> bytes:
            row = conn.execute(
                "SELECT raw FROM message_raw WHERE message = ?", (copy.message.rowid,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {copy.id!r}")
            return bytes(row[0])

        return self._read(op)

    def listMailbox(self, inbox: str, visibility: Visibility) -> Deferred[list[MailboxEntry]]:
        inbox = inbox.lower()
        where, args = _visibleWhere(visibility)
        return self._read(lambda conn: _entries(conn, f"c.inbox = ?{where}", (inbox, *args)))

    def listSent(self, account: str) -> Deferred[list[MailboxEntry]]:
        return self._read(
            lambda conn: _entries(conn, f"c.uid IN ({_SENT_UIDS})", (account,) * 4)
        )

    def getEntryRaw(self, entry: MailboxEntry) -> Deferred[bytes]:
        def op(conn: sqlite3.Connection) -> bytes:
            row = conn.execute(
                "SELECT raw FROM message_raw WHERE message = ?", (entry.message,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {entry.copyId!r}")
            return bytes(row[0])

        return self._read(op)

    def getBodies(self, copy: Copy) -> Deferred[Bodies]:
        def op(conn: sqlite3.Connection) -> Bodies:
            row = conn.execute(
                "SELECT text, html, headers_json, structure_json FROM message_bodies "
                "WHERE message = ?",
                (copy.message.rowid,),
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {copy.id!r}")
            return Bodies(
                text=row[0],
                html=row[1],
                headers=tuple((k, v) for k, v in json.loads(row[2])),
                structure=json.loads(row[3]),
            )

        return self._read(op)

    def deleteCopy(self, copy: Copy) -> Deferred[None]:
        def op(conn: sqlite3.Connection) -> None:
            cursor = conn.execute("DELETE FROM copies WHERE uid = ?", (copy.uid,))
            if cursor.rowcount == 0:
                raise NotFound(f"no message {copy.id!r}")
            _dropOrphans(conn, [copy.message.rowid])

        return self._write(op).addCallback(
            lambda _: self._publishRemoved([RemovedCopy.of(copy)])
        )

    def setCopyState(
        self,
        copy: Copy,
        read: bool | None = None,
        labels: tuple[str, ...] | None = None,
        folder: str | None = None,
    ) -> Deferred[Copy]:
        def op(conn: sqlite3.Connection) -> Copy:
            if read is not None:
                conn.execute("UPDATE copies SET read = ? WHERE uid = ?", (int(read), copy.uid))
            if labels is not None:
                conn.execute(
                    "UPDATE copies SET labels_json = ? WHERE uid = ?",
                    (_toJSON(list(labels)), copy.uid),
                )
            if folder is not None:
                conn.execute("UPDATE copies SET folder = ? WHERE uid = ?", (folder, copy.uid))
            return _reread(conn, copy)

        return self._write(op)

    # IMAP and POP3

    def readerInboxes(self, account: str) -> Deferred[list[str]]:
        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT address FROM addresses WHERE account = ? "
                "UNION SELECT DISTINCT c.inbox FROM copies c "
                "JOIN domains d ON d.domain = c.domain AND d.is_private = 1 "
                f"WHERE d.account = ? AND {_NOT_OTHERS} ORDER BY 1",
                (account, account, account),
            )
            return [r[0] for r in rows]

        return self._read(op)

    def mailboxFlags(self, query: MailboxQuery) -> Deferred[list[FlagState]]:
        def op(conn: sqlite3.Connection) -> list[FlagState]:
            columns = "c.uid, c.read, c.deleted, c.answered, c.flagged, c.labels_json"
            if query.inbox is not None:
                where, args = _visibleWhere(query.visibility)
                rows = conn.execute(
                    f"SELECT {columns} FROM copies c WHERE c.inbox = ?{where} ORDER BY c.uid",
                    (query.inbox.lower(), *args),
                )
            else:
                rows = conn.execute(
                    f"SELECT {columns} FROM copies c WHERE c.uid IN ({_SENT_UIDS}) ORDER BY c.uid",
                    (query.sentBy,) * 4,
                )
            return [_flagState(r) for r in rows]

        return self._read(op)

    def nextUid(self) -> Deferred[int]:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'copies'").fetchone()
            return (int(row[0]) if row else 0) + 1

        return self._read(op)

    def fetchMessages(
        self,
        uids: list[int],
        envelope: bool = False,
        structure: bool = False,
        raw: bool = False,
        headersOnly: bool = False,
        part: bool = False,
    ) -> Deferred[dict[int, FetchedMessage]]:
        columns = ["c.uid", "c.read", "c.deleted", "c.answered", "c.flagged", "c.labels_json",
                   "m.size", "m.received", "m.header_size",
                   "m.imap_envelope" if envelope else "NULL",
                   "m.imap_structure" if structure else "NULL"]
        joins = ""
        if raw:
            columns.append("substr(r.raw, 1, m.header_size)" if headersOnly else "r.raw")
            joins += " JOIN message_raw r ON r.message = m.id"
        else:
            columns.append("NULL")
        if part:
            columns.append("b.structure_json")
            joins += " JOIN message_bodies b ON b.message = m.id"
        else:
            columns.append("NULL")
        select = f"SELECT {', '.join(columns)} {_COPY_FROM}{joins} WHERE "

        def op(conn: sqlite3.Connection) -> dict[int, FetchedMessage]:
            found = {}
            for where, args, wanted in _uidClauses(uids):
                for row in conn.execute(select + where, args):
                    if wanted is not None and row[0] not in wanted:
                        continue
                    size, received, headerSize, env, struct, data, tree = row[6:]
                    found[row[0]] = FetchedMessage(
                        row[0], size, received, headerSize or 0, env, struct,
                        None if data is None else bytes(data),
                        None if tree is None else Part.fromJSON(json.loads(tree)),
                        _flagState(row[:6]),
                    )
            return found

        return self._read(op)

    def fetchMetadata(
        self, uids: list[int], envelope: bool = False, structure: bool = False
    ) -> Deferred[list[MetadataRow]]:
        # Flags as one int and the IMAP texts as bytes: fewer Python
        # objects per row, and no decoding of text that goes out as ASCII.
        select = (
            "SELECT c.uid, (ifnull(c.read, 0) != 0) + 2 * (c.deleted != 0) "
            "+ 4 * (c.answered != 0) + 8 * (c.flagged != 0), c.labels_json, m.size, m.received, "
            + ("CAST(m.imap_envelope AS BLOB), " if envelope else "NULL, ")
            + ("CAST(m.imap_structure AS BLOB) " if structure else "NULL ")
            + f"{_COPY_FROM} WHERE "
        )

        def op(conn: sqlite3.Connection) -> list[MetadataRow]:
            found: list[MetadataRow] = []
            for where, args, wanted in _uidClauses(uids):
                rows = conn.execute(select + where + " ORDER BY c.uid", args)
                if wanted is None:
                    found.extend(rows)
                else:
                    found.extend(row for row in rows if row[0] in wanted)
            return found

        return self._read(op)

    def searchMessages(
        self,
        uids: list[int],
        match: Callable[[FlagState, FetchedMessage, str | None, str | None], bool],
        bodies: bool = False,
    ) -> Deferred[list[int]]:
        rawColumn = "r.raw" if bodies else "substr(r.raw, 1, m.header_size)"
        textColumns = "b.text, b.html" if bodies else "NULL, NULL"
        select = (
            "SELECT c.uid, c.read, c.deleted, c.answered, c.flagged, c.labels_json, m.size, "
            f"m.received, m.header_size, {rawColumn}, {textColumns} {_COPY_FROM} "
            "JOIN message_raw r ON r.message = m.id JOIN message_bodies b ON b.message = m.id "
            "WHERE c.uid IN "
        )

        def op(conn: sqlite3.Connection) -> list[int]:
            matched = []
            for chunk in _chunks(uids):
                query = select + "(" + ",".join("?" * len(chunk)) + ")"
                for row in conn.execute(query, chunk):
                    state = _flagState(row[:6])
                    fetched = FetchedMessage(
                        row[0], row[6], row[7], row[8] or 0, raw=bytes(row[9])
                    )
                    if match(state, fetched, row[10], row[11]):
                        matched.append(row[0])
            return sorted(matched)

        return self._read(op)

    def setFlags(self, states: list[FlagState]) -> Deferred[None]:
        rows = [
            (int(s.read), int(s.deleted), int(s.answered), int(s.flagged),
             _toJSON(list(s.labels)), s.uid)
            for s in states
        ]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE copies SET read = ?, deleted = ?, answered = ?, flagged = ?, "
                "labels_json = ? WHERE uid = ?",
                rows,
            )

        return self._write(op)

    def deleteCopies(self, uids: list[int]) -> Deferred[list[int]]:
        def op(conn: sqlite3.Connection) -> list[RemovedCopy]:
            return _deleteCopies(conn, uids)

        return self._write(op).addCallback(self._removed).addCallback(
            lambda removed: sorted(r.uid for r in removed)
        )

    def _removed(self, removed: list[RemovedCopy]) -> list[RemovedCopy]:
        self._publishRemoved(removed)
        return removed

    def listAccountInbox(
        self,
        account: str,
        limit: int = 20,
        skip: int = 0,
        since: int | None = None,
        beforeUid: int | None = None,
    ) -> Deferred[tuple[list[Copy], int]]:
        def op(conn: sqlite3.Connection) -> tuple[list[Copy], int]:
            mine = _accountCopies(conn, account)
            params: dict[str, Any] = {"a": account, "limit": limit, "skip": skip}
            extra = ""
            if since is not None:
                extra += " AND c.received >= :since"
                params["since"] = since
            if beforeUid is not None:
                extra += " AND c.uid < :before"
                params["before"] = beforeUid
            # Page through the uids alone, then join the page's messages.
            rows = conn.execute(
                f"SELECT {_COPY_COLUMNS} {_COPY_FROM} WHERE c.uid IN ("
                f"SELECT c.uid FROM copies c WHERE {mine}{extra} "
                "ORDER BY c.uid DESC LIMIT :limit OFFSET :skip) ORDER BY c.uid DESC",
                params,
            )
            copies = [_copyFromRow(r) for r in rows]
            unread = conn.execute(
                f"SELECT count(*) FROM copies c WHERE {_MINE_INDEXED} "
                "AND (c.read IS NULL OR c.read = 0)",
                {"a": account},
            ).fetchone()[0]
            return copies, int(unread)

        return self._read(op)

    def searchAccount(
        self,
        account: str,
        subject: str | None = None,
        sender: str | None = None,
        recipient: str | None = None,
        read: bool | None = None,
        anyOf: str | None = None,
        limit: int = 100,
    ) -> Deferred[list[Copy]]:
        def op(conn: sqlite3.Connection) -> list[Copy]:
            mine = _accountCopies(conn, account)
            clauses, params = _accountSearch(subject, sender, recipient, read, anyOf)
            rows = conn.execute(
                f"SELECT {_COPY_COLUMNS} {_COPY_FROM} WHERE {mine} AND {clauses} "
                "ORDER BY c.uid DESC LIMIT :limit",
                {**params, "a": account, "limit": limit},
            )
            return [_copyFromRow(r) for r in rows]

        return self._read(op)

    def searchAccountWindow(
        self,
        account: str,
        anyOf: str,
        limit: int = 100,
        beforeUid: int | None = None,
        scan: int = 10_000,
    ) -> Deferred[tuple[list[Copy], int | None]]:
        def op(conn: sqlite3.Connection) -> tuple[list[Copy], int | None]:
            mine = _accountCopies(conn, account)
            clauses, params = _accountSearch(anyOf=anyOf)
            params.update(a=account, limit=limit + 1, scan=scan - 1)
            if beforeUid is not None:
                mine += " AND c.uid < :before"
                params["before"] = beforeUid
            # The window's oldest uid, then the search within it: as
            # searchInbox, a common word costs a page, a rare one the window.
            bound = conn.execute(
                f"SELECT c.uid FROM copies c WHERE {mine} ORDER BY c.uid DESC "
                "LIMIT 1 OFFSET :scan", params,
            ).fetchone()
            if bound is not None:
                mine += " AND c.uid >= :bound"
                params["bound"] = bound[0]
            rows = conn.execute(
                f"SELECT {_COPY_COLUMNS} {_COPY_FROM} WHERE {mine} AND {clauses} "
                "ORDER BY c.uid DESC LIMIT :limit",
                params,
            ).fetchall()
            return _windowPage(rows, limit, bound)

        return self._read(op)

    def searchInbox(
        self,
        inbox: str,
        visibility: Visibility,
        words: list[str],
        limit: int = 50,
        beforeUid: int | None = None,
        scan: int = 10_000,
    ) -> Deferred[tuple[list[Copy], int | None]]:
        inbox = inbox.lower()

        def op(conn: sqlite3.Connection) -> tuple[list[Copy], int | None]:
            where, visibleArgs = _visibleWhere(visibility)
            listed = f"c.inbox = ?{where}"
            args: list[Any] = [inbox, *visibleArgs]
            if beforeUid is not None:
                listed += " AND c.uid < ?"
                args.append(beforeUid)
            # The window's oldest uid, from the index alone; the search then
            # walks the same index newest first and stops at a full page,
            # so a common word costs a page, a rare one the window.
            bound = conn.execute(
                f"SELECT c.uid FROM copies c WHERE {listed} ORDER BY c.uid DESC "
                "LIMIT 1 OFFSET ?", [*args, scan - 1],
            ).fetchone()
            if bound is not None:
                listed += " AND c.uid >= ?"
                args.append(bound[0])
            # Each word in any searched column; OR stops at the first match,
            # so the body is read only for copies whose headers do not match.
            matches = []
            for word in words:
                matches.append(
                    "(m.subject LIKE ? ESCAPE '\\' OR m.from_json LIKE ? ESCAPE '\\' "
                    "OR m.to_json LIKE ? ESCAPE '\\' OR m.cc_json LIKE ? ESCAPE '\\' "
                    "OR (SELECT b.text FROM message_bodies b WHERE b.message = m.id) "
                    "LIKE ? ESCAPE '\\')"
                )
                args += [_like(word)] * 5
            rows = conn.execute(
                f"SELECT {_COPY_COLUMNS} {_COPY_FROM} WHERE {listed} AND "
                f"{' AND '.join(matches) or '1'} ORDER BY c.uid DESC LIMIT ?",
                [*args, limit + 1],
            ).fetchall()
            return _windowPage(rows, limit, bound)

        return self._read(op)

    def purgeInbox(self, inbox: str) -> Deferred[int]:
        inbox = inbox.lower()

        def op(conn: sqlite3.Connection) -> list[RemovedCopy]:
            uids = [
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM copies WHERE inbox = ? AND saved_by IS NULL", (inbox,)
                )
            ]
            return _deleteCopies(conn, uids)

        return self._write(op).addCallback(self._removed).addCallback(len)

    def listDomain(
        self,
        domain: str,
        account: str,
        visibility: Visibility,
        limit: int = 20,
        until: int | None = None,
    ) -> Deferred[list[Copy]]:
        domain = domain.lower()

        def op(conn: sqlite3.Connection) -> list[Copy]:
            sql, params = _newest(
                _COPY_COLUMNS, f"c.domain = ? AND {_NOT_OTHERS}", [domain, account], visibility,
                limit, until,
            )
            return [_copyFromRow(r) for r in conn.execute(sql, params)]

        return self._read(op)

    def countDomain(self, domain: str, account: str, visibility: Visibility) -> Deferred[int]:
        domain = domain.lower()

        def op(conn: sqlite3.Connection) -> int:
            where, args = _visibleWhere(visibility)
            row = conn.execute(
                f"SELECT count(*) FROM copies c WHERE c.domain = ? AND {_NOT_OTHERS}{where}",
                (domain, account, *args),
            ).fetchone()
            return int(row[0])

        return self._read(op)

    def purgeDomain(self, domain: str, account: str) -> Deferred[int]:
        domain = domain.lower()

        def op(conn: sqlite3.Connection) -> list[RemovedCopy]:
            uids = [
                r[0]
                for r in conn.execute(
                    f"SELECT uid FROM copies c WHERE c.domain = ? AND {_NOT_OTHERS} "
                    "AND c.saved_by IS NULL",
                    (domain, account),
                )
            ]
            return _deleteCopies(conn, uids)

        return self._write(op).addCallback(self._removed).addCallback(len)

    def accountStats(self, account: str) -> Deferred[AccountStats]:
        def op(conn: sqlite3.Connection) -> AccountStats:
            mine = f"({_OWNED_BY} OR c.saved_by = :a)"
            stored, size = conn.execute(
                f"SELECT count(*), coalesce(sum(m.size), 0) {_COPY_FROM} WHERE {mine}",
                {"a": account},
            ).fetchone()
            starred = conn.execute(
                "SELECT count(*) FROM copies WHERE saved_by = ?", (account,)
            ).fetchone()[0]
            elsewhere = conn.execute(
                f"SELECT DISTINCT c.inbox FROM copies c WHERE c.saved_by = :a AND NOT {_OWNED_BY} "
                "ORDER BY c.inbox LIMIT 1000",
                {"a": account},
            )
            return AccountStats(
                starredMessages=int(starred),
                storedMessages=int(stored),
                inboxBytes=int(size),
                nonOwnedInboxes=tuple(r[0] for r in elsewhere),
            )

        return self._read(op)

    def listStarred(self, account: str, limit: int = 50) -> Deferred[list[Copy]]:
        def op(conn: sqlite3.Connection) -> list[Copy]:
            rows = conn.execute(
                f"SELECT {_COPY_COLUMNS} {_COPY_FROM} WHERE c.saved_by = ? "
                "ORDER BY c.uid DESC LIMIT ?",
                (account, limit),
            )
            return [_copyFromRow(r) for r in rows]

        return self._read(op)

    def setStarred(self, copy: Copy, account: str | None) -> Deferred[Copy]:
        def op(conn: sqlite3.Connection) -> Copy:
            conn.execute("UPDATE copies SET saved_by = ? WHERE uid = ?", (account, copy.uid))
            return _reread(conn, copy)

        return self._write(op)

    def usage(self, account: str, month: str) -> Deferred[int]:
        # Read through the writer, in order after every flush already
        # queued: the row then holds all flushed ops, and the ops still in
        # memory now are added once.  (On the read pool a read racing a
        # flush would miss, or double, the ops in flight.)
        pending = self._pendingOps.get((account, month), 0)

        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT ops FROM usage WHERE account = ? AND month = ?", (account, month)
            ).fetchone()
            return (int(row[0]) if row else 0) + pending

        return self._write(op)

    def countOp(self, account: str) -> None:
        """
        Count one op (an API call) for C{account} this month.  Ops are
        summed in memory and written once a second, in one write: a write per
        call would put the writer, and its fsync, on every read.
        """
        month = time.strftime("%Y-%m", time.gmtime())
        self._pendingOps[(account, month)] = self._pendingOps.get((account, month), 0) + 1
        if self._opsFlush is None:
            self._opsFlush = self._reactor.callLater(_OPS_FLUSH_INTERVAL, self._flushOps)

    def _flushOps(self) -> Deferred[None]:
        self._opsFlush = None
        pending, self._pendingOps = self._pendingOps, {}
        if not pending or self._writer is None:
            return succeed(None)

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO usage(account, month, ops) VALUES (?, ?, ?) "
                "ON CONFLICT(account, month) DO UPDATE SET ops = ops + excluded.ops",
                [(account, month, n) for (account, month), n in pending.items()],
            )

        d = self._write(op)
        d.addErrback(lambda f: _log.failure("Could not record API ops", f))
        return d

    # Retention

    def enforceRetention(self, retention: Retention, now: int) -> Deferred[int]:
        """
        One bounded pass of retention.  Inboxes written since the last pass
        are checked against the per-inbox limit (all inboxes on the first
        pass after start), so a pass costs what changed, not the store.
        """
        inboxes, self._touchedInboxes = self._touchedInboxes, set()
        accounts, self._touchedAccounts = self._touchedAccounts, set()
        fullScan, self._retentionFullScan = self._retentionFullScan, False

        def op(conn: sqlite3.Connection) -> _RetentionResult:
            return _enforceRetention(conn, retention, now, inboxes, accounts, fullScan)

        def done(result: _RetentionResult) -> int:
            # What had more excess than one batch is looked at again by the
            # next pass.
            self._touchedInboxes |= result.unfinishedInboxes
            self._touchedAccounts |= result.unfinishedAccounts
            # Sessions with the inbox selected and pages showing it hear of
            # recycled copies as of any other deletion.
            self._publishRemoved(result.removed)
            return len(result.removed)

        def failed(reason: Failure) -> Failure:
            # Nothing was removed: the next pass must look at all of it.
            self._touchedInboxes |= inboxes
            self._touchedAccounts |= accounts
            self._retentionFullScan = self._retentionFullScan or fullScan
            return reason

        return self._write(op).addCallbacks(done, failed)


_ADDRESS_COLUMNS = "address, account, created, updated, info, forward, webhook, enablews"
# The settings updateAddress may change; each is also its column's name.
_ADDRESS_SETTINGS = {"info", "forward", "webhook", "enablews"}


def _ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1 FROM meta LIMIT 1").fetchone()


def _addressFromRow(row: tuple[Any, ...]) -> OwnedAddress:
    address, account, created, updated, info, forward, webhook, enablews = row
    return OwnedAddress(
        address=address, account=account, created=created, updated=updated, info=info,
        forward=forward, webhook=webhook, enablews=bool(enablews),
    )


def _reread(conn: sqlite3.Connection, copy: Copy) -> Copy:
    """
    A copy as it is stored now, after a change.
    """
    row = conn.execute(f"SELECT {_COPY_COLUMNS} {_COPY_FROM} WHERE c.uid = ?", (copy.uid,)).fetchone()
    if row is None:
        raise NotFound(f"no message {copy.id!r}")
    return _copyFromRow(row)


def _insertKey(conn: sqlite3.Connection, account: str, key: str, label: str, now: int) -> None:
    conn.execute(
        "INSERT INTO api_keys(hash, account, prefix, label, created) VALUES (?, ?, ?, ?, ?)",
        (_keyHash(key), account, key[:_PREFIX_LENGTH], label, now),
    )


def _account(conn: sqlite3.Connection, name: str) -> Account:
    row = conn.execute(
        "SELECT name, created, capture_private, message_limit FROM accounts WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no account {name!r}")
    return Account(row[0], row[1], bool(row[2]), row[3])


def _keyAccount(conn: sqlite3.Connection, digest: bytes) -> str | None:
    row = conn.execute(
        "SELECT hash, account FROM api_keys WHERE hash = ? AND revoked IS NULL", (digest,)
    ).fetchone()
    # The lookup is by SHA-256 digest, so its timing says nothing about how
    # much of a guessed key was right; the comparison in constant time is
    # there for whoever changes the lookup.
    if row is None or not hmac.compare_digest(row[0], digest):
        return None
    return str(row[1])


def _routes(conn: sqlite3.Connection, inboxes: list[str]) -> dict[str, OwnedAddress]:
    """
    L{IStore.routes}: each inbox's own address record, else its domain's
    catch-all when that catch-all's account owns the domain (a catch-all
    left behind by a released domain routes nothing).
    """
    found: dict[str, OwnedAddress] = {}
    # SQLite allows 999 parameters per statement in old builds.
    for start in range(0, len(inboxes), 500):
        chunk = inboxes[start : start + 500]
        for row in conn.execute(
            f"SELECT {_ADDRESS_COLUMNS} FROM addresses WHERE address IN "
            f"({','.join('?' * len(chunk))})",
            chunk,
        ):
            address = _addressFromRow(row)
            found[address.address] = address
    byCatchAll: dict[str, list[str]] = {}
    for inbox in inboxes:
        if inbox not in found:
            byCatchAll.setdefault("*@" + inbox.rpartition("@")[2], []).append(inbox)
    names = sorted(byCatchAll)
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for row in conn.execute(
            f"SELECT {_ADDRESS_COLUMNS} FROM addresses a WHERE address IN "
            f"({','.join('?' * len(chunk))}) AND EXISTS (SELECT 1 FROM domains d "
            "WHERE d.account = a.account AND '*@' || d.domain = a.address)",
            chunk,
        ):
            catchAll = _addressFromRow(row)
            for inbox in byCatchAll[catchAll.address]:
                found[inbox] = catchAll
    return found


def _resolveLogin(conn: sqlite3.Connection, username: str) -> str | None:
    name = username.strip()
    lowered = canonicalAddress(name) or name.lower()
    row = conn.execute("SELECT name FROM accounts WHERE name = ?", (name,)).fetchone()
    if row:
        return str(row[0])
    if "@" in lowered:
        owner = _owner(conn, lowered)
        if owner.account is not None:
            return owner.account
    # A domain the account owns, or an address in one of its public
    # domains.
    domain = lowered.rpartition("@")[2]
    domain = canonicalDomain(domain) or domain
    row = conn.execute("SELECT account FROM domains WHERE domain = ?", (domain,)).fetchone()
    return str(row[0]) if row else None


def _owner(conn: sqlite3.Connection, address: str) -> InboxOwner:
    row = conn.execute("SELECT account FROM addresses WHERE address = ?", (address,)).fetchone()
    if row is not None:
        return InboxOwner(row[0])
    domain = address.rpartition("@")[2]
    row = conn.execute(
        "SELECT account FROM domains WHERE domain = ? AND is_private = 1", (domain,)
    ).fetchone()
    if row is not None:
        return InboxOwner(row[0], implicit=True)
    return PUBLIC


def _newest(
    columns: str,
    condition: str,
    args: list[Any],
    visibility: Visibility,
    limit: int,
    until: int | None,
    beforeUid: int | None = None,
) -> tuple[str, list[Any]]:
    """
    The query for the newest C{limit} copies matching C{condition} that
    C{visibility} shows, received up to C{until} and below C{beforeUid}.
    """
    where, visibleArgs = _visibleWhere(visibility)
    sql = f"SELECT {columns} {_COPY_FROM} WHERE {condition}{where}"
    params = [*args, *visibleArgs]
    if beforeUid is not None:
        sql += " AND c.uid < ?"
        params.append(beforeUid)
    if until is not None:
        sql += " AND c.received <= ?"
        params.append(until)
    sql += " ORDER BY c.uid DESC LIMIT ?"
    params.append(limit)
    return sql, params


# The account's sent mail (its IMAP and POP3 INBOX): one copy per message it
# sent, the lowest uid among the copies it may read, flag and delete: in
# public inboxes (unless someone else starred them) or in its own
# (capture.access.permits).  Four parameters, each the account.
_SENT_UIDS = (
    "SELECT min(c.uid) FROM messages m JOIN copies c ON c.message = m.id WHERE m.account = ? "
    "AND (c.saved_by IS NULL OR c.saved_by = ?) AND CASE WHEN EXISTS "
    "(SELECT 1 FROM addresses o WHERE o.address = c.inbox) THEN EXISTS "
    "(SELECT 1 FROM addresses o WHERE o.address = c.inbox AND o.account = ?) "
    "ELSE NOT EXISTS (SELECT 1 FROM domains d WHERE d.domain = c.domain "
    "AND d.is_private = 1 AND d.account != ?) END GROUP BY m.id"
)


def _entries(
    conn: sqlite3.Connection, condition: str, args: tuple[Any, ...]
) -> list[MailboxEntry]:
    """
    The copies matching C{condition} as L{MailboxEntry}, oldest first.
    """
    rows = conn.execute(
        f"SELECT c.uid, m.queue_id, c.n, m.id, m.size {_COPY_FROM} WHERE {condition} "
        "ORDER BY c.uid",
        args,
    )
    return [MailboxEntry(uid, copyId(queueId, n), rowid, size) for uid, queueId, n, rowid, size in rows]


def _visibleWhere(visibility: Visibility) -> tuple[str, tuple[Any, ...]]:
    if visibility.everything:
        return "", ()
    if visibility.starredBy is None:
        return " AND c.saved_by IS NULL", ()
    return " AND (c.saved_by IS NULL OR c.saved_by = ?)", (visibility.starredBy,)


@attrs.frozen
class _PreparedMessage:
    """
    A message parsed and turned into rows, ready for the writer: all the
    CPU work of ingest happens before the writer sees it, so the writer
    thread only runs SQL (which releases the GIL) and never competes with
    the reactor for the interpreter.
    """

    envelope: Envelope
    parsed: ParsedMessage
    messageRow: tuple[Any, ...]
    bodiesRow: tuple[Any, ...]
    raw: bytes
    attachmentRows: list[tuple[str, str]]
    copyRows: list[tuple[Any, ...]]
    month: str


def _prepare(envelope: Envelope, raw: bytes) -> _PreparedMessage:
    """
    Parse a message (once) and build its rows.

    Whatever goes wrong in parsing, the message is still stored: a message
    the parser cannot handle, or whose parsed text SQLite would refuse, is
    stored with its raw bytes and no parsed facts, rather than refused with
    a 4xx that the client would retry forever.
    """
    try:
        prepared = _rows(envelope, raw, parseMessage(raw))
        for row in (prepared.messageRow, prepared.bodiesRow):
            for value in row:
                # ASCII text is known to encode (constant time, no copy).
                if isinstance(value, str) and not value.isascii():
                    value.encode("utf-8")
        return prepared
    except Exception:
        _log.failure("parsing {queueId} failed; storing it unparsed", queueId=envelope.queueId)
        return _rows(envelope, raw, _fallbackParse(raw))


def _rows(envelope: Envelope, raw: bytes, parsed: ParsedMessage) -> _PreparedMessage:
    attachments = [
        [a.md5, a.filename, a.contentType, a.contentId, a.size, a.part]
        for a in parsed.attachments
    ]
    messageRow = (
        envelope.queueId, envelope.received, envelope.account, envelope.mailFrom,
        envelope.helo, envelope.ip, envelope.via, int(envelope.tls), len(raw),
        parsed.subject, _addressesJSON(parsed.fromAddresses),
        _addressesJSON(parsed.to), _addressesJSON(parsed.cc),
        _addressesJSON(parsed.bcc), parsed.date, parsed.messageId,
        _toJSON(list(parsed.links)) if parsed.links else "[]",
        _toJSON(attachments) if attachments else "[]",
        summaryJSON(
            fromAddresses=parsed.fromAddresses, to=parsed.to, cc=parsed.cc, bcc=parsed.bcc,
            subject=parsed.subject, received=envelope.received, size=len(raw),
            attachments=[a.md5 for a in parsed.attachments], ip=envelope.ip,
            via=envelope.via, tls=envelope.tls, links=parsed.links,
        ),
        imapdata.envelope(raw),
        imapdata.bodyStructure(raw, parsed.structure),
        parsed.structure.bodyStart,
    )
    bodiesRow = (
        parsed.text,
        parsed.html,
        _toJSON([list(h) for h in parsed.headers]),
        _toJSON(parsed.structure.toJSON()),
    )
    copyRows = [
        (n, r.inbox.lower(), r.original, r.inbox.lower().rpartition("@")[2], envelope.received)
        for n, r in enumerate(envelope.recipients)
    ]
    return _PreparedMessage(
        envelope=envelope,
        parsed=parsed,
        messageRow=messageRow,
        bodiesRow=bodiesRow,
        raw=raw,
        attachmentRows=[(a.md5, a.part) for a in parsed.attachments],
        copyRows=copyRows,
        month=time.strftime("%Y-%m", time.gmtime(envelope.received / 1000)),
    )


@attrs.frozen
class _Inserted:
    """
    What the writer reports for one stored message: the numbers SQLite gave
    it, from which the reactor side builds the L{Copy} objects.
    """

    prepared: _PreparedMessage
    rowid: int
    uids: list[int]
    starredBy: str | None


def _insertMessage(conn: sqlite3.Connection, prepared: _PreparedMessage) -> _Inserted:
    envelope = prepared.envelope
    starredBy = None
    if envelope.account is not None:
        account = _account(conn, envelope.account)
        if account.capturePrivate:
            starredBy = account.name
    cursor = conn.execute(
        "INSERT INTO messages(queue_id, received, account, mail_from, helo, ip, via, tls, "
        "size, subject, from_json, to_json, cc_json, bcc_json, date, message_id, "
        "links_json, attachments_json, summary_json, imap_envelope, imap_structure, "
        "header_size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        prepared.messageRow,
    )
    rowid = cursor.lastrowid
    assert rowid is not None
    conn.execute(
        "INSERT INTO message_bodies(message, text, html, headers_json, structure_json) "
        "VALUES (?, ?, ?, ?, ?)",
        (rowid, *prepared.bodiesRow),
    )
    conn.execute("INSERT INTO message_raw(message, raw) VALUES (?, ?)", (rowid, prepared.raw))
    if prepared.attachmentRows:
        conn.executemany(
            "INSERT OR IGNORE INTO attachments(message, md5, part) VALUES (?, ?, ?)",
            [(rowid, md5, part) for md5, part in prepared.attachmentRows],
        )
    uids = []
    for row in prepared.copyRows:
        cursor = conn.execute(
            "INSERT INTO copies(message, n, inbox, original_inbox, domain, received, saved_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rowid, *row, starredBy),
        )
        assert cursor.lastrowid is not None
        uids.append(cursor.lastrowid)
    if envelope.account is not None:
        conn.execute(
            "INSERT INTO usage(account, month, ops) VALUES (?, ?, 1) "
            "ON CONFLICT(account, month) DO UPDATE SET ops = ops + 1",
            (envelope.account, prepared.month),
        )
    return _Inserted(prepared, rowid, uids, starredBy)


def _newCopies(inserted: _Inserted) -> list[Copy]:
    prepared = inserted.prepared
    envelope, parsed = prepared.envelope, prepared.parsed
    info = MessageInfo(
        rowid=inserted.rowid,
        queueId=envelope.queueId,
        received=envelope.received,
        account=envelope.account,
        mailFrom=envelope.mailFrom,
        size=len(prepared.raw),
        subject=parsed.subject,
        fromAddresses=parsed.fromAddresses,
        to=parsed.to,
        cc=parsed.cc,
        bcc=parsed.bcc,
        date=parsed.date,
        messageId=parsed.messageId,
        links=parsed.links,
        attachments=parsed.attachments,
        ip=envelope.ip,
        via=envelope.via,
        tls=envelope.tls,
    )
    return [
        Copy(
            uid=uid, n=n, inbox=inbox, originalInbox=original,
            savedBy=inserted.starredBy, read=None, deleted=False, answered=False,
            flagged=False, labels=(), folder="inbox", message=info,
        )
        for uid, (n, inbox, original, _, _) in zip(inserted.uids, prepared.copyRows, strict=True)
    ]


def _dropOrphans(conn: sqlite3.Connection, messages: Iterable[int]) -> None:
    conn.executemany(
        "DELETE FROM messages WHERE id = ? AND NOT EXISTS "
        "(SELECT 1 FROM copies WHERE message = ?)",
        [(m, m) for m in set(messages)],
    )


def _deleteCopies(conn: sqlite3.Connection, uids: list[int]) -> list[RemovedCopy]:
    """
    Delete the copies of C{uids} that exist, and their messages if no copy
    is left; the rows read on the way are what subscribers are told.
    """
    removed: list[RemovedCopy] = []
    messages: set[int] = set()
    for chunk in _chunks(uids):
        marks = ",".join("?" * len(chunk))
        for uid, message, n, inbox, savedBy, queueId in conn.execute(
            "SELECT c.uid, c.message, c.n, c.inbox, c.saved_by, m.queue_id "
            f"{_COPY_FROM} WHERE c.uid IN ({marks})",
            chunk,
        ):
            messages.add(message)
            removed.append(RemovedCopy(uid, copyId(queueId, n), inbox, savedBy))
        conn.execute(f"DELETE FROM copies WHERE uid IN ({marks})", chunk)
    _dropOrphans(conn, messages)
    return removed


def _chunks(uids: list[int], size: int = 500) -> Iterable[list[int]]:
    for start in range(0, len(uids), size):
        yield uids[start : start + size]


def _uidClauses(uids: list[int]) -> Iterable[tuple[str, list[int], set[int] | None]]:
    """
    WHERE clauses that read the copies C{uids} names, with their arguments
    and the uids to keep of what each reads (L{None}: all of it).

    A dense set (most of a mailbox, the usual FETCH 1:*) is read as one
    range of the primary key, a scan about twice as fast as looking up
    each uid of IN lists, and filtered to C{uids} after: the range may
    hold other inboxes' copies, which never leave this function's caller.
    A sparse set is read in IN lists of 500.
    """
    if len(uids) >= 64:
        low, high = min(uids), max(uids)
        if 2 * len(uids) >= high - low + 1:
            yield "c.uid BETWEEN ? AND ?", [low, high], set(uids)
            return
    for chunk in _chunks(uids):
        yield "c.uid IN (" + ",".join("?" * len(chunk)) + ")", chunk, None


def _flagState(row: tuple[Any, ...]) -> FlagState:
    uid, read, deleted, answered, flagged, labels = row
    return FlagState(
        uid, bool(read), bool(deleted), bool(answered), bool(flagged),
        tuple(json.loads(labels)) if labels != "[]" else (),
    )


def _like(text: str) -> str:
    """
    A LIKE pattern matching C{text} anywhere, its own wildcards escaped.
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Copies in the inboxes account :a owns (reserved addresses, private domains).
_OWNED_BY = """
    (c.inbox IN (SELECT address FROM addresses WHERE account = :a)
     OR c.domain IN (SELECT domain FROM domains WHERE account = :a AND is_private = 1))
"""

# The account's unified inbox (M17): copies in its owned addresses and
# private domains, and the copies it starred.  Two spellings of the same
# test.  Indexed, SQLite unions the inbox, domain and saved_by indexes,
# which reads every copy of the account and sorts them (15 ms a page at
# 100,000 copies, 80 ms at OFFSET 50,000, 130 ms for a search).  Walked,
# the unary + keeps SQLite off those indexes, so it reads copies by uid
# (the primary key) newest first, tests each, and stops at LIMIT: a page
# of an account that owns much of the store costs a page.
_MINE_INDEXED = f"({_OWNED_BY} OR c.saved_by = :a)"
_MINE_WALKED = """
    (+c.inbox IN (SELECT address FROM addresses WHERE account = :a)
     OR +c.domain IN (SELECT domain FROM domains WHERE account = :a AND is_private = 1)
     OR +c.saved_by = :a)
"""
# How many of the store's newest copies L{_accountCopies} looks at, and the
# share of them that must be the account's for walking to pay.
_WALK_SAMPLE = 1000
_WALK_SHARE = 20


def _accountCopies(conn: sqlite3.Connection, account: str) -> str:
    """
    The account's copies as a WHERE term (parameter C{:a}), in the spelling
    that is cheaper for this account: walked when at least one in
    C{_WALK_SHARE} of the store's newest C{_WALK_SAMPLE} copies is the
    account's (a page then walks at most C{_WALK_SHARE} times its rows),
    indexed otherwise (an account owning little of a large store: its
    copies are few, and collecting them all is cheaper than walking past
    everybody else's).  The sample costs about 0.1 ms.
    """
    sampled, mine = conn.execute(
        f"SELECT count(*), coalesce(sum({_MINE_WALKED}), 0) FROM (SELECT c.inbox, c.domain, "
        f"c.saved_by FROM copies c ORDER BY c.uid DESC LIMIT {_WALK_SAMPLE}) c",
        {"a": account},
    ).fetchone()
    return _MINE_WALKED if mine and mine * _WALK_SHARE >= sampled else _MINE_INDEXED


def _accountSearch(
    subject: str | None = None,
    sender: str | None = None,
    recipient: str | None = None,
    read: bool | None = None,
    anyOf: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """
    The WHERE terms (copies C{c}, messages C{m}) and parameters of an
    account search (M18's conditions, all required; M19's C{anyOf}).
    """
    clauses = []
    params: dict[str, Any] = {}
    if subject is not None:
        clauses.append("m.subject LIKE :subject ESCAPE '\\'")
        params["subject"] = _like(subject)
    if sender is not None:
        clauses.append("m.from_json LIKE :sender ESCAPE '\\'")
        params["sender"] = _like(sender)
    if recipient is not None:
        clauses.append(
            "(m.to_json LIKE :recipient ESCAPE '\\' OR c.inbox LIKE :recipient ESCAPE '\\')"
        )
        params["recipient"] = _like(recipient)
    if read is not None:
        clauses.append("coalesce(c.read, 0) = :read")
        params["read"] = int(read)
    if anyOf is not None:
        clauses.append(
            "(m.subject LIKE :any ESCAPE '\\' OR m.from_json LIKE :any ESCAPE '\\' "
            "OR m.to_json LIKE :any ESCAPE '\\')"
        )
        params["any"] = _like(anyOf)
    return " AND ".join(clauses) or "1", params


# Not in an address that another account than ? reserved (inside a domain).
_NOT_OTHERS = (
    "NOT EXISTS (SELECT 1 FROM addresses o WHERE o.address = c.inbox AND o.account != ?)"
)

_PUBLIC_COPY = """
    c.saved_by IS NULL
    AND NOT EXISTS (SELECT 1 FROM addresses a WHERE a.address = c.inbox)
    AND NOT EXISTS (SELECT 1 FROM domains d WHERE d.domain = c.domain AND d.is_private = 1)
"""


def _enforceRetention(
    conn: sqlite3.Connection,
    retention: Retention,
    now: int,
    inboxes: set[str],
    accounts: set[str],
    fullScan: bool,
) -> _RetentionResult:
    """
    One bounded pass of retention.

    @return: The copies removed, and the inboxes that still have more to
        remove than this pass took.
    """
    removed: list[RemovedCopy] = []
    unfinished: set[str] = set()
    if retention.publicMaxAge:
        cutoff = now - retention.publicMaxAge * 1000
        uids = [
            r[0]
            for r in conn.execute(
                f"SELECT uid FROM copies c WHERE c.received < ? AND {_PUBLIC_COPY} LIMIT ?",
                (cutoff, _RETENTION_BATCH),
            )
        ]
        removed += _deleteCopies(conn, uids)
    if retention.publicInboxLimit:
        if fullScan:
            inboxes = inboxes | {
                r[0]
                for r in conn.execute(
                    "SELECT inbox FROM copies GROUP BY inbox HAVING count(*) > ?",
                    (retention.publicInboxLimit,),
                )
            }
        for inbox in inboxes:
            if _owner(conn, inbox).account is not None:
                continue
            uids = [
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM copies c WHERE c.inbox = ? AND c.saved_by IS NULL "
                    "ORDER BY c.uid DESC LIMIT ? OFFSET ?",
                    (inbox, _RETENTION_BATCH, retention.publicInboxLimit),
                )
            ]
            removed += _deleteCopies(conn, uids)
            if len(uids) == _RETENTION_BATCH:
                unfinished.add(inbox)
    owners = {_owner(conn, inbox).account for inbox in inboxes} | accounts
    if fullScan:
        owners |= {r[0] for r in conn.execute("SELECT name FROM accounts")}
    unfinishedAccounts = set()
    for account in owners:
        if account is None:
            continue
        recycled, more = _enforceMessageLimit(conn, account, retention.messageLimit)
        removed += recycled
        if more:
            unfinishedAccounts.add(account)
    return _RetentionResult(removed, unfinished, unfinishedAccounts)


@attrs.frozen
class _RetentionResult:
    """
    What one retention pass did, and what it left for the next.
    """

    removed: list[RemovedCopy]
    unfinishedInboxes: set[str]
    unfinishedAccounts: set[str]


def _enforceMessageLimit(
    conn: sqlite3.Connection, account: str, default: int
) -> tuple[list[RemovedCopy], bool]:
    """
    Recycle the oldest unstarred copies in the account's owned inboxes
    while it stores more than its limit.  Starred copies count toward the
    limit but are never recycled.

    @return: The copies removed, and whether more could be.
    """
    row = conn.execute("SELECT message_limit FROM accounts WHERE name = ?", (account,)).fetchone()
    limit = row[0] if row and row[0] is not None else default
    if not limit:
        return [], False
    owned = _OWNED_BY
    stored = conn.execute(
        f"SELECT count(*) FROM copies c WHERE {owned} OR c.saved_by = :a", {"a": account}
    ).fetchone()[0]
    excess = stored - limit
    if excess <= 0:
        return [], False
    wanted = min(excess, _RETENTION_BATCH)
    uids = [
        r[0]
        for r in conn.execute(
            f"SELECT uid FROM copies c WHERE {owned} AND c.saved_by IS NULL "
            "ORDER BY c.uid LIMIT :n",
            {"a": account, "n": wanted},
        )
    ]
    if len(uids) < wanted:
        # Only starred copies are left over the limit.
        _log.warn(
            "{account} stores {stored} messages, over its limit of {limit}; "
            "starred mail is never recycled",
            account=account, stored=stored, limit=limit,
        )
    return _deleteCopies(conn, uids), len(uids) == _RETENTION_BATCH and excess > len(uids)
