# -*- test-case-name: tests.test_store -*-
"""
Messages and copies: ingest's write, the inbox, domain and account
listings, searches, bodies and raw bytes, per-copy state, stars, purges.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail

from capture.access import Visibility
from capture.events import NewCopies
from capture.ids import splitCopyId
from capture.store._backend import Connection
from capture.store._base import CoreBase, _account
from capture.store._listing import LISTING_TEXT, refreshListing
from capture.store._privacy import visibleWhere
from capture.store._removal import deleteCopies, dropOrphans
from capture.store._rows import (
    COPY_COLUMNS,
    COPY_FROM,
    addressesJSON,
    copyFromRow,
    toJSON,
    windowPage,
)
from capture.store.errors import NotFound
from capture.store.model import (
    AccountStats,
    Bodies,
    Copy,
    MessageInfo,
    PreparedMessage,
    RemovedCopy,
)

# Octets a message's rows take besides its raw bytes and bodies.
_ROW_OVERHEAD = 16 * 1024


class Messages(CoreBase):
    """
    Messages and their copies as the HTTP API and the web pages see them.
    """

    def addMessage(self, prepared: PreparedMessage) -> Deferred[list[Copy]]:
        # Parsed already (capture.ingest): the writer thread only runs SQL,
        # which releases the GIL, and never competes with the reactor.
        d = self._submitPrepared(prepared)

        def stored(inserted: _Inserted) -> list[Copy]:
            copies = _newCopies(inserted)
            self._retention.inboxes.update(c.inbox for c in copies)
            if inserted.starredBy is not None:
                # Starred mail counts toward its account's limit wherever
                # it was filed.
                self._retention.accounts.add(inserted.starredBy)
            self._events.publish(NewCopies(tuple(copies)))
            return list(copies)

        return d.addCallback(stored)

    def _submitPrepared(self, prepared: PreparedMessage) -> Deferred[_Inserted]:
        backend, attachmentInsert = self._backend, self._attachmentInsert
        # The raw bytes, and about as much again for the parsed bodies and
        # rows (the text and HTML are stored beside the raw message).
        size = 2 * len(prepared.raw) + _ROW_OVERHEAD
        try:
            messageRow = _messageRow(prepared)
        except Exception:
            return fail()

        def insert(conn: Connection) -> _Inserted:
            backend.makeRoom(conn, size)
            return _insertMessage(conn, prepared, messageRow, attachmentInsert)

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
            sql, params = _newest(f"{LISTING_TEXT} AS j", "c.inbox = ?", [inbox], visibility,
                                  limit, until)
            # One row, aggregated by the database from the stored texts
            # (capture.store._listing): a row per copy would take and give
            # back the GIL fifty times, each time waiting on the reactor
            # thread, and any JSON made here would hold it (bench/api.py).
            # The subquery's order is kept by the aggregate (what SQLite's
            # group_concat does with an ordered, limited subquery; the
            # store tests check it).
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
            refreshListing(conn, [copy.uid])
            return _reread(conn, copy)

        return self._write(op).addCallback(self._changedCopy)

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
                COPY_COLUMNS, f"c.domain = ? AND {self._privacy.notOthers}", [domain, account],
                visibility, limit, until,
            )
            return [copyFromRow(r) for r in conn.execute(sql, params)]

        return self._read(op)

    def countDomain(self, domain: str, account: str, visibility: Visibility) -> Deferred[int]:
        domain = domain.lower()

        def op(conn: Connection) -> int:
            where, args = visibleWhere(visibility)
            row = conn.execute(
                "SELECT count(*) FROM copies c WHERE c.domain = ? AND "
                f"{self._privacy.notOthers}{where}",
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
                "SELECT DISTINCT c.inbox FROM copies c WHERE c.saved_by = :a "
                f"AND NOT {self._privacy.ownedBy} "
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
            refreshListing(conn, [copy.uid])
            return _reread(conn, copy)

        return self._write(op).addCallback(self._changedCopy)


def _reread(conn: Connection, copy: Copy) -> Copy:
    """
    A copy as it is stored now, after a change.
    """
    row = conn.execute(f"SELECT {COPY_COLUMNS} {COPY_FROM} WHERE c.uid = ?", (copy.uid,)).fetchone()
    if row is None:
        raise NotFound(f"no message {copy.id!r}")
    return copyFromRow(row)


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
@attrs.frozen
class _Inserted:
    """
    What the writer reports for one stored message: the numbers SQLite gave
    it, from which the reactor side builds the L{Copy} objects.
    """

    prepared: PreparedMessage
    rowid: int
    uids: list[int]
    starredBy: str | None


def _messageRow(prepared: PreparedMessage) -> tuple[Any, ...]:
    """
    The C{messages} row of C{prepared}, made on the calling thread: the
    writer thread only runs SQL.
    """
    envelope, parsed = prepared.envelope, prepared.parsed
    return (
        envelope.queueId, envelope.received, envelope.account, envelope.mailFrom,
        envelope.helo, envelope.ip, envelope.via, int(envelope.tls), len(prepared.raw),
        parsed.subject, addressesJSON(parsed.fromAddresses),
        addressesJSON(parsed.to), addressesJSON(parsed.cc),
        addressesJSON(parsed.bcc), parsed.date, parsed.messageId,
        toJSON(list(parsed.links)) if parsed.links else "[]",
        toJSON([
            [a.md5, a.filename, a.contentType, a.contentId, a.size, a.part]
            for a in parsed.attachments
        ]) if parsed.attachments else "[]",
        prepared.summary, prepared.imapEnvelope, prepared.imapStructure,
        prepared.headerSize,
    )


def _insertMessage(
    conn: Connection, prepared: PreparedMessage, messageRow: tuple[Any, ...],
    attachmentInsert: str,
) -> _Inserted:
    envelope, parsed, raw = prepared.envelope, prepared.parsed, prepared.raw
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
        messageRow,
    )
    rowid = cursor.lastrowid
    assert rowid is not None
    conn.execute(
        "INSERT INTO message_bodies(message, text, html, headers_json, structure_json) "
        "VALUES (?, ?, ?, ?, ?)",
        (rowid, parsed.text, parsed.html, prepared.headersJSON, prepared.structureJSON),
    )
    conn.execute("INSERT INTO message_raw(message, raw) VALUES (?, ?)", (rowid, raw))
    if parsed.attachments:
        conn.executemany(
            attachmentInsert,
            [(rowid, a.md5, a.part) for a in parsed.attachments],
        )
    uids = []
    for copy in prepared.copies:
        cursor = conn.execute(
            "INSERT INTO copies(message, n, inbox, original_inbox, domain, received, saved_by, "
            "listing_head) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rowid, copy.n, copy.inbox, copy.original, copy.domain, envelope.received,
             starredBy, copy.listing),
        )
        assert cursor.lastrowid is not None
        uids.append(cursor.lastrowid)
    if starredBy is not None:
        # Prepared as saved by nobody: the sender's account keeps its mail.
        refreshListing(conn, uids)
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
            uid=uid, n=copy.n, inbox=copy.inbox, originalInbox=copy.original,
            savedBy=inserted.starredBy, read=None, deleted=False, answered=False,
            flagged=False, labels=(), folder="inbox", message=info,
        )
        for uid, copy in zip(inserted.uids, prepared.copies, strict=True)
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

