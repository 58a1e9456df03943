"""
The SQLite store (L{capture.store.sqlite.SQLiteStore}) through its
L{IStore} interface, on a temporary directory, with the real reactor and
real threads.

Each test case is a trial C{TestCase}: pytest runs it, and trial spins the
reactor for the coroutine test methods.  Where a test checks the database's
own consistency (no orphan rows, nothing half stored) it reads the file with
a separate read-only SQLite connection, as an administrator would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable
from importlib import resources
from typing import Any, cast

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from capture.access import Visibility
from capture.events import ChangedCopies, ChangedCopy, InProcessBus, NewCopies, RemovedCopies
from capture.ids import newQueueId
from capture.mime import Part, parseMessage
from capture.store import sqlite as sqliteBackend
from capture.store.interface import IStore
from capture.store.model import (
    PUBLIC,
    AccountDeletion,
    Conflict,
    Copy,
    Envelope,
    FlagState,
    InboxOwner,
    MailboxQuery,
    NotFound,
    Recipient,
    RemovedCopy,
    Retention,
    SchemaTooNew,
    StoreError,
    StoreFull,
)
from capture.store.sqlite import DATABASE_NAME, SQLiteStore
from capture.web.messages import messageJSON

EVERYTHING = Visibility(everything=True)
ANONYMOUS = Visibility(everything=False, starredBy=None)
DAY = 86400 * 1000


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


class _StoreCase(unittest.TestCase):
    """
    A started store on a fresh temporary directory.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="capture-store-")
        self.path = os.path.join(self.directory, DATABASE_NAME)
        self.connections: list[sqlite3.Connection] = []
        self.events = InProcessBus()
        self.store = SQLiteStore(self.directory, events=self.events)
        self.store.start()
        self.running = True

    async def tearDown(self) -> None:  # type: ignore[override]
        # Not addCleanup: trial runs cleanups before tearDown, and the
        # directory must outlive the store.
        for conn in self.connections:
            conn.close()
        if self.running:
            self.running = False
            await self.store.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    async def restart(self, **kwargs: Any) -> None:
        """
        Stop the store and open a new one on the same directory.
        """
        self.running = False
        await self.store.stop()
        self.store = SQLiteStore(self.directory, events=self.events, **kwargs)
        self.store.start()
        self.running = True

    def db(self) -> sqlite3.Connection:
        """
        A read-only connection of the test's own to the database file.
        """
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        self.connections.append(conn)
        return conn

    def count(self, table: str) -> int:
        return int(self.db().execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def assertConsistent(self) -> None:
        """
        No half-stored message: every message has its raw bytes, its bodies
        and at least one copy, and every copy and body row has its message.
        """
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
        for what, sql in checks.items():
            self.assertEqual(db.execute(sql).fetchone()[0], 0, what)

    async def add(self, *recipients: str | tuple[str, str], **kwargs: Any) -> list[Copy]:
        raw = kwargs.pop("raw", None) or message()
        return await self.store.addMessage(envelope(*recipients, **kwargs), raw)

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


class AccountTests(_StoreCase):
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
        self.running = False
        await self.store.stop()
        data = b""
        for name in os.listdir(self.directory):
            with open(os.path.join(self.directory, name), "rb") as f:
                data += f.read()
        self.assertFalse(first.encode() in data, "first key stored in clear")
        self.assertFalse(second.encode() in data, "second key stored in clear")
        self.assertTrue(hashlib.sha256(first.encode()).digest() in data, "no key hash")

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
        name, an owned address, an owned domain or an address in one (in
        any case, with stray spaces, an internationalized domain in either
        spelling); anything else resolves to nothing.
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


class OwnershipTests(_StoreCase):
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

class MessageTests(_StoreCase):
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
        copies = await self.store.addMessage(env, raw)
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
        await self.assertFails(NotFound, self.store.addMessage(
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

    async def test_listInboxJSONIsMessageJSON(self) -> None:
        """
        The JSON listing SQLite joins from stored summaries is, copy for
        copy, what L{messageJSON} makes of L{listInbox}'s copies: across
        names with quotes and non-ASCII, encoded words, control characters,
        attachments, links, labels, read states, starred copies and a
        message with no headers; C{limit} and C{until} agree too.
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
        await self.store.setCopyState(copies[0], read=True, labels=("a\"b", "\u00e9"))
        await self.store.setCopyState(copies[1], read=False, folder="spam")
        await self.store.setStarred(copies[2], "alice")
        for visible in (EVERYTHING, ANONYMOUS, Visibility(everything=False, starredBy="alice")):
            for kwargs in ({}, {"limit": 2}, {"until": copies[1].message.received}):
                listed = await self.store.listInbox(inbox, visible, **kwargs)
                data = await self.store.listInboxJSON(inbox, visible, **kwargs)
                self.assertIsInstance(data, bytes)
                self.assertEqual(json.loads(data), [messageJSON(c) for c in listed])
        self.assertEqual(json.loads(await self.store.listInboxJSON("none@example.com",
                                                                     EVERYTHING)), [])

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
        unsubscribe = self.events.subscribe(NewCopies, lambda e: seen.append(list(e.copies)))
        copies = await self.add("a@example.com", "b@example.com")
        # Subscribers are called right after the writer's callers.
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(seen, [copies])
        unsubscribe()
        await self.add("a@example.com")
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(len(seen), 1)


class MailboxTests(_StoreCase):
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
        unsubscribe = self.events.subscribe(RemovedCopies, lambda e: heard.append(list(e.copies)))
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
        heard: list[ChangedCopies] = []
        unsubscribe = self.events.subscribe(ChangedCopies, heard.append)
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

        self.assertEqual([event.copies for event in heard], [
            (changed(first, read=True, answered=True, labels=("$Work",)),),
            (changed(second, read=True, labels=("x",), folder="spam"),),
            (changed(second, savedBy="alice", read=True, labels=("x",), folder="spam"),),
            (changed(second, read=True, labels=("x",), folder="spam"),),
        ])
        self.assertEqual(heard[2].copies[0], ChangedCopy.of(starred))
        self.assertEqual(heard[0].copies[0].flags,
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


class ConcurrencyTests(_StoreCase):
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
            self.store.addMessage(envelope(f"r{i % 7}@example.com"), message(f"m{i}"))
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
        before = self.store.addMessage(envelope("a@example.com"), message("before"))
        bad = self.store.addMessage(envelope("a@example.com", account="ghost"), message("bad"))
        after = self.store.addMessage(envelope("a@example.com"), message("after"))
        release.set()
        await holding
        (beforeCopy,) = await before
        await self.assertFails(NotFound, bad)
        (afterCopy,) = await after
        listed = await self.store.listInbox("a@example.com", EVERYTHING)
        self.assertEqual([c.uid for c in listed], [afterCopy.uid, beforeCopy.uid])
        self.assertConsistent()


class PersistenceTests(_StoreCase):
    """
    Schema migrations and what survives a restart.
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

    async def test_migrationTwoFillsSummaries(self) -> None:
        """
        Messages stored before migration 2 get their summary from their
        parsed columns when the store opens, so their JSON listing is the
        same as for new mail.
        """
        copies = [(await self.add("old@example.com", raw=raw))[0]
                  for raw in (message("one"), b"From: A <a@x.example>\r\n\r\nhttp://l.example\r\n")]
        await self.store.stop()
        db = sqlite3.connect(self.path)
        # As a version 1 store was: no summary column (nor the later ones).
        for column in ("imap_envelope", "imap_structure", "header_size", "summary_json"):
            db.execute(f"ALTER TABLE messages DROP COLUMN {column}")
        # Later migrations run again: undo what they added.
        db.execute("ALTER TABLE accounts DROP COLUMN session_generation")
        db.execute("PRAGMA user_version = 1")
        db.commit()
        db.close()
        self.store = SQLiteStore(self.directory)
        self.store.start()
        self.assertEqual(self.db().execute("PRAGMA user_version").fetchone()[0], latestMigration())
        self.assertEqual(self.db().execute(
            "SELECT count(*) FROM messages WHERE summary_json IS NULL").fetchone()[0], 0)
        listed = await self.store.listInbox("old@example.com", EVERYTHING)
        self.assertEqual([c.uid for c in listed], [c.uid for c in copies[::-1]])
        self.assertEqual(json.loads(await self.store.listInboxJSON("old@example.com", EVERYTHING)),
                         [messageJSON(c) for c in listed])

    async def test_migrationThreeFillsIMAP(self) -> None:
        """
        Messages stored before migration 3 get their ENVELOPE,
        BODYSTRUCTURE and header size when the store opens, the same as
        new mail gets at ingest.
        """
        copy = (await self.add("old@example.com", raw=message("one")))[0]
        before = (await self.store.fetchMessages([copy.uid], envelope=True, structure=True))[copy.uid]
        await self.store.stop()
        db = sqlite3.connect(self.path)
        for column in ("imap_envelope", "imap_structure", "header_size"):
            db.execute(f"ALTER TABLE messages DROP COLUMN {column}")
        # Later migrations run again: undo what they added.
        db.execute("ALTER TABLE accounts DROP COLUMN session_generation")
        db.execute("PRAGMA user_version = 2")
        db.commit()
        db.close()
        self.store = SQLiteStore(self.directory)
        self.store.start()
        after = (await self.store.fetchMessages([copy.uid], envelope=True, structure=True))[copy.uid]
        self.assertEqual(after, before)
        self.assertTrue(after.envelope and after.envelope.startswith("("))
        self.assertGreater(after.headerSize, 0)

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
        self.running = False
        await self.store.stop()
        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        await self._assertRefusedUntouched()

    async def test_newerSchemaRollbackJournalUntouched(self) -> None:
        """
        A newer database that is not in WAL mode is not switched to WAL
        (which would rewrite its header) before being refused.
        """
        self.running = False
        await self.store.stop()
        os.remove(self.path)
        conn = sqlite3.connect(self.path)
        conn.execute("CREATE TABLE future (x)")
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
        conn.close()
        await self._assertRefusedUntouched()


class SizeLimitTests(_StoreCase):
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
            (copy,) = await self.store.addMessage(env, b"\r\nx")
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
                (copy,) = await self.store.addMessage(envelope("a@example.com"), raw)
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
                (copy,) = await self.store.addMessage(
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
        (again,) = await self.store.addMessage(
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
        pending = [self.store.addMessage(e, r) for e, r in zip(envelopes, raws, strict=True)]
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


class RetentionTests(_StoreCase):
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
        unsubscribe = self.events.subscribe(RemovedCopies, lambda e: heard.append(list(e.copies)))
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

    async def test_publicInboxLimitBeyondOneBatch(self) -> None:
        """
        An inbox with more excess than one pass removes is trimmed further
        by the next passes, though no new mail arrives in between.
        """
        self.patch(sqliteBackend, "_RETENTION_BATCH", 3)
        copies = [(await self.add("busy@example.com"))[0] for _ in range(10)]
        retention = Retention(publicInboxLimit=2, publicMaxAge=0, messageLimit=0)
        removals = [await self.store.enforceRetention(retention, nowMillis()) for _ in range(4)]
        self.assertEqual(removals, [3, 3, 2, 0])
        self.assertEqual(await self._inbox("busy@example.com"), [copies[9].uid, copies[8].uid])
        self.assertConsistent()

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

    async def test_messageLimitBeyondOneBatch(self) -> None:
        """
        An account more than one batch over its limit keeps being trimmed
        by the following passes, with no new mail in between.
        """
        self.patch(sqliteBackend, "_RETENTION_BATCH", 2)
        await self.store.createAccount("alice")
        await self.store.reserveAddress("alice", "owned@example.com")
        await self.store.setAccountSettings("alice", messageLimit=1)
        copies = [(await self.add("owned@example.com"))[0] for _ in range(6)]
        retention = Retention(publicInboxLimit=0, publicMaxAge=0, messageLimit=0)
        removals = [await self.store.enforceRetention(retention, nowMillis()) for _ in range(4)]
        self.assertEqual(removals, [2, 2, 1, 0])
        self.assertEqual(await self._inbox("owned@example.com"), [copies[5].uid])

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

    async def test_failedPassForgetsNothing(self) -> None:
        """
        When a retention pass fails, what it was to look at is looked at by
        the next one.
        """
        copies = [(await self.add("pub@example.com"))[0] for _ in range(4)]
        retention = Retention(publicInboxLimit=1, publicMaxAge=0, messageLimit=0)
        original = sqliteBackend._enforceRetention

        def broken(*args: Any) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        self.patch(sqliteBackend, "_enforceRetention", broken)
        await self.assertFails(StoreError, self.store.enforceRetention(retention, nowMillis()))
        self.patch(sqliteBackend, "_enforceRetention", original)
        removed = await self.store.enforceRetention(retention, nowMillis())
        self.assertEqual(removed, 3)
        self.assertEqual(await self._inbox("pub@example.com"), [copies[3].uid])

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


class UnifiedInboxTests(_StoreCase):
    """
    The account's unified inbox (M17) and its searches, under both of the
    store's spellings of "the account's copies": walked by uid when the
    account owns much of the newest mail, indexed when it owns little.
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

    def forcePlan(self, walked: bool) -> None:
        # The sample decides; a share of 0 never walks, a huge one always
        # does (alice has mail among the newest).
        self.patch(sqliteBackend, "_WALK_SHARE", 10**9 if walked else 0)

    async def test_planChoice(self) -> None:
        """
        An account with mail among the store's newest copies is walked; one
        with none is read through the indexes.
        """
        await self.fill()
        conn = self.db()
        self.assertEqual(sqliteBackend._accountCopies(conn, "alice"), sqliteBackend._MINE_WALKED)
        self.assertEqual(sqliteBackend._accountCopies(conn, "carol"), sqliteBackend._MINE_INDEXED)

    async def assertListing(self, walked: bool) -> None:
        self.forcePlan(walked)
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

    async def test_listingWalked(self) -> None:
        """
        Walked: newest first, only the account's copies, C{skip} and the
        C{beforeUid} cursor give the same pages, unread counts them all.
        """
        await self.assertListing(walked=True)

    async def test_listingIndexed(self) -> None:
        """
        Indexed: the same answers.
        """
        await self.assertListing(walked=False)

    async def assertSearch(self, walked: bool) -> None:
        self.forcePlan(walked)
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

    async def test_searchWalked(self) -> None:
        """
        Walked: M18/M19 searches find the account's matching copies newest
        first; the windowed search pages by its cursor and stops at its
        window.
        """
        await self.assertSearch(walked=True)

    async def test_searchIndexed(self) -> None:
        """
        Indexed: the same answers.
        """
        await self.assertSearch(walked=False)
