"""
The login rules of L{capture.auth} for mail readers (POP3, IMAP) and for
SMTP, through the one portal on a real store.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.trial import unittest

from capture.auth import (
    IllegalResponse,
    IMailboxReader,
    ISubmitter,
    LoginLogin,
    MailboxReader,
    PlainLogin,
    Submitter,
    makePortal,
    mayActAs,
)
from capture.store.sqlite import SQLiteStore


class ReaderLoginTests(unittest.TestCase):
    """
    Alice owns C{alice@owned.test} and the private domain C{private.test};
    Bob is another account.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.directory = tempfile.mkdtemp(prefix="capture-auth-")
        self.store = SQLiteStore(self.directory)
        self.store.start()
        _, self.alice = await self.store.createAccount("alice")
        _, self.bob = await self.store.createAccount("bob")
        await self.store.reserveAddress("alice", "alice@owned.test")
        await self.store.addDomain("alice", "private.test", isPrivate=True)
        self.portal = makePortal(self.store)

    async def tearDown(self) -> None:  # type: ignore[override]
        await self.store.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    async def reader(self, username: str, key: str) -> Any:
        _, avatar, _ = await self.portal.login(
            UsernamePassword(username.encode(), key.encode()), None, IMailboxReader
        )
        return avatar

    async def submitter(self, username: str, key: str) -> Any:
        _, avatar, _ = await self.portal.login(
            UsernamePassword(username.encode(), key.encode()), None, ISubmitter
        )
        return avatar

    async def assertRefused(self, username: str, key: str, interface: Any = IMailboxReader) -> None:
        with self.assertRaises(UnauthorizedLogin):
            await self.portal.login(
                UsernamePassword(username.encode(), key.encode()), None, interface
            )

    async def test_plainAuthorizationIdentity(self) -> None:
        """
        A PLAIN login acting as itself (authzid empty or the user name)
        opens the view; acting as anyone else is refused, right key or not.
        """
        for authzid, opens in ((b"", True), (b"alice", True), (b"bob", False), (b"Alice", False)):
            plain = PlainLogin()
            plain.setResponse(authzid + b"\0alice\0" + self.alice.encode())
            if opens:
                _, avatar, _ = await self.portal.login(plain, None, IMailboxReader)
                self.assertEqual(avatar, MailboxReader("alice", None))
            else:
                with self.assertRaises(UnauthorizedLogin):
                    await self.portal.login(plain, None, IMailboxReader)

    async def test_accountName(self) -> None:
        """
        The account's own name with its key opens the account's view.
        """
        self.assertEqual(await self.reader("alice", self.alice), MailboxReader("alice", None))

    async def test_otherAccountName(self) -> None:
        """
        Another account's name with one's own key is refused.
        """
        await self.assertRefused("alice", self.bob)

    async def test_ownedAddressByOwner(self) -> None:
        """
        An owned address with its owner's key opens that inbox, lower case
        and without its +tag.
        """
        self.assertEqual(
            await self.reader("Alice+x@Owned.test", self.alice),
            MailboxReader("alice", "alice@owned.test"),
        )

    async def test_ownedAddressByOther(self) -> None:
        """
        Another account's key may not open an owned address.
        """
        await self.assertRefused("alice@owned.test", self.bob)

    async def test_privateDomainAddress(self) -> None:
        """
        Any address in a private domain is its owner's, and nobody else's.
        """
        self.assertEqual(
            await self.reader("x@private.test", self.alice),
            MailboxReader("alice", "x@private.test"),
        )
        await self.assertRefused("x@private.test", self.bob)

    async def test_publicAddressAnyKey(self) -> None:
        """
        A public address opens with any live key, as the key's account.
        """
        self.assertEqual(
            await self.reader("someone@public.test", self.bob),
            MailboxReader("bob", "someone@public.test"),
        )
        self.assertEqual(
            await self.reader("someone@public.test", self.alice),
            MailboxReader("alice", "someone@public.test"),
        )

    async def test_badOrRevokedKey(self) -> None:
        """
        A key that is not live opens nothing, not even a public address.
        """
        await self.assertRefused("someone@public.test", "k_nonsense")
        await self.assertRefused("someone@public.test", "")
        extra = await self.store.createKey("bob")
        self.assertEqual((await self.reader("bob", extra)).account, "bob")
        await self.store.revokeKey("bob", extra)
        await self.assertRefused("bob", extra)
        await self.assertRefused("someone@public.test", extra)

    async def test_notAnAddress(self) -> None:
        """
        A domain or an unknown name is not something a reader can open.
        """
        await self.assertRefused("private.test", self.alice)
        await self.assertRefused("nobody", self.alice)

    async def test_smtpRuleUnchanged(self) -> None:
        """
        SMTP still needs the user name's own account's key: a key that
        reads a public address does not submit as it, nor as another
        account.
        """
        self.assertEqual(await self.submitter("alice", self.alice), Submitter("alice"))
        self.assertEqual(await self.submitter("alice@owned.test", self.alice), Submitter("alice"))
        self.assertEqual(await self.submitter("x@private.test", self.alice), Submitter("alice"))
        await self.assertRefused("alice", self.bob, ISubmitter)
        await self.assertRefused("alice@owned.test", self.bob, ISubmitter)
        await self.assertRefused("someone@public.test", self.bob, ISubmitter)


