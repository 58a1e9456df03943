"""
The web session and CSRF cookies, unit by unit: what is accepted and what
is not.
"""

from __future__ import annotations

import base64
import os

from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from capture.web.websession import (
    BROWSER_COOKIE,
    SESSION_COOKIE,
    SessionClaim,
    WebSessions,
    loadSecret,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _request() -> Request:
    request = Request(DummyChannel())
    request.args = {}
    return request


def _sessions(clock: _Clock | None = None) -> WebSessions:
    return WebSessions(b"s" * 32, clock=clock or _Clock())


def test_issuedCookieVerifies() -> None:
    clock = _Clock()
    sessions = _sessions(clock)
    value = sessions.issue("alice", "k_abcd")
    assert sessions.verify(value) == SessionClaim("alice", "k_abcd", 1_000_000 + sessions.lifetime)


def test_generationRoundTrips() -> None:
    """
    The account's session generation at sign-in is part of the signed
    claim; a cookie from before generations (three fields, same MAC
    scheme) reads as generation 0.
    """
    sessions = _sessions()
    claim = sessions.verify(sessions.issue("alice", "k_abcd", 7))
    assert claim is not None and claim.generation == 7
    payload = b"YWxpY2U|a19hYmNk|%d" % (1_000_000 + sessions.lifetime)
    old = payload + b"." + base64.urlsafe_b64encode(
        sessions._mac(b"session", payload)).rstrip(b"=")
    assert sessions.verify(old) == SessionClaim("alice", "k_abcd",
                                                1_000_000 + sessions.lifetime, 0)


def test_accountWithSeparatorsRoundTrips() -> None:
    sessions = _sessions()
    claim = sessions.verify(sessions.issue("a|b.c=", "p|."))
    assert claim is not None and (claim.account, claim.keyPrefix) == ("a|b.c=", "p|.")


def test_everyChangedByteIsRejected() -> None:
    """
    A cookie with any one byte changed (account, prefix, time or MAC) is
    no session.
    """
    sessions = _sessions()
    value = sessions.issue("alice", "k_abcd")
    for i in range(len(value)):
        for replacement in (b"A", b"_"):
            forged = value[:i] + replacement + value[i + 1:]
            if forged != value:
                assert sessions.verify(forged) is None, forged


def test_anotherSecretsCookieIsRejected() -> None:
    value = WebSessions(b"x" * 32, clock=_Clock()).issue("alice", "k_abcd")
    assert _sessions().verify(value) is None


def test_expiredCookieIsRejected() -> None:
    clock = _Clock()
    sessions = _sessions(clock)
    value = sessions.issue("alice", "k_abcd")
    clock.now += sessions.lifetime - 1
    assert sessions.verify(value) is not None
    clock.now += 1
    assert sessions.verify(value) is None


def test_malformedValuesAreRejected() -> None:
    sessions = _sessions()
    for value in (None, b"", b".", b"abc", b"a|b|c.", b"a|b.zz", b"\xff\xfe.\x00",
                  b"YQ|Yg|notanumber." + b"A" * 43, b"x" * 5000):
        assert sessions.verify(value) is None, value


def test_csrfTokenRoundTrip() -> None:
    """
    A browser's token is accepted from the form field or the header; a
    token of another browser, none, or one without its browser cookie is
    not.
    """
    sessions = _sessions()
    first = _request()
    token = sessions.csrfToken(first)
    browser = first.received_cookies[BROWSER_COOKIE]
    assert [c for c in first.cookies if c.startswith(BROWSER_COOKIE + b"=")]

    def posted(cookie: bytes | None, field: str | None = None, header: str | None = None) -> bool:
        request = _request()
        request.method = b"POST"
        if cookie is not None:
            request.received_cookies[BROWSER_COOKIE] = cookie
        if field is not None:
            request.args[b"csrf"] = [field.encode()]
        if header is not None:
            request.requestHeaders.setRawHeaders(b"x-capture-csrf", [header.encode()])
        return sessions.csrfValid(request)

    assert posted(browser, field=token)
    assert posted(browser, header=token)
    assert not posted(browser)
    assert not posted(browser, field=token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not posted(b"another-browser", field=token)
    assert not posted(None, field=token)
    assert not posted(browser, field="\u00e9" + token)


def test_csrfTokenStableForOneBrowser() -> None:
    sessions = _sessions()
    request = _request()
    request.received_cookies[BROWSER_COOKIE] = b"same-browser"
    again = _request()
    again.received_cookies[BROWSER_COOKIE] = b"same-browser"
    assert sessions.csrfToken(request) == sessions.csrfToken(again)
    assert not request.cookies


def test_signOutClearsTheCookie() -> None:
    request = _request()
    _sessions().signOut(request)
    [cookie] = request.cookies
    assert cookie.startswith(SESSION_COOKIE + b"=;")
    assert b"Max-Age=0" in cookie and b"HttpOnly" in cookie and b"SameSite=strict" in cookie


def test_secretIsKeptAndReused(tmp_path: object) -> None:
    directory = str(tmp_path)
    secret = loadSecret(directory)
    assert len(secret) == 32
    assert loadSecret(directory) == secret
    assert os.stat(os.path.join(directory, "web-secret")).st_mode & 0o777 == 0o600


def test_cookiesAreSecureOverTLS() -> None:
    """
    On a request that came over TLS every cookie (session, sign-out,
    browser id) carries C{Secure}; on plain HTTP (loopback) it does not,
    unless the server says always.  All are HttpOnly and SameSite=Strict.
    """
    def cookies(tls: bool, always: bool = False) -> list[bytes]:
        channel = DummyChannel()
        if tls:
            channel.transport = DummyChannel.SSL()
        request = Request(channel)
        request.args = {}
        sessions = WebSessions(b"s" * 32, clock=_Clock(), secure=always)
        sessions.signIn(request, "alice", "k_abcdef")
        sessions.signOut(request)
        sessions.csrfToken(request)
        assert len(request.cookies) == 3
        for cookie in request.cookies:
            assert b"HttpOnly" in cookie and b"SameSite=strict" in cookie
        return list(request.cookies)

    assert all(b"; Secure" in c for c in cookies(tls=True))
    assert all(b"; Secure" in c for c in cookies(tls=False, always=True))
    assert not any(b"Secure" in c for c in cookies(tls=False))


def test_signInIssuesAFreshSession() -> None:
    """
    Signing in never keeps a session cookie the browser brought (session
    fixation): the new value is made from the account and key alone.
    """
    request = _request()
    planted = _sessions().issue("mallory", "k_mallor")
    request.received_cookies[SESSION_COOKIE] = planted
    _sessions().signIn(request, "alice", "k_alicek")
    [cookie] = request.cookies
    value = cookie.split(b";")[0].split(b"=", 1)[1]
    assert value != planted
    claim = _sessions().verify(value)
    assert claim is not None and (claim.account, claim.keyPrefix) == ("alice", "k_alicek")


def test_csrfTokenIsBoundToTheSession() -> None:
    """
    A token made for a browser id before sign-in (or under another
    session) is refused once that browser carries a session: someone who
    planted a browser id they hold a token for gains nothing.
    """
    sessions = _sessions()
    before = _request()
    before.received_cookies[BROWSER_COOKIE] = b"planted-browser"
    planted = sessions.csrfToken(before).encode()
    after = _request()
    after.received_cookies[BROWSER_COOKIE] = b"planted-browser"
    after.received_cookies[SESSION_COOKIE] = sessions.issue("alice", "k_alicek")
    after.args = {b"csrf": [planted]}
    assert not sessions.csrfValid(after)
    after.args = {b"csrf": [sessions.csrfToken(after).encode()]}
    assert sessions.csrfValid(after)
    # Signing in and out within a request: later tokens follow the session.
    signing = _request()
    signing.received_cookies[BROWSER_COOKIE] = b"planted-browser"
    sessions.signIn(signing, "alice", "k_alicek")
    inSession = sessions.csrfToken(signing)
    assert inSession != planted.decode()
    sessions.signOut(signing)
    assert sessions.csrfToken(signing) == planted.decode()
