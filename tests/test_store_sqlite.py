# -*- test-case-name: tests.test_store_sqlite -*-
"""
What only the SQLite store (L{capture.store.sqlite.SQLiteStore}) does, or
what can only be checked by looking inside its file: the schema version,
WAL, migrations, a newer schema refused untouched, keys stored hashed,
the size limit and disk reserve, its one writer thread's batches (group
commit, a failure undone alone) and its query plans.

What every backend must do is the conformance suite (L{tests.storesuite},
run by C{tests/test_store.py}); these tests use its L{StoreCase} on the
SQLite backend, with a read-only SQLite connection of their own where they
look at the file, as an administrator would.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from importlib import resources
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.python.failure import Failure
from twisted.trial import unittest

from capture.emailmessage import messageJSON
from capture.store import _core, _privacy, _retention
from capture.store.model import Copy, Retention
from capture.store.sqlite import SQLiteStore, _migrations
from tests.storesuite import (
    EVERYTHING,
    SQLITE,
    NotFound,
    SchemaTooNew,
    SQLiteBackend,
    StoreCase,
    StoreError,
    StoreFull,
    UnifiedInboxChecks,
    deliver,
    envelope,
    message,
    nowMillis,
)


def latestMigration() -> int:
    """
    The highest migration number shipped, read from the package's files.
    """
    names = [
        entry.name
        for entry in resources.files("capture.store").joinpath("migrations").iterdir()
        if entry.name.endswith(".sql")
    ]
    return max(int(name[:4]) for name in names)


class SQLiteStoreCase(StoreCase, unittest.TestCase):
    """
    A started SQLite store on a fresh temporary directory.
    """

    backendFactory = SQLITE
    backend: SQLiteBackend

    @property
    def directory(self) -> str:
        return self.backend.directory

    @property
    def path(self) -> str:
        return self.backend.path

    def db(self) -> sqlite3.Connection:
        """
        A read-only connection of the test's own to the database file.
        """
        return self.backend.db()

    def holdWriter(self) -> tuple[Deferred[None], threading.Event]:
        """
        Keep the writer thread busy until the returned event is set, so
        that the writes queued meanwhile are committed as one batch.

        @return: The held write's Deferred and the event that releases it.
        """
        started, release = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            started.set()
            release.wait(10)

        holding = self.store._write(hold)
        self.assertTrue(started.wait(10))
        return holding, release


class KeyStorageTests(SQLiteStoreCase):
    """
    API keys as the file holds them.
    """

    async def test_keysStoredHashed(self) -> None:
        """
        Keys are listed by prefix only, and the key text is nowhere in the
        database file.
        """
        _, first = await self.store.createAccount("alice")
        second = await self.store.createKey("alice", label="ci")
        infos = await self.store.listKeys("alice")
        # Listed by creation time; two keys made in the same millisecond
        # may come in either order.
        self.assertEqual(sorted((i.prefix, i.label, i.revoked) for i in infos),
                         sorted([(first[:8], "", None), (second[:8], "ci", None)]))
        self.assertEqual({i.account for i in infos}, {"alice"})
        self.assertEqual(await self.store.accountForKey(second), "alice")
        await self.stopStore()
        data = b""
        for name in os.listdir(self.directory):
            with open(os.path.join(self.directory, name), "rb") as f:
                data += f.read()
        self.assertFalse(first.encode() in data, "first key stored in clear")
        self.assertFalse(second.encode() in data, "second key stored in clear")
        self.assertTrue(hashlib.sha256(first.encode()).digest() in data, "no key hash")


class WriterTests(SQLiteStoreCase):
    """
    Many writes at once: ordering and group commit.
    """

    async def test_concurrentAddsGetIncreasingUids(self) -> None:
        """
        200 messages added at once all succeed, and their uids are distinct
        and increase in the order the calls were made: the writer takes its
        queue first in, first out, and numbers copies in commit order.  The
        writer commits them in fewer transactions than messages (group
        commit), counted by wrapping the writer's commit step.
        """
        writer = self.store._writer
        assert writer is not None
        batches: list[int] = []
        commit = writer._commit

        def counting(conn: sqlite3.Connection, batch: list[Any]) -> Any:
            batches.append(len(batch))
            return commit(conn, batch)

        writer._commit = counting  # type: ignore[method-assign]
        count = 200
        pending = [
            deliver(self.store, envelope(f"r{i % 7}@example.com"), message(f"m{i}"))
            for i in range(count)
        ]
        results = await gatherResults(pending)
        uids = [copies[0].uid for copies in results]
        self.assertEqual(len(set(uids)), count)
        self.assertEqual(uids, sorted(uids))
        self.assertEqual([c[0].message.subject for c in results],
                         [f"m{i}" for i in range(count)])
        self.assertEqual(self.count("copies"), count)
        self.assertEqual(sum(batches), count)
        self.assertLess(len(batches), count)
        self.assertGreater(max(batches), 1)

    async def test_failedOperationAloneRolledBack(self) -> None:
        """
        In one batch, an operation that fails is undone alone: the others
        around it are committed and reported as such.
        """
        await self.store.createAccount("alice")
        holding, release = self.holdWriter()
        before = deliver(self.store, envelope("a@example.com"), message("before"))
        bad = deliver(self.store, envelope("a@example.com", account="ghost"), message("bad"))
        after = deliver(self.store, envelope("a@example.com"), message("after"))
        release.set()
        await holding
        (beforeCopy,) = await before
        await self.assertFails(NotFound, bad)
        (afterCopy,) = await after
        listed = await self.store.listInbox("a@example.com", EVERYTHING)
        self.assertEqual([c.uid for c in listed], [afterCopy.uid, beforeCopy.uid])
        self.assertConsistent()


class SchemaTests(SQLiteStoreCase):
    """
    The schema version, WAL, migrations, and a newer schema refused.
    """

    def test_freshSchemaVersion(self) -> None:
        """
        A fresh store is at the newest schema version shipped, in WAL mode,
        with a UIDVALIDITY.
        """
        db = self.db()
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], latestMigration())
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertGreater(self.store.uidValidity, 0)

    async def test_migrationTwoFillsSummaries(self) -> None:
        """
        Messages stored before migration 2 get their summary from their
        parsed columns when the store opens, so their JSON listing is the
        same as for new mail.
        """
        copies = [(await self.add("old@example.com", raw=raw))[0]
                  for raw in (message("one"), b"From: A <a@x.example>\r\n\r\nhttp://l.example\r\n")]
        await self.stopStore()
        db = sqlite3.connect(self.path)
        # As a version 1 store was: no summary column (nor the later ones).
        for column in ("imap_envelope", "imap_structure", "header_size", "summary_json"):
            db.execute(f"ALTER TABLE messages DROP COLUMN {column}")
        # Later migrations run again: undo what they added.
        db.execute("ALTER TABLE accounts DROP COLUMN session_generation")
        db.execute("ALTER TABLE copies DROP COLUMN listing_head")
        db.execute("PRAGMA user_version = 1")
        db.commit()
        db.close()
        self.store = self.openStore()
        self.assertEqual(self.db().execute("PRAGMA user_version").fetchone()[0], latestMigration())
        self.assertEqual(self.db().execute(
            "SELECT count(*) FROM messages WHERE summary_json IS NULL").fetchone()[0], 0)
        listed = await self.store.listInbox("old@example.com", EVERYTHING)
        self.assertEqual([c.uid for c in listed], [c.uid for c in copies[::-1]])
        self.assertEqual(
            json.loads(await self.store.listInboxJSON("old@example.com", EVERYTHING)),
            [messageJSON(c) for c in listed])

    async def test_migrationThreeFillsIMAP(self) -> None:
        """
        Messages stored before migration 3 get their ENVELOPE,
        BODYSTRUCTURE and header size when the store opens, the same as
        new mail gets at ingest.
        """
        copy = (await self.add("old@example.com", raw=message("one")))[0]
        before = (await self.store.fetchMessages([copy.uid], envelope=True, structure=True))[copy.uid]
        await self.stopStore()
        db = sqlite3.connect(self.path)
        for column in ("imap_envelope", "imap_structure", "header_size"):
            db.execute(f"ALTER TABLE messages DROP COLUMN {column}")
        # Later migrations run again: undo what they added.
        db.execute("ALTER TABLE accounts DROP COLUMN session_generation")
        db.execute("ALTER TABLE copies DROP COLUMN listing_head")
        db.execute("PRAGMA user_version = 2")
        db.commit()
        db.close()
        self.store = self.openStore()
        after = (await self.store.fetchMessages([copy.uid], envelope=True, structure=True))[copy.uid]
        self.assertEqual(after, before)
        self.assertTrue(after.envelope and after.envelope.startswith("("))
        self.assertGreater(after.headerSize, 0)

    async def test_migrationSevenFillsListings(self) -> None:
        """
        Copies stored before migration 7 get their listing head, in
        batches, when the store opens: their listing is, byte for byte,
        what the API shows of each of them (read, labelled, moved, starred,
        plus-addressed copies; more copies than one batch).
        """
        await self.store.createAccount("alice")
        many = await self.add(*[f"r{i}@example.com" for i in range(1001)])
        (plain,) = await self.add(("old@example.com", "Old+tag@Example.com"))
        copies = [plain] + [(await self.add("old@example.com"))[0] for _ in range(3)]
        await self.store.setCopyState(copies[1], read=True, labels=("x", "\u00e9"))
        await self.store.setCopyState(copies[2], read=False, folder="spam")
        await self.store.setStarred(copies[3], "alice")
        await self.stopStore()
        db = sqlite3.connect(self.path)
        db.execute("ALTER TABLE copies DROP COLUMN listing_head")
        db.execute("PRAGMA user_version = 5")
        db.commit()
        db.close()
        self.store = self.openStore()
        self.assertEqual(self.db().execute("PRAGMA user_version").fetchone()[0], latestMigration())
        self.assertEqual(self.db().execute(
            "SELECT count(*) FROM copies WHERE listing_head IS NULL").fetchone()[0], 0)
        for inbox in ("old@example.com", many[0].inbox, many[-1].inbox):
            listed = await self.store.listInbox(inbox, EVERYTHING)
            self.assertEqual(
                await self.store.listInboxJSON(inbox, EVERYTHING),
                json.dumps([messageJSON(c) for c in listed], ensure_ascii=False,
                           separators=(",", ":")).encode("utf-8"))
        self.assertEqual(len(listed), 1)

    async def _assertRefusedUntouched(self) -> None:
        before = os.listdir(self.directory)
        with open(self.path, "rb") as f:
            data = f.read()
        mtime = os.stat(self.path).st_mtime_ns
        newer = SQLiteStore(self.directory)
        error = self.assertRaises(SchemaTooNew, newer.start)
        self.assertIn("99", str(error))
        self.assertIn("newer Capture", str(error))
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.stat(self.path).st_mtime_ns, mtime)
        self.assertEqual(sorted(os.listdir(self.directory)), sorted(before))

    async def test_newerSchemaRefusedUntouched(self) -> None:
        """
        A database whose schema version is newer than this Capture knows
        makes C{start} raise L{SchemaTooNew} with a message naming the
        version and the cause, and leaves the file exactly as it was.
        """
        await self.add("a@example.com")
        await self.stopStore()
        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        await self._assertRefusedUntouched()

    async def test_newerSchemaRollbackJournalUntouched(self) -> None:
        """
        A newer database that is not in WAL mode is not switched to WAL
        (which would rewrite its header) before being refused.
        """
        await self.stopStore()
        os.remove(self.path)
        conn = sqlite3.connect(self.path)
        conn.execute("CREATE TABLE future (x)")
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
        conn.close()
        await self._assertRefusedUntouched()


class SizeLimitTests(SQLiteStoreCase):
    """
    A store with a size limit refuses what does not fit, cleanly.
    """

    async def _limitTo(self, extra: int) -> None:
        """
        Reopen the store limited to its current size plus C{extra} bytes.
        """
        size = self.db().execute("PRAGMA page_count").fetchone()[0] * 4096
        await self.restart(maxSize=size + extra)

    async def test_tinyLimitRefusesMessages(self) -> None:
        """
        With a limit below the size of an empty store (64 KiB), every
        message that needs new pages is refused with L{StoreFull} and
        nothing of it is stored; the store keeps answering.
        """
        await self.restart(maxSize=64 * 1024)
        for _ in range(3):
            await self.assertFails(StoreFull, self.add(
                "a@example.com", raw=message(body=os.urandom(20_000))))
        self.assertEqual(self.count("messages"), 0)
        self.assertEqual(self.count("copies"), 0)
        self.assertEqual(await self.store.countInbox("a@example.com", EVERYTHING), 0)
        await self._smallWriteWorksOrFailsCleanly()

    async def _smallWriteWorksOrFailsCleanly(self) -> None:
        """
        A tiny message and a new account either are stored and readable,
        or fail with L{StoreFull} and leave nothing.
        """
        messages = self.count("messages")
        env = envelope("tiny@example.com")
        try:
            (copy,) = await deliver(self.store, env, b"\r\nx")
        except StoreFull:
            self.assertEqual(self.count("messages"), messages)
            await self.assertFails(NotFound, self.store.getCopy(f"{env.queueId}-0"))
        else:
            self.assertEqual(await self.store.getRaw(copy), b"\r\nx")
            self.assertEqual(self.count("messages"), messages + 1)
        try:
            await self.store.createAccount("late")
        except StoreFull:
            await self.assertFails(NotFound, self.store.getAccount("late"))
        else:
            self.assertEqual((await self.store.getAccount("late")).name, "late")
        self.assertConsistent()

    async def test_fullStoreFailsCleanly(self) -> None:
        """
        Filling a limited store ends in L{StoreFull}; every message reported
        stored is complete and readable, none reported failed left anything
        behind, and operations that need no room still work.
        """
        await self._limitTo(200 * 1024)
        stored: list[Copy] = []
        refused = 0
        for i in range(100):
            raw = message(f"m{i}", os.urandom(4000).hex().encode())
            try:
                (copy,) = await deliver(self.store, envelope("a@example.com"), raw)
            except StoreFull:
                refused += 1
                break
            stored.append(copy)
        self.assertEqual(refused, 1)
        self.assertGreater(len(stored), 3)
        self.assertEqual(self.count("messages"), len(stored))
        self.assertConsistent()
        starred = await self.store.setStarred(stored[0], "alice")
        self.assertEqual(starred.savedBy, "alice")
        await self.store.deleteCopy(stored[1])
        self.assertEqual(self.count("messages"), len(stored) - 1)
        self.assertConsistent()
        await self._smallWriteWorksOrFailsCleanly()

    async def test_reserveKeepsRoomForDeletesAndSettings(self) -> None:
        """
        New mail stops a reserve short of the limit (a quarter of it, at
        most C{reserve}); what was refused left nothing, and deletes,
        stars, accounts, keys and reserved addresses still commit in the
        reserve; once a message is deleted, one as large fits again.
        """
        await self.restart(maxSize=1024 * 1024)
        stored: list[Copy] = []
        for i in range(200):
            try:
                (copy,) = await deliver(self.store,
                    envelope("a@example.com"), message(f"m{i}", os.urandom(8000).hex().encode()))
            except StoreFull:
                break
            stored.append(copy)
        else:
            self.fail("the store never filled")
        self.assertEqual(self.count("messages"), len(stored))
        used = self.db().execute("PRAGMA page_count").fetchone()[0] * 4096
        self.assertLess(used, 1024 * 1024 - 200 * 1024)
        await self.store.setStarred(stored[0], "alice")
        await self.store.createAccount("late")
        await self.store.createKey("late")
        await self.store.reserveAddress("late", "late@example.com")
        await self.store.deleteCopy(stored[1])
        await self.store.deleteCopy(stored[2])
        (again,) = await deliver(self.store,
            envelope("a@example.com"), message("again", os.urandom(8000).hex().encode()))
        self.assertEqual(self.count("messages"), len(stored) - 1)
        self.assertConsistent()

    async def test_diskReserveRefusesMailOnly(self) -> None:
        """
        With less free disk than the reserve, new mail is refused with
        L{StoreFull} and nothing of it is kept, while other writes commit:
        the reserve is the disk's free space new mail may not take.
        """
        await self.restart(reserve=1 << 62)
        await self.assertFails(StoreFull, self.add("a@example.com"))
        self.assertEqual(self.count("messages"), 0)
        await self.store.createAccount("still")
        self.assertEqual((await self.store.getAccount("still")).name, "still")
        await self.restart()
        (copy,) = await self.add("a@example.com")
        self.assertEqual(copy.inbox, "a@example.com")

    async def test_fullInsideBatchUndoesNothingElse(self) -> None:
        """
        When one message of a batch does not fit, each other message of the
        batch is either reported stored and really stored, or reported
        failed and absent: SQLite may roll back the whole transaction on
        SQLITE_FULL, and what it undid must not be reported durable.
        """
        await self._limitTo(160 * 1024)
        # Fill most of the room so a large message cannot fit.
        for i in range(100):
            try:
                await self.add("fill@example.com", raw=message(f"f{i}", b"x" * 8000))
            except StoreFull:
                break
        holding, release = self.holdWriter()
        envelopes = [envelope("batch@example.com") for _ in range(3)]
        raws = [message("small1"), message("big", os.urandom(100_000)), message("small2")]
        pending = [deliver(self.store, e, r) for e, r in zip(envelopes, raws, strict=True)]
        release.set()
        await holding
        results = await DeferredList(pending, consumeErrors=True)
        self.assertFalse(results[1][0])
        cast(Failure, results[1][1]).trap(StoreFull)
        for (ok, value), env, raw in zip(results, envelopes, raws, strict=True):
            exists = self.db().execute(
                "SELECT count(*) FROM messages WHERE queue_id = ?", (env.queueId,)
            ).fetchone()[0]
            if ok:
                self.assertEqual(exists, 1)
                self.assertEqual(await self.store.getRaw(value[0]), raw)
            else:
                cast(Failure, value).trap(StoreError)
                self.assertEqual(exists, 0)
        self.assertConsistent()


class RetentionBatchTests(SQLiteStoreCase):
    """
    Retention passes bounded by the backend's batch size, and a pass the
    database fails.
    """

    async def _inbox(self, inbox: str) -> list[int]:
        return [c.uid for c in await self.store.listInbox(inbox, EVERYTHING, limit=1000)]

    async def test_publicInboxLimitBeyondOneBatch(self) -> None:
        """
        An inbox with more excess than one pass removes is trimmed further
        by the next passes, though no new mail arrives in between.
        """
        self.patch(_retention, "RETENTION_BATCH", 3)
        copies = [(await self.add("busy@example.com"))[0] for _ in range(10)]
        retention = Retention(publicInboxLimit=2, publicMaxAge=0, messageLimit=0)
        removals = [await self.store.enforceRetention(retention, nowMillis()) for _ in range(4)]
        self.assertEqual(removals, [3, 3, 2, 0])
        self.assertEqual(await self._inbox("busy@example.com"), [copies[9].uid, copies[8].uid])
        self.assertConsistent()

    async def test_messageLimitBeyondOneBatch(self) -> None:
        """
        An account more than one batch over its limit keeps being trimmed
        by the following passes, with no new mail in between.
        """
        self.patch(_retention, "RETENTION_BATCH", 2)
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "owned@example.com")
        await self.store.setAccountSettings("alice", messageLimit=1)
        copies = [(await self.add("owned@example.com"))[0] for _ in range(6)]
        retention = Retention(publicInboxLimit=0, publicMaxAge=0, messageLimit=0)
        removals = [await self.store.enforceRetention(retention, nowMillis()) for _ in range(4)]
        self.assertEqual(removals, [2, 2, 1, 0])
        self.assertEqual(await self._inbox("owned@example.com"), [copies[5].uid])

    async def test_failedPassForgetsNothing(self) -> None:
        """
        When a retention pass fails, what it was to look at is looked at by
        the next one.
        """
        copies = [(await self.add("pub@example.com"))[0] for _ in range(4)]
        retention = Retention(publicInboxLimit=1, publicMaxAge=0, messageLimit=0)
        original = _core.enforceRetention

        def broken(*args: Any) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        self.patch(_core, "enforceRetention", broken)
        await self.assertFails(StoreError, self.store.enforceRetention(retention, nowMillis()))
        self.patch(_core, "enforceRetention", original)
        removed = await self.store.enforceRetention(retention, nowMillis())
        self.assertEqual(removed, 3)
        self.assertEqual(await self._inbox("pub@example.com"), [copies[3].uid])


class QueryPlanTests(UnifiedInboxChecks, SQLiteStoreCase):
    """
    The unified inbox and its searches under both of the SQLite store's
    spellings of "the account's copies": walked by uid when the account
    owns much of the newest mail, indexed when it owns little.
    """

    def forcePlan(self, walked: bool) -> None:
        # The sample decides; a share of 0 never walks, a huge one always
        # does (alice has mail among the newest).
        self.patch(_privacy, "_WALK_SHARE", 10**9 if walked else 0)

    async def test_planChoice(self) -> None:
        """
        An account with mail among the store's newest copies is walked; one
        with none is read through the indexes.
        """
        await self.fill()
        conn = self.db()
        privacy = self.store._privacy
        self.assertEqual(privacy.accountCopies(conn, "alice"), privacy.mineWalked)
        self.assertEqual(privacy.accountCopies(conn, "carol"), privacy.mineIndexed)

    async def test_listingWalked(self) -> None:
        """
        Walked: newest first, only the account's copies, C{skip} and the
        C{beforeUid} cursor give the same pages, unread counts them all.
        """
        self.forcePlan(True)
        await self.assertListing()

    async def test_listingIndexed(self) -> None:
        """
        Indexed: the same answers.
        """
        self.forcePlan(False)
        await self.assertListing()

    async def test_searchWalked(self) -> None:
        """
        Walked: M18/M19 searches find the account's matching copies newest
        first; the windowed search pages by its cursor and stops at its
        window.
        """
        self.forcePlan(True)
        await self.assertSearch()

    async def test_searchIndexed(self) -> None:
        """
        Indexed: the same answers.
        """
        self.forcePlan(False)
        await self.assertSearch()


def test_storedSpellingsMigrate(tmp_path: Path) -> None:
    """
    Migration 4 renames inboxes, owned addresses and domains stored under
    an A-label (or uppercase, decomposed) spelling to the canonical one,
    merging two spellings of one inbox; junk that is no address stays.
    """
    directory = tmp_path
    SQLiteStore(str(directory)).open()
    conn = sqlite3.connect(directory / "capture.sqlite3")
    # Back to a version 3 store: undo what later migrations added.
    conn.execute("ALTER TABLE accounts DROP COLUMN session_generation")
    conn.execute("ALTER TABLE copies DROP COLUMN listing_head")
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO accounts(name, created) VALUES ('a', 0)")
    conn.execute("INSERT INTO messages(id, queue_id, received, mail_from, helo, ip, via, tls, "
                 "size, subject, from_json, to_json, cc_json, bcc_json, links_json, "
                 "attachments_json) VALUES (1, 'q', 0, '', '', '', '', 0, 0, '', '[]', '[]', "
                 "'[]', '[]', '[]', '[]')")
    for n, inbox in enumerate(["info@xn--exmple-cua.test", "info@exämple.test",
                               "a\x00b@nul.test", "plain@example.com"]):
        conn.execute("INSERT INTO copies(message, n, inbox, original_inbox, domain, received) "
                     "VALUES (1, ?, ?, ?, ?, 0)", (n, inbox, inbox, inbox.rpartition("@")[2]))
    conn.execute("INSERT INTO addresses(address, account, created, updated) "
                 "VALUES ('x@xn--exmple-cua.test', 'a', 0, 0)")
    conn.execute("INSERT INTO domains(domain, account, created) VALUES ('xn--bcher-kva.test', 'a', 0)")
    conn.commit()
    conn.close()
    assert _migrations()[-1][0] >= 4
    SQLiteStore(str(directory)).open()
    conn = sqlite3.connect(directory / "capture.sqlite3")
    assert [tuple(r) for r in conn.execute("SELECT inbox, domain FROM copies ORDER BY n")] == [
        ("info@exämple.test", "exämple.test"),
        ("info@exämple.test", "exämple.test"),
        ("a\x00b@nul.test", "nul.test"),
        ("plain@example.com", "example.com"),
    ]
    assert conn.execute("SELECT address FROM addresses").fetchall() == [("x@exämple.test",)]
    assert conn.execute("SELECT domain FROM domains").fetchall() == [("bücher.test",)]
    conn.close()