class AcceptAnyTests(unittest.TestCase):
    """
    C{--accept-any-auth} is a development switch for SMTP; readers still
    need a live key.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.directory = tempfile.mkdtemp(prefix="capture-auth-")
        self.store = SQLiteStore(self.directory)
        self.store.start()
        _, self.alice = await self.store.createAccount("alice")
        self.portal = makePortal(self.store, acceptAny=True)

    async def tearDown(self) -> None:  # type: ignore[override]
        await self.store.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    async def test_smtpAnyPassword(self) -> None:
        _, avatar, _ = await self.portal.login(
            UsernamePassword(b"alice", b"wrong"), None, ISubmitter
        )
        self.assertEqual(avatar, Submitter("alice"))

    async def test_newAccountOnFirstUse(self) -> None:
        """
        An unknown name becomes an account whose key is the password, and
        that key then reads its view.
        """
        _, avatar, _ = await self.portal.login(
            UsernamePassword(b"carol", b"k_carolskey"), None, ISubmitter
        )
        self.assertEqual(avatar, Submitter("carol"))
        _, reader, _ = await self.portal.login(
            UsernamePassword(b"carol", b"k_carolskey"), None, IMailboxReader
        )
        self.assertEqual(reader, MailboxReader("carol", None))

    async def test_readerNeedsLiveKey(self) -> None:
        with self.assertRaises(UnauthorizedLogin):
            await self.portal.login(UsernamePassword(b"alice", b"wrong"), None, IMailboxReader)


class SASLTests(unittest.SynchronousTestCase):
    """
    The SASL mechanisms every protocol shares.
    """

    def test_mayActAs(self) -> None:
        """
        Only an empty authorization identity or the user name itself.
        """
        self.assertTrue(mayActAs(b"", b"alice"))
        self.assertTrue(mayActAs(b"alice", b"alice"))
        self.assertFalse(mayActAs(b"bob", b"alice"))

    def test_plainShape(self) -> None:
        """
        PLAIN takes exactly three NUL-separated parts.
        """
        plain = PlainLogin()
        self.assertEqual(plain.getChallenge(), b"")
        plain.setResponse(b"z\0u\0p")
        self.assertEqual((plain.authzid, plain.username, plain.password), (b"z", b"u", b"p"))
        self.assertFalse(plain.moreChallenges())
        for bad in (b"u\0p", b"a\0b\0c\0d", b""):
            self.assertRaises(IllegalResponse, PlainLogin().setResponse, bad)

    def test_loginPrompts(self) -> None:
        """
        LOGIN asks C{Username:} then C{Password:}, and takes no third answer.
        """
        login = LoginLogin()
        self.assertEqual(login.getChallenge(), b"Username:")
        login.setResponse(b"alice")
        self.assertTrue(login.moreChallenges())
        self.assertEqual(login.getChallenge(), b"Password:")
        login.setResponse(b"key")
        self.assertFalse(login.moreChallenges())
        self.assertEqual((login.username, login.password, login.authzid), (b"alice", b"key", b""))
        self.assertRaises(IllegalResponse, login.setResponse, b"more")
