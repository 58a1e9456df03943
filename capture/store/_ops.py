# -*- test-case-name: tests.test_store -*-
"""
The op-count buffer: Mailsac's per-account monthly op counts, summed in
memory and written once a second.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from capture.store._backend import Connection, IBackend

_log = Logger()
_OPS_FLUSH_INTERVAL = 1.0

_ADD_OPS = (
    "INSERT INTO usage(account, month, ops) VALUES (?, ?, ?) "
    "ON CONFLICT(account, month) DO UPDATE SET ops = ops + excluded.ops"
)


class OpCounter:
    """
    Ops (API calls) counted per account and month, written in one write a
    second: a write per call would put the writer, and its sync, on every
    read.

    @ivar pending: The counts not written yet, by C{(account, month)}.
    """

    def __init__(self, reactor: Any, backend: IBackend) -> None:
        self._reactor = reactor
        self._backend = backend
        self.pending: dict[tuple[str, str], int] = {}
        self._flush: Any = None

    def count(self, account: str) -> None:
        """
        Count one op for C{account} this month.
        """
        month = time.strftime("%Y-%m", time.gmtime())
        self.pending[(account, month)] = self.pending.get((account, month), 0) + 1
        if self._flush is None:
            self._flush = self._reactor.callLater(_OPS_FLUSH_INTERVAL, self.flush)

    def usage(self, account: str, month: str) -> Deferred[int]:
        """
        The ops counted for C{account} in C{month}, written or not.
        """
        # Read through the writer, in order after every flush already
        # queued: the row then holds all flushed ops, and the ops still in
        # memory now are added once.  (On the read side a read racing a
        # flush would miss, or double, the ops in flight.)
        pending = self.pending.get((account, month), 0)

        def op(conn: Connection) -> int:
            row = conn.execute(
                "SELECT ops FROM usage WHERE account = ? AND month = ?", (account, month)
            ).fetchone()
            return (int(row[0]) if row else 0) + pending

        return self._backend.write(op)

    def forget(self, account: str) -> None:
        """
        Drop the counts of a deleted account.
        """
        self.pending = {k: v for k, v in self.pending.items() if k[0] != account}

    def flush(self) -> Deferred[None]:
        """
        Queue the counts so far as one write.
        """
        self._flush = None
        pending, self.pending = self.pending, {}
        if not pending or not self._backend.started():
            return succeed(None)

        def op(conn: Connection) -> None:
            conn.executemany(
                _ADD_OPS, [(account, month, n) for (account, month), n in pending.items()]
            )

        d = self._backend.write(op)
        d.addErrback(lambda f: _log.failure("Could not record API ops", f))
        return d

    def stop(self) -> None:
        """
        Write what is counted now (queued before whatever the backend is
        asked next), and stop the timer.
        """
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self.flush()


