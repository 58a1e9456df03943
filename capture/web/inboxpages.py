# -*- test-case-name: tests.test_inboxpage -*-
"""
The inbox page (C{/inbox/<address>}): an inbox's mail newest first, paged
by a cursor, searchable, live (its script listens to the inbox's event
stream), with delete, star and purge; and the purge form's route.

Who may see the page is decided exactly as for the API's listing (M1):
L{capture.access.visibility} of the viewer and the inbox's owner.  An
inbox the viewer may not list is the one L{notFound} page, which says
nothing of the inbox, not even whether it has mail.
"""

from __future__ import annotations

import datetime
import re
import time
from typing import Any
from urllib.parse import urlencode

from twisted.web.iweb import IRequest
from twisted.web.template import Tag, tags

from capture.access import Action, Visibility, permits, visibility
from capture.addresses import inboxOf
from capture.emailmessage import isoTime
from capture.store.model import Copy, InboxOwner
from capture.web.autoconfig import MailSettings
from capture.web.homepage import inboxPath
from capture.web.pagebase import PageBase, PageError, csrfField, notFound, pages

# Rows per page.
PAGE_SIZE = 50
# What a search takes of the query: enough for any real search, and a
# bound on the work one request can ask for.
_MAX_QUERY = 200
_MAX_WORDS = 8
# A paging cursor: a copy's uid (ASCII digits, within SQLite's integers).
CURSOR = re.compile(r"[0-9]{1,18}")


def _arg(request: IRequest, name: bytes) -> str:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else ""


def humanSize(octets: int) -> str:
    """
    A size as people read it (the same steps as C{Capture.size} in
    C{capture.js}, which formats the rows that arrive live).
    """
    if octets < 1000:
        return f"{octets} B"
    if octets < 1_000_000:
        return f"{octets / 1000:.{1 if octets < 10_000 else 0}f} KB"
    return f"{octets / 1_000_000:.1f} MB"


def shortTime(received: int, now: float) -> str:
    """
    A received time in few characters, in UTC (the page's script shows it
    in the reader's own time zone): the time today, the day this year, the
    date before.
    """
    when = datetime.datetime.fromtimestamp(received / 1000, datetime.UTC)
    today = datetime.datetime.fromtimestamp(now, datetime.UTC)
    if when.date() == today.date():
        return when.strftime("%H:%M UTC")
    if when.year == today.year:
        return when.strftime("%d %b").lstrip("0")
    return when.strftime("%d %b %Y").lstrip("0")


def sender(copy: Copy) -> str:
    """
    Who a message is from, as a list shows it: the first From name, else
    its address, else the envelope sender.
    """
    message = copy.message
    if message.fromAddresses:
        first = message.fromAddresses[0]
        return first.name or first.address
    return message.mailFrom or "(unknown sender)"


def searchWords(query: str) -> list[str]:
    """
    The words of a search, bounded in length and number.
    """
    return query[:_MAX_QUERY].split()[:_MAX_WORDS]


def smtpEndpoint(settings: MailSettings | None) -> tuple[str, int | None]:
    """
    The host and STARTTLS port an application sends mail to.
    """
    if settings is None:
        return "localhost", None
    portOf = settings.ports.get("smtp") or settings.ports.get("smtps")
    return settings.hostname, portOf() if portOf is not None else None


def shortcuts() -> Tag:
    """
    The keys of a message list (C{Capture.messageList} in C{capture.js}),
    folded away under a summary.
    """
    keys = [("j or ↓", "next message"), ("k or ↑", "previous message"),
            ("Enter", "open"), ("Delete or #", "delete"), ("/", "search")]
    return tags.details(
        tags.summary("Keyboard shortcuts"),
        tags.dl([[tags.dt(tags.kbd(key)), tags.dd(what)] for key, what in keys]),
        class_="shortcuts",
    )


def rowActions(href: str, csrf: str, starred: bool, star: bool, delete: bool) -> Tag:
    """
    A list row's Star and Delete forms (for the message at C{href}), each
    only when the viewer may: plain forms that work without script, which
    C{Capture.messageList} (C{capture.js}) sends with fetch instead, and
    C{Capture.rowActions} builds alike for rows that arrive live.
    """
    actions = tags.div(class_="actions")
    if star:
        actions(tags.form(
            csrfField(csrf),
            tags.input(type="hidden", name="starred", value="0" if starred else "1"),
            tags.button("Unstar" if starred else "Star", type="submit",
                        class_="secondary star-button",
                        **{"aria-pressed": "true" if starred else "false"}),
            method="post", action=f"{href}/star", class_="inline star-form",
        ))
    if delete:
        actions(tags.form(
            csrfField(csrf),
            tags.button("Delete", type="submit", class_="danger delete-button"),
            method="post", action=f"{href}/delete", class_="inline delete-form",
        ))
    return actions


