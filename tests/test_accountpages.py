"""
The signed-in pages (C{/account}, C{/account/settings} and its forms) on a
real server, with a cookie-keeping client: who may see them, what each
form changes, its refusals, and that nothing of another account shows.
"""

from __future__ import annotations

import html
import json
import re
import secrets

import pytest

from capture.web.websession import WebSessions
from tests.harness import CaptureServer
from tests.test_api import call, callJSON
from tests.webclient import WebClient, mainContent

_NEW_KEY = re.compile(rb'id="new-key" value="(k_\w+)"')


def _account(server: CaptureServer) -> tuple[str, str, WebClient]:
    """
    A new account of its own, and a browser signed in with its key.
    """
    name = f"pages{secrets.token_hex(4)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    browser = WebClient(server)
    browser.signIn(key)
    return name, key, browser


def _address(prefix: str = "acct") -> str:
    return f"{prefix}-{secrets.token_hex(5)}@example.com"


def _send(server: CaptureServer, to: str, subject: str, login: tuple[str, str] | None = None,
          attachment: bool = False) -> None:
    client = server.smtp(login=login is None)
    if login is not None:
        client.login(*login)
    body = f"From: Sender <sender@example.net>\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
    if attachment:
        body = (
            f"From: Sender <sender@example.net>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
            "\r\n\r\nhello\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: "
            "attachment; filename=a.pdf\r\n\r\n%PDF\r\n--b--\r\n"
        ).encode()
    client.sendmail("sender@example.net", [to], body)
    client.quit()


def _text(body: bytes) -> str:
    """
    A page's main content as text, tags removed, entities decoded.
    """
    return html.unescape(re.sub(r"<[^>]+>", " ", mainContent(body).decode()))


def _stillServes(server: CaptureServer) -> None:
    status, _, body = WebClient(server).get("/")
    assert status == 200 and b"Check the mail" in body


# Who may see the pages


@pytest.mark.parametrize("path", ["/account", "/account/settings"])
def test_signedOutGets401(server: CaptureServer, path: str) -> None:
    """
    Without a session the account pages answer 401 with the sign-in link,
    and show nothing of any account.
    """
    status, _, body = WebClient(server).get(path)
    assert status == 401
    assert "Sign in first" in _text(body)
    assert b'href="/#sign-in"' in body
    _stillServes(server)


def test_badKeyClearMessage(server: CaptureServer) -> None:
    """
    Signing in with a wrong key answers 401 with a clear message, and the
    visitor stays signed out.
    """
    browser = WebClient(server)
    status, _, body = browser.post("/signin", {"key": "k_" + "x" * 24})
    assert status == 401
    assert "That API key is wrong or was revoked." in _text(body)
    assert browser.get("/account")[0] == 401
    _stillServes(server)


@pytest.mark.serverOptions("--max-failed-logins", "3")
def test_repeatedFailuresRefused(freshServer: CaptureServer) -> None:
    """
    After as many failed sign-ins as C{--max-failed-logins} allows, the
    client's next sign-in is refused (429), even with the right key; the
    pages themselves are still served.
    """
    browser = WebClient(freshServer)
    for _ in range(3):
        assert browser.post("/signin", {"key": "k_wrong"})[0] == 401
    assert freshServer.key is not None
    status, headers, body = browser.post("/signin", {"key": freshServer.key})
    assert status == 429
    assert "Too many failed sign-ins" in _text(body)
    assert "location" not in headers
    assert browser.get("/account")[0] == 401
    _stillServes(freshServer)


def test_forgedCookieSignedOut(server: CaptureServer) -> None:
    """
    A session cookie with one byte changed is ignored: the visitor is
    signed out.
    """
    _, _, browser = _account(server)
    assert browser.get("/account")[0] == 200
    value = browser.cookie("capture_session")
    assert value is not None
    # Change one byte of the account part (before the MAC).
    forged = ("B" if value[0] != "B" else "C") + value[1:]
    browser.setCookie("capture_session", forged)
    status, _, body = browser.get("/account")
    assert status == 401 and "Sign in first" in _text(body)
    _stillServes(server)


