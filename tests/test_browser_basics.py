"""
The browser test tools (L{tests.browser}) proven on what Capture serves
today, and each check shown able to fail: a trap that cannot catch, or a
script check that cannot see a script, would make the page tests worthless.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import TYPE_CHECKING

import pytest

from tests.browser import (
    CHROMIUM,
    PageLog,
    RemoteTrap,
    TrapRequest,
    assertNoScriptRan,
    launchChromium,
    origin,
    screenshot,
    screenshotFolder,
    scriptMarks,
)
from tests.harness import CaptureServer

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route


def _serve(page: Page, url: str, body: str, headers: dict[str, str] | None = None) -> None:
    """
    Answer C{url} in this page with C{body} as HTML, without the server: the
    page still has the server's origin, as Capture's own pages will.
    """
    def fulfil(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=body,
                      headers=headers)
    page.route(url, fulfil)


def test_openapiDocumentInBrowser(server: CaptureServer, page: Page, pageLog: PageLog) -> None:
    """
    The browser loads C{/api/openapi.json} from the real server and shows
    the document: OpenAPI 3.1 with Mailsac's message listing among its paths.
    """
    response = page.goto(origin(server) + "/api/openapi.json")
    assert response is not None and response.status == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    shown = json.loads(page.locator("body > pre").inner_text())
    assert shown == response.json()
    assert shown["openapi"].startswith("3.1")
    assert "/api/addresses/{email}/messages" in shown["paths"]
    assert pageLog.pageErrors == []


def test_autoconfigInBrowser(server: CaptureServer, page: Page, pageLog: PageLog) -> None:
    """
    The browser parses C{/mail/config-v1.1.xml} as well-formed XML and
    shows its tree: a C{clientConfig} naming the SMTP listeners' real ports,
    implicit TLS first.
    """
    response = page.goto(origin(server) + "/mail/config-v1.1.xml?emailaddress=a%40example.com")
    assert response is not None and response.status == 200
    assert page.locator("parsererror").count() == 0
    assert "<clientConfig" in page.locator(".pretty-print").inner_text()
    # Chromium's XML viewer keeps the parsed document beside the tree it draws.
    ports = page.evaluate(
        "Array.from(document.getElementById('webkit-xml-viewer-source-xml')"
        ".getElementsByTagName('outgoingServer'),"
        " s => s.getElementsByTagName('port')[0].textContent)"
    )
    assert ports == [str(server.ports["smtps"]), str(server.ports["smtp"])]
    assert pageLog.pageErrors == []


def test_remoteTrapCatchesAnImage(server: CaptureServer, page: Page, pageLog: PageLog,
                                  remoteTrap: RemoteTrap) -> None:
    """
    A page on the server's origin with an image on the trap: the trap
    records the request and C{pageLog} saw the page make it, so an empty trap
    in a page test means nothing was asked for.
    """
    url = origin(server) + "/trap-proof.html"
    _serve(page, url, f'<p>proof</p><img alt="" src="{remoteTrap.url("proof.png?n=1")}">')
    page.goto(url)
    assert [(r.method, r.path) for r in remoteTrap.requests()] == [("GET", "/proof.png?n=1")]
    # The default referrer policy sends only the origin to another origin.
    assert remoteTrap.requests()[0].headers["referer"] == origin(server) + "/"
    assert [r.url for r in pageLog.requestsTo(remoteTrap.host)] == [
        remoteTrap.url("proof.png?n=1")
    ]
    assert pageLog.requestsTo("127.0.0.1") == pageLog.requests
    assert pageLog.requestsTo("example.com") == []


def test_remoteTrapCatchesEveryMethod(remoteTrap: RemoteTrap) -> None:
    """
    A form posting to the trap is caught as well as an image: the trap
    answers and records any method, with its headers.
    """
    import urllib.request
    request = urllib.request.Request(remoteTrap.url("form"), data=b"a=1", method="POST",
                                     headers={"X-Probe": "yes"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
    [seen] = remoteTrap.requests()
    assert (seen.method, seen.path, seen.headers["x-probe"]) == ("POST", "/form", "yes")
    remoteTrap.clear()
    assert remoteTrap.requests() == []
    assert seen == TrapRequest("POST", "/form", seen.headers)


_HOSTILE = (
    '<p>hostile</p><script>window.__pwned = "script"</script>'
    '<img alt="" src="data:," onerror="window.__pwned = \'onerror\'">'
    '<img alt="" src="{pixel}">'
)


def _hostileFrame(page: Page, server: CaptureServer, trap: RemoteTrap, sandbox: bool) -> str:
    """
    A page on the server's origin framing a hostile document; sandboxed, the
    frame is C{sandbox=""} and its document has C{default-src 'none'}.
    """
    top = origin(server) + "/frame-proof.html"
    hostile = origin(server) + "/hostile.html"
    attribute = ' sandbox=""' if sandbox else ""
    _serve(page, top, f'<p>top</p><iframe title="message"{attribute} src="/hostile.html"></iframe>')
    _serve(page, hostile, _HOSTILE.format(pixel=trap.url("framed.png")),
           headers={"Content-Security-Policy": "default-src 'none'"} if sandbox else None)
    page.goto(top)
    return hostile


def test_sandboxedHostileFrameRunsNothing(server: CaptureServer, page: Page, pageLog: PageLog,
                                          remoteTrap: RemoteTrap) -> None:
    """
    A hostile document (a script and an C{onerror} handler setting
    C{window.__pwned}, a remote image) in a C{sandbox=""} iframe under
    C{default-src 'none'} runs nothing and reaches nothing: the image was
    tried and stopped by the CSP inside the browser.
    """
    hostile = _hostileFrame(page, server, remoteTrap, sandbox=True)
    assert [frame.url for frame in page.frames][1:] == [hostile]
    assert page.frames[1].locator("p").inner_text() == "hostile"
    assertNoScriptRan(page)
    assert remoteTrap.requests() == []
    assert [r.failure for r in pageLog.requestsTo(remoteTrap.host)] == ["csp"]
    assert any("allow-scripts" in error for error in pageLog.consoleErrors)
    assert pageLog.pageErrors == []


def test_unsandboxedHostileFrameIsCaught(server: CaptureServer, page: Page, pageLog: PageLog,
                                         remoteTrap: RemoteTrap) -> None:
    """
    The control case: the same document framed without sandbox or CSP sets
    C{window.__pwned} in its frame and loads the remote image, and both checks
    fail as they should.
    """
    hostile = _hostileFrame(page, server, remoteTrap, sandbox=False)
    assert scriptMarks(page) == {hostile: "onerror"}
    with pytest.raises(AssertionError, match="__pwned"):
        assertNoScriptRan(page)
    assert [r.path for r in remoteTrap.requests()] == ["/framed.png"]
    assert [r.failure for r in pageLog.requestsTo(remoteTrap.host)] == [None]


def test_scriptMarksSeeEveryPage(page: Page) -> None:
    """
    A script that ran in another page of the context (a popup the message
    opened) is found too, and a different mark name can be checked.
    """
    page.goto("data:text/html,<p>one</p>")
    other = page.context.new_page()
    other.goto("data:text/html,<script>window.__other = 1</script>")
    assertNoScriptRan(page)
    assert list(scriptMarks(page, "__other").values()) == ["1"]


def _pngSize(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_screenshotAtTwoWidthsAndBothSchemes(server: CaptureServer, page: Page,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """
    C{screenshot} writes four PNGs into C{$CAPTURE_SCREENSHOTS}: desktop
    and phone size, light and dark (the page's dark style shows), and puts the
    page's viewport and color scheme back.
    """
    folder = os.path.join(tempfile.mkdtemp(), "shots")
    monkeypatch.setenv("CAPTURE_SCREENSHOTS", folder)
    url = origin(server) + "/screenshot-proof.html"
    _serve(page, url, "<style>body{background:#fff;color:#000}"
                      "@media (prefers-color-scheme: dark){body{background:#000;color:#fff}}"
                      "</style><h1>Capture</h1>")
    page.goto(url)
    written = screenshot(page, "proof")
    names = ["proof-desktop-light.png", "proof-desktop-dark.png",
             "proof-phone-light.png", "proof-phone-dark.png"]
    assert written == [os.path.join(folder, name) for name in names]
    assert sorted(os.listdir(folder)) == sorted(names)
    assert [_pngSize(path) for path in written] == [(1280, 800)] * 2 + [(390, 844)] * 2
    with open(written[0], "rb") as light, open(written[1], "rb") as dark:
        assert light.read() != dark.read()
    assert page.viewport_size == {"width": 1280, "height": 720}
    assert page.evaluate("matchMedia('(prefers-color-scheme: light)').matches") is True


def test_screenshotNames(page: Page, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without C{$CAPTURE_SCREENSHOTS} the folder is the repository's
    C{test-artifacts/screenshots}; a name that is not a plain file name is refused
    before anything is written.
    """
    monkeypatch.delenv("CAPTURE_SCREENSHOTS", raising=False)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert screenshotFolder() == os.path.join(root, "test-artifacts", "screenshots")
    with pytest.raises(ValueError, match="screenshot name"):
        screenshot(page, "../escape")


def test_missingChromiumFails(remoteTrap: RemoteTrap) -> None:
    """
    Without Chromium the browser tests fail, naming the package and
    scripts/test: they never skip.
    """
    assert os.access(CHROMIUM, os.X_OK)
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        with launchChromium(remoteTrap, executable="/nonexistent/chromium"):
            pass
