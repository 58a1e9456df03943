# -*- test-case-name: tests.test_store -*-
"""
Sets of copy uids as WHERE clauses: how a FETCH or SEARCH over thousands of
uids reads them in few statements, each within every backend's limit on
parameters.
"""

from __future__ import annotations

from collections.abc import Iterable


def chunks(uids: list[int], size: int = 500) -> Iterable[list[int]]:
    """
    C{uids} in lists of at most C{size}: SQLite allows 999 parameters per
    statement in old builds.
    """
    for start in range(0, len(uids), size):
        yield uids[start : start + size]


def uidClauses(uids: list[int]) -> Iterable[tuple[str, list[int], set[int] | None]]:
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
    for chunk in chunks(uids):
        yield "c.uid IN (" + ",".join("?" * len(chunk)) + ")", chunk, None