def test_expiredSessionRefused() -> None:
    """
    A session cookie is good until its lifetime ends, and refused after.
    """
    now = [1_000_000.0]
    sessions = WebSessions(b"s" * 32, clock=lambda: now[0])
    cookie = sessions.issue("alice", "k_abcdef")
    claim = sessions.verify(cookie)
    assert claim is not None and claim.account == "alice" and claim.keyPrefix == "k_abcdef"
    now[0] += sessions.lifetime - 1
    assert sessions.verify(cookie) is not None
    now[0] += 1
    assert sessions.verify(cookie) is None


def test_revokedKeySignedOut(server: CaptureServer) -> None:
    """
    A session whose key is revoked (here by the admin command) is over at
    the next request, and its cookie is cleared.
    """
    name, key, browser = _account(server)
    assert browser.get("/account")[0] == 200
    server.cli("key", "revoke", name, key)
    status, headers, _ = browser.get("/account")
    assert status == 401
    assert "capture_session=;" in headers.get("set-cookie", "")
    _stillServes(server)


# The unified inbox


def test_unifiedInboxLists(server: CaptureServer) -> None:
    """
    C{/account} lists the mail of the account's owned addresses, newest
    first, each row linking to its message page with sender, subject,
    inbox, size and the unread and attachment marks; quick links go to each
    owned inbox.  Another account sees none of it.
    """
    _, _, browser = _account(server)
    address = _address()
    assert browser.post("/account/addresses", {"address": address})[0] == 303
    _send(server, address, "first subject")
    _send(server, address, "second subject", attachment=True)
    _send(server, _address("elsewhere"), "not mine")
    status, _, body = browser.get("/account")
    assert status == 200
    text = _text(body)
    assert text.index("second subject") < text.index("first subject")
    assert "not mine" not in text
    assert "2 unread." in text
    rows = re.findall(rb'<li class="([^"]*)" data-id="([^"]+)"><a href="([^"]+)"', body)
    assert [r[2].decode() for r in rows] == [
        f"/inbox/{address}/{r[1].decode()}" for r in rows
    ]
    assert all(r[0].startswith(b"message unread") for r in rows)
    assert b'title="Has attachments"' in body
    assert "Sender" in text and address in text
    assert f'href="/inbox/{address}"'.encode() in body
    other = _account(server)[2]
    assert address not in _text(other.get("/account")[2])


def test_unifiedInboxRowActions(server: CaptureServer) -> None:
    """
    Each row of the unified inbox has the Star and Delete forms the
    account may use on that copy: both in its own address; Star (to
    unstar) but no Delete for a copy it starred in an address another
    account owns.  The forms work without script: delete answers 303 to
    the inbox and the row is gone.
    """
    name, key, browser = _account(server)
    mine = _address("mine")
    assert browser.post("/account/addresses", {"address": mine})[0] == 303
    _send(server, mine, "in my address")
    theirs = _address("theirs")
    _send(server, theirs, "starred elsewhere")
    _, otherKey, _ = _account(server)
    (starred,) = callJSON(server, "GET", f"/api/addresses/{theirs}/messages")[1]
    assert call(server, "PUT", f"/api/addresses/{theirs}/messages/{starred['_id']}/star",
                key)[0] == 200
    assert call(server, "POST", f"/api/addresses/{theirs}", otherKey)[0] == 200
    body = browser.get("/account")[2]
    rows = dict(re.findall(rb'<li class="message[^"]*" data-id="([^"]+)">(.*?)</li>', body,
                           re.S))
    (own,) = [i for i in rows if i != starred["_id"].encode()]
    assert b"/star" in rows[own] and b'class="inline delete-form"' in rows[own]
    # An address of the account's private domain: its mail is the account's.
    domain = f"rows{secrets.token_hex(4)}.example"
    assert call(server, "POST", f"/api/domains/{domain}", key)[0] == 200
    _send(server, f"anyone@{domain}", "in my domain")
    body = browser.get("/account")[2]
    (inDomain,) = re.findall(rb'<li class="message[^"]*" data-id="([^"]+)"><a href="/inbox/anyone@'
                             + domain.encode() + rb'/[^"]+"(.*?)</li>', body, re.S)
    assert b"star-form" in inDomain[1] and b"delete-form" in inDomain[1]
    mark = rows[starred["_id"].encode()]
    assert b'class="inline star-form"' in mark and b'aria-pressed="true"' in mark
    assert b"delete-form" not in mark
    action = re.search(rb'action="([^"]+/delete)"', rows[own])
    assert action is not None
    status, headers, _ = browser.post(html.unescape(action.group(1).decode()))
    assert (status, headers["location"]) == (303, f"/inbox/{mine}")
    assert "in my address" not in _text(browser.get("/account")[2])
    # What the page does not offer, the route refuses too.
    status, _, _ = browser.post(f"/inbox/{theirs}/{starred['_id']}/delete")
    assert status == 403
    _stillServes(server)


