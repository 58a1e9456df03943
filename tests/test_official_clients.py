"""
Mailsac's official clients against a running Capture, changing only the
base URL and the key: the npm package C{@mailsac/api} (run by C{node}) and
the PyPI package C{pymailsac} (its calls, and its pydantic models
validating our JSON strictly).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from typing import Any

import pytest
from pymailsac import MailsacClient
from pymailsac.client import MailsacException
from pymailsac.schemas import EmailAddress, EmailMessage

from tests.harness import CaptureServer
from tests.test_api import call, callJSON, send

_NODE_DIR = os.path.join(os.path.dirname(__file__), "node")

_PLAIN = (
    b"From: Alice Example <alice@example.net>\r\n"
    b"To: Bob <%(to)s>\r\n"
    b"Cc: carol@example.org\r\n"
    b"Subject: %(subject)s\r\n"
    b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <%(subject)s@example.net>\r\n"
    b"\r\n"
    b"Hello Bob, reset at https://example.net/reset/%(subject)s\r\n"
)

_WITH_ATTACHMENT = (
    b"From: alice@example.net\r\n"
    b"To: %(to)s\r\n"
    b"Subject: with attachment\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b'<p>See <a href="https://example.net/html">this</a></p>\r\n'
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b'Content-Disposition: attachment; filename="a.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQ=\r\n"
    b"--b1--\r\n"
)


def _inbox(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}@example.com"


def _plain(to: str, subject: str) -> bytes:
    return _PLAIN % {b"to": to.encode(), b"subject": subject.encode()}


def _apiBase(server: CaptureServer) -> str:
    return f"http://127.0.0.1:{server.ports['http']}/api"


def test_npmMailsacApi(server: CaptureServer) -> None:
    """
    C{@mailsac/api} with C{baseURL} pointing at Capture lists an inbox,
    reads a message's metadata, text, raw source and headers, stars and
    unstars it (the star list follows), deletes it, reserves, lists, reads
    and releases an owned address, reads and configures an address of the
    account's custom domain (C{getAddress}, C{updateAddress}), and reads
    C{/me}; every answer matches what was sent.
    """
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(_NODE_DIR, "node_modules", "@mailsac", "api")):
        pytest.fail("node and tests/node/node_modules are installed by scripts/test")
    address, owned = _inbox("npm"), _inbox("npm-owned")
    domain = f"npm-{secrets.token_hex(4)}.test"
    assert callJSON(server, "POST", f"/api/domains/{domain}", server.key)[0] == 200
    inDomain = f"named@{domain}"
    older = send(server, address, _plain(address, "older"))
    newest = send(server, address, _plain(address, "newest"))
    env = {
        **os.environ,
        "CAPTURE_API": _apiBase(server),
        "CAPTURE_KEY": server.key or "",
        "CAPTURE_INBOX": address,
        "CAPTURE_OWNED": owned,
        "CAPTURE_DOMAIN_ADDRESS": inDomain,
    }
    result = subprocess.run(
        [node, "mailsac_client.js"], cwd=_NODE_DIR, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)

    messageId = f"{newest}-0"
    assert summary["listed"] == [
        {"_id": messageId, "subject": "newest"}, {"_id": f"{older}-0", "subject": "older"},
    ]
    metadata = summary["metadata"]
    assert metadata["_id"] == messageId and metadata["inbox"] == address
    assert metadata["from"] == [{"address": "alice@example.net", "name": "Alice Example"}]
    assert metadata["to"] == [{"address": address, "name": "Bob"}]
    assert metadata["cc"] == [{"address": "carol@example.org", "name": ""}]
    assert metadata["links"] == ["https://example.net/reset/newest"]
    assert summary["text"] == "Hello Bob, reset at https://example.net/reset/newest\r\n"
    assert summary["raw"].startswith("Received: ")
    assert summary["raw"].endswith(_plain(address, "newest").decode())
    assert summary["headers"]["subject"] == ["newest"]
    assert summary["headers"]["message-id"] == ["<newest@example.net>"]
    assert [h["name"] for h in summary["headersOrdered"]] == [
        "received", "from", "to", "cc", "subject", "date", "message-id",
    ]

    assert summary["starred"]["_id"] == messageId
    assert summary["starred"]["savedBy"] == server.account
    assert messageId in summary["starredList"]
    assert summary["unstarred"]["savedBy"] is None
    assert messageId not in summary["starredAfter"]

    assert summary["deleted"] == {"message": "Message was deleted.", "_id": messageId, "inbox": address}
    assert summary["listedAfterDelete"] == [f"{older}-0"]
    assert summary["count"] == {"count": 1, "inbox": address}

    assert summary["availableBefore"] == {"available": True, "email": owned, "owned": False}
    assert summary["reserved"]["_id"] == owned
    assert summary["reserved"]["owner"] == server.account
    assert owned in summary["addresses"]
    assert summary["address"]["_id"] == owned
    assert summary["released"] == 200
    assert owned not in summary["addressesAfter"]

    assert summary["domainAddress"]["_id"] == inDomain
    assert summary["domainAddress"]["owner"] == server.account
    assert summary["domainAddress"]["implicit"] is True
    assert summary["domainAddressUpdated"]["enablews"] is True
    assert summary["domainAddressUpdated"]["implicit"] is False

    assert summary["me"]["_id"] == server.account
    assert summary["me"]["apiAccess"] == 1


def test_pymailsacClient(server: CaptureServer) -> None:
    """
    C{pymailsac.MailsacClient} with C{base_url} at Capture: its health
    check, list (models built from our JSON), one message, its text, delete
    one message, and purge an owned inbox.
    """
    client = MailsacClient(server.key or "", base_url=_apiBase(server))
    assert client.check_health()
    address = _inbox("pymailsac")
    older = send(server, address, _plain(address, "older"))
    newest = send(server, address, _plain(address, "newest"))

    listed = client.get_messages(address)
    assert [(m.id, m.subject) for m in listed] == [(f"{newest}-0", "newest"), (f"{older}-0", "older")]
    assert [(a.address, a.name) for a in listed[0].to] == [(address, "Bob")]
    assert listed[0].cc == [{"address": "carol@example.org", "name": ""}]

    message = client.get_message(address, f"{older}-0")
    assert message.id == f"{older}-0" and message.inbox == address
    assert message.links == ["https://example.net/reset/older"]
    assert message.savedBy is None and message.read is None and message.rtls is True

    text = client.get_message_plain_text(address, f"{older}-0")
    assert text == "Hello Bob, reset at https://example.net/reset/older\r\n"

    assert client.delete_message(address, f"{older}-0") is True
    assert [m.id for m in client.get_messages(address)] == [f"{newest}-0"]
    with pytest.raises(MailsacException):
        client.get_message(address, f"{older}-0")
    with pytest.raises(MailsacException):
        client.delete_message(address, f"{older}-0")

    # Purge needs an owned inbox (M2); the public one is refused.
    with pytest.raises(MailsacException):
        client.delete_messages(address)
    owned = _inbox("pymailsac-owned")
    status, _ = callJSON(server, "POST", f"/api/addresses/{owned}", server.key)
    assert status == 200
    send(server, owned, _plain(owned, "owned"))
    assert len(client.get_messages(owned)) == 1
    assert client.delete_messages(owned) is True
    assert client.get_messages(owned) == []


def _validate(body: Any) -> EmailMessage:
    """
    pymailsac's models, strictly (no coercion): every field of our JSON has
    the type it declares; C{from} entries are its C{EmailAddress}.
    """
    message = EmailMessage.model_validate(body, strict=True)
    for entry in body["from"]:
        EmailAddress.model_validate(entry, strict=True)
    return message


def test_pymailsacModelsValidateOurJSON(server: CaptureServer) -> None:
    """
    Every message shape we return (list, one message, starred list, the
    star toggle's answer, the unified inbox, filter and search, a message
    with an HTML part and an attachment, one without any header) validates
    strictly against pymailsac's C{EmailMessage}.
    """
    address = _inbox("models")
    plain = f"{send(server, address, _plain(address, 'models'))}-0"
    attached = f"{send(server, address, _WITH_ATTACHMENT % {b'to': address.encode()})}-0"
    bare = f"{send(server, address, b'no headers at all')}-0"
    key = server.key

    status, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", key)
    assert status == 200 and [m["_id"] for m in listed] == [bare, attached, plain]
    for body in listed:
        _validate(body)
    withAttachment = _validate(listed[1])
    assert withAttachment.attachments == ["d05374dc381d9b52806446a71c8e79b1"]
    assert withAttachment.links == ["https://example.net/html"]

    status, one = callJSON(server, "GET", f"/api/addresses/{address}/messages/{plain}", key)
    assert status == 200 and _validate(one).id == plain

    status, starred = callJSON(server, "PUT", f"/api/addresses/{address}/messages/{plain}/star", key)
    assert status == 200 and _validate(starred).savedBy == server.account
    status, starredList = callJSON(server, "GET", "/api/addresses/starred/messages", key)
    assert status == 200 and plain in [_validate(m).id for m in starredList]
    status, read = callJSON(server, "PUT", f"/api/addresses/{address}/messages/{plain}/read/true", key)
    assert status == 200
    status, one = callJSON(server, "GET", f"/api/addresses/{address}/messages/{plain}", key)
    assert _validate(one).read is True

    for path, field in [
        ("/api/inbox?limit=5", "messages"),
        ("/api/inbox-search?query=models", "messages"),
        (f"/api/inbox-filter?andTo={address}", "messages"),
    ]:
        status, body = callJSON(server, "GET", path, key)
        assert status == 200, (path, body)
        for message in body[field]:
            _validate(message)
    # The starred copy is on the account's unified inbox and in its search.
    status, body = callJSON(server, "GET", "/api/inbox-search?query=models", key)
    assert plain in [m["_id"] for m in body["messages"]]


def test_serverServesAfterClients(server: CaptureServer) -> None:
    """
    A refused pymailsac call (unknown message) leaves the server serving
    the next client.
    """
    client = MailsacClient(server.key or "", base_url=_apiBase(server))
    address = _inbox("after")
    with pytest.raises(MailsacException, match="not found|Not Found"):
        client.get_message(address, "nosuchid-0")
    status, _, body = call(server, "GET", "/livez")
    assert status == 200, body
