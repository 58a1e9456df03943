# -*- test-case-name: tests.test_store,tests.test_store_full -*-
"""
The store's core: L{IStore} written once, on any backend (L{IBackend}).

Capture's rules (privacy, ownership, retention, key prefixes, op counting)
and the queries that carry them live here and in the private modules
beside it; a backend supplies only connections, transactions and the
spellings its SQL does not share (L{Dialect}).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from capture.access import Visibility
from capture.addresses import canonicalAddress, canonicalDomain
from capture.ids import copyId, newApiKey, splitCopyId
from capture.mime import Part
from capture.store._backend import Connection, Dialect, IBackend, Operation
from capture.store._keys import insertKey, keyAccount, keyHash, namedKey
from capture.store._ops import OpCounter
from capture.store._prepare import _prepare, _PreparedMessage
from capture.store._privacy import Privacy, owner, visibleWhere
from capture.store._removal import deleteCopies, dropOrphans
from capture.store._retention import RetentionPass, RetentionResult, enforceRetention
from capture.store._rows import (
    ADDRESS_COLUMNS,
    ADDRESS_SETTINGS,
    COPY_COLUMNS,
    COPY_FROM,
    addressFromRow,
    copyFromRow,
    flagState,
    toJSON,
    windowPage,
)
from capture.store._uids import chunks, uidClauses
from capture.store.interface import IStore
from capture.store.model import (
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
    StoreLoad,
)

T = TypeVar("T")
_log = Logger()

_INLINE_PARSE_LIMIT = 32 * 1024
# Octets a message's rows take besides its raw bytes and bodies.
_ROW_OVERHEAD = 16 * 1024
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


@implementer(IStore)
class StoreCore:
    """
    L{IStore} on any L{IBackend}: Capture's rules and queries, written once.

    Each method builds its operation (a function of one connection, SQL in
    the common subset of SQLite and PostgreSQL, with the backend's
    L{Dialect} for the rest) and hands it to the backend to read or
    write; what happens on the reactor after it (publishing new and
    removed copies, retention's and op counting's bookkeeping) is here too.
    """

    def __init__(self, backend: IBackend, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._backend = backend
        self._reactor = reactor
        self._dialect: Dialect = backend.dialect
        self._privacy = Privacy(self._dialect)
        self._subscribers: list[Callable[[list[Copy]], None]] = []
        self._removedSubscribers: list[Callable[[list[RemovedCopy]], None]] = []
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

        def op(conn: Connection) -> tuple[Account, str]:
            now = _now()
            try:
                conn.execute(
                    "INSERT INTO accounts(name, created) VALUES (?, ?)", (name, now)
                )
            except self._dialect.integrityError:
                raise Conflict(f"account {name!r} exists already") from None
            try:
                insertKey(conn, name, theKey, "", now)
            except self._dialect.integrityError:
                # Only a chosen key (--accept-any-auth) can collide.
                raise Conflict("that key belongs to another account") from None
            return Account(name, now, False, None), theKey

        return self._write(op)

    def getAccount(self, name: str) -> Deferred[Account]:
        return self._read(lambda conn: _account(conn, name))

    def listAccounts(self) -> Deferred[list[Account]]:
        def op(conn: Connection) -> list[Account]:
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
        def op(conn: Connection) -> Account:
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

        def op(conn: Connection) -> str:
            _account(conn, account)
            insertKey(conn, account, key, label, _now())
            return key

        return self._write(op)

    def listKeys(self, account: str) -> Deferred[list[ApiKeyInfo]]:
        def op(conn: Connection) -> list[ApiKeyInfo]:
            _account(conn, account)
            rows = conn.execute(
                "SELECT account, prefix, label, created, revoked FROM api_keys "
                "WHERE account = ? ORDER BY created",
                (account,),
            )
            return [ApiKeyInfo(*r) for r in rows]

        return self._read(op)

    def deleteAccount(self, name: str) -> Deferred[AccountDeletion]:
        def op(conn: Connection) -> tuple[AccountDeletion, list[RemovedCopy]]:
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
                f"{self._privacy.notOthers}))",
                (name, name, name, name),
            )]
            removed = deleteCopies(conn, uids)
            stars = conn.execute(
                "UPDATE copies SET saved_by = NULL WHERE saved_by = ?", (name,)
            ).rowcount
            conn.execute("UPDATE messages SET account = NULL WHERE account = ?", (name,))
            conn.execute("DELETE FROM usage WHERE account = ?", (name,))
            # Keys, addresses and domains go with it (ON DELETE CASCADE).
            conn.execute("DELETE FROM accounts WHERE name = ?", (name,))
            return AccountDeletion(keys, addresses, domains, len(removed), stars), removed

        def done(result: tuple[AccountDeletion, list[RemovedCopy]]) -> AccountDeletion:
            self._ops.forget(name)
            self._removed(result[1])
            return result[0]

        return self._write(op).addCallback(done)

    def sessionGeneration(self, account: str, keyPrefix: str) -> Deferred[int | None]:
        def op(conn: Connection) -> int | None:
            row = conn.execute(
                "SELECT a.session_generation FROM accounts a JOIN api_keys k "
                "ON k.account = a.name WHERE a.name = ? AND k.prefix = ? "
                "AND k.revoked IS NULL LIMIT 1",
                (account, keyPrefix),
            ).fetchone()
            return None if row is None else int(row[0])

        return self._read(op)

    def endSessions(self, account: str) -> Deferred[int]:
        def op(conn: Connection) -> int:
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
        def op(conn: Connection) -> ApiKeyInfo:
            _account(conn, account)
            rows = conn.execute(
                "SELECT hash, account, prefix, label, created FROM api_keys "
                "WHERE account = ? AND revoked IS NULL",
                (account,),
            ).fetchall()
            match = namedKey(rows, account, prefix)
            now = _now()
            conn.execute("UPDATE api_keys SET revoked = ? WHERE hash = ?", (now, match[0]))
            _, acct, pfx, label, created = match
            return ApiKeyInfo(acct, pfx, label, created, now)

        return self._write(op)

    def accountForKey(self, key: str) -> Deferred[str | None]:
        digest = keyHash(key)
        return self._read(lambda conn: keyAccount(conn, digest))

    def accountAndOwner(self, key: str, inbox: str) -> Deferred[tuple[str | None, InboxOwner]]:
        digest = keyHash(key)
        inbox = inbox.lower()
        return self._read(lambda conn: (keyAccount(conn, digest), owner(conn, inbox)))

    def resolveLogin(self, username: str) -> Deferred[str | None]:
        return self._read(lambda conn: _resolveLogin(conn, username))

    def checkLogin(self, username: str, key: str) -> Deferred[tuple[str | None, str | None]]:
        digest = keyHash(key) if key else None
        return self._read(lambda conn: (
            keyAccount(conn, digest) if digest is not None else None,
            _resolveLogin(conn, username),
        ))

    # Owned addresses and domains

    def reserveAddress(self, account: str, address: str) -> Deferred[OwnedAddress]:
        address = address.lower()

        def op(conn: Connection) -> OwnedAddress:
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

        def op(conn: Connection) -> None:
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
        unknown = set(settings) - ADDRESS_SETTINGS
        if unknown:
            return fail(ValueError(f"unknown address settings: {sorted(unknown)}"))

        def op(conn: Connection) -> OwnedAddress:
            now = _now()
            for name, value in settings.items():
                conn.execute(
                    f"UPDATE addresses SET {name} = ?, updated = ? "
                    "WHERE address = ? AND account = ?",
                    (int(value) if name == "enablews" else value, now, address, account),
                )
            row = conn.execute(
                f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE address = ? AND account = ?",
                (address, account),
            ).fetchone()
            if row is None:
                raise NotFound(f"{account!r} does not own {address}")
            return addressFromRow(row)

        return self._write(op)

    def listAddresses(self, account: str) -> Deferred[list[OwnedAddress]]:
        def op(conn: Connection) -> list[OwnedAddress]:
            rows = conn.execute(
                f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE account = ? ORDER BY address",
                (account,),
            )
            return [addressFromRow(r) for r in rows]

        return self._read(op)

    def addDomain(self, account: str, domain: str, isPrivate: bool = True) -> Deferred[Domain]:
        domain = domain.lower()

        def op(conn: Connection) -> Domain:
            _account(conn, account)
            now = _now()
            try:
                conn.execute(
                    "INSERT INTO domains(domain, account, is_private, created) VALUES (?, ?, ?, ?)",
                    (domain, account, int(isPrivate), now),
                )
            except self._dialect.integrityError:
                raise Conflict(f"{domain} is owned already") from None
            return Domain(domain, account, isPrivate, now)

        return self._write(op)

    def removeDomain(self, account: str, domain: str) -> Deferred[None]:
        domain = domain.lower()

        def op(conn: Connection) -> None:
            cursor = conn.execute(
                "DELETE FROM domains WHERE domain = ? AND account = ?", (domain, account)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"{account!r} does not own {domain}")

        return self._write(op)

    def listDomains(self, account: str) -> Deferred[list[Domain]]:
        def op(conn: Connection) -> list[Domain]:
            rows = conn.execute(
                "SELECT domain, account, is_private, created FROM domains "
                "WHERE account = ? ORDER BY domain",
                (account,),
            )
            return [Domain(r[0], r[1], bool(r[2]), r[3]) for r in rows]

        return self._read(op)

    def domainOwner(self, domain: str) -> Deferred[str | None]:
        def op(conn: Connection) -> str | None:
            row = conn.execute(
                "SELECT account FROM domains WHERE domain = ?", (domain.lower(),)
            ).fetchone()
            return None if row is None else str(row[0])

        return self._read(op)

    def setDomainPrivacy(self, account: str, domain: str, isPrivate: bool) -> Deferred[Domain]:
        domain = domain.lower()

        def op(conn: Connection) -> Domain:
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

        def op(conn: Connection) -> list[OwnedAddress]:
            _account(conn, account)
            marks = ",".join("?" * len(wanted))
            held = {
                r[0]: r
                for r in conn.execute(
                    f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE address IN ({marks})",
                    wanted,
                )
            }
            # Another account's address, or an address in its private domain.
            taken = [a for a in wanted if owner(conn, a).account not in (None, account)]
            if taken:
                raise Conflict(", ".join(taken))
            now = _now()
            conn.executemany(
                "INSERT INTO addresses(address, account, created, updated) VALUES (?, ?, ?, ?)",
                [(a, account, now, now) for a in wanted if a not in held],
            )
            return [
                addressFromRow(held[a]) if a in held else OwnedAddress(a, account, now, now)
                for a in wanted
            ]

        return self._write(op)

    def inboxOwner(self, address: str) -> Deferred[InboxOwner]:
        return self._read(lambda conn: owner(conn, address.lower()))

    def routes(self, inboxes: Iterable[str]) -> Deferred[dict[str, OwnedAddress]]:
        wanted = sorted({inbox.lower() for inbox in inboxes})
        return self._read(lambda conn: _routes(conn, wanted))

    def webhookTargets(self, inboxes: Iterable[str]) -> Deferred[dict[str, OwnedAddress]]:
        wanted = sorted({inbox.lower() for inbox in inboxes})

        def op(conn: Connection) -> dict[str, OwnedAddress]:
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
            parsed = self._backend.offload(_prepare, envelope, raw)
            d = parsed.addCallback(self._submitPrepared)

        def stored(inserted: _Inserted) -> list[Copy]:
            copies = _newCopies(inserted)
            self._retention.inboxes.update(c.inbox for c in copies)
            if inserted.starredBy is not None:
                # Starred mail counts toward its account's limit wherever
                # it was filed.
                self._retention.accounts.add(inserted.starredBy)
            self._published(copies)
            return list(copies)

        return d.addCallback(stored)

    def _submitPrepared(self, prepared: _PreparedMessage) -> Deferred[_Inserted]:
        backend, attachmentInsert = self._backend, self._attachmentInsert
        # The raw bytes, and about as much again for the parsed bodies and
        # rows (the text and HTML are stored beside the raw message).
        size = 2 * len(prepared.raw) + _ROW_OVERHEAD

        def insert(conn: Connection) -> _Inserted:
            backend.makeRoom(conn, size)
            return _insertMessage(conn, prepared, attachmentInsert)

        return self._write(insert)

    def getCopy(self, copyId: str) -> Deferred[Copy]:
        split = splitCopyId(copyId)
        if split is None:
            return fail(NotFound(f"no message {copyId!r}"))
        queueId, n = split

        def op(conn: Connection) -> Copy:
            row = conn.execute(
                f"SELECT {COPY_COLUMNS} {COPY_FROM} WHERE m.queue_id = ? AND c.n = ?",
                (queueId, n),
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {copyId!r}")
            return copyFromRow(row)

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

        def op(conn: Connection) -> list[Copy]:
            sql, params = _newest(
                COPY_COLUMNS, "c.inbox = ?", [inbox], visibility, limit, until, beforeUid
            )
            return [copyFromRow(r) for r in conn.execute(sql, params)]

        return self._read(op)

    def listInboxJSON(
        self, inbox: str, visibility: Visibility, limit: int = 50, until: int | None = None
    ) -> Deferred[bytes]:
        inbox = inbox.lower()
        joined = self._dialect.joinText("j")

        def op(conn: Connection) -> bytes:
            sql, params = _newest(
                f"{_COPY_JSON} AS j", "c.inbox = ?", [inbox], visibility, limit, until
            )
            # One row, aggregated by SQLite: a row per message would take
            # and give back the GIL fifty times, each time waiting on the
            # reactor thread.  The subquery's order is kept by group_concat
            # (what SQLite does with an ordered, limited subquery; the store
            # tests check the order).
            (text,) = conn.execute(
                f"SELECT '[' || coalesce({joined}, '') || ']' FROM ({sql})", params
            ).fetchone()
            return str(text).encode("utf-8")

        return self._read(op)

    def countInbox(self, inbox: str, visibility: Visibility) -> Deferred[int]:
        inbox = inbox.lower()

        def op(conn: Connection) -> int:
            where, args = visibleWhere(visibility)
            row = conn.execute(
                f"SELECT count(*) FROM copies c WHERE c.inbox = ?{where}", (inbox, *args)
            ).fetchone()
            return int(row[0])

        return self._read(op)

    def getRaw(self, copy: Copy) -> Deferred[bytes]:
        def op(conn: Connection) -> bytes:
            row = conn.execute(
                "SELECT raw FROM message_raw WHERE message = ?", (copy.message.rowid,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {copy.id!r}")
            return bytes(row[0])

        return self._read(op)

    def listMailbox(self, inbox: str, visibility: Visibility) -> Deferred[list[MailboxEntry]]:
        inbox = inbox.lower()
        where, args = visibleWhere(visibility)
        return self._read(lambda conn: _entries(conn, f"c.inbox = ?{where}", (inbox, *args)))

    def listSent(self, account: str) -> Deferred[list[MailboxEntry]]:
        return self._read(
            lambda conn: _entries(conn, f"c.uid IN ({self._privacy.sentUids})", (account,) * 4)
        )

    def getEntryRaw(self, entry: MailboxEntry) -> Deferred[bytes]:
        def op(conn: Connection) -> bytes:
            row = conn.execute(
                "SELECT raw FROM message_raw WHERE message = ?", (entry.message,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {entry.copyId!r}")
            return bytes(row[0])

        return self._read(op)

    def getBodies(self, copy: Copy) -> Deferred[Bodies]:
        def op(conn: Connection) -> Bodies:
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
        def op(conn: Connection) -> None:
            cursor = conn.execute("DELETE FROM copies WHERE uid = ?", (copy.uid,))
            if cursor.rowcount == 0:
                raise NotFound(f"no message {copy.id!r}")
            dropOrphans(conn, [copy.message.rowid])

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
        def op(conn: Connection) -> Copy:
            if read is not None:
                conn.execute("UPDATE copies SET read = ? WHERE uid = ?", (int(read), copy.uid))
            if labels is not None:
                conn.execute(
                    "UPDATE copies SET labels_json = ? WHERE uid = ?",
                    (toJSON(list(labels)), copy.uid),
                )
            if folder is not None:
                conn.execute("UPDATE copies SET folder = ? WHERE uid = ?", (folder, copy.uid))
            return _reread(conn, copy)

        return self._write(op)

    # IMAP and POP3

    def readerInboxes(self, account: str) -> Deferred[list[str]]:
        def op(conn: Connection) -> list[str]:
            rows = conn.execute(
                "SELECT address FROM addresses WHERE account = ? "
                "UNION SELECT DISTINCT c.inbox FROM copies c "
                "JOIN domains d ON d.domain = c.domain AND d.is_private = 1 "
                f"WHERE d.account = ? AND {self._privacy.notOthers} ORDER BY 1",
                (account, account, account),
            )
            return [r[0] for r in rows]

        return self._read(op)

    def mailboxFlags(self, query: MailboxQuery) -> Deferred[list[FlagState]]:
        def op(conn: Connection) -> list[FlagState]:
            columns = "c.uid, c.read, c.deleted, c.answered, c.flagged, c.labels_json"
            if query.inbox is not None:
                where, args = visibleWhere(query.visibility)
                rows = conn.execute(
                    f"SELECT {columns} FROM copies c WHERE c.inbox = ?{where} ORDER BY c.uid",
                    (query.inbox.lower(), *args),
                )
            else:
                rows = conn.execute(
                    f"SELECT {columns} FROM copies c WHERE c.uid IN ({self._privacy.sentUids}) ORDER BY c.uid",
                    (query.sentBy,) * 4,
                )
            return [flagState(r) for r in rows]

        return self._read(op)

    def nextUid(self) -> Deferred[int]:
        def op(conn: Connection) -> int:
            row = conn.execute(self._nextUid).fetchone()
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
        select = f"SELECT {', '.join(columns)} {COPY_FROM}{joins} WHERE "

        def op(conn: Connection) -> dict[int, FetchedMessage]:
            found = {}
            for where, args, wanted in uidClauses(uids):
                for row in conn.execute(select + where, args):
                    if wanted is not None and row[0] not in wanted:
                        continue
                    size, received, headerSize, env, struct, data, tree = row[6:]
                    found[row[0]] = FetchedMessage(
                        row[0], size, received, headerSize or 0, env, struct,
                        None if data is None else bytes(data),
                        None if tree is None else Part.fromJSON(json.loads(tree)),
                        flagState(row[:6]),
                    )
            return found

        return self._read(op)

    def fetchMetadata(
        self, uids: list[int], envelope: bool = False, structure: bool = False
    ) -> Deferred[list[MetadataRow]]:
        # Flags as one int and the IMAP texts as bytes: fewer Python
        # objects per row, and no decoding of text that goes out as ASCII.
        asBytes = self._dialect.asBytes
        select = (
            self._metadataSelect
            + (f"{asBytes('m.imap_envelope')}, " if envelope else "NULL, ")
            + (f"{asBytes('m.imap_structure')} " if structure else "NULL ")
            + f"{COPY_FROM} WHERE "
        )

        def op(conn: Connection) -> list[MetadataRow]:
            found: list[MetadataRow] = []
            for where, args, wanted in uidClauses(uids):
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
            f"m.received, m.header_size, {rawColumn}, {textColumns} {COPY_FROM} "
            "JOIN message_raw r ON r.message = m.id JOIN message_bodies b ON b.message = m.id "
            "WHERE c.uid IN "
        )

        def op(conn: Connection) -> list[int]:
            matched = []
            for chunk in chunks(uids):
                query = select + "(" + ",".join("?" * len(chunk)) + ")"
                for row in conn.execute(query, chunk):
                    state = flagState(row[:6])
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
             toJSON(list(s.labels)), s.uid)
            for s in states
        ]

        def op(conn: Connection) -> None:
            conn.executemany(
                "UPDATE copies SET read = ?, deleted = ?, answered = ?, flagged = ?, "
                "labels_json = ? WHERE uid = ?",
                rows,
            )

        return self._write(op)

    def deleteCopies(self, uids: list[int]) -> Deferred[list[int]]:
        def op(conn: Connection) -> list[RemovedCopy]:
            return deleteCopies(conn, uids)

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
        def op(conn: Connection) -> tuple[list[Copy], int]:
            mine = self._privacy.accountCopies(conn, account)
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
                f"SELECT {COPY_COLUMNS} {COPY_FROM} WHERE c.uid IN ("
                f"SELECT c.uid FROM copies c WHERE {mine}{extra} "
                "ORDER BY c.uid DESC LIMIT :limit OFFSET :skip) ORDER BY c.uid DESC",
                params,
            )
            copies = [copyFromRow(r) for r in rows]
            unread = conn.execute(
                f"SELECT count(*) FROM copies c WHERE {self._privacy.mineIndexed} "
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
        def op(conn: Connection) -> list[Copy]:
            mine = self._privacy.accountCopies(conn, account)
            clauses, params = _accountSearch(
                self._dialect.like, subject, sender, recipient, read, anyOf
            )
            rows = conn.execute(
                f"SELECT {COPY_COLUMNS} {COPY_FROM} WHERE {mine} AND {clauses} "
                "ORDER BY c.uid DESC LIMIT :limit",
                {**params, "a": account, "limit": limit},
            )
            return [copyFromRow(r) for r in rows]

        return self._read(op)

    def searchAccountWindow(
        self,
        account: str,
        anyOf: str,
        limit: int = 100,
        beforeUid: int | None = None,
        scan: int = 10_000,
    ) -> Deferred[tuple[list[Copy], int | None]]:
        def op(conn: Connection) -> tuple[list[Copy], int | None]:
            mine = self._privacy.accountCopies(conn, account)
            clauses, params = _accountSearch(self._dialect.like, anyOf=anyOf)
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
                f"SELECT {COPY_COLUMNS} {COPY_FROM} WHERE {mine} AND {clauses} "
                "ORDER BY c.uid DESC LIMIT :limit",
                params,
            ).fetchall()
            return windowPage(rows, limit, bound)

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

        def op(conn: Connection) -> tuple[list[Copy], int | None]:
            where, visibleArgs = visibleWhere(visibility)
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
            like = self._dialect.like
            matches = []
            for word in words:
                matches.append(
                    f"(m.subject {like} ? ESCAPE '\\' OR m.from_json {like} ? ESCAPE '\\' "
                    f"OR m.to_json {like} ? ESCAPE '\\' OR m.cc_json {like} ? ESCAPE '\\' "
                    "OR (SELECT b.text FROM message_bodies b WHERE b.message = m.id) "
                    f"{like} ? ESCAPE '\\')"
                )
                args += [_like(word)] * 5
            rows = conn.execute(
                f"SELECT {COPY_COLUMNS} {COPY_FROM} WHERE {listed} AND "
                f"{' AND '.join(matches) or 'TRUE'} ORDER BY c.uid DESC LIMIT ?",
                [*args, limit + 1],
            ).fetchall()
            return windowPage(rows, limit, bound)

        return self._read(op)

    def purgeInbox(self, inbox: str) -> Deferred[int]:
        inbox = inbox.lower()

        def op(conn: Connection) -> list[RemovedCopy]:
            uids = [
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM copies WHERE inbox = ? AND saved_by IS NULL", (inbox,)
                )
            ]
            return deleteCopies(conn, uids)

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

        def op(conn: Connection) -> list[Copy]:
            sql, params = _newest(
                COPY_COLUMNS, f"c.domain = ? AND {self._privacy.notOthers}", [domain, account], visibility,
                limit, until,
            )
            return [copyFromRow(r) for r in conn.execute(sql, params)]

        return self._read(op)

    def countDomain(self, domain: str, account: str, visibility: Visibility) -> Deferred[int]:
        domain = domain.lower()

        def op(conn: Connection) -> int:
            where, args = visibleWhere(visibility)
            row = conn.execute(
                f"SELECT count(*) FROM copies c WHERE c.domain = ? AND {self._privacy.notOthers}{where}",
                (domain, account, *args),
            ).fetchone()
            return int(row[0])

        return self._read(op)

    def purgeDomain(self, domain: str, account: str) -> Deferred[int]:
        domain = domain.lower()

        def op(conn: Connection) -> list[RemovedCopy]:
            uids = [
                r[0]
                for r in conn.execute(
                    f"SELECT uid FROM copies c WHERE c.domain = ? AND {self._privacy.notOthers} "
                    "AND c.saved_by IS NULL",
                    (domain, account),
                )
            ]
            return deleteCopies(conn, uids)

        return self._write(op).addCallback(self._removed).addCallback(len)

    def accountStats(self, account: str) -> Deferred[AccountStats]:
        def op(conn: Connection) -> AccountStats:
            mine = self._privacy.mineIndexed
            stored, size = conn.execute(
                f"SELECT count(*), coalesce(sum(m.size), 0) {COPY_FROM} WHERE {mine}",
                {"a": account},
            ).fetchone()
            starred = conn.execute(
                "SELECT count(*) FROM copies WHERE saved_by = ?", (account,)
            ).fetchone()[0]
            elsewhere = conn.execute(
                f"SELECT DISTINCT c.inbox FROM copies c WHERE c.saved_by = :a AND NOT {self._privacy.ownedBy} "
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
        def op(conn: Connection) -> list[Copy]:
            rows = conn.execute(
                f"SELECT {COPY_COLUMNS} {COPY_FROM} WHERE c.saved_by = ? "
                "ORDER BY c.uid DESC LIMIT ?",
                (account, limit),
            )
            return [copyFromRow(r) for r in rows]

        return self._read(op)

    def setStarred(self, copy: Copy, account: str | None) -> Deferred[Copy]:
        def op(conn: Connection) -> Copy:
            conn.execute("UPDATE copies SET saved_by = ? WHERE uid = ?", (account, copy.uid))
            return _reread(conn, copy)

        return self._write(op)

    def usage(self, account: str, month: str) -> Deferred[int]:
        return self._ops.usage(account, month)

    def countOp(self, account: str) -> None:
        """
        Count one op (an API call) for C{account} this month: summed in
        memory and written once a second (L{OpCounter}).
        """
        self._ops.count(account)

    # Retention

    def enforceRetention(self, retention: Retention, now: int) -> Deferred[int]:
        """
        One bounded pass of retention.  Inboxes written since the last pass
        are checked against the per-inbox limit (all inboxes on the first
        pass after start), so a pass costs what changed, not the store.
        """
        taken = self._retention.take()
        privacy = self._privacy

        def op(conn: Connection) -> RetentionResult:
            return enforceRetention(
                conn, privacy, retention, now, taken.inboxes, taken.accounts, taken.fullScan
            )

        def done(result: RetentionResult) -> int:
            self._retention.unfinished(result)
            # Sessions with the inbox selected and pages showing it hear of
            # recycled copies as of any other deletion.
            self._publishRemoved(result.removed)
            return len(result.removed)

        def failed(reason: Failure) -> Failure:
            self._retention.failed(taken)
            return reason

        return self._write(op).addCallbacks(done, failed)



def _reread(conn: Connection, copy: Copy) -> Copy:
    """
    A copy as it is stored now, after a change.
    """
    row = conn.execute(f"SELECT {COPY_COLUMNS} {COPY_FROM} WHERE c.uid = ?", (copy.uid,)).fetchone()
    if row is None:
        raise NotFound(f"no message {copy.id!r}")
    return copyFromRow(row)


def _account(conn: Connection, name: str) -> Account:
    row = conn.execute(
        "SELECT name, created, capture_private, message_limit FROM accounts WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no account {name!r}")
    return Account(row[0], row[1], bool(row[2]), row[3])


def _routes(conn: Connection, inboxes: list[str]) -> dict[str, OwnedAddress]:
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
            f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE address IN "
            f"({','.join('?' * len(chunk))})",
            chunk,
        ):
            address = addressFromRow(row)
            found[address.address] = address
    byCatchAll: dict[str, list[str]] = {}
    for inbox in inboxes:
        if inbox not in found:
            byCatchAll.setdefault("*@" + inbox.rpartition("@")[2], []).append(inbox)
    names = sorted(byCatchAll)
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for row in conn.execute(
            f"SELECT {ADDRESS_COLUMNS} FROM addresses a WHERE address IN "
            f"({','.join('?' * len(chunk))}) AND EXISTS (SELECT 1 FROM domains d "
            "WHERE d.account = a.account AND '*@' || d.domain = a.address)",
            chunk,
        ):
            catchAll = addressFromRow(row)
            for inbox in byCatchAll[catchAll.address]:
                found[inbox] = catchAll
    return found


def _resolveLogin(conn: Connection, username: str) -> str | None:
    name = username.strip()
    lowered = canonicalAddress(name) or name.lower()
    row = conn.execute("SELECT name FROM accounts WHERE name = ?", (name,)).fetchone()
    if row:
        return str(row[0])
    if "@" in lowered:
        found = owner(conn, lowered)
        if found.account is not None:
            return found.account
    # A domain the account owns, or an address in one of its public
    # domains.
    domain = lowered.rpartition("@")[2]
    domain = canonicalDomain(domain) or domain
    row = conn.execute("SELECT account FROM domains WHERE domain = ?", (domain,)).fetchone()
    return str(row[0]) if row else None


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
    where, visibleArgs = visibleWhere(visibility)
    sql = f"SELECT {columns} {COPY_FROM} WHERE {condition}{where}"
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
def _entries(
    conn: Connection, condition: str, args: tuple[Any, ...]
) -> list[MailboxEntry]:
    """
    The copies matching C{condition} as L{MailboxEntry}, oldest first.
    """
    rows = conn.execute(
        f"SELECT c.uid, m.queue_id, c.n, m.id, m.size {COPY_FROM} WHERE {condition} "
        "ORDER BY c.uid",
        args,
    )
    return [MailboxEntry(uid, copyId(queueId, n), rowid, size) for uid, queueId, n, rowid, size in rows]


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


def _insertMessage(
    conn: Connection, prepared: _PreparedMessage, attachmentInsert: str
) -> _Inserted:
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
            attachmentInsert,
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


def _like(text: str) -> str:
    """
    A LIKE pattern matching C{text} anywhere, its own wildcards escaped.
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _accountSearch(
    like: str,
    subject: str | None = None,
    sender: str | None = None,
    recipient: str | None = None,
    read: bool | None = None,
    anyOf: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """
    The WHERE terms (copies C{c}, messages C{m}) and parameters of an
    account search (M18's conditions, all required; M19's C{anyOf}), with
    C{like} the dialect's case-insensitive match.
    """
    clauses = []
    params: dict[str, Any] = {}
    if subject is not None:
        clauses.append(f"m.subject {like} :subject ESCAPE '\\'")
        params["subject"] = _like(subject)
    if sender is not None:
        clauses.append(f"m.from_json {like} :sender ESCAPE '\\'")
        params["sender"] = _like(sender)
    if recipient is not None:
        clauses.append(
            f"(m.to_json {like} :recipient ESCAPE '\\' OR c.inbox {like} :recipient ESCAPE '\\')"
        )
        params["recipient"] = _like(recipient)
    if read is not None:
        clauses.append("coalesce(c.read, 0) = :read")
        params["read"] = int(read)
    if anyOf is not None:
        clauses.append(
            f"(m.subject {like} :any ESCAPE '\\' OR m.from_json {like} :any ESCAPE '\\' "
            f"OR m.to_json {like} :any ESCAPE '\\')"
        )
        params["any"] = _like(anyOf)
    return " AND ".join(clauses) or "TRUE", params


# Not in an address that another account than ? reserved (inside a domain).
