"""
The web pages' security, walked over the pages' own route map so that a
route added later is covered without editing this file: every POST needs
its browser's CSRF token, no GET changes anything (but the read mark a
message gets when opened), and every route under another account's
private inbox is the one 404 page, with nothing of its mail.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest

import capture.web.pages  # noqa: F401  (declares every page route)
from capture.web.pagebase import pages
from tests.harness import CaptureServer
from tests.test_api import call
from tests.test_inboxpage import createAccount, reserve, stillServes
from tests.test_messagepage import deliver, richMessage
from tests.webclient import WebClient, mainContent

_ARGUMENT = re.compile(r"<(?:\w+:)?(\w+)>")
_SECRET = "hushhush"


def _rules(method: str) -> list[str]:
    return sorted(
        rule.rule for rule in pages.url_map.iter_rules()
        if method in (rule.methods or ()) and "__rest__" not in rule.arguments
    )


def _path(rule: str, values: dict[str, str]) -> str:
    return _ARGUMENT.sub(lambda m: values[m.group(1)], rule)


# Form fields that make each POST otherwise valid, so that only the CSRF
# token can be what refuses it.
def _fields(rule: str, values: dict[str, str], key: str) -> dict[str, str]:
    return {
        "/signin": {"key": key},
        "/account/private": {"capturePrivate": "1"},
        "/account/keys": {"label": "csrf"},
        "/account/keys/revoke": {"prefix": key[:8]},
        "/account/addresses": {"address": f"csrf-{secrets.token_hex(4)}@example.com"},
        "/account/addresses/update": {"address": values["address"],
                                      "webhook": "https://example.com/hook"},
        "/account/addresses/release": {"address": values["address"]},
        "/account/domains": {"domain": f"csrf{secrets.token_hex(4)}.example"},
        "/account/domains/remove": {"domain": values["domain"]},
        "/account/domains/privacy": {"domain": values["domain"], "private": "0"},
        "/inbox/<address>/<messageId>/star": {"starred": "1"},
    }.get(rule, {})


def _state(server: CaptureServer, account: str, key: str, inbox: str) -> object:
    """
    Everything of an account the pages could change: its settings, keys,
    addresses, domains, and its inbox's messages with their flags.
    """
    snapshot: list[object] = [server.cli("key", "list", account).stdout]
    for path in ("/api/me", "/api/addresses", "/api/domains",
                 f"/api/addresses/{inbox}/messages"):
        status, _, body = call(server, "GET", path, key)
        assert status == 200, (path, body)
        found = json.loads(body)
        if isinstance(found, dict):
            found.pop("moAPICount", None)
        snapshot.append(found)
    return snapshot


@pytest.fixture
def account(server: CaptureServer) -> dict[str, str]:
    """
    A new account with an owned address holding a message with
    attachments, a custom domain, and a signed-in browser.
    """
    name, key = createAccount(server, "walker")
    inbox = f"walk-{secrets.token_hex(6)}@example.com"
    reserve(server, inbox, key)
    messageId = deliver(server, inbox, richMessage(inbox))
    domain = f"walk{secrets.token_hex(4)}.example"
    assert call(server, "POST", f"/api/domains/{domain}", key)[0] == 200
    return {"name": name, "key": key, "address": inbox, "messageId": messageId,
            "index": "0", "domain": domain}


@pytest.mark.parametrize("rule", _rules("POST"))
def test_everyPostNeedsItsBrowsersToken(server: CaptureServer, account: dict[str, str],
                                        rule: str) -> None:
    """
    Each state-changing route, sent by a signed-in browser with an
    otherwise valid form, is the 403 page without a token, with a made-up
    one and with another browser's token; nothing of the account changed,
    the browser is still signed in, and the next client is served.
    """
    key = account["key"]
    browser = WebClient(server)
    browser.signIn(key)
    other = WebClient(server)
    other.get("/")
    path = _path(rule, account)
    fields = _fields(rule, account, key)
    before = _state(server, account["name"], key, account["address"])
    for token in (None, "x" * 43, other.csrf):
        form = dict(fields, **({"csrf": token} if token else {}))
        status, _, body = browser.post(path, form, csrf=False)
        assert status == 403, (rule, token, status, body[:300])
        assert b"This form has expired" in body, rule
    assert _state(server, account["name"], key, account["address"]) == before, rule
    assert browser.get("/account")[0] == 200
    stillServes(server)


def test_getRoutesChangeNothing(server: CaptureServer, account: dict[str, str]) -> None:
    """
    Every GET route, for the owner, changes nothing of the account but the
    read mark of the message its page opened.
    """
    key = account["key"]
    browser = WebClient(server)
    browser.signIn(key)

    def unread(state: object) -> object:
        return json.loads(re.sub(r'"read": (true|false|null)', '"read": null', json.dumps(state)))

    before = _state(server, account["name"], key, account["address"])
    for rule in _rules("GET"):
        path = _path(rule, account)
        status, _, body = browser.get(path + ("?address=x@example.com" if rule == "/inbox" else ""))
        # /static/ itself is no page: never a directory listing.
        assert status in ((404,) if rule == "/static/" else (200, 303)), (rule, status)
    assert unread(_state(server, account["name"], key, account["address"])) == unread(before)


def _privateTarget(server: CaptureServer) -> dict[str, str]:
    """
    A private inbox of another account, whose one message has a secret
    subject and body and an attachment.
    """
    _, key = createAccount(server, "hider")
    inbox = f"hidden-{secrets.token_hex(6)}@example.com"
    reserve(server, inbox, key)
    message = richMessage(inbox).replace(b"Reset your password", _SECRET.encode())
    messageId = deliver(server, inbox, message)
    return {"address": inbox, "messageId": messageId, "index": "0", "key": key}


def _inboxRules() -> list[tuple[str, str]]:
    return [(method, rule) for method in ("GET", "POST") for rule in _rules(method)
            if rule.startswith("/inbox/")]


def _assertHidden(server: CaptureServer, browsers: list[WebClient], target: dict[str, str],
                  addresses: list[str]) -> None:
    """
    Each inbox route for each spelling of the private address answers as
    for a message that does not exist: the 404 page, with nothing of the
    inbox in it; a redirect (for a spelling the inbox page normalizes)
    goes to the plain address, which is then the 404 page.
    """
    missing = WebClient(server).get("/inbox/nobody@example.com/no/such/page")
    assert missing[0] == 404
    for browser in browsers:
        for method, rule in _inboxRules():
            for spelling in addresses:
                values = dict(target, address=spelling)
                path = _path(rule, values)
                fields = {"starred": "1"} if rule.endswith("/star") else {}
                if method == "GET":
                    status, headers, body = browser.get(path)
                else:
                    status, headers, body = browser.post(path, fields)
                if status == 303:
                    assert method == "GET" and rule == "/inbox/<address>", (path, status)
                    assert headers["location"] == f"/inbox/{target['address']}"
                    status, headers, body = browser.get(headers["location"])
                assert status == 404, (method, path, status, body[:300])
                assert mainContent(body) == mainContent(missing[2]), (method, path)
                text = body.decode("utf-8", "replace")
                assert _SECRET not in text and "1 message" not in text, (method, path)


def test_anotherAccountsPrivateInboxIsNotFoundEverywhere(server: CaptureServer) -> None:
    """
    Every page and sub-route of another account's private inbox, by GET
    and by a POST with a valid token, for a visitor and for another
    signed-in account, under the address as reserved, upper-cased and
    with a +tag, is the 404 page of a path that does not exist; the owner's
    message is untouched and the next client is served.
    """
    target = _privateTarget(server)
    visitor = WebClient(server)
    visitor.get("/")
    _, otherKey = createAccount(server, "prier")
    other = WebClient(server)
    other.signIn(otherKey)
    local, _, domain = target["address"].partition("@")
    spellings = [target["address"], target["address"].upper(), f"{local}+tag@{domain}",
                 f"{local.upper()}+Tag@{domain.upper()}"]
    _assertHidden(server, [visitor, other], target, spellings)
    status, _, body = call(server, "GET", f"/api/addresses/{target['address']}/messages",
                           target["key"])
    found = json.loads(body)
    assert status == 200 and [m["_id"] for m in found] == [target["messageId"]]
    assert found[0]["savedBy"] is None and not found[0]["read"]
    stillServes(server)


def test_privateCopyUnderAPublicAddressIsNotFound(server: CaptureServer) -> None:
    """
    A private copy's id asked for under a public inbox's path, and a copy
    another account starred in a public inbox, are the 404 page on every
    route, for a visitor and for a third account.
    """
    target = _privateTarget(server)
    public = f"open-{secrets.token_hex(6)}@example.com"
    deliver(server, public, b"Subject: open\r\n\r\nopen\r\n")
    starred = deliver(server, public, richMessage(public).replace(
        b"Reset your password", _SECRET.encode()))
    _, starrerKey = createAccount(server, "starrer")
    status, _, _ = call(server, "PUT", f"/api/addresses/{public}/messages/{starred}/star",
                        starrerKey)
    assert status == 200
    visitor = WebClient(server)
    visitor.get("/")
    _, thirdKey = createAccount(server, "third")
    third = WebClient(server)
    third.signIn(thirdKey)
    missing = WebClient(server).get("/inbox/nobody@example.com/no/such/page")
    for browser in (visitor, third):
        for messageId in (target["messageId"], starred):
            for method, rule in _inboxRules():
                if "<messageId>" not in rule:
                    continue
                path = _path(rule, {"address": public, "messageId": messageId, "index": "0"})
                fields = {"starred": "1"} if rule.endswith("/star") else {}
                status, _, body = (browser.get(path) if method == "GET"
                                   else browser.post(path, fields))
                assert status == 404, (method, path, status)
                assert mainContent(body) == mainContent(missing[2]), path
                assert _SECRET not in body.decode("utf-8", "replace"), path
        status, _, body = browser.get(f"/inbox/{public}")
        assert status == 200 and _SECRET not in body.decode() and b"1 message" in body
    stillServes(server)


@pytest.mark.serverOptions("--require-key")
def test_requireKeyHidesPublicInboxesFromVisitors(freshServer: CaptureServer) -> None:
    """
    With C{--require-key}, every inbox route of a public inbox is the 404
    page for a visitor who is not signed in; signed in, the inbox shows.
    """
    inbox = f"keyed-{secrets.token_hex(6)}@example.com"
    messageId = deliver(freshServer, inbox, richMessage(inbox).replace(
        b"Reset your password", _SECRET.encode()))
    visitor = WebClient(freshServer)
    visitor.get("/")
    target = {"address": inbox, "messageId": messageId, "index": "0"}
    _assertHidden(freshServer, [visitor], target, [inbox, inbox.upper()])
    assert freshServer.key is not None
    visitor.signIn(freshServer.key)
    status, _, body = visitor.get(f"/inbox/{inbox}")
    assert status == 200 and _SECRET.encode() in body


def test_hostileFileNameStaysInItsHeader(server: CaptureServer) -> None:
    """
    An attachment whose name (RFC 2231-encoded) carries a quote, CRLF and
    a header of its own, a NUL and a path, is downloaded under a name of
    safe characters, with the original percent-encoded beside it; no
    header is added and the next client is served.
    """
    inbox = f"files-{secrets.token_hex(5)}@example.com"
    encoded = "%22%0D%0AX-Evil%3A%201%00..%2F..%2Fetc%2Fpasswd%3B.txt"
    message = (
        f"Subject: file\r\nTo: {inbox}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
        "\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Disposition: attachment; filename*=utf-8''{encoded}\r\n\r\ndata\r\n--b--\r\n"
    ).encode()
    messageId = deliver(server, inbox, message)
    status, headers, body = WebClient(server).get(f"/inbox/{inbox}/{messageId}/attachments/0")
    assert status == 200 and body == b"data"
    assert "x-evil" not in headers
    disposition = headers["content-disposition"]
    assert "\r" not in disposition and "\n" not in disposition and "\0" not in disposition
    name = re.fullmatch(r'attachment; filename="([A-Za-z0-9._ -]*)"; '
                        r"filename\*=UTF-8''([A-Za-z0-9._~%-]*)", disposition)
    assert name is not None, disposition
    assert "X-Evil" in name.group(1) and "%0D%0AX-Evil" in name.group(2), disposition
    assert headers["content-type"] == "application/octet-stream"
    stillServes(server)
