# -*- test-case-name: tests.test_api -*-
"""
The Mailsac-compatible HTTP API (C{reference/mailsac-api.md} section 4),
under C{/api}, in Klein.

Every route finds its viewer from the API key (C{Mailsac-Key} header in any
case, or C{?_mailsacKey=}), asks the store who owns the inbox, and lets
L{capture.access} decide, as every other protocol does.
"""

from __future__ import annotations

import datetime
import html
import json
import re
import time
from collections.abc import Callable
from typing import Any, cast

import nh3
from autobahn.twisted.resource import WebSocketResource
from klein import Klein
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException

from capture.access import Action, Visibility, permits, visibility
from capture.addresses import baseInbox, inboxOf, isAddress
from capture.connections import Slots, peerHost
from capture.emailmessage import headersJSON, isoTime, messageJSON
from capture.events import IEventBus
from capture.health import Readiness
from capture.metrics import CONTENT_TYPE, Metrics
from capture.mime import Part, findPart
from capture.store.errors import Conflict, NotFound, StoreFull
from capture.store.interface import IStore
from capture.store.model import (
    DEFAULT_MESSAGE_LIMIT,
    Copy,
    Domain,
    InboxOwner,
    OwnedAddress,
    RemovedCopy,
)
from capture.web import accountrules
from capture.web.autoconfig import MailSettings
from capture.web.live import (
    Backlog,
    IncomingMessagesFactory,
    Listener,
    LiveHub,
    existingMatch,
    messageFilter,
    sseEvent,
    sseRemoved,
)
from capture.web.messages import addressJSON, domainJSON
from capture.web.openapi import document
from capture.web.parts import attachmentData, inlineImages, safeFilename, textOf
from capture.web.responses import ApiError, jsonBody, jsonText, textBody
from capture.web.site import RETRY_AFTER
from capture.web.websession import WebSessions
from capture.webhooks import WebhookAttempt, WebhookDispatcher

# ASCII digits only: str.isdigit and \\d take any script's digits ("²",
# "١"), which int() and fromisoformat() then refuse.
_ISO_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?", re.ASCII
)
_WHOLE_RE = re.compile(r"[0-9]{1,18}")
# JSON escapes of UTF-16 surrogates: a body holding one may decode to a
# lone surrogate, which no store or answer can encode.
_SURROGATE_ESCAPE_RE = re.compile(rb"\\u[dD][89a-fA-F]")
_FOLDERS = ("inbox", "all", "spam", "trash", "sent", "drafts")
_MAX_LABEL = 64
_MAX_LABELS = 20
_BAD_LABEL_RE = re.compile(r"[/\\\x00-\x1f\x7f]")
# What /api/body keeps: formatting, never links, images or image maps.
_SAFE_TAGS = set(nh3.ALLOWED_TAGS) - {"a", "img", "area", "map"}
_MESSAGE_NOT_FOUND = "Message not found by id."
_MAX_BULK = 100
STORE_FULL = "The store is full: delete or purge mail to make room, then try again."
_log = Logger()


def _query(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


def _whole(text: str | None) -> int | None:
    """
    C{text} as a whole number, or L{None} when it is not one: ASCII digits
    only, at most 18 of them (anything longer is out of every range here,
    and would overflow SQLite's integers).
    """
    if text is None or not _WHOLE_RE.fullmatch(text):
        return None
    return int(text)


def _label(text: str) -> str:
    """
    A label as given, trimmed.

    @raise ApiError: 400 for an empty or over-long one, or one that looks
        like a path (C{.}, C{..}, slashes) or holds control characters.
    """
    label = text.strip()
    if (
        not label
        or len(label) > _MAX_LABEL
        or label in (".", "..")
        or _BAD_LABEL_RE.search(label)
    ):
        raise ApiError(
            400, "Invalid label.",
            [f"a label has 1 to {_MAX_LABEL} characters, no slashes or control characters"],
        )
    return label


def jsonRequestBody(request: IRequest) -> Any:
    """
    The request's JSON body, or L{None} when it has none.

    @raise ApiError: 400 for a body that is not JSON.
    """
    content = request.content
    if content is None:
        return None
    content.seek(0)
    data = content.read()
    if not data.strip():
        return None
    try:
        value = json.loads(data)
        if _SURROGATE_ESCAPE_RE.search(data):
            # A lone surrogate is not text: refuse it here rather than
            # fail where it is encoded.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the decoder's stack.
        raise ApiError(400, "The request body is not JSON.", ["body must be JSON"]) from None
    return value


def _requestKey(request: IRequest) -> str | None:
    """
    The API key that came with the request, in any of Mailsac's three
    ways: the C{Mailsac-Key} header (any case), C{?_mailsacKey=}, or a JSON
    body's C{_mailsacKey}.
    """
    header = request.getHeader(b"mailsac-key")
    key = header.decode("latin-1") if header is not None else _query(request, b"_mailsacKey")
    if key is None:
        key = _bodyKey(request)
    return None if key is None else key.strip()


def _bodyKey(request: IRequest) -> str | None:
    """
    The C{_mailsacKey} field of a JSON body (POST, PUT, PATCH), the third
    way Mailsac takes a key.
    """
    if request.method not in (b"POST", b"PUT", b"PATCH"):
        return None
    body = jsonRequestBody(request)
    if isinstance(body, dict) and isinstance(body.get("_mailsacKey"), str):
        return str(body["_mailsacKey"])
    return None


class BoundedRequest(Request):
    """
    A request whose body may not exceed L{maxBody} octets: a larger one is
    answered C{413} as soon as its size is known (from Content-Length, or
    while a chunked body arrives), before it is buffered.
    """

    maxBody = 1024 * 1024
    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        if length is not None and length > self.maxBody:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.maxBody:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # Capture's forms are URL-encoded and its API takes JSON: a
        # multipart body is left unparsed (its fields are not arguments),
        # because a malformed one makes Twisted answer a bare 400 and drop
        # the connection, outside the API's and the pages' error shapes.
        contentType = self.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        if contentType.lower().lstrip().startswith(b"multipart/"):
            self._parsePOSTFormSubmission = False
        super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        if self._refused:
            return
        self._refused = True
        body = json.dumps(
            ApiError(413, f"The request body is over {self.maxBody} octets.").body()
        ).encode()
        transport = self.channel.transport
        assert transport is not None
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\n"
            b"Content-Type: application/json; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
        )
        transport.loseConnection()


