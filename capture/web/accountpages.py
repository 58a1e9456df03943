# -*- test-case-name: tests.test_accountpages -*-
"""
The signed-in pages: C{/account}, the account's unified inbox (its owned
addresses, private domains and starred mail, Mailsac's M17) with search
and live new mail, and C{/account/settings}: C{capturePrivate}, API keys,
owned addresses, custom domains and this month's usage.

Every change is a form POSTed to C{/account/...} with the CSRF token.  A
change that worked answers 303 back to the settings page, which shows a
one-time notice (a short-lived cookie naming one of L{_NOTICES}, so no
text of the request's choosing is ever shown); bad input re-renders the
settings page, 400, with the error beside its form.  The one exception is
a new API key: it is shown once, in the answer to the POST itself, and
never put in a URL or cookie.

Address and domain changes go through L{capture.web.accountrules}, the
same checks and wording as the API.
"""

from __future__ import annotations

import time
from typing import Any, cast
from urllib.parse import urlencode

from twisted.internet.defer import gatherResults
from twisted.web.iweb import IRequest
from twisted.web.server import Request
from twisted.web.template import Tag, tags

from capture.access import Action, permits
from capture.emailmessage import isoTime
from capture.store.errors import Conflict, NotFound
from capture.store.model import Account, ApiKeyInfo, Copy, Domain, InboxOwner, OwnedAddress
from capture.web import accountrules
from capture.web.homepage import inboxPath
from capture.web.inboxpages import CURSOR, humanSize, rowActions, sender, shortcuts, shortTime
from capture.web.pagebase import PageBase, PageError, csrfField, pages
from capture.web.responses import ApiError

# Rows of the unified inbox a page shows; older ones are a page further.
PAGE_SIZE = 50
# Results an account search shows (Mailsac's M19 gives at most 100).
SEARCH_LIMIT = 100
# The account's copies one search examines (newest first): a word no message
# has costs this many, not the whole account; the page links to older mail.
SEARCH_SCAN = 10_000
_MAX_LABEL = 100
_MAX_SKIP = 1_000_000
_NOTICE_COOKIE = b"capture_notice"
_NOTICES = {
    "private-on": "Captured email is private now: mail you send through Capture is "
                  "starred for your account.",
    "private-off": "Captured email is no longer made private.",
    "key-revoked": "The API key was revoked.",
    "address-reserved": "The address is yours now.",
    "address-updated": "The address's settings were saved.",
    "address-released": "The address was released.",
    "domain-added": "The domain was added.",
    "domain-removed": "The domain was removed.",
    "domain-updated": "The domain's privacy was changed.",
}
_SETTINGS = "/account/settings"


def _field(request: IRequest, name: bytes) -> str:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace").strip() if values else ""


def _checked(request: IRequest, name: bytes) -> bool:
    return _field(request, name) in ("1", "on", "true")


