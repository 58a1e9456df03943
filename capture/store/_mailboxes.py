# -*- test-case-name: tests.test_store -*-
"""
What IMAP and POP3 read and change: a mailbox's entries and flags (an
inbox, or an account's sent mail), uids, FETCH rows, SEARCH, EXPUNGE.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from capture.access import Visibility
from capture.events import ChangedCopy
from capture.ids import copyId
from capture.mime import Part
from capture.store._backend import Connection
from capture.store._base import CoreBase
from capture.store._listing import refreshListing
from capture.store._privacy import visibleWhere
from capture.store._removal import deleteCopies
from capture.store._rows import (
    COPY_FROM,
    changedCopies,
    flagState,
    toJSON,
)
from capture.store._uids import chunks, uidClauses
from capture.store.errors import NotFound
from capture.store.model import (
    FetchedMessage,
    FlagState,
    MailboxEntry,
    MailboxQuery,
    MetadataRow,
    RemovedCopy,
)


class Mailboxes(CoreBase):
    """
    IMAP and POP3 mailboxes: entries, flags, uids, fetches and searches.
    """

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
                    f"SELECT {columns} FROM copies c WHERE c.uid IN ({self._privacy.sentUids}) "
                    "ORDER BY c.uid",
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

        def op(conn: Connection) -> list[ChangedCopy]:
            conn.executemany(
                "UPDATE copies SET read = ?, deleted = ?, answered = ?, flagged = ?, "
                "labels_json = ? WHERE uid = ?",
                rows,
            )
            # \Seen is the listing's read, keywords its labels.
            refreshListing(conn, [s.uid for s in states])
            return changedCopies(conn, [s.uid for s in states])

        return self._write(op).addCallback(self._publishChanged)

    def deleteCopies(self, uids: list[int]) -> Deferred[list[int]]:
        def op(conn: Connection) -> list[RemovedCopy]:
            return deleteCopies(conn, uids)

        return self._write(op).addCallback(self._removed).addCallback(
            lambda removed: sorted(r.uid for r in removed)
        )


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
    return [
        MailboxEntry(uid, copyId(queueId, n), rowid, size)
        for uid, queueId, n, rowid, size in rows
    ]


