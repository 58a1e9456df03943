# -*- test-case-name: tests.test_store -*-
"""
The store conformance suite: what every store backend must do, written
against the store's interface and run once per backend.

As Twisted's C{ReactorBuilder} runs one suite against every reactor, the
behaviour tests here are mixins that know nothing of SQL;
L{makeTestCaseClasses} makes one trial C{TestCase} per mixin and backend
(C{tests/test_store.py} puts them in its namespace for pytest).  A backend
takes part by registering a L{BackendFactory} in L{FACTORIES} (SQLite now;
PostgreSQL adds one).  C{CAPTURE_TEST_STORE} picks backends by name,
comma-separated (as Mailpit's storage tests pick theirs from
C{MP_DATABASE}); unset, every registered backend runs, and one that cannot
run on this machine is skipped with its reason, while one named in
C{CAPTURE_TEST_STORE} that cannot run fails.

Tests that must look inside one backend (pragmas, files, migrations,
its writer thread) live in that backend's own module
(C{tests/test_store_sqlite.py}).

Three things other work changes are spelled once here: how mail enters a
store (L{deliver}), how a test hears of new and removed copies (L{listen}),
and where the store's errors are imported from (the import below).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, Protocol

import attrs
import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from capture.access import Visibility
from capture.emailmessage import messageJSON
from capture.events import (
    ChangedCopies,
    ChangedCopy,
    IEventBus,
    InProcessBus,
    NewCopies,
    RemovedCopies,
)
from capture.ids import newQueueId
from capture.ingest import prepare
from capture.mime import Part, parseMessage

# The store's errors, imported in this one place (the SQLite-only tests take
# them from here too).
from capture.store.errors import Conflict, NotFound, SchemaTooNew, StoreError, StoreFull  # noqa: F401
from capture.store.interface import IStore
from capture.store.model import (
    PUBLIC,
    AccountDeletion,
    AccountStats,
    Copy,
    Envelope,
    FlagState,
    InboxOwner,
    MailboxQuery,
    Recipient,
    RemovedCopy,
    Retention,
    StoreLoad,
)

EVERYTHING = Visibility(everything=True)
ANONYMOUS = Visibility(everything=False, starredBy=None)
# How the API encodes a JSON answer (capture.web.responses).
_API_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
DAY = 86400 * 1000

#: The environment variable naming the backends to run, comma-separated.
SELECT_VARIABLE = "CAPTURE_TEST_STORE"


def nowMillis() -> int:
    return int(time.time() * 1000)


def envelope(
    *recipients: str | tuple[str, str],
    account: str | None = None,
    received: int | None = None,
) -> Envelope:
    """
    An envelope to the given inboxes; a C{(inbox, original)} pair gives a
    recipient whose address differs from its inbox (plus-addressing).
    """
    rcpts = tuple(
        Recipient(inbox=r, original=r) if isinstance(r, str) else Recipient(*r)
        for r in recipients
    )
    return Envelope(
        queueId=newQueueId(),
        mailFrom="sender@example.com",
        recipients=rcpts,
        account=account,
        helo="client.example.com",
        ip="192.0.2.1",
        via="127.0.0.1",
        tls=True,
        received=nowMillis() if received is None else received,
    )


def message(subject: str = "hello", body: bytes = b"body\r\n") -> bytes:
    return (
        b"Received: from client.example.com by capture\r\n"
        b"From: Sender <sender@example.com>\r\n"
        b"To: rcpt@example.org\r\n"
        b"Subject: " + subject.encode() + b"\r\n\r\n" + body
    )


def deliver(store: Any, env: Envelope, raw: bytes) -> Deferred[list[Copy]]:
    """
    Store one message: the one way mail enters a store in the store tests
    (ingest's change of C{addMessage}'s argument is made here alone).

    @return: Deferred firing with the new copies.
    """
    return store.addMessage(prepare(env, raw))  # type: ignore[no-any-return]


_KINDS: dict[str, type] = {"new": NewCopies, "removed": RemovedCopies, "changed": ChangedCopies}


def listen(
    store: Any, kind: Literal["new", "removed", "changed"], callback: Callable[[list[Any]], None]
) -> Callable[[], None]:
    """
    Hear, after each commit, of the copies stored (C{"new"}: the list of
    new L{Copy} of each message), removed (C{"removed"}: a list of
    L{RemovedCopy}) or changed (C{"changed"}: a list of L{ChangedCopy}):
    the one way the store tests subscribe.  C{store} is the event bus the
    test's stores publish to (C{self.events}).

    @return: A function that stops listening.
    """
    events: IEventBus = store
    return events.subscribe(_KINDS[kind], lambda event: callback(list(event.copies)))


# Backends


class Backend(Protocol):
    """
    The stored data of one test on one backend, and how to open stores on
    it.
    """

    def newStore(self, **options: Any) -> Any:
        """
        A new, not yet started, store object on this test's data: every
        call opens the same data (a restart, or a second writer).

        @param options: Backend-specific settings (the SQLite store's
            C{maxSize}, C{reserve}); the suite passes none.
        """

    def count(self, what: str) -> int:
        """
        How many records of a kind are stored: C{"messages"},
        C{"copies"}, C{"message_raw"}, C{"message_bodies"} or C{"usage"}
        (the store's own records, whatever the backend calls them).
        """

    def inconsistencies(self) -> dict[str, int]:
        """
        Half-stored messages, by kind: copies without their message,
        messages without a copy, raw bytes or bodies, and the reverse.
        """

    def destroy(self) -> None:
        """
        Remove the test's data (every store on it is stopped).
        """


@attrs.frozen
class BackendFactory:
    """
    A backend the suite can run against.

    @ivar name: What C{CAPTURE_TEST_STORE} calls it; the suffix of its test
        case names.
    @ivar make: Make fresh, empty data for one test.
    @ivar unavailable: Why the backend cannot run here (a server or driver
        missing), or L{None} when it can.
    @ivar concurrentWriters: Whether several store objects may write the
        same data at once (several Capture nodes on one database).
    """

    name: str
    make: Callable[[], Backend]
    unavailable: Callable[[], str | None] = lambda: None
    concurrentWriters: bool = False


class SQLiteBackend:
    """
    A data directory of the test's own, read back by a read-only SQLite
    connection of its own (as an administrator would).
    """

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="capture-store-")
        from capture.store.sqlite import DATABASE_NAME

        self.path = os.path.join(self.directory, DATABASE_NAME)
        self._connections: list[sqlite3.Connection] = []

    def newStore(self, **options: Any) -> Any:
        from capture.store.sqlite import SQLiteStore

        return SQLiteStore(self.directory, **options)

    def db(self) -> sqlite3.Connection:
        """
        A read-only connection of the test's own to the database file.
        """
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        self._connections.append(conn)
        return conn

    def count(self, what: str) -> int:
        assert what in {"messages", "copies", "message_raw", "message_bodies", "usage"}, what
        return int(self.db().execute(f"SELECT count(*) FROM {what}").fetchone()[0])

    def inconsistencies(self) -> dict[str, int]:
        db = self.db()
        checks = {
            "copy without message": "SELECT count(*) FROM copies c WHERE NOT EXISTS "
            "(SELECT 1 FROM messages m WHERE m.id = c.message)",
            "message without copy": "SELECT count(*) FROM messages m WHERE NOT EXISTS "
            "(SELECT 1 FROM copies c WHERE c.message = m.id)",
            "message without raw": "SELECT count(*) FROM messages m WHERE NOT EXISTS "
            "(SELECT 1 FROM message_raw r WHERE r.message = m.id)",
            "message without bodies": "SELECT count(*) FROM messages m WHERE NOT EXISTS "
            "(SELECT 1 FROM message_bodies b WHERE b.message = m.id)",
            "raw without message": "SELECT count(*) FROM message_raw r WHERE NOT EXISTS "
            "(SELECT 1 FROM messages m WHERE m.id = r.message)",
            "bodies without message": "SELECT count(*) FROM message_bodies b WHERE NOT EXISTS "
            "(SELECT 1 FROM messages m WHERE m.id = b.message)",
        }
        return {what: int(db.execute(sql).fetchone()[0]) for what, sql in checks.items()}

    def destroy(self) -> None:
        for conn in self._connections:
            conn.close()
        shutil.rmtree(self.directory, ignore_errors=True)


SQLITE = BackendFactory("sqlite", SQLiteBackend, concurrentWriters=True)

#: Every backend the suite knows, by name.  PostgreSQL registers here.
FACTORIES: dict[str, BackendFactory] = {SQLITE.name: SQLITE}


def selectedFactories(
    environ: dict[str, str] | None = None,
) -> list[tuple[BackendFactory, bool]]:
    """
    The backends to run, each with whether it was asked for by name.

    @raise ValueError: C{CAPTURE_TEST_STORE} names an unknown backend.
    """
    chosen = (os.environ if environ is None else environ).get(SELECT_VARIABLE, "").strip()
    if not chosen:
        return [(factory, False) for factory in FACTORIES.values()]
    names = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = [name for name in names if name not in FACTORIES]
    if unknown:
        raise ValueError(
            f"{SELECT_VARIABLE} names unknown store backends {unknown}; "
            f"known: {sorted(FACTORIES)}"
        )
    return [(FACTORIES[name], True) for name in names]


class StoreCase:
    """
    A started store on fresh data of the test's backend
    (L{backendFactory}), and what the tests share.  A mixin: the classes
    pytest runs are made by L{makeTestCaseClasses}, or name a factory and
    add C{unittest.TestCase} themselves.
    """

    backendFactory: BackendFactory
    #: Set by L{makeTestCaseClasses}: fail, not skip, an unavailable backend.
    requireBackend = False

    def setUp(self) -> None:
        reason = self.backendFactory.unavailable()
        if reason is not None:
            if self.requireBackend:
                raise RuntimeError(
                    f"store backend {self.backendFactory.name!r} was asked for by "
                    f"{SELECT_VARIABLE} but cannot run: {reason}"
                )
            raise unittest.SkipTest(reason)
        self.backend = self.backendFactory.make()
        self.events = InProcessBus()
        self.running: list[Any] = []
        self.store = self.openStore()

    async def tearDown(self) -> None:
        # Not addCleanup: trial runs cleanups before tearDown, and the data
        # must outlive the stores.
        while self.running:
            await self.running.pop().stop()
        self.backend.destroy()

    def openStore(self, **options: Any) -> Any:
        """
        Start another store object on this test's data (stopped at the
        end of the test).
        """
        options.setdefault("events", self.events)
        store = self.backend.newStore(**options)
        store.start()
        self.running.append(store)
        return store

    async def stopStore(self, store: Any = None) -> None:
        """
        Stop C{store} (the test's store by default) now.
        """
        store = self.store if store is None else store
        self.running.remove(store)
        await store.stop()

    async def restart(self, **options: Any) -> None:
        """
        Stop the store and open a new one on the same data.
        """
        await self.stopStore()
        self.store = self.openStore(**options)

    def count(self, what: str) -> int:
        return self.backend.count(what)

    def assertConsistent(self) -> None:
        """
        No half-stored message: every message has its raw bytes, its bodies
        and at least one copy, and every copy and body row has its message.
        """
        for what, found in self.backend.inconsistencies().items():
            self.assertEqual(found, 0, what)

    async def add(self, *recipients: str | tuple[str, str], **kwargs: Any) -> list[Copy]:
        raw = kwargs.pop("raw", None) or message()
        return await deliver(self.store, envelope(*recipients, **kwargs), raw)

    async def assertFails(
        self, exception: type[BaseException], d: Awaitable[Any]
    ) -> BaseException:
        """
        Await C{d} and return the C{exception} it fails with; fail the test
        if it succeeds.
        """
        try:
            await d
        except exception as e:
            return e
        self.fail(f"{exception.__name__} not raised")


def makeTestCaseClasses(
    mixins: Iterable[type[StoreCase]], module: str
) -> dict[str, type[unittest.TestCase]]:
    """
    One trial C{TestCase} per behaviour mixin and selected backend, named
    C{<Mixin>_<backend>}, for a test module to put in its namespace.

    @param module: The C{__name__} of that module (where pytest and trial
        will look for the classes).
    """
    classes: dict[str, type[unittest.TestCase]] = {}
    for factory, required in selectedFactories():
        for mixin in mixins:
            name = f"{mixin.__name__}_{factory.name}"
            classes[name] = type(
                name,
                (mixin, unittest.TestCase),
                {"backendFactory": factory, "requireBackend": required, "__module__": module},
            )
    return classes


# The behaviour of every store
class AccountTests(StoreCase):
    """
    Accounts, API keys and login names.
    """

    def test_providesInterface(self) -> None:
        """
        The store fully provides L{IStore}.
        """
        self.assertTrue(verifyObject(IStore, self.store))

    async def test_createGetList(self) -> None:
        """
        A created account can be fetched and is listed by name; its key is
        returned once and works; creating the same name again conflicts.
        """
        bob, bobKey = await self.store.createAccount("bob")
        alice, aliceKey = await self.store.createAccount("alice", key="k_given")
        self.assertEqual(aliceKey, "k_given")
        self.assertTrue(bobKey.startswith("k_"))
        self.assertEqual((alice.name, alice.capturePrivate, alice.messageLimit),
                         ("alice", False, None))
        self.assertEqual(await self.store.getAccount("alice"), alice)
        self.assertEqual([a.name for a in await self.store.listAccounts()], ["alice", "bob"])
        await self.assertFails(Conflict, self.store.createAccount("alice"))
        await self.assertFails(NotFound, self.store.getAccount("carol"))
        self.assertEqual(await self.store.accountForKey("k_given"), "alice")
        self.assertEqual(await self.store.accountForKey(bobKey), "bob")

    async def test_checkLoginIsBothLookups(self) -> None:
        """
        L{IStore.checkLogin} answers, in one read, what L{accountForKey} and
        L{resolveLogin} answer apart: for a matching pair, another
        account's key, an empty or revoked key, an owned address and an
        unknown name.
        """
        _, aliceKey = await self.store.createAccount("alice")
        _, bobKey = await self.store.createAccount("bob")
        await self.store.reserveAddress("alice", "alice@owned.test")
        for username, key in [
            ("alice", aliceKey), ("alice", bobKey), (" alice ", ""),
            ("Alice@Owned.test", aliceKey), ("nobody", "k_nonsense"), ("", bobKey),
        ]:
            expected = (
                await self.store.accountForKey(key) if key else None,
                await self.store.resolveLogin(username),
            )
            self.assertEqual(await self.store.checkLogin(username, key), expected)
        self.assertEqual(await self.store.checkLogin("alice@owned.test", bobKey),
                         ("bob", "alice"))
        await self.store.revokeKey("bob", bobKey)
        self.assertEqual(await self.store.checkLogin("bob", bobKey), (None, "bob"))

    async def test_settings(self) -> None:
        """
        Settings change one at a time; L{None} leaves a setting alone.
        """
        await self.store.createAccount("alice")
        updated = await self.store.setAccountSettings("alice", capturePrivate=True)
        self.assertEqual((updated.capturePrivate, updated.messageLimit), (True, None))
        updated = await self.store.setAccountSettings("alice", messageLimit=7)
        self.assertEqual((updated.capturePrivate, updated.messageLimit), (True, 7))
        self.assertEqual(await self.store.getAccount("alice"), updated)
        await self.assertFails(NotFound, self.store.setAccountSettings("nobody", True))

    async def test_sessionGenerations(self) -> None:
        """
        A session is checked against the account's generation while its
        key is live: 0 at first, raised by each L{endSessions} (kept across
        a restart), L{None} for a revoked key, an unknown prefix or
        account; ending the sessions of no account is not found.
        """
        _, key = await self.store.createAccount("alice")
        prefix = key[:8]
        self.assertEqual(await self.store.sessionGeneration("alice", prefix), 0)
        self.assertEqual(await self.store.endSessions("alice"), 1)
        self.assertEqual(await self.store.endSessions("alice"), 2)
        await self.restart()
        self.assertEqual(await self.store.sessionGeneration("alice", prefix), 2)
        self.assertIsNone(await self.store.sessionGeneration("alice", "k_nope00"))
        self.assertIsNone(await self.store.sessionGeneration("bob", prefix))
        await self.assertFails(NotFound, self.store.endSessions("bob"))
        await self.store.revokeKey("alice", prefix)
        self.assertIsNone(await self.store.sessionGeneration("alice", prefix))

    async def test_deleteAccount(self) -> None:
        """
        Deleting an account removes its keys, addresses, domains, the
        unstarred mail in them and its usage; another account's star in its
        inbox keeps that copy; its stars elsewhere are dropped; what it
        sent stays with the recipient but is no longer its sent mail; the
        name can be made again, empty.  Unknown: not found.
        """
        _, key = await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.reserveAddress("alice", "own@example.com")
        await self.store.addDomain("alice", "alice.test", isPrivate=False)
        (mine,) = await self.add("own@example.com")
        (inDomain,) = await self.add("x@alice.test")
        (keptForBob,) = await self.add("y@alice.test")
        await self.store.setStarred(keptForBob, "bob")
        (public,) = await self.add("pub@example.com", account="alice")
        await self.store.setStarred(public, "alice")
        self.store.countOp("alice")
        deleted = await self.store.deleteAccount("alice")
        self.assertEqual(deleted, AccountDeletion(1, ("own@example.com",), ("alice.test",), 2, 1))
        self.assertIsNone(await self.store.accountForKey(key))
        await self.assertFails(NotFound, self.store.getCopy(mine.id))
        await self.assertFails(NotFound, self.store.getCopy(inDomain.id))
        self.assertEqual((await self.store.getCopy(keptForBob.id)).savedBy, "bob")
        self.assertIsNone((await self.store.getCopy(public.id)).savedBy)
        self.assertEqual((await self.store.inboxOwner("own@example.com")).account, None)
        await self.store.createAccount("alice")
        self.assertEqual(await self.store.listSent("alice"), [])
        self.assertEqual(await self.store.listAddresses("alice"), [])
        self.assertEqual(self.count("usage"), 0)
        await self.assertFails(NotFound, self.store.deleteAccount("nobody"))
        self.assertConsistent()

    async def test_revokeByPrefix(self) -> None:
        """
        A prefix naming one live key revokes it; the key stops working,
        the other keeps working, and the listing shows when it was revoked.
        """
        _, first = await self.store.createAccount("alice")
        second = await self.store.createKey("alice")
        info = await self.store.revokeKey("alice", first[:8])
        self.assertEqual(info.prefix, first[:8])
        self.assertIsNotNone(info.revoked)
        self.assertIsNone(await self.store.accountForKey(first))
        self.assertEqual(await self.store.accountForKey(second), "alice")
        listed = {i.prefix: i.revoked for i in await self.store.listKeys("alice")}
        self.assertEqual(listed, {first[:8]: info.revoked, second[:8]: None})

    async def test_revokeAmbiguousUnknownAndFullKey(self) -> None:
        """
        A prefix of several live keys conflicts and revokes nothing; an
        unknown or empty prefix is not found; a whole key revokes exactly
        that key, after which the shorter prefix is no longer ambiguous.
        """
        _, first = await self.store.createAccount("alice")
        second = await self.store.createKey("alice")
        await self.assertFails(Conflict, self.store.revokeKey("alice", "k_"))
        self.assertEqual(await self.store.accountForKey(first), "alice")
        self.assertEqual(await self.store.accountForKey(second), "alice")
        await self.assertFails(NotFound, self.store.revokeKey("alice", "zzz"))
        await self.assertFails(NotFound, self.store.revokeKey("alice", ""))
        await self.assertFails(NotFound, self.store.revokeKey("nobody", "k_"))
        await self.store.revokeKey("alice", second)
        self.assertIsNone(await self.store.accountForKey(second))
        self.assertEqual(await self.store.accountForKey(first), "alice")
        info = await self.store.revokeKey("alice", "k_")
        self.assertEqual(info.prefix, first[:8])
        self.assertIsNone(await self.store.accountForKey(first))
        await self.assertFails(NotFound, self.store.revokeKey("alice", "k_"))

    async def test_createAccountWithAnotherAccountsKey(self) -> None:
        """
        An account created with a chosen key (C{--accept-any-auth}) that is
        already another account's key is refused with L{Conflict}, and no
        account is left half-made.
        """
        _, key = await self.store.createAccount("alice")
        await self.assertFails(Conflict, self.store.createAccount("mallory", key))
        await self.assertFails(NotFound, self.store.getAccount("mallory"))
        self.assertEqual(await self.store.accountForKey(key), "alice")

    async def test_revokeWithMoreThanThePrefix(self) -> None:
        """
        Only a key's first 8 characters are stored: a longer piece of a key
        that is not the whole key is refused with a message saying so, and
        revokes nothing.
        """
        _, key = await self.store.createAccount("alice")
        error = await self.assertFails(NotFound, self.store.revokeKey("alice", key[:12]))
        self.assertIn("at most 8 characters", str(error))
        self.assertEqual(await self.store.accountForKey(key), "alice")

    async def test_revokeOtherAccountsKey(self) -> None:
        """
        An account cannot revoke another account's key, even by its text.
        """
        _, aliceKey = await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.assertFails(NotFound, self.store.revokeKey("bob", aliceKey))
        await self.assertFails(NotFound, self.store.revokeKey("bob", aliceKey[:8]))
        self.assertEqual(await self.store.accountForKey(aliceKey), "alice")

    async def test_accountForUnknownKey(self) -> None:
        """
        An unknown key, or an empty one, belongs to no account.
        """
        await self.store.createAccount("alice")
        self.assertIsNone(await self.store.accountForKey("k_000000000000000000000000"))
        self.assertIsNone(await self.store.accountForKey(""))

    async def test_resolveLogin(self) -> None:
        """
        A login name resolves to its account whether it is the account
        name, an owned address (with or without a C{+tag}), an owned domain
        or an address in one (in any case, with stray spaces, an
        internationalized domain in either spelling); anything else resolves
        to nothing.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.reserveAddress("alice", "owned@example.com")
        await self.store.addDomain("alice", "private.test")
        await self.store.addDomain("bob", "public.test", isPrivate=False)
        await self.store.addDomain("bob", "bücher.test")
        cases = {
            "xn--bcher-kva.test": "bob",
            "Jürgen@XN--BCHER-KVA.test": "bob",
            "alice": "alice",
            "owned@example.com": "alice",
            " Owned@Example.COM ": "alice",
            # Plus-addressing: the tagged address files into (and so logs
            # in as) the owned inbox.
            "owned+ci@example.com": "alice",
            "Owned+CI@Example.com": "alice",
            "private.test": "alice",
            "anyone@private.test": "alice",
            "Anyone@PRIVATE.test": "alice",
            "public.test": "bob",
            "anyone@public.test": "bob",
            "other@example.com": None,
            "carol": None,
            "unknown.test": None,
            "": None,
        }
        for login, expected in cases.items():
            self.assertEqual(await self.store.resolveLogin(login), expected, login)

    async def test_keysListedAndLabelled(self) -> None:
        """
        Keys are listed by prefix (never the key) with their label, live
        until revoked; an unknown account has no keys to list or add.
        """
        self.assertEqual(await self.store.listAccounts(), [])
        _, first = await self.store.createAccount("alice")
        second = await self.store.createKey("alice", label="ci")
        infos = await self.store.listKeys("alice")
        self.assertEqual(sorted((i.prefix, i.label, i.revoked) for i in infos),
                         sorted([(first[:8], "", None), (second[:8], "ci", None)]))
        self.assertEqual({i.account for i in infos}, {"alice"})
        self.assertEqual(await self.store.accountForKey(second), "alice")
        await self.assertFails(NotFound, self.store.createKey("nobody"))
        await self.assertFails(NotFound, self.store.listKeys("nobody"))

    async def test_deleteAccountEndsItsSessionsAndKeys(self) -> None:
        """
        A deleted account's sessions end with it and its keys are gone:
        a new account of the same name starts at generation 0 with only
        its own new key.
        """
        _, key = await self.store.createAccount("alice")
        await self.store.endSessions("alice")
        await self.store.deleteAccount("alice")
        self.assertIsNone(await self.store.sessionGeneration("alice", key[:8]))
        await self.assertFails(NotFound, self.store.listKeys("alice"))
        await self.assertFails(NotFound, self.store.getAccount("alice"))
        _, newKey = await self.store.createAccount("alice")
        self.assertEqual(await self.store.sessionGeneration("alice", newKey[:8]), 0)
        self.assertIsNone(await self.store.sessionGeneration("alice", key[:8]))
        self.assertEqual([i.prefix for i in await self.store.listKeys("alice")], [newKey[:8]])
        self.assertIsNone(await self.store.accountForKey(key))


class OwnershipTests(StoreCase):
    """
    Owned addresses, custom domains and who owns an inbox.
    """

    async def test_reserveAndRelease(self) -> None:
        """
        A reserved address is owned (explicitly) by its account, another
        account cannot take it, and releasing it makes the inbox public.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        owned = await self.store.reserveAddress("alice", "Me@Example.com")
        self.assertEqual((owned.address, owned.account), ("me@example.com", "alice"))
        self.assertEqual(await self.store.inboxOwner("me@example.com"), InboxOwner("alice"))
        self.assertEqual(await self.store.inboxOwner("ME@example.COM"), InboxOwner("alice"))
        await self.assertFails(Conflict, self.store.reserveAddress("bob", "me@example.com"))
        await self.assertFails(NotFound, self.store.reserveAddress("carol", "x@example.com"))
        self.assertEqual([a.address for a in await self.store.listAddresses("alice")],
                         ["me@example.com"])
        self.assertEqual(await self.store.listAddresses("bob"), [])
        await self.assertFails(NotFound, self.store.releaseAddress("bob", "me@example.com"))
        await self.store.releaseAddress("alice", "me@example.com")
        self.assertEqual(await self.store.inboxOwner("me@example.com"), PUBLIC)
        await self.assertFails(NotFound, self.store.releaseAddress("alice", "me@example.com"))
        await self.store.reserveAddress("bob", "me@example.com")
        self.assertEqual(await self.store.inboxOwner("me@example.com"), InboxOwner("bob"))

    async def test_domains(self) -> None:
        """
        Every address in a private domain is owned implicitly; a domain
        added as public leaves its inboxes public; a domain has one owner;
        removing it makes its inboxes public.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        domain = await self.store.addDomain("alice", "Private.Test")
        self.assertEqual((domain.domain, domain.isPrivate), ("private.test", True))
        await self.store.addDomain("alice", "open.test", isPrivate=False)
        self.assertEqual(await self.store.inboxOwner("x@private.test"),
                         InboxOwner("alice", implicit=True))
        self.assertEqual(await self.store.inboxOwner("x@open.test"), PUBLIC)
        self.assertEqual(await self.store.inboxOwner("x@elsewhere.test"), PUBLIC)
        await self.assertFails(Conflict, self.store.addDomain("bob", "private.test"))
        self.assertEqual([(d.domain, d.isPrivate) for d in await self.store.listDomains("alice")],
                         [("open.test", False), ("private.test", True)])
        await self.assertFails(NotFound, self.store.removeDomain("bob", "private.test"))
        await self.store.removeDomain("alice", "private.test")
        self.assertEqual(await self.store.inboxOwner("x@private.test"), PUBLIC)

    async def test_reservedAddressInPrivateDomain(self) -> None:
        """
        An address its owner reserved inside its own private domain is
        owned explicitly.
        """
        await self.store.createAccount("alice")
        await self.store.addDomain("alice", "private.test")
        await self.store.reserveAddress("alice", "me@private.test")
        self.assertEqual(await self.store.inboxOwner("me@private.test"), InboxOwner("alice"))
        self.assertEqual(await self.store.inboxOwner("you@private.test"),
                         InboxOwner("alice", implicit=True))

    async def test_webhookTargets(self) -> None:
        """
        Of a batch of inboxes, those owned with a non-empty webhook URL are
        found, in one read, whatever their case; unowned ones, owned ones
        without a webhook or with it cleared are not.
        """
        await self.store.createAccount("alice")
        for address in ("hooked@example.com", "plain@example.com", "cleared@example.com"):
            await self.store.reserveAddress("alice", address)
        await self.store.updateAddress("alice", "hooked@example.com",
                                       {"webhook": "http://127.0.0.1:9/hook"})
        await self.store.updateAddress("alice", "cleared@example.com", {"webhook": ""})
        many = [f"public{n}@example.com" for n in range(1200)]
        found = await self.store.webhookTargets(
            ["Hooked@Example.com", "plain@example.com", "cleared@example.com", *many]
        )
        self.assertEqual(list(found), ["hooked@example.com"])
        target = found["hooked@example.com"]
        self.assertEqual((target.account, target.webhook), ("alice", "http://127.0.0.1:9/hook"))
        self.assertEqual(await self.store.webhookTargets([]), {})

    async def test_updateAddress(self) -> None:
        """
        An owned address's settings change one at a time and are listed;
        another account, or an address nobody owns, is not found, and no
        setting changes.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.reserveAddress("alice", "me@example.com")
        updated = await self.store.updateAddress("alice", "Me@Example.com", {
            "info": "notes", "forward": "fwd@example.net",
            "webhook": "http://127.0.0.1:9/h", "enablews": True,
        })
        self.assertEqual(
            (updated.address, updated.account, updated.info, updated.forward, updated.webhook,
             updated.enablews),
            ("me@example.com", "alice", "notes", "fwd@example.net", "http://127.0.0.1:9/h", True),
        )
        again = await self.store.updateAddress("alice", "me@example.com", {"enablews": False})
        self.assertEqual((again.info, again.enablews), ("notes", False))
        self.assertEqual(await self.store.listAddresses("alice"), [again])
        await self.assertFails(NotFound, self.store.updateAddress(
            "bob", "me@example.com", {"info": "mine now"}))
        await self.assertFails(NotFound, self.store.updateAddress(
            "alice", "unowned@example.com", {"info": "x"}))
        self.assertEqual((await self.store.listAddresses("alice"))[0].info, "notes")

    async def test_domainOwnerAndPrivacy(self) -> None:
        """
        A domain's owner is found in any case and is gone with the domain;
        making a domain public makes its inboxes public and private again
        the owner's; another account cannot change it, nor can anyone add
        a domain for an account that does not exist.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.addDomain("alice", "corp.test")
        self.assertEqual(await self.store.domainOwner("CORP.test"), "alice")
        self.assertIsNone(await self.store.domainOwner("other.test"))
        public = await self.store.setDomainPrivacy("alice", "Corp.Test", False)
        self.assertEqual((public.domain, public.account, public.isPrivate),
                         ("corp.test", "alice", False))
        self.assertEqual(await self.store.inboxOwner("x@corp.test"), PUBLIC)
        self.assertEqual(await self.store.listDomains("alice"), [public])
        private = await self.store.setDomainPrivacy("alice", "corp.test", True)
        self.assertTrue(private.isPrivate)
        self.assertEqual(await self.store.inboxOwner("x@corp.test"),
                         InboxOwner("alice", implicit=True))
        await self.assertFails(NotFound, self.store.setDomainPrivacy("bob", "corp.test", False))
        await self.assertFails(NotFound, self.store.setDomainPrivacy("alice", "no.test", False))
        self.assertTrue((await self.store.listDomains("alice"))[0].isPrivate)
        await self.assertFails(NotFound, self.store.addDomain("nobody", "new.test"))
        await self.store.removeDomain("alice", "corp.test")
        self.assertIsNone(await self.store.domainOwner("corp.test"))

    async def test_reserveAddressesAllOrNone(self) -> None:
        """
        A bulk reservation reserves every address or none: addresses
        another account owns, itself or by its private domain, conflict
        (named in the error) and nothing is reserved; the account's own
        addresses are kept as they were; the list comes back in order,
        once per address.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.reserveAddress("bob", "bob@example.com")
        await self.store.addDomain("bob", "bob.test")
        kept = await self.store.reserveAddress("alice", "kept@example.com")
        error = await self.assertFails(Conflict, self.store.reserveAddresses(
            "alice", ["new1@example.com", "bob@example.com", "x@bob.test"]))
        self.assertIn("bob@example.com", str(error))
        self.assertIn("x@bob.test", str(error))
        self.assertEqual([a.address for a in await self.store.listAddresses("alice")],
                         ["kept@example.com"])
        self.assertEqual(await self.store.inboxOwner("new1@example.com"), PUBLIC)
        reserved = await self.store.reserveAddresses(
            "alice", ["New2@example.com", "kept@example.com", "new1@example.com",
                      "new2@example.com"])
        self.assertEqual([a.address for a in reserved],
                         ["new2@example.com", "kept@example.com", "new1@example.com"])
        self.assertEqual(reserved[1], kept)
        self.assertEqual([a.address for a in await self.store.listAddresses("alice")],
                         ["kept@example.com", "new1@example.com", "new2@example.com"])
        self.assertEqual(await self.store.inboxOwner("new1@example.com"), InboxOwner("alice"))
        await self.assertFails(NotFound, self.store.reserveAddresses("nobody", ["z@example.com"]))

    async def test_routes(self) -> None:
        """
        An inbox is routed by its own address record, else by its domain's
        catch-all when the catch-all's account owns the domain; a public
        inbox, or a catch-all of a domain its account does not own, routes
        nothing.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.addDomain("alice", "corp.test")
        await self.store.reserveAddress("alice", "*@corp.test")
        await self.store.reserveAddress("alice", "own@corp.test")
        await self.store.reserveAddress("bob", "*@unowned.test")
        found = await self.store.routes(
            ["Any@Corp.test", "own@corp.test", "x@unowned.test", "pub@example.com"])
        self.assertEqual({inbox: record.address for inbox, record in found.items()},
                         {"any@corp.test": "*@corp.test", "own@corp.test": "own@corp.test"})
        self.assertEqual(await self.store.routes([]), {})


class MessageTests(StoreCase):
    """
    Adding, reading, listing, starring and deleting messages.
    """

    async def test_addMessageOneRowManyCopies(self) -> None:
        """
        One message with three recipients is stored once, with one copy per
        inbox, numbered from 0, with ascending uids; plus-addressing files
        the copy in the base inbox and keeps the original address.
        """
        raw = message("three")
        env = envelope("a@example.com", ("b@example.com", "b+tag@example.com"), "C@Example.com")
        copies = await deliver(self.store, env, raw)
        self.assertEqual([c.n for c in copies], [0, 1, 2])
        self.assertEqual([c.inbox for c in copies],
                         ["a@example.com", "b@example.com", "c@example.com"])
        self.assertEqual(copies[1].originalInbox, "b+tag@example.com")
        self.assertEqual([c.id for c in copies], [f"{env.queueId}-{n}" for n in range(3)])
        uids = [c.uid for c in copies]
        self.assertEqual(uids, sorted(set(uids)))
        self.assertEqual(self.count("messages"), 1)
        self.assertEqual(self.count("copies"), 3)
        self.assertEqual(self.count("message_raw"), 1)
        info = copies[0].message
        self.assertEqual((info.queueId, info.size, info.subject, info.account),
                         (env.queueId, len(raw), "three", None))
        self.assertEqual(info.to[0].address, "rcpt@example.org")
        self.assertIs(copies[0].message, copies[2].message)
        for copy in copies:
            self.assertEqual(await self.store.getCopy(copy.id), copy)
        self.assertConsistent()

    async def test_getCopyBadIds(self) -> None:
        """
        Ids that are not shaped like C{<queueId>-<n>}, or name no copy,
        are not found.
        """
        (copy,) = await self.add("a@example.com")
        bad = ["x", "..", "abc-", "abc-1-2", "a b-0", "", "-0", f"{copy.message.queueId}-1",
               f"{copy.message.queueId}-x", f"{copy.message.queueId}0-0", "../etc/passwd-0"]
        for copyId in bad:
            await self.assertFails(NotFound, self.store.getCopy(copyId))
        self.assertEqual((await self.store.getCopy(copy.id)).uid, copy.uid)

    async def test_getRawExact(self) -> None:
        """
        The raw bytes come back exactly as given: CRLFs, 8-bit octets, NUL,
        trailing white space and no final line end.
        """
        raw = message("exact", b"caf\xc3\xa9 \xff\x00 \t\r\n.\r\nno newline  ")
        (copy,) = await self.add("a@example.com", raw=raw)
        self.assertEqual(await self.store.getRaw(copy), raw)

    async def test_getBodies(self) -> None:
        """
        The bodies, headers and part tree parsed at ingest are returned,
        and the stored tree is the parser's.
        """
        raw = (
            b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
            b"Content-Type: multipart/alternative; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nplain https://example.com/x\r\n"
            b"--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b--\r\n"
        )
        (copy,) = await self.add("a@example.com", raw=raw)
        bodies = await self.store.getBodies(copy)
        self.assertEqual(bodies.text, "plain https://example.com/x")
        self.assertEqual(bodies.html, "<p>html</p>")
        self.assertEqual(bodies.headers[0], ("Subject", "caf\u00e9"))
        self.assertEqual(Part.fromJSON(bodies.structure), parseMessage(raw).structure)
        self.assertEqual(copy.message.links, ("https://example.com/x",))
        self.assertEqual(copy.message.subject, "caf\u00e9")

    async def test_capturePrivateStarsEveryCopy(self) -> None:
        """
        With C{capturePrivate} on, every copy of what the account sends is
        starred by it, durably; without it, copies are unstarred.
        """
        await self.store.createAccount("alice")
        (plain,) = await self.add("x@example.com", account="alice")
        self.assertIsNone(plain.savedBy)
        await self.store.setAccountSettings("alice", capturePrivate=True)
        copies = await self.add("x@example.com", "y@example.com", account="alice")
        self.assertEqual([c.savedBy for c in copies], ["alice", "alice"])
        for copy in copies:
            self.assertEqual((await self.store.getCopy(copy.id)).savedBy, "alice")
        (anonymous,) = await self.add("x@example.com")
        self.assertIsNone(anonymous.savedBy)

    async def test_unknownSendingAccountRefused(self) -> None:
        """
        A message claimed by an account that does not exist is refused and
        leaves nothing behind.
        """
        await self.assertFails(NotFound, deliver(self.store,
            envelope("x@example.com", account="ghost"), message()))
        self.assertEqual(self.count("messages"), 0)
        self.assertEqual(self.count("copies"), 0)

    async def test_usageCounter(self) -> None:
        """
        Each message counts one op for the sending account in the month it
        was received (UTC), whatever its number of recipients; anonymous
        mail counts for nobody.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        november = 1700000000000  # 2023-11-14
        december = 1701475200000  # 2023-12-02
        await self.add("x@example.com", "y@example.com", account="alice", received=november)
        await self.add("x@example.com", account="alice", received=november)
        await self.add("x@example.com", account="alice", received=december)
        await self.add("x@example.com", received=november)
        self.assertEqual(await self.store.usage("alice", "2023-11"), 2)
        self.assertEqual(await self.store.usage("alice", "2023-12"), 1)
        self.assertEqual(await self.store.usage("alice", "2024-01"), 0)
        self.assertEqual(await self.store.usage("bob", "2023-11"), 0)

    async def test_listInboxNewestFirstAndPaging(self) -> None:
        """
        A listing is newest first, bounded by C{limit}; paging with
        C{beforeUid} walks every copy exactly once; other inboxes and case
        differences do not matter.
        """
        uids = []
        for i in range(7):
            (copy,) = await self.add("Pager@Example.com", raw=message(f"m{i}"))
            uids.append(copy.uid)
            await self.add("other@example.com")
        first = await self.store.listInbox("pager@example.com", EVERYTHING, limit=3)
        self.assertEqual([c.uid for c in first], uids[::-1][:3])
        self.assertEqual([c.message.subject for c in first], ["m6", "m5", "m4"])
        seen: list[int] = []
        before = None
        while True:
            page = await self.store.listInbox("PAGER@example.com", EVERYTHING, limit=3,
                                              beforeUid=before)
            if not page:
                break
            seen.extend(c.uid for c in page)
            before = page[-1].uid
        self.assertEqual(seen, uids[::-1])
        self.assertEqual(await self.store.countInbox("pager@example.com", EVERYTHING), 7)
        self.assertEqual(await self.store.listInbox("nobody@example.com", EVERYTHING), [])

    async def test_accountAndOwner(self) -> None:
        """
        One read gives a key's account (L{None} for a wrong or revoked key)
        and an inbox's owner, as L{accountForKey} and L{inboxOwner} do.
        """
        _, key = await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "mine@example.com")
        self.assertEqual(await self.store.accountAndOwner(key, "Mine@Example.com"),
                         ("alice", InboxOwner("alice")))
        self.assertEqual(await self.store.accountAndOwner(key, "pub@example.com"),
                         ("alice", PUBLIC))
        self.assertEqual(await self.store.accountAndOwner(key + "x", "mine@example.com"),
                         (None, InboxOwner("alice")))
        await self.store.revokeKey("alice", key)
        self.assertEqual(await self.store.accountAndOwner(key, "pub@example.com"),
                         (None, PUBLIC))

    async def assertListingIsMessageJSON(self, inbox: str) -> None:
        """
        C{listInboxJSON} of C{inbox} is, copy for copy and byte for byte,
        what L{messageJSON} makes of L{listInbox}'s copies (encoded as the
        API encodes one message), to every viewer, with and without
        C{limit} and C{until}.
        """
        listed = await self.store.listInbox(inbox, EVERYTHING)
        until = listed[len(listed) // 2].message.received if listed else None
        viewers = [EVERYTHING, ANONYMOUS]
        viewers += [Visibility(everything=False, starredBy=c.savedBy)
                    for c in listed if c.savedBy is not None]
        for visible in viewers:
            for kwargs in ({}, {"limit": 2}, {"until": until}):
                listed = await self.store.listInbox(inbox, visible, **kwargs)
                data = await self.store.listInboxJSON(inbox, visible, **kwargs)
                self.assertIsInstance(data, bytes)
                self.assertEqual(json.loads(data), [messageJSON(c) for c in listed])
                self.assertEqual(data, _API_JSON([messageJSON(c) for c in listed]).encode())

    async def test_listingJSONIsMessageJSON(self) -> None:
        """
        The JSON listing joined from stored texts is, copy for copy and
        byte for byte, what L{messageJSON} makes of L{listInbox}'s copies
        (L{assertListingIsMessageJSON}): across names with quotes and
        non-ASCII, encoded words, control characters, attachments, links,
        plus-addressed recipients, labels, read states, folders, starred
        copies and a message with no headers.
        """
        inbox = "json@example.com"
        raws = [
            message(),
            b'From: "Ann \\"Q\\" O\'Neil" <ann@example.net>, =?utf-8?q?J=C3=BCrgen?= <j@x.de>\r\n'
            b"To: json@example.com, \"Z\xc3\xa9\" <z@example.org>\r\nCc: c@example.com\r\n"
            b"Subject: tab\there \x01 \xe2\x98\x83 =?utf-8?b?4piD?=\r\n\r\nhttps://example.com/a?b=1\r\n",
            b"no headers at all\r\n",
            b"Subject: att\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/plain\r\n\r\nsee http://x.example/y\r\n--b\r\n"
            b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nQUJD\r\n--b--\r\n",
        ]
        copies = [(await self.add(inbox, raw=raw, received=nowMillis() - 1000 * i))[0]
                  for i, raw in enumerate(raws)]
        await self.add((inbox, "JSON+tag\"\u00e9@Example.COM"))
        await self.store.setCopyState(copies[0], read=True, labels=("a\"b", "\u00e9"))
        await self.store.setCopyState(copies[1], read=False, folder="spam")
        await self.store.setStarred(copies[2], "alice")
        await self.assertListingIsMessageJSON(inbox)
        self.assertEqual(await self.store.listInboxJSON("none@example.com", EVERYTHING), b"[]")

    async def test_listingFollowsEveryChange(self) -> None:
        """
        Every write that changes a field a listing shows (read, labels,
        folder, savedBy) makes the copy's stored listing text again in its
        own transaction: after each one, on its own copy, the listing is
        still L{messageJSON} of the copies as they are now.
        """
        inbox = "changes@example.com"
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.setAccountSettings("bob", capturePrivate=True)
        copies = [(await self.add(inbox))[0] for _ in range(11)]
        # Ingest by an account that keeps its mail: saved by it at once.
        (private,) = await self.add(inbox, account="bob")
        check = self.assertListingIsMessageJSON
        await check(inbox)
        await self.store.setCopyState(copies[0], read=True)
        await check(inbox)
        await self.store.setCopyState(copies[0], read=False)
        await check(inbox)
        await self.store.setCopyState(copies[1], labels=("x", "y\u00e9"))
        await check(inbox)
        await self.store.setCopyState(copies[2], folder="trash")
        await check(inbox)
        await self.store.setStarred(copies[3], "alice")
        await check(inbox)
        await self.store.setStarred(copies[3], None)
        await check(inbox)
        # IMAP STORE: \Seen is read, keywords are labels.
        await self.store.setFlags([FlagState(copies[4].uid, True, False, False, False, ())])
        await check(inbox)
        await self.store.setFlags([FlagState(copies[4].uid, False, True, True, True, ())])
        await check(inbox)
        await self.store.setFlags([FlagState(copies[5].uid, False, False, False, False,
                                             ("$Work", "k"))])
        await check(inbox)
        # An account's deletion takes its stars off the copies it leaves.
        await self.store.setStarred(copies[6], "alice")
        await self.store.deleteAccount("alice")
        self.assertIsNone((await self.store.getCopy(copies[6].id)).savedBy)
        await check(inbox)
        await self.store.deleteAccount("bob")
        self.assertIsNone((await self.store.getCopy(private.id)).savedBy)
        await check(inbox)

    async def test_listingWithSeparatorsInNames(self) -> None:
        """
        Names holding control characters (an inbox, a starring account;
        once the separators of the listing's one aggregated row) list
        exactly, escaped as L{messageJSON} shows them.
        """
        inbox = "a\x1fb\x1e@example.com"
        await self.store.createAccount("s\x1ft")
        copies = [(await self.add(inbox))[0] for _ in range(2)]
        await self.store.setStarred(copies[0], "s\x1ft")
        listed = await self.store.listInbox(inbox, EVERYTHING)
        data = await self.store.listInboxJSON(inbox, EVERYTHING)
        self.assertEqual(data, _API_JSON([messageJSON(c) for c in listed]).encode())
        self.assertEqual(json.loads(data)[1]["savedBy"], "s\x1ft")

    async def test_listInboxVisibility(self) -> None:
        """
        The visibility filter hides copies starred by another account, shows
        the viewer's own starred copies and unstarred ones, and
        C{everything} shows all; counts agree with listings.
        """
        (plain,) = await self.add("pub@example.com")
        (byBob,) = await self.add("pub@example.com")
        (byAlice,) = await self.add("pub@example.com")
        await self.store.setStarred(byBob, "bob")
        await self.store.setStarred(byAlice, "alice")
        cases = {
            Visibility(everything=False, starredBy="alice"): [byAlice.uid, plain.uid],
            Visibility(everything=False, starredBy="bob"): [byBob.uid, plain.uid],
            ANONYMOUS: [plain.uid],
            EVERYTHING: [byAlice.uid, byBob.uid, plain.uid],
        }
        for vis, expected in cases.items():
            listed = await self.store.listInbox("pub@example.com", vis)
            self.assertEqual([c.uid for c in listed], expected, vis)
            self.assertEqual(await self.store.countInbox("pub@example.com", vis),
                             len(expected), vis)

    async def test_setStarred(self) -> None:
        """
        Starring records the account, unstarring with L{None} clears it,
        and both persist; a deleted copy cannot be starred.
        """
        (copy,) = await self.add("a@example.com")
        starred = await self.store.setStarred(copy, "alice")
        self.assertEqual(starred.savedBy, "alice")
        self.assertEqual((await self.store.getCopy(copy.id)).savedBy, "alice")
        unstarred = await self.store.setStarred(copy, None)
        self.assertIsNone(unstarred.savedBy)
        self.assertIsNone((await self.store.getCopy(copy.id)).savedBy)
        await self.store.deleteCopy(copy)
        await self.assertFails(NotFound, self.store.setStarred(copy, "alice"))

    async def test_deleteCopyKeepsSharedMessage(self) -> None:
        """
        Deleting one copy keeps the message while another copy remains;
        deleting the last one removes the message and its raw bytes.
        """
        first, second = await self.add("a@example.com", "b@example.com")
        await self.store.deleteCopy(first)
        await self.assertFails(NotFound, self.store.getCopy(first.id))
        self.assertEqual(await self.store.getRaw(second), message())
        self.assertEqual(self.count("messages"), 1)
        await self.store.deleteCopy(second)
        await self.assertFails(NotFound, self.store.getCopy(second.id))
        await self.assertFails(NotFound, self.store.getRaw(second))
        await self.assertFails(NotFound, self.store.getBodies(second))
        await self.assertFails(NotFound, self.store.deleteCopy(second))
        for table in ("messages", "message_raw", "message_bodies", "copies"):
            self.assertEqual(self.count(table), 0, table)

    async def test_subscribersSeeCommittedCopies(self) -> None:
        """
        Subscribers get each committed message's new copies once; after
        unsubscribing they get nothing.
        """
        seen: list[list[Copy]] = []
        unsubscribe = listen(self.events, "new", seen.append)
        copies = await self.add("a@example.com", "b@example.com")
        # Subscribers are called right after the writer's callers.
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(seen, [copies])
        unsubscribe()
        await self.add("a@example.com")
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(len(seen), 1)

    async def test_setCopyState(self) -> None:
        """
        A copy's read flag, labels and folder change one at a time, L{None}
        leaving the others, and are read back; a deleted copy cannot be
        changed.
        """
        (copy,) = await self.add("a@example.com")
        changed = await self.store.setCopyState(copy, read=True)
        self.assertEqual((changed.read, changed.labels, changed.folder),
                         (True, (), copy.folder))
        changed = await self.store.setCopyState(copy, labels=("x", "y"), folder="spam")
        self.assertEqual((changed.read, changed.labels, changed.folder), (True, ("x", "y"), "spam"))
        changed = await self.store.setCopyState(copy, read=False)
        self.assertEqual((changed.read, changed.labels, changed.folder),
                         (False, ("x", "y"), "spam"))
        self.assertEqual(await self.store.getCopy(copy.id), changed)
        await self.store.deleteCopy(copy)
        await self.assertFails(NotFound, self.store.setCopyState(copy, read=True))

    async def test_listMailboxAndEntryRaw(self) -> None:
        """
        A POP3 mailbox lists an inbox's copies oldest first as the
        visibility allows; each entry's raw bytes are read when asked, and
        are not found once the message is gone.
        """
        first = (await self.add("Box@example.com", raw=message("one")))[0]
        second = (await self.add("box@example.com", raw=message("two")))[0]
        hidden = (await self.add("box@example.com", raw=message("three")))[0]
        await self.store.setStarred(hidden, "bob")
        entries = await self.store.listMailbox("BOX@example.com", ANONYMOUS)
        self.assertEqual([(e.uid, e.copyId, e.size) for e in entries],
                         [(first.uid, first.id, first.message.size),
                          (second.uid, second.id, second.message.size)])
        self.assertEqual(await self.store.getEntryRaw(entries[1]), message("two"))
        self.assertEqual([e.uid for e in await self.store.listMailbox("box@example.com",
                                                                        EVERYTHING)],
                         [first.uid, second.uid, hidden.uid])
        await self.store.deleteCopy(first)
        await self.assertFails(NotFound, self.store.getEntryRaw(entries[0]))

    async def test_listInboxUntil(self) -> None:
        """
        C{until} lists only the copies received at or before it.
        """
        now = nowMillis()
        old = (await self.add("t@example.com", received=now - 2 * DAY))[0]
        middle = (await self.add("t@example.com", received=now - DAY))[0]
        await self.add("t@example.com", received=now)
        listed = await self.store.listInbox("t@example.com", EVERYTHING, until=now - DAY)
        self.assertEqual([c.uid for c in listed], [middle.uid, old.uid])

    async def test_purgeInboxKeepsStarred(self) -> None:
        """
        Purging an inbox deletes its unstarred copies only, says how many
        went, leaves other inboxes alone and reports what it removed.
        """
        plain = await self.add("p@example.com", "other@example.com")
        (starred,) = await self.add("p@example.com")
        await self.store.setStarred(starred, "alice")
        heard: list[list[RemovedCopy]] = []
        stop = listen(self.events, "removed", heard.append)
        self.assertEqual(await self.store.purgeInbox("P@example.com"), 1)
        stop()
        self.assertEqual(heard, [[RemovedCopy.of(plain[0])]])
        self.assertEqual([c.uid for c in await self.store.listInbox("p@example.com", EVERYTHING)],
                         [starred.uid])
        self.assertEqual((await self.store.getCopy(plain[1].id)).uid, plain[1].uid)
        self.assertEqual(await self.store.purgeInbox("p@example.com"), 0)
        self.assertConsistent()

    async def test_domainListingAndPurge(self) -> None:
        """
        A domain's listing and count, as its owner sees them, leave out the
        inbox another account reserved inside it; its purge deletes the
        unstarred rest, says how many went and reports them.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.addDomain("alice", "corp.test")
        await self.store.reserveAddress("bob", "bob@corp.test")
        x1 = (await self.add("x@corp.test"))[0]
        (bobs,) = await self.add("bob@corp.test")
        (starred,) = await self.add("y@corp.test")
        await self.store.setStarred(starred, "alice")
        x2 = (await self.add("X@corp.test"))[0]
        await self.add("x@other.test")
        listed = await self.store.listDomain("Corp.test", "alice", EVERYTHING)
        self.assertEqual([c.uid for c in listed], [x2.uid, starred.uid, x1.uid])
        self.assertEqual([c.uid for c in await self.store.listDomain(
            "corp.test", "alice", EVERYTHING, limit=1)], [x2.uid])
        self.assertEqual(await self.store.countDomain("corp.test", "alice", EVERYTHING), 3)
        heard: list[list[RemovedCopy]] = []
        stop = listen(self.events, "removed", heard.append)
        self.assertEqual(await self.store.purgeDomain("corp.test", "alice"), 2)
        stop()
        self.assertEqual(sorted(r.uid for batch in heard for r in batch), [x1.uid, x2.uid])
        self.assertEqual([c.uid for c in await self.store.listDomain(
            "corp.test", "alice", EVERYTHING)], [starred.uid])
        self.assertEqual((await self.store.getCopy(bobs.id)).inbox, "bob@corp.test")
        self.assertConsistent()

    async def test_accountStatsAndStarred(self) -> None:
        """
        An account's stats count its owned mail and what it starred
        (with their size), and name the inboxes of its starred copies it
        does not own; its starred copies are listed newest first, only its
        own, bounded by C{limit}.
        """
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "own@example.com")
        (owned,) = await self.add("own@example.com")
        starred = [(await self.add(f"pub{i}@example.com"))[0] for i in range(3)]
        for copy in starred:
            await self.store.setStarred(copy, "alice")
        (others,) = await self.add("pub0@example.com")
        await self.store.setStarred(others, "bob")
        stats = await self.store.accountStats("alice")
        self.assertEqual(stats, AccountStats(
            starredMessages=3, storedMessages=4,
            inboxBytes=owned.message.size + sum(c.message.size for c in starred),
            nonOwnedInboxes=("pub0@example.com", "pub1@example.com", "pub2@example.com"),
        ))
        self.assertEqual([c.uid for c in await self.store.listStarred("alice")],
                         [c.uid for c in starred[::-1]])
        self.assertEqual([c.uid for c in await self.store.listStarred("alice", limit=2)],
                         [starred[2].uid, starred[1].uid])
        self.assertEqual(await self.store.listStarred("carol"), [])