def test_unifiedInboxSearch(server: CaptureServer) -> None:
    """
    C{?q=} searches the account's mail by subject, sender or recipient;
    a search matching nothing says so.
    """
    _, _, browser = _account(server)
    address = _address()
    browser.post("/account/addresses", {"address": address})
    _send(server, address, "invoice 42")
    _send(server, address, "welcome aboard")
    status, _, body = browser.get("/account?q=invoice")
    text = _text(body)
    assert status == 200
    assert "invoice 42" in text and "welcome aboard" not in text
    assert "1 message match “invoice”." in text
    status, _, body = browser.get("/account?q=nothing-like-this")
    assert status == 200 and "Nothing found." in _text(body)


def test_unifiedInboxPaging(server: CaptureServer) -> None:
    """
    The unified inbox shows 50 rows a page, with a link to older mail and
    back; a page number that is not one is a 400 page.
    """
    _, _, browser = _account(server)
    address = _address()
    browser.post("/account/addresses", {"address": address})
    client = server.smtp()
    for n in range(52):
        client.sendmail("s@example.net", [address], f"Subject: paged {n:02d}\r\n\r\nx\r\n")
    client.quit()
    status, _, body = browser.get("/account")
    text = _text(body)
    assert status == 200 and "paged 51" in text and "paged 02" in text and "paged 01" not in text
    # Older mail is a cursor: the last uid shown.
    older = re.search(rb'href="(/account\?before=\d+)" rel="next"', body)
    assert older is not None
    status, _, body = browser.get(older.group(1).decode())
    text = _text(body)
    assert status == 200
    assert "paged 01" in text and "paged 00" in text and "paged 02" not in text
    assert b'href="/account" rel="first"' in body and b'rel="next"' not in body
    # skip= links keep working.
    status, _, body = browser.get("/account?skip=50")
    text = _text(body)
    assert "paged 01" in text and "paged 00" in text and "paged 02" not in text
    assert b'rel="prev"' in body and b'rel="next"' not in body
    for bad in ("skip=-1", "before=-1", "before=x", "before=1234567890123456789"):
        status, _, body = browser.get(f"/account?{bad}")
        assert status == 400 and "No such page" in _text(body), bad
    _stillServes(server)


def test_unifiedSearchOlder(server: CaptureServer) -> None:
    """
    A search goes on below a cursor (the link a search that stopped at its
    window gives): only older matches, said so, with a link back to the
    newest; a broken cursor is a 400 page.
    """
    _, _, browser = _account(server)
    address = _address()
    browser.post("/account/addresses", {"address": address})
    client = server.smtp()
    client.sendmail("s@example.net", [address], "Subject: invoice old\r\n\r\nx\r\n")
    for n in range(50):
        client.sendmail("s@example.net", [address], f"Subject: filler {n}\r\n\r\nx\r\n")
    client.sendmail("s@example.net", [address], "Subject: invoice new\r\n\r\nx\r\n")
    client.quit()
    _, _, body = browser.get("/account")
    older = re.search(rb'href="/account\?before=(\d+)" rel="next"', body)
    assert older is not None
    text = _text(browser.get("/account?q=invoice")[2])
    assert "invoice new" in text and "invoice old" in text
    status, _, body = browser.get(f"/account?q=invoice&before={older.group(1).decode()}")
    text = _text(body)
    assert status == 200
    assert "invoice old" in text and "invoice new" not in text
    assert "1 message match “invoice” in older mail." in text
    assert b'href="/account?q=invoice" rel="first"' in body
    status, _, body = browser.get("/account?q=invoice&before=1e5")
    assert status == 400 and "No such page" in _text(body)
    _stillServes(server)


# Settings: capturePrivate


