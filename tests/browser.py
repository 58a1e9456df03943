"""
Browser tests' tools: Debian's Chromium (C{/usr/bin/chromium}) driven by
Playwright for Python, headless, one browser for the whole test session and a
fresh browser context (cookies, storage, cache) for every test.

C{scripts/test} installs both: the C{chromium} Debian package and the
C{playwright} Python package (the C{test} extra). Playwright's own browser
download (C{playwright install}) is never used: a missing Chromium or
Playwright makes every browser test fail with a message saying how to install
it, never skip.

Fixtures (registered in C{tests/conftest.py}):

  - C{chromium}: the session's L{Browser};
  - C{browserContext}: this test's fresh context, watched by C{pageLog};
  - C{page}: a page in that context;
  - C{pageLog}: a L{PageLog}: every request the context's pages made
    (C{pageLog.requestsTo(host)}), console errors, uncaught exceptions;
  - C{remoteTrap}: a L{RemoteTrap}, a stand-in for a remote web server that
    records every request reaching it (emptied before each test).

Helpers:

  - L{origin}: the server's C{http://127.0.0.1:<port>};
  - L{scriptMarks}/L{assertNoScriptRan}: whether a script set a global
    (C{window.__pwned} by default) in any frame of any page of the context;
  - L{screenshot}: PNGs of a page at desktop and phone width, light and dark,
    into C{$CAPTURE_SCREENSHOTS} (default C{test-artifacts/screenshots}).

A hostile-message test reads like this::

    def test_hostileMessageRunsNothing(server, page, pageLog, remoteTrap):
        send(server, address, hostileMessage(remoteTrap.url("pixel.png")))
        page.goto(origin(server) + f"/inbox/{address}")
        page.get_by_role("link", name="Hostile").click()
        assertNoScriptRan(page)
        assert remoteTrap.requests() == []
        assert pageLog.requestsTo(remoteTrap.host) == []
        assert pageLog.pageErrors == []
        screenshot(page, "message-hostile")

C{pageLog.requestsTo} lists what the page I{tried}: a load that the page's
Content-Security-Policy stopped is there too, with C{request.failure ==
"csp"}; C{remoteTrap.requests()} lists what reached the network. Chromium
is told the trap's port is a public address (C{--ip-address-space-overrides}):
otherwise Chromium's Local Network Access checks refuse some pages' requests
to a loopback port, and the trap would stay silent for a reason that does not
hold for a real remote server.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import attrs
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Request,
        WebError,
    )

    from tests.harness import CaptureServer

CHROMIUM = "/usr/bin/chromium"

CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
Scheme = Literal["light", "dark", "no-preference"]
SCHEMES: tuple[Scheme, ...] = ("light", "dark")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


@attrs.frozen
class TrapRequest:
    """
    One request that reached the L{RemoteTrap}.
    """

    method: str
    path: str
    headers: dict[str, str]


class _TrapHandler(BaseHTTPRequestHandler):
    server: _TrapServer

    def _record(self) -> None:
        self.server.trap._seen(TrapRequest(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
        ))
        # A form post's body is read so the browser sees a clean answer; the
        # trap only cares that the request came.
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length, 1 << 20))
        self.send_response(204)
        self.send_header("Connection", "close")
        self.end_headers()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _record

    def log_message(self, format: str, *args: object) -> None:
        """
        Quiet: the requests are kept, not printed.
        """


class _TrapServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, trap: RemoteTrap) -> None:
        super().__init__(("127.0.0.1", 0), _TrapHandler)
        self.trap = trap


class RemoteTrap:
    """
    A stand-in for a remote web server (a tracking pixel's host, a hostile
    message's script source): an HTTP server on 127.0.0.1, in a thread,
    answering every request C{204} and keeping it.

    A test puts L{url}s into a message and asserts afterwards that
    L{requests} is empty.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[TrapRequest] = []
        self._server = _TrapServer(self)
        self.port: int = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="remote-trap", daemon=True
        )

    def start(self) -> RemoteTrap:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "pixel.png") -> str:
        return f"http://{self.host}/{path.lstrip('/')}"

    def requests(self) -> list[TrapRequest]:
        """
        Every request that reached the trap since the last L{clear}.
        """
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def waitFor(self, path: str, timeout: float = 10.0) -> list[TrapRequest]:
        """
        Every request so far, once one for C{path} has arrived: the browser
        may have sent it before the trap's thread has read it.

        @raise AssertionError: if none came within C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = self.requests()
            if any(request.path == path for request in seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"no request for {path} reached the trap: {seen}")
            time.sleep(0.02)

    def _seen(self, request: TrapRequest) -> None:
        with self._lock:
            self._requests.append(request)


# Not slotted: Playwright stores its wrapper of a bound-method listener on the
# method's instance.
@attrs.define(slots=False)
class PageLog:
    """
    What the pages of one browser context did.

    @ivar requests: Every request any page or frame of the context issued, in
        order (Playwright's C{Request}: C{url}, C{method}, C{resource_type},
        C{frame}, and C{failure} when it failed, C{"csp"} when the page's
        Content-Security-Policy stopped it before it left the browser).
    @ivar consoleErrors: The text of every console message of type error.
    @ivar pageErrors: Every uncaught exception, as C{"Name: message"}.
    """

    requests: list[Request] = attrs.Factory(list)
    consoleErrors: list[str] = attrs.Factory(list)
    pageErrors: list[str] = attrs.Factory(list)

    def watch(self, context: BrowserContext) -> None:
        context.on("request", self._request)
        context.on("console", self._console)
        context.on("weberror", self._error)

    def requestsTo(self, host: str) -> list[Request]:
        """
        The requests to C{host}: a name or address, with C{:port} to match
        only that port (as L{RemoteTrap.host} is).
        """
        part = "netloc" if ":" in host else "hostname"
        return [r for r in self.requests if getattr(urlsplit(r.url), part) == host]

    def _request(self, request: Request) -> None:
        self.requests.append(request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.consoleErrors.append(message.text)

    def _error(self, error: WebError) -> None:
        self.pageErrors.append(f"{error.error.name}: {error.error.message}")


@contextmanager
def launchChromium(trap: RemoteTrap, executable: str = CHROMIUM) -> Iterator[Browser]:
    """
    Start Playwright and Debian's Chromium; stop both on exit.

    Playwright's driver and Chromium put their profile and artifact
    directories in C{$TMPDIR}: the driver is started with it set to this run's
    temporary directory (C{tests/conftest.py} removes it at the end), so a
    run leaves nothing in C{/tmp} even when Chromium dies.
    """
    if not os.access(executable, os.X_OK):
        pytest.fail(
            f"Chromium is missing ({executable}): the browser tests need Debian's chromium "
            "package; scripts/test installs it (or: apt-get install chromium).",
            pytrace=False,
        )
    if importlib.util.find_spec("playwright") is None:
        pytest.fail(
            "Playwright for Python is missing: pip install -e '.[test]' (scripts/test does).",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", tempfile.gettempdir())
        playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True,
            args=[*CHROMIUM_ARGS, f"--ip-address-space-overrides={trap.host}=public"],
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


def origin(server: CaptureServer) -> str:
    """
    The server's web origin, C{http://127.0.0.1:<port>}: what C{page.goto}
    is given before a path.
    """
    return f"http://127.0.0.1:{server.ports['http']}"


def scriptMarks(page: Page, name: str = "__pwned") -> dict[str, str]:
    """
    The frames, in every page of C{page}'s context, whose C{window} has the
    global C{name}: frame URL to the global's value as text.

    Playwright evaluates in a frame even where the frame's own scripts may
    not run (a sandboxed frame, a strict CSP), so a frame that is absent here
    was checked and found clean.
    """
    marks = {}
    for each in page.context.pages:
        for frame in each.frames:
            value = frame.evaluate(
                "name => name in window ? String(window[name]) : null", name
            )
            if value is not None:
                marks[frame.url] = value
    return marks


def assertNoScriptRan(page: Page, name: str = "__pwned") -> None:
    """
    Fail if any frame of any page of C{page}'s context has the global
    C{name}, the mark a hostile test's script sets.
    """
    marks = scriptMarks(page, name)
    assert marks == {}, f"a script set window.{name} in: {marks}"


def screenshotFolder() -> str:
    """
    Where L{screenshot} writes: C{$CAPTURE_SCREENSHOTS}, or
    C{test-artifacts/screenshots} in the repository (ignored by git: every
    run writes new ones; the README shows a run's copies kept in
    C{docs/screenshots}).
    """
    return os.path.abspath(
        os.environ.get("CAPTURE_SCREENSHOTS")
        or os.path.join(_ROOT, "test-artifacts", "screenshots")
    )


def screenshot(page: Page, name: str, fullPage: bool = False) -> list[str]:
    """
    Save C{page} as C{<name>-<desktop|phone>-<light|dark>.png} in
    L{screenshotFolder}: 1280x800 and 390x844 viewports, each in both color
    schemes. The page's viewport and color scheme are put back afterwards.
    Only the viewport changes: the context stays a desktop one (scale 1, no
    touch); a test of touch behaviour makes its own context with
    C{chromium.new_context(is_mobile=True, has_touch=True, ...)}.

    @return: The paths written.
    """
    if not _NAME.match(name):
        raise ValueError(f"screenshot name {name!r}: lower case letters, digits and '-'")
    folder = screenshotFolder()
    os.makedirs(folder, exist_ok=True)
    viewport = page.viewport_size
    scheme: Scheme = page.evaluate(
        "matchMedia('(prefers-color-scheme: dark)').matches ? 'dark'"
        " : matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'no-preference'"
    )
    written = []
    try:
        for size, (width, height) in SIZES.items():
            page.set_viewport_size({"width": width, "height": height})
            for each in SCHEMES:
                page.emulate_media(color_scheme=each)
                path = os.path.join(folder, f"{name}-{size}-{each}.png")
                page.screenshot(path=path, full_page=fullPage, animations="disabled", caret="hide")
                written.append(path)
    finally:
        if viewport is not None:
            page.set_viewport_size(viewport)
        page.emulate_media(color_scheme=scheme)
    return written
