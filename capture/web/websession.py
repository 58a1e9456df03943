# -*- test-case-name: tests.test_websession -*-
"""
The web page's sign-in session and its CSRF tokens, in signed cookies.

Signing in with an API key sets C{capture_session}: the account, the
prefix of the key used, when it expires, the account's session generation,
and an HMAC over them with the server's secret.  No session is kept on the
server, so any node holding the secret accepts it; the key itself never
leaves the sign-in form.  A cookie whose HMAC is wrong or whose time is up
is ignored (the visitor is signed out); one whose key was revoked since, or
whose generation is not the account's any more (signing out raises it:
L{IStore.endSessions}), is refused by L{WebSessions.signedIn}, which asks
the store for both in one read.

Every visitor also gets C{capture_browser}, a random id; the CSRF token
put in each state-changing form is an HMAC of that id and of the session
cookie's value, so a page from another site can neither read it nor make
it (double-submit, bound to the secret).  Binding it to the session too
means a token learnt for a browser id is no use once that browser signs
in: cookies are not kept apart by port, so another program on the same
host could plant a browser id it holds a token for.  Both cookies are
C{HttpOnly} and C{SameSite=Strict}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from typing import cast

import attrs
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from capture.store.errors import NotFound
from capture.store.interface import IAccountStore

SESSION_COOKIE = b"capture_session"
BROWSER_COOKIE = b"capture_browser"
CSRF_FIELD = b"csrf"
CSRF_HEADER = b"x-capture-csrf"
_SECRET_FILE = "web-secret"


@attrs.frozen
class SessionClaim:
    """
    What a valid session cookie says.

    @ivar account: The account signed in.
    @ivar keyPrefix: The prefix of the API key it signed in with (the
        session ends when that key is revoked).
    @ivar expires: When the session ends, in seconds since the epoch.
    @ivar generation: The account's session generation at sign-in; the
        session ends when signing out raises it.
    """

    account: str
    keyPrefix: str
    expires: int
    generation: int = 0


def loadSecret(directory: str) -> bytes:
    """
    The server's signing secret, kept in C{directory} (the data directory),
    made on first use: sessions survive a restart, and nodes sharing the
    directory's secret share sessions.
    """
    path = os.path.join(directory, _SECRET_FILE)
    try:
        with open(path, "rb") as f:
            secret = f.read()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".new", path)
    return secret


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


class WebSessions:
    """
    Issues and checks the session and CSRF cookies with one secret.

    @ivar lifetime: Seconds a sign-in lasts.
    @ivar secure: Whether cookies always carry C{Secure}; they do anyway
        on a request that came over TLS, and plain HTTP (loopback) needs
        it off.
    """

    lifetime = 7 * 24 * 3600

    def __init__(
        self, secret: bytes, clock: Callable[[], float] = time.time, secure: bool = False
    ) -> None:
        self._secret = secret
        self._clock = clock
        self.secure = secure

    def _mac(self, purpose: bytes, payload: bytes) -> bytes:
        return hmac.new(self._secret, purpose + b"\0" + payload, hashlib.sha256).digest()

    # Sessions

    def issue(self, account: str, keyPrefix: str, generation: int = 0) -> bytes:
        """
        A session cookie's value for C{account}, signed in with the key
        starting C{keyPrefix} while its session generation is C{generation}.
        """
        expires = int(self._clock()) + self.lifetime
        payload = b"|".join([
            _b64(account.encode("utf-8")), _b64(keyPrefix.encode("utf-8")), b"%d" % expires,
            b"%d" % generation,
        ])
        return payload + b"." + _b64(self._mac(b"session", payload))

    def verify(self, value: bytes | None) -> SessionClaim | None:
        """
        The claim of a session cookie's value, or L{None} for a value that
        is missing, malformed, forged or expired.
        """
        if not value or len(value) > 1024:
            return None
        payload, _, mac = value.rpartition(b".")
        try:
            # Compared in its one canonical spelling: the last base64
            # character has spare bits, which must not make a second
            # cookie value of the same session.
            if not hmac.compare_digest(mac, _b64(self._mac(b"session", payload))):
                return None
            fields = payload.split(b"|")
            # Cookies from before generations (three fields) are of
            # generation 0, which an account has until it first signs out.
            account, prefix, expires, generation = (
                fields if len(fields) == 4 else [*fields, b"0"]
            )
            claim = SessionClaim(
                _unb64(account).decode("utf-8"), _unb64(prefix).decode("utf-8"),
                int(expires), int(generation),
            )
        except ValueError:
            return None
        if claim.expires <= self._clock():
            return None
        return claim

    def claim(self, request: IRequest) -> SessionClaim | None:
        """
        The request's session claim (its key not yet checked against the
        store), or L{None}.
        """
        return self.verify(request.getCookie(SESSION_COOKIE))

    async def signedIn(self, request: IRequest, store: IAccountStore) -> str | None:
        """
        The account signed in on C{request}, or L{None}.  A session whose
        key was revoked since sign-in, or that signing out ended, is over,
        and its cookie is cleared.
        """
        claim = self.claim(request)
        if claim is None:
            return None
        if await store.sessionGeneration(claim.account, claim.keyPrefix) == claim.generation:
            return claim.account
        self.signOut(request)
        return None

    async def end(self, request: IRequest, store: IAccountStore) -> None:
        """
        Sign out: clear the request's session cookie, and end every session
        of its account (the cookie may have been copied; with no session
        kept on the server, raising the account's generation is what makes
        the old value worthless, also after a restart and on other nodes).
        """
        claim = self.claim(request)
        self.signOut(request)
        if claim is not None:
            try:
                await store.endSessions(claim.account)
            except NotFound:
                pass

    def signIn(self, request: IRequest, account: str, keyPrefix: str,
               generation: int = 0) -> None:
        value = self.issue(account, keyPrefix, generation)
        self._setCookie(request, SESSION_COOKIE, value, self.lifetime)
        # The rest of this request (a page's CSRF tokens) sees the new session.
        cast(Request, request).received_cookies[SESSION_COOKIE] = value

    def signOut(self, request: IRequest) -> None:
        self._setCookie(request, SESSION_COOKIE, b"", 0)
        cast(Request, request).received_cookies.pop(SESSION_COOKIE, None)

    # CSRF

    def csrfToken(self, request: IRequest) -> str:
        """
        The CSRF token for the request's browser and session; gives the
        browser its id cookie first if it has none.
        """
        browser = request.getCookie(BROWSER_COOKIE)
        if not browser or len(browser) > 64:
            browser = _b64(secrets.token_bytes(18))
            self._setCookie(request, BROWSER_COOKIE, browser, None)
            # Later calls in this request see the id just given.
            cast(Request, request).received_cookies[BROWSER_COOKIE] = browser
        return self._csrf(request, browser).decode("ascii")

    def _csrf(self, request: IRequest, browser: bytes) -> bytes:
        session = request.getCookie(SESSION_COOKIE) or b""
        return _b64(self._mac(b"csrf", browser + b"\0" + session[:1024]))

    def csrfValid(self, request: IRequest) -> bool:
        """
        Whether the request carries the CSRF token of its browser and
        session, in the form field C{csrf} or the C{X-Capture-CSRF} header.
        """
        browser = request.getCookie(BROWSER_COOKIE)
        if not browser or len(browser) > 64:
            return False
        given = request.getHeader(CSRF_HEADER)
        if given is None:
            values = request.args.get(CSRF_FIELD)
            given = values[0] if values else None
        if not given:
            return False
        return hmac.compare_digest(given, self._csrf(request, browser))

    def _setCookie(self, request: IRequest, name: bytes, value: bytes, maxAge: int | None) -> None:
        # IRequest's addCookie does not declare httpOnly and sameSite.
        cast(Request, request).addCookie(
            name, value, path=b"/", httpOnly=True, sameSite="strict",
            secure=self.secure or request.isSecure(),
            max_age=None if maxAge is None else str(maxAge).encode("ascii"),
        )