class InboxPages(PageBase):
    """
    C{GET /inbox/<address>} and C{POST /inbox/<address>/purge}.
    """

    async def _inboxAccess(
        self, request: IRequest, address: str
    ) -> tuple[str, str | None, InboxOwner, Visibility]:
        """
        The inbox of C{address}, who is looking, its owner, and what the
        viewer may list of it.

        @raise PageError: 400 for what is not an address; the 404 page for
            an inbox the viewer may not list.
        """
        inbox = inboxOf(address)
        if inbox is None:
            raise PageError(400, "Not an email address",
                            f"{address!r} is not an email address; try one like "
                            "anything@example.com.")
        viewer = await self.viewer(request)
        owner = await self._store.inboxOwner(inbox)
        visible = visibility(viewer, owner, self.publicReadable)
        if visible is None:
            raise notFound()
        return inbox, viewer, owner, visible

    @pages.route("/inbox/<address>", methods=["GET"])
    async def inboxPage(self, request: IRequest, address: str) -> bytes:
        canonical = inboxOf(address)
        if canonical is not None and canonical != address:
            # One URL per inbox: Alice+Tag@Example.com reads alice@example.com,
            # info@xn--exmple-cua.test reads info@exämple.test.
            query = request.uri.partition(b"?")[2].decode("ascii", "replace")
            return self.redirect(
                request, inboxPath(canonical) + ("?" + query if query else "")
            )
        inbox, viewer, owner, visible = await self._inboxAccess(request, address)
        beforeText = _arg(request, b"before")
        if beforeText and not CURSOR.fullmatch(beforeText):
            raise PageError(400, "That page link is broken",
                            "Go back to the newest mail and page from there.")
        before = int(beforeText) if beforeText else None
        query = _arg(request, b"q").strip()[:_MAX_QUERY]
        words = searchWords(query)
        nextBefore: int | None
        if words:
            copies, nextBefore = await self._store.searchInbox(
                inbox, visible, words, limit=PAGE_SIZE, beforeUid=before
            )
            count = None
        else:
            listed = await self._store.listInbox(
                inbox, visible, limit=PAGE_SIZE + 1, beforeUid=before
            )
            copies = listed[:PAGE_SIZE]
            nextBefore = copies[-1].uid if len(listed) > PAGE_SIZE else None
            count = await self._store.countInbox(inbox, visible)
        content = self._content(
            inbox, viewer, owner, copies, count, query, before, nextBefore,
            self._sessions.csrfToken(request),
        )
        return await self.render(
            request, inbox, content, viewer, bodyClass="inbox-page",
            scripts=("inbox.js",), styles=("inbox.css",),
        )

    def _content(
        self, inbox: str, viewer: str | None, owner: InboxOwner, copies: list[Copy],
        count: int | None, query: str, before: int | None, nextBefore: int | None, csrf: str,
    ) -> list[Tag]:
        path = inboxPath(inbox)
        mayDelete = permits(viewer, Action.DELETE, owner, None, self.publicReadable)
        mayStar = viewer is not None and permits(viewer, Action.STAR, owner, None,
                                                 self.publicReadable)
        mayPurge = permits(viewer, Action.PURGE, owner, None, self.publicReadable)
        if count is None:
            summary = f"Messages matching “{query}”"
        else:
            summary = f"{count} message{'' if count == 1 else 's'}"
        heading = tags.header(
            tags.h1(inbox, id="inbox-heading", class_="address"),
            tags.p(
                tags.span(summary, id="inbox-count"),
                " · private, yours" if owner.account is not None else " · public inbox",
                class_="muted",
            ),
            tags.p(
                tags.span("Connecting…", id="live-status", role="status",
                          **{"aria-live": "polite", "data-state": "off"}),
                class_="live",
            ),
            class_="inbox-head",
        )
        search = tags.form(
            tags.label("Search this inbox", for_="q", class_="visually-hidden"),
            tags.div(
                tags.input(id="q", name="q", type="search", value=query,
                           placeholder="Search subject, sender, recipients, text",
                           maxlength=str(_MAX_QUERY), autocomplete="off",
                           spellcheck="false"),
                tags.button("Search", type="submit", class_="secondary"),
                tags.a("Clear", href=path, class_="button secondary") if query else "",
                class_="row",
            ),
            action=path, method="get", role="search", class_="inbox-search",
        )
        rows = [self._row(copy, path, viewer, owner, csrf, mayStar) for copy in copies]
        attributes = {
            "data-inbox": inbox,
            "data-live": "" if (before is None and not query) else "paused",
            "data-delete": "1" if mayDelete else "",
            "data-star": "1" if mayStar else "",
            "aria-labelledby": "list-heading",
        }
        listing: Any
        if rows:
            listing = tags.ol(rows, id="messages", class_="messages", **attributes)
        else:
            listing = [tags.ol(id="messages", class_="messages", hidden="hidden", **attributes),
                       self._empty(inbox, query)]
        paging = self._paging(path, query, before, nextBefore)
        parts = [
            tags.section(heading, search, class_="inbox-top", **{"aria-label": "Inbox"}),
            tags.section(
                tags.h2("Messages" if not query else "Search results", id="list-heading",
                        class_="visually-hidden"),
                listing, paging,
                class_="inbox-list",
            ),
            shortcuts(),
        ]
        if mayPurge:
            parts.append(self._purge(path, csrf))
        return parts

    def _row(self, copy: Copy, path: str, viewer: str | None, owner: InboxOwner, csrf: str,
             mayStar: bool) -> Tag:
        message = copy.message
        unread = not copy.read
        starred = copy.savedBy is not None
        href = f"{path}/{copy.id}"
        marks: list[Any] = []
        if message.attachments:
            count = len(message.attachments)
            label = f"{count} attachment{'' if count == 1 else 's'}"
            marks.append(tags.span("📎", class_="mark attach", role="img",
                                   title=label, **{"aria-label": label}))
        if starred:
            marks.append(tags.span("★", class_="mark star", role="img", title="Starred",
                                   **{"aria-label": "Starred"}))
        link = tags.a(
            tags.span(sender(copy), class_="from"),
            tags.span(
                tags.span("unread, ", class_="visually-hidden") if unread else "",
                message.subject or "(no subject)", class_="subject",
            ),
            tags.span(marks, class_="marks"),
            tags.time(shortTime(message.received, time.time()),
                      datetime=isoTime(message.received)),
            tags.span(humanSize(message.size), class_="size"),
            href=href, class_="open",
        )
        actions = rowActions(
            href, csrf, starred,
            star=mayStar and permits(viewer, Action.STAR, owner, copy.savedBy,
                                     self.publicReadable),
            delete=permits(viewer, Action.DELETE, owner, copy.savedBy, self.publicReadable),
        )
        return tags.li(
            link, actions,
            class_="message" + (" unread" if unread else "") + (" starred" if starred else ""),
            **{"data-id": copy.id},
        )

    def _empty(self, inbox: str, query: str) -> Tag:
        if query:
            return tags.div(
                tags.p(tags.strong("No messages match."), " Try fewer or shorter words."),
                class_="empty",
            )
        host, port = smtpEndpoint(self._mailSettings)
        where: list[Any] = [tags.code(host)]
        if port is not None:
            where += [" port ", tags.code(str(port))]
        return tags.div(
            tags.p(tags.strong("No mail here yet.")),
            tags.p("Mail sent to ", tags.code(inbox),
                   " will appear here as it arrives, without reloading."),
            tags.p("Send some from your application through SMTP at ", where,
                   ", addressed to this inbox."),
            class_="empty",
        )

    @staticmethod
    def _paging(path: str, query: str, before: int | None, nextBefore: int | None) -> Tag:
        links = []
        if before is not None:
            links.append(tags.a("Newest", href=path + ("?" + urlencode({"q": query})
                                                      if query else ""), rel="first"))
        if nextBefore is not None:
            fields = {"q": query} if query else {}
            links.append(tags.a("Older", href=f"{path}?{urlencode({**fields, 'before': nextBefore})}",
                                rel="next"))
        return tags.nav(links, class_="paging", **{"aria-label": "Pages"})

    @staticmethod
    def _purge(path: str, csrf: str) -> Tag:
        return tags.section(
            tags.h2("Purge this inbox", id="purge-heading"),
            tags.p("Deletes every message here except starred ones. It cannot be undone.",
                   class_="muted"),
            tags.form(
                csrfField(csrf),
                tags.button("Purge inbox", type="submit", class_="danger"),
                method="post", action=f"{path}/purge", class_="purge-form",
            ),
            class_="purge", **{"aria-labelledby": "purge-heading"},
        )

    @pages.route("/inbox/<address>/purge", methods=["POST"])
    async def purge(self, request: IRequest, address: str) -> bytes:
        """
        Delete every unstarred copy of an inbox the viewer owns (Mailsac's
        purge), then show the inbox.
        """
        self.checkCsrf(request)
        inbox, viewer, owner, _ = await self._inboxAccess(request, address)
        if not permits(viewer, Action.PURGE, owner, None, self.publicReadable):
            raise PageError(403, "Only the owner can purge an inbox",
                            "Public inboxes are nobody's to purge; delete messages one by one.")
        await self._store.purgeInbox(inbox)
        return self.redirect(request, inboxPath(inbox))
