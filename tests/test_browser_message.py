"""
The message page in a real headless browser (Playwright driving Debian's
Chromium): opening a message, its tabs by mouse and keyboard, downloads,
following a link, starring and deleting from the keyboard, and the hostile
message: no script runs and nothing remote loads until the reader asks.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

from tests.browser import PageLog, RemoteTrap, assertNoScriptRan, origin, screenshot
from tests.harness import CaptureServer
from tests.test_api import send
from tests.test_messagepage import hostileMessage, richMessage

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


# No script error on any page of a test.
pytestmark = pytest.mark.usefixtures("noPageErrors")


def address() -> str:
    return f"browser-{secrets.token_hex(5)}@example.com"


def openMessage(page: Page, server: CaptureServer, inbox: str, message: bytes) -> str:
    messageId = send(server, inbox, message) + "-0"
    page.goto(f"{origin(server)}/inbox/{inbox}/{messageId}")
    return messageId


def signIn(page: Page, server: CaptureServer) -> None:
    assert server.key is not None
    page.goto(origin(server) + "/")
    page.fill("#key", server.key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_url("**/account")


def selected(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        '[role="tab"][aria-selected="true"]', "tabs => tabs.map(t => t.dataset.view)"
    )


def test_openAndSwitchTabs(server: CaptureServer, page: Page) -> None:
    """
    The message opens on its HTML, shown in the frame; the tabs switch by
    click and by the arrow keys (focus following), Home and End, one panel
    visible at a time, and the URL keeps the view for a reload.
    """
    inbox = address()
    openMessage(page, server, inbox, richMessage(inbox))
    assert page.inner_text("h1#message-subject") == "Reset your password"
    frame = page.frame_locator("#message-frame")
    assert frame.locator("p").inner_text() == "Hello, reset here."
    assert selected(page) == ["html"]
    page.click("#tab-text")
    assert selected(page) == ["text"]
    assert page.is_visible("#panel-text") and not page.is_visible("#panel-html")
    assert "reset here: https://app.example.com/reset" in page.inner_text("#panel-text")
    assert page.url.endswith("?view=text")
    page.keyboard.press("ArrowRight")
    assert selected(page) == ["headers"]
    assert page.evaluate("document.activeElement.id") == "tab-headers"
    assert page.is_visible("text=Content-Type")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert selected(page) == ["html"]  # round from Raw to the first
    page.keyboard.press("ArrowLeft")
    assert selected(page) == ["raw"]
    assert "Content-Type: multipart/mixed" in page.inner_text("#panel-raw")
    page.keyboard.press("Home")
    assert selected(page) == ["html"]
    page.keyboard.press("End")
    page.reload()
    assert selected(page) == ["raw"]
    page.goto(page.url.split("?")[0])
    page.frame_locator("#message-frame").locator("p").wait_for()
    screenshot(page, "message")


def test_tabsWithoutScript(server: CaptureServer, chromium: Browser) -> None:
    """
    With JavaScript off, the tabs are links that show their panel.
    """
    context = chromium.new_context(java_script_enabled=False)
    try:
        noScript = context.new_page()
        inbox = address()
        openMessage(noScript, server, inbox, richMessage(inbox))
        noScript.click("#tab-headers")
        assert noScript.url.endswith("?view=headers")
        assert noScript.is_visible("#panel-headers") and not noScript.is_visible("#panel-html")
    finally:
        context.close()


def test_downloads(server: CaptureServer, page: Page) -> None:
    """
    An attachment downloads under its own name with its bytes; the raw
    message downloads as C{<id>.eml}; image attachments show a thumbnail.
    """
    inbox = address()
    messageId = openMessage(page, server, inbox, richMessage(inbox))
    with page.expect_download() as info:
        page.click("text=report \u00e9.csv")
    download = info.value
    assert download.suggested_filename == "report \u00e9.csv"
    with open(download.path(), "rb") as f:
        assert f.read() == b"a,b\n1,2\n"
    thumbnail = page.locator("img.thumb").last
    thumbnail.evaluate("img => img.decode()")
    assert thumbnail.evaluate("img => img.naturalWidth") == 64
    page.click("#tab-raw")
    with page.expect_download() as info:
        page.click("text=Download .eml")
    assert info.value.suggested_filename == f"{messageId}.eml"


def test_followLink(server: CaptureServer, page: Page, remoteTrap: RemoteTrap) -> None:
    """
    The Links list opens the message's link (in a new tab), without
    telling the site where it was read (no Referer).
    """
    inbox = address()
    link = remoteTrap.url("reset?token=abc123")
    openMessage(page, server, inbox, richMessage(inbox, link))
    page.click(f'.links a[href="{link}"]')
    # The trap answers 204, so the new tab's navigation ends there: the
    # request reaching the trap is what counts.
    for _ in range(200):
        if remoteTrap.requests():
            break
        page.wait_for_timeout(50)
    [reached] = remoteTrap.requests()
    assert (reached.method, reached.path) == ("GET", "/reset?token=abc123")
    assert "referer" not in reached.headers


def test_hostileMessage(server: CaptureServer, page: Page, pageLog: PageLog,
                        remoteTrap: RemoteTrap) -> None:
    """
    The hostile message runs no script (no mark set in any frame, no
    dialog), navigates nowhere (meta refresh) and neither reaches nor even
    tries the remote trap (images, CSS url() and @import, link prefetch,
    form, SVG, frames) until "Load remote content"; after it, the remote
    image is fetched (the trap works), and still no script ran.
    """
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    inbox = address()
    trap = remoteTrap.url("").rstrip("/")
    messageId = openMessage(page, server, inbox, hostileMessage(inbox, trap))
    # The page's load event waits for its frame's document and everything
    # that document loads.
    page.wait_for_load_state("load")
    body = page.frame_locator("#message-frame")
    assert body.locator("#hello").inner_text() == "Hostile hello"
    page.wait_for_timeout(500)  # a refresh or a late fetch would have happened
    assert remoteTrap.requests() == []
    assert pageLog.requestsTo(remoteTrap.host) == []
    assertNoScriptRan(page)
    assert dialogs == []
    assert [frame.url for frame in page.frames] == [
        f"{origin(server)}/inbox/{inbox}/{messageId}",
        f"{origin(server)}/inbox/{inbox}/{messageId}/body",
    ]
    # The script link does nothing either.
    body.locator("#jslink").click()
    assertNoScriptRan(page)
    assert dialogs == [] and len(page.context.pages) == 1
    assert page.is_visible("text=Remote content is blocked.")
    screenshot(page, "message-hostile")
    with page.expect_request(lambda request: request.url == f"{trap}/remote.png"):
        page.click("#load-remote")
    page.wait_for_load_state("load")
    assert page.is_visible("text=Remote content is shown.")
    assert page.get_attribute("#message-frame", "sandbox") == (
        "allow-popups allow-popups-to-escape-sandbox"
    )
    paths = [request.path for request in remoteTrap.waitFor("/remote.png")]
    assert not any(path.startswith(("/refresh", "/form", "/iframe", "/object", "/embed",
                                    "/svg", "/base", "/link", "/prefetch"))
                   for path in paths)
    assertNoScriptRan(page)
    assert dialogs == []


def test_keyboard(server: CaptureServer, page: Page) -> None:
    """
    Signed in: C{s} stars and unstars, C{u} goes back to the inbox, Delete
    deletes and lands on the inbox.
    """
    signIn(page, server)
    inbox = address()
    messageId = openMessage(page, server, inbox, b"Subject: keys\r\n\r\nkeyboard\r\n")
    page.keyboard.press("s")
    page.wait_for_selector('#star-form button[aria-pressed="true"]')
    page.keyboard.press("s")
    page.wait_for_selector('#star-form button[aria-pressed="false"]')
    page.keyboard.press("u")
    page.wait_for_url(f"**/inbox/{inbox}")
    page.goto(f"{origin(server)}/inbox/{inbox}/{messageId}")
    page.keyboard.press("Delete")
    page.wait_for_url(f"**/inbox/{inbox}")
    response = page.goto(f"{origin(server)}/inbox/{inbox}/{messageId}")
    assert response is not None and response.status == 404
