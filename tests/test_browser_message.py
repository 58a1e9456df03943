"""
The message page in a real headless browser (Playwright driving Debian's
Chromium): opening a message, its tabs by mouse and keyboard, downloads,
following a link, starring and deleting from the keyboard, and the hostile
message: no script runs and nothing remote loads until the reader asks.
"""

from __future__ import annotations

import http.server
import os
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import CaptureServer
from tests.test_api import send
from tests.test_messagepage import PNG, hostileMessage, richMessage

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

SCREENSHOTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "screenshots")
_SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


class RemoteTrap:
    """
    A local HTTP server standing for "the rest of the internet": it answers
    every request (a PNG, or a small page for C{/reset}) and records it.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        trap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                trap.requests.append((self.command, self.path, dict(self.headers.items())))
                if self.path.startswith("/reset"):
                    body, kind = b"<!DOCTYPE html><title>Reset</title><h1>Reset page</h1>", b"text/html"
                else:
                    body, kind = PNG, b"image/png"
                self.send_response(200)
                self.send_header("content-type", kind.decode())
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """
    A page in a fresh browser context (no cookies), that records dialogs.
    """
    context = chromium.new_context(accept_downloads=True, viewport=_SIZES["desktop"])
    opened = context.new_page()
    opened.dialogs = []
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()


@pytest.fixture
def remoteTrap() -> Iterator[RemoteTrap]:
    trap = RemoteTrap()
    yield trap
    trap.close()


def screenshot(page: Any, name: str) -> None:
    """
    Save C{docs/screenshots/<name>-<desktop|phone>-<light|dark>.png} of the
    page as it is now.
    """
    os.makedirs(SCREENSHOTS, exist_ok=True)
    size = page.viewport_size
    for width, dims in _SIZES.items():
        page.set_viewport_size(dims)
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.wait_for_timeout(100)
            page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}-{width}-{scheme}.png"),
                            full_page=True)
    page.set_viewport_size(size)
    page.emulate_media(color_scheme="light")


def base(server: CaptureServer) -> str:
    return f"http://127.0.0.1:{server.ports['http']}"


def address() -> str:
    return f"browser-{secrets.token_hex(5)}@example.com"


def openMessage(page: Any, server: CaptureServer, inbox: str, message: bytes) -> str:
    messageId = send(server, inbox, message) + "-0"
    page.goto(f"{base(server)}/inbox/{inbox}/{messageId}")
    return messageId


def signIn(page: Any, server: CaptureServer) -> None:
    assert server.key is not None
    page.goto(base(server) + "/")
    page.fill("#key", server.key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_url("**/account")


def selected(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        '[role="tab"][aria-selected="true"]', "tabs => tabs.map(t => t.dataset.view)"
    )


def test_openAndSwitchTabs(server: CaptureServer, page: Any) -> None:
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


def test_tabsWithoutScript(server: CaptureServer, chromium: Any) -> None:
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


def test_downloads(server: CaptureServer, page: Any) -> None:
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
    assert thumbnail.evaluate("img => img.complete && img.naturalWidth") == 64
    page.click("#tab-raw")
    with page.expect_download() as info:
        page.click("text=Download .eml")
    assert info.value.suggested_filename == f"{messageId}.eml"


def test_followLink(server: CaptureServer, page: Any, remoteTrap: RemoteTrap) -> None:
    """
    The Links list opens the message's link in a new tab, without telling
    the site where it was read (no Referer).
    """
    inbox = address()
    link = f"{remoteTrap.url}/reset?token=abc123"
    openMessage(page, server, inbox, richMessage(inbox, link))
    with page.context.expect_page() as info:
        page.click(f'.links a[href="{link}"]')
    opened = info.value
    opened.wait_for_load_state()
    assert opened.url == link
    assert opened.inner_text("h1") == "Reset page"
    method, path, headers = remoteTrap.requests[0]
    assert (method, path) == ("GET", "/reset?token=abc123")
    assert "Referer" not in headers


def _pwned(page: Any) -> list[Any]:
    """
    The C{window.__pwned} marker in every frame of the page.
    """
    return [frame.evaluate("() => window.__pwned") for frame in page.frames]


def test_hostileMessage(server: CaptureServer, page: Any, remoteTrap: RemoteTrap) -> None:
    """
    The hostile message runs no script (no marker set in any frame, no
    dialog), navigates nowhere (meta refresh) and reaches the trap not
    once (images, CSS url() and @import, link prefetch, form, SVG,
    frames) until "Load remote content"; after it, the remote image does
    load (the trap works), and still no script ran.
    """
    inbox = address()
    messageId = openMessage(page, server, inbox, hostileMessage(inbox, remoteTrap.url))
    # The page's load event waits for its frame's document and everything
    # that document loads.
    page.wait_for_load_state("load")
    body = page.frame_locator("#message-frame")
    assert body.locator("#hello").inner_text() == "Hostile hello"
    page.wait_for_timeout(500)  # a refresh or a late fetch would have happened
    assert remoteTrap.requests == []
    assert _pwned(page) == [None, None]
    assert page.dialogs == []
    assert [frame.url.split("?")[0] for frame in page.frames] == [
        f"{base(server)}/inbox/{inbox}/{messageId}",
        f"{base(server)}/inbox/{inbox}/{messageId}/body",
    ]
    # The script link does nothing either.
    body.locator("#jslink").click()
    assert _pwned(page) == [None, None] and page.dialogs == []
    assert page.is_visible("text=Remote content is blocked.")
    screenshot(page, "message-hostile")
    with page.expect_response(lambda response: response.url.endswith("/remote.png")):
        page.click("#load-remote")
    remote = page.frame_locator("#message-frame").locator("#remote")
    remote.evaluate("img => img.decode()")
    assert remote.evaluate("img => img.naturalWidth") == 64
    assert "/remote.png" in remoteTrap.paths()
    assert not any(path.startswith(("/refresh", "/form", "/iframe", "/object", "/embed",
                                    "/svg", "/base", "/link", "/prefetch"))
                   for path in remoteTrap.paths())
    assert _pwned(page) == [None, None] and page.dialogs == []
    assert page.is_visible("text=Remote content is shown.")
    assert page.get_attribute("#message-frame", "sandbox") == (
        "allow-popups allow-popups-to-escape-sandbox"
    )


def test_keyboard(server: CaptureServer, page: Any) -> None:
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
    page.goto(f"{base(server)}/inbox/{inbox}/{messageId}")
    page.keyboard.press("Delete")
    page.wait_for_url(f"**/inbox/{inbox}")
    response = page.goto(f"{base(server)}/inbox/{inbox}/{messageId}")
    assert response is not None and response.status == 404
