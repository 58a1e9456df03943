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

SASL (L{PlainLogin}, L{LoginLogin}, L{MECHANISMS}) is here too, one for
SMTP's AUTH, POP3's AUTH and IMAP's AUTHENTICATE, and so is its one rule on
the authorization identity (L{mayActAs}), applied by the checker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, ensureDeferred, fail
from twisted.logger import Logger
from twisted.mail.interfaces import IChallengeResponse
from zope.interface import Attribute, Interface, implementer

from capture.access import visibility
from capture.addresses import inboxOf
from capture.store.errors import Conflict
from capture.store.interface import IAccountStore, IStore

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


class IllegalResponse(ValueError):
    """
    A SASL response that does not have its mechanism's shape.
    """


def mayActAs(authzid: bytes | str, authcid: bytes | str) -> bool:
    """
    Whether a client that authenticates as C{authcid} may act as
    C{authzid} (SASL's authorization identity, RFC 4616 PLAIN): only as
    itself, named or not.  Capture has no proxy logins (no account may
    read as another), so anything else is a failed login, the same in
    every protocol.
    """
    return not authzid or _text(authzid) == _text(authcid)


@implementer(IChallengeResponse)
class PlainLogin(UsernamePassword):
    """
    SASL PLAIN (RFC 4616): one response, C{authzid NUL authcid NUL
    password}, after an empty challenge.

    @ivar authzid: The authorization identity (empty when not given).
    """

    name = b"PLAIN"

    def __init__(self) -> None:
        super().__init__(b"", b"")
        self.authzid = b""

    def getChallenge(self) -> bytes:
        return b""

    def setResponse(self, response: bytes) -> None:
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise IllegalResponse("a PLAIN response has three parts")
        self.authzid, self.username, self.password = parts

    def moreChallenges(self) -> bool:
        return False


@implementer(IChallengeResponse)
class LoginLogin(UsernamePassword):
    """
    SASL LOGIN (draft-murchison-sasl-login): the user name, then the
    password, each asked for with the prompts other servers send
    (C{Username:}, C{Password:}; Twisted's end in a NUL byte).
    """

    name = b"LOGIN"
    authzid = b""

    def __init__(self) -> None:
        super().__init__(b"", b"")
        self._prompts = [b"Password:", b"Username:"]
        self._fields = ["password", "username"]

    def getChallenge(self) -> bytes:
        return self._prompts.pop()

    def setResponse(self, response: bytes) -> None:
        if not self._fields:
            raise IllegalResponse("LOGIN takes two responses")
        setattr(self, self._fields.pop(), response)

    def moreChallenges(self) -> bool:
        return bool(self._prompts)


# The SASL mechanisms every protocol offers, in the order they are listed.
MECHANISMS: dict[bytes, Callable[[], PlainLogin | LoginLogin]] = {
    b"PLAIN": PlainLogin,
    b"LOGIN": LoginLogin,
}


@implementer(ICredentialsChecker)
@attrs.define
class ApiKeyChecker:
    """
    Check a user name and API key against the store.

    @ivar acceptAny: Development mode: any user name and password are
        accepted, and an unknown user name becomes a new account whose first
        key is the password given.
    """

    store: IAccountStore
    acceptAny: bool = False
    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        if not mayActAs(getattr(credentials, "authzid", b""), credentials.username):
            return fail(UnauthorizedLogin())
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
        inbox = inboxOf(login.username)
        if inbox is None or await self.store.resolveLogin(login.username) == login.username:
            # Another account's name, a domain, or nothing readable.
            raise UnauthorizedLogin()
        owner = await self.store.inboxOwner(inbox)
        if visibility(account, owner) is None:
            raise UnauthorizedLogin()
        return IMailboxReader, MailboxReader(account=account, inbox=inbox), lambda: None


def makePortal(store: IStore, acceptAny: bool = False) -> Portal:
    """
    The one portal every listener shares.
    """
    return Portal(CaptureRealm(store), [ApiKeyChecker(store, acceptAny=acceptAny)])
