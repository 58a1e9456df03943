"""
Path tricks in every path parameter of every API route: each answer is
400 or 404 with Mailsac's JSON error body, never another inbox's mail, and
the server serves the next request.  The routes come from the Klein app
itself, so a route added later is covered without editing this file.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest

from capture.web.api import MailsacAPI
from tests.harness import CaptureServer
from tests.test_api import call, inbox, send

_TRICKS = (
    "..", "%2e%2e", ".", "a%2Fb", "..%2F..%2Fetc", "%2F", "%00", "a%00b", "%5C..%5C",
    "a%0Ab",
)
_SECRET = b"path-trick-secret"


def _routes() -> list[tuple[str, str, list[str]]]:
    routes = []
    for rule in MailsacAPI.app.url_map.iter_rules():
        for method in sorted(rule.methods or ()):
            if method in ("HEAD", "OPTIONS") or not rule.arguments:
                continue
            routes.append((method, rule.rule, sorted(rule.arguments)))
    return routes


@pytest.fixture(scope="module")
def target(server: CaptureServer) -> dict[str, str]:
    """
    Real values for every path parameter: a private inbox of another
    account holding a secret message, and a public inbox with a message.
    """
    other = f"paths{secrets.token_hex(4)}"
    otherKey = server.cli("account", "create", other).stdout.strip().splitlines()[-1]
    private = inbox()
    assert call(server, "POST", f"/api/addresses/{private}", otherKey)[0] == 200
    send(server, private, b"Subject: " + _SECRET + b"\r\n\r\n" + _SECRET + b"\r\n")
    public = inbox()
    copy = send(server, public, b"Subject: public\r\n\r\nx\r\n") + "-0"
    domain = f"p{secrets.token_hex(4)}.example"
    assert call(server, "POST", f"/api/domains/{domain}", server.key)[0] == 200
    return {
        "email": public, "messageId": copy, "label": "x", "folder": "inbox",
        "state": "true", "isPrivate": "true", "identifier": "0" * 32, "domain": domain,
        "private": private,
    }


@pytest.mark.parametrize(("method", "rule", "arguments"), _routes())
def test_pathTricks(server: CaptureServer, target: dict[str, str], method: str, rule: str,
                    arguments: list[str]) -> None:
    for argument in arguments:
        for trick in _TRICKS:
            path = re.sub(
                r"<(?:\w+:)?(\w+)>",
                lambda m, a=argument, t=trick: t if m.group(1) == a else target[m.group(1)],
                rule,
            )
            status, headers, body = call(server, method, path, server.key)
            assert status in (400, 404), (method, path, status, body)
            assert headers["content-type"] == "application/json; charset=utf-8", path
            assert {"message", "error"} <= set(json.loads(body)), path
            assert _SECRET not in body, path
    assert call(server, "GET", f"/api/addresses/{target['email']}/messages")[0] == 200