def test_capturePrivateToggle(server: CaptureServer) -> None:
    """
    Ticking "Make captured email private" saves it (303, a notice shown
    once); mail the account then sends through Capture is starred for it:
    gone from the public inbox, listed in the account's unified inbox.
    Unticking turns it off.
    """
    name, key, browser = _account(server)
    status, headers, _ = browser.post("/account/private", {"capturePrivate": "1"})
    assert status == 303 and headers["location"] == "/account/settings"
    status, _, body = browser.get("/account/settings")
    assert "Captured email is private now" in _text(body)
    assert b'id="capturePrivate" name="capturePrivate" value="1" checked="checked"' in body
    assert "Captured email is private now" not in _text(browser.get("/account/settings")[2])
    recipient = _address("public")
    _send(server, recipient, "private via smtp", login=(name, key))
    status, listed = callJSON(server, "GET", f"/api/addresses/{recipient}/messages")
    assert status == 200 and listed == []
    assert "private via smtp" in _text(browser.get("/account")[2])
    assert browser.post("/account/private", {})[0] == 303
    assert "no longer made private" in _text(browser.get("/account/settings")[2])
    status, me = callJSON(server, "GET", "/api/me", key)
    assert me["capturePrivate"] is False


# Settings: API keys


def test_createKeyShownOnce(server: CaptureServer) -> None:
    """
    Creating a key answers 200 with the key on the page (not in a redirect,
    URL or cookie); it works at once, and the next page shows only its
    prefix and label.
    """
    _, _, browser = _account(server)
    status, headers, body = browser.post("/account/keys", {"label": "CI runner"})
    assert status == 200 and "location" not in headers
    found = _NEW_KEY.search(body)
    assert found
    key = found.group(1).decode()
    assert "shown this once" in _text(body)
    assert key not in headers.get("set-cookie", "")
    assert callJSON(server, "GET", "/api/me", key)[0] == 200
    status, _, body = browser.get("/account/settings")
    assert key.encode() not in body
    assert key[:8].encode() in body and b"CI runner" in body


def test_createKeyBadLabel(server: CaptureServer) -> None:
    """
    A label over 100 characters is refused (400, with the rule), and no
    key is made.
    """
    _, _, browser = _account(server)
    status, _, body = browser.post("/account/keys", {"label": "x" * 101})
    assert status == 400
    assert "A label has at most 100 characters" in _text(body)
    assert not _NEW_KEY.search(body)
    assert body.count(b'<tr class="live">') == 1
    _stillServes(server)


def test_revokeKey(server: CaptureServer) -> None:
    """
    Revoking another key of the account: 303 with a notice, and the key no
    longer works.  An unknown prefix is a 400; the account's only live key
    may not be revoked (it would be locked out).
    """
    name, key, browser = _account(server)
    other = server.cli("key", "create", name).stdout.strip().splitlines()[-1]
    status, headers, _ = browser.post("/account/keys/revoke", {"prefix": other[:8]})
    assert status == 303 and headers["location"] == "/account/settings"
    assert "The API key was revoked." in _text(browser.get("/account/settings")[2])
    assert call(server, "GET", "/api/me", other)[0] == 401
    status, _, body = browser.post("/account/keys/revoke", {"prefix": "k_nosuch"})
    assert status == 400 and "There is no such live key." in _text(body)
    status, _, body = browser.post("/account/keys/revoke", {"prefix": key[:8]})
    assert status == 400 and "only live key" in _text(body)
    assert call(server, "GET", "/api/me", key)[0] == 200


def test_revokeOwnKeyEndsSession(server: CaptureServer) -> None:
    """
    Revoking the key the session signed in with signs the browser out.
    """
    name, key, browser = _account(server)
    server.cli("key", "create", name)
    status, headers, _ = browser.post("/account/keys/revoke", {"prefix": key[:8]})
    assert status == 303 and headers["location"] == "/"
    assert browser.get("/account")[0] == 401


# Settings: owned addresses


