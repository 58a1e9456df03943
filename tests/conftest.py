"""
Shared fixtures: real Capture servers on loopback.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser import PageLog, RemoteTrap, launchChromium
from tests.harness import CaptureServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page


@pytest.fixture(scope="session")
def server() -> Iterator[CaptureServer]:
    """
    One server shared by the tests that only add mail: defaults, except
    listeners on ephemeral loopback ports.
    """
    running = CaptureServer().start()
    yield running
    running.stop()


@pytest.fixture
def freshServer(request: pytest.FixtureRequest) -> Iterator[CaptureServer]:
    """
    A server of the test's own; options come from a C{serverOptions}
    marker, e.g. C{@pytest.mark.serverOptions("--allow-anonymous")}.
    """
    marker = request.node.get_closest_marker("serverOptions")
    extra = list(marker.args) if marker else []
    running = CaptureServer(extra=extra).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def _remoteTrap() -> Iterator[RemoteTrap]:
    trap = RemoteTrap().start()
    yield trap
    trap.stop()


@pytest.fixture
def remoteTrap(_remoteTrap: RemoteTrap) -> RemoteTrap:
    """
    The stand-in remote web server (L{tests.browser.RemoteTrap}), with no
    request recorded yet. One for the session: Chromium is told its port at
    launch.
    """
    _remoteTrap.clear()
    return _remoteTrap


@pytest.fixture(scope="session")
def chromium(_remoteTrap: RemoteTrap) -> Iterator[Browser]:
    """
    One headless Debian Chromium for every browser test of the session
    (L{tests.browser.launchChromium}); a missing Chromium fails the test.
    """
    with launchChromium(_remoteTrap) as browser:
        yield browser


@pytest.fixture
def pageLog() -> PageLog:
    """
    What this test's browser context did: requests, console errors,
    uncaught exceptions (L{tests.browser.PageLog}).
    """
    return PageLog()


@pytest.fixture
def browserContext(chromium: Browser, pageLog: PageLog) -> Iterator[BrowserContext]:
    """
    A fresh browser context (no cookies, storage or cache from another
    test), watched by C{pageLog}.
    """
    context = chromium.new_context()
    pageLog.watch(context)
    yield context
    context.close()


@pytest.fixture
def noPageErrors(pageLog: PageLog) -> Iterator[None]:
    """
    Fails the test if any page of it raised a script error (page tests
    use it for every test: C{pytestmark = pytest.mark.usefixtures(...)}).
    """
    yield
    assert pageLog.pageErrors == [], pageLog.pageErrors


@pytest.fixture
def page(browserContext: BrowserContext) -> Page:
    """
    A page in this test's own browser context, 1280x720, light.
    """
    return browserContext.new_page()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serverOptions(*args): options for freshServer")
    # Every temporary directory of the run (servers' data, stores, TLS
    # directories) goes under one, removed at the end: a run leaves nothing
    # behind in /tmp.
    global _runDirectory
    _runDirectory = tempfile.mkdtemp(prefix="capture-tests-")
    tempfile.tempdir = _runDirectory


def pytest_unconfigure(config: pytest.Config) -> None:
    tempfile.tempdir = None
    if _runDirectory is not None:
        shutil.rmtree(_runDirectory, ignore_errors=True)


_runDirectory: str | None = None
