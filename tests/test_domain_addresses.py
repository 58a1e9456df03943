"""
Addresses inside one's own custom domain, on a real server: the domain's
owner reads and configures every address in it (D2, D3, D4, D5), its
catch-all C{*@domain} routes the domain's mail (webhooks here, the
websocket in C{test_live}), and an address another account reserved inside
the domain stays that account's.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.harness import CaptureServer
from tests.test_api import callJSON, send
from tests.test_webhooks import Receiver, _put, _waitFor, receivers  # noqa: F401


def _account(server: CaptureServer) -> tuple[str, str]:
    name = f"dom{secrets.token_hex(4)}"
    created = server.cli("account", "create", name)
    return name, created.stdout.strip().splitlines()[-1]


def _domain() -> str:
    return f"bobcorp-{secrets.token_hex(4)}.test"


def _post(server: CaptureServer, path: str, body: Any, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}{path}", data=json.dumps(body).encode(),
        method="POST", headers={"Content-Type": "application/json", "Mailsac-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_domainOwnerReadsAndConfiguresItsAddresses(server: CaptureServer) -> None:
    """
    After claiming a domain: D2 of any address in it is the owner's
    (C{implicit} until it has settings of its own), D4 gives it a webhook
    (and with it a record, listed by D1), D3 reserves another one, D3 on a
    reserved one is "You own that address already", D5 releases it (the
    mail stays the owner's through the domain), and another account gets
    401 for all of them.
    """
    bob, bobKey = _account(server)
    _, carolKey = _account(server)
    domain = _domain()
    assert callJSON(server, "POST", f"/api/domains/{domain}", bobKey)[0] == 200
    named = f"named@{domain}"
    status, body = callJSON(server, "GET", f"/api/addresses/{named}", bobKey)
    assert status == 200
    assert (body["_id"], body["owner"], body["implicit"], body["webhook"]) == (
        named, bob, True, None,
    )
    status, body = _put(server, f"/api/addresses/{named}",
                        {"webhook": "http://127.0.0.1:9/hook", "enablews": True}, bobKey)
    assert status == 200
    assert (body["_id"], body["owner"], body["implicit"], body["webhook"], body["enablews"]) == (
        named, bob, False, "http://127.0.0.1:9/hook", True,
    )
    status, body = callJSON(server, "GET", f"/api/addresses/{named}", bobKey)
    assert status == 200 and body["webhook"] == "http://127.0.0.1:9/hook"
    assert named in [a["_id"] for a in callJSON(server, "GET", "/api/addresses", bobKey)[1]]
    other = f"other@{domain}"
    status, body = callJSON(server, "POST", f"/api/addresses/{other}", bobKey)
    assert status == 200 and body["owner"] == bob and body["implicit"] is False
    status, body = callJSON(server, "POST", f"/api/addresses/{other}", bobKey)
    assert (status, body["message"]) == (400, "You own that address already.")
    assert callJSON(server, "DELETE", f"/api/addresses/{other}", bobKey)[0] == 200
    status, body = callJSON(server, "DELETE", f"/api/addresses/{other}", bobKey)
    assert (status, body["message"]) == (
        400, "That address is not reserved: it is yours through its domain.",
    )
    queueId = send(server, other, b"Subject: still private\r\n\r\nx\r\n")
    status, listed = callJSON(server, "GET", f"/api/addresses/{other}/messages", bobKey)
    assert status == 200 and [m["_id"] for m in listed] == [f"{queueId}-0"]
    for method in ("GET", "POST", "DELETE"):
        status, body = callJSON(server, method, f"/api/addresses/{named}", carolKey)
        assert (status, body["message"]) == (401, "That address belongs to another account.")
    status, _ = callJSON(server, "GET", f"/api/addresses/{other}/messages", carolKey)
    assert status == 403


def test_catchAllAddress(server: CaptureServer) -> None:
    """
    C{*@domain} is reserved by the domain's owner alone: it is the domain's
    catch-all (C{catchAll} names the domain, N2 shows it); another account
    is refused (401), and no one may reserve the catch-all of a domain
    nobody owns (400), alone or in bulk.
    """
    bob, bobKey = _account(server)
    _, carolKey = _account(server)
    domain = _domain()
    assert callJSON(server, "POST", f"/api/domains/{domain}", bobKey)[0] == 200
    catchAll = f"*@{domain}"
    status, body = callJSON(server, "POST", f"/api/addresses/{catchAll}", carolKey)
    assert (status, body["message"]) == (401, "That domain belongs to another account.")
    status, body = callJSON(server, "POST", f"/api/addresses/{catchAll}", bobKey)
    assert status == 200
    assert (body["_id"], body["owner"], body["catchAll"]) == (catchAll, bob, domain)
    status, body = callJSON(server, "GET", f"/api/domains/{domain}", bobKey)
    assert status == 200 and body["catchAllAddress"]["_id"] == catchAll
    nobodys = f"*@{_domain()}"
    status, body = callJSON(server, "POST", f"/api/addresses/{nobodys}", bobKey)
    assert (status, body["message"]) == (
        400, "A catch-all address (*@domain) needs a custom domain of yours.",
    )
    status, body = _post(server, "/api/private-addresses-bulk",
                         {"addresses": [f"fine-{secrets.token_hex(3)}@example.com", nobodys]},
                         bobKey)
    assert status == 400
    assert nobodys not in [a["_id"] for a in callJSON(server, "GET", "/api/addresses", bobKey)[1]]


def test_anotherAccountsAddressInsideTheDomain(server: CaptureServer) -> None:
    """
    An address another account reserved before the domain was claimed stays
    that account's: the domain's owner gets 401 reading or configuring it,
    its catch-all does not route it, and the domain listing leaves it out.
    """
    _, bobKey = _account(server)
    _, carolKey = _account(server)
    domain = _domain()
    carols = f"carol@{domain}"
    assert callJSON(server, "POST", f"/api/addresses/{carols}", carolKey)[0] == 200
    assert callJSON(server, "POST", f"/api/domains/{domain}", bobKey)[0] == 200
    for method in ("GET", "POST"):
        status, body = callJSON(server, method, f"/api/addresses/{carols}", bobKey)
        assert (status, body["message"]) == (401, "That address belongs to another account.")
    status, body = callJSON(server, "PUT", f"/api/addresses/{carols}", bobKey)
    assert (status, body["message"]) == (401, "That address belongs to another account.")
    send(server, carols, b"Subject: carol's\r\n\r\nx\r\n")
    status, listed = callJSON(server, "GET", f"/api/domains/{domain}/messages", bobKey)
    assert status == 200 and listed == []


def _hooked(receiver: Receiver, count: int) -> Callable[[], list[Any]]:
    def check() -> list[Any]:
        return receiver.requests if len(receiver.requests) >= count else []

    return check


def test_catchAllWebhookRoutesTheDomain(
    server: CaptureServer, receivers: Callable[[list[int]], Receiver]  # noqa: F811
) -> None:
    """
    The catch-all's webhook receives the mail of every address in the
    domain that has no record of its own; an address with its own record
    follows its own switches (here: a webhook elsewhere); an address another
    account reserved inside the domain is not routed to the domain's owner.
    """
    _, bobKey = _account(server)
    _, carolKey = _account(server)
    domain = _domain()
    carols = f"carol@{domain}"
    assert callJSON(server, "POST", f"/api/addresses/{carols}", carolKey)[0] == 200
    assert callJSON(server, "POST", f"/api/domains/{domain}", bobKey)[0] == 200
    catchAll, own = receivers([200]), receivers([200])
    status, _ = _put(server, f"/api/addresses/*@{domain}", {"webhook": catchAll.url}, bobKey)
    assert status == 200
    status, _ = _put(server, f"/api/addresses/own@{domain}", {"webhook": own.url}, bobKey)
    assert status == 200
    send(server, carols, b"Subject: carol's\r\n\r\nx\r\n")
    first = send(server, f"anyone@{domain}", b"Subject: any\r\n\r\nx\r\n")
    second = send(server, f"own@{domain}", b"Subject: own\r\n\r\nx\r\n")
    third = send(server, f"someone+tag@{domain}", b"Subject: some\r\n\r\nx\r\n")
    got = _waitFor(_hooked(catchAll, 2))
    assert {json.loads(body)["_id"] for _, _, body in got} == {f"{first}-0", f"{third}-0"}
    assert [json.loads(body)["_id"] for _, _, body in _waitFor(_hooked(own, 1))] == [
        f"{second}-0"
    ]
    status, attempts = callJSON(server, "GET", f"/api/addresses/*@{domain}/webhook-attempts",
                                bobKey)
    assert status == 200 and len(attempts) == 2
    # Mail sent after those three reached the catch-all: carol's never will.
    fourth = send(server, f"last@{domain}", b"Subject: last\r\n\r\nx\r\n")
    got = _waitFor(_hooked(catchAll, 3))
    assert {json.loads(body)["_id"] for _, _, body in got} == {
        f"{first}-0", f"{third}-0", f"{fourth}-0",
    }
