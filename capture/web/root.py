# -*- test-case-name: tests.test_pages -*-
"""
The HTTP listener's root: the web pages and the API side by side.

Each request goes by its first path segment to the pages' Klein resource
or the API's, whole (both route on the full path).  Deciding on one
segment costs nothing measurable, where trying one Klein route map after
the other would cost every API call a failed match.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

# First path segments that belong to the pages; everything else (/api,
# /livez, /readyz, /metrics, /incoming-messages, autoconfig) is the API's.
PAGE_SEGMENTS = frozenset({b"", b"inbox", b"static", b"signin", b"signout", b"account"})


class Root(Resource):
    """
    Sends each request to the pages or the API by its first segment.
    """

    def __init__(self, pages: IResource, api: IResource) -> None:
        super().__init__()
        self._pages = pages
        self._api = api

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        # Give the segment back: the chosen resource routes on the whole
        # path, as if it were the root.
        request.postpath.insert(0, request.prepath.pop())
        return self._pages if path in PAGE_SEGMENTS else self._api

    def render(self, request: IRequest) -> bytes:
        # A request for the root itself ("" with no path at all) is the
        # home page.
        return self._pages.render(request)
