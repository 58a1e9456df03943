# -*- test-case-name: tests.test_imap_compliance,tests.test_imap_unit -*-
"""
IMAP's C{\\Recent} (RFC 3501 2.3.2): a copy is recent in exactly one
session, the first to select its mailbox after it arrived (or the one that
had the mailbox selected when it arrived).

The fact is kept in the process, not in the store (IMAP4rev2 dropped
C{\\Recent}, and no other reader has it): per mailbox, the highest uid some
session has claimed. Uids grow in commit order, so a copy is unclaimed
exactly when its uid is above its mailbox's mark, and the state is one
integer per mailbox ever selected, however much mail arrives. Copies that
were stored before this process first asked the store (L{start}) are not
recent: no session of this process could have seen them, and none of an
earlier one is known.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import Deferred

# A mailbox as the IMAP hub names it: ("inbox", address) or ("sent", account).
MailboxKey = tuple[str, str]


class RecentCopies:
    """
    Which copies have had their C{\\Recent} claimed, per mailbox; one for
    every IMAP listener of the process.
    """

    def __init__(self) -> None:
        self._floor: int | None = None
        self._started = False
        self._claimed: dict[MailboxKey, int] = {}

    def needsStart(self) -> bool:
        """
        Whether L{start} is still to be called.
        """
        return not self._started

    def start(self, nextUid: Deferred[int]) -> None:
        """
        Learn the store's next uid at start-up: copies below it are not
        recent. Until it is known, the first SELECT's UIDNEXT stands in.
        """

        self._started = True

        def got(uid: int) -> None:
            if self._floor is None:
                self._floor = uid

        nextUid.addCallbacks(got, lambda _: None)

    def _mark(self, key: MailboxKey, nextUid: int) -> int:
        if self._floor is None:
            self._floor = nextUid
        return self._claimed.get(key, self._floor - 1)

    def unclaimed(self, key: MailboxKey, uids: Iterable[int], nextUid: int) -> list[int]:
        """
        The copies among C{uids} no session has claimed yet (what a SELECT
        would get, and STATUS counts), claiming nothing.
        """
        mark = self._mark(key, nextUid)
        return [u for u in uids if u > mark]

    def claim(self, key: MailboxKey, uids: Iterable[int], nextUid: int) -> set[int]:
        """
        Claim the unclaimed copies among C{uids} (ascending or not) for the
        caller: they are recent in its session, and in no other.
        """
        mark = self._mark(key, nextUid)
        claimed = {u for u in uids if u > mark}
        if claimed:
            self._claimed[key] = max(claimed)
        elif key not in self._claimed:
            self._claimed[key] = mark
        return claimed
