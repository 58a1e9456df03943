# -*- test-case-name: tests.test_store -*-
"""
Deleting copies, and the messages no copy is left of: what every deletion
path (API, IMAP EXPUNGE, POP3, purges, account deletion, retention) runs,
so that each reports its removals the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

from capture.ids import copyId
from capture.store._backend import Connection
from capture.store._rows import COPY_FROM
from capture.store._uids import chunks
from capture.store.model import RemovedCopy


def dropOrphans(conn: Connection, messages: Iterable[int]) -> None:
    conn.executemany(
        "DELETE FROM messages WHERE id = ? AND NOT EXISTS "
        "(SELECT 1 FROM copies WHERE message = ?)",
        [(m, m) for m in set(messages)],
    )


def deleteCopies(conn: Connection, uids: list[int]) -> list[RemovedCopy]:
    """
    Delete the copies of C{uids} that exist, and their messages if no copy
    is left; the rows read on the way are what subscribers are told.
    """
    removed: list[RemovedCopy] = []
    messages: set[int] = set()
    for chunk in chunks(uids):
        marks = ",".join("?" * len(chunk))
        for uid, message, n, inbox, savedBy, queueId in conn.execute(
            "SELECT c.uid, c.message, c.n, c.inbox, c.saved_by, m.queue_id "
            f"{COPY_FROM} WHERE c.uid IN ({marks})",
            chunk,
        ):
            messages.add(message)
            removed.append(RemovedCopy(uid, copyId(queueId, n), inbox, savedBy))
        conn.execute(f"DELETE FROM copies WHERE uid IN ({marks})", chunk)
    dropOrphans(conn, messages)
    return removed
