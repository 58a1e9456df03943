# -*- test-case-name: tests.test_pages -*-
"""
The home page (what Capture is, "Check the mail!", the SMTP settings to
paste into an application, sign-in), signing in and out, and the static
files every page uses.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet.task import deferLater
from twisted.python.filepath import InsecurePath
from twisted.web.iweb import IRequest
from twisted.web.pages import notFound as plainNotFound
from twisted.web.resource import IResource
from twisted.web.static import File
from twisted.web.template import Tag, tags

from capture.addresses import canonicalAddress
from capture.web.pagebase import (
    STATIC,
    PageBase,
    PageError,
    localPath,
    notFound,
    pages,
    signInForm,
)


class _Static(File):
    """
    The files under C{static/}, never a directory listing, cacheable for a
    short while (they change only with Capture's version).
    """

    contentTypes = {
        **File.contentTypes,
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".svg": "image/svg+xml",
        ".woff2": "font/woff2",
    }

    def directoryListing(self) -> IResource:
        # Not reached through the route, which answers directories itself.
        return plainNotFound()

    def render_GET(self, request: IRequest) -> Any:
        request.setHeader(b"cache-control", b"public, max-age=300")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return super().render_GET(request)


def _isStaticFile(segments: list[bytes]) -> bool:
    """
    Whether the path segments after C{/static/} name a file of C{static/}
    that L{_Static} would serve: so whatever it would not is the pages'
    own 404, decided before Twisted's file resource could answer its bare
    one.
    """
    if not segments:
        return False
    try:
        names = [segment.decode("utf-8") for segment in segments]
        if any(name in ("", ".", "..") for name in names):
            return False
        return STATIC.descendant(names).isfile()
    except (UnicodeDecodeError, InsecurePath, ValueError, OSError):
        return False


def inboxPath(address: str) -> str:
    """
    The path of an inbox's page.
    """
    return "/inbox/" + quote(address, safe="@+")


class HomePages(PageBase):
    """
    C{/}, C{/inbox?address=}, C{/signin} (the form, and signing in),
    C{/signout} and C{/static/}.
    """

    @pages.route("/", methods=["GET"])
    async def home(self, request: IRequest) -> bytes:
        return await self._home(request, await self.viewer(request))

    async def _home(
        self, request: IRequest, viewer: str | None, code: int = 200,
        addressError: str | None = None, signInError: str | None = None, address: str = "",
        next: str = "",
    ) -> bytes:
        csrf = self._sessions.csrfToken(request)
        content = [
            tags.section(
                tags.h1("Check the mail"),
                tags.p(
                    "Capture is a mail server for testing: it accepts every message sent "
                    "to it, delivers none, and shows each recipient's inbox here."
                ),
                self._checkForm(address, addressError),
                class_="hero",
            ),
            self._smtpSettings(viewer),
            self._signIn(viewer, csrf, signInError, next),
        ]
        return await self.render(request, "Check the mail", content, viewer, code=code)

    def _checkForm(self, address: str, error: str | None) -> Tag:
        field = tags.input(
            id="address", name="address", type="text", inputmode="email", value=address,
            autocomplete="email", required="required", spellcheck="false",
            placeholder="anything@example.com", autofocus="autofocus",
        )
        form = tags.form(
            tags.label("Email address", for_="address"),
            tags.div(field, tags.button("Check the mail!", type="submit"), class_="row"),
            action="/inbox", method="get", role="search", class_="check",
        )
        if error is not None:
            field.attributes["aria-invalid"] = "true"
            field.attributes["aria-describedby"] = "address-error"
            form(tags.p(error, id="address-error", role="alert", class_="error"))
        return form

    def _smtpSettings(self, viewer: str | None) -> Tag:
        settings = self._mailSettings
        host = settings.hostname if settings is not None else "localhost"
        rows: list[tuple[str, Any]] = [("Host", tags.code(host))]
        if settings is not None:
            for name, label in (("smtp", "Port (STARTTLS)"), ("smtps", "Port (TLS)")):
                portOf = settings.ports.get(name)
                port = portOf() if portOf is not None else None
                if port is not None:
                    rows.append((label, tags.code(str(port))))
        rows.append(("User name", tags.code(viewer) if viewer else "your account name"))
        rows.append(("Password", "an API key of the account"))
        return tags.section(
            tags.h2("Send mail to Capture", id="smtp-heading"),
            tags.p("Point your application's SMTP settings here; every recipient's "
                   "copy lands in its inbox on this page."),
            tags.dl([[tags.dt(name), tags.dd(value)] for name, value in rows],
                    class_="settings"),
            class_="smtp",
            **{"aria-labelledby": "smtp-heading"},
        )

    def _signIn(self, viewer: str | None, csrf: str, error: str | None, next: str = "") -> Tag:
        if viewer is not None:
            return tags.section(
                tags.h2("Signed in as ", tags.strong(viewer)),
                tags.p(tags.a("Your inboxes and settings", href="/account")),
                id="sign-in",
            )
        return tags.section(
            tags.h2("Sign in", id="sign-in-heading"),
            tags.p("With an API key you see your own addresses, private mail and settings."),
            signInForm(csrf, error, next),
            id="sign-in", **{"aria-labelledby": "sign-in-heading"},
        )

    @pages.route("/inbox", methods=["GET"])
    async def checkMail(self, request: IRequest) -> bytes:
        values = request.args.get(b"address")
        address = values[0].decode("utf-8", "replace").strip() if values else ""
        canonical = canonicalAddress(address)
        if canonical is None:
            message = ("Type an email address, like anything@example.com."
                       if not address else f"{address!r} is not an email address.")
            return await self._home(
                request, await self.viewer(request), code=400, addressError=message,
                address=address,
            )
        return self.redirect(request, inboxPath(canonical))

    @pages.route("/signin", methods=["GET"])
    async def signInPage(self, request: IRequest) -> bytes:
        """
        The sign-in form on a page of its own, for a browser that asks for
        C{/signin} (a bookmark, a typed address); C{next} as the form's.
        """
        viewer = await self.viewer(request)
        nextValues = request.args.get(b"next")
        next = localPath(nextValues[0].decode("utf-8", "replace")) if nextValues else None
        content = self._signIn(viewer, self._sessions.csrfToken(request), None, next or "")
        return await self.render(request, "Sign in", content, viewer)

    @pages.route("/signin", methods=["POST"])
    async def signIn(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        client = request.getClientAddress()
        host = getattr(client, "host", "unknown")
        if self._throttle.refused(host):
            raise PageError(
                429, "Too many failed sign-ins",
                "Wait a few minutes before trying again.",
            )
        values = request.args.get(b"key")
        key = values[0].decode("utf-8", "replace").strip() if values else ""
        nextValues = request.args.get(b"next")
        next = localPath(nextValues[0].decode("utf-8", "replace")) if nextValues else None
        account = await self._store.accountForKey(key) if key and len(key) < 200 else None
        prefix = None
        if account is not None:
            for info in await self._store.listKeys(account):
                if info.revoked is None and key.startswith(info.prefix):
                    prefix = info.prefix
        if account is None or prefix is None:
            delay = self._throttle.failed(host)
            if delay:
                await deferLater(self._throttle.clock, delay, lambda: None)
            return await self._home(
                request, None, code=401,
                signInError="That API key is wrong or was revoked.", next=next or "",
            )
        self._throttle.succeeded(host)
        generation = await self._store.sessionGeneration(account, prefix)
        self._sessions.signIn(request, account, prefix, generation or 0)
        return self.redirect(request, next or "/account")

    @pages.route("/signout", methods=["POST"])
    async def signOut(self, request: IRequest) -> bytes:
        """
        Sign out: this browser's cookie is cleared and every session of the
        account ends (the old cookie no longer opens anything).
        """
        self.checkCsrf(request)
        await self._sessions.end(request, self._store)
        return self.redirect(request, "/")

    @pages.route("/static/", branch=True, methods=["GET", "HEAD"])
    def static(self, request: IRequest) -> IResource:
        """
        A file of C{static/}; a missing file, a directory or a path out of
        the folder is the one L{notFound} page, as on every other page.
        """
        if not _isStaticFile(request.postpath):
            raise notFound()
        return _Static(STATIC.path)