def _when(millis: int) -> Tag:
    """
    A time as the pages show it: UTC text a script makes local, with the
    machine-readable time beside it.
    """
    text = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(millis // 1000))
    return tags.time(text, datetime=isoTime(millis))


def messagePath(copy: Copy) -> str:
    """
    The path of a copy's message page.
    """
    return f"{inboxPath(copy.inbox)}/{copy.id}"


def messageRow(copy: Copy, actions: Tag | str = "") -> Tag:
    """
    One message of a list: unread and starred marks, sender, subject, inbox,
    time, size and attachment mark, linking to its page, then C{actions}
    (L{rowActions}).  C{account.js} builds the same row for mail that
    arrives live.
    """
    message = copy.message
    unread = not copy.read
    classes = "message" + (" unread" if unread else "") + (" starred" if copy.savedBy else "")
    return tags.li(
        tags.a(
            tags.span("Unread" if unread else "", class_="mark-unread"),
            tags.span("★" if copy.savedBy else "", class_="mark-star",
                      **({"title": "Starred"} if copy.savedBy else {})),
            tags.span(sender(copy), class_="from"),
            tags.span(message.subject or "(no subject)", class_="subject"),
            tags.span(copy.inbox, class_="inbox"),
            tags.span(tags.time(shortTime(message.received, time.time()),
                                datetime=isoTime(message.received)), class_="when"),
            tags.span(humanSize(message.size), class_="size"),
            tags.span("📎" if message.attachments else "", class_="mark-attachment",
                      **({"title": "Has attachments"} if message.attachments else {})),
            href=messagePath(copy), class_="row-link open",
        ),
        actions,
        class_=classes, **{"data-id": copy.id},
    )


def _limitText(limit: int) -> str:
    return f"{limit:,}" if limit else "none"


class AccountPages(PageBase):
    """
    C{/account}, C{/account/settings} and the settings' forms.
    """

    # The unified inbox

    @pages.route("/account", methods=["GET"])
    async def account(self, request: IRequest) -> bytes:
        viewer = await self.requiredViewer(request)
        query = _field(request, b"q")[:200]
        skipText = _field(request, b"skip") or "0"
        beforeText = _field(request, b"before")
        if (not CURSOR.fullmatch(skipText) or int(skipText) > _MAX_SKIP
                or (beforeText and not CURSOR.fullmatch(beforeText))):
            raise PageError(400, "No such page", "Go back to the first page of your inbox.")
        skip = int(skipText)
        before = int(beforeText) if beforeText else None
        owned = await self._store.listAddresses(viewer)
        domains = await self._store.listDomains(viewer)
        nextBefore: int | None
        if query:
            copies, nextBefore = await self._store.searchAccountWindow(
                viewer, query, limit=SEARCH_LIMIT, beforeUid=before, scan=SEARCH_SCAN
            )
            unread = sum(1 for c in copies if not c.read)
        else:
            copies, unread = await self._store.listAccountInbox(
                viewer, limit=PAGE_SIZE + 1, skip=skip, beforeUid=before
            )
            nextBefore = copies[PAGE_SIZE - 1].uid if len(copies) > PAGE_SIZE else None
            copies = copies[:PAGE_SIZE]
        owners = await self._owners(viewer, copies, owned, domains)
        csrf = self._sessions.csrfToken(request)
        rows = [
            messageRow(copy, rowActions(
                messagePath(copy), csrf, copy.savedBy == viewer,
                star=permits(viewer, Action.STAR, owners[copy.inbox], copy.savedBy,
                             self.publicReadable),
                delete=permits(viewer, Action.DELETE, owners[copy.inbox], copy.savedBy,
                               self.publicReadable),
            ))
            for copy in copies
        ]
        content = [
            tags.section(
                tags.h1("Your mail", id="unified-heading"),
                tags.p(
                    "Everything in the addresses you own, your private domains, and the "
                    "mail you starred, newest first.",
                    class_="muted",
                ),
                self._searchForm(query),
                self._summary(query, copies, unread, before, nextBefore),
                self._list(rows, viewer, live=not query and skip == 0 and before is None),
                self._pager(query, skip, before, nextBefore),
                shortcuts(),
                class_="unified",
                **{"aria-labelledby": "unified-heading"},
            ),
            self._quickLinks(owned, domains),
        ]
        title = f"Search: {query}" if query else "Your mail"
        return await self.render(
            request, title, content, viewer, bodyClass="account-page",
            scripts=("account.js",), styles=("account.css",),
        )

    def _searchForm(self, query: str) -> Tag:
        return tags.form(
            tags.label("Search your mail", for_="q"),
            tags.div(
                tags.input(id="q", name="q", type="search", value=query,
                           placeholder="subject, sender or recipient"),
                tags.button("Search", type="submit"),
                tags.a("Clear", href="/account", class_="button secondary") if query else "",
                class_="row",
            ),
            action="/account", method="get", role="search", class_="search",
        )

    def _summary(self, query: str, copies: list[Copy], unread: int, before: int | None,
                 nextBefore: int | None) -> Tag:
        if query:
            count = len(copies)
            text = (f"{count} message{'s' if count != 1 else ''} match “{query}”"
                    + (" in older mail" if before is not None else "")
                    + (" (the newest shown)" if count >= SEARCH_LIMIT else "") + ".")
            if nextBefore is not None and count < SEARCH_LIMIT:
                # The search stopped at its window, not at a full page.
                text += f" Searched {SEARCH_SCAN:,} messages; older mail was not searched."
        else:
            text = f"{unread} unread."
        return tags.p(text, class_="summary", id="summary", role="status",
                      **{"data-unread": str(unread)})

    async def _owners(self, viewer: str, copies: list[Copy], owned: list[OwnedAddress],
                      domains: list[Domain]) -> dict[str, InboxOwner]:
        """
        The owner of each inbox the copies are in, to decide what the
        viewer may do to each row.  The viewer's own addresses and private
        domains are known already; a copy of a private domain is listed
        only if no other account reserved its address, unless the viewer
        starred it.  The rest (mail starred elsewhere) is looked up, one
        read per distinct inbox, at once: a read per row cost 6 ms a page.
        """
        mine = {address.address for address in owned}
        private = {domain.domain for domain in domains if domain.isPrivate}
        owners: dict[str, InboxOwner] = {}
        unknown: set[str] = set()
        for copy in copies:
            if copy.inbox in mine:
                owners[copy.inbox] = InboxOwner(viewer)
            elif copy.inbox.rpartition("@")[2] in private and copy.savedBy != viewer:
                owners.setdefault(copy.inbox, InboxOwner(viewer, implicit=True))
            else:
                unknown.add(copy.inbox)
        inboxes = sorted(unknown)
        found = await gatherResults([self._store.inboxOwner(inbox) for inbox in inboxes])
        owners.update(zip(inboxes, found, strict=True))
        return owners

    def _list(self, rows: list[Tag], viewer: str, live: bool) -> Tag:
        attributes = {"data-live": "1", "data-account": viewer} if live else {}
        return tags.ul(
            rows,
            tags.li("No mail yet." if live else "Nothing found.", class_="empty")
            if not rows else "",
            class_="messages", id="messages",
            **{"aria-label": "Messages", **attributes},
        )

    def _pager(self, query: str, skip: int, before: int | None,
               nextBefore: int | None) -> Tag | str:
        """
        Links to newer and older mail.  Older is a cursor (C{before}, the
        last uid shown): the store starts there, where C{skip} would walk
        past every newer copy.  C{skip} links keep working.
        """
        links: list[Tag] = []
        search = {"q": query} if query else {}
        if before is not None:
            links.append(tags.a("← Newest", href="/account" + (
                "?" + urlencode(search) if search else ""), rel="first"))
        elif skip > 0:
            newer = max(0, skip - PAGE_SIZE)
            links.append(tags.a("← Newer", href="/account" + (f"?skip={newer}" if newer else ""),
                                rel="prev"))
        if nextBefore is not None:
            older = urlencode({**search, "before": nextBefore})
            links.append(tags.a("Search older mail →" if query else "Older →",
                                href=f"/account?{older}", rel="next"))
        if not links:
            return ""
        return tags.nav(links, class_="pager", **{"aria-label": "Pages"})

    def _quickLinks(self, owned: list[OwnedAddress], domains: list[Domain]) -> Tag:
        items: list[Any] = [
            tags.li(tags.a(a.address, href=inboxPath(a.address))) for a in owned
        ]
        return tags.section(
            tags.h2("Your addresses", id="addresses-heading"),
            tags.ul(items, class_="quick") if items else tags.p(
                "You own no address yet. ", tags.a("Reserve one", href=_SETTINGS + "#addresses"),
                " to make its mail private to you.", class_="muted",
            ),
            tags.h2("Your domains") if domains else "",
            tags.ul([
                tags.li(d.domain, " ", tags.span("private" if d.isPrivate else "public",
                                                 class_="muted"))
                for d in domains
            ], class_="quick") if domains else "",
            tags.p(tags.a("Settings, API keys and usage", href=_SETTINGS)),
            class_="links",
            **{"aria-labelledby": "addresses-heading"},
        )

    # Settings

    @pages.route("/account/settings", methods=["GET"])
    async def settings(self, request: IRequest) -> bytes:
        viewer = await self.requiredViewer(request)
        notice = _NOTICES.get(
            (request.getCookie(_NOTICE_COOKIE) or b"").decode("ascii", "replace")
        )
        if request.getCookie(_NOTICE_COOKIE) is not None:
            self._setNotice(request, None)
        return await self._settingsPage(request, viewer, notice=notice)

    async def _settingsPage(
        self, request: IRequest, viewer: str, code: int = 200, notice: str | None = None,
        errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
        newKey: str | None = None,
    ) -> bytes:
        """
        The settings page, with a notice at the top, or an error beside the
        form (C{errors}: section to message) whose fields keep C{values}.
        """
        errors = errors or {}
        values = values or {}
        csrf = self._sessions.csrfToken(request)
        account = await self._store.getAccount(viewer)
        keys = await self._store.listKeys(viewer)
        owned = await self._store.listAddresses(viewer)
        domains = await self._store.listDomains(viewer)
        claim = self._sessions.claim(request)
        content: list[Any] = [tags.h1("Settings")]
        if notice:
            content.append(tags.p(notice, class_="notice", role="status"))
        if newKey is not None:
            content.append(self._newKey(newKey))
        content += [
            self._privateSection(account, csrf, errors.get("private")),
            self._keysSection(keys, claim.keyPrefix if claim else None, csrf,
                              errors.get("keys"), values),
            self._addressesSection(owned, csrf, errors.get("addresses"), values),
            self._domainsSection(domains, csrf, errors.get("domains"), values),
            await self._usageSection(account, owned, domains),
        ]
        return await self.render(
            request, "Settings", content, viewer, code=code, bodyClass="settings-page",
            scripts=("account.js",), styles=("account.css",),
        )

    def _section(self, name: str, title: str, *children: Any) -> Tag:
        return tags.section(
            tags.h2(title, id=f"{name}-heading"), *children,
            id=name, class_="setting", **{"aria-labelledby": f"{name}-heading"},
        )

    def _form(self, action: str, csrf: str, *children: Any, confirm: str | None = None,
              className: str = "") -> Tag:
        form = tags.form(csrfField(csrf), *children, method="post", action=action)
        if className:
            form.attributes["class"] = className
        if confirm:
            form.attributes["data-confirm"] = confirm
        return form

    def _error(self, name: str, error: str | None) -> Tag | str:
        if error is None:
            return ""
        return tags.p(error, class_="error", role="alert", id=f"{name}-error")

    def _privateSection(self, account: Account, csrf: str, error: str | None) -> Tag:
        box = tags.input(type="checkbox", id="capturePrivate", name="capturePrivate", value="1")
        if account.capturePrivate:
            box.attributes["checked"] = "checked"
        return self._section(
            "private", "Privacy",
            self._form(
                "/account/private", csrf,
                tags.div(box, tags.label("Make captured email private", for_="capturePrivate"),
                         class_="check"),
                tags.p("Mail this account sends through Capture is starred for it, so only "
                       "this account can read it, whichever inbox it lands in.",
                       class_="muted"),
                tags.button("Save", type="submit"),
            ),
            self._error("private", error),
        )

    def _newKey(self, key: str) -> Tag:
        return tags.section(
            tags.h2("Your new API key", id="new-key-heading"),
            tags.p("Copy it now: it is shown this once and cannot be shown again."),
            tags.div(
                tags.input(type="text", id="new-key", value=key, readonly="readonly",
                           spellcheck="false", **{"aria-labelledby": "new-key-heading"}),
                tags.button("Copy", type="button", class_="secondary copy",
                            **{"data-copy": "new-key"}),
                class_="row",
            ),
            class_="new-key", role="status",
        )

    def _keysSection(self, keys: list[ApiKeyInfo], current: str | None, csrf: str,
                     error: str | None, values: dict[str, str]) -> Tag:
        rows = []
        for info in sorted(keys, key=lambda k: (k.revoked is not None, -k.created)):
            state: Any
            if info.revoked is not None:
                state = ["revoked ", _when(info.revoked)]
            else:
                state = self._form(
                    "/account/keys/revoke", csrf,
                    tags.input(type="hidden", name="prefix", value=info.prefix),
                    tags.button("Revoke", type="submit", class_="danger"),
                    confirm=f"Revoke the key {info.prefix}…? Programs using it stop working."
                    + (" You are signed in with it: you will be signed out."
                       if info.prefix == current else ""),
                    className="inline",
                )
            rows.append(tags.tr(
                tags.td(tags.code(info.prefix + "…")),
                tags.td(info.label or tags.span("no label", class_="muted"),
                        " (this session)" if info.prefix == current else ""),
                tags.td(_when(info.created)),
                tags.td(state),
                class_="revoked" if info.revoked is not None else "live",
            ))
        label = tags.input(type="text", id="key-label", name="label", maxlength=str(_MAX_LABEL),
                           value=values.get("label", ""), placeholder="CI, staging…")
        return self._section(
            "keys", "API keys",
            tags.div(tags.table(
                tags.thead(tags.tr(tags.th("Key"), tags.th("Label"), tags.th("Created"),
                                   tags.th("State"))),
                tags.tbody(rows),
                class_="keys",
            ), class_="table-scroll"),
            self._form(
                "/account/keys", csrf,
                tags.label("Label of a new key", for_="key-label"),
                tags.div(label, tags.button("Create a key", type="submit"), class_="row"),
            ),
            self._error("keys", error),
        )

    def _addressesSection(self, owned: list[OwnedAddress], csrf: str, error: str | None,
                          values: dict[str, str]) -> Tag:
        items = []
        for n, address in enumerate(owned):
            ws = tags.input(type="checkbox", name="enablews", value="1", id=f"ws-{n}")
            if address.enablews:
                ws.attributes["checked"] = "checked"
            items.append(tags.li(
                tags.h3(tags.a(address.address, href=inboxPath(address.address))),
                self._form(
                    "/account/addresses/update", csrf,
                    tags.input(type="hidden", name="address", value=address.address),
                    tags.label("Webhook URL", for_=f"webhook-{n}"),
                    tags.input(type="url", name="webhook", id=f"webhook-{n}",
                               value=address.webhook or "", placeholder="https://…"),
                    tags.div(ws, tags.label("Send its mail to websocket clients",
                                            for_=f"ws-{n}"), class_="check"),
                    tags.button("Save", type="submit", class_="secondary"),
                    className="address-settings",
                ),
                self._form(
                    "/account/addresses/release", csrf,
                    tags.input(type="hidden", name="address", value=address.address),
                    tags.div(
                        tags.input(type="checkbox", name="deleteMessages", value="1",
                                   id=f"delete-{n}"),
                        tags.label("and delete its messages (starred mail stays)",
                                   for_=f"delete-{n}"),
                        class_="check",
                    ),
                    tags.button("Release", type="submit", class_="danger"),
                    confirm=f"Release {address.address}? Its mail becomes public again "
                            "unless you delete it.",
                    className="release",
                ),
                class_="owned",
            ))
        field = tags.input(type="text", inputmode="email", id="reserve-address", name="address",
                           value=values.get("address", ""), required="required",
                           spellcheck="false", placeholder="name@example.com")
        if error is not None:
            field.attributes["aria-invalid"] = "true"
            field.attributes["aria-describedby"] = "addresses-error"
        return self._section(
            "addresses", "Owned addresses",
            tags.p("An address you own is private: only this account reads its mail.",
                   class_="muted"),
            tags.ul(items, class_="owned-list") if items else tags.p("None yet.",
                                                                     class_="muted"),
            self._form(
                "/account/addresses", csrf,
                tags.label("Reserve an address", for_="reserve-address"),
                tags.div(field, tags.button("Reserve", type="submit"), class_="row"),
            ),
            self._error("addresses", error),
        )

    def _domainsSection(self, domains: list[Domain], csrf: str, error: str | None,
                        values: dict[str, str]) -> Tag:
        rows = []
        for domain in domains:
            rows.append(tags.li(
                tags.strong(domain.domain), " ",
                tags.span("private" if domain.isPrivate else "public", class_="muted state"),
                " ",
                self._form(
                    "/account/domains/privacy", csrf,
                    tags.input(type="hidden", name="domain", value=domain.domain),
                    tags.input(type="hidden", name="private",
                               value="0" if domain.isPrivate else "1"),
                    tags.button("Make public" if domain.isPrivate else "Make private",
                                type="submit", class_="secondary"),
                    className="inline",
                ),
                " ",
                self._form(
                    "/account/domains/remove", csrf,
                    tags.input(type="hidden", name="domain", value=domain.domain),
                    tags.button("Remove", type="submit", class_="danger"),
                    confirm=f"Remove {domain.domain}? Its mail stays, public from now on.",
                    className="inline",
                ),
                class_="domain",
            ))
        field = tags.input(type="text", id="add-domain", name="domain", required="required",
                           value=values.get("domain", ""), spellcheck="false",
                           placeholder="test.example.com")
        if error is not None:
            field.attributes["aria-invalid"] = "true"
            field.attributes["aria-describedby"] = "domains-error"
        private = tags.input(type="checkbox", id="domain-private", name="private", value="1",
                             checked="checked")
        return self._section(
            "domains", "Custom domains",
            tags.p("Every address in a private domain is yours; a public one only groups "
                   "its mail for you.", class_="muted"),
            tags.ul(rows, class_="domain-list") if rows else tags.p("None yet.", class_="muted"),
            self._form(
                "/account/domains", csrf,
                tags.label("Add a domain", for_="add-domain"),
                tags.div(field, tags.button("Add", type="submit"), class_="row"),
                tags.div(private, tags.label("Private", for_="domain-private"), class_="check"),
            ),
            self._error("domains", error),
        )

    async def _usageSection(self, account: Account, owned: list[OwnedAddress],
                            domains: list[Domain]) -> Tag:
        month = time.strftime("%Y-%m", time.gmtime())
        ops = await self._store.usage(account.name, month)
        stats = await self._store.accountStats(account.name)
        rows = [
            ("Messages stored", f"{stats.storedMessages:,}"),
            ("Starred messages", f"{stats.starredMessages:,}"),
            ("Storage", humanSize(stats.inboxBytes)),
            ("API calls this month", f"{ops:,}"),
            ("Message limit", _limitText(account.effectiveLimit(self.messageLimit))
             + (" (the server's default)" if account.messageLimit is None else "")),
            ("Owned addresses", str(len(owned))),
            ("Custom domains", str(len(domains))),
        ]
        return self._section(
            "usage", f"Usage in {month}",
            tags.dl([[tags.dt(k), tags.dd(v)] for k, v in rows], class_="settings"),
        )

    # The forms

    def _setNotice(self, request: IRequest, name: str | None) -> None:
        # IRequest's addCookie does not declare httpOnly and sameSite.
        cast(Request, request).addCookie(
            _NOTICE_COOKIE, (name or "").encode("ascii"), path=b"/account", httpOnly=True,
            sameSite="strict", secure=self._sessions.secure or request.isSecure(),
            max_age=b"60" if name else b"0",
        )

    def _done(self, request: IRequest, notice: str) -> bytes:
        self._setNotice(request, notice)
        return self.redirect(request, _SETTINGS)

    async def _refused(self, request: IRequest, viewer: str, section: str, error: ApiError,
                       values: dict[str, str] | None = None) -> bytes:
        message = error.message
        if error.validationErrors:
            message += " " + "; ".join(error.validationErrors) + "."
        return await self._settingsPage(
            request, viewer, code=400, errors={section: message}, values=values
        )

    @pages.route("/account/private", methods=["POST"])
    async def setPrivate(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        viewer = await self.requiredViewer(request)
        on = _checked(request, b"capturePrivate")
        await self._store.setAccountSettings(viewer, capturePrivate=on)
        return self._done(request, "private-on" if on else "private-off")

    @pages.route("/account/keys", methods=["POST"])
    async def createKey(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        viewer = await self.requiredViewer(request)
        label = _field(request, b"label")
        if len(label) > _MAX_LABEL or any(ord(c) < 32 or ord(c) == 127 for c in label):
            return await self._refused(request, viewer, "keys", ApiError(
                400, f"A label has at most {_MAX_LABEL} characters, none of them control "
                     "characters."), {"label": label[:_MAX_LABEL]})
        key = await self._store.createKey(viewer, label)
        return await self._settingsPage(request, viewer, newKey=key)

    @pages.route("/account/keys/revoke", methods=["POST"])
    async def revokeKey(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        viewer = await self.requiredViewer(request)
        prefix = _field(request, b"prefix")
        live = [k.prefix for k in await self._store.listKeys(viewer) if k.revoked is None]
        if prefix not in live:
            return await self._refused(request, viewer, "keys",
                                       ApiError(400, "There is no such live key."))
        if len(live) == 1:
            # Revoking the last key would lock the account out of
            # everything but the admin command.
            return await self._refused(request, viewer, "keys", ApiError(
                400, "That is the account's only live key: create another one first."))
        try:
            await self._store.revokeKey(viewer, prefix)
        except (NotFound, Conflict):
            return await self._refused(request, viewer, "keys",
                                       ApiError(400, "There is no such live key."))
        claim = self._sessions.claim(request)
        if claim is not None and claim.keyPrefix == prefix:
            self._sessions.signOut(request)
            return self.redirect(request, "/")
        return self._done(request, "key-revoked")

    @pages.route("/account/addresses", methods=["POST"])
    async def reserveAddress(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        viewer = await self.requiredViewer(request)
        address = _field(request, b"address")
        try:
            inbox = accountrules.inboxOf(address)
            await accountrules.reserve(self._store, viewer, inbox, {})
        except ApiError as error:
            return await self._refused(request, viewer, "addresses", error,
                                       {"address": address[:320]})
        return self._done(request, "address-reserved")

    @pages.route("/account/addresses/update", methods=["POST"])
    async def updateAddress(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        viewer = await self.requiredViewer(request)
        try:
            inbox = accountrules.inboxOf(_field(request, b"address"))
            settings = accountrules.addressSettings({
                "webhook": _field(request, b"webhook") or None,
                "enablews": _checked(request, b"enablews"),
            })
            await accountrules.update(self._store, viewer, inbox, settings)
        except ApiError as error:
            return await self._refused(request, viewer, "addresses", error)
        return self._done(request, "address-updated")

    @pages.route("/account/addresses/release", methods=["POST"])
    async def releaseAddress(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        viewer = await self.requiredViewer(request)
        try:
            inbox = accountrules.inboxOf(_field(request, b"address"))
            await accountrules.release(
                self._store, viewer, inbox, _checked(request, b"deleteMessages")
            )
        except ApiError as error:
            return await self._refused(request, viewer, "addresses", error)
        return self._done(request, "address-released")

    @pages.route("/account/domains", methods=["POST"])
    async def addDomain(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        viewer = await self.requiredViewer(request)
        domain = _field(request, b"domain")
        try:
            name = accountrules.domainName(domain)
            await accountrules.addDomain(self._store, viewer, name, _checked(request, b"private"))
        except ApiError as error:
            return await self._refused(request, viewer, "domains", error,
                                       {"domain": domain[:255]})
        return self._done(request, "domain-added")

    @pages.route("/account/domains/remove", methods=["POST"])
    async def removeDomain(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        viewer = await self.requiredViewer(request)
        try:
            name = accountrules.domainName(_field(request, b"domain"))
            await accountrules.removeDomain(self._store, viewer, name)
        except ApiError as error:
            return await self._refused(request, viewer, "domains", error)
        return self._done(request, "domain-removed")

    @pages.route("/account/domains/privacy", methods=["POST"])
    async def domainPrivacy(self, request: IRequest) -> bytes:
        self.checkCsrf(request)
        viewer = await self.requiredViewer(request)
        try:
            name = accountrules.domainName(_field(request, b"domain"))
            await accountrules.setDomainPrivacy(
                self._store, viewer, name, _checked(request, b"private")
            )
        except ApiError as error:
            return await self._refused(request, viewer, "domains", error)
        return self._done(request, "domain-updated")
