"""
The store's core apart from its SQLite backend: the backend contract
(L{IBackend}), the privacy terms built from a L{Dialect}, and the core
running on a backend other than L{SQLiteBackend}.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from capture.access import Visibility, visibleTo
from capture.ingest import prepare
from capture.store import Dialect, IBackend
from capture.store._core import StoreCore
from capture.store._privacy import Privacy, visibleWhere
from capture.store.interface import IStore
from capture.store.model import StoreLoad
from capture.store.sqlite import DATABASE_NAME, SQLITE, SQLiteBackend
from tests.storesuite import envelope, message


def test_sqliteBackendProvidesIBackend(tmp_path: Any) -> None:
    """
    L{SQLiteBackend} provides every method and attribute of L{IBackend}.
    """
    assert verifyObject(IBackend, SQLiteBackend(str(tmp_path), Clock()))


@pytest.mark.parametrize("starredBy", [None, "alice"])
@pytest.mark.parametrize("everything", [True, False])
def test_visibleWhereIsTheAccessRule(everything: bool, starredBy: str | None) -> None:
    """
    The SQL of L{visibleWhere} keeps exactly the copies
    L{capture.access.visibleTo} lets a listing show.
    """
    vis = Visibility(everything=everything, starredBy=starredBy)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE copies(uid INTEGER PRIMARY KEY, saved_by TEXT)")
    starrers = [None, "alice", "bob"]
    conn.executemany("INSERT INTO copies(saved_by) VALUES (?)", [(s,) for s in starrers])
    where, args = visibleWhere(vis)
    shown = [r[0] for r in conn.execute(f"SELECT saved_by FROM copies c WHERE 1{where}", args)]
    assert shown == [s for s in starrers if visibleTo(vis, s)]


def test_privacyTermsFollowTheDialect() -> None:
    """
    The walked spelling of an account's copies is the dialect's, not
    SQLite's: SQLite's is the unary C{+}, another dialect's its own.
    """
    other = attrs.evolve(SQLITE, notIndexed=lambda column: f"noindex({column})")
    assert "+c.inbox IN" in Privacy(SQLITE).mineWalked
    walked = Privacy(other).mineWalked
    assert "noindex(c.inbox) IN" in walked and "+c." not in walked
    assert Privacy(other).mineIndexed == Privacy(SQLITE).mineIndexed


@implementer(IBackend)
class _InlineBackend:
    """
    A backend of the fewest parts: every operation runs at once, on the
    calling thread, on one connection, each write in its own transaction.
    """

    def __init__(self, path: str, dialect: Dialect) -> None:
        self.dialect = dialect
        self.uidValidity = 7
        self._conn = sqlite3.connect(path, isolation_level=None)
        self.writes = 0

    def open(self) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> Deferred[None]:
        self._conn.close()
        return succeed(None)

    def started(self) -> bool:
        return True

    def read(self, operation: Callable[[Any], Any]) -> Deferred[Any]:
        try:
            return succeed(operation(self._conn))
        except Exception:
            return fail()

    def write(self, operation: Callable[[Any], Any]) -> Deferred[Any]:
        self.writes += 1
        self._conn.execute("BEGIN")
        try:
            result = operation(self._conn)
        except Exception:
            self._conn.execute("ROLLBACK")
            return fail()
        self._conn.execute("COMMIT")
        return succeed(result)

    def offload(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return succeed(function(*args))

    def makeRoom(self, connection: Any, size: int) -> None:
        pass

    def ping(self) -> Deferred[None]:
        return succeed(None)

    def load(self) -> StoreLoad:
        return StoreLoad(writesQueued=0, readsPending=0)


def _result(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred did not fire"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def test_coreOnAnotherBackend(tmp_path: Any) -> None:
    """
    L{StoreCore} needs nothing of SQLite's backend: on a backend that runs
    operations inline (the schema made by L{SQLiteBackend.open}), an
    account's private mail is filed, listed to its owner only, and its
    op counts reach the backend as writes.
    """
    SQLiteBackend(str(tmp_path), Clock()).open()
    backend = _InlineBackend(str(tmp_path / DATABASE_NAME), SQLITE)
    clock = Clock()
    store = StoreCore(backend, clock)
    assert verifyObject(IStore, store)
    assert store.uidValidity == 7
    _result(store.createAccount("alice"))
    _result(store.reserveAddress("alice", "mine@example.com"))
    copies = _result(store.addMessage(prepare(envelope("mine@example.com"), message("private"))))
    assert [c.message.subject for c in copies] == ["private"]
    mine = _result(store.listInbox("mine@example.com", Visibility(everything=True)))
    assert [c.uid for c in mine] == [copies[0].uid]
    assert _result(store.nextUid()) == copies[0].uid + 1
    store.countOp("alice")
    writes = backend.writes
    clock.advance(1)
    assert backend.writes == writes + 1
    _result(store.stop())


def test_storeLoadsNoRenderer() -> None:
    """
    Opening and using the store loads none of the protocol, web, webhook or
    ingest modules (the store persists what ingest prepared; only
    migrations of data stored before migration 3 import ingest's
    backfills): a backend written against the core needs none of them.
    """
    script = (
        "import sys, tempfile\n"
        "from twisted.internet import task, defer\n"
        "from capture.store.sqlite import SQLiteStore\n"
        "async def main(reactor):\n"
        "    store = SQLiteStore(tempfile.mkdtemp(), reactor)\n"
        "    store.start()\n"
        "    await store.createAccount('alice')\n"
        "    await store.listInboxJSON('a@example.com', __import__('capture.access').access"
        ".Visibility(everything=True))\n"
        "    await store.stop()\n"
        "    loaded = sorted(m for m in sys.modules if m.startswith(('capture.imap', "
        "'capture.web', 'capture.webhooks', 'capture.ingest', 'capture.smtp', "
        "'capture.pop3')))\n"
        "    print(loaded)\n"
        "task.react(lambda r: defer.ensureDeferred(main(r)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"
