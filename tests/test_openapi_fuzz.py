"""
Schemathesis against a real server: inputs generated from the OpenAPI
document for every GET operation, and for every operation that writes (on
a server of its own: it claims domains and purges inboxes), as a smoke
test that none gets a 5xx and that every answer is one the document
describes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from capture.web.openapi import document
from tests.harness import CaptureServer
from tests.test_openapi import PENDING

# Live events answer when mail comes or never (event streams, the
# websocket), or after a timeout of up to 300 s: tests/test_live.py covers
# them with clients that know that.
_LIVE = {
    ("GET", "/api/addresses/{email}/messages/wait"),
    ("GET", "/api/addresses/{email}/events"),
    ("GET", "/api/inbox/events"),
    ("GET", "/incoming-messages"),
}
_SCHEMA = (
    schemathesis.openapi.from_dict(document())
    .include(method="GET")
    .exclude(func=lambda ctx: ("GET", ctx.operation.path) in PENDING | _LIVE)
)


@_SCHEMA.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_getOperations(case: schemathesis.Case, server: CaptureServer) -> None:
    response = case.call(base_url=f"http://127.0.0.1:{server.ports['http']}",
                         headers={"Mailsac-Key": server.key or ""})
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance,
                                             response_schema_conformance])


_WRITES = (
    schemathesis.openapi.from_dict(document())
    .exclude(method="GET")
    .exclude(func=lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in _LIVE)
)


@pytest.fixture(scope="module")
def writeServer() -> Iterator[CaptureServer]:
    running = CaptureServer().start()
    yield running
    running.stop()


@_WRITES.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_writeOperations(case: schemathesis.Case, writeServer: CaptureServer) -> None:
    response = case.call(base_url=f"http://127.0.0.1:{writeServer.ports['http']}",
                         headers={"Mailsac-Key": writeServer.key or ""})
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance,
                                             response_schema_conformance])


def test_writeFuzzLoggedNoTraceback(writeServer: CaptureServer) -> None:
    """
    After the write operations' fuzzing, the server's log holds no
    traceback: no input reached an unexpected exception.
    """
    assert "Traceback" not in writeServer.log()
