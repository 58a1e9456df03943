# -*- test-case-name: tests.test_metrics,tests.test_connections -*-
"""
The HTTP listener's site: Twisted's L{Site}, counting every answered
request for C{/metrics}, and answering C{503} on a connection past the
listener's caps.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import Request
from twisted.web.resource import Resource
from twisted.web.server import Site

from capture.metrics import Metrics
from capture.web.responses import ApiError, jsonBody

#: Seconds a refused client is told to wait (C{Retry-After}).
RETRY_AFTER = 5
# Seconds a refused connection may take to send its request.
_REFUSED_TIMEOUT = 10
_REFUSALS = {
    "listener": "Too many connections, try again later.",
    "address": "Too many connections from your address, try again later.",
}
# Paths answered in Mailsac's JSON (the others are pages).
_API_PATHS = (b"/api/", b"/incoming-messages", b"/livez", b"/readyz", b"/metrics")


class MeteredSite(Site):
    """
    A L{Site} that counts each request it answers by method and status
    class.  L{log} is the one call every finished request makes, whichever
    resource or error handler answered it.
    """

    noisy = False

    def __init__(
        self, resource: Any, metrics: Metrics, accessLog: bool = False, **kwargs: Any
    ) -> None:
        """
        @param accessLog: Whether to log a line per request (the combined log
            format, into the server's log).  Off by default: under load the
            line is a tenth of the reactor's time and floods the log, and
            C{/metrics} counts requests anyway.
        """
        super().__init__(resource, **kwargs)
        self.metrics = metrics
        self.accessLog = accessLog

    def log(self, request: Request) -> None:
        self.metrics.httpRequest(request.method, request.code)
        if self.accessLog:
            super().log(request)

    def refuse(self, reason: str) -> Any:
        """
        The channel of a connection past a cap of the listener
        (L{capture.connections.GuardFactory}): it reads one request, as
        any channel does, and answers it L{Busy}, then closes.
        """
        channel = self.buildProtocol(None)
        base = self.requestFactory
        channel.requestFactory = type("RefusedRequest", (base,), {"refusedBy": reason})
        channel.timeOut = _REFUSED_TIMEOUT
        return channel

    def getResourceFor(self, request: Any) -> Any:
        reason = getattr(request, "refusedBy", None)
        if reason is not None:
            return Busy(reason)
        return super().getResourceFor(request)


class Busy(Resource):
    """
    C{503} with C{Retry-After} and C{Connection: close}: Mailsac's JSON
    error body on API paths, a short page elsewhere.
    """

    isLeaf = True

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.message = _REFUSALS.get(reason, _REFUSALS["listener"])

    def render(self, request: Any) -> bytes:
        request.setHeader(b"retry-after", str(RETRY_AFTER).encode())
        request.setHeader(b"connection", b"close")
        request.channel.persistent = False
        if request.path.startswith(_API_PATHS):
            return jsonBody(request, ApiError(503, self.message).body(), 503)
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (
            "<!DOCTYPE html><html lang=en><meta charset=utf-8><title>Busy - Capture</title>"
            f"<h1>Capture is busy</h1><p>{self.message} Reload in a few seconds.</p></html>"
        ).encode()
