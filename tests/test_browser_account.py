"""
The signed-in pages in a real headless browser (the suite's Chromium,
L{tests.browser}; a fresh context per test): signing in through the home
page's form, live mail in the unified inbox, C{capturePrivate} making the
next captured message private, an API key created (shown once) and
revoked; and the screenshots of C{/account} and C{/account/settings}.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Dialog, Page

from tests.browser import origin, screenshot
from tests.harness import CaptureServer
from tests.test_api import callJSON

# No script error on any page of a test.
pytestmark = pytest.mark.usefixtures("noPageErrors")


def _base(server: CaptureServer) -> str:
    return origin(server)


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


def test_signInAndLiveMail(server: CaptureServer, page: Page) -> None:
    """
    Signing in through the home page lands on the unified inbox; a message
    sent by SMTP to an owned address appears there without reloading, with
    a count in the tab title, and its row links to its message page.
    """
    from playwright.sync_api import expect

    name, key = _newAccount(server)
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
    expect(page.locator("#messages li.message")).to_have_count(2, timeout=15000)
    screenshot(page, "account", fullPage=True)


def test_capturePrivateMakesNextMessagePrivate(server: CaptureServer, page: Page,
                                               chromium: Browser) -> None:
    """
    Ticking "Make captured email private" in the settings: the next message
    the account sends through Capture (SMTP AUTH with its key) is missing
    from the recipient's public inbox page for a signed-out visitor, while
    one sent by someone else is there; the account's unified inbox shows it.
    """
    from playwright.sync_api import expect

    name, key = _newAccount(server)
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

    signedOut: BrowserContext = chromium.new_context()
    try:
        visitor = signedOut.new_page()
        visitor.goto(_base(server) + f"/inbox/{recipient}")
        expect(visitor.locator("main")).to_contain_text("sent by someone else")
        expect(visitor.locator("main")).not_to_contain_text("sent with capturePrivate")
        response = visitor.goto(_base(server) + f"/api/addresses/{recipient}/messages")
        assert response is not None and response.status == 200
        subjects = [m["subject"] for m in json.loads(visitor.inner_text("body"))]
        assert subjects == ["sent by someone else"]
    finally:
        signedOut.close()

    page.goto(_base(server) + "/account")
    expect(page.locator("#messages")).to_contain_text("sent with capturePrivate")
    expect(page.locator("#messages")).not_to_contain_text("sent by someone else")


def test_createKeyShownOnceAndRevoke(server: CaptureServer, page: Page) -> None:
    """
    Creating a key shows it once, with a copy button; after a reload only
    its prefix is listed.  Revoking it (after the confirmation) marks it
    revoked and the key stops working.
    """
    from playwright.sync_api import expect

    name, key = _newAccount(server)
    _signIn(page, server, key)
    # Something in every section for the screenshot.
    for path in (f"/api/addresses/shot-{secrets.token_hex(4)}@example.com",
                 f"/api/domains/shot{secrets.token_hex(4)}.example.org"):
        assert page.request.post(_base(server) + path,
                                 headers={"Mailsac-Key": key}).status == 200
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

    page.goto(_base(server) + "/account/settings")
    expect(page.locator("#new-key")).to_have_count(0)
    assert newKey not in page.content()
    row = page.locator("table.keys tr", has_text="from the browser")
    expect(row).to_contain_text(newKey[:8])
    screenshot(page, "settings", fullPage=True)
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


def test_unifiedInboxByKeyboard(server: CaptureServer, page: Page) -> None:
    """
    The unified inbox as the inbox page: j/k and the arrows move a visible
    selection with focus, Delete deletes the selected message (and the
    selection moves on), Star stars in place, / goes to the search, Enter
    opens; a message that arrives live gets the same buttons and is
    announced in the summary.
    """
    from playwright.sync_api import expect

    name, key = _newAccount(server)
    address = f"keys-{secrets.token_hex(5)}@example.com"
    _signIn(page, server, key)
    page.goto(_base(server) + "/account/settings")
    page.get_by_label("Reserve an address").fill(address)
    page.get_by_role("button", name="Reserve").click()
    expect(page.get_by_text("The address is yours now.")).to_be_visible()
    for subject in ("one", "two", "three"):
        _send(server, address, subject)
    page.goto(_base(server) + "/account")
    rows = page.locator("#messages li.message")
    expect(rows).to_have_count(3)
    current = "document.activeElement.closest('li.message')?.querySelector('.subject').innerText"
    for press, expected in (("j", "three"), ("j", "two"), ("ArrowDown", "one"), ("k", "two")):
        page.keyboard.press(press)
        assert page.evaluate(current) == expected, press
        expect(page.locator("li.message.selected a[aria-current=true]")).to_have_count(1)
    page.keyboard.press("Delete")
    expect(rows).to_have_count(2)
    assert page.evaluate(current) == "one"
    expect(page.locator("#summary")).to_have_text("2 unread.")
    star = page.locator("li.message.selected .star-button")
    star.click()
    expect(star).to_have_attribute("aria-pressed", "true")
    expect(page.locator("li.message.selected .mark-star")).to_have_text("★")
    status, body = callJSON(server, "GET", f"/api/addresses/{address}/messages", key)
    assert status == 200 and sorted(m["subject"] for m in body) == ["one", "three"]
    assert [m["savedBy"] for m in body if m["subject"] == "one"] == [name]
    _send(server, address, "four")
    fresh = rows.first
    expect(fresh).to_contain_text("four", timeout=15000)
    expect(page.locator("#summary")).to_contain_text("New mail from Sender: four")
    expect(fresh.locator(".delete-button")).to_be_visible()
    fresh.locator(".delete-button").click()
    expect(rows).to_have_count(2)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.locator("#q").blur()
    page.keyboard.press("j")
    href = page.locator("li.message.selected a.open").get_attribute("href")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{href}")
    page.goto(_base(server) + "/account")
    for left in (1, 0):
        page.locator("li.message .delete-button").first.click()
        expect(rows).to_have_count(left)
    expect(page.locator("#messages li.empty")).to_have_text("No mail here now.")


def test_privateInboxPageLiveForItsOwnerOnly(server: CaptureServer, page: Page,
                                             chromium: Browser) -> None:
    """
    The owner's inbox page of a private address gets new mail live (the
    event stream authenticated by the session cookie); a signed-out
    visitor of the same URL sees the 404 page, with nothing of the inbox.
    """
    from playwright.sync_api import expect

    _, key = _newAccount(server)
    address = f"mine-{secrets.token_hex(5)}@example.com"
    _signIn(page, server, key)
    page.goto(_base(server) + "/account/settings")
    page.get_by_label("Reserve an address").fill(address)
    page.get_by_role("button", name="Reserve").click()
    expect(page.get_by_text("The address is yours now.")).to_be_visible()
    _send(server, address, "private before")
    page.goto(f"{_base(server)}/inbox/{address}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    _send(server, address, "private live")
    expect(page.locator("li.message").first).to_contain_text("private live", timeout=15000)
    expect(page.locator("#inbox-count")).to_have_text("2 messages")
    visitor = chromium.new_context()
    try:
        other = visitor.new_page()
        response = other.goto(f"{_base(server)}/inbox/{address}")
        assert response is not None and response.status == 404
        expect(other.get_by_role("heading", level=1)).to_have_text("Nothing here")
        assert "private" not in other.locator("main").inner_text().replace(
            "or it is private", "")
    finally:
        visitor.close()


def test_unifiedInboxDropsMailDeletedElsewhere(server: CaptureServer, page: Page) -> None:
    """
    On the unified inbox, a message deleted through the API goes from the
    list without a reload, and the unread count follows.
    """
    from playwright.sync_api import expect

    _, key = _newAccount(server)
    address = f"gone-{secrets.token_hex(5)}@example.com"
    assert callJSON(server, "POST", f"/api/addresses/{address}", key)[0] == 200
    for subject in ("stays", "goes"):
        _send(server, address, subject)
    _signIn(page, server, key)
    rows = page.locator("#messages li.message")
    expect(rows).to_have_count(2)
    expect(page.locator("#summary")).to_have_text("2 unread.")
    gone = rows.filter(has_text="goes").get_attribute("data-id")
    # The stream is open once new mail shows: then the deletion is heard.
    _send(server, address, "opens")
    expect(rows).to_have_count(3, timeout=15000)
    status, _ = callJSON(server, "DELETE", f"/api/addresses/{address}/messages/{gone}", key)
    assert status == 200
    expect(rows).to_have_count(2)
    assert sorted(rows.locator(".subject").all_text_contents()) == ["opens", "stays"]
    expect(page.locator("#summary")).to_contain_text("2 unread.")
