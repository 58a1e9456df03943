"""
The web pages' frame on a real server: the home page, "Check the mail!",
signing in and out, CSRF, the pages beside the API, static files.
"""

from __future__ import annotations

import http.cookiejar
import json
import secrets
import urllib.parse

import pytest

from tests.harness import CaptureServer
from tests.webclient import WebClient, mainContent


def test_homePage(server: CaptureServer) -> None:
    """
    The home page says what Capture is, has the address box and the
    button, the SMTP settings with the bound port, and a sign-in form; it
    carries the page security headers.
    """
    client = WebClient(server)
    status, headers, body = client.get("/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body.startswith(b"<!DOCTYPE html>")
    assert b"it accepts every message sent to it, delivers none" in body
    assert b'<label for="address">Email address</label>' in body
    assert b">Check the mail!</button>" in body
    assert b"<code>%d</code>" % server.ports["smtp"] in body
    assert b'action="/signin" method="post"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert client.cookie("capture_browser")
    assert client.csrf


def test_signInPage(server: CaptureServer) -> None:
    """
    C{GET /signin} (a bookmark, a typed address) is the sign-in form, not
    the 405 page; its C{next} is kept (when local) and signing in there
    lands on it; signed in, the page says so.
    """
    client = WebClient(server)
    status, headers, body = client.get("/signin?next=/account/settings")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    main = mainContent(body)
    assert b'action="/signin" method="post"' in main
    assert b'name="next" value="/account/settings"' in main
    status, headers, _ = client.post("/signin", {"key": server.key or "",
                                                 "next": "/account/settings"})
    assert status == 303 and headers["location"] == "/account/settings"
    status, _, body = client.get("/signin")
    assert status == 200 and b"Signed in as " in mainContent(body)
    status, _, body = WebClient(server).get("/signin?next=//evil.example")
    assert status == 200 and b"evil" not in mainContent(body)


def _signedIn(server: CaptureServer) -> tuple[str, str, WebClient]:
    name = f"out{secrets.token_hex(4)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    client = WebClient(server)
    client.signIn(key)
    return name, key, client


def _withSession(server: CaptureServer, cookie: str) -> WebClient:
    """
    Another browser holding a copy of a session cookie (as one kept by an
    attacker, a proxy log or a second tab would be).
    """
    other = WebClient(server)
    other.get("/")
    other.cookies.set_cookie(http.cookiejar.Cookie(
        0, "capture_session", cookie, None, False, "127.0.0.1", False, False, "/", True,
        False, None, False, None, None, {}))
    return other


def test_signOutEndsTheSession(freshServer: CaptureServer) -> None:
    """
    After C{POST /signout} the old session cookie no longer opens
    C{/account} nor reads through the API (it did: the cookie is signed,
    with no server state); every session of the account ends, also after
    a restart; signing in again works, and that session survives a
    restart.  The legacy C{POST /api/auth/logout} ends it the same way.
    """
    name, key, client = _signedIn(freshServer)
    old = client.cookie("capture_session")
    assert old
    second = _withSession(freshServer, old)
    assert second.get("/account")[0] == 200
    assert client.post("/signout")[0] == 303
    for browser in (second, _withSession(freshServer, old)):
        status, headers, body = browser.get("/account")
        assert status == 401 and b"Sign in first" in mainContent(body)
        assert "capture_session=;" in headers.get("set-cookie", "")
    status, _, body = _withSession(freshServer, old).get("/api/me")
    assert status == 401
    client.get("/")
    client.signIn(key)
    fresh = client.cookie("capture_session")
    assert fresh and fresh != old
    freshServer.stop()
    freshServer.start()
    assert _withSession(freshServer, old).get("/account")[0] == 401
    assert _withSession(freshServer, fresh).get("/account")[0] == 200
    legacy = _withSession(freshServer, fresh)
    status, _, body = legacy.request("POST", "/api/auth/logout")
    assert (status, json.loads(body)) == (200, {"ok": True})
    assert _withSession(freshServer, fresh).get("/account")[0] == 401
    assert json.loads(_withSession(freshServer, fresh).get("/api/me")[2])["error"] == "Unauthorized"


def test_checkTheMailOpensTheInbox(server: CaptureServer) -> None:
    """
    The form's GET goes to the inbox's page, the address lower-cased.
    """
    client = WebClient(server)
    status, headers, _ = client.get("/inbox?address=" + urllib.parse.quote(" Bob+x@Example.COM "))
    assert status == 303
    assert headers["location"] == "/inbox/bob+x@example.com"


@pytest.mark.parametrize("address", ["", "not an address", "@example.com", "<script>@x.com", "x" * 400])
def test_checkTheMailRefusesNonAddresses(server: CaptureServer, address: str) -> None:
    """
    Anything that is not an address re-shows the home page with the
    reason next to the box, escaped, and the next request is served.
    """
    client = WebClient(server)
    status, _, body = client.get("/inbox?address=" + urllib.parse.quote(address))
    assert status == 400
    assert b'role="alert"' in body and b'aria-invalid="true"' in body
    assert b"<script>@" not in body
    assert client.get("/")[0] == 200


def test_signInAndOut(server: CaptureServer) -> None:
    client = WebClient(server)
    client.signIn(server.key)
    session = client.cookie("capture_session")
    assert session
    status, _, body = client.get("/")
    assert status == 200
    assert b"Signed in as <strong>%s</strong>" % server.account.encode() in body
    assert b"<code>%s</code>" % server.account.encode() in body
    status, headers, _ = client.post("/signout")
    assert (status, headers["location"]) == (303, "/")
    assert client.cookie("capture_session") is None
    assert b"Signed in as" not in client.get("/")[2]


def test_signInWithABadKey(server: CaptureServer) -> None:
    """
    A wrong key: 401 with a clear message by the field, no session.
    """
    client = WebClient(server)
    status, _, body = client.post("/signin", {"key": "k_nottherightkeyatall00000"})
    assert status == 401
    assert b"That API key is wrong or was revoked." in body
    assert b'aria-invalid="true"' in body
    assert client.cookie("capture_session") is None
    status, _, body = client.post("/signin", {"key": ""})
    assert status == 401
    client.signIn(server.key)


@pytest.mark.serverOptions("--max-failed-logins", "12")
def test_repeatedBadSignInsAreSlowedThenRefused(freshServer: CaptureServer) -> None:
    """
    The mail listeners' login throttle holds for the sign-in form too:
    failures past the tenth are answered a second late (not timed here),
    and after C{--max-failed-logins} sign-in is refused (429) even with
    the right key, while other pages are still served.
    """
    client = WebClient(freshServer)
    statuses = [client.post("/signin", {"key": f"k_wrong{i}"})[0] for i in range(12)]
    assert statuses == [401] * 12
    status, _, body = client.post("/signin", {"key": freshServer.key})
    assert status == 429
    assert b"Too many failed sign-ins" in body
    assert client.cookie("capture_session") is None
    assert client.get("/")[0] == 200


def test_formsWithoutTheirTokenAreRefused(server: CaptureServer) -> None:
    """
    Sign-in and sign-out without the browser's CSRF token, with another
    browser's, or with a token but no browser cookie: 403, nothing done.
    """
    client = WebClient(server)
    client.get("/")
    status, _, body = client.post("/signin", {"key": server.key}, csrf=False)
    assert status == 403 and b"This form has expired" in body
    assert client.cookie("capture_session") is None
    other = WebClient(server)
    other.get("/")
    status, _, _ = client.post("/signin", {"key": server.key, "csrf": other.csrf})
    assert status == 403
    stranger = WebClient(server)
    status, _, _ = stranger.request("POST", "/signin", {"key": server.key, "csrf": client.csrf})
    assert status == 403
    client.signIn(server.key)
    status, _, _ = client.post("/signout", csrf=False)
    assert status == 403
    assert b"Signed in as" in client.get("/")[2]


def test_forgedOrRevokedSessionIsSignedOut(server: CaptureServer) -> None:
    """
    A session cookie with a byte changed is ignored; one whose key was
    revoked since ends (and is cleared).
    """
    key = server.cli("key", "create", server.account).stdout.split()[-1]
    client = WebClient(server)
    client.signIn(key)
    session = client.cookie("capture_session")
    assert session is not None
    account, rest = session.split("|", 1)
    client.setCookie("capture_session", account[:-1] + ("A" if account[-1] != "A" else "B") + "|" + rest)
    assert b"Signed in as" not in client.get("/")[2]
    client.setCookie("capture_session", session)
    assert b"Signed in as" in client.get("/")[2]
    server.cli("key", "revoke", server.account, key[:8])
    assert b"Signed in as" not in client.get("/")[2]
    assert client.cookie("capture_session") is None
    # The page that ended the session carries a token for the browser
    # without it: signing in again from that page works.
    client.signIn(server.key or "")


def test_apiTakesTheSessionCookieForReadingOnly(server: CaptureServer) -> None:
    """
    A signed-in browser reads through the API with its cookie; a change
    made with the cookie alone is made as nobody.
    """
    client = WebClient(server)
    status, _, body = client.get("/api/me")
    assert status == 401
    client.signIn(server.key)
    status, _, body = client.get("/api/me")
    assert status == 200 and json.loads(body)["_id"] == server.account
    status, _, body = client.request("POST", "/api/addresses/cookie-reserve@example.org")
    assert status == 401
    status, _, body = client.get("/api/addresses/cookie-reserve@example.org")
    assert status == 404 or json.loads(body).get("account") != server.account


def test_pagesAndApiSideBySide(server: CaptureServer) -> None:
    """
    Paths under the API's own segments (C{/api/}, C{/livez}, ...) answer
    JSON, also for one that does not exist; every other path is a page and
    answers HTML, a path that is nothing the pages' 404 (a browser sent to
    C{/nope} or C{/docs} gets a page, not JSON).
    """
    client = WebClient(server)
    status, headers, body = client.get("/inbox/a/b/c/d/e")
    assert status == 404 and headers["content-type"] == "text/html; charset=utf-8"
    assert b"Nothing here" in mainContent(body)
    for path in ("/nope", "/docs", "/api.json", "/favicon.ico"):
        status, headers, body = client.get(path)
        assert status == 404 and headers["content-type"] == "text/html; charset=utf-8", path
        assert b"Nothing here" in mainContent(body)
    for path in ("/api/nope", "/api", "/livez/x", "/mail/nope"):
        status, headers, body = client.get(path)
        assert status == 404 and headers["content-type"] == "application/json; charset=utf-8"
        assert json.loads(body)["error"] == "Not Found"
    status, headers, _ = client.get("/livez")
    assert status == 200
    status, headers, body = client.request("DELETE", "/")
    assert status == 405 and headers["content-type"] == "text/html; charset=utf-8"


def test_staticFiles(server: CaptureServer) -> None:
    """
    The static files are served with their types and C{nosniff}; a missing
    file, the directory itself, a file used as a directory or a path out
    of the folder is the pages' own 404 page (the layout, the one "nothing
    here" text, C{nosniff}), not Twisted's bare one, to GET and HEAD; and
    the next request is served.
    """
    client = WebClient(server)
    status, headers, body = client.get("/static/capture.css")
    assert status == 200 and headers["content-type"] == "text/css; charset=utf-8"
    assert b"prefers-color-scheme: dark" in body
    status, headers, _ = client.get("/static/capture.js")
    assert status == 200 and headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff"
    for path in ("/static/", "/static/../setup.cfg", "/static/%2e%2e/pagebase.py",
                 "/static/nothing.css", "/static/capture.js/", "/static/capture.js/x",
                 "/static//capture.js", "/static/%2fetc%2fpasswd", "/static",
                 "/static/a%00b", "/static/./capture.js"):
        status, headers, body = client.get(path)
        assert status == 404, path
        assert headers["content-type"] == "text/html; charset=utf-8", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert body.startswith(b"<!DOCTYPE html>") and b'href="/static/capture.css"' in body
        assert b"There is no such inbox or message, or it is private." in mainContent(body)
        status, headers, body = client.request("HEAD", path)
        assert (status, headers["x-content-type-options"], body) == (404, "nosniff", b""), path
        assert client.get("/static/capture.js")[0] == 200


def test_signInPageForAPageThatNeedsIt(server: CaptureServer) -> None:
    """
    A page that needs a session answers 401 with the sign-in form on the
    page itself (its text says "sign in below"), and signing in there
    comes back to that page.
    """
    client = WebClient(server)
    status, _, body = client.get("/account/settings")
    main = mainContent(body)
    assert status == 401 and b"sign in below" in main
    assert b'action="/signin" method="post"' in main
    assert b'<input type="hidden" name="next" value="/account/settings"' in main
    status, headers, _ = client.post("/signin", {"key": server.key or "", "next": "/account/settings"})
    assert (status, headers["location"]) == (303, "/account/settings")
    assert client.get("/account/settings")[0] == 200


@pytest.mark.parametrize("target", [
    "//evil.example/", "/\\evil.example/", "https://evil.example/", "http:/evil.example",
    "/a\r\nSet-Cookie: x=1", "javascript:alert(1)", "/\t/evil.example",
    "", "evil.example",
])
def test_signInNeverRedirectsAway(server: CaptureServer, target: str) -> None:
    """
    A C{next} that is not a plain path on this site is ignored: sign-in
    goes to the account page, and a failed sign-in does not carry it.
    """
    client = WebClient(server)
    status, _, body = client.post("/signin", {"key": "k_wrongwrongwrong", "next": target})
    assert status == 401 and b'name="next"' not in body
    status, headers, _ = client.post("/signin", {"key": server.key or "", "next": target})
    assert (status, headers["location"]) == (303, "/account")
    assert "x" not in {c.name for c in client.cookies}
    assert client.get("/")[0] == 200


def test_signInKeepsAnEncodedNextAsAPath(server: CaptureServer) -> None:
    """
    Percent-encoded line breaks in C{next} stay encoded: a path of this
    site in the Location header, not a header of their own.
    """
    client = WebClient(server)
    target = "/%0d%0aSet-Cookie:x=1"
    status, headers, _ = client.post("/signin", {"key": server.key or "", "next": target})
    assert (status, headers["location"]) == (303, target)
    assert "x" not in {c.name for c in client.cookies}


def test_plantedBrowserIdIsNoUse(server: CaptureServer) -> None:
    """
    Another program on the same host can set cookies for it (cookies are
    not kept apart by port): one that plants its own browser id, for
    which it holds a token, in a signed-in browser still gets 403; the
    browser's own pages then work as before.
    """
    attacker = WebClient(server)
    attacker.get("/")
    plantedId, plantedToken = attacker.cookie("capture_browser"), attacker.csrf
    assert plantedId
    victim = WebClient(server)
    victim.signIn(server.key or "")
    victim.setCookie("capture_browser", plantedId)
    status, _, body = victim.post("/account/private", {"capturePrivate": "1",
                                                        "csrf": plantedToken}, csrf=False)
    assert status == 403 and b"This form has expired" in body
    assert victim.get("/account/settings")[0] == 200
    status, _, _ = victim.post("/account/private", {})
    assert status == 303