def test_reserveAddress(server: CaptureServer) -> None:
    """
    Reserving an address makes it the account's (shown in the settings and
    as a quick link); bad input and another account's address re-render
    the settings with the reason (400), the typed text kept.
    """
    _, key, browser = _account(server)
    address = _address()
    status, headers, _ = browser.post("/account/addresses", {"address": address})
    assert status == 303 and headers["location"] == "/account/settings"
    text = _text(browser.get("/account/settings")[2])
    assert "The address is yours now." in text and address in text
    status, body = callJSON(server, "GET", "/api/addresses", key)
    assert [a["_id"] for a in body] == [address]
    status, _, page = browser.post("/account/addresses", {"address": "not an address"})
    assert status == 400 and "Invalid email address." in _text(page)
    assert b'value="not an address"' in page
    status, _, page = browser.post("/account/addresses", {"address": address})
    assert status == 400 and "You own that address already." in _text(page)
    other = _account(server)[2]
    status, _, page = other.post("/account/addresses", {"address": address})
    assert status == 400 and "That address belongs to another account." in _text(page)
    assert address not in _text(other.get("/account/settings")[2])
    _stillServes(server)


def test_updateAddress(server: CaptureServer) -> None:
    """
    An owned address's webhook URL and websocket switch are saved; a
    webhook that is not http(s) is refused with the API's wording; another
    account cannot change it.
    """
    _, key, browser = _account(server)
    address = _address()
    browser.post("/account/addresses", {"address": address})
    status, _, _ = browser.post("/account/addresses/update", {
        "address": address, "webhook": "https://hooks.example.com/x", "enablews": "1",
    })
    assert status == 303
    status, body = callJSON(server, "GET", f"/api/addresses/{address}", key)
    assert body["webhook"] == "https://hooks.example.com/x" and body["enablews"] is True
    page = browser.get("/account/settings")[2]
    assert b'value="https://hooks.example.com/x"' in page
    status, _, page = browser.post("/account/addresses/update", {
        "address": address, "webhook": "ftp://example.com/",
    })
    assert status == 400 and "webhook must be an http(s) URL" in _text(page)
    other = _account(server)[2]
    status, _, page = other.post("/account/addresses/update", {
        "address": address, "webhook": "",
    })
    assert status == 400 and "That address belongs to another account." in _text(page)
    assert callJSON(server, "GET", f"/api/addresses/{address}", key)[1]["enablews"] is True
    assert browser.post("/account/addresses/update", {"address": address})[0] == 303
    status, body = callJSON(server, "GET", f"/api/addresses/{address}", key)
    assert body["webhook"] is None and body["enablews"] is False


def test_releaseAddress(server: CaptureServer) -> None:
    """
    Releasing an address gives it up; with "delete its messages" its mail
    goes too.  Another account's address cannot be released.
    """
    _, key, browser = _account(server)
    kept, emptied = _address(), _address()
    for address in (kept, emptied):
        browser.post("/account/addresses", {"address": address})
        _send(server, address, "before release")
    other = _account(server)[2]
    status, _, page = other.post("/account/addresses/release", {"address": kept})
    assert status == 400 and "That address belongs to another account." in _text(page)
    assert browser.post("/account/addresses/release", {"address": kept})[0] == 303
    assert browser.post("/account/addresses/release",
                        {"address": emptied, "deleteMessages": "1"})[0] == 303
    assert "The address was released." in _text(browser.get("/account/settings")[2])
    assert callJSON(server, "GET", "/api/addresses", key)[1] == []
    assert len(callJSON(server, "GET", f"/api/addresses/{kept}/messages")[1]) == 1
    assert callJSON(server, "GET", f"/api/addresses/{emptied}/messages")[1] == []
    status, _, page = browser.post("/account/addresses/release", {"address": kept})
    assert status == 400 and "You do not own that address." in _text(page)


# Settings: custom domains


