"""
Shared fixtures: real Capture servers on loopback.
"""

from __future__ import annotations

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
