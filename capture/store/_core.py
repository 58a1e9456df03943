# -*- test-case-name: tests.test_store,tests.test_store_full -*-
"""
The store's core: L{IStore} written once, on any backend (L{IBackend}).

Capture's rules (privacy, ownership, retention, key prefixes, op counting)
and the queries that carry them live in the role classes it combines and
the private modules beside them; a backend supplies only connections,
transactions and the spellings its SQL does not share (L{Dialect}).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from capture.store._accounts import Accounts
from capture.store._backend import Connection
from capture.store._mailboxes import Mailboxes
from capture.store._messages import Messages
from capture.store._ownership import Ownership
from capture.store._retention import RetentionResult, enforceRetention
from capture.store.interface import IStore
from capture.store.model import Retention


@implementer(IStore)
class StoreCore(Accounts, Ownership, Messages, Mailboxes):
    """
    L{IStore} on any L{IBackend}: Capture's rules and queries, written once.

    Each method builds its operation (a function of one connection, SQL in
    the common subset of SQLite and PostgreSQL, with the backend's
    L{Dialect} for the rest) and hands it to the backend to read or
    write; what happens on the reactor after it (publishing new and
    removed copies, retention's and op counting's bookkeeping) is here too.
    """

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


