"""
The Mailsac-compatible API on a real server, with a real HTTP client:
mail sent over SMTP, read over HTTP.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from capture.ids import newApiKey
from tests.harness import CaptureServer

_QUEUED = re.compile(rb"OK : queued as ([0-9A-Za-z]+)")
_FIELDS = {
    "_id", "from", "to", "cc", "bcc", "subject", "savedBy", "inbox", "originalInbox",
    "domain", "received", "size", "attachments", "ip", "via", "folder", "labels", "read",
    "rtls", "links", "spam",
}


def call(server: CaptureServer, method: str, path: str, key: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """
    One HTTP request; returns status, headers (lower-case names) and body.
    """
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}{path}", method=method,
        headers={**({"Mailsac-Key": key} if key else {}), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def callJSON(server: CaptureServer, method: str, path: str, key: str | None = None,
             **kwargs: Any) -> tuple[int, Any]:
    status, headers, body = call(server, method, path, key, **kwargs)
    assert headers["content-type"] == "application/json; charset=utf-8", (status, body)
    return status, json.loads(body)


def send(server: CaptureServer, to: str, message: bytes) -> str:
    client = server.smtp()
    client.mail("sender@example.com")
    client.rcpt(to)
    code, reply = client.data(message)
    client.quit()
    match = _QUEUED.match(reply)
    assert code == 250 and match
    return match.group(1).decode()


def inbox() -> str:
    return f"api-{secrets.token_hex(6)}@example.com"


def test_listPublicInboxWithoutKey(server: CaptureServer) -> None:
    """
    A public inbox lists without a key, newest first, each message with
    every field of Mailsac's EmailMessage and lists as C{[]}.
    """
    address = inbox()
    first = send(server, address, b"From: Alice <alice@example.net>\r\nSubject: one\r\n\r\n1\r\n")
    second = send(server, address, b"Subject: two\r\n\r\nsee https://example.com/x\r\n")
    status, body = callJSON(server, "GET", f"/api/addresses/{address}/messages")
    assert status == 200
    assert [m["_id"] for m in body] == [f"{second}-0", f"{first}-0"]
    assert all(set(m) == _FIELDS for m in body)
    newest, oldest = body
    assert newest["links"] == ["https://example.com/x"]
    assert oldest["from"] == [{"address": "alice@example.net", "name": "Alice"}]
    assert oldest["subject"] == "one" and oldest["inbox"] == address
    assert oldest["cc"] == [] and oldest["attachments"] == [] and oldest["savedBy"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", oldest["received"])
    status, count = callJSON(server, "GET", f"/api/addresses/{address}/message-count")
    assert (status, count) == (200, {"count": 2, "inbox": address})
    status, limited = callJSON(server, "GET", f"/api/addresses/{address}/messages?limit=1")
    assert [m["_id"] for m in limited] == [f"{second}-0"]


def assertListingIsEachMessagesJSON(server: CaptureServer, address: str) -> None:
    """
    The listing of C{address} is, byte for byte, the array of what the
    single-message route answers for each of its copies.
    """
    base = f"/api/addresses/{address}/messages"
    status, _, listed = call(server, "GET", base, server.key)
    assert status == 200
    ids = [m["_id"] for m in json.loads(listed)]
    singles = [call(server, "GET", f"{base}/{i}", server.key)[2] for i in ids]
    assert listed == b"[" + b",".join(singles) + b"]"


def test_listingIsEachMessagesJSON(server: CaptureServer) -> None:
    """
    The listing (served from stored texts) is, byte for byte, the array of
    what the single-message route answers for each copy: starred,
    labelled, read and unread copies, names with quotes and non-ASCII;
    and it stays so after each change of a field it shows (labels added
    and removed, read and unread, folder, star and unstar).
    """
    address = inbox()
    ids = [
        send(server, address, b"Subject: plain\r\n\r\n1\r\n"),
        send(server, address, 'From: "Ann \\"Q\\"" <a@example.net>\r\nTo: J\u00fcrgen '
             '<j@example.com>\r\nSubject: \u2603 \t tab\r\n\r\nhttps://example.com/x\r\n'
             .encode()),
        send(server, address, b"no header\r\n"),
    ]
    base = f"/api/addresses/{address}/messages"
    key = server.key
    assert call(server, "PUT", f"{base}/{ids[0]}-0/labels/a%22b", key)[0] == 200
    assert call(server, "PUT", f"{base}/{ids[0]}-0/read/true", key)[0] == 200
    assert call(server, "PUT", f"{base}/{ids[1]}-0/read/false", key)[0] == 200
    assert call(server, "PUT", f"{base}/{ids[2]}-0/star", key)[0] == 200
    status, _, listed = call(server, "GET", base, key)
    assert status == 200
    singles = [call(server, "GET", f"{base}/{i}-0", key)[2] for i in reversed(ids)]
    assert listed == b"[" + b",".join(singles) + b"]"
    for method, path in [
        ("PUT", f"{ids[1]}-0/labels/%C3%A9t%C3%A9"), ("DELETE", f"{ids[0]}-0/labels/a%22b"),
        ("PUT", f"{ids[1]}-0/read/true"), ("PUT", f"{ids[0]}-0/read/false"),
        ("PUT", f"{ids[1]}-0/folder/spam"), ("PUT", f"{ids[2]}-0/star"),
        ("PUT", f"{ids[0]}-0/star"),
    ]:
        assert call(server, method, f"{base}/{path}", key)[0] == 200, path
        assertListingIsEachMessagesJSON(server, address)


@pytest.mark.parametrize(
    "query, error",
    [("limit=1001", "limit"), ("limit=-1", "limit"), ("limit=abc", "limit"),
     ("until=yesterday", "until")],
)
def test_badQueryParameters(server: CaptureServer, query: str, error: str) -> None:
    """
    C{limit} outside 0..1000 and an C{until} that is no date get 400 with
    Mailsac's error body and its C{validationErrors}.
    """
    status, body = callJSON(server, "GET", f"/api/addresses/{inbox()}/messages?{query}")
    assert status == 400
    assert set(body) == {"message", "error", "validationErrors"}
    assert body["error"] == "Bad Request" and error in body["validationErrors"][0]


@pytest.mark.parametrize("address", ["not-an-address", "a@b@c", "\x00@example.com", "a b@example.com"])
def test_malformedAddress(server: CaptureServer, address: str) -> None:
    """
    A malformed address gets 400 with C{validationErrors}.
    """
    status, body = callJSON(
        server, "GET", f"/api/addresses/{urllib.parse.quote(address)}/messages"
    )
    assert status == 400 and body["validationErrors"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/addresses/a%2Fb@example.com/messages",
        "/api/addresses/..%2F..%2Fme/messages",
        "/api/addresses/../me",
        "/api/raw/a%2F..%2Fb@example.com/x-0",
    ],
)
def test_pathTricks(server: CaptureServer, path: str) -> None:
    """
    Encoded slashes and dot segments in path parameters get 400 or 404
    JSON, never another route or another inbox.
    """
    status, body = callJSON(server, "GET", path)
    assert status in (400, 404) and "message" in body


def test_badKeyRefused(server: CaptureServer) -> None:
    """
    A key that is not a live key gets 401 in the header and in the query,
    even for a public inbox.
    """
    path = f"/api/addresses/{inbox()}/messages"
    assert callJSON(server, "GET", path, key=newApiKey())[0] == 401
    assert callJSON(server, "GET", path + "?_mailsacKey=" + newApiKey())[0] == 401
    assert callJSON(server, "GET", path, headers={"mailsac-key": server.key or ""})[0] == 200


def test_ownedInboxClosedToOthers(server: CaptureServer) -> None:
    """
    An address owned by another account lists 401 without a key and 403
    with another account's key, with no byte of its mail in the body; its
    owner reads it.
    """
    owner = f"owner{secrets.token_hex(4)}"
    created = server.cli("account", "create", owner)
    ownerKey = created.stdout.strip().splitlines()[-1]
    address = inbox()
    assert callJSON(server, "POST", f"/api/addresses/{address}", ownerKey)[0] == 200
    queueId = send(server, address, b"Subject: secret-subject\r\n\r\nsecret body\r\n")
    for key, expected in ((None, 401), (server.key, 403)):
        status, _, body = call(server, "GET", f"/api/addresses/{address}/messages", key)
        assert status == expected and b"secret" not in body
        status, _, body = call(
            server, "GET", f"/api/addresses/{address}/messages/{queueId}-0", key
        )
        assert status == expected and b"secret" not in body
        status, _, body = call(server, "GET", f"/api/raw/{address}/{queueId}-0", key)
        assert status == expected and b"secret" not in body
    status, body = callJSON(server, "GET", f"/api/addresses/{address}/messages", ownerKey)
    assert status == 200 and [m["subject"] for m in body] == ["secret-subject"]


def test_readRawTextAndDelete(server: CaptureServer) -> None:
    """
    One message's metadata, its raw bytes exactly as stored, its text, and
    its deletion (200 with Mailsac's body, then 404 everywhere).
    """
    address = inbox()
    message = b"Subject: read me\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>you</b></p>\r\n"
    queueId = send(server, address, message)
    messageId = f"{queueId}-0"
    status, body = callJSON(server, "GET", f"/api/addresses/{address}/messages/{messageId}")
    assert status == 200 and body["_id"] == messageId and body["subject"] == "read me"
    status, headers, raw = call(server, "GET", f"/api/raw/{address}/{messageId}")
    assert status == 200 and raw.startswith(b"Received: ") and raw.endswith(message)
    with sqlite3.connect(os.path.join(server.data, "capture.sqlite3")) as db:
        stored = db.execute(
            "SELECT r.raw FROM message_raw r JOIN messages m ON m.id = r.message "
            "WHERE m.queue_id = ?", (queueId,)
        ).fetchone()[0]
    assert raw == bytes(stored)
    status, headers, text = call(server, "GET", f"/api/text/{address}/{messageId}?download=1")
    assert status == 200 and text == b"Hello you\n"
    assert headers["content-disposition"] == f'attachment; filename="{messageId}.txt"'
    status, body = callJSON(server, "DELETE", f"/api/addresses/{address}/messages/{messageId}")
    assert (status, body) == (
        200, {"message": "Message was deleted.", "_id": messageId, "inbox": address}
    )
    for path in (f"/api/addresses/{address}/messages/{messageId}", f"/api/raw/{address}/{messageId}"):
        status, body = callJSON(server, "GET", path)
        assert status == 404 and body["message"] == "Message not found by id."


def test_textOfHtmlOnlyMailKeepsLinks(server: CaptureServer) -> None:
    """
    C{/api/text} of HTML-only mail keeps each link's target after its text,
    in parentheses, entities decoded (it was "Hello bold link"): test
    scripts take reset links from it.  A link showing its own address
    keeps it once; a big body (read on a thread) gets the same rendering.
    """
    address = inbox()
    html = (b"<p>Hello <b>bold</b> <a href=\"https://example.com/reset?t=1&amp;u=2\">link</a>"
            b"</p><p>Or open <a href=\"https://example.com/x\">https://example.com/x</a></p>")
    for body in (html, html + b"<p>" + b"filler " * 5000 + b"</p>"):
        messageId = send(server, address, b"Subject: reset\r\nContent-Type: text/html\r\n"
                         b"\r\n" + body + b"\r\n") + "-0"
        status, headers, text = call(server, "GET", f"/api/text/{address}/{messageId}")
        assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8"
        assert text.startswith(b"Hello bold link (https://example.com/reset?t=1&u=2)\n\n"
                               b"Or open https://example.com/x\n"), text[:200]


@pytest.mark.parametrize("messageId", ["nope", "..", "abc-", "abc-1-2", "%2e%2e", "a%00b-0"])
def test_unknownMessageIds(server: CaptureServer, messageId: str) -> None:
    """
    Ids that name no message, and path tricks in the id, get 404 JSON.
    """
    status, body = callJSON(server, "GET", f"/api/addresses/{inbox()}/messages/{messageId}")
    assert status in (400, 404) and "message" in body


def test_messageOfAnotherInboxNotFound(server: CaptureServer) -> None:
    """
    A message id asked for under another inbox's path is not found: a path
    never reaches another inbox's mail.
    """
    queueId = send(server, inbox(), b"Subject: elsewhere\r\n\r\nx\r\n")
    status, _, body = call(server, "GET", f"/api/addresses/{inbox()}/messages/{queueId}-0")
    assert status == 404 and b"elsewhere" not in body


def test_meAndUnknownRoutes(server: CaptureServer) -> None:
    """
    C{/api/me} names the key's account (401 without a key); unknown paths
    get 404 JSON, not an HTML page.
    """
    status, body = callJSON(server, "GET", "/api/me", server.key)
    assert status == 200 and body["_id"] == server.account and body["capturePrivate"] is False
    assert callJSON(server, "GET", "/api/me")[0] == 401
    # The limit that applies: the server's default (--message-limit) for
    # an account without its own, else its own; it was null.
    assert body["messageLimit"] == 100000
    name = f"limited{secrets.token_hex(3)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    server.cli("account", "set", name, "--message-limit", "7")
    assert callJSON(server, "GET", "/api/me", key)[1]["messageLimit"] == 7
    server.cli("account", "set", name, "--message-limit", "0")
    assert callJSON(server, "GET", "/api/me", key)[1]["messageLimit"] == 0
    status, body = callJSON(server, "GET", "/api/no-such-route")
    assert status == 404 and body["error"] == "Not Found"
    status, body = callJSON(server, "GET", "/livez")
    assert (status, body) == (200, {"status": "ok"})


def test_starToggles(server: CaptureServer) -> None:
    """
    PUT .../star stars a message for the key's account (hiding it from
    everyone else's listing of the public inbox) and a second PUT unstars
    it; starring needs a key.
    """
    address = inbox()
    messageId = send(server, address, b"Subject: star me\r\n\r\nx\r\n") + "-0"
    path = f"/api/addresses/{address}/messages/{messageId}/star"
    assert callJSON(server, "PUT", path)[0] == 401
    status, body = callJSON(server, "PUT", path, server.key)
    assert status == 200 and body["savedBy"] == server.account
    assert callJSON(server, "GET", f"/api/addresses/{address}/messages")[1] == []
    status, starred = callJSON(server, "GET", "/api/addresses/starred/messages", server.key)
    assert messageId in [m["_id"] for m in starred]
    status, body = callJSON(server, "PUT", path, server.key)
    assert status == 200 and body["savedBy"] is None
    assert [m["_id"] for m in callJSON(server, "GET", f"/api/addresses/{address}/messages")[1]] == [
        messageId
    ]


def test_headersInThreeFormats(server: CaptureServer) -> None:
    """
    Headers as C{json} (lower-case names to lists), C{json-ordered} and
    C{plain}, also under the legacy path and the older C{format} name; an
    unknown format is 400.
    """
    address = inbox()
    messageId = send(
        server, address, b"Subject: h\r\nX-Test: one\r\nX-Test: two\r\n\r\nx\r\n"
    ) + "-0"
    base = f"/api/addresses/{address}/messages/{messageId}/headers"
    status, grouped = callJSON(server, "GET", base)
    assert status == 200 and grouped["x-test"] == ["one", "two"] and grouped["subject"] == ["h"]
    assert len(grouped["received"]) == 1
    status, ordered = callJSON(server, "GET", base + "?messageHeadersFormat=json-ordered")
    assert [h["name"] for h in ordered] == ["received", "subject", "x-test", "x-test"]
    status, headers, plain = call(server, "GET", f"/api/headers/{address}/{messageId}?format=plain")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert plain.endswith(b"Subject: h\r\nX-Test: one\r\nX-Test: two\r\n")
    assert callJSON(server, "GET", base + "?messageHeadersFormat=xml")[0] == 400


def test_reserveAddressMakesItsMailPrivate(server: CaptureServer) -> None:
    """
    Reserving an address (POST) makes its mail, earlier mail included,
    private: other keys get 403 and nothing of it; the owner lists it,
    sees the address in /api/addresses and as owned in availability;
    reserving twice is 400, another account's attempt 401; releasing
    (DELETE) opens the inbox again.
    """
    address = inbox()
    send(server, address, b"Subject: before reserving\r\n\r\nx\r\n")
    other = f"other{secrets.token_hex(4)}"
    otherKey = server.cli("account", "create", other).stdout.strip().splitlines()[-1]
    status, reserved = callJSON(server, "POST", f"/api/addresses/{address}", otherKey)
    assert status == 200 and reserved["_id"] == address and reserved["owner"] == other
    assert callJSON(server, "POST", f"/api/addresses/{address}", otherKey)[0] == 400
    assert callJSON(server, "POST", f"/api/addresses/{address}", server.key)[0] == 401
    status, _, body = call(server, "GET", f"/api/addresses/{address}/messages", server.key)
    assert status == 403 and b"before reserving" not in body
    status, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", otherKey)
    assert [m["subject"] for m in listed] == ["before reserving"]
    assert address in [a["_id"] for a in callJSON(server, "GET", "/api/addresses", otherKey)[1]]
    assert callJSON(server, "GET", f"/api/addresses/{address}/availability", otherKey)[1] == {
        "available": False, "email": address, "owned": True,
    }
    assert callJSON(server, "GET", f"/api/addresses/{address}", server.key)[0] == 401
    assert callJSON(server, "DELETE", f"/api/addresses/{address}", server.key)[0] == 401
    assert callJSON(server, "DELETE", f"/api/addresses/{address}", otherKey)[0] == 200
    assert callJSON(server, "GET", f"/api/addresses/{address}/messages")[0] == 200
    assert callJSON(server, "DELETE", f"/api/addresses/{address}", otherKey)[0] == 400


def test_purgeKeepsStarredMail(server: CaptureServer) -> None:
    """
    DELETE .../messages purges an owned inbox (204) but keeps starred mail;
    on a public inbox, or for someone else, it is 401 and deletes nothing.
    """
    address = inbox()
    owner = f"purger{secrets.token_hex(4)}"
    ownerKey = server.cli("account", "create", owner).stdout.strip().splitlines()[-1]
    first = send(server, address, b"Subject: keep\r\n\r\nx\r\n") + "-0"
    send(server, address, b"Subject: go\r\n\r\nx\r\n")
    assert callJSON(server, "DELETE", f"/api/addresses/{address}/messages", ownerKey)[0] == 401
    assert callJSON(server, "POST", f"/api/addresses/{address}", ownerKey)[0] == 200
    assert callJSON(
        server, "PUT", f"/api/addresses/{address}/messages/{first}/star", ownerKey
    )[0] == 200
    assert callJSON(server, "DELETE", f"/api/addresses/{address}/messages", server.key)[0] == 401
    status, _, body = call(server, "DELETE", f"/api/addresses/{address}/messages", ownerKey)
    assert (status, body) == (204, b"")
    listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", ownerKey)[1]
    assert [m["subject"] for m in listed] == ["keep"]


def test_callsWithAKeyAreCountedAsOps(server: CaptureServer) -> None:
    """
    Every call made with a key counts one op for its account, shown at
    once in /api/me's C{moAPICount} (captured messages count too).
    """
    first = callJSON(server, "GET", "/api/me", server.key)[1]["moAPICount"]
    callJSON(server, "GET", f"/api/addresses/{inbox()}/messages", server.key)
    second = callJSON(server, "GET", "/api/me", server.key)[1]["moAPICount"]
    assert second == first + 2
    send(server, inbox(), b"Subject: counted\r\n\r\nx\r\n")
    third = callJSON(server, "GET", "/api/me", server.key)[1]["moAPICount"]
    assert third == second + 2


def test_keyInTheJSONBody(server: CaptureServer) -> None:
    """
    The third key transport: a C{_mailsacKey} field in a JSON body (here,
    reserving an address).
    """
    address = inbox()
    body = json.dumps({"_mailsacKey": server.key}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}/api/addresses/{address}", data=body,
        method="POST", headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["owner"] == server.account


def test_badBodies(server: CaptureServer) -> None:
    """
    A body that is not JSON gets 400; one over 1 MiB gets 413 before it is
    read whole (the connection is closed); the next client is served.
    """
    for data, expected in ((b"not json", 400), (b"{" + b" " * (2 * 1024 * 1024), 413)):
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.ports['http']}/api/addresses/{inbox()}", data=data,
            method="POST", headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:
            assert error.code == expected
            assert "message" in json.loads(error.read())
        except (ConnectionError, urllib.error.URLError):
            # The 413 may arrive while the client is still sending.
            assert expected == 413
        else:
            raise AssertionError("accepted")
    assert callJSON(server, "GET", "/livez")[0] == 200


def test_attachmentsListedAndDownloaded(server: CaptureServer) -> None:
    """
    A message's attachments are described (checksum, type, name, size,
    encoding) and each downloads by md5, content-id or file name as the
    exact decoded bytes with its content type; an unknown one is 404.
    """
    import base64
    import hashlib

    pdf = os.urandom(3000)
    png = os.urandom(500)
    message = (
        b"Subject: files\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b'--B\r\nContent-Type: application/pdf; name="report.pdf"\r\n'
        b'Content-Disposition: attachment; filename="report.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(pdf).replace(b"\n", b"\r\n")
        + b"--B\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(png).replace(b"\n", b"\r\n")
        + b"--B--\r\n"
    )
    address = inbox()
    messageId = send(server, address, message) + "-0"
    base = f"/api/addresses/{address}/messages/{messageId}/attachments"
    status, described = callJSON(server, "GET", base)
    assert status == 200
    assert described == [
        {"checksum": hashlib.md5(pdf).hexdigest(), "contentDisposition": "attachment",
         "contentId": None, "contentType": "application/pdf", "fileName": "report.pdf",
         "length": 3000, "transferEncoding": "base64"},
        {"checksum": hashlib.md5(png).hexdigest(), "contentDisposition": "attachment",
         "contentId": "logo@x", "contentType": "image/png", "fileName": None,
         "length": 500, "transferEncoding": "base64"},
    ]
    for identifier, expected, contentType in (
        (hashlib.md5(pdf).hexdigest(), pdf, "application/pdf"),
        ("report.pdf", pdf, "application/pdf"),
        ("logo@x", png, "image/png"),
    ):
        status, headers, body = call(server, "GET", f"{base}/{urllib.parse.quote(identifier)}")
        assert (status, body, headers["content-type"]) == (200, expected, contentType)
    assert callJSON(server, "GET", f"{base}/nothing.txt")[0] == 404


def test_bodySanitizedAndDirtyInlined(server: CaptureServer) -> None:
    """
    /api/body strips scripts, event handlers, images, styles
    and links (keeping their text), so nothing remote loads and nothing
    runs; /api/dirty keeps the HTML as sent with the cid: image inlined
    as a data: URI; a text-only message gets a simple HTML rendering.
    """
    import base64

    png = os.urandom(64)
    hostile = (
        '<p onclick="steal()">Hi <b>there</b><script>alert(1)</script>'
        '<img src="https://tracker.example/p.gif" onerror="x()">'
        '<a href="javascript:evil()">click</a> <a href="https://example.com/r">reset</a>'
        '<span style="background:url(https://tracker.example/c)">s</span>'
        '<img src="cid:logo@x"></p>'
    )
    message = (
        b"Subject: hostile\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/related; boundary="R"\r\n\r\n'
        b"--R\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + hostile.encode() + b"\r\n"
        b"--R\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(png).replace(b"\n", b"\r\n") + b"--R--\r\n"
    )
    address = inbox()
    messageId = send(server, address, message) + "-0"
    status, headers, body = call(server, "GET", f"/api/body/{address}/{messageId}")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    for banned in (b"<script", b"alert", b"onclick", b"onerror", b"<img", b"<a ", b"href",
                   b"javascript:", b"tracker.example", b"style="):
        assert banned not in body, banned
    assert b"<b>there</b>" in body and b"reset" in body and b"click" in body
    status, _, dirty = call(server, "GET", f"/api/dirty/{address}/{messageId}")
    assert status == 200
    assert b'src="data:image/png;base64,' + base64.b64encode(png) + b'"' in dirty
    assert b"<script>alert(1)</script>" in dirty
    textOnly = send(server, address, b"Subject: plain\r\n\r\na < b & c\r\n") + "-0"
    status, _, simple = call(server, "GET", f"/api/body/{address}/{textOnly}")
    assert status == 200 and b"a &lt; b &amp; c" in simple


@pytest.mark.serverOptions("--require-key")
def test_requireKeyClosesPublicInboxes(freshServer: CaptureServer) -> None:
    """
    With C{--require-key}, a public inbox is 401 without a key (and shows
    nothing of its mail) but readable with any account's key.
    """
    address = inbox()
    send(freshServer, address, b"Subject: keyed only\r\n\r\nx\r\n")
    status, _, body = call(freshServer, "GET", f"/api/addresses/{address}/messages")
    assert status == 401 and b"keyed only" not in body
    status, listed = callJSON(
        freshServer, "GET", f"/api/addresses/{address}/messages", freshServer.key
    )
    assert status == 200 and [m["subject"] for m in listed] == ["keyed only"]


def test_labelsFolderAndRead(server: CaptureServer) -> None:
    """
    Labels are added and removed (each a no-op when already so), the
    folder moves among Mailsac's folders, read is set and cleared; bad
    values are 400 and all of it needs a key.
    """
    address = inbox()
    messageId = send(server, address, b"Subject: organise\r\n\r\nx\r\n") + "-0"
    base = f"/api/addresses/{address}/messages/{messageId}"
    key = server.key
    assert callJSON(server, "PUT", f"{base}/labels/work")[0] == 401
    assert callJSON(server, "PUT", f"{base}/labels/work", key)[1] == {
        "_id": messageId, "labels": ["work"]}
    assert callJSON(server, "PUT", f"{base}/labels/work", key)[1]["labels"] == ["work"]
    assert callJSON(server, "PUT", f"{base}/labels/big%20deal", key)[1]["labels"] == [
        "work", "big deal"]
    assert callJSON(server, "DELETE", f"{base}/labels/work", key)[1]["labels"] == ["big deal"]
    assert callJSON(server, "DELETE", f"{base}/labels/absent", key)[1]["labels"] == ["big deal"]
    assert callJSON(server, "PUT", f"{base}/folder/trash", key)[1] == {
        "_id": messageId, "folder": "trash"}
    assert callJSON(server, "PUT", f"{base}/folder/nowhere", key)[0] == 400
    assert callJSON(server, "PUT", f"{base}/read/true", key)[1] == {"_id": messageId, "read": True}
    assert callJSON(server, "PUT", f"{base}/read/maybe", key)[0] == 400
    message = callJSON(server, "GET", base, key)[1]
    assert (message["labels"], message["folder"], message["read"]) == (["big deal"], "trash", True)
    assert callJSON(server, "PUT", f"{base}/read/false", key)[1]["read"] is False


def test_unifiedInbox(server: CaptureServer) -> None:
    """
    /api/inbox lists the account's mail across its owned addresses and its
    starred mail, newest first, with the unread count, C{limit} and
    C{skip}; others' public mail is not in it; it needs a key.
    """
    name = f"unified{secrets.token_hex(4)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    owned = inbox()
    assert callJSON(server, "POST", f"/api/addresses/{owned}", key)[0] == 200
    first = send(server, owned, b"Subject: owned one\r\n\r\nx\r\n") + "-0"
    public = inbox()
    starred = send(server, public, b"Subject: starred public\r\n\r\nx\r\n") + "-0"
    send(server, public, b"Subject: not mine\r\n\r\nx\r\n")
    assert callJSON(
        server, "PUT", f"/api/addresses/{public}/messages/{starred}/star", key
    )[0] == 200
    callJSON(server, "PUT", f"/api/addresses/{owned}/messages/{first}/read/true", key)
    status, body = callJSON(server, "GET", "/api/inbox", key)
    assert status == 200
    assert [m["_id"] for m in body["messages"]] == [starred, first]
    assert (body["unread"], body["limit"], body["skip"]) == (1, 20, 0)
    paged = callJSON(server, "GET", "/api/inbox?limit=1&skip=1", key)[1]
    assert [m["_id"] for m in paged["messages"]] == [first]
    assert callJSON(server, "GET", "/api/inbox")[0] == 401
    assert callJSON(server, "GET", "/api/inbox?since=soon", key)[0] == 400


def test_inboxFilterAndSearch(server: CaptureServer) -> None:
    """
    /api/inbox-filter ANDs its conditions over the account's mail and
    needs at least one (400); /api/inbox-search ORs one query over
    subject, sender and recipients; neither sees other accounts' mail, and
    LIKE wildcards in a query match only themselves.
    """
    name = f"finder{secrets.token_hex(4)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    owned = inbox()
    assert callJSON(server, "POST", f"/api/addresses/{owned}", key)[0] == 200
    invoice = send(server, owned, b"From: billing@shop.example\r\nSubject: Invoice 42\r\n\r\nx\r\n")
    reset = send(server, owned, b"From: auth@site.example\r\nSubject: Reset 100%\r\n\r\nx\r\n")
    send(server, inbox(), b"From: billing@shop.example\r\nSubject: Invoice 43\r\n\r\nx\r\n")
    status, body = callJSON(server, "GET", "/api/inbox-filter?andSubjectIncludes=invoice", key)
    assert status == 200 and [m["_id"] for m in body["messages"]] == [invoice + "-0"]
    body = callJSON(
        server, "GET", "/api/inbox-filter?andFrom=billing&andSubjectIncludes=reset", key
    )[1]
    assert body["messages"] == []
    assert callJSON(server, "GET", "/api/inbox-filter", key)[0] == 400
    status, body = callJSON(server, "GET", "/api/inbox-search?query=site.example", key)
    assert status == 200 and [m["_id"] for m in body["messages"]] == [reset + "-0"]
    assert body["query"] == "site.example"
    body = callJSON(server, "GET", "/api/inbox-search?query=" + urllib.parse.quote("100%"), key)[1]
    assert [m["_id"] for m in body["messages"]] == [reset + "-0"]
    body = callJSON(server, "GET", "/api/inbox-search?query=" + urllib.parse.quote("%"), key)[1]
    assert [m["_id"] for m in body["messages"]] == [reset + "-0"]
    assert callJSON(server, "GET", "/api/inbox-search?query=", key)[0] == 400


def test_updateAddressSettings(server: CaptureServer) -> None:
    """
    PUT /api/addresses/{email} (and the legacy private-address-forwarding
    path) changes an owned address's info, webhook and websocket switch;
    bad values are 400 with validationErrors; another account gets 401.
    """
    address = inbox()
    assert callJSON(server, "POST", f"/api/addresses/{address}", server.key)[0] == 200

    def put(path: str, body: Any, key: str | None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.ports['http']}{path}", data=json.dumps(body).encode(),
            method="PUT", headers={"Content-Type": "application/json",
                                   **({"Mailsac-Key": key} if key else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = put(f"/api/addresses/{address}",
                       {"info": "signup tests", "enablews": True}, server.key)
    assert status == 200 and (body["info"], body["enablews"]) == ("signup tests", True)
    status, body = put(f"/api/private-address-forwarding/{address}",
                       {"webhook": "https://hooks.example/capture"}, server.key)
    assert status == 200 and body["webhook"] == "https://hooks.example/capture"
    assert body["info"] == "signup tests"
    status, body = put(f"/api/addresses/{address}",
                       {"webhook": "ftp://x", "enablews": "yes"}, server.key)
    assert status == 400 and len(body["validationErrors"]) == 2
    other = f"intruder{secrets.token_hex(4)}"
    otherKey = server.cli("account", "create", other).stdout.strip().splitlines()[-1]
    assert put(f"/api/addresses/{address}", {"info": "mine now"}, otherKey)[0] == 401
    listed = callJSON(server, "GET", "/api/addresses", server.key)[1]
    assert [a["info"] for a in listed if a["_id"] == address] == ["signup tests"]
