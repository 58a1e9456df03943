# -*- test-case-name: tests.test_pages -*-
"""
What every web page shares: the one Klein app their routes register on,
the layout they render into, who is looking (the session cookie), CSRF
checks, security headers and the HTML error pages.

The pages are split by subject into mixins (L{capture.web.homepage},
L{capture.web.inboxpages}, L{capture.web.messagepages},
L{capture.web.accountpages}), each a subclass of L{PageBase} whose routes
are declared on L{pages}; L{capture.web.pages.WebPages} combines them into
the one object the routes are called on.
"""

from __future__ import annotations

import os
import re
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.web.iweb import IRequest
from twisted.web.template import Element, Tag, XMLFile, flattenString, renderer, tags
from werkzeug.exceptions import HTTPException

from capture.auth import LoginThrottle
from capture.store.errors import StoreFull
from capture.store.interface import IStore
from capture.store.model import DEFAULT_MESSAGE_LIMIT
from capture.web.autoconfig import MailSettings
from capture.web.websession import WebSessions

_HERE = FilePath(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = _HERE.child("templates")
STATIC = _HERE.child("static")
_log = Logger()

# Where sign-in may send a browser back to: a path on this site, never
# "//host" or "/\\host" (which browsers read as another site), nothing
# that is not printable ASCII.
_LOCAL_PATH = re.compile(r"/(?![/\\])[!-~]{0,2000}")

pages = Klein()
# As in the API: an empty segment is a 404, not a redirect elsewhere.
pages.url_map.merge_slashes = False

# Pages may load only what Capture serves, run only its own scripts, and
# be framed by nobody; message bodies have their own, stricter policy
# (L{capture.web.messagepages}).
PAGE_POLICY = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    b"form-action 'self'; frame-ancestors 'none'"
)


class PageError(Exception):
    """
    A refusal shown as an HTML page.

    @ivar code: The HTTP status.
    @ivar title: The page's heading.
    @ivar detail: One sentence saying what to do.
    """

    def __init__(self, code: int, title: str, detail: str = "") -> None:
        super().__init__(title)
        self.code = code
        self.title = title
        self.detail = detail


def notFound() -> PageError:
    """
    The one answer for what does not exist and for what the viewer may not
    see (another account's private inbox or message): the two must look
    the same, or the page would tell who owns what.
    """
    return PageError(404, "Nothing here", "There is no such inbox or message, or it is private.")