class MailboxTests(StoreCase):
    """
    The reads and writes IMAP and POP3 use: mailboxes, FETCH data, flags.
    """

    async def test_mailboxFlagsByInboxAscending(self) -> None:
        """
        An inbox's mailbox lists its copies by ascending uid, with the
        flags the API's facts give, and hides others' starred copies from
        a viewer who may not read them.
        """
        first = (await self.add("box@example.com"))[0]
        second = (await self.add("box@example.com"))[0]
        await self.store.createAccount("alice")
        await self.store.setStarred(second, "alice")
        await self.store.setCopyState(first, read=True, labels=("work",))
        everything = await self.store.mailboxFlags(MailboxQuery("box@example.com", EVERYTHING))
        self.assertEqual(everything, [
            FlagState(first.uid, True, False, False, False, ("work",)),
            FlagState(second.uid, False, False, False, False, ()),
        ])
        anonymous = await self.store.mailboxFlags(MailboxQuery("box@example.com", ANONYMOUS))
        self.assertEqual([s.uid for s in anonymous], [first.uid])

    async def test_mailboxFlagsSentByOneCopyPerMessage(self) -> None:
        """
        The sent-mail mailbox holds one copy of each message the account
        sent, whatever the number of recipients.
        """
        await self.store.createAccount("alice")
        copies = await self.add("a@example.com", "b@example.com", account="alice")
        await self.add("c@example.com", account=None)
        listed = await self.store.mailboxFlags(MailboxQuery(None, sentBy="alice"))
        self.assertEqual([s.uid for s in listed], [copies[0].uid])
        self.assertEqual([e.uid for e in await self.store.listSent("alice")], [copies[0].uid])

    async def test_mailboxFlagsSentByOnlyWhatTheSenderMayRead(self) -> None:
        """
        Mail the account sent only to another account's inbox is not in
        its sent-mail mailbox: the access rule keeps it out.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.reserveAddress("bob", "bob@example.com")
        await self.store.addDomain("bob", "bob.example")
        await self.add("bob@example.com", account="alice")
        await self.add("x@bob.example", account="alice")
        mixed = await self.add("bob@example.com", "pub@example.com", account="alice")
        listed = await self.store.mailboxFlags(MailboxQuery(None, sentBy="alice"))
        self.assertEqual([s.uid for s in listed], [mixed[1].uid])
        # POP3's view of the same mailbox is the same copies.
        self.assertEqual([e.uid for e in await self.store.listSent("alice")], [mixed[1].uid])

    async def test_fetchMessagesReadsStoredIMAPText(self) -> None:
        """
        FETCH data comes from what ingest stored: the ENVELOPE and
        BODYSTRUCTURE texts, the header block cut at the stored size, the
        raw bytes and the part tree.
        """
        raw = message("fetch me")
        copy = (await self.add("box@example.com", raw=raw))[0]
        fetched = (await self.store.fetchMessages(
            [copy.uid, 999999], envelope=True, structure=True, raw=True, part=True
        ))
        self.assertEqual(list(fetched), [copy.uid])
        one = fetched[copy.uid]
        self.assertEqual(one.raw, raw)
        self.assertEqual(one.size, len(raw))
        self.assertEqual(one.headerSize, raw.index(b"\r\n\r\n") + 4)
        self.assertIn('"fetch me"', one.envelope or "")
        self.assertTrue((one.structure or "").startswith('("text" "plain"'))
        self.assertEqual(one.part, parseMessage(raw).structure)
        header = (await self.store.fetchMessages([copy.uid], raw=True, headersOnly=True))
        self.assertEqual(header[copy.uid].raw, raw[: one.headerSize])

    async def test_fetchMetadataReadsOnlyTheUidsAsked(self) -> None:
        """
        Metadata rows come ascending for exactly the uids asked, whether
        read as one range of uids (a dense set: the other inbox's copies
        in that range are left out) or by IN lists (a sparse set); flags
        as bits, labels as JSON, IMAP texts as the bytes stored; the full
        read (fetchMessages) of a dense set leaves the same copies out.
        """
        raw = message("meta")
        pairs = [await self.add("a@example.com", "b@example.com", raw=raw) for _ in range(70)]
        mine = [pair[0].uid for pair in pairs]
        await self.store.setFlags([FlagState(mine[1], True, False, True, False, ("x",)),
                                   FlagState(mine[2], False, True, False, True, ())])
        rows = await self.store.fetchMetadata(mine, envelope=True, structure=True)
        self.assertEqual([r[0] for r in rows], mine)
        fetched = await self.store.fetchMessages(mine, envelope=True, structure=True)
        self.assertEqual(sorted(fetched), mine)
        self.assertEqual(rows[0], (mine[0], 0, "[]", len(raw), fetched[mine[0]].received,
                                   (fetched[mine[0]].envelope or "").encode("ascii"),
                                   (fetched[mine[0]].structure or "").encode("ascii")))
        self.assertEqual(rows[1][1:3], (1 | 4, '["x"]'))
        self.assertEqual(rows[2][1:3], (2 | 8, "[]"))
        sparse = await self.store.fetchMetadata([mine[0], mine[-1], 999999])
        self.assertEqual([(r[0], r[5], r[6]) for r in sparse],
                         [(mine[0], None, None), (mine[-1], None, None)])

    async def test_setFlagsIsWhatTheAPIShows(self) -> None:
        """
        Flags written for IMAP are the copy's read flag and labels.
        """
        copy = (await self.add("box@example.com"))[0]
        await self.store.setFlags([FlagState(copy.uid, True, True, True, True, ("x", "y"))])
        again = await self.store.getCopy(copy.id)
        self.assertEqual(
            (again.read, again.deleted, again.answered, again.flagged, again.labels),
            (True, True, True, True, ("x", "y")),
        )

    async def test_deleteCopiesReportsWhatWent(self) -> None:
        """
        Deleting several copies reports those that existed.
        """
        copies = await self.add("a@example.com", "b@example.com")
        gone = await self.store.deleteCopies([copies[0].uid, 424242])
        self.assertEqual(gone, [copies[0].uid])
        left = await self.store.mailboxFlags(MailboxQuery("a@example.com", EVERYTHING))
        self.assertEqual(left, [])

    async def test_searchMessagesRunsTheMatcher(self) -> None:
        """
        A search tests each copy with the caller's matcher, with the
        bodies when asked, and answers the matching uids ascending.
        """
        one = (await self.add("box@example.com", raw=message("one", b"apple\r\n")))[0]
        two = (await self.add("box@example.com", raw=message("two", b"pear\r\n")))[0]
        found = await self.store.searchMessages(
            [two.uid, one.uid], lambda state, m, text, html: "pear" in (text or ""), bodies=True
        )
        self.assertEqual(found, [two.uid])
        found = await self.store.searchMessages(
            [one.uid, two.uid], lambda state, m, text, html: b"Subject: one" in (m.raw or b"")
        )
        self.assertEqual(found, [one.uid])

    async def test_searchInbox(self) -> None:
        """
        An inbox search finds copies with every word in the subject,
        sender, recipients or text body, newest first, only in that inbox
        and as the visibility allows; LIKE wildcards are plain characters;
        paging by the returned cursor misses nothing; and a search examines
        at most C{scan} copies, giving the cursor to go on from.
        """
        box = "search@example.com"
        one = (await self.add(box, raw=message("Invoice 42", b"pay now\r\n")))[0]
        two = (await self.add(box, raw=message("Hello", b"invoice attached\r\n")))[0]
        three = (await self.add(box, raw=message("50% off_sale", b"deal\r\n")))[0]
        await self.add("other@example.com", raw=message("Invoice 43"))
        starred = (await self.add(box, raw=message("Invoice secret")))[0]
        await self.store.setStarred(starred, "someone")

        async def ids(*words: str, **kwargs: Any) -> tuple[list[str], int | None]:
            copies, cursor = await self.store.searchInbox(box, ANONYMOUS, list(words), **kwargs)
            return [c.id for c in copies], cursor

        self.assertEqual(await ids("invoice"), ([two.id, one.id], None))
        self.assertEqual(await ids("INVOICE", "pay"), ([one.id], None))
        self.assertEqual(await ids("sender@example"), ([three.id, two.id, one.id], None))
        self.assertEqual(await ids("rcpt@example.org", "deal"), ([three.id], None))
        self.assertEqual(await ids("%"), ([three.id], None))
        self.assertEqual(await ids("f_s"), ([three.id], None))
        self.assertEqual(await ids("nothing"), ([], None))
        everything, _ = await self.store.searchInbox(box, EVERYTHING, ["secret"])
        self.assertEqual([c.id for c in everything], [starred.id])
        # A page of one, then the next from its cursor.
        self.assertEqual(await ids("invoice", limit=1), ([two.id], two.uid))
        self.assertEqual(await ids("invoice", limit=1, beforeUid=two.uid), ([one.id], None))
        # A window of two copies (starred one hidden: three, two) stops
        # there and says where to go on.
        self.assertEqual(await ids("invoice", scan=2), ([two.id], two.uid))
        self.assertEqual(await ids("invoice", scan=2, beforeUid=two.uid), ([one.id], None))

    async def test_nextUidNeverGoesBack(self) -> None:
        """
        nextUid is above every uid given, and stays so after the newest
        copy is deleted.
        """
        self.assertEqual(await self.store.nextUid(), 1)
        copies = await self.add("a@example.com", "b@example.com")
        self.assertEqual(await self.store.nextUid(), copies[-1].uid + 1)
        await self.store.deleteCopies([copies[-1].uid])
        self.assertEqual(await self.store.nextUid(), copies[-1].uid + 1)

    async def test_deletionsArePublished(self) -> None:
        """
        Subscribers of RemovedCopies hear what deleteCopy, deleteCopies
        and purgeInbox removed (uid, copy id, inbox, starrer), after the
        commit; uids that were not there are not reported.
        """
        heard: list[list[RemovedCopy]] = []
        unsubscribe = listen(self.events, "removed", heard.append)
        copies = await self.add("a@example.com", "b@example.com", "c@example.com")
        await self.store.deleteCopy(copies[0])
        self.assertEqual(await self.store.deleteCopies([copies[1].uid, 999999]), [copies[1].uid])
        self.assertEqual(await self.store.purgeInbox("c@example.com"), 1)
        unsubscribe()
        await self.store.purgeInbox("a@example.com")
        self.assertEqual(heard, [[RemovedCopy.of(c)] for c in copies])
        self.assertEqual(
            heard[2], [RemovedCopy(copies[2].uid, copies[2].id, "c@example.com", None)]
        )

    async def test_changesArePublished(self) -> None:
        """
        Every writer of a copy's state publishes its new state after the
        commit, with what routes it (uid, copy id, inbox, starrer, sending
        account): setFlags (IMAP flags and keywords), setCopyState (read,
        labels, folder), setStarred, and the stars deleteAccount drops.
        """
        await self.store.createAccount("alice")
        heard: list[list[ChangedCopy]] = []
        unsubscribe = listen(self.events, "changed", heard.append)
        first, second = await self.add("a@example.com", "b@example.com", account="alice")
        await self.store.setFlags([FlagState(first.uid, True, False, True, False, ("$Work",))])
        await self.store.setCopyState(second, read=True, labels=("x",), folder="spam")
        starred = await self.store.setStarred(second, "alice")
        await self.store.deleteAccount("alice")
        unsubscribe()
        await self.store.setCopyState(first, read=False)

        def changed(copy: Copy, **state: Any) -> ChangedCopy:
            base = ChangedCopy(copy.uid, copy.id, copy.inbox, None, "alice", False, False,
                               False, False, (), "inbox")
            return attrs.evolve(base, **state)

        self.assertEqual(heard, [
            [changed(first, read=True, answered=True, labels=("$Work",))],
            [changed(second, read=True, labels=("x",), folder="spam")],
            [changed(second, savedBy="alice", read=True, labels=("x",), folder="spam")],
            [changed(second, read=True, labels=("x",), folder="spam")],
        ])
        self.assertEqual(heard[2][0], ChangedCopy.of(starred))
        self.assertEqual(heard[0][0].flags,
                         FlagState(first.uid, True, False, True, False, ("$Work",)))

    async def test_readerInboxes(self) -> None:
        """
        An account's folders: its owned addresses, and the addresses of its
        private domains that have mail, except those another account
        reserved.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.reserveAddress("alice", "mine@example.com")
        await self.store.addDomain("alice", "alice.example")
        await self.store.reserveAddress("bob", "bob@alice.example")
        await self.add("x@alice.example", "bob@alice.example", "other@example.com")
        self.assertEqual(
            await self.store.readerInboxes("alice"), ["mine@example.com", "x@alice.example"]
        )

    async def test_setFlagsShownByMailboxFlags(self) -> None:
        """
        Flags written in one batch are what the mailbox then lists, copy
        by copy; a uid deleted meanwhile is passed over.
        """
        one, two = (await self.add("f@example.com"))[0], (await self.add("f@example.com"))[0]
        states = [FlagState(one.uid, True, True, False, False, ("a",)),
                  FlagState(two.uid, False, False, True, True, ("b", "c"))]
        await self.store.setFlags([*states, FlagState(999999, True, True, True, True, ())])
        self.assertEqual(
            await self.store.mailboxFlags(MailboxQuery("f@example.com", EVERYTHING)), states)

    async def test_fetchLeavesOutDeletedCopies(self) -> None:
        """
        FETCH reads leave out a copy deleted before the read, whatever else
        they are asked for.
        """
        kept, gone = await self.add("a@example.com", "b@example.com")
        await self.store.deleteCopy(gone)
        uids = [kept.uid, gone.uid]
        self.assertEqual(list(await self.store.fetchMessages(uids, raw=True)), [kept.uid])
        self.assertEqual([r[0] for r in await self.store.fetchMetadata(uids)], [kept.uid])
        self.assertEqual(await self.store.searchMessages(uids, lambda *args: True), [kept.uid])

    async def test_searchMessagesSeesFlags(self) -> None:
        """
        A search's matcher gets each copy's flags as the mailbox has them.
        """
        one, two = (await self.add("s@example.com"))[0], (await self.add("s@example.com"))[0]
        await self.store.setFlags([FlagState(two.uid, False, False, False, True, ("k",))])
        found = await self.store.searchMessages(
            [one.uid, two.uid], lambda state, m, text, html: state.flagged and "k" in state.labels)
        self.assertEqual(found, [two.uid])

    async def test_readerInboxesFollowOwnership(self) -> None:
        """
        A released address leaves the account's folders, and so do the
        addresses of a domain made public.
        """
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "mine@example.com")
        await self.store.addDomain("alice", "alice.example")
        await self.add("x@alice.example")
        self.assertEqual(await self.store.readerInboxes("alice"),
                         ["mine@example.com", "x@alice.example"])
        await self.store.releaseAddress("alice", "mine@example.com")
        await self.store.setDomainPrivacy("alice", "alice.example", False)
        self.assertEqual(await self.store.readerInboxes("alice"), [])

    async def test_listSentOldestFirst(self) -> None:
        """
        The sent mailbox lists each message the account sent once, oldest
        first, with its size, and another account's mail not at all.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        first = await self.add("a@example.com", "b@example.com", account="alice",
                               raw=message("first"))
        await self.add("a@example.com", account="bob")
        (second,) = await self.add("c@example.com", account="alice", raw=message("second"))
        entries = await self.store.listSent("alice")
        self.assertEqual([(e.uid, e.copyId, e.size) for e in entries],
                         [(first[0].uid, first[0].id, len(message("first"))),
                          (second.uid, second.id, len(message("second")))])
        self.assertEqual(await self.store.getEntryRaw(entries[1]), message("second"))


class PersistenceTests(StoreCase):
    """
    Schema migrations and what survives a restart.
    """

    async def test_restartKeepsDataAndUids(self) -> None:
        """
        After a restart the UIDVALIDITY and the data are the same, and the
        next uid is higher than every uid given before, even after the
        highest copy was deleted (uids are never reused).
        """
        await self.store.createAccount("alice")
        copies = [(await self.add("a@example.com"))[0] for _ in range(3)]
        await self.store.deleteCopy(copies[-1])
        validity = self.store.uidValidity
        await self.restart()
        self.assertEqual(self.store.uidValidity, validity)
        self.assertEqual((await self.store.getCopy(copies[0].id)).uid, copies[0].uid)
        self.assertEqual([a.name for a in await self.store.listAccounts()], ["alice"])
        (new,) = await self.add("a@example.com")
        self.assertGreater(new.uid, copies[-1].uid)
        await self.restart()
        (newer,) = await self.add("b@example.com")
        self.assertGreater(newer.uid, new.uid)
        self.assertEqual(self.store.uidValidity, validity)

    async def test_opsCountedAndWrittenAtStop(self) -> None:
        """
        Ops counted in memory show in usage at once and are written by the
        time the store stops: after a restart they are still there.
        """
        await self.store.createAccount("alice")
        month = time.strftime("%Y-%m", time.gmtime())
        for _ in range(3):
            self.store.countOp("alice")
        self.assertEqual(await self.store.usage("alice", month), 3)
        await self.restart()
        self.assertEqual(await self.store.usage("alice", month), 3)


class RetentionTests(StoreCase):
    """
    Recycling by public inbox size and age and by account limits.
    """

    async def _inbox(self, inbox: str) -> list[int]:
        return [c.uid for c in await self.store.listInbox(inbox, EVERYTHING, limit=1000)]

    async def test_publicInboxLimit(self) -> None:
        """
        Each public inbox keeps its newest N unstarred copies, plus any
        starred ones; owned inboxes are not limited; inboxes added to later
        are limited on the next pass.
        """
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "owned@example.com")
        public = [(await self.add("pub@example.com"))[0] for _ in range(5)]
        owned = [(await self.add("owned@example.com"))[0] for _ in range(5)]
        await self.store.setStarred(public[0], "bob")
        retention = Retention(publicInboxLimit=2, publicMaxAge=0, messageLimit=0)
        removed = await self.store.enforceRetention(retention, nowMillis())
        self.assertEqual(removed, 2)
        self.assertEqual(await self._inbox("pub@example.com"),
                         [public[4].uid, public[3].uid, public[0].uid])
        self.assertEqual(await self._inbox("owned@example.com"), [c.uid for c in owned[::-1]])
        later = [(await self.add("pub@example.com"))[0] for _ in range(3)]
        removed = await self.store.enforceRetention(retention, nowMillis())
        self.assertEqual(removed, 3)
        self.assertEqual(await self._inbox("pub@example.com"),
                         [later[2].uid, later[1].uid, public[0].uid])
        self.assertConsistent()

    async def test_retentionIsPublished(self) -> None:
        """
        Copies retention recycles (over a public inbox's limit, too old,
        over an account's message limit) are announced as RemovedCopies
        like any other deletion, so IMAP sessions and open pages drop them.
        """
        await self.store.createAccount("alice")
        await self.store.setAccountSettings("alice", messageLimit=1)
        await self.store.reserveAddress("alice", "owned@example.com")
        public = [(await self.add("pub@example.com"))[0] for _ in range(3)]
        owned = [(await self.add("owned@example.com"))[0] for _ in range(2)]
        heard: list[list[RemovedCopy]] = []
        unsubscribe = listen(self.events, "removed", heard.append)
        retention = Retention(publicInboxLimit=2, publicMaxAge=0, messageLimit=0)
        removed = await self.store.enforceRetention(retention, nowMillis())
        unsubscribe()
        self.assertEqual(removed, 2)
        self.assertEqual(len(heard), 1)
        self.assertEqual(
            sorted(heard[0], key=lambda r: r.uid),
            [RemovedCopy.of(public[0]), RemovedCopy.of(owned[0])],
        )
        self.assertEqual(await self.store.enforceRetention(retention, nowMillis()), 0)
        self.assertEqual(len(heard), 1)

    async def test_publicMaxAge(self) -> None:
        """
        Public mail older than the limit is removed, in public inboxes and
        public custom domains; starred mail, owned addresses and private
        domains keep theirs, as does newer public mail.
        """
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "owned@example.com")
        await self.store.addDomain("alice", "private.test")
        await self.store.addDomain("alice", "open.test", isPrivate=False)
        now = nowMillis()
        old = now - 10 * DAY
        oldPublic, oldOpen = await self.add("pub@example.com", "x@open.test", received=old)
        (oldStarred,) = await self.add("pub@example.com", received=old)
        await self.store.setStarred(oldStarred, "alice")
        oldOwned, oldPrivate = await self.add("owned@example.com", "x@private.test",
                                              received=old)
        (fresh,) = await self.add("pub@example.com", received=now - DAY)
        retention = Retention(publicInboxLimit=0, publicMaxAge=7 * 86400, messageLimit=0)
        removed = await self.store.enforceRetention(retention, now)
        self.assertEqual(removed, 2)
        for gone in (oldPublic, oldOpen):
            await self.assertFails(NotFound, self.store.getCopy(gone.id))
        for kept in (oldStarred, oldOwned, oldPrivate, fresh):
            self.assertEqual((await self.store.getCopy(kept.id)).uid, kept.uid)
        # The message of oldPublic and oldOpen had no other copy.
        await self.assertFails(NotFound, self.store.getRaw(oldPublic))
        self.assertConsistent()

    async def test_messageLimitRecyclesOldestUnstarred(self) -> None:
        """
        An account over its own message limit loses its oldest unstarred
        copies in owned inboxes, never starred ones, and the server default
        does not override the account's setting.
        """
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "owned@example.com")
        await self.store.addDomain("alice", "private.test")
        await self.store.setAccountSettings("alice", messageLimit=3)
        copies = [(await self.add("owned@example.com"))[0] for _ in range(3)]
        copies += [(await self.add("x@private.test"))[0] for _ in range(2)]
        await self.store.setStarred(copies[0], "alice")
        (public,) = await self.add("pub@example.com")
        retention = Retention(publicInboxLimit=0, publicMaxAge=0, messageLimit=100)
        removed = await self.store.enforceRetention(retention, nowMillis())
        self.assertEqual(removed, 2)
        remaining = await self._inbox("owned@example.com") + await self._inbox("x@private.test")
        self.assertEqual(sorted(remaining), [copies[0].uid, copies[3].uid, copies[4].uid])
        self.assertEqual(await self._inbox("pub@example.com"), [public.uid])
        self.assertConsistent()

    async def test_messageLimitDefaultAndStarredNeverRecycled(self) -> None:
        """
        Without a setting of its own an account gets the server's default
        limit; when starred mail alone is over the limit nothing starred is
        recycled, only unstarred copies.
        """
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "owned@example.com")
        copies = [(await self.add("owned@example.com"))[0] for _ in range(5)]
        for copy in copies[:4]:
            await self.store.setStarred(copy, "alice")
        retention = Retention(publicInboxLimit=0, publicMaxAge=0, messageLimit=2)
        removed = await self.store.enforceRetention(retention, nowMillis())
        self.assertEqual(removed, 1)
        self.assertEqual(sorted(await self._inbox("owned@example.com")),
                         [c.uid for c in copies[:4]])
        removed = await self.store.enforceRetention(retention, nowMillis())
        self.assertEqual(removed, 0)

    async def test_capturePrivateMailCountsTowardTheLimit(self) -> None:
        """
        Mail an account starred by capturing it privately into public
        inboxes counts toward its limit: after the first pass, new such mail
        makes the account be looked at again (its starred copies are kept,
        its owned ones recycled).
        """
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "owned@example.com")
        await self.store.setAccountSettings("alice", capturePrivate=True, messageLimit=2)
        retention = Retention(publicInboxLimit=0, publicMaxAge=0, messageLimit=0)
        await self.store.enforceRetention(retention, nowMillis())
        (owned,) = await self.add("owned@example.com")
        await self.store.setStarred(owned, None)
        await self.store.enforceRetention(retention, nowMillis())
        starred = [(await self.add("pub@example.com", account="alice"))[0] for _ in range(2)]
        self.assertEqual([c.savedBy for c in starred], ["alice", "alice"])
        removed = await self.store.enforceRetention(retention, nowMillis())
        self.assertEqual(removed, 1)
        self.assertEqual(await self._inbox("owned@example.com"), [])
        self.assertEqual(
            sorted(await self._inbox("pub@example.com")), [c.uid for c in starred]
        )

    async def test_orphanMessagesRemoved(self) -> None:
        """
        A message whose copies are all recycled is removed with its raw
        bytes and bodies; one with a surviving copy stays.
        """
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "owned@example.com")
        old = nowMillis() - 30 * DAY
        await self.add("pub@example.com", "pub2@example.com", received=old)
        sharedPublic, sharedOwned = await self.add("pub@example.com", "owned@example.com",
                                                   received=old)
        self.assertEqual(self.count("messages"), 2)
        retention = Retention(publicInboxLimit=0, publicMaxAge=86400, messageLimit=0)
        removed = await self.store.enforceRetention(retention, nowMillis())
        self.assertEqual(removed, 3)
        self.assertEqual(self.count("messages"), 1)
        self.assertEqual(self.count("message_raw"), 1)
        self.assertEqual(self.count("message_bodies"), 1)
        self.assertEqual(await self.store.getRaw(sharedOwned), message())
        self.assertConsistent()


class UnifiedInboxChecks(StoreCase):
    """
    What the account's unified inbox (M17) and its searches answer, for
    L{UnifiedInboxTests} and for a backend's own tests that force each of
    its query plans.
    """

    async def fill(self) -> dict[str, Copy]:
        """
        Alice owns an address and a private domain and starred one public
        copy; the rest is other people's mail.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.reserveAddress("alice", "owned@example.com")
        await self.store.addDomain("alice", "private.test")
        await self.store.reserveAddress("bob", "bob@example.com")
        copies: dict[str, Copy] = {}
        for name, inbox in [
            ("owned1", "owned@example.com"), ("bob1", "bob@example.com"),
            ("domain1", "x@private.test"), ("public1", "anyone@example.org"),
            ("starred", "public@example.org"), ("owned2", "owned@example.com"),
            ("public2", "anyone@example.org"), ("domain2", "y@private.test"),
        ]:
            subject = f"invoice {name}" if name.endswith("1") or name == "starred" else name
            copies[name] = (await self.add(inbox, raw=message(subject)))[0]
        await self.store.setStarred(copies["starred"], "alice")
        await self.store.setCopyState(copies["owned1"], read=True)
        return copies

    async def assertListing(self) -> None:
        c = await self.fill()
        newestFirst = [c[n].id for n in ("domain2", "owned2", "starred", "domain1", "owned1")]

        async def ids(**kwargs: Any) -> tuple[list[str], int]:
            copies, unread = await self.store.listAccountInbox("alice", **kwargs)
            return [x.id for x in copies], unread

        self.assertEqual(await ids(), (newestFirst, 4))
        self.assertEqual(await ids(limit=2, skip=2), (newestFirst[2:4], 4))
        self.assertEqual(await ids(limit=2, beforeUid=c["owned2"].uid), (newestFirst[2:4], 4))
        self.assertEqual(await ids(beforeUid=c["owned1"].uid), ([], 4))
        self.assertEqual((await ids(limit=50, since=c["domain2"].message.received))[0][0],
                         c["domain2"].id)

    async def assertSearch(self) -> None:
        c = await self.fill()

        async def found(**kwargs: Any) -> list[str]:
            return [x.id for x in await self.store.searchAccount("alice", **kwargs)]

        matches = [c[n].id for n in ("starred", "domain1", "owned1")]
        self.assertEqual(await found(anyOf="INVOICE"), matches)
        self.assertEqual(await found(anyOf="invoice", limit=2), matches[:2])
        self.assertEqual(await found(subject="invoice", read=False), matches[:2])
        self.assertEqual(await found(recipient="private.test"), [c["domain2"].id, c["domain1"].id])
        self.assertEqual(await found(anyOf="%"), [])

        async def window(**kwargs: Any) -> tuple[list[str], int | None]:
            copies, cursor = await self.store.searchAccountWindow("alice", "invoice", **kwargs)
            return [x.id for x in copies], cursor

        self.assertEqual(await window(), (matches, None))
        # A page of two, then the rest from its cursor.
        self.assertEqual(await window(limit=2), (matches[:2], c["domain1"].uid))
        self.assertEqual(await window(beforeUid=c["domain1"].uid), (matches[2:], None))
        # A window of three copies (domain2, owned2, starred) stops there
        # and says where to go on; the next window reaches the oldest.
        self.assertEqual(await window(scan=3), (matches[:1], c["starred"].uid))
        self.assertEqual(await window(scan=3, beforeUid=c["starred"].uid), (matches[1:], None))


class UnifiedInboxTests(UnifiedInboxChecks):
    """
    The account's unified inbox (M17) and its searches.
    """

    async def test_listing(self) -> None:
        """
        Newest first, only the account's copies, C{skip} and the
        C{beforeUid} cursor give the same pages, unread counts them all.
        """
        await self.assertListing()

    async def test_search(self) -> None:
        """
        M18/M19 searches find the account's matching copies newest first;
        the windowed search pages by its cursor and stops at its window.
        """
        await self.assertSearch()


class PrivacyTests(StoreCase):
    """
    Another account's starred mail is hidden from every read a
    L{Visibility} or an account bounds (the access rule of DESIGN.md).
    """

    async def test_othersStarredMailHiddenEverywhere(self) -> None:
        """
        In a public inbox and a public domain, a copy Bob starred is in no
        listing, count, POP3 or IMAP mailbox, search, unified inbox, stars
        or stats of Alice's, nor of a viewer without an account; with
        C{everything} it is there (the check can see it).
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        await self.store.addDomain("alice", "open.test", isPrivate=False)
        (plain,) = await self.add("pub@example.com")
        (bobsPub,) = await self.add("pub@example.com")
        (alicesPub,) = await self.add("pub@example.com")
        (plainDomain,) = await self.add("x@open.test")
        (bobsDomain,) = await self.add("x@open.test")
        await self.store.setStarred(bobsPub, "bob")
        await self.store.setStarred(bobsDomain, "bob")
        await self.store.setStarred(alicesPub, "alice")
        bobs = {bobsPub.uid, bobsDomain.uid}
        alice = Visibility(everything=False, starredBy="alice")

        async def seen(visibility: Visibility) -> dict[str, set[int]]:
            ids = {c.id: c.uid for c in (plain, bobsPub, alicesPub, plainDomain, bobsDomain)}
            inbox = "pub@example.com"
            found = {
                "listInbox": [c.uid for c in await self.store.listInbox(inbox, visibility)],
                "listInboxJSON": [ids[m["_id"]] for m in json.loads(
                    await self.store.listInboxJSON(inbox, visibility))],
                "listMailbox": [e.uid for e in await self.store.listMailbox(inbox, visibility)],
                "mailboxFlags": [s.uid for s in await self.store.mailboxFlags(
                    MailboxQuery(inbox, visibility))],
                "searchInbox": [c.uid for c in (await self.store.searchInbox(
                    inbox, visibility, ["hello"]))[0]],
                "listDomain": [c.uid for c in await self.store.listDomain(
                    "open.test", "alice", visibility)],
            }
            counts = {
                "countInbox": await self.store.countInbox(inbox, visibility),
                "countDomain": await self.store.countDomain("open.test", "alice", visibility),
            }
            self.assertEqual(counts["countInbox"], len(found["listInbox"]))
            self.assertEqual(counts["countDomain"], len(found["listDomain"]))
            return {name: set(uids) for name, uids in found.items()}

        for visibility in (alice, ANONYMOUS):
            for name, uids in (await seen(visibility)).items():
                self.assertEqual(uids & bobs, set(), (name, visibility))
        everything = await seen(EVERYTHING)
        self.assertEqual(everything["listInbox"] & bobs, {bobsPub.uid})
        self.assertEqual(everything["listDomain"] & bobs, {bobsDomain.uid})
        self.assertIn(alicesPub.uid, (await seen(alice))["listInbox"])
        self.assertNotIn(alicesPub.uid, (await seen(ANONYMOUS))["listInbox"])
        accountReads = {
            "listAccountInbox": [c.uid for c in (await self.store.listAccountInbox("alice"))[0]],
            "searchAccount": [c.uid for c in await self.store.searchAccount(
                "alice", anyOf="hello")],
            "searchAccountWindow": [c.uid for c in (await self.store.searchAccountWindow(
                "alice", "hello"))[0]],
            "listStarred": [c.uid for c in await self.store.listStarred("alice")],
        }
        for name, uids in accountReads.items():
            self.assertEqual(set(uids) & bobs, set(), name)
            self.assertIn(alicesPub.uid, uids, name)
        stats = await self.store.accountStats("alice")
        self.assertEqual((stats.starredMessages, stats.nonOwnedInboxes),
                         (1, ("pub@example.com",)))


class UsageAndHealthTests(StoreCase):
    """
    Op counting and the health reads.
    """

    async def test_opsAndMailCountTogether(self) -> None:
        """
        Ops counted for an API call and the op of each message sent add up
        in the account's usage of this month; other accounts and months
        are apart.
        """
        await self.store.createAccount("alice")
        await self.store.createAccount("bob")
        month = time.strftime("%Y-%m", time.gmtime())
        self.store.countOp("alice")
        self.store.countOp("alice")
        self.store.countOp("bob")
        await self.add("x@example.com", account="alice")
        self.assertEqual(await self.store.usage("alice", month), 3)
        self.assertEqual(await self.store.usage("bob", month), 1)
        self.assertEqual(await self.store.usage("alice", "1999-01"), 0)
        self.assertEqual(await self.store.usage("carol", month), 0)

    async def test_pingAndLoad(self) -> None:
        """
        A running store answers a ping and reports its queues; a stopped
        one fails the ping with L{StoreError} at once.
        """
        self.assertIsNone(await self.store.ping())
        load = self.store.load()
        self.assertIsInstance(load, StoreLoad)
        self.assertGreaterEqual(load.writesQueued, 0)
        self.assertGreaterEqual(load.readsPending, 0)
        await self.stopStore()
        await self.assertFails(StoreError, self.store.ping())


def uidViolations(polls: list[tuple[int, list[int]]]) -> list[str]:
    """
    What a reader's successive polls of one mailbox (each C{nextUid}, read
    first, and the mailbox's uids) show against the uid guarantee of
    L{IStore}, with no copy deleted meanwhile: each poll's uids ascend and
    begin with the previous poll's, every new one above them all (no copy
    appears below a uid already seen); C{nextUid} never goes back and is
    above every uid a previous poll saw.

    @return: One line per violation; empty when there is none.
    """
    problems = []
    for k, (nextUid, uids) in enumerate(polls):
        if uids != sorted(set(uids)):
            problems.append(f"poll {k}: uids not strictly ascending: {uids}")
        if k == 0:
            continue
        previousNext, previous = polls[k - 1]
        if uids[: len(previous)] != previous:
            late = sorted(set(uids) - set(previous))
            problems.append(f"poll {k}: {previous} was not kept as the start; new uids {late}")
        if nextUid < previousNext:
            problems.append(f"poll {k}: nextUid went back from {previousNext} to {nextUid}")
        if previous and nextUid <= previous[-1]:
            problems.append(f"poll {k}: nextUid {nextUid} not above seen uid {previous[-1]}")
    return problems


class UidTests(StoreCase):
    """
    The uid guarantee of L{IStore}: copy uids increase in commit order
    across every writer, are never reused while UIDVALIDITY stands, and
    C{nextUid} is true.
    """

    def test_violationsAreSeen(self) -> None:
        """
        The poll checker finds a uid that appears below one already seen,
        a uid gone, and a C{nextUid} that is not above what was seen.
        """
        self.assertEqual(uidViolations([(1, []), (3, [1, 2]), (6, [1, 2, 5])]), [])
        self.assertEqual(len(uidViolations([(4, [1, 3]), (5, [1, 2, 3])])), 1)
        self.assertEqual(len(uidViolations([(4, [1, 3]), (5, [3])])), 1)
        self.assertEqual(len(uidViolations([(4, [1, 3]), (3, [1, 3])])), 2)
        self.assertEqual(len(uidViolations([(2, [1, 3]), (3, [1, 3])])), 1)

    async def assertOrderedUnderWriters(self, stores: list[Any], reader: Any) -> None:
        """
        Writers, spread over C{stores}, add many copies to one inbox at once
        while C{reader} polls the inbox's uids and C{nextUid}, and adds a
        copy of its own now and then, which must get at least the
        C{nextUid} it read just before.
        """
        inbox = "uids@example.com"
        writers, each = 8, 25
        done = False
        polls: list[tuple[int, list[int]]] = []
        readerUids: list[int] = []

        async def write(store: Any, k: int) -> list[int]:
            uids = []
            for i in range(each):
                (copy,) = await deliver(store, envelope(inbox), message(f"w{k}-{i}"))
                uids.append(copy.uid)
            return uids

        async def read() -> None:
            while not done:
                nextUid = await reader.nextUid()
                flags = await reader.mailboxFlags(MailboxQuery(inbox, EVERYTHING))
                polls.append((nextUid, [s.uid for s in flags]))
                if len(polls) % 4 == 0:
                    before = await reader.nextUid()
                    (mine,) = await deliver(reader, envelope(inbox), message("reader"))
                    self.assertGreaterEqual(mine.uid, before)
                    readerUids.append(mine.uid)

        reading = ensureDeferred(read())
        written = await gatherResults([
            ensureDeferred(write(stores[k % len(stores)], k)) for k in range(writers)
        ])
        done = True
        await reading
        final = [s.uid for s in await reader.mailboxFlags(MailboxQuery(inbox, EVERYTHING))]
        polls.append((await reader.nextUid(), final))
        self.assertEqual(uidViolations(polls), [])
        everyUid = [uid for uids in written for uid in uids] + readerUids
        self.assertEqual(final, sorted(everyUid))
        self.assertEqual(len(set(everyUid)), writers * each + len(readerUids))
        for uids in written:
            self.assertEqual(uids, sorted(uids))
        self.assertGreater(polls[-1][0], final[-1])
        # The reader saw the inbox grow while it was written to, not only
        # before and after.
        self.assertGreater(len({len(uids) for _, uids in polls}), 2)

    async def test_oneStoreManyWriters(self) -> None:
        """
        Concurrent writers into one inbox of one store: every poll of a
        reader sees the uids it saw before, in order, and only new uids
        above them.
        """
        await self.assertOrderedUnderWriters([self.store], self.store)

    async def test_twoStoresOnOneDatabase(self) -> None:
        """
        Two store objects on the same data (two Capture nodes on one
        database) writing into one inbox at once: a reader on either sees
        one uid order, the commit order, across both writers.
        """
        if not self.backendFactory.concurrentWriters:
            raise unittest.SkipTest(
                f"{self.backendFactory.name}: one writer per database only")
        other = self.openStore()
        self.assertEqual(other.uidValidity, self.store.uidValidity)
        await self.assertOrderedUnderWriters([self.store, other], other)

    async def test_uidsNeverReused(self) -> None:
        """
        After the newest copy is deleted (by each of deleteCopy,
        deleteCopies and purgeInbox), the next copy's uid is above it, and
        nextUid never goes back; with a second store on the same data, a
        copy it adds after the first deleted its newest is above that too.
        """
        highest = 0
        for remove in ("deleteCopy", "deleteCopies", "purgeInbox"):
            (copy,) = await self.add("r@example.com")
            self.assertGreater(copy.uid, highest)
            highest = copy.uid
            nextUid = await self.store.nextUid()
            self.assertGreater(nextUid, highest)
            if remove == "deleteCopy":
                await self.store.deleteCopy(copy)
            elif remove == "deleteCopies":
                self.assertEqual(await self.store.deleteCopies([copy.uid]), [copy.uid])
            else:
                self.assertEqual(await self.store.purgeInbox("r@example.com"), 1)
            self.assertGreaterEqual(await self.store.nextUid(), nextUid)
            (again,) = await self.add("r@example.com")
            self.assertGreaterEqual(again.uid, nextUid)
            await self.store.deleteCopy(again)
            highest = again.uid
        if self.backendFactory.concurrentWriters:
            other = self.openStore()
            (last,) = await deliver(other, envelope("r@example.com"), message())
            self.assertGreater(last.uid, highest)

    def assertNoOlderUidAppears(self, seen: list[int], now: list[int]) -> None:
        """
        A mailbox read again (copies may have gone meanwhile) shows no copy
        that was not there before with a uid below one already seen.
        """
        late = [uid for uid in now if uid not in seen and seen and uid < max(seen)]
        self.assertEqual(late, [], f"seen {seen}, then {now}")

    @pytest.mark.xfail(strict=True, reason=(
        "the sent-mail mailbox (MailboxQuery sentBy) shows each message by the "
        "lowest uid among its copies the sender may read (_SENT_UIDS' min): "
        "deleting that copy puts the message back under its next copy's older "
        "uid, below uids the reader has seen (and the message never leaves "
        "the mailbox while it has copies)"))
    async def test_sentMailboxShowsNoOlderUid(self) -> None:
        """
        Deleting a message's copy from the sender's sent-mail mailbox does
        not make an older uid appear in it.
        """
        await self.store.createAccount("alice")
        first = await self.add("a@example.com", "b@example.com", account="alice")
        await self.add("c@example.com", account="alice")
        query = MailboxQuery(None, sentBy="alice")
        seen = [s.uid for s in await self.store.mailboxFlags(query)]
        self.assertEqual(await self.store.deleteCopies([seen[0]]), [first[0].uid])
        now = [s.uid for s in await self.store.mailboxFlags(query)]
        self.assertNotIn(first[0].uid, now)
        self.assertNoOlderUidAppears(seen, now)

    @pytest.mark.xfail(strict=True, reason=(
        "a copy another account starred is hidden by the Visibility filter and "
        "shows again with its old uid when unstarred: a reader that saw a "
        "higher uid then sees a copy below it (IMAP clients that sync from "
        "UIDNEXT never fetch it); the guarantee's wording, or the store, must "
        "give way"))
    async def test_unstarredCopyShowsNoOlderUid(self) -> None:
        """
        A copy that becomes visible in a mailbox (another account unstars
        it) does not appear below the uids a reader has seen there.
        """
        (hidden,) = await self.add("pub@example.com")
        await self.store.setStarred(hidden, "bob")
        await self.add("pub@example.com")
        query = MailboxQuery("pub@example.com", Visibility(everything=False, starredBy="alice"))
        seen = [s.uid for s in await self.store.mailboxFlags(query)]
        await self.store.setStarred(hidden, None)
        now = [s.uid for s in await self.store.mailboxFlags(query)]
        self.assertNoOlderUidAppears(seen, now)

    async def test_uidValidityStands(self) -> None:
        """
        A store has a UIDVALIDITY, the same after a restart and for
        every store object on the same data.
        """
        validity = self.store.uidValidity
        self.assertIsInstance(validity, int)
        self.assertGreater(validity, 0)
        await self.add("v@example.com")
        await self.restart()
        self.assertEqual(self.store.uidValidity, validity)
        if self.backendFactory.concurrentWriters:
            self.assertEqual(self.openStore().uidValidity, validity)


class SharedDataTests(StoreCase):
    """
    Several store objects on one database, as several Capture nodes (or
    processes) would be.
    """

    def test_openFreshDataTogether(self) -> None:
        """
        Two stores opening the same fresh data at the same moment both
        open it, at the newest schema, with one UIDVALIDITY.
        """
        if not self.backendFactory.concurrentWriters:
            raise unittest.SkipTest(
                f"{self.backendFactory.name}: one writer per database only")
        failures: list[BaseException] = []
        for _ in range(20):
            backend = self.backendFactory.make()
            stores = [backend.newStore(), backend.newStore()]
            barrier = threading.Barrier(len(stores))

            def opening(store: Any, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    store.open()
                except BaseException as e:
                    failures.append(e)

            threads = [threading.Thread(target=opening, args=(s,)) for s in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if not failures:
                self.assertEqual(stores[0].uidValidity, stores[1].uidValidity)
            backend.destroy()
        self.assertEqual([f"{type(e).__name__}: {e}" for e in failures], [])


#: Every behaviour mixin of the suite, in the order they run.
SUITE: tuple[type[StoreCase], ...] = (
    AccountTests,
    OwnershipTests,
    MessageTests,
    MailboxTests,
    PersistenceTests,
    RetentionTests,
    UnifiedInboxTests,
    PrivacyTests,
    UsageAndHealthTests,
    UidTests,
    SharedDataTests,
)
