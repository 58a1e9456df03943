# -*- test-case-name: tests.test_http_fuzz -*-
"""
The HTTP listener's root: the web pages and the API side by side.

Each request goes by its first path segment to the pages' Klein resource
or the API's, whole (both route on the full path).  Deciding on one
segment costs nothing measurable, where trying one Klein route map after
the other would cost every API call a failed match.

The root also refuses, before Klein sees it, what Klein cannot route: a
path or method that is not UTF-8 (Klein answers a bare text/html 400 of
its own) and a C{Host} that is not a host name (Werkzeug raises
C{BadHost} while binding its map, outside every error handler: a 500).
Each is a 400 in the shape of the side it was meant for: Mailsac's JSON
error for the API, the pages' error page for a page.
"""

from __future__ import annotations

from typing import Any, Protocol

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

# First path segments that belong to the API (every route of
# L{capture.web.api.MailsacAPI}); every other path is a page, so a browser
# that follows a wrong link gets the pages' 404, not JSON.
API_SEGMENTS = frozenset({
    b"api", b"livez", b"readyz", b"metrics", b"incoming-messages", b"mail", b".well-known",
})


class Side(Protocol):
    """
    One of the two things the root serves: its routes, and how it says
    no to a request they cannot take.
    """

    app: Klein

    def refuse(self, request: IRequest, code: int, message: str) -> bytes | Deferred[bytes]:
        """
        The answer to a request refused before routing, in this side's
        shape; the response code is set by it.
        """


def _hostProblem(request: IRequest) -> str | None:
    """
    What is wrong with the request's host name, as Werkzeug would find it
    while binding a route map (each label 1 to 63 octets, IDNA-encodable),
    or L{None} when nothing is.
    """
    name = request.getRequestHostname()
    if name.isascii() and all(0 < len(label) < 64 for label in name.rstrip(b".").split(b".")):
        # The usual case, decided without the IDNA codec: localhost,
        # 127.0.0.1, [::1], mail.example.com.
        return None
    try:
        name.decode("utf-8").lower().encode("idna")
    except UnicodeError:
        return "The Host header is not a host name."
    return None


def _problem(request: IRequest) -> str | None:
    """
    Why Klein could not route C{request}, or L{None}.
    """
    try:
        request.method.decode("utf-8")
        # request.path is still percent-encoded; its segments, decoded,
        # are what Klein reads.
        for segment in request.postpath:
            if not segment.isascii():
                segment.decode("utf-8")
    except UnicodeDecodeError:
        return "The request's path is not UTF-8."
    return _hostProblem(request)


class _Refusal(Resource):
    """
    A 400 from one side, for a request that never reaches its routes.
    """

    isLeaf = True

    def __init__(self, side: Side, message: str) -> None:
        super().__init__()
        self._side = side
        self._message = message

    def render(self, request: IRequest) -> Any:
        body = self._side.refuse(request, 400, self._message)
        if isinstance(body, bytes):
            return body

        def written(data: bytes) -> None:
            request.write(data)
            request.finish()

        def failed(failure: Failure) -> None:
            # The error page could not be built (the store did not answer
            # for the viewer): say it plainly rather than hang.
            request.write(self._message.encode("utf-8"))
            request.finish()

        body.addCallbacks(written, failed)
        return NOT_DONE_YET


class Root(Resource):
    """
    Sends each request to the pages or the API by its first segment.
    """

    def __init__(self, pages: Side, api: Side) -> None:
        super().__init__()
        self._pagesSide = pages
        self._apiSide = api
        self._pages = pages.app.resource()
        self._api = api.app.resource()

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        # Give the segment back: the chosen resource routes on the whole
        # path, as if it were the root.
        request.postpath.insert(0, request.prepath.pop())
        isApi = path in API_SEGMENTS
        problem = _problem(request)
        if problem is not None:
            return _Refusal(self._apiSide if isApi else self._pagesSide, problem)
        return self._api if isApi else self._pages

    def render(self, request: IRequest) -> Any:
        # A request for the root itself ("" with no path at all) is the
        # home page.
        problem = _problem(request)
        if problem is not None:
            return _Refusal(self._pagesSide, problem).render(request)
        return self._pages.render(request)
