"""
Every kind of page in a real browser (the suite's Chromium): none breaks
its Content-Security-Policy or throws, none carries inline script, style
or event handlers, each has one h1, headings in order, and a label or name
for every field, button and link; hostile names (sender, subject, file name, address,
search) show as text on the server's rows and on rows built live; the
401 page's sign-in form works.
"""

from __future__ import annotations

import secrets
import urllib.parse
from email.message import EmailMessage
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

from tests.browser import PageLog, assertNoScriptRan, origin, screenshot
from tests.harness import CaptureServer
from tests.test_api import call
from tests.test_messagepage import deliver, richMessage

# Inline anything in the page itself (not the message frame, which has its
# own policy): each would be a CSP violation or a way around it.
_INLINE = """() => {
  const found = [];
  for (const el of document.querySelectorAll("*")) {
    for (const attr of el.getAttributeNames()) {
      if (attr === "style" || attr.startsWith("on")) found.push(`${el.tagName} ${attr}`);
    }
  }
  document.querySelectorAll("script:not([src]), style").forEach((el) => found.push(el.tagName));
  document.querySelectorAll("a[href^='javascript:' i]").forEach(() => found.push("javascript:"));
  return found;
}"""

# What a screen reader needs of every page: one h1, headings that never
# skip a level, a main landmark, a label for every field and a name for
# every button and link.
_UNLABELLED = """() => {
  const found = [];
  const levels = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")].map((h) => Number(h.tagName[1]));
  if (levels.filter((l) => l === 1).length !== 1) found.push(`h1 count: ${levels}`);
  levels.forEach((l, i) => { if (i && l > levels[i - 1] + 1) found.push(`heading skips: ${levels}`); });
  if (document.querySelectorAll("main").length !== 1) found.push("main");
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!el.labels.length && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby")) {
      found.push(`unlabelled ${el.outerHTML}`);
    }
  }
  for (const el of document.querySelectorAll("button, a[href]")) {
    if (!(el.innerText || el.getAttribute("aria-label") || el.title).trim()) found.push(`nameless ${el.outerHTML}`);
  }
  return found;
}"""

_HOSTILE = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"


def _hostileMessage(to: str) -> bytes:
    message = EmailMessage()
    message["From"] = f'"{_HOSTILE}" <evil@example.net>'
    message["To"] = to
    message["Subject"] = f"{_HOSTILE}\"' javascript:alert(1)"
    message.set_content("body")
    message.add_attachment(b"x", maintype="application", subtype="octet-stream",
                           filename='"><img src=x onerror=alert(1)>.bin')
    return message.as_bytes().replace(b"\n", b"\r\n")


def _checkPage(page: Page, pageLog: PageLog, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("load")
    assert page.evaluate(_INLINE) == [], url
    assert page.evaluate(_UNLABELLED) == [], url
    violations = [e for e in pageLog.consoleErrors if "Content Security Policy" in e]
    assert violations == [], (url, violations)
    assert pageLog.pageErrors == [], (url, pageLog.pageErrors)


def test_everyPageKeepsItsPolicy(server: CaptureServer, page: Page, pageLog: PageLog) -> None:
    """
    Home, a refused address, an inbox (listing, search, empty), a message
    in every view with remote content loaded, the error pages (404, 401
    with its form), the unified inbox and the settings (with an error and
    a new key): no CSP violation, no script error, nothing inline.
    """
    base = origin(server)
    name = f"csp{secrets.token_hex(4)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    inbox = f"csp-{secrets.token_hex(5)}@example.com"
    messageId = deliver(server, inbox, richMessage(inbox))
    message = f"{base}/inbox/{inbox}/{messageId}"
    for path in ("/", "/inbox?address=nope", f"/inbox/{inbox}", f"/inbox/{inbox}?q=reset",
                 f"/inbox/empty-{secrets.token_hex(4)}@example.com", "/inbox/x@y.com/no/page",
                 "/account/settings"):
        _checkPage(page, pageLog, base + path)
    for view in ("html", "text", "headers", "raw"):
        _checkPage(page, pageLog, f"{message}?view={view}")
    _checkPage(page, pageLog, f"{message}?view=html&remote=1")
    # The 401 page's own form signs in and comes back.
    page.goto(base + "/account/settings")
    screenshot(page, "signin-required")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/account/settings")
    for path in ("/account", "/account?q=reset", "/account/settings"):
        _checkPage(page, pageLog, base + path)
    page.get_by_label("Reserve an address").fill("not an address")
    page.get_by_role("button", name="Reserve").click()
    page.get_by_role("alert").wait_for()
    page.get_by_role("button", name="Create a key").click()
    page.wait_for_selector("#new-key")
    assert page.evaluate(_INLINE) == []
    assert page.evaluate(_UNLABELLED) == []
    assert pageLog.pageErrors == []
    assert [e for e in pageLog.consoleErrors if "Content Security Policy" in e] == []


def test_hostileNamesAreText(server: CaptureServer, page: Page, pageLog: PageLog) -> None:
    """
    A sender name, subject and attachment file name made of markup, in an
    inbox whose address and search are odd too, show as the same text on
    the server's rows, on a row that arrives live, and on the message page;
    no script runs.
    """
    base = origin(server)
    inbox = f"o'k&x=-{secrets.token_hex(4)}@example.com"
    deliver(server, inbox, _hostileMessage(inbox))
    page.goto(f"{base}/inbox/{urllib.parse.quote(inbox, safe='@')}")
    page.wait_for_selector("#live-status[data-state=live]")
    deliver(server, inbox, _hostileMessage(inbox))
    rows = page.locator("li.message")
    rows.nth(1).wait_for()
    for row in (rows.nth(0), rows.nth(1)):
        assert _HOSTILE in row.locator(".from").inner_text()
        assert _HOSTILE in row.locator(".subject").inner_text()
    assert page.locator("h1").inner_text() == inbox
    page.locator("#q").fill(_HOSTILE)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert _HOSTILE in page.locator("#inbox-count").inner_text()
    assert page.locator("#q").input_value() == _HOSTILE
    rows.first.locator("a.open").click()
    page.wait_for_selector("#message-subject")
    assert _HOSTILE in page.locator("#message-subject").inner_text()
    assert "onerror=alert(1)>.bin" in page.locator("ul.attachments a.name").inner_text()
    assertNoScriptRan(page)
    assert page.evaluate(_INLINE) == []
    assert pageLog.pageErrors == []
    screenshot(page, "message-hostile-names")
    status, _, _ = call(server, "GET", "/livez")
    assert status == 200
