# -*- test-case-name: tests.test_store,tests.test_access -*-
"""
Capture's privacy rules (L{capture.access}) as SQL: the one place the store
spells who owns an inbox and which copies a viewer's L{Visibility} shows.

L{capture.access.permits} and L{capture.access.visibility} decide about
one copy or one inbox in Python; listings, counts, IMAP mailboxes and
retention need the same rules as WHERE terms, so that the database filters
what nobody may see before a row reaches Python.  Every such term is built
here, once per store (from its backend's L{Dialect}), and the store's
queries only combine them.  Terms name the copy C{c} (and its message
C{m} where they say so).
"""

from __future__ import annotations

from typing import Any

from capture.access import Visibility
from capture.store._backend import Connection, Dialect
from capture.store.model import PUBLIC, InboxOwner

# How many of the store's newest copies L{Privacy.accountCopies} looks at,
# and the share of them that must be the account's for walking to pay.
_WALK_SAMPLE = 1000
_WALK_SHARE = 20


def visibleWhere(visibility: Visibility) -> tuple[str, tuple[Any, ...]]:
    """
    The copies of a listing C{visibility} shows, as C{" AND ..."} (empty
    when it shows them all) and its arguments: as
    L{capture.access.visibleTo}.
    """
    if visibility.everything:
        return "", ()
    if visibility.starredBy is None:
        return " AND c.saved_by IS NULL", ()
    return " AND (c.saved_by IS NULL OR c.saved_by = ?)", (visibility.starredBy,)


def owner(conn: Connection, address: str) -> InboxOwner:
    """
    Who owns the inbox C{address}: the account that reserved it, else the
    account whose private domain it is in (implicitly), else nobody.
    """
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


class Privacy:
    """
    The privacy terms in one backend's spelling.

    @ivar ownedBy: Copies in the inboxes account C{:a} owns (reserved
        addresses, private domains).
    @ivar mineIndexed: The account's unified inbox (M17): copies in the
        inboxes C{:a} owns, and the copies it starred, in the spelling that
        lets the planner union the inbox, domain and saved_by indexes.
    @ivar mineWalked: The same test, kept off those indexes, so the planner
        reads copies by uid newest first and stops at LIMIT.
    @ivar notOthers: Not in an address that another account than C{?}
        reserved (inside a domain of that account).
    @ivar publicCopy: A copy in a public inbox that nobody starred.
    @ivar sentUids: The account's sent mail (its IMAP and POP3 INBOX): one
        copy per message it sent, the lowest uid among the copies it may
        read, flag and delete: in public inboxes (unless someone else
        starred them) or in its own (L{capture.access.permits}).  Four
        parameters, each the account.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self.ownedBy = """
    (c.inbox IN (SELECT address FROM addresses WHERE account = :a)
     OR c.domain IN (SELECT domain FROM domains WHERE account = :a AND is_private = 1))
"""
        # Two spellings of the same test.  Indexed, SQLite unions the
        # inbox, domain and saved_by indexes, which reads every copy of the
        # account and sorts them (15 ms a page at 100,000 copies, 80 ms at
        # OFFSET 50,000, 130 ms for a search).  Walked, a page of an
        # account that owns much of the store costs a page.
        self.mineIndexed = f"({self.ownedBy} OR c.saved_by = :a)"
        walk = dialect.notIndexed
        self.mineWalked = f"""
    ({walk("c.inbox")} IN (SELECT address FROM addresses WHERE account = :a)
     OR {walk("c.domain")} IN (SELECT domain FROM domains WHERE account = :a AND is_private = 1)
     OR {walk("c.saved_by")} = :a)
"""
        self.notOthers = (
            "NOT EXISTS (SELECT 1 FROM addresses o WHERE o.address = c.inbox AND o.account != ?)"
        )
        self.publicCopy = """
    c.saved_by IS NULL
    AND NOT EXISTS (SELECT 1 FROM addresses a WHERE a.address = c.inbox)
    AND NOT EXISTS (SELECT 1 FROM domains d WHERE d.domain = c.domain AND d.is_private = 1)
"""
        self.sentUids = (
            "SELECT min(c.uid) FROM messages m JOIN copies c ON c.message = m.id "
            "WHERE m.account = ? "
            "AND (c.saved_by IS NULL OR c.saved_by = ?) AND CASE WHEN EXISTS "
            "(SELECT 1 FROM addresses o WHERE o.address = c.inbox) THEN EXISTS "
            "(SELECT 1 FROM addresses o WHERE o.address = c.inbox AND o.account = ?) "
            "ELSE NOT EXISTS (SELECT 1 FROM domains d WHERE d.domain = c.domain "
            "AND d.is_private = 1 AND d.account != ?) END GROUP BY m.id"
        )
        self._walkSample = (
            f"SELECT count(*), coalesce(sum({dialect.truth(self.mineWalked)}), 0) "
            "FROM (SELECT c.inbox, c.domain, "
            f"c.saved_by FROM copies c ORDER BY c.uid DESC LIMIT {_WALK_SAMPLE}) c"
        )

    def accountCopies(self, conn: Connection, account: str) -> str:
        """
        The account's copies as a WHERE term (parameter C{:a}), in the
        spelling that is cheaper for this account: walked when at least one
        in C{_WALK_SHARE} of the store's newest C{_WALK_SAMPLE} copies is
        the account's (a page then walks at most C{_WALK_SHARE} times its
        rows), indexed otherwise (an account owning little of a large
        store: its copies are few, and collecting them all is cheaper than
        walking past everybody else's).  The sample costs about 0.1 ms.
        """
        sampled, mine = conn.execute(self._walkSample, {"a": account}).fetchone()
        return self.mineWalked if mine and mine * _WALK_SHARE >= sampled else self.mineIndexed
