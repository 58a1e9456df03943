"""
Custom domains, bulk reservation, account stats and the legacy labels
route of the Mailsac-compatible API, on a real server with a real client.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from typing import Any

from tests.harness import CaptureServer
from tests.test_api import call, callJSON, inbox, send


def withBody(server: CaptureServer, method: str, path: str, body: Any,
             key: str | None = None) -> tuple[int, Any]:
    """
    One request with a JSON body (or raw bytes); returns status and JSON.
    """
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}{path}", data=data, method=method,
        headers={"Content-Type": "application/json", **({"Mailsac-Key": key} if key else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    return status, json.loads(answer) if answer else None


def account(server: CaptureServer, prefix: str) -> tuple[str, str]:
    name = f"{prefix}{secrets.token_hex(4)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    return name, key


def domainName() -> str:
    return f"d{secrets.token_hex(5)}.example"


def test_claimListAndReleaseDomain(server: CaptureServer) -> None:
    """
    POST /api/domains/{domain} claims a private domain, shown by N1 and N2
    with Mailsac's Domain fields; claiming it again is 400, another
    account's claim 401; DELETE releases it and the domain is gone.
    """
    name, key = account(server, "dom")
    domain = domainName()
    status, claimed = withBody(server, "POST", f"/api/domains/{domain.upper()}", {}, key)
    assert status == 200
    assert claimed["_id"] == domain and claimed["owner"] == name and claimed["isPrivate"] is True
    assert set(claimed) == {
        "_id", "owner", "isPrivate", "enablews", "hosted", "isDefault", "verified",
        "verifiedMx", "verificationTxt", "lastVerificationErrors", "created", "updated",
    }
    assert withBody(server, "POST", f"/api/domains/{domain}", {}, key)[0] == 400
    status, body = withBody(server, "POST", f"/api/domains/{domain}", {}, server.key)
    assert status == 401 and body["message"] == "That domain belongs to another account."
    assert callJSON(server, "GET", "/api/domains", key) == (200, [claimed])
    status, one = callJSON(server, "GET", f"/api/domains/{domain}", key)
    assert status == 200
    assert one == {"domain": claimed, "totalMessages": 0, "catchAllAddress": None}
    assert callJSON(server, "GET", f"/api/domains/{domain}", server.key)[0] == 401
    assert callJSON(server, "GET", f"/api/domains/{domainName()}", key)[0] == 404
    assert callJSON(server, "DELETE", f"/api/domains/{domain}", server.key)[0] == 401
    assert callJSON(server, "DELETE", f"/api/domains/{domain}", key) == (
        200, {"message": "Domain released.", "_id": domain}
    )
    assert callJSON(server, "GET", "/api/domains", key) == (200, [])
    assert callJSON(server, "DELETE", f"/api/domains/{domain}", key)[0] == 404


def test_privateDomainMailIsTheOwners(server: CaptureServer) -> None:
    """
    Mail to any address of a private domain is the owner's: M20 lists it
    newest first (with C{limit}), N2 counts it, other keys get 403 on the
    domain and on each inbox, and nothing of it is in their answers.
    """
    _, key = account(server, "priv")
    domain = domainName()
    assert withBody(server, "POST", f"/api/domains/{domain}", {"isPrivate": True}, key)[0] == 200
    first = send(server, f"a@{domain}", b"Subject: domain-secret-1\r\n\r\nx\r\n")
    second = send(server, f"b@{domain}", b"Subject: domain-secret-2\r\n\r\nx\r\n")
    send(server, f"c@other-{domain}", b"Subject: elsewhere\r\n\r\nx\r\n")
    status, listed = callJSON(server, "GET", f"/api/domains/{domain}/messages", key)
    assert status == 200
    assert [m["_id"] for m in listed] == [f"{second}-0", f"{first}-0"]
    assert {m["domain"] for m in listed} == {domain}
    limited = callJSON(server, "GET", f"/api/domains/{domain}/messages?limit=1", key)[1]
    assert [m["_id"] for m in limited] == [f"{second}-0"]
    assert callJSON(server, "GET", f"/api/domains/{domain}", key)[1]["totalMessages"] == 2
    for path in (f"/api/domains/{domain}/messages", f"/api/addresses/a@{domain}/messages"):
        status, _, body = call(server, "GET", path, server.key)
        assert status == 403 and b"domain-secret" not in body
    assert callJSON(server, "GET", f"/api/domains/{domain}/messages?limit=1001", key)[0] == 400
    assert callJSON(server, "GET", f"/api/domains/{domain}/messages?until=soon", key)[0] == 400


def test_publicDomainAndPrivacySwitch(server: CaptureServer) -> None:
    """
    A public domain's inboxes stay readable by anyone; N3 makes it private
    (PUT .../privacy/true), after which they are the owner's alone; a bad
    boolean is 400 and another account's switch 401.
    """
    _, key = account(server, "pub")
    domain = domainName()
    status, claimed = withBody(server, "POST", f"/api/domains/{domain}", {"isPrivate": False}, key)
    assert status == 200 and claimed["isPrivate"] is False
    send(server, f"x@{domain}", b"Subject: open\r\n\r\nx\r\n")
    assert len(callJSON(server, "GET", f"/api/addresses/x@{domain}/messages")[1]) == 1
    assert len(callJSON(server, "GET", f"/api/domains/{domain}/messages", key)[1]) == 1
    assert callJSON(server, "PUT", f"/api/domains/{domain}/privacy/maybe", key)[0] == 400
    assert callJSON(server, "PUT", f"/api/domains/{domain}/privacy/true", server.key)[0] == 401
    status, updated = callJSON(server, "PUT", f"/api/domains/{domain}/privacy/true", key)
    assert status == 200 and updated["isPrivate"] is True
    assert callJSON(server, "GET", f"/api/addresses/x@{domain}/messages")[0] == 401
    assert len(callJSON(server, "GET", f"/api/addresses/x@{domain}/messages", key)[1]) == 1


def test_domainPurgeKeepsStarredAndOthersAddresses(server: CaptureServer) -> None:
    """
    M21 deletes the domain's mail (204) but keeps starred mail, and never
    touches an address another account reserved inside the domain; only
    the owner may purge (401 otherwise, nothing deleted).
    """
    ownerName, key = account(server, "purge")
    otherName, otherKey = account(server, "squat")
    domain = domainName()
    # The other account reserves an address first, then the domain is
    # claimed around it: that address stays the other account's.
    assert callJSON(server, "POST", f"/api/addresses/kept@{domain}", otherKey)[0] == 200
    assert withBody(server, "POST", f"/api/domains/{domain}", {}, key)[0] == 200
    keep = send(server, f"a@{domain}", b"Subject: star me\r\n\r\nx\r\n") + "-0"
    send(server, f"a@{domain}", b"Subject: purge me\r\n\r\nx\r\n")
    theirs = send(server, f"kept@{domain}", b"Subject: not yours\r\n\r\nx\r\n") + "-0"
    assert callJSON(server, "PUT", f"/api/addresses/a@{domain}/messages/{keep}/star", key)[0] == 200
    status, _, body = call(server, "GET", f"/api/domains/{domain}/messages", key)
    assert b"not yours" not in body
    path = f"/api/domains/{domain}/delete-all-domain-mail"
    assert withBody(server, "POST", path, {}, otherKey)[0] == 401
    assert len(callJSON(server, "GET", f"/api/domains/{domain}/messages", key)[1]) == 2
    status, _, body = call(server, "POST", path, key)
    assert (status, body) == (204, b"")
    listed = callJSON(server, "GET", f"/api/domains/{domain}/messages", key)[1]
    assert [m["_id"] for m in listed] == [keep]
    kept = callJSON(server, "GET", f"/api/addresses/kept@{domain}/messages", otherKey)[1]
    assert [m["_id"] for m in kept] == [theirs]
    assert ownerName != otherName


def test_domainBadInput(server: CaptureServer) -> None:
    """
    Malformed domains and path tricks are 400 (or 404 for routing), keys
    are required, and the server serves the next request.
    """
    _, key = account(server, "bad")
    for bad in ("nodot", "a..b", "-x.example", "x_y.example", "%2e%2e", "a%00.example",
                "a%2Fb.example", "x" * 260 + ".example"):
        status, body = callJSON(server, "GET", f"/api/domains/{bad}", key)
        assert status in (400, 404), bad
        assert set(body) >= {"message", "error"}
    assert callJSON(server, "GET", "/api/domains")[0] == 401
    assert callJSON(server, "GET", "/api/domains", "k_wrong")[0] == 401
    status, body = withBody(server, "POST", f"/api/domains/{domainName()}", {"isPrivate": "yes"},
                            key)
    assert status == 400 and body["validationErrors"] == ["isPrivate must be true or false"]
    assert withBody(server, "POST", f"/api/domains/{domainName()}", b"{nope", key)[0] == 400
    assert callJSON(server, "GET", "/api/domains", key) == (200, [])


def test_bulkReserve(server: CaptureServer) -> None:
    """
    D7 reserves up to 100 addresses at once, all or none: one owned by
    another account (or in its private domain) makes it 401 and reserves
    nothing; addresses already the account's come back unchanged; more
    than 100, none, or a malformed one is 400.
    """
    name, key = account(server, "bulk")
    _, otherKey = account(server, "rival")
    wanted = [inbox() for _ in range(3)]
    status, reserved = withBody(server, "POST", "/api/private-addresses-bulk",
                                {"addresses": wanted}, key)
    assert status == 200
    assert [a["_id"] for a in reserved] == wanted and {a["owner"] for a in reserved} == {name}
    again = [wanted[0], inbox()]
    status, reserved = withBody(server, "POST", "/api/private-addresses-bulk",
                                {"addresses": again}, key)
    assert status == 200 and [a["_id"] for a in reserved] == again
    theirs = inbox()
    assert callJSON(server, "POST", f"/api/addresses/{theirs}", otherKey)[0] == 200
    fresh = inbox()
    status, body = withBody(server, "POST", "/api/private-addresses-bulk",
                            {"addresses": [fresh, theirs]}, key)
    assert status == 401 and body["validationErrors"] == [f"{theirs} is owned by another account"]
    assert callJSON(server, "GET", f"/api/addresses/{fresh}/availability")[1]["available"] is True
    domain = domainName()
    assert withBody(server, "POST", f"/api/domains/{domain}", {}, otherKey)[0] == 200
    assert withBody(server, "POST", "/api/private-addresses-bulk",
                    {"addresses": [f"x@{domain}"]}, key)[0] == 401
    for bad in ({"addresses": []}, {"addresses": "a@b.c"}, {}, [1],
                {"addresses": [f"a{i}@bulk.example" for i in range(101)]},
                {"addresses": ["not-an-address"]}, {"addresses": [5]}):
        status, body = withBody(server, "POST", "/api/private-addresses-bulk", bad, key)
        assert status == 400 and body["validationErrors"], bad
    assert withBody(server, "POST", "/api/private-addresses-bulk", {"addresses": [inbox()]},
                    None)[0] == 401
    owned = {a["_id"] for a in callJSON(server, "GET", "/api/addresses", key)[1]}
    assert owned == {*wanted, again[1]}


def test_meStats(server: CaptureServer) -> None:
    """
    /api/me/stats counts the account's stored and starred mail and bytes
    and lists its addresses, domains and the public inboxes where it
    starred mail; overrideAccountId may name only itself.
    """
    name, key = account(server, "stats")
    owned = inbox()
    assert callJSON(server, "POST", f"/api/addresses/{owned}", key)[0] == 200
    domain = domainName()
    assert withBody(server, "POST", f"/api/domains/{domain}", {}, key)[0] == 200
    send(server, owned, b"Subject: mine\r\n\r\nx\r\n")
    send(server, f"z@{domain}", b"Subject: domain\r\n\r\nx\r\n")
    public = inbox()
    starred = send(server, public, b"Subject: starred\r\n\r\nx\r\n") + "-0"
    assert callJSON(server, "PUT", f"/api/addresses/{public}/messages/{starred}/star", key)[0] == 200
    status, stats = callJSON(server, "GET", "/api/me/stats", key)
    assert status == 200
    sizes = [
        callJSON(server, "GET", f"/api/domains/{domain}/messages", key)[1][0]["size"],
        callJSON(server, "GET", f"/api/addresses/{owned}/messages", key)[1][0]["size"],
        callJSON(server, "GET", f"/api/addresses/{public}/messages/{starred}", key)[1]["size"],
    ]
    assert stats == {
        "addresses": [owned], "domains": [domain], "starredMessages": 1, "storedMessages": 3,
        "inboxBytes": sum(sizes), "lastMonthOps": 0, "defaultDomain": None,
        "nonOwnedInboxes": [public],
    }
    assert callJSON(server, "GET", f"/api/me/stats?overrideAccountId={name}", key)[0] == 200
    assert callJSON(server, "GET", "/api/me/stats?overrideAccountId=admin", key)[0] == 403
    assert callJSON(server, "GET", "/api/me/stats")[0] == 401


def test_legacyReplaceLabels(server: CaptureServer) -> None:
    """
    L1: PUT .../labels with C{{"labels": [...]}} replaces every label;
    a bad body is 400 and leaves the labels alone; its limit is M13's.
    """
    address = inbox()
    copy = send(server, address, b"Subject: labelled\r\n\r\nx\r\n") + "-0"
    base = f"/api/addresses/{address}/messages/{copy}"
    assert callJSON(server, "PUT", f"{base}/labels/first", server.key)[0] == 200
    status, body = withBody(server, "PUT", f"{base}/labels",
                            {"labels": ["a", "b", "a"]}, server.key)
    assert (status, body) == (200, {"_id": copy, "labels": ["a", "b"]})
    for bad in ({"labels": "a"}, {"labels": [1]}, {"labels": [""]}, {},
                {"labels": [str(i) for i in range(21)]}):
        assert withBody(server, "PUT", f"{base}/labels", bad, server.key)[0] == 400, bad
    assert callJSON(server, "GET", base)[1]["labels"] == ["a", "b"]
    status, body = withBody(server, "PUT", f"{base}/labels", {"labels": []}, server.key)
    assert (status, body) == (200, {"_id": copy, "labels": []})
    # One limit for both routes, M13's 20 (docs/api.md said 3 for L1): 20
    # through L1, then neither route takes a 21st.
    twenty = [f"l{i}" for i in range(20)]
    status, body = withBody(server, "PUT", f"{base}/labels", {"labels": twenty}, server.key)
    assert (status, body) == (200, {"_id": copy, "labels": twenty})
    status, body = callJSON(server, "PUT", f"{base}/labels/one-more", server.key)
    assert (status, body["message"]) == (400, "Too many labels.")
    status, body = withBody(server, "PUT", f"{base}/labels", {"labels": [*twenty, "x"]},
                            server.key)
    assert (status, body["message"]) == (400, "Too many labels.")
    assert callJSON(server, "GET", base)[1]["labels"] == twenty


def test_reserveWithSettingsAndReleaseDeletingMail(server: CaptureServer) -> None:
    """
    D3 takes the optional settings body (a bad one is 400 and reserves
    nothing); D5 with C{deleteAddressMessages=true} deletes the address's
    mail but what is starred before releasing it, and a bad flag is 400.
    """
    name, key = account(server, "rel")
    address = inbox()
    status, body = withBody(server, "POST", f"/api/addresses/{address}",
                            {"webhook": "ftp://no"}, key)
    assert status == 400 and body["validationErrors"] == ["webhook must be an http(s) URL"]
    assert callJSON(server, "GET", f"/api/addresses/{address}/availability")[1]["available"]
    status, body = withBody(server, "POST", f"/api/addresses/{address}",
                            {"info": "signup", "enablews": True}, key)
    assert status == 200 and (body["owner"], body["info"], body["enablews"]) == (name, "signup", True)
    kept = send(server, address, b"Subject: keep\r\n\r\nx\r\n") + "-0"
    send(server, address, b"Subject: drop\r\n\r\nx\r\n")
    assert callJSON(server, "PUT", f"/api/addresses/{address}/messages/{kept}/star", key)[0] == 200
    assert callJSON(server, "DELETE", f"/api/addresses/{address}?deleteAddressMessages=maybe",
                    key)[0] == 400
    assert callJSON(server, "DELETE", f"/api/addresses/{address}?deleteAddressMessages=true",
                    server.key)[0] == 401
    assert len(callJSON(server, "GET", f"/api/addresses/{address}/messages", key)[1]) == 2
    assert callJSON(server, "DELETE", f"/api/addresses/{address}?deleteAddressMessages=true",
                    key)[0] == 200
    # Public again: the starred copy stays its starrer's, the rest is gone.
    assert callJSON(server, "GET", f"/api/addresses/{address}/messages")[1] == []
    listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", key)[1]
    assert [m["_id"] for m in listed] == [kept]


def test_legacyLogout(server: CaptureServer) -> None:
    """
    L3: POST /api/auth/logout answers C{{"ok": true}} and clears the web
    session cookie; the server goes on serving.
    """
    status, headers, body = call(server, "POST", "/api/auth/logout")
    assert (status, json.loads(body)) == (200, {"ok": True})
    cookie = headers["set-cookie"]
    assert cookie.startswith("capture_session=;") and "Max-Age=0" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert callJSON(server, "GET", "/api/auth/logout")[0] == 405
    assert callJSON(server, "GET", f"/api/addresses/{inbox()}/messages") == (200, [])
