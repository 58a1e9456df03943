# -*- test-case-name: tests.test_smtp_server,tests.test_smtp_unit -*-
"""
Credentials and avatars: one Portal for every protocol.

A login is a user name and an API key.  The checker finds out what the
pair stands for (L{LoginId}); the realm decides, per protocol, whether
that is enough:

  - SMTP (L{ISubmitter}): the user name is an account name, or an address
    or domain the account owns, and the key a live key of that account;
  - readers, POP3 and IMAP (L{IMailboxReader}): the key is any live key.
    The account's own name opens the account's view; an address opens that
    address's inbox alone, when the key's account may list it over HTTP
    (L{capture.access.visibility}: an address it owns or in its private
    domains, or any public address).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from capture.access import visibility
from capture.addresses import baseInbox, isAddress
from capture.store.interface import IStore
from capture.store.model import Conflict

_log = Logger()


class ISubmitter(Interface):
    """
    The avatar of an SMTP client that logged in: who submits the mail.
    """

    account = Attribute("str: the name of the authenticated account.")


@implementer(ISubmitter)
@attrs.frozen
class Submitter:
    account: str


class IMailboxReader(Interface):
    """
    The avatar of a mail reader (POP3, IMAP) that logged in: whose key it
    used, and which mail it opened.
    """

    account = Attribute("str: the account whose API key was given.")
    inbox = Attribute(
        "str | None: the one inbox opened (lower case, no +tag), or L{None} "
        "for the account's own view."
    )


@implementer(IMailboxReader)
@attrs.frozen
class MailboxReader:
    account: str
    inbox: str | None = None


@attrs.frozen
class LoginId:
    """
    What a user name and key stand for, as the checker found it: the
    avatar id the realm turns into each protocol's avatar.

    @ivar username: The user name as given (stripped).
    @ivar submitter: The account SMTP logs in as (the user name's account,
        when the key is that account's), or L{None}.
    @ivar keyAccount: The account of the key, when it is a live key, or
        L{None}.
    """

    username: str
    submitter: str | None
    keyAccount: str | None


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


@implementer(ICredentialsChecker)
@attrs.define
class ApiKeyChecker:
    """
    Check a user name and API key against the store.

    @ivar acceptAny: Development mode: any user name and password are
        accepted, and an unknown user name becomes a new account whose first
        key is the password given.
    """

    store: IStore
    acceptAny: bool = False
    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return ensureDeferred(self._check(_text(credentials.username), _text(credentials.password)))

    async def _check(self, username: str, key: str) -> LoginId:
        username = username.strip()
        # One read for both (a read thread round trip is a measurable part
        # of a login at a new connection per message).
        keyAccount, account = await self.store.checkLogin(username, key)
        submitter: str | None
        if self.acceptAny:
            if account is not None:
                submitter = str(account)
            else:
                submitter = await self._createOnFirstUse(username, key)
                keyAccount = await self.store.accountForKey(key) if key else None
        else:
            submitter = account if account is not None and account == keyAccount else None
        if submitter is None and keyAccount is None:
            raise UnauthorizedLogin()
        return LoginId(username=username, submitter=submitter, keyAccount=keyAccount)

    async def _createOnFirstUse(self, name: str, key: str) -> str:
        if not name:
            raise UnauthorizedLogin()
        try:
            await self.store.createAccount(name, key or None)
        except Conflict:
            # Another connection created it a moment ago, or the password is
            # another account's key: either way, log in only as an account
            # that exists.
            if await self.store.resolveLogin(name) == name:
                return name
            raise UnauthorizedLogin() from None
        _log.info("Created account {name!r} on first use (--accept-any-auth)", name=name)
        return name


@attrs.define
class LoginThrottle:
    """
    Failed logins per client address, shared by every listener: after
    C{delayAfter} failures within C{window} seconds each further failure is
    answered C{delay} seconds late, and after C{refuseAfter} the client may
    not try again until its failures age out of the window.

    API keys are far too long to guess, so this is not what keeps accounts
    safe; it keeps a misconfigured or hostile client from spending the
    server's time on login after login.

    @ivar clock: What tells the time (the reactor).
    """

    clock: Any
    window: float = 300.0
    delayAfter: int = 10
    refuseAfter: int = 30
    delay: float = 1.0
    maxClients: int = 10_000
    _failures: dict[str, list[float]] = attrs.field(factory=dict)

    def _recent(self, client: str) -> list[float]:
        cutoff = self.clock.seconds() - self.window
        found = [t for t in self._failures.get(client, ()) if t > cutoff]
        if found:
            self._failures[client] = found
        else:
            self._failures.pop(client, None)
        return found

    def refused(self, client: str) -> bool:
        """
        Whether C{client} has failed too often to try again now.
        """
        return len(self._recent(client)) >= self.refuseAfter

    def failed(self, client: str) -> float:
        """
        Count a failed login from C{client}.

        @return: How many seconds to wait before answering it.
        """
        recent = self._recent(client)
        if client not in self._failures and len(self._failures) >= self.maxClients:
            # Bounded memory: forget the client seen longest ago.
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]
        recent.append(self.clock.seconds())
        self._failures[client] = recent
        return self.delay if len(recent) > self.delayAfter else 0.0

    def succeeded(self, client: str) -> None:
        """
        A client that logs in is forgiven its earlier failures.
        """
        self._failures.pop(client, None)


@implementer(IRealm)
@attrs.frozen
class CaptureRealm:
    """
    Give each protocol the avatar it asks for.
    """

    store: IStore

    def requestAvatar(
        self, avatarId: Any, mind: Any, *interfaces: Any
    ) -> tuple[Any, Any, Callable[[], None]] | Deferred[tuple[Any, Any, Callable[[], None]]]:
        # A login can be good for one protocol and not another (another
        # account's key for a public address reads it, but may not submit
        # as it): refused here, per interface, not in the checker.
        if ISubmitter in interfaces:
            if avatarId.submitter is None:
                raise UnauthorizedLogin()
            return ISubmitter, Submitter(account=avatarId.submitter), lambda: None
        if IMailboxReader in interfaces:
            return ensureDeferred(self._reader(avatarId))
        raise NotImplementedError(f"no avatar for {interfaces!r}")

    async def _reader(self, login: LoginId) -> tuple[Any, Any, Callable[[], None]]:
        account = login.keyAccount
        if account is None:
            raise UnauthorizedLogin()
        if login.username == account:
            return IMailboxReader, MailboxReader(account=account), lambda: None
        if not isAddress(login.username) or await self.store.resolveLogin(login.username) == (
            login.username
        ):
            # Another account's name, a domain, or nothing readable.
            raise UnauthorizedLogin()
        inbox = baseInbox(login.username)
        owner = await self.store.inboxOwner(inbox)
        if visibility(account, owner) is None:
            raise UnauthorizedLogin()
        return IMailboxReader, MailboxReader(account=account, inbox=inbox), lambda: None


def makePortal(store: IStore, acceptAny: bool = False) -> Portal:
    """
    The one portal every listener shares.
    """
    return Portal(CaptureRealm(store), [ApiKeyChecker(store, acceptAny=acceptAny)])