class MailsacAPI:
    """
    The API's routes, bound to one store.

    @ivar publicReadable: Whether public inboxes may be read without a key.
    @ivar metrics: What C{/metrics} shows, or L{None} when it is switched off.
    @ivar _webhooks: The dispatcher whose delivery attempts the API shows
        (none: every account has none).
    """

    app = Klein()
    # An empty segment ("//", or an encoded slash on its own) must not be
    # merged away with a redirect to a different route: it is a 404.
    app.url_map.merge_slashes = False
    # Messages an inbox's event stream sends again to a client that comes
    # back with Last-Event-ID, at most.
    sseReplay = 100
    # Seconds between the comment lines that keep an idle event stream
    # (and the proxies on its way) open.
    sseHeartbeat = 15.0
    # Octets an event stream may leave unread past its send buffer.
    sseBacklog = 4 * 1024 * 1024

    def __init__(
        self,
        store: IStore,
        publicReadable: bool = True,
        metrics: Metrics | None = None,
        readiness: Readiness | None = None,
        webhooks: WebhookDispatcher | None = None,
        mailSettings: MailSettings | None = None,
        sessions: WebSessions | None = None,
        messageLimit: int = DEFAULT_MESSAGE_LIMIT,
        *,
        events: IEventBus,
    ) -> None:
        """
        @param events: The bus the store publishes to, which live listeners
            (waits, event streams, websockets) hear new mail from.
        @param sessions: The web pages' sessions, whose cookie the API
            takes in place of a key for reading.
        @param messageLimit: The server's default limit on an account's
            stored mail (C{--message-limit}; 0: none), which C{/api/me}
            gives for an account without one of its own.
        """
        self._messageLimit = messageLimit
        self._store = store
        self._sessions = sessions
        self._mailSettings = mailSettings
        self.publicReadable = publicReadable
        self.metrics = metrics
        self._readiness = readiness if readiness is not None else Readiness(store)
        self._webhooks = webhooks
        self._live = LiveHub(store, events, publicReadable)
        self.streams = Slots(limit=512, perAddress=64)
        self.anonymousStreamLifetime = 600.0
        self._incoming = IncomingMessagesFactory(self._live, store, self._inbox, self.streams)
        self._websocket = WebSocketResource(self._incoming)

    # Errors

    @app.handle_errors(ApiError)
    def _apiError(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, ApiError)
        return jsonBody(request, error.body(), error.code)

    @app.handle_errors(StoreFull)
    def _storeFull(self, request: IRequest, failure: Failure) -> bytes:
        # The store's reserve is for exactly this: deletes and purges
        # commit while new mail is refused; a write that still finds no
        # room is the client's to retry after making some.
        return jsonBody(request, ApiError(507, STORE_FULL).body(), 507)

    @app.handle_errors(HTTPException)
    def _routingError(self, request: IRequest, failure: Failure) -> bytes:
        # Unknown paths and methods: JSON like every other answer, not
        # Werkzeug's HTML page.
        error = failure.value
        assert isinstance(error, HTTPException)
        code = error.code or 500
        return jsonBody(request, ApiError(code, error.description or "").body(), code)

    @app.handle_errors(Exception)
    def _unexpected(self, request: IRequest, failure: Failure) -> bytes:
        # Klein tries handlers in the order they were declared: this one,
        # last, only sees what the others did not take.
        _log.failure("API request failed", failure)
        return jsonBody(request, ApiError(500, "Internal server error.").body(), 500)

    def refuse(self, request: IRequest, code: int, message: str) -> bytes:
        """
        A request refused before routing (L{capture.web.root}), in
        Mailsac's error body.
        """
        return jsonBody(request, ApiError(code, message).body(), code)

    # Request helpers

    async def _viewer(self, request: IRequest) -> str | None:
        """
        The account whose key came with the request, or L{None} for none.

        @raise ApiError: 401 for a key that is not a live key.
        """
        key = _requestKey(request)
        if key is None:
            return await self._sessionViewer(request)
        return self._keyed(await self._store.accountForKey(key))

    async def _sessionViewer(self, request: IRequest) -> str | None:
        """
        The account signed in to the web pages, for a request without a
        key: the pages' scripts read (never change) through the API with
        the session cookie.  Changes need a key, so a page of another site
        cannot make one with the cookie.
        """
        if self._sessions is None or request.method not in (b"GET", b"HEAD"):
            return None
        return await self._sessions.signedIn(request, self._store)

    def _keyed(self, account: str | None) -> str:
        """
        The account a key given with the request belongs to, its call
        counted.

        @param account: What the store found for the key.
        @raise ApiError: 401 for a key that is not a live key.
        """
        if account is None:
            raise ApiError(401, "API key is wrong or was revoked.")
        # Every call made with a key is one op of its account (Mailsac's
        # metering, shown in /api/me as moAPICount).
        self._store.countOp(account)
        return account

    async def _requiredViewer(self, request: IRequest) -> str:
        viewer = await self._viewer(request)
        if viewer is None:
            raise ApiError(401, "An API key is required.")
        return viewer

    def _inbox(self, email: str) -> str:
        return accountrules.inboxOf(email)

    def _domain(self, domain: str) -> str:
        return accountrules.domainName(domain)

    def _limit(self, request: IRequest, default: int, maximum: int) -> int:
        text = _query(request, b"limit")
        if text is None:
            return default
        limit = _whole(text)
        if limit is None or limit > maximum:
            raise ApiError(
                400, "Invalid limit.", [f"limit must be a whole number from 0 to {maximum}"]
            )
        return limit

    def _date(self, request: IRequest, name: bytes) -> int | None:
        """
        The ISO 8601 date in query parameter C{name}, in milliseconds.
        """
        text = _query(request, name)
        if text is None:
            return None
        try:
            if not _ISO_RE.fullmatch(text):
                raise ValueError(text)
            when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.UTC)
            return int(when.timestamp() * 1000)
        except (ValueError, OverflowError):
            # The shape of a date, not a date (month 13, year 0, 30
            # February), or one out of the clock's range.
            label = name.decode()
            raise ApiError(400, f"Invalid {label}.", [f"{label} must be an ISO 8601 date"]) from None

    async def _listing(self, request: IRequest, inbox: str) -> Visibility:
        """
        Which copies of C{inbox} the request's viewer may list.

        @raise ApiError: 401/403 when it may list none.
        """
        return (await self._listingViewer(request, inbox))[0]

    async def _listingViewer(self, request: IRequest, inbox: str) -> tuple[Visibility, str | None]:
        """
        L{_listing}, and the viewer it was decided for.
        """
        key = _requestKey(request)
        if key is None:
            viewer = await self._sessionViewer(request)
            owner = await self._store.inboxOwner(inbox)
        else:
            # One read for both: listings are the hottest route.
            account, owner = await self._store.accountAndOwner(key, inbox)
            viewer = self._keyed(account)
        visible = visibility(viewer, owner, self.publicReadable)
        if visible is None:
            raise self._closed(viewer)
        return visible, viewer

    @staticmethod
    def _closed(viewer: str | None) -> ApiError:
        """
        The refusal for an inbox the viewer may not see: 401 without a key,
        403 for another account's inbox (Mailsac's C{OwnedByAnotherUser}).
        """
        if viewer is None:
            return ApiError(401, "An API key is required to read this inbox.")
        return ApiError(403, "OwnedByAnotherUser")

    async def _copy(self, request: IRequest, email: str, messageId: str,
                    action: Any = Action.READ) -> tuple[Copy, str | None]:
        """
        The copy C{messageId} of inbox C{email}, if the viewer may do
        C{action} to it.  A copy of another inbox, and one starred by
        someone else in a public inbox, are not found: their existence is
        nobody else's business.
        """
        inbox = self._inbox(email)
        viewer = await self._viewer(request)
        try:
            copy = await self._store.getCopy(messageId)
        except NotFound:
            raise ApiError(404, _MESSAGE_NOT_FOUND) from None
        if copy.inbox != inbox:
            raise ApiError(404, _MESSAGE_NOT_FOUND)
        owner = await self._store.inboxOwner(inbox)
        if not permits(viewer, action, owner, copy.savedBy, self.publicReadable):
            if owner.account is None and copy.savedBy is not None:
                raise ApiError(404, _MESSAGE_NOT_FOUND)
            raise self._closed(viewer)
        return copy, viewer

    # Routes

    @app.route("/livez", methods=["GET"])
    def livez(self, request: IRequest) -> bytes:
        return jsonBody(request, {"status": "ok"})

    @app.route("/api/addresses/<email>/messages", methods=["GET"])
    async def listMessages(self, request: IRequest, email: str) -> bytes:
        """
        M1: an inbox's messages, newest first (C{limit}, default 20, at most
        1000; C{until}, an ISO date).
        """
        inbox = self._inbox(email)
        limit = self._limit(request, default=20, maximum=1000)
        until = self._date(request, b"until")
        visible = await self._listing(request, inbox)
        listed = await self._store.listInboxJSON(inbox, visible, limit=limit, until=until)
        return jsonText(request, listed)

    @app.route("/api/addresses/<email>/message-count", methods=["GET"])
    async def messageCount(self, request: IRequest, email: str) -> bytes:
        """
        M3: how many messages a listing of the inbox would show.
        """
        inbox = self._inbox(email)
        visible = await self._listing(request, inbox)
        count = await self._store.countInbox(inbox, visible)
        return jsonBody(request, {"count": count, "inbox": inbox})

    @app.route("/api/addresses/<email>/messages/<messageId>", methods=["GET"])
    async def getMessage(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        M5: one message's metadata.
        """
        copy, _ = await self._copy(request, email, messageId)
        return jsonBody(request, messageJSON(copy))

    @app.route("/api/addresses/<email>/messages/<messageId>", methods=["DELETE"])
    async def deleteMessage(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        M6: delete one message (public inboxes too, as at Mailsac).
        """
        copy, _ = await self._copy(request, email, messageId, Action.DELETE)
        await self._store.deleteCopy(copy)
        return jsonBody(
            request, {"message": "Message was deleted.", "_id": copy.id, "inbox": copy.inbox}
        )

    @app.route("/api/raw/<email>/<messageId>", methods=["GET"])
    async def raw(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        M7: the message exactly as stored, C{Received:} line included.
        """
        copy, _ = await self._copy(request, email, messageId)
        raw = await self._store.getRaw(copy)
        download = f"{copy.id}.eml" if _query(request, b"download") else None
        return textBody(request, raw, b"text/plain; charset=utf-8", download)

    @app.route("/api/text/<email>/<messageId>", methods=["GET"])
    async def text(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        M11: the plain-text body; for HTML-only mail, a plain rendering of
        the HTML with each link's target after its text, in parentheses.
        """
        copy, _ = await self._copy(request, email, messageId)
        bodies = await self._store.getBodies(copy)
        text = await textOf(bodies)
        download = f"{copy.id}.txt" if _query(request, b"download") else None
        return textBody(request, text, b"text/plain; charset=utf-8", download)

    @app.route("/api/addresses/<email>/messages/<messageId>/star", methods=["PUT"])
    async def star(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        M12: star the message for the key's account, or unstar it if that
        account starred it already (a toggle, as at Mailsac).
        """
        copy, viewer = await self._copy(request, email, messageId, Action.STAR)
        starredBy = None if copy.savedBy == viewer else viewer
        updated = await self._store.setStarred(copy, starredBy)
        return jsonBody(request, messageJSON(updated))

    @app.route(
        "/api/addresses/<email>/messages/<messageId>/labels/<label>", methods=["PUT", "DELETE"]
    )
    async def label(self, request: IRequest, email: str, messageId: str, label: str) -> bytes:
        """
        M13/M14: add (PUT) or remove (DELETE) a label; either is a no-op
        when already so.
        """
        label = _label(label)
        copy, _ = await self._copy(request, email, messageId, Action.FLAG)
        labels = [x for x in copy.labels if x != label]
        if request.method == b"PUT":
            if len(labels) >= _MAX_LABELS:
                raise ApiError(400, "Too many labels.", [f"at most {_MAX_LABELS} labels"])
            labels.append(label)
        updated = await self._store.setCopyState(copy, labels=tuple(labels))
        return jsonBody(request, {"_id": updated.id, "labels": list(updated.labels)})

    @app.route("/api/addresses/<email>/messages/<messageId>/labels", methods=["PUT"])
    async def setLabels(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        L1 (legacy): replace all labels with a JSON body's C{labels} list.
        The old client's limit of 3 is not kept: the same limit as M13's.
        """
        body = jsonRequestBody(request)
        wanted = body.get("labels") if isinstance(body, dict) else None
        if not isinstance(wanted, list) or not all(isinstance(x, str) for x in wanted):
            raise ApiError(400, "Invalid labels.", ["labels must be a list of strings"])
        labels = list(dict.fromkeys(_label(x) for x in wanted))
        if len(labels) > _MAX_LABELS:
            raise ApiError(400, "Too many labels.", [f"at most {_MAX_LABELS} labels"])
        copy, _ = await self._copy(request, email, messageId, Action.FLAG)
        updated = await self._store.setCopyState(copy, labels=tuple(labels))
        return jsonBody(request, {"_id": updated.id, "labels": list(updated.labels)})

    @app.route("/api/addresses/<email>/messages/<messageId>/folder/<folder>", methods=["PUT"])
    async def folder(self, request: IRequest, email: str, messageId: str, folder: str) -> bytes:
        """
        M15: move the message to one of Mailsac's folders.
        """
        if folder not in _FOLDERS:
            raise ApiError(400, "Invalid folder.", [f"folder is one of {', '.join(_FOLDERS)}"])
        copy, _ = await self._copy(request, email, messageId, Action.FLAG)
        updated = await self._store.setCopyState(copy, folder=folder)
        return jsonBody(request, {"_id": updated.id, "folder": updated.folder})

    @app.route("/api/addresses/<email>/messages/<messageId>/read/<state>", methods=["PUT"])
    async def read(self, request: IRequest, email: str, messageId: str, state: str) -> bytes:
        """
        M16: mark the message read (C{true}) or unread (C{false}).
        """
        if state not in ("true", "false"):
            raise ApiError(400, "Invalid read state.", ["read is true or false"])
        copy, _ = await self._copy(request, email, messageId, Action.FLAG)
        updated = await self._store.setCopyState(copy, read=state == "true")
        return jsonBody(request, {"_id": updated.id, "read": updated.read})

    @app.route("/api/addresses/<email>/messages/<messageId>/headers", methods=["GET"])
    async def headers(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        M8: the headers as C{json} (default), C{json-ordered} or C{plain}
        (C{messageHeadersFormat}, or the older C{format}).
        """
        style = _query(request, b"messageHeadersFormat") or _query(request, b"format") or "json"
        if style not in ("json", "json-ordered", "plain"):
            raise ApiError(
                400, "Invalid messageHeadersFormat.",
                ["messageHeadersFormat must be json, json-ordered or plain"],
            )
        copy, _ = await self._copy(request, email, messageId)
        bodies = await self._store.getBodies(copy)
        formatted = headersJSON(bodies.headers, style)
        if style == "plain":
            download = f"{copy.id}-headers.txt" if _query(request, b"download") else None
            return textBody(request, formatted, b"text/plain; charset=utf-8", download)
        return jsonBody(request, formatted)

    @app.route("/api/headers/<email>/<messageId>", methods=["GET"])
    async def legacyHeaders(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        The older clients' path for M8.
        """
        return await self.headers(request, email, messageId)

    @app.route("/api/addresses/<email>/messages", methods=["DELETE"])
    async def purge(self, request: IRequest, email: str) -> bytes:
        """
        M2: delete every unstarred message of an owned inbox (204).
        """
        inbox = self._inbox(email)
        viewer = await self._viewer(request)
        owner = await self._store.inboxOwner(inbox)
        if not permits(viewer, Action.PURGE, owner, None, self.publicReadable):
            raise ApiError(401, "Only the owner of an address or its domain may purge it.")
        await self._store.purgeInbox(inbox)
        request.setResponseCode(204)
        return b""

    @app.route("/api/addresses/starred/messages", methods=["GET"])
    async def starred(self, request: IRequest) -> bytes:
        """
        M4: the messages the key's account starred, wherever they are.
        """
        viewer = await self._requiredViewer(request)
        limit = self._limit(request, default=20, maximum=1000)
        copies = await self._store.listStarred(viewer, limit)
        return jsonBody(request, [messageJSON(c) for c in copies])

    @app.route("/api/addresses", methods=["GET"])
    async def addresses(self, request: IRequest) -> bytes:
        """
        D1: the addresses the key's account owns.
        """
        viewer = await self._requiredViewer(request)
        owned = await self._store.listAddresses(viewer)
        return jsonBody(request, [addressJSON(a) for a in owned])

    @app.route("/api/addresses/<email>/availability", methods=["GET"])
    async def availability(self, request: IRequest, email: str) -> bytes:
        """
        D6: whether an address may be reserved.
        """
        inbox = self._inbox(email)
        viewer = await self._viewer(request)
        owner = await self._store.inboxOwner(inbox)
        return jsonBody(
            request,
            {
                "available": owner.account is None,
                "email": inbox,
                "owned": owner.account is not None and owner.account == viewer,
            },
        )

    @app.route("/api/addresses/<email>", methods=["GET"])
    async def address(self, request: IRequest, email: str) -> bytes:
        """
        D2: an address: the account's own, one of its custom domains
        (C{implicit}, until it is given settings of its own), or one nobody
        owns (without an C{owner}); another account's is 401.
        """
        inbox = self._inbox(email)
        viewer = await self._requiredViewer(request)
        owned = {a.address: a for a in await self._store.listAddresses(viewer)}
        if inbox in owned:
            return jsonBody(request, addressJSON(owned[inbox]))
        owner = await self._store.inboxOwner(inbox)
        if owner.account is not None and owner.account != viewer:
            raise ApiError(401, accountrules.ANOTHER_ACCOUNTS)
        domain = inbox.rpartition("@")[2]
        for mine in await self._store.listDomains(viewer):
            if mine.domain == domain:
                implicit = OwnedAddress(inbox, viewer, mine.created, mine.created)
                return jsonBody(request, addressJSON(implicit, implicit=True))
        return jsonBody(request, {"_id": inbox, "info": "", "enablews": False, "forward": None,
                                  "webhook": None})

    @app.route("/api/addresses/<email>", methods=["POST"])
    async def reserve(self, request: IRequest, email: str) -> bytes:
        """
        D3: reserve an address; its mail, past and future, becomes private
        to the account.
        """
        inbox = self._inbox(email)
        viewer = await self._requiredViewer(request)
        settings = accountrules.addressSettings(jsonRequestBody(request))
        reserved = await accountrules.reserve(self._store, viewer, inbox, settings)
        return jsonBody(request, addressJSON(reserved))

    @app.route("/api/addresses/<email>", methods=["PUT"])
    async def updateAddress(self, request: IRequest, email: str) -> bytes:
        """
        D4: change an owned address's settings (C{info}, C{forward},
        C{enablews}, C{webhook}) from a JSON body.
        """
        inbox = self._inbox(email)
        viewer = await self._requiredViewer(request)
        settings = accountrules.addressSettings(jsonRequestBody(request))
        updated = await accountrules.update(self._store, viewer, inbox, settings)
        return jsonBody(request, addressJSON(updated))

    @app.route("/api/private-address-forwarding/<email>", methods=["PUT"])
    async def legacyForwarding(self, request: IRequest, email: str) -> bytes:
        """
        L2: the older path for D4, still in Mailsac's webhook docs.
        """
        return await self.updateAddress(request, email)

    @app.route("/api/addresses/<email>", methods=["DELETE"])
    async def release(self, request: IRequest, email: str) -> bytes:
        """
        D5: give an owned address up; its mail is public again, unless
        C{deleteAddressMessages=true} deletes it first (all but starred
        mail, as the purge M2 does).
        """
        inbox = self._inbox(email)
        deleting = _query(request, b"deleteAddressMessages")
        if deleting not in (None, "true", "false", "1", "0"):
            raise ApiError(400, "Invalid deleteAddressMessages.",
                           ["deleteAddressMessages is true or false"])
        viewer = await self._requiredViewer(request)
        await accountrules.release(self._store, viewer, inbox, deleting in ("true", "1"))
        return jsonBody(request, {"message": "Address released.", "_id": inbox})

    @app.route("/api/private-addresses-bulk", methods=["POST"])
    async def reserveBulk(self, request: IRequest) -> bytes:
        """
        D7: reserve up to 100 addresses at once, all or none.  Addresses the
        account owns already are returned as they are (reserving twice in
        bulk is not an error, so a setup script can run again).
        """
        viewer = await self._requiredViewer(request)
        body = jsonRequestBody(request)
        wanted = body.get("addresses") if isinstance(body, dict) else None
        if not isinstance(wanted, list) or not wanted:
            raise ApiError(400, "Give the addresses to reserve.",
                           ["addresses must be a non-empty list of email addresses"])
        if len(wanted) > _MAX_BULK:
            raise ApiError(400, f"At most {_MAX_BULK} addresses at once.",
                           [f"addresses has at most {_MAX_BULK} entries"])
        bad = [repr(a) for a in wanted if not isinstance(a, str) or not isAddress(a)]
        if bad:
            raise ApiError(400, "Invalid email address.",
                           [f"{a} is not an email address" for a in bad[:10]])
        inboxes = [baseInbox(a) for a in wanted]
        for catchAll in {i for i in inboxes if accountrules.isCatchAll(i)}:
            await accountrules.checkCatchAll(self._store, viewer, catchAll)
        try:
            reserved = await self._store.reserveAddresses(viewer, inboxes)
        except Conflict as conflict:
            raise ApiError(
                401, accountrules.ANOTHER_ACCOUNTS, [f"{a} is owned by another account"
                                         for a in str(conflict).split(", ")[:10]]
            ) from None
        return jsonBody(request, [addressJSON(a) for a in reserved])

    # Custom domains

    @app.route("/api/domains", methods=["GET"])
    async def domains(self, request: IRequest) -> bytes:
        """
        N1: the account's custom domains.
        """
        viewer = await self._requiredViewer(request)
        return jsonBody(request, [domainJSON(d) for d in await self._store.listDomains(viewer)])

    @app.route("/api/domains/<domain>", methods=["GET"])
    async def domain(self, request: IRequest, domain: str) -> bytes:
        """
        N2: one of the account's domains with its message count and its
        catch-all address (C{*@domain}, once reserved; else C{null}).
        """
        name = self._domain(domain)
        viewer = await self._requiredViewer(request)
        owned = await accountrules.ownedDomain(self._store, viewer, name)
        total = await self._store.countDomain(name, viewer, self._domainVisibility(owned))
        catchAll = [a for a in await self._store.listAddresses(viewer)
                    if a.address == accountrules.CATCH_ALL + name]
        return jsonBody(request, {
            "domain": domainJSON(owned), "totalMessages": total,
            "catchAllAddress": addressJSON(catchAll[0]) if catchAll else None,
        })

    @app.route("/api/domains/<domain>", methods=["POST"])
    async def addDomain(self, request: IRequest, domain: str) -> bytes:
        """
        Capture's own: claim a custom domain (Mailsac does this in its web
        site, after a DNS check; Capture receives whatever SMTP is given, so
        there is nothing to verify).  Body C{{"isPrivate": bool}}, private
        by default: every address in it is then the account's.
        """
        name = self._domain(domain)
        viewer = await self._requiredViewer(request)
        body = jsonRequestBody(request)
        isPrivate = body.get("isPrivate", True) if isinstance(body, dict) else True
        if not isinstance(isPrivate, bool):
            raise ApiError(400, "Invalid isPrivate.", ["isPrivate must be true or false"])
        added = await accountrules.addDomain(self._store, viewer, name, isPrivate)
        return jsonBody(request, domainJSON(added))

    @app.route("/api/domains/<domain>", methods=["DELETE"])
    async def removeDomain(self, request: IRequest, domain: str) -> bytes:
        """
        Capture's own: give a custom domain up.  Its mail stays, public
        from now on, as a released address's does.
        """
        name = self._domain(domain)
        viewer = await self._requiredViewer(request)
        await accountrules.removeDomain(self._store, viewer, name)
        return jsonBody(request, {"message": "Domain released.", "_id": name})

    @app.route("/api/domains/<domain>/privacy/<isPrivate>", methods=["PUT"])
    async def domainPrivacy(self, request: IRequest, domain: str, isPrivate: str) -> bytes:
        """
        N3: make a domain private (C{true}) or public (C{false}).  The
        reference gives no method; Capture takes PUT, like M15 and M16.
        """
        name = self._domain(domain)
        if isPrivate not in ("true", "false"):
            raise ApiError(400, "Invalid privacy.", ["isPrivateBoolean is true or false"])
        viewer = await self._requiredViewer(request)
        updated = await accountrules.setDomainPrivacy(self._store, viewer, name, isPrivate == "true")
        return jsonBody(request, domainJSON(updated))

    @app.route("/api/domains/<domain>/messages", methods=["GET"])
    async def domainMessages(self, request: IRequest, domain: str) -> bytes:
        """
        M20: the newest messages of every inbox of an owned domain
        (C{limit}, C{until}); 403 for a domain the key does not own.
        """
        name = self._domain(domain)
        viewer = await self._requiredViewer(request)
        limit = self._limit(request, default=20, maximum=1000)
        until = self._date(request, b"until")
        owned = await accountrules.ownedDomain(self._store, viewer, name, otherCode=403)
        copies = await self._store.listDomain(
            name, viewer, self._domainVisibility(owned), limit=limit, until=until
        )
        return jsonBody(request, [messageJSON(c) for c in copies])

    @app.route("/api/domains/<domain>/delete-all-domain-mail", methods=["POST"])
    async def purgeDomain(self, request: IRequest, domain: str) -> bytes:
        """
        M21: delete the domain's mail.  The reference contradicts itself
        about starred mail; Capture keeps it, as the inbox purge (M2) does.
        """
        name = self._domain(domain)
        viewer = await self._requiredViewer(request)
        await accountrules.ownedDomain(self._store, viewer, name)
        await self._store.purgeDomain(name, viewer)
        request.setResponseCode(204)
        return b""

    def _domainVisibility(self, owned: Domain) -> Visibility:
        """
        What the owner of a domain sees of it: everything of a private
        domain; of a public one, what any account sees of a public inbox.
        """
        owner = InboxOwner(owned.account if owned.isPrivate else None, implicit=True)
        visible = visibility(owned.account, owner, self.publicReadable)
        assert visible is not None
        return visible

    async def _html(self, copy: Copy) -> tuple[str, Any]:
        """
        The message's HTML, or a simple HTML rendering of its text when it
        has none (as Mailsac makes one), and its bodies.
        """
        bodies = await self._store.getBodies(copy)
        if bodies.html is not None:
            return bodies.html, bodies
        text = html.escape(bodies.text or "")
        return f"<html><body><pre>{text}</pre></body></html>", bodies

    @app.route("/api/body/<email>/<messageId>", methods=["GET"])
    async def body(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        M9: the HTML body, sanitized by nh3: no scripts, no event handlers,
        no styles, and, as at Mailsac, no images and no links (their text
        stays), so nothing remote is ever loaded.
        """
        copy, _ = await self._copy(request, email, messageId)
        original, _ = await self._html(copy)
        cleaned = nh3.clean(original, tags=_SAFE_TAGS, link_rel=None)
        download = f"{copy.id}.html" if _query(request, b"download") else None
        return textBody(request, cleaned, b"text/html; charset=utf-8", download)

    @app.route("/api/dirty/<email>/<messageId>", methods=["GET"])
    async def dirty(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        M10: the HTML body as sent, with C{cid:} images inlined as C{data:}
        URIs so that it shows whole on its own.
        """
        copy, _ = await self._copy(request, email, messageId)
        original, bodies = await self._html(copy)
        original = await inlineImages(self._store, copy, original, bodies)
        download = f"{copy.id}.html" if _query(request, b"download") else None
        return textBody(request, original, b"text/html; charset=utf-8", download)

    @app.route("/api/addresses/<email>/messages/<messageId>/attachments", methods=["GET"])
    async def attachments(self, request: IRequest, email: str, messageId: str) -> bytes:
        """
        A1: the message's attachments, described.
        """
        copy, _ = await self._copy(request, email, messageId)
        structure = Part.fromJSON((await self._store.getBodies(copy)).structure)
        described = []
        for attachment in copy.message.attachments:
            part = findPart(structure, attachment.part)
            described.append(
                {
                    "checksum": attachment.md5,
                    "contentDisposition": (part.disposition if part else None) or "attachment",
                    "contentId": (attachment.contentId or "").strip("<>") or None,
                    "contentType": attachment.contentType,
                    "fileName": attachment.filename,
                    "length": attachment.size,
                    "transferEncoding": (part.encoding if part else None) or "7bit",
                }
            )
        return jsonBody(request, described)

    @app.route(
        "/api/addresses/<email>/messages/<messageId>/attachments/<identifier>", methods=["GET"]
    )
    async def attachment(
        self, request: IRequest, email: str, messageId: str, identifier: str
    ) -> bytes:
        """
        A2: one attachment's bytes, named by its md5, its content-id or its
        file name.
        """
        copy, _ = await self._copy(request, email, messageId)
        wanted = identifier.strip("<>")
        for attachment in copy.message.attachments:
            if wanted in (attachment.md5, (attachment.contentId or "").strip("<>"),
                          attachment.filename):
                break
        else:
            raise ApiError(404, "Attachment not found.")
        data = await attachmentData(self._store, copy, attachment)
        if data is None:
            raise ApiError(404, "Attachment not found.")
        name = safeFilename(attachment)
        return textBody(request, data, attachment.contentType.encode("ascii", "replace"), name)

    @app.route("/api/inbox", methods=["GET"])
    async def unifiedInbox(self, request: IRequest) -> bytes:
        """
        M17: every message of the account, across its owned addresses and
        domains and its starred mail (C{limit}, C{skip}, C{since}).
        """
        viewer = await self._requiredViewer(request)
        limit = self._limit(request, default=20, maximum=1000)
        skip = _whole(_query(request, b"skip") or "0")
        if skip is None:
            raise ApiError(400, "Invalid skip.", ["skip must be a whole number"])
        since = self._date(request, b"since")
        copies, unread = await self._store.listAccountInbox(
            viewer, limit=limit, skip=skip, since=since
        )
        return jsonBody(
            request,
            {"messages": [messageJSON(c) for c in copies], "unread": unread, "limit": limit,
             "skip": skip},
        )

    @app.route("/api/inbox-filter", methods=["GET"])
    async def inboxFilter(self, request: IRequest) -> bytes:
        """
        M18: the account's messages matching every condition given
        (C{andSubjectIncludes}, C{andFrom}, C{andTo}, C{andRead}); at
        least one is required; at most 100 results.
        """
        viewer = await self._requiredViewer(request)
        subject = _query(request, b"andSubjectIncludes")
        sender = _query(request, b"andFrom")
        recipient = _query(request, b"andTo")
        readText = _query(request, b"andRead")
        if readText not in (None, "true", "false"):
            raise ApiError(400, "Invalid andRead.", ["andRead is true or false"])
        if subject is None and sender is None and recipient is None and readText is None:
            raise ApiError(
                400, "Give at least one condition.",
                ["one of andSubjectIncludes, andFrom, andTo, andRead is required"],
            )
        copies = await self._store.searchAccount(
            viewer, subject=subject, sender=sender, recipient=recipient,
            read=None if readText is None else readText == "true", limit=100,
        )
        return jsonBody(request, {"messages": [messageJSON(c) for c in copies]})

    @app.route("/api/inbox-search", methods=["GET"])
    async def inboxSearch(self, request: IRequest) -> bytes:
        """
        M19: the account's messages whose subject, sender or recipients
        contain C{query}; at most 100 results.
        """
        viewer = await self._requiredViewer(request)
        query = (_query(request, b"query") or "").strip()
        if not query:
            raise ApiError(400, "Give a query.", ["query is required"])
        copies = await self._store.searchAccount(viewer, anyOf=query, limit=100)
        return jsonBody(request, {"query": query, "messages": [messageJSON(c) for c in copies]})

    @app.route("/api/me/stats", methods=["GET"])
    async def stats(self, request: IRequest) -> bytes:
        """
        U2: what the account stores.  C{lastMonthOps} is last calendar
        month's (UTC) op count; this month's is C{/me}'s C{moAPICount}.
        C{overrideAccountId} may only name the key's own account.
        """
        viewer = await self._requiredViewer(request)
        override = _query(request, b"overrideAccountId")
        if override not in (None, "", viewer):
            raise ApiError(403, "overrideAccountId may only name your own account.")
        stats = await self._store.accountStats(viewer)
        owned = await self._store.listAddresses(viewer)
        domains = await self._store.listDomains(viewer)
        today = datetime.datetime.now(datetime.UTC).date()
        lastMonth = (today.replace(day=1) - datetime.timedelta(days=1)).strftime("%Y-%m")
        return jsonBody(
            request,
            {
                "addresses": [a.address for a in owned],
                "domains": [d.domain for d in domains],
                "starredMessages": stats.starredMessages,
                "storedMessages": stats.storedMessages,
                "inboxBytes": stats.inboxBytes,
                "lastMonthOps": await self._store.usage(viewer, lastMonth),
                "defaultDomain": None,
                "nonOwnedInboxes": list(stats.nonOwnedInboxes),
            },
        )

    @app.route("/api/auth/logout", methods=["POST"])
    async def logout(self, request: IRequest) -> bytes:
        """
        L3: the older clients' sign-out.  The web page's session (the only
        session there is) ends, as signing out of the pages ends it; a key
        has none to end.
        """
        if self._sessions is not None:
            await self._sessions.end(request, self._store)
        else:
            # IRequest's addCookie does not declare httpOnly and sameSite;
            # twisted.web's Request, which Klein hands us, takes them.
            cast(Request, request).addCookie(
                b"capture_session", b"", path=b"/", max_age=b"0", httpOnly=True,
                sameSite="strict",
            )
        return jsonBody(request, {"ok": True})

    @app.route("/api/me", methods=["GET"])
    async def me(self, request: IRequest) -> bytes:
        """
        U1: the account of the key.
        """
        viewer = await self._requiredViewer(request)
        account = await self._store.getAccount(viewer)
        month = time.strftime("%Y-%m", time.gmtime())
        ops = await self._store.usage(viewer, month)
        return jsonBody(
            request,
            {
                "_id": account.name,
                "email": None,
                "capturePrivate": account.capturePrivate,
                "messageLimit": account.effectiveLimit(self._messageLimit),
                "apiAccess": 1,
                "recents": [],
                "labels": [],
                "disableSpam": True,
                "moAPICount": ops,
            },
        )

    # API document

    @app.route("/api/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        """
        The OpenAPI 3.1 document of this API (L{capture.web.openapi}); no
        key needed, since it describes the software, not anyone's mail.
        """
        return jsonBody(request, document())

    # Health and metrics: no key needed; they show counts, never mail.

    @app.route("/readyz", methods=["GET"])
    async def readyz(self, request: IRequest) -> bytes:
        """
        200 when the store answers a trivial read in time and every listener
        is bound; 503 with the error body naming what failed otherwise.
        """
        report = await self._readiness.check()
        if not report.ready:
            error = ApiError(503, "Not ready: " + "; ".join(report.failed) + ".", report.failed)
            return jsonBody(request, {**error.body(), "checks": report.checks}, 503)
        return jsonBody(request, {"status": "ready", "checks": report.checks})

    @app.route("/metrics", methods=["GET"])
    def prometheusMetrics(self, request: IRequest) -> bytes:
        """
        Prometheus text exposition of the process's counters.
        """
        if self.metrics is None:
            raise ApiError(404, "Metrics are switched off (--no-metrics).")
        request.setHeader(b"content-type", CONTENT_TYPE)
        return self.metrics.exposition()

    # Webhooks

    @staticmethod
    def _attemptJSON(attempt: WebhookAttempt) -> dict[str, Any]:
        return {
            "time": isoTime(attempt.time),
            "address": attempt.address,
            "messageId": attempt.messageId,
            "url": attempt.url,
            "attempt": attempt.attempt,
            "outcome": attempt.outcome,
            "status": attempt.status,
            "durationMs": attempt.duration,
            "retryScheduled": attempt.retrying,
        }

    def _webhookAttempts(self, account: str, address: str | None) -> list[dict[str, Any]]:
        if self._webhooks is None:
            return []
        return [self._attemptJSON(a) for a in self._webhooks.attempts(account, address)]

    @app.route("/api/webhook-attempts", methods=["GET"])
    async def webhookAttempts(self, request: IRequest) -> bytes:
        """
        The key's account's recent webhook delivery attempts, newest first
        (kept in memory: the last 200 per account, lost at restart).
        """
        viewer = await self._requiredViewer(request)
        return jsonBody(request, self._webhookAttempts(viewer, None))

    @app.route("/api/addresses/<email>/webhook-attempts", methods=["GET"])
    async def addressWebhookAttempts(self, request: IRequest, email: str) -> bytes:
        """
        The recent webhook delivery attempts for one address of the key's
        account, newest first; another account's address is 401, as D2.
        """
        inbox = self._inbox(email)
        viewer = await self._requiredViewer(request)
        await accountrules.notAnotherAccounts(self._store, inbox, viewer)
        return jsonBody(request, self._webhookAttempts(viewer, inbox))

    # Live events

    def liveListeners(self) -> int:
        """
        How many listeners wait for new mail (for C{/metrics}).
        """
        return self._live.listeners()

    def limitStreams(self, total: int, perAddress: int, anonymousLifetime: float) -> None:
        """
        Set the caps on live streams (waits, event streams, websockets) at
        once and per client address, and how long one without a key may
        last (0: for ever).
        """
        self.streams.limit = total
        self.streams.perAddress = perAddress
        self.anonymousStreamLifetime = anonymousLifetime

    def _streamRefusal(self, request: IRequest) -> ApiError | None:
        """
        The 503 a new stream from this client gets now, or L{None}.
        """
        reason = self.streams.refusal(peerHost(request.getClientAddress()))
        if reason is None:
            return None
        request.setHeader(b"retry-after", str(RETRY_AFTER).encode())
        if reason == "address":
            return ApiError(503, "Too many live streams from your address (waits, event "
                            "streams, websockets): close one or try again later.")
        return ApiError(503, "Too many live streams at once, try again later.")

    def _takeStream(self, request: IRequest) -> str | None:
        """
        Count a new stream of this client, or refuse it.

        @return: The client address it counts against.
        @raise ApiError: 503 past a cap.
        """
        refusal = self._streamRefusal(request)
        if refusal is not None:
            raise refusal
        host = peerHost(request.getClientAddress())
        self.streams.take(host)
        return host

    def _anonymousLimit(self, viewer: str | None) -> float | None:
        """
        How long a stream of C{viewer} may last: a stream without a key is
        cut at L{anonymousStreamLifetime}, so anonymous clients cannot hold
        the listener's streams for ever (an C{EventSource} reconnects by
        itself, with C{Last-Event-ID}).
        """
        if viewer is None and self.anonymousStreamLifetime > 0:
            return self.anonymousStreamLifetime
        return None

    @app.route("/api/addresses/<email>/messages/wait", methods=["GET"])
    async def waitForMessage(self, request: IRequest, email: str) -> bytes:
        """
        Wait for a message (C{timeout} seconds, default 30, at most 300):
        the first new one, or with C{since} (an ISO date) the oldest received
        since then, that matches C{subject} and C{from} (substrings, any
        case); 408 when none came in time.
        """
        inbox = self._inbox(email)
        text = _query(request, b"timeout")
        timeout = _whole(text) if text is not None else _DEFAULT_WAIT
        if timeout is None or not 1 <= timeout <= _MAX_WAIT:
            raise ApiError(
                400, "Invalid timeout.", [f"timeout must be a whole number from 1 to {_MAX_WAIT}"]
            )
        since = self._date(request, b"since")
        accepts = messageFilter(_query(request, b"subject"), _query(request, b"from"))
        visible, viewer = await self._listingViewer(request, inbox)
        limit = self._anonymousLimit(viewer)
        if limit is not None:
            timeout = max(1, min(timeout, int(limit)))
        host = self._takeStream(request)
        try:
            return await self._wait(request, inbox, visible, viewer, timeout, since, accepts)
        finally:
            self.streams.give(host)

    async def _wait(
        self, request: IRequest, inbox: str, visible: Visibility, viewer: str | None,
        timeout: int, since: int | None, accepts: Callable[[Copy], bool] | None,
    ) -> bytes:
        arrived: defer.Deferred[Copy] = defer.Deferred()

        def deliver(copy: Copy, _: Any) -> None:
            if not arrived.called:
                arrived.callback(copy)

        from twisted.internet import reactor

        # Listen first, then look: mail committed between the two is seen.
        stop = self._live.listen(Listener(viewer, deliver, accepts=accepts), [inbox])
        arrived.addTimeout(timeout, reactor)
        try:
            if since is not None:
                found = await existingMatch(self._store, inbox, visible, since, accepts)
                if found is not None and not arrived.called:
                    arrived.callback(found)
            copy = await arrived
        except defer.TimeoutError:
            raise ApiError(408, f"No matching message arrived in {timeout} s.") from None
        finally:
            stop()
            if not arrived.called:
                # Cancelled while looking at existing mail: nobody awaits it.
                arrived.addErrback(lambda _: None)
                arrived.cancel()
        return jsonBody(request, messageJSON(copy))

    @app.route("/incoming-messages", methods=["GET"])
    def incomingMessages(self, request: IRequest) -> WebSocketResource:
        """
        Mailsac's websocket (reference 9.1), on the API's own listener; a
        plain HTTP request gets JSON 426.
        """
        upgrade = request.getHeader(b"upgrade") or b""
        if upgrade.lower() != b"websocket":
            request.setHeader(b"upgrade", b"websocket")
            raise ApiError(426, "This is a websocket endpoint: connect with a websocket client.")
        # Checked here, before the upgrade, so a refusal is an HTTP 503;
        # the websocket's protocol counts itself while it is open.
        refusal = self._streamRefusal(request)
        if refusal is not None:
            raise refusal
        return self._websocket

    @app.route("/api/addresses/<email>/events", methods=["GET"])
    async def inboxEvents(self, request: IRequest, email: str) -> bytes:
        """
        Server-Sent Events of one inbox's new mail (the access rule of M1).
        A reconnecting C{EventSource} sends the last id it saw
        (C{Last-Event-ID}): what came meanwhile is sent first, oldest first
        (at most L{sseReplay} messages).
        """
        inbox = self._inbox(email)
        visible, viewer = await self._listingViewer(request, inbox)
        lastId = request.getHeader(b"last-event-id")
        replay = None
        if lastId:
            replay = (inbox, visible, lastId.decode("latin-1").strip())
        return await self._events(request, viewer, [inbox], replay=replay)

    @app.route("/api/inbox/events", methods=["GET"])
    async def unifiedInboxEvents(self, request: IRequest) -> bytes:
        """
        Server-Sent Events of the key's unified inbox (M17's copies).
        """
        viewer = await self._requiredViewer(request)
        return await self._events(request, viewer, [], unified=True)

    async def _events(
        self, request: IRequest, viewer: str | None, inboxes: list[str], unified: bool = False,
        replay: tuple[str, Visibility, str] | None = None,
    ) -> bytes:
        """
        Stream the viewer's new mail in C{inboxes} (or its unified inbox) as
        C{event: message}, and the deletions of copies it could list as
        C{event: removed}, until the client goes (Klein then cancels this
        coroutine) or, without a key, L{anonymousStreamLifetime} is over.
        """
        host = self._takeStream(request)
        try:
            return await self._stream(request, viewer, inboxes, unified, replay)
        finally:
            self.streams.give(host)

    async def _stream(
        self, request: IRequest, viewer: str | None, inboxes: list[str], unified: bool,
        replay: tuple[str, Visibility, str] | None,
    ) -> bytes:
        from twisted.internet import reactor

        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        transport = request.channel.transport  # type: ignore[attr-defined]
        backlog = Backlog(self.sseBacklog, transport.abortConnection)
        request.registerProducer(backlog, True)  # type: ignore[attr-defined]

        def write(data: bytes) -> None:
            if backlog.admit(len(data)):
                request.write(data)

        # While the missed mail is replayed, new mail and deletions wait
        # here, so the stream stays in order and sends nothing twice.
        held: list[Copy | RemovedCopy] | None = [] if replay is not None else None

        def deliver(copy: Copy, _: Any) -> None:
            if held is not None:
                held.append(copy)
            else:
                write(sseEvent(copy))

        def removed(gone: RemovedCopy) -> None:
            if held is not None:
                held.append(gone)
            else:
                write(sseRemoved(gone))

        listener = Listener(viewer, deliver, unified=unified, removed=removed)
        stop = self._live.listen(listener, inboxes)
        heartbeat = LoopingCall(write, b": heartbeat\n\n")
        heartbeat.clock = reactor
        lifetime: IDelayedCall | None = None
        try:
            # The first line sends the headers: the client knows it is
            # listening before any mail comes.
            write(b": listening\n\n")
            if replay is not None:
                sent = 0
                for copy in await self._missed(*replay):
                    write(sseEvent(copy))
                    sent = copy.uid
                for item in held or ():
                    if isinstance(item, RemovedCopy):
                        write(sseRemoved(item))
                    elif item.uid > sent:
                        write(sseEvent(item))
                held = None
            heartbeat.start(self.sseHeartbeat, now=False)
            ended: defer.Deferred[None] = defer.Deferred()
            limit = self._anonymousLimit(viewer)
            if limit is not None:
                lifetime = reactor.callLater(limit, ended.callback, None)
            await ended
            # The end of an anonymous stream's life: the client reconnects.
            write(b": stream lifetime over, reconnect\n\n")
        finally:
            if lifetime is not None and lifetime.active():
                lifetime.cancel()
            stop()
            if heartbeat.running:
                heartbeat.stop()
            if request.channel is not None:  # type: ignore[attr-defined]
                request.unregisterProducer()  # type: ignore[attr-defined]
        return b""


    async def _missed(self, inbox: str, visible: Visibility, lastId: str) -> list[Copy]:
        """
        The copies of C{inbox} the viewer may list that came after copy
        C{lastId}, oldest first; none when that id is not of this inbox.
        """
        try:
            last = await self._store.getCopy(lastId)
        except NotFound:
            return []
        if last.inbox != inbox:
            return []
        newest = await self._store.listInbox(inbox, visible, limit=self.sseReplay)
        return [c for c in reversed(newest) if c.uid > last.uid]

    # Mail client autoconfig

    @app.route("/.well-known/autoconfig/mail/config-v1.1.xml", methods=["GET"])
    @app.route("/mail/config-v1.1.xml", methods=["GET"])
    def clientConfig(self, request: IRequest) -> bytes:
        """
        Thunderbird's autoconfig file: the enabled mail listeners, for the
        account wizard (no key: it holds no mail, only host and ports).
        """
        if self._mailSettings is None:
            raise ApiError(404, "No mail client configuration here")
        address = _query(request, b"emailaddress") or ""
        # The domain as the store keeps it (U-labels, lower case), whatever
        # spelling the wizard sends.
        inbox = inboxOf(address)
        domain = inbox.rpartition("@")[2] if inbox is not None else None
        base = request.URLPath().click(b"/api/openapi.json")
        return textBody(
            request,
            self._mailSettings.clientConfig(str(base), domain),
            b"application/xml; charset=utf-8",
            None,
        )


_DEFAULT_WAIT = 30
_MAX_WAIT = 300
