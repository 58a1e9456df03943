# -*- test-case-name: tests.test_metrics -*-
"""
The HTTP listener's site: Twisted's L{Site}, counting every answered
request for C{/metrics}.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import Request
from twisted.web.server import Site

from capture.metrics import Metrics


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
