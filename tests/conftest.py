"""
Shared fixtures: real Capture servers on loopback.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from tests.harness import CaptureServer


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
