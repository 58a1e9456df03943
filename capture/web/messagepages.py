# -*- test-case-name: tests.test_messagepage -*-
"""
The message page (C{/inbox/<address>/<messageId>}) and what it is made of:
the HTML body for its sandboxed frame, the raw source, attachments, and the
delete and star forms.

Every route finds the copy exactly as the API does: by its Mailsac C{_id},
in the inbox its path names, and only if L{capture.access.permits} lets the
viewer read it; anything else is the one "nothing here" page, so another
account's message looks like one that does not exist.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from twisted.web.iweb import IRequest
from twisted.web.template import Tag, tags

from capture.access import Action, permits
from capture.addresses import inboxOf
from capture.emailmessage import isoTime
from capture.store.errors import NotFound
from capture.store.model import Bodies, Copy, InboxOwner
from capture.web.homepage import inboxPath
from capture.web.pagebase import PageBase, PageError, csrfField, notFound, pages, securityHeaders
from capture.web.parts import attachmentData, inlineImages, safeFilename, textOf
from capture.web.responses import UNTRUSTED_POLICY, ApiError, jsonBody
from capture.web.safehtml import SafeHTML, bodyPolicy, clean

# Attachment types shown inline (thumbnails, or opened in the browser):
# raster images only, which run nothing; everything else is a download.
_INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# The raw source shown in the page, at most (the rest is in the download).
_RAW_SHOWN = 256 * 1024
_VIEWS = ("html", "text", "headers", "raw")
_MAX_ID = 64


def messagePath(inbox: str, messageId: str) -> str:
    """
    The path of a message's page.
    """
    return inboxPath(inbox) + "/" + quote(messageId, safe="")


def _size(octets: int) -> str:
    """
    A human size, as C{Capture.size} in C{capture.js} writes it.
    """
    if octets < 1000:
        return f"{octets} B"
    if octets < 1_000_000:
        return f"{octets / 1000:.{1 if octets < 10_000 else 0}f} KB"
    return f"{octets / 1_000_000:.1f} MB"


def _addresses(found: Any) -> str:
    return ", ".join(f"{a.name} <{a.address}>" if a.name else a.address for a in found)


def _wantsJSON(request: IRequest) -> bool:
    accept = request.getHeader(b"accept") or b""
    return b"application/json" in accept


def _query(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


class MessagePages(PageBase):
    """
    C{/inbox/<address>/<messageId>} and its C{/body}, C{/raw},
    C{/attachments/<index>}, C{/delete} and C{/star}.
    """

    async def _readable(
        self, request: IRequest, address: str, messageId: str
    ) -> tuple[Copy, str | None, InboxOwner]:
        """
        The copy C{messageId} of inbox C{address}, its viewer and the
        inbox's owner, if the viewer may read it.

        @raise PageError: The 404 page for a bad address or id, a copy of
            another inbox, and a copy the viewer may not read.
        """
        inbox = inboxOf(address)
        if inbox is None or not messageId or len(messageId) > _MAX_ID:
            raise notFound()
        viewer = await self.viewer(request)
        try:
            copy = await self._store.getCopy(messageId)
        except NotFound:
            raise notFound() from None
        if copy.inbox != inbox:
            raise notFound()
        owner = await self._store.inboxOwner(inbox)
        if not permits(viewer, Action.READ, owner, copy.savedBy, self.publicReadable):
            raise notFound()
        return copy, viewer, owner

    async def _changeable(
        self, request: IRequest, address: str, messageId: str, action: Any
    ) -> tuple[Copy, str | None]:
        """
        L{_readable}, and the viewer may also do C{action} to the copy.

        @raise PageError: 401 for no viewer, 403 for a viewer who may read
            the copy but not do that to it.
        """
        copy, viewer, owner = await self._readable(request, address, messageId)
        if not permits(viewer, action, owner, copy.savedBy, self.publicReadable):
            if viewer is None:
                raise PageError(401, "Sign in first", "Sign in with an API key to do that.")
            raise PageError(403, "Not yours to change",
                            "Only the owner of this inbox may do that.")
        return copy, viewer

    async def _change(
        self, request: IRequest, change: Callable[[], Awaitable[str]]
    ) -> bytes:
        """
        Run a state change from a form or from a page's script: after the
        CSRF check, C{change()} (returning the path to go to next).  A
        script (C{Accept: application/json}) gets C{{"ok": true}} or the
        error as JSON; a form, a 303 or the error page.
        """
        wantsJSON = _wantsJSON(request)
        try:
            self.checkCsrf(request)
            location = await change()
        except PageError as error:
            if not wantsJSON:
                raise
            return jsonBody(request, ApiError(error.code, error.title).body(), error.code)
        if wantsJSON:
            return jsonBody(request, {"ok": True})
        return self.redirect(request, location)

    # The page

    @pages.route("/inbox/<address>/<messageId>", methods=["GET"])
    async def message(self, request: IRequest, address: str, messageId: str) -> bytes:
        """
        The message page.  Opening it marks the copy read, for a viewer who
        may change it (one who may delete a copy may surely mark it read).
        Klein answers HEAD with this route too: a HEAD (a link checker, a
        preview fetcher) has not opened the message, so it marks nothing.
        """
        copy, viewer, owner = await self._readable(request, address, messageId)
        if request.method == b"GET" and not copy.read and permits(viewer, Action.DELETE, owner, copy.savedBy,
                                     self.publicReadable):
            copy = await self._store.setCopyState(copy, read=True)
        bodies = await self._store.getBodies(copy)
        raw = await self._store.getRaw(copy)
        view = _query(request, b"view")
        if view not in _VIEWS or (view == "html" and bodies.html is None):
            view = "html" if bodies.html is not None else "text"
        remote = _query(request, b"remote") == "1"
        safe = clean(bodies.html) if bodies.html is not None else None
        csrf = self._sessions.csrfToken(request)
        base = messagePath(copy.inbox, copy.id)
        content = tags.article(
            tags.p(tags.a("← ", copy.inbox, href=inboxPath(copy.inbox), class_="back",
                          **{"aria-keyshortcuts": "u"}), class_="crumbs"),
            self._head(copy, viewer, owner, csrf, base),
            self._tabs(copy, bodies, await textOf(bodies), safe, raw, view, remote, base),
            self._links(copy, bodies, safe),
            self._attachments(copy, base),
            class_="message",
            **{"aria-labelledby": "message-subject", "data-inbox": inboxPath(copy.inbox),
               "data-body": base + "/body"},
        )
        title = copy.message.subject or "(no subject)"
        return await self.render(
            request, title, content, viewer, bodyClass="message-page",
            scripts=("message.js",), styles=("message.css",),
        )

    def _head(self, copy: Copy, viewer: str | None, owner: InboxOwner, csrf: str,
              base: str) -> Tag:
        message = copy.message
        rows: list[tuple[str, Any]] = [("From", _addresses(message.fromAddresses) or "—")]
        rows.append(("To", _addresses(message.to) or copy.originalInbox))
        if message.cc:
            rows.append(("Cc", _addresses(message.cc)))
        received = isoTime(message.received)
        rows.append(("Received", tags.time(received.replace("T", " ")[:19] + " UTC",
                                           datetime=received)))
        if message.date:
            rows.append(("Date", message.date))
        rows.append(("Size", _size(message.size)))
        if copy.savedBy is not None:
            rows.append(("Starred", "by you" if copy.savedBy == viewer else "yes"))
        actions = tags.div(class_="row actions")
        if permits(viewer, Action.DELETE, owner, copy.savedBy, self.publicReadable):
            actions(tags.form(
                csrfField(csrf),
                tags.button("Delete", type="submit", class_="danger",
                            **{"aria-keyshortcuts": "Delete"}),
                method="post", action=base + "/delete", class_="inline", id="delete-form",
            ))
        if permits(viewer, Action.STAR, owner, copy.savedBy, self.publicReadable):
            starred = copy.savedBy == viewer
            actions(tags.form(
                csrfField(csrf),
                tags.input(type="hidden", name="starred", value="0" if starred else "1"),
                tags.button(tags.span("★" if starred else "☆", **{"aria-hidden": "true"}),
                            " Starred" if starred else " Star", type="submit",
                            class_="secondary", title="Unstar" if starred else "Star",
                            **{"aria-pressed": "true" if starred else "false",
                               "aria-keyshortcuts": "s"}),
                method="post", action=base + "/star", class_="inline", id="star-form",
            ))
        return tags.header(
            tags.h1(message.subject or "(no subject)", id="message-subject"),
            tags.dl([[tags.dt(name), tags.dd(value)] for name, value in rows],
                    class_="message-meta"),
            actions,
            class_="message-head",
        )

    def _tabs(self, copy: Copy, bodies: Bodies, text: str, safe: SafeHTML | None, raw: bytes,
              view: str, remote: bool, base: str) -> list[Tag]:
        panels: list[tuple[str, str, Any]] = []
        if bodies.html is not None:
            blocked = not remote and safe is not None and safe.remoteBlocked
            panels.append(("html", "HTML", self._htmlPanel(base, remote, blocked)))
        panels.append(("text", "Text", tags.pre(text or "(no text)", class_="text-body")))
        panels.append(("headers", "Headers", tags.div(tags.table(
            tags.thead(tags.tr(tags.th("Name", scope="col"), tags.th("Value", scope="col"))),
            tags.tbody([tags.tr(tags.th(name, scope="row"), tags.td(value))
                        for name, value in bodies.headers]),
            class_="headers",
        ), class_="scroll")))
        shown = raw[:_RAW_SHOWN].decode("utf-8", "replace")
        rawPanel = [tags.p(tags.a("Download .eml", href=base + "/raw", download=f"{copy.id}.eml",
                                  class_="button secondary"))]
        if len(raw) > _RAW_SHOWN:
            rawPanel.append(tags.p(f"The first {_size(_RAW_SHOWN)} of {_size(len(raw))}; "
                                   "download the message for all of it.", class_="muted"))
        rawPanel.append(tags.pre(shown, class_="raw"))
        panels.append(("raw", "Raw", rawPanel))
        tablist = tags.div(role="tablist", class_="tabs", **{"aria-label": "Message views"})
        sections = []
        for name, label, panel in panels:
            selected = name == view
            href = f"?view={name}" + ("&remote=1" if remote and name == "html" else "")
            tablist(tags.a(
                label, href=href, role="tab", id=f"tab-{name}",
                tabindex="0" if selected else "-1",
                **{"aria-selected": "true" if selected else "false",
                   "aria-controls": f"panel-{name}", "data-view": name},
            ))
            section = tags.section(
                panel, role="tabpanel", id=f"panel-{name}", tabindex="0",
                class_=f"panel panel-{name}", **{"aria-labelledby": f"tab-{name}"},
            )
            if not selected:
                section.attributes["hidden"] = "hidden"
            sections.append(section)
        return [tablist, *sections]

    def _htmlPanel(self, base: str, remote: bool, blocked: bool) -> list[Tag | str]:
        """
        The body frame, and the notice that remote content is blocked when
        the message has any (images, styles, links).
        """
        notice: Tag | str = ""
        if remote:
            notice = tags.p("Remote content is shown.", class_="muted remote-notice",
                            id="remote-notice")
        elif blocked:
            notice = tags.p(
                "Remote content is blocked. ",
                tags.a("Load remote content", href="?view=html&remote=1", id="load-remote",
                       class_="button secondary"),
                class_="remote-notice", id="remote-notice",
            )
        frame = tags.iframe(
            src=base + "/body" + ("?remote=1" if remote else ""),
            sandbox="allow-popups allow-popups-to-escape-sandbox" if remote else "",
            title="Message body", referrerpolicy="no-referrer", id="message-frame",
        )
        return [notice, tags.div(frame, class_="frame")]

    def _links(self, copy: Copy, bodies: Bodies, safe: SafeHTML | None) -> Tag | str:
        """
        The links a reader follows (the password-reset case): those of the
        text body, then the targets of the HTML body's links, each once,
        http(s) only.  Not every URL in the HTML (images, styles) as the
        API's C{links} has.
        """
        found: dict[str, None] = {}
        for link in copy.message.links:
            if safe is None or (bodies.text is not None and link in bodies.text):
                found.setdefault(link, None)
        for link in safe.links if safe is not None else ():
            found.setdefault(link, None)
        links = [u for u in found if u.lower().startswith(("http://", "https://"))]
        if not links:
            return ""
        return tags.section(
            tags.h2(f"Links ({len(links)})", id="links-heading"),
            tags.ol([tags.li(tags.a(link, href=link, target="_blank",
                                    rel="noopener noreferrer")) for link in links]),
            class_="links", **{"aria-labelledby": "links-heading"},
        )

    def _attachments(self, copy: Copy, base: str) -> Tag | str:
        attachments = copy.message.attachments
        if not attachments:
            return ""
        items = []
        for index, attachment in enumerate(attachments):
            url = f"{base}/attachments/{index}"
            cid = (attachment.contentId or "").strip("<>")
            name = attachment.filename or (f"inline {cid}" if cid else f"attachment {index + 1}")
            if attachment.contentType in _INLINE_TYPES:
                thumb = tags.img(src=url + "?inline=1", alt="", loading="lazy", class_="thumb")
            else:
                # A label for the file's kind: its extension, else its subtype.
                filename = attachment.filename or ""
                kind = (filename.rpartition(".")[2] if "." in filename
                        else attachment.contentType.partition("/")[2])
                thumb = tags.span(kind[:4].upper() or "FILE", class_="thumb kind",
                                  **{"aria-hidden": "true"})
            items.append(tags.li(
                thumb,
                tags.div(
                    tags.a(name, href=url, download="", class_="name"),
                    tags.br(),
                    tags.span(f"{attachment.contentType}, {_size(attachment.size)}",
                              class_="muted"),
                ),
                class_="attachment",
            ))
        return tags.section(
            tags.h2(f"Attachments ({len(attachments)})", id="attachments-heading"),
            tags.ul(items, class_="attachments"),
            class_="attachments", **{"aria-labelledby": "attachments-heading"},
        )

    # What the page links to

    @pages.route("/inbox/<address>/<messageId>/body", methods=["GET"])
    async def body(self, request: IRequest, address: str, messageId: str) -> bytes:
        """
        The HTML body, sanitized (L{capture.web.safehtml}), under its own
        policy; C{?remote=1} lets remote images and styles load.  A
        text-only message is shown as preformatted text.
        """
        copy, _, _ = await self._readable(request, address, messageId)
        bodies = await self._store.getBodies(copy)
        if bodies.html is not None:
            source = await inlineImages(self._store, copy, bodies.html, bodies)
        else:
            source = f"<pre>{html.escape(bodies.text or '')}</pre>"
        remote = _query(request, b"remote") == "1"
        securityHeaders(request, bodyPolicy(remote))
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return clean(source, remote).html.encode("utf-8")

    @pages.route("/inbox/<address>/<messageId>/raw", methods=["GET"])
    async def raw(self, request: IRequest, address: str, messageId: str) -> bytes:
        """
        The message exactly as stored, as a C{.eml} download.
        """
        copy, _, _ = await self._readable(request, address, messageId)
        raw = await self._store.getRaw(copy)
        securityHeaders(request, UNTRUSTED_POLICY)
        request.setHeader(b"content-type", b"message/rfc822")
        request.setHeader(b"content-disposition",
                          f'attachment; filename="{copy.id}.eml"'.encode("ascii"))
        return raw

    @pages.route("/inbox/<address>/<messageId>/attachments/<int:index>", methods=["GET"])
    async def attachment(self, request: IRequest, address: str, messageId: str,
                         index: int) -> bytes:
        """
        One attachment (by its place in the message, from 0), as a
        download; C{?inline=1} shows a PNG, JPEG, GIF or WebP image in the
        browser (the page's thumbnails).  Nothing else is ever served as
        anything but C{application/octet-stream}.
        """
        copy, _, _ = await self._readable(request, address, messageId)
        attachments = copy.message.attachments
        if index >= len(attachments):
            raise notFound()
        attachment = attachments[index]
        data = await attachmentData(self._store, copy, attachment)
        if data is None:
            raise notFound()
        securityHeaders(request, UNTRUSTED_POLICY)
        name = safeFilename(attachment)
        original = quote(attachment.filename or name, safe="")
        if _query(request, b"inline") == "1" and attachment.contentType in _INLINE_TYPES:
            request.setHeader(b"content-type", attachment.contentType.encode("ascii"))
            disposition = "inline"
        else:
            request.setHeader(b"content-type", b"application/octet-stream")
            disposition = "attachment"
        request.setHeader(
            b"content-disposition",
            f"{disposition}; filename=\"{name}\"; filename*=UTF-8''{original}".encode("ascii"),
        )
        return data

    @pages.route("/inbox/<address>/<messageId>/delete", methods=["POST"])
    async def delete(self, request: IRequest, address: str, messageId: str) -> bytes:
        """
        Delete the copy (whoever may: public mail by anyone, as at
        Mailsac), then back to its inbox.
        """
        async def change() -> str:
            copy, _ = await self._changeable(request, address, messageId, Action.DELETE)
            await self._store.deleteCopy(copy)
            return inboxPath(copy.inbox)

        return await self._change(request, change)

    @pages.route("/inbox/<address>/<messageId>/star", methods=["POST"])
    async def star(self, request: IRequest, address: str, messageId: str) -> bytes:
        """
        Star (C{starred=1}) or unstar (C{starred=0}) the copy for the
        signed-in account, then back to the message.  Unstarring a copy
        someone else starred changes nothing: their star is theirs.
        """
        async def change() -> str:
            wanted = _query(request, b"starred")
            if wanted not in ("0", "1"):
                raise PageError(400, "Star or unstar?", "The form's starred field is 1 or 0.")
            copy, viewer = await self._changeable(request, address, messageId, Action.STAR)
            if wanted == "1" and copy.savedBy != viewer:
                await self._store.setStarred(copy, viewer)
            elif wanted == "0" and copy.savedBy == viewer:
                await self._store.setStarred(copy, None)
            return messagePath(copy.inbox, copy.id)

        return await self._change(request, change)
