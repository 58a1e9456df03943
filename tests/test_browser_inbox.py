"""
The inbox page in a real headless browser (Debian's Chromium driven by
Playwright): checking the mail from the home page, mail arriving live
with the count in the tab title, the keyboard, deleting from the list,
mail deleted elsewhere leaving it live;
and screenshots of the home and inbox pages.

The browser is the suite's (L{tests.browser}): a fresh context per test.
"""

from __future__ import annotations

import secrets
import smtplib
from email.message import EmailMessage
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

from tests.browser import screenshot
from tests.harness import CaptureServer

# No script error on any page of a test.
pytestmark = pytest.mark.usefixtures("noPageErrors")


def base(server: CaptureServer) -> str:
    return f"http://127.0.0.1:{server.ports['http']}"


def address() -> str:
    return f"browser-{secrets.token_hex(5)}@example.com"


def send(server: CaptureServer, to: str, *subjects: str) -> None:
    client: smtplib.SMTP = server.smtp()
    for subject in subjects:
        message = EmailMessage()
        message["From"] = "Example Shop <shop@example.com>"
        message["To"] = to
        message["Subject"] = subject
        message.set_content(f"{subject}: see https://example.com/r/{secrets.token_hex(4)}\n")
        client.send_message(message)
    client.quit()


def test_checkTheMailFromTheHomePage(server: CaptureServer, page: Page) -> None:
    """
    Typing an address on the home page and pressing "Check the mail!"
    opens its (empty) inbox, which says mail will appear there.
    """
    inbox = address()
    page.goto(base(server) + "/")
    screenshot(page, "home")
    page.get_by_label("Email address").fill(inbox)
    page.get_by_role("button", name="Check the mail!").click()
    page.wait_for_url(f"**/inbox/{inbox}")
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == inbox
    assert "No mail here yet." in page.locator(".empty").inner_text()
    page.wait_for_selector("#live-status[data-state=live]")
    screenshot(page, "inbox-empty")


def test_newMailAppearsLiveWithTheCountInTheTitle(server: CaptureServer, page: Page) -> None:
    """
    A message sent over SMTP while the page is open appears at the top
    without reloading; while the reader looks elsewhere the tab title
    counts it, and the count goes when the reader comes back.
    """
    from playwright.sync_api import expect

    inbox = address()
    send(server, inbox, "Already here")
    page.goto(f"{base(server)}/inbox/{inbox}")
    page.wait_for_selector("#live-status[data-state=live]")
    assert page.title() == f"{inbox} · Capture"
    # The reader switches to another window.
    page.evaluate("document.hasFocus = () => false")
    send(server, inbox, "Fresh off the wire", "And another")
    expect(page.locator("li.message")).to_have_count(3)
    subjects = page.locator("li.message .subject").all_text_contents()
    assert [s.replace("unread, ", "") for s in subjects] == [
        "And another", "Fresh off the wire", "Already here"
    ]
    assert page.title() == f"(2) {inbox} · Capture"
    assert "3 messages" in page.locator("#inbox-count").inner_text()
    page.evaluate(
        "delete document.hasFocus; window.dispatchEvent(new Event('focus'))"
    )
    assert page.title() == f"{inbox} · Capture"
    screenshot(page, "inbox")


def test_keyboardMovesThroughTheListAndOpens(server: CaptureServer, page: Page) -> None:
    """
    j and k (and the arrows) move a visible selection, with focus, through
    the rows; Enter opens the selected message's page.
    """
    inbox = address()
    send(server, inbox, "one", "two", "three")
    page.goto(f"{base(server)}/inbox/{inbox}")
    page.wait_for_selector("#live-status[data-state=live]")
    current = "document.activeElement.closest('li.message')?.querySelector('.subject').innerText"
    for key, expected in (("j", "three"), ("j", "two"), ("ArrowDown", "one"), ("j", "one"),
                          ("k", "two"), ("ArrowUp", "three")):
        page.keyboard.press(key)
        assert page.evaluate(current).endswith(expected), key
        selected = page.locator("li.message.selected a[aria-current=true]")
        assert selected.count() == 1
    page.keyboard.press("j")
    href = page.locator("li.message.selected a.open").get_attribute("href")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{href}")
    assert href.startswith(f"/inbox/{inbox}/")


def test_slashFocusesSearch(server: CaptureServer, page: Page) -> None:
    """
    "/" puts the cursor in the search field; typing then searches.
    """
    inbox = address()
    send(server, inbox, "Password reset", "Welcome")
    page.goto(f"{base(server)}/inbox/{inbox}")
    page.keyboard.press("/")
    page.keyboard.type("reset")
    page.keyboard.press("Enter")
    page.wait_for_url("**?q=reset")
    subjects = page.locator("li.message .subject").all_text_contents()
    assert [s.replace("unread, ", "") for s in subjects] == ["Password reset"]


def test_deleteFromTheList(server: CaptureServer, page: Page) -> None:
    """
    Delete on the selected row removes it from the list and the inbox,
    moving the selection to the next row; a reload shows it gone.
    """
    # Not page.wait_for_function: Playwright polls a string predicate with
    # eval, which the page's CSP refuses once the first check is false.
    from playwright.sync_api import expect

    inbox = address()
    send(server, inbox, "keep", "delete me")
    page.goto(f"{base(server)}/inbox/{inbox}")
    page.keyboard.press("j")
    page.keyboard.press("Delete")
    expect(page.locator("li.message")).to_have_count(1)
    assert "keep" in page.locator("li.message.selected .subject").inner_text()
    page.locator("li.message .delete-button").click()
    expect(page.locator("li.message")).to_have_count(0)
    expect(page.locator(".inbox-list .empty")).to_contain_text("No mail here now")
    page.reload()
    assert page.locator("li.message").count() == 0
    assert "0 messages" in page.locator("#inbox-count").inner_text()


def test_deletedElsewhereLeavesTheListLive(server: CaptureServer, page: Page) -> None:
    """
    A message deleted through the API while its inbox page is open leaves
    the list without a reload: the count follows, a deleted selected row
    hands the selection to its neighbour, and deleting a row that is not
    selected leaves the selection where it was.
    """
    from playwright.sync_api import expect

    from tests.test_api import callJSON

    inbox = address()
    send(server, inbox, "one", "two", "three")
    page.goto(f"{base(server)}/inbox/{inbox}")
    page.wait_for_selector("#live-status[data-state=live]")
    rows = page.locator("li.message")
    ids = [rows.nth(i).get_attribute("data-id") for i in range(3)]
    page.keyboard.press("j")
    expect(page.locator("li.message.selected .subject")).to_contain_text("three")

    def delete(copyId: str | None) -> None:
        status, _ = callJSON(server, "DELETE", f"/api/addresses/{inbox}/messages/{copyId}",
                             server.key)
        assert status == 200

    delete(ids[0])
    expect(rows).to_have_count(2)
    expect(page.locator("li.message.selected .subject")).to_contain_text("two")
    expect(page.locator("#inbox-count")).to_contain_text("2 messages")
    delete(ids[2])
    expect(rows).to_have_count(1)
    expect(page.locator("li.message.selected .subject")).to_contain_text("two")
    expect(page.locator("#inbox-count")).to_contain_text("1 message")
    delete(ids[1])
    expect(rows).to_have_count(0)
    expect(page.locator(".inbox-list .empty")).to_contain_text("No mail here now")
