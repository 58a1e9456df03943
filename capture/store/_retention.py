# -*- test-case-name: tests.test_store -*-
"""
Retention: public inboxes' age and size limits and accounts' message
limits, enforced in bounded passes that cost what changed since the last
pass, not the whole store.
"""

from __future__ import annotations

import attrs
from twisted.logger import Logger

from capture.store._backend import Connection
from capture.store._privacy import Privacy, owner
from capture.store._removal import deleteCopies
from capture.store.model import RemovedCopy, Retention

_log = Logger()
RETENTION_BATCH = 1000


@attrs.frozen
class RetentionResult:
    """
    What one retention pass did, and what it left for the next.
    """

    removed: list[RemovedCopy]
    unfinishedInboxes: set[str]
    unfinishedAccounts: set[str]


@attrs.define
class RetentionPass:
    """
    What the next pass must look at: the inboxes and accounts written since
    the last one (all of them on the first pass after start).
    """

    inboxes: set[str] = attrs.Factory(set)
    accounts: set[str] = attrs.Factory(set)
    fullScan: bool = True

    def take(self) -> RetentionPass:
        """
        What this pass looks at; the next starts from nothing.
        """
        taken = RetentionPass(self.inboxes, self.accounts, self.fullScan)
        self.inboxes, self.accounts, self.fullScan = set(), set(), False
        return taken

    def unfinished(self, result: RetentionResult) -> None:
        """
        What had more excess than one batch is looked at again by the next
        pass.
        """
        self.inboxes |= result.unfinishedInboxes
        self.accounts |= result.unfinishedAccounts

    def failed(self, taken: RetentionPass) -> None:
        """
        Nothing was removed: the next pass must look at all of C{taken}.
        """
        self.inboxes |= taken.inboxes
        self.accounts |= taken.accounts
        self.fullScan = self.fullScan or taken.fullScan


def enforceRetention(
    conn: Connection,
    privacy: Privacy,
    retention: Retention,
    now: int,
    inboxes: set[str],
    accounts: set[str],
    fullScan: bool,
) -> RetentionResult:
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
                f"SELECT uid FROM copies c WHERE c.received < ? AND {privacy.publicCopy} LIMIT ?",
                (cutoff, RETENTION_BATCH),
            )
        ]
        removed += deleteCopies(conn, uids)
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
            if owner(conn, inbox).account is not None:
                continue
            uids = [
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM copies c WHERE c.inbox = ? AND c.saved_by IS NULL "
                    "ORDER BY c.uid DESC LIMIT ? OFFSET ?",
                    (inbox, RETENTION_BATCH, retention.publicInboxLimit),
                )
            ]
            removed += deleteCopies(conn, uids)
            if len(uids) == RETENTION_BATCH:
                unfinished.add(inbox)
    owners = {owner(conn, inbox).account for inbox in inboxes} | accounts
    if fullScan:
        owners |= {r[0] for r in conn.execute("SELECT name FROM accounts")}
    unfinishedAccounts = set()
    for account in owners:
        if account is None:
            continue
        recycled, more = enforceMessageLimit(conn, privacy, account, retention.messageLimit)
        removed += recycled
        if more:
            unfinishedAccounts.add(account)
    return RetentionResult(removed, unfinished, unfinishedAccounts)


def enforceMessageLimit(
    conn: Connection, privacy: Privacy, account: str, default: int
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
    owned = privacy.ownedBy
    stored = conn.execute(
        f"SELECT count(*) FROM copies c WHERE {owned} OR c.saved_by = :a", {"a": account}
    ).fetchone()[0]
    excess = stored - limit
    if excess <= 0:
        return [], False
    wanted = min(excess, RETENTION_BATCH)
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
    return deleteCopies(conn, uids), len(uids) == RETENTION_BATCH and excess > len(uids)