def test_domains(server: CaptureServer) -> None:
    """
    Adding a domain (private by default), switching its privacy and
    removing it; a bad name, one owned already and another account's are
    refused with the reason.
    """
    _, key, browser = _account(server)
    domain = f"d{secrets.token_hex(5)}.example.org"
    assert browser.post("/account/domains", {"domain": domain, "private": "1"})[0] == 303
    text = _text(browser.get("/account/settings")[2])
    assert "The domain was added." in text and domain in text
    assert callJSON(server, "GET", "/api/domains", key)[1][0]["isPrivate"] is True
    assert browser.post("/account/domains/privacy", {"domain": domain, "private": "0"})[0] == 303
    assert callJSON(server, "GET", "/api/domains", key)[1][0]["isPrivate"] is False
    assert "Make private" in _text(browser.get("/account/settings")[2])
    status, _, page = browser.post("/account/domains", {"domain": "not a domain"})
    assert status == 400 and "Invalid domain." in _text(page)
    status, _, page = browser.post("/account/domains", {"domain": domain})
    assert status == 400 and "You own that domain already." in _text(page)
    other = _account(server)[2]
    for path, fields in (
        ("/account/domains", {"domain": domain}),
        ("/account/domains/remove", {"domain": domain}),
        ("/account/domains/privacy", {"domain": domain, "private": "1"}),
    ):
        status, _, page = other.post(path, fields)
        assert status == 400, path
        assert "That domain belongs to another account." in _text(page)
        assert f"{domain} private" not in _text(page) and f"{domain} public" not in _text(page)
    assert browser.post("/account/domains/remove", {"domain": domain})[0] == 303
    assert callJSON(server, "GET", "/api/domains", key)[1] == []
    status, _, page = browser.post("/account/domains/remove", {"domain": domain})
    assert status == 400 and "Domain not found." in _text(page)


# Settings: usage, and nothing of another account


def test_usageThisMonth(server: CaptureServer) -> None:
    """
    The usage section shows this month's API calls, the stored messages
    and the storage they take.
    """
    _, key, browser = _account(server)
    address = _address()
    browser.post("/account/addresses", {"address": address})
    _send(server, address, "counted")
    for _ in range(3):
        call(server, "GET", "/api/me", key)
    text = _text(browser.get("/account/settings")[2])
    assert re.search(r"API calls this month\s+[3-9]", text), text
    assert re.search(r"Messages stored\s+1\b", text), text


def test_otherAccountNeverShown(server: CaptureServer) -> None:
    """
    One account's settings and unified inbox show nothing of another's:
    not its addresses, domains, key prefixes or mail.
    """
    ownerName, ownerKey, owner = _account(server)
    address = _address("secret")
    domain = f"s{secrets.token_hex(5)}.example.org"
    owner.post("/account/addresses", {"address": address})
    owner.post("/account/domains", {"domain": domain, "private": "1"})
    owner.post("/account/keys", {"label": "owner-only label"})
    _send(server, address, "owner's secret subject")
    _, _, other = _account(server)
    for path in ("/account", "/account/settings"):
        body = other.get(path)[2]
        for secret in (address, domain, ownerKey[:8], "owner-only label",
                       "owner's secret subject", ownerName):
            assert secret.encode() not in body, (path, secret)


# CSRF


_POSTS = [
    ("/account/private", {"capturePrivate": "1"}),
    ("/account/keys", {"label": "csrf"}),
    ("/account/keys/revoke", {"prefix": "k_"}),
    ("/account/addresses", {"address": "csrf@example.com"}),
    ("/account/addresses/update", {"address": "csrf@example.com", "enablews": "1"}),
    ("/account/addresses/release", {"address": "csrf@example.com"}),
    ("/account/domains", {"domain": "csrf.example.org"}),
    ("/account/domains/remove", {"domain": "csrf.example.org"}),
    ("/account/domains/privacy", {"domain": "csrf.example.org", "private": "0"}),
]


@pytest.mark.parametrize("path,fields", _POSTS)
def test_csrfRefused(server: CaptureServer, path: str, fields: dict[str, str]) -> None:
    """
    Every settings form is refused (403 page) without the CSRF token and
    with a wrong one, and changes nothing; the next request is served.
    """
    name, key, browser = _account(server)
    before = json.dumps([
        callJSON(server, "GET", "/api/me", key)[1]["capturePrivate"],
        callJSON(server, "GET", "/api/addresses", key)[1],
        callJSON(server, "GET", "/api/domains", key)[1],
    ])
    keys = server.cli("key", "list", name).stdout
    for token in (None, "forged" + browser.csrf[6:]):
        data = dict(fields)
        if token is not None:
            data["csrf"] = token
        status, _, body = browser.post(path, data, csrf=False)
        assert status == 403, (path, token)
        assert "This form has expired" in _text(body)
    after = json.dumps([
        callJSON(server, "GET", "/api/me", key)[1]["capturePrivate"],
        callJSON(server, "GET", "/api/addresses", key)[1],
        callJSON(server, "GET", "/api/domains", key)[1],
    ])
    assert after == before
    assert server.cli("key", "list", name).stdout == keys
    assert browser.get("/account/settings")[0] == 200