class Layout(Element):
    """
    The frame of every page: header with the sign-in state, the page's
    content, footer.
    """

    loader = XMLFile(TEMPLATES.child("layout.xml"))

    def __init__(self, title: str, content: Any, viewer: str | None, csrf: str,
                 bodyClass: str = "", scripts: tuple[str, ...] = (),
                 styles: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._scripts = scripts
        self._styles = styles
        self._title = title
        self._content = content
        self._viewer = viewer
        self._csrf = csrf
        self._bodyClass = bodyClass

    @renderer
    def page(self, request: IRequest, tag: Tag) -> Tag:
        return tag.fillSlots(title=self._title, bodyClass=self._bodyClass, csrf=self._csrf)

    @renderer
    def styles(self, request: IRequest, tag: Tag) -> list[Tag]:
        return [tags.link(rel="stylesheet", href="/static/" + name) for name in self._styles]

    @renderer
    def scripts(self, request: IRequest, tag: Tag) -> list[Tag]:
        return [tags.script(src="/static/" + name, defer="defer") for name in self._scripts]

    @renderer
    def content(self, request: IRequest, tag: Tag) -> Tag:
        return tag(self._content)

    @renderer
    def account(self, request: IRequest, tag: Tag) -> Tag | str:
        if self._viewer is None:
            return tags.a("Sign in", href="/#sign-in", class_="signin-link")
        return tag(
            tags.a(self._viewer, href="/account", class_="account-name"),
            tags.form(
                csrfField(self._csrf),
                tags.button("Sign out", type="submit", class_="link"),
                method="post", action="/signout", class_="inline",
            ),
        )


def csrfField(token: str) -> Tag:
    """
    The hidden field that carries the CSRF token in a form.
    """
    return tags.input(type="hidden", name="csrf", value=token)


def localPath(text: str) -> str | None:
    """
    C{text} if it is a path on this site that sign-in may redirect to,
    else L{None}: a redirect that takes a form's value must not lead away.
    """
    if _LOCAL_PATH.fullmatch(text) is None or "\\" in text:
        return None
    return text


def signInForm(csrf: str, error: str | None = None, next: str = "") -> Tag:
    """
    The sign-in form (the home page's, and the 401 page's), with C{error}
    beside the field; C{next} is the page to go to once signed in.
    """
    field = tags.input(
        id="key", name="key", type="password", autocomplete="current-password",
        required="required", spellcheck="false",
    )
    form = tags.form(
        csrfField(csrf),
        tags.input(type="hidden", name="next", value=next) if next else "",
        tags.label("API key", for_="key"),
        tags.div(field, tags.button("Sign in", type="submit"), class_="row"),
        action="/signin", method="post", class_="signin",
    )
    if error is not None:
        field.attributes["aria-invalid"] = "true"
        field.attributes["aria-describedby"] = "key-error"
        form(tags.p(error, id="key-error", role="alert", class_="error"))
    return form


class PageBase:
    """
    The state and helpers every page mixin uses.

    @ivar publicReadable: Whether public inboxes may be read without
        signing in (C{--require-key} turns it off).
    """

    app = pages

    def __init__(
        self,
        store: IStore,
        sessions: WebSessions,
        throttle: LoginThrottle,
        mailSettings: MailSettings | None = None,
        publicReadable: bool = True,
        messageLimit: int = DEFAULT_MESSAGE_LIMIT,
    ) -> None:
        """
        @param messageLimit: The server's default limit on an account's
            stored mail (C{--message-limit}), shown where an account has
            none of its own.
        """
        self.messageLimit = messageLimit
        self._store = store
        self._sessions = sessions
        self._throttle = throttle
        self._mailSettings = mailSettings
        self.publicReadable = publicReadable

    # Who is looking

    async def viewer(self, request: IRequest) -> str | None:
        """
        The account signed in on this request, or L{None}.  A session
        whose key was revoked since sign-in is over (and its cookie
        cleared).
        """
        return await self._sessions.signedIn(request, self._store)

    async def requiredViewer(self, request: IRequest) -> str:
        viewer = await self.viewer(request)
        if viewer is None:
            raise PageError(401, "Sign in first", "This page needs an API key: sign in below.")
        return viewer

    def checkCsrf(self, request: IRequest) -> None:
        """
        @raise PageError: 403 unless the request carries its browser's
            CSRF token.
        """
        if not self._sessions.csrfValid(request):
            raise PageError(
                403, "This form has expired",
                "Go back, reload the page and try again.",
            )

    # Answers

    def render(
        self, request: IRequest, title: str, content: Any, viewer: str | None,
        code: int = 200, bodyClass: str = "", scripts: tuple[str, ...] = (),
        styles: tuple[str, ...] = (),
    ) -> Deferred[bytes]:
        """
        A whole page: C{content} (tags or an L{Element}) in the layout.

        @param scripts: Files of C{static/} the page runs, after
            C{capture.js}.
        @param styles: Stylesheets of C{static/} it adds to C{capture.css}.
        """
        request.setResponseCode(code)
        securityHeaders(request)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        layout = Layout(
            title, content, viewer, self._sessions.csrfToken(request), bodyClass=bodyClass,
            scripts=scripts, styles=styles,
        )
        return flattenString(request, layout).addCallback(lambda body: b"<!DOCTYPE html>\n" + body)

    def redirect(self, request: IRequest, location: str) -> bytes:
        """
        See Other: after a form's POST, to the page to show next.
        """
        request.setResponseCode(303)
        request.setHeader(b"location", location.encode("utf-8"))
        return b""

    # Errors

    @pages.handle_errors(PageError)
    def _pageError(self, request: IRequest, failure: Failure) -> Deferred[bytes]:
        error = failure.value
        assert isinstance(error, PageError)
        return self._errorPage(request, error)

    @pages.handle_errors(StoreFull)
    def _storeFull(self, request: IRequest, failure: Failure) -> Deferred[bytes]:
        return self._errorPage(request, PageError(
            507, "The store is full", "Delete or purge mail to make room, then try again.",
        ))

    @pages.handle_errors(HTTPException)
    def _routingError(self, request: IRequest, failure: Failure) -> Deferred[bytes]:
        error = failure.value
        assert isinstance(error, HTTPException)
        if error.code == 405:
            return self._errorPage(request, PageError(405, "Not like that", "That page does not "
                                                      "take this kind of request."))
        return self._errorPage(request, notFound())

    @pages.handle_errors(Exception)
    def _unexpected(self, request: IRequest, failure: Failure) -> Deferred[bytes]:
        _log.failure("Page request failed", failure)
        return self._errorPage(
            request, PageError(500, "Something went wrong", "The error was logged; try again.")
        )

    def refuse(self, request: IRequest, code: int, message: str) -> Deferred[bytes]:
        """
        A request refused before routing (L{capture.web.root}), as the
        pages' error page.
        """
        return self._errorPage(
            request, PageError(code, "That address is broken", message + " Check the link.")
        )

    def _errorPage(self, request: IRequest, error: PageError) -> Deferred[bytes]:
        async def page() -> bytes:
            try:
                viewer = await self.viewer(request)
            except Exception:
                viewer = None
            content = tags.section(
                tags.h1(error.title), tags.p(error.detail),
                class_="error-page",
            )
            if error.code == 401 and viewer is None:
                # "Sign in below": the form is here, and brings the
                # visitor back to the page asked for.
                back = request.path.decode("ascii", "replace") if request.method == b"GET" else ""
                content(tags.section(
                    tags.h2("Sign in", id="sign-in-heading"),
                    signInForm(self._sessions.csrfToken(request), next=localPath(back) or ""),
                    id="sign-in", **{"aria-labelledby": "sign-in-heading"},
                ))
            content(tags.p(tags.a("Back to the start", href="/")))
            return await self.render(request, error.title, content, viewer, code=error.code)

        return ensureDeferred(page())


def securityHeaders(request: IRequest, policy: bytes = PAGE_POLICY) -> None:
    """
    The headers every page carries: its Content-Security-Policy, no
    sniffing, no framing, no referrer (a link followed out of a message
    must not tell its site which inbox it was read in), and no caching of
    mail.
    """
    request.setHeader(b"content-security-policy", policy)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"cache-control", b"no-store")
