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

    def __init__(self, resource: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.metrics = metrics

    def log(self, request: Request) -> None:
        self.metrics.httpRequest(request.method, request.code)
        super().log(request)
