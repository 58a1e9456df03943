"""
The signed-in pages in a real headless browser (Playwright driving Debian's
Chromium): signing in through the home page's form, live mail in the
unified inbox, C{capturePrivate} making the next captured message private,
an API key created (shown once) and revoked; and the screenshots of
C{/account} and C{/account/settings}.

Written on C{playwright.sync_api} directly: the shared browser fixtures
(C{tests/browser.py}) were not on main yet when these were written.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect, sync_playwright

from tests.harness import CaptureServer

_CHROMIUM = "/usr/bin/chromium"
_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
_SHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "docs", "screenshots")
_SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_CHROMIUM, args=_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """
    A fresh browser profile (no cookies) for one test.
    """
    fresh = browser.new_context(viewport={"width": 1280, "height": 900})
    yield fresh
    fresh.close()


def _base(server: CaptureServer) -> str:
    return f"http://127.0.0.1:{server.ports['http']}"


def _newAccount(server: CaptureServer) -> tuple[str, str]:
    name = f"browser{secrets.token_hex(4)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    return name, key


def _signIn(page: Page, server: CaptureServer, key: str) -> None:
    """
    Sign in as a person does: the home page's form.
    """
    page.goto(_base(server) + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(_base(server) + "/account")


def _send(server: CaptureServer, to: str, subject: str,
          login: tuple[str, str] | None = None) -> None:
    client = server.smtp(login=login is None)
    if login is not None:
        client.login(*login)
    client.sendmail("sender@example.net", [to],
                    f"From: Sender <sender@example.net>\r\nSubject: {subject}\r\n\r\nhi\r\n")
    client.quit()


def _screenshot(browser: Browser, server: CaptureServer, key: str, path: str,
                name: str) -> None:
    """
    Save C{path} as C{docs/screenshots/<name>-<desktop|phone>-<light|dark>.png}.
    """
    os.makedirs(_SHOTS, exist_ok=True)
    for size, (width, height) in _SIZES.items():
        for scheme in ("light", "dark"):
            shot = browser.new_context(viewport={"width": width, "height": height},
                                       color_scheme=scheme)
            try:
                page = shot.new_page()
                _signIn(page, server, key)
                page.goto(_base(server) + path)
                page.screenshot(path=os.path.join(_SHOTS, f"{name}-{size}-{scheme}.png"),
                                full_page=True)
            finally:
                shot.close()


def test_signInAndLiveMail(server: CaptureServer, context: BrowserContext,
                           browser: Browser) -> None:
    """
    Signing in through the home page lands on the unified inbox; a message
    sent by SMTP to an owned address appears there without reloading, with
    a count in the tab title, and its row opens its message page.
    """
    name, key = _newAccount(server)
    page = context.new_page()
    _signIn(page, server, key)
    expect(page.get_by_role("heading", name="Your mail")).to_be_visible()
    expect(page.locator("nav.who")).to_contain_text(name)
    address = f"live-{secrets.token_hex(5)}@example.com"
    page.goto(_base(server) + "/account/settings")
    page.get_by_label("Reserve an address").fill(address)
    page.get_by_role("button", name="Reserve").click()
    expect(page.get_by_text("The address is yours now.")).to_be_visible()
    page.get_by_role("link", name=name).click()
    page.wait_for_url(_base(server) + "/account")
    expect(page.locator("#messages li.empty")).to_have_text("No mail yet.")
    _send(server, address, "arrived while watching")
    row = page.locator("#messages li.message").first
    expect(row).to_contain_text("arrived while watching", timeout=15000)
    expect(row).to_contain_text(address)
    expect(page).to_have_title("(1) Your mail · Capture")
    href = row.locator("a").get_attribute("href")
    assert href is not None and href.startswith(f"/inbox/{address}/")
    _send(server, address, "second for the screenshot")
    _screenshot(browser, server, key, "/account", "account")


def test_capturePrivateMakesNextMessagePrivate(server: CaptureServer,
                                               browser: Browser) -> None:
    """
    Ticking "Make captured email private" in the settings: the next message
    the account sends through Capture (SMTP AUTH with its key) is missing
    from the recipient's public inbox for a signed-out visitor, while one
    sent by someone else is there; the account's unified inbox shows it.
    """
    name, key = _newAccount(server)
    signedIn = browser.new_context()
    signedOut = browser.new_context()
    try:
        page = signedIn.new_page()
        _signIn(page, server, key)
        page.goto(_base(server) + "/account/settings")
        box = page.get_by_label("Make captured email private")
        expect(box).not_to_be_checked()
        box.check()
        page.locator("#private").get_by_role("button", name="Save").click()
        expect(page.get_by_text("Captured email is private now")).to_be_visible()
        expect(page.get_by_label("Make captured email private")).to_be_checked()

        recipient = f"public-{secrets.token_hex(5)}@example.com"
        _send(server, recipient, "sent with capturePrivate", login=(name, key))
        _send(server, recipient, "sent by someone else")

        visitor = signedOut.new_page()
        response = visitor.goto(_base(server) + f"/api/addresses/{recipient}/messages")
        assert response is not None and response.status == 200
        subjects = [m["subject"] for m in json.loads(visitor.inner_text("body"))]
        assert subjects == ["sent by someone else"]
        response = visitor.goto(_base(server) + f"/inbox/{recipient}")
        assert response is not None
        if response.status == 200:
            # The inbox page (another branch) lists what the API lists.
            expect(visitor.locator("main")).to_contain_text("sent by someone else")
            expect(visitor.locator("main")).not_to_contain_text("sent with capturePrivate")

        page.goto(_base(server) + "/account")
        expect(page.locator("#messages")).to_contain_text("sent with capturePrivate")
        expect(page.locator("#messages")).not_to_contain_text("sent by someone else")
    finally:
        signedIn.close()
        signedOut.close()


def test_createKeyShownOnceAndRevoke(server: CaptureServer, context: BrowserContext,
                                     browser: Browser) -> None:
    """
    Creating a key shows it once, with a copy button; after a reload only
    its prefix is listed.  Revoking it (after the confirmation) marks it
    revoked and the key stops working.
    """
    name, key = _newAccount(server)
    page = context.new_page()
    _signIn(page, server, key)
    page.goto(_base(server) + "/account/settings")
    page.get_by_label("Label of a new key").fill("from the browser")
    page.get_by_role("button", name="Create a key").click()
    field = page.locator("#new-key")
    expect(field).to_be_visible()
    newKey = field.input_value()
    assert newKey.startswith("k_") and newKey != key
    expect(page.get_by_text("shown this once")).to_be_visible()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    # Something in every section for the screenshot.
    for path in (f"/api/addresses/shot-{secrets.token_hex(4)}@example.com",
                 f"/api/domains/shot{secrets.token_hex(4)}.example.org"):
        assert page.request.post(_base(server) + path,
                                 headers={"Mailsac-Key": key}).status == 200
    _screenshot(browser, server, key, "/account/settings", "settings")

    page.goto(_base(server) + "/account/settings")
    expect(page.locator("#new-key")).to_have_count(0)
    assert newKey not in page.content()
    row = page.locator("table.keys tr", has_text="from the browser")
    expect(row).to_contain_text(newKey[:8])
    assert page.request.get(_base(server) + "/api/me",
                            headers={"Mailsac-Key": newKey}).status == 200

    messages: list[str] = []

    def confirm(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("The API key was revoked.")).to_be_visible()
    assert messages and newKey[:8] in messages[0]
    expect(page.locator("table.keys tr", has_text="from the browser")).to_contain_text("revoked")
    assert page.request.get(_base(server) + "/api/me",
                            headers={"Mailsac-Key": newKey}).status == 401
    expect(page.locator("nav.who")).to_contain_text(name)
