# -*- test-case-name: tests.test_openapi -*-
"""
The OpenAPI 3.1 document of Capture's HTTP API, served at
C{/api/openapi.json}.

It is built as data here rather than kept as a JSON file so that what many
operations share is written once: the key schemes, the path and query
parameters, the error answers, and the C{EmailMessage} fields that the
websocket frame and the webhook body extend.  C{tests/test_openapi.py}
keeps it true: every route of L{capture.web.api.MailsacAPI} is an operation
here and every operation a route, and real answers of a running server are
validated against these schemas (which refuse unknown fields, so a field
added to L{capture.emailmessage.messageJSON} without this document fails).

Where the Mailsac reference (C{reference/mailsac-api.md}) leaves something
UNKNOWN or contradicts itself, the operation's description says what
Capture chose; C{docs/api.md} lists the same choices for people.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

Json = dict[str, Any]

FOLDERS = ("inbox", "all", "spam", "trash", "sent", "drafts")
EXTENSION = "Capture extensions"


def _schema(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _parameter(name: str) -> Json:
    return {"$ref": f"#/components/parameters/{name}"}


def _response(name: str) -> Json:
    return {"$ref": f"#/components/responses/{name}"}


def _json(description: str, schema: Json) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str, mediaType: str, schema: Json | None = None) -> Json:
    return {"description": description,
            "content": {mediaType: {"schema": schema or {"type": "string"}}}}


def _arrayOf(schema: Json, maxItems: int | None = None) -> Json:
    array: Json = {"type": "array", "items": schema}
    if maxItems is not None:
        array["maxItems"] = maxItems
    return array


def _object(properties: Json, optional: tuple[str, ...] = (), closed: bool = True) -> Json:
    """
    An object schema; every property is required unless named in
    C{optional}, and C{closed} refuses properties not listed (what Capture
    answers is exactly this).
    """
    schema: Json = {"type": "object", "properties": properties,
                    "required": [name for name in properties if name not in optional]}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _pathParameter(name: str, description: str, schema: Json | None = None) -> Json:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


def _query(name: str, description: str, schema: Json | None = None,
           required: bool = False) -> Json:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


# Who may call: a key in any transport, or (for public inboxes) none.
_KEY: list[Json] = [{"MailsacKeyHeader": []}, {"MailsacKeyQuery": []}]
_KEY_OR_NONE = [{}, *_KEY]
_NO_KEY: list[Json] = []

_STRING_OR_NULL = {"type": ["string", "null"]}
_ISO_DATE = {"type": "string", "format": "date-time",
             "description": "ISO 8601 UTC with milliseconds, e.g. 2020-07-05T22:25:41.408Z"}
_MD5 = {"type": "string", "pattern": "^[0-9a-f]{32}$"}


def _messageProperties() -> Json:
    """
    The fields of L{capture.emailmessage.messageJSON}, in its order.
    """
    recipients = _arrayOf(_schema("EmailRecipient"))
    return {
        "_id": {"type": "string", "description": "The copy id, `<queue id>-<n>`.",
                "examples": ["9j1rpnMNc2KbgH9hzk0umIgq-0"]},
        "from": recipients,
        "to": recipients,
        "cc": recipients,
        "bcc": recipients,
        "subject": {"type": "string"},
        "savedBy": {**_STRING_OR_NULL,
                    "description": "The account that starred this copy, else null."},
        "inbox": {"type": "string", "description": "The inbox, lower case, `+tag` removed."},
        "originalInbox": {"type": "string", "description": "The recipient address as sent."},
        "domain": {"type": "string"},
        "received": _ISO_DATE,
        "size": {"type": "integer", "minimum": 0, "description": "Octets of the raw message."},
        "attachments": {**_arrayOf(_MD5), "description": "The md5 of each attachment."},
        "ip": {"type": "string", "description": "The SMTP client's address."},
        "via": {"type": "string", "description": "The address Capture received it on."},
        "folder": {"type": "string", "enum": list(FOLDERS)},
        "labels": _arrayOf({"type": "string"}),
        "read": {"type": ["boolean", "null"], "description": "null until set (M16)."},
        "rtls": {"type": "boolean", "description": "Whether it arrived over TLS."},
        "links": _arrayOf({"type": "string"}),
        "spam": {"type": "number", "description": "Always 0: Capture has no spam filter."},
    }


def _bodyProperties() -> Json:
    """
    Mailsac's C{EmailMessageBodyProps}: what the websocket frame and the
    webhook body add to an C{EmailMessage}.
    """
    return {
        "text": {**_STRING_OR_NULL, "description": "The plain-text body."},
        "html": {**_STRING_OR_NULL, "description": "The HTML body."},
        "body": {**_STRING_OR_NULL, "description": "The HTML body again (Mailsac's S1 name)."},
        "raw": {"type": "string", "description": "The whole message as stored."},
        "headers": {"type": "object", "description": "Lower-case names; a value is a string, "
                    "or an array of strings for a repeated header.",
                    "additionalProperties": {"anyOf": [{"type": "string"},
                                                       _arrayOf({"type": "string"})]}},
    }


def _components() -> Json:
    message = _messageProperties()
    return {
        "securitySchemes": {
            "MailsacKeyHeader": {
                "type": "apiKey", "in": "header", "name": "Mailsac-Key",
                "description": "An API key (`capture key create`). The header name is "
                "matched in any case. The key may also come as the `_mailsacKey` query "
                "parameter, or as a `_mailsacKey` string field of a JSON body on POST and "
                "PUT (OpenAPI has no scheme for a body field; the request bodies list it). "
                "A key that is not a live key is 401 even where no key is needed. Every "
                "call made with a key counts one op of its account (`moAPICount`).",
            },
            "MailsacKeyQuery": {
                "type": "apiKey", "in": "query", "name": "_mailsacKey",
                "description": "The API key in the query string (Mailsac calls this the "
                "least secure way: URLs end up in logs).",
            },
            "WebSocketKey": {
                "type": "apiKey", "in": "query", "name": "key",
                "description": "The API key of the websocket `/incoming-messages`.",
            },
        },
        "parameters": {
            "email": _pathParameter(
                "email", "An email address. Matched in any case; a `+tag` is removed "
                "(`a+x@example.com` is the inbox `a@example.com`). A malformed address, "
                "an encoded slash or a NUL is 400.",
                {"type": "string", "examples": ["someone@example.com"]}),
            "messageId": _pathParameter(
                "messageId", "A message (copy) `_id`. An id of another inbox is 404.",
                {"type": "string", "examples": ["9j1rpnMNc2KbgH9hzk0umIgq-0"]}),
            "domain": _pathParameter("domain", "A domain name.",
                                     {"type": "string", "examples": ["example.com"]}),
            "limit": _query("limit", "How many messages at most.",
                            {"type": "integer", "minimum": 0, "maximum": 1000, "default": 20}),
            "until": _query("until", "Only messages received up to this ISO 8601 date "
                            "(pagination: pass the `received` of the last one seen).",
                            {"type": "string", "format": "date-time"}),
            "download": _query("download", "Any value: answer with `Content-Disposition: "
                               "attachment` and a file name.", {"type": "string"}),
        },
        "responses": {
            "BadRequest": _json("A malformed parameter or body (see `validationErrors`).",
                                _schema("Error")),
            "Unauthorized": _json("No key where one is needed, a key that is not a live key, "
                                  "or another account's address.", _schema("Error")),
            "Forbidden": _json("`OwnedByAnotherUser`: the inbox is another account's.",
                               _schema("Error")),
            "NotFound": _json("No such message here (`Message not found by id.`): also a "
                              "message of another inbox, or one starred by someone else.",
                              _schema("Error")),
            "PayloadTooLarge": _json("A request body over 1 MiB, refused from its "
                                     "Content-Length (or as a chunked body crosses it) before "
                                     "it is read.", _schema("Error")),
            "InsufficientStorage": _json("The store has no room for this change even in the "
                                         "reserve it keeps for deletes and purges "
                                         "(`--store-reserve`): delete or purge mail, then "
                                         "try again.", _schema("Error")),
        },
        "schemas": {
            "Error": _object({
                "message": {"type": "string"},
                "error": {"type": "string", "description": "The HTTP status phrase."},
                "validationErrors": _arrayOf({"type": "string"}),
            }, optional=("validationErrors",)),
            "EmailRecipient": _object({"address": {"type": "string"},
                                       "name": {"type": "string"}}),
            "EmailMessage": {
                **_object(message),
                "description": "One copy of a message: every field is always present, and "
                "list fields are `[]`, never null. Mailsac's `EmailMessageShort` is the same "
                "object (star, /inbox, search, domain listings).",
            },
            "EmailMessageWithBodies": {
                **_object({**message, **_bodyProperties()}),
                "description": "An `EmailMessage` with its bodies (Mailsac's "
                "`EmailMessageBodyProps`): the websocket's email frame and the webhook body.",
            },
            "EmailAddress": {
                **_object({
                    "_id": {"type": "string", "description": "The address."},
                    "owner": {"type": "string", "description": "The owning account."},
                    "forward": _STRING_OR_NULL,
                    "enablews": {"type": "boolean"},
                    "webhook": _STRING_OR_NULL,
                    "webhookSlack": {"type": "null", "description": "Slack is not supported."},
                    "webhookSlackToFrom": {"type": "null"},
                    "catchAll": {**_STRING_OR_NULL,
                                 "description": "The domain, for its catch-all `*@domain`."},
                    "implicit": {"type": "boolean", "description": "The account's through "
                                 "its custom domain, with no settings of its own yet."},
                    "password": {"type": "null", "description": "Never echoed."},
                    "info": {"type": "string"},
                    "created": _ISO_DATE,
                    "updated": _ISO_DATE,
                }),
                "description": "An owned (enhanced) address.",
            },
            "UnownedAddress": {
                **_object({"_id": {"type": "string"}, "info": {"type": "string"},
                           "enablews": {"type": "boolean"}, "forward": {"type": "null"},
                           "webhook": {"type": "null"}}),
                "description": "D2 for an address nobody owns: no `owner`. Capture has no "
                "`inbox-<hex>` alternate addresses, so no `encryptedInbox` either.",
            },
            "AddressSettings": {
                **_object({
                    "info": _STRING_OR_NULL,
                    "forward": {**_STRING_OR_NULL, "description": "\"\" or null: none."},
                    "enablews": {"type": "boolean"},
                    "webhook": {**_STRING_OR_NULL, "pattern": "^https?://",
                                "description": "An http(s) URL; \"\" or null: none."},
                    "_mailsacKey": {"type": "string"},
                }, optional=("info", "forward", "enablews", "webhook", "_mailsacKey"),
                    closed=False),
                "description": "Mailsac's `UpdatePrivateAddressForwarding`. Fields left out "
                "are unchanged; `webhookSlack` and `webhookSlackToFrom` are accepted and "
                "ignored (no Slack).",
            },
            "KeyBody": {
                **_object({"_mailsacKey": {"type": "string"}}, optional=("_mailsacKey",),
                          closed=False),
                "description": "A body is not needed; a JSON body may carry the key.",
            },
            "AttachmentMeta": _object({
                "checksum": _MD5,
                "contentDisposition": {"type": "string"},
                "contentId": {**_STRING_OR_NULL, "description": "Without `<>`."},
                "contentType": {"type": "string"},
                "fileName": _STRING_OR_NULL,
                "length": {"type": "integer", "minimum": 0,
                           "description": "Decoded size in octets."},
                "transferEncoding": {"type": "string"},
            }),
            "Domain": {
                **_object({
                    "_id": {"type": "string", "description": "The domain."},
                    "owner": {"type": "string"},
                    "isPrivate": {"type": "boolean"},
                    "created": _ISO_DATE,
                    "updated": _ISO_DATE,
                    "enablews": {"type": "boolean"},
                    "hosted": {"type": "boolean"},
                    "isDefault": {"type": "boolean"},
                    "verified": {"type": "boolean"},
                    "verifiedMx": {"type": "boolean"},
                    "verificationTxt": _STRING_OR_NULL,
                    "lastVerificationErrors": _arrayOf({"type": "string"}),
                }),
                "description": "A custom domain an account claimed. Capture checks no DNS: "
                "a claimed domain is in use at once.",
            },
            "CurrentUserInfo": {
                **_object({
                    "_id": {"type": "string", "description": "The account name."},
                    "email": {"type": "null"},
                    "capturePrivate": {"type": "boolean",
                                       "description": "Captured mail is starred by its "
                                       "sender's account, so private to it."},
                    "messageLimit": {"type": "integer", "minimum": 0,
                                     "description": "The limit on the account's stored mail "
                                     "that applies: its own, else the server's default "
                                     "(`--message-limit`); 0: no limit."},
                    "apiAccess": {"const": 1},
                    "recents": _arrayOf({"type": "string"}),
                    "labels": _arrayOf({"type": "string"}),
                    "disableSpam": {"const": True},
                    "moAPICount": {"type": "integer", "minimum": 0,
                                   "description": "Ops (calls with a key) this month, UTC."},
                }),
                "description": "A subset of Mailsac's `CurrentUserInfo`: no billing fields.",
            },
            "CurrentUserStats": _object({
                "addresses": {**_arrayOf({"type": "string"}),
                              "description": "The account's owned addresses."},
                "domains": {**_arrayOf({"type": "string"}),
                            "description": "The account's custom domains."},
                "starredMessages": {"type": "integer", "minimum": 0},
                "storedMessages": {"type": "integer", "minimum": 0},
                "inboxBytes": {"type": "integer", "minimum": 0},
                "lastMonthOps": {"type": "integer", "minimum": 0},
                "defaultDomain": {"type": "null", "description": "Capture has none."},
                "nonOwnedInboxes": {**_arrayOf({"type": "string"}),
                                    "description": "Inboxes the account does not own where "
                                    "it starred mail (Mailsac's old shape; at most 1000)."},
            }),
            "WebhookAttempt": _object({
                "time": _ISO_DATE,
                "address": {"type": "string"},
                "messageId": {"type": "string", "description": "The copy `_id` delivered."},
                "url": {"type": "string"},
                "attempt": {"type": "integer", "minimum": 1,
                            "description": "1 for the first try, 2 for the first retry, ..."},
                "outcome": {"type": "string",
                            "description": "The HTTP status as text (`\"200\"`), or `timeout`, "
                            "`connection refused`, `host not found`, `TLS error`, `not an HTTP "
                            "response`, `connection closed`, `error`, `dropped` (the queue "
                            "was full), `destination not allowed` (the server's webhook "
                            "policy; nothing was sent), `message deleted` or `webhook "
                            "removed` (no POST made)."},
                "status": {"type": ["integer", "null"],
                           "description": "The HTTP status, when the receiver answered."},
                "durationMs": {"type": "integer", "minimum": 0},
                "retryScheduled": {"type": "boolean"},
            }),
            "WebSocketFrame": {
                "description": "A JSON text frame of `/incoming-messages`.",
                "oneOf": [
                    _object({"status": {"const": 200}, "msg": {"const": "Listening"},
                             "addresses": _arrayOf({"type": "string"}),
                             "domains": _arrayOf({"type": "string"})}),
                    _object({"status": {"const": 200},
                             "email": _schema("EmailMessageWithBodies")}),
                    _object({"status": {"type": "integer", "minimum": 400, "maximum": 499},
                             "msg": {"type": "string"}}),
                ],
            },
        },
    }


def _operation(operationId: str, summary: str, description: str, tag: str,
               responses: Json, parameters: list[Json] | None = None,
               security: list[Json] | None = None, requestBody: Json | None = None,
               extension: bool = False) -> Json:
    operation: Json = {"operationId": operationId, "summary": summary,
                       "description": description, "tags": [tag]}
    if parameters:
        operation["parameters"] = parameters
    if requestBody is not None:
        operation["requestBody"] = requestBody
    operation["responses"] = responses
    if security is not None:
        operation["security"] = security
    if extension:
        operation["x-capture-extension"] = True
        operation["tags"] = [tag, EXTENSION] if tag != EXTENSION else [tag]
    return operation


def _body(schema: Json, description: str, required: bool = False) -> Json:
    return {"description": description, "required": required,
            "content": {"application/json": {"schema": schema}}}


_KEY_BODY = _body(_schema("KeyBody"), "Optional: a JSON body may carry `_mailsacKey`.")


def _refusals(*codes: str) -> Json:
    names = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden",
             "404": "NotFound", "413": "PayloadTooLarge"}
    return {code: _response(names[code]) for code in codes}


_P = _parameter
# /readyz's checks: each check's name to "ok" or what failed.
_CHECKS: Json = {"type": "object", "additionalProperties": {"type": "string"}}
_MESSAGE = [_P("email"), _P("messageId")]
_MESSAGES = _arrayOf(_schema("EmailMessage"))
_PUBLIC_READ = ("Public inboxes are read without a key (`--require-key` closes them: then "
                "a key is needed, UNKNOWN in the reference). An owned address or a private "
                "domain's address is its owner's only: no key is 401, another account's key "
                "403 (`OwnedByAnotherUser`). ")
_FLAG = ("A key is needed: any account may change an unstarred copy in a public inbox; in an "
         "owned inbox only its owner may (another account's starred copy is not found). ")
_COPY_READ = ("The copy must be in `{email}`'s inbox: an id of another inbox is 404, as is a "
              "copy starred by another account in a public inbox (its existence is nobody "
              "else's business). ")


def _messagePaths() -> Json:
    read = _refusals("400", "401", "403", "404")
    return {
        "/api/addresses/{email}/messages": {
            "get": _operation(
                "listMessages", "List an inbox's messages (M1)",
                "Newest first. Paginate with `until` and `limit` (0 to 1000, default 20; "
                "out of range is 400). " + _PUBLIC_READ
                + "Starred copies appear only to the account that starred them.",
                "Messages", {"200": _json("The messages.", _MESSAGES),
                             **_refusals("400", "401", "403")},
                [_P("email"), _P("limit"), _P("until")], _KEY_OR_NONE),
            "delete": _operation(
                "purgeInbox", "Delete every message of an owned inbox (M2)",
                "Only the owner of the address or of its domain may purge (else 401). "
                "Starred messages are kept (the reference says so for this route). Mailsac's "
                "client sends `until`/`limit`; they have no effect.",
                "Messages", {"204": {"description": "Purged."}, **_refusals("400", "401")},
                [_P("email")], _KEY),
        },
        "/api/addresses/{email}/message-count": {
            "get": _operation(
                "countMessages", "Count an inbox's messages (M3)",
                "The count a listing by the same viewer would show. " + _PUBLIC_READ,
                "Messages", {"200": _json("The count.", _object(
                    {"count": {"type": "integer", "minimum": 0}, "inbox": {"type": "string"}})),
                    **_refusals("400", "401", "403")},
                [_P("email")], _KEY_OR_NONE),
        },
        "/api/addresses/starred/messages": {
            "get": _operation(
                "listStarred", "The messages the key's account starred (M4)",
                "Wherever they are, newest first; with `capturePrivate` this includes the "
                "account's captured mail. Capture also takes `limit` (0 to 1000, default 20), "
                "which Mailsac does not document.",
                "Messages", {"200": _json("The starred messages.", _MESSAGES),
                             **_refusals("400", "401")}, [_P("limit")], _KEY),
        },
        "/api/addresses/{email}/messages/{messageId}": {
            "get": _operation(
                "getMessage", "One message's metadata (M5)", _COPY_READ + _PUBLIC_READ,
                "Messages", {"200": _json("The message.", _schema("EmailMessage")), **read},
                _MESSAGE, _KEY_OR_NONE),
            "delete": _operation(
                "deleteMessage", "Delete one message (M6)",
                "No trash, no undo; starred copies too. Public inboxes' messages may be "
                "deleted by anyone, as at Mailsac; in an owned inbox only the owner may.",
                "Messages", {"200": _json("Deleted.", _object({
                    "message": {"const": "Message was deleted."}, "_id": {"type": "string"},
                    "inbox": {"type": "string"}})), **read},
                _MESSAGE, _KEY_OR_NONE),
        },
        "/api/raw/{email}/{messageId}": {
            "get": _operation(
                "getRaw", "The raw message (M7)",
                "Exactly as stored: Capture's `Received:` line, then the message as sent. "
                + _COPY_READ, "Message bodies",
                {"200": _text("The message.", "text/plain"), **read},
                [*_MESSAGE, _P("download")], _KEY_OR_NONE),
        },
        "/api/text/{email}/{messageId}": {
            "get": _operation(
                "getText", "The plain-text body (M11)",
                "For HTML-only mail, a plain rendering of the HTML; empty when there is no "
                "body. " + _COPY_READ, "Message bodies",
                {"200": _text("The text.", "text/plain"), **read},
                [*_MESSAGE, _P("download")], _KEY_OR_NONE),
        },
        "/api/body/{email}/{messageId}": {
            "get": _operation(
                "getSanitizedBody", "The HTML body, sanitized (M9)",
                "Sanitized by nh3: no scripts, event handlers or styles, and, as at Mailsac, "
                "no images and no links (their text stays), so nothing remote loads. For "
                "text-only mail, the text in a `<pre>`. " + _COPY_READ, "Message bodies",
                {"200": _text("The HTML.", "text/html"), **read},
                [*_MESSAGE, _P("download")], _KEY_OR_NONE),
        },
        "/api/dirty/{email}/{messageId}": {
            "get": _operation(
                "getDirtyBody", "The HTML body as sent (M10)",
                "Nothing removed; `cid:` images are inlined as `data:` URIs so the page is "
                "whole on its own (the reference's inferred reading). " + _COPY_READ,
                "Message bodies", {"200": _text("The HTML.", "text/html"), **read},
                [*_MESSAGE, _P("download")], _KEY_OR_NONE),
        },
        "/api/addresses/{email}/messages/{messageId}/headers": {
            "get": _operation(
                "getHeaders", "The message's headers (M8)",
                "`messageHeadersFormat` (or the older name `format`): `json` (default; lower "
                "case names, each to an array of values), `json-ordered` (name/value pairs in "
                "order) or `plain` (text). Another value is 400. " + _COPY_READ, "Messages",
                _headersResponses(read), _headersParameters(), _KEY_OR_NONE),
        },
        "/api/headers/{email}/{messageId}": {
            "get": _operation(
                "getHeadersLegacy", "The message's headers, older path",
                "The path older clients (the `mailsac` npm package) call; the same as "
                "`/api/addresses/{email}/messages/{messageId}/headers`.", "Legacy",
                _headersResponses(read), _headersParameters(), _KEY_OR_NONE),
        },
        "/api/addresses/{email}/messages/{messageId}/star": {
            "put": _operation(
                "toggleStar", "Star or unstar (M12)",
                "A toggle, as at Mailsac: stars the copy for the key's account, or unstars it "
                "if that account starred it. A starred copy in a public inbox is then the "
                "starring account's only, and never recycled by retention (the reference "
                "contradicts itself on recycling; Capture never recycles starred mail). "
                "Answers the whole `EmailMessage` (Mailsac's `EmailMessageShort` is a "
                "subset).", "Messages",
                {"200": _json("The message, `savedBy` set or null.", _schema("EmailMessage")),
                 **read, "413": _response("PayloadTooLarge")},
                _MESSAGE, _KEY, _KEY_BODY),
        },
        "/api/addresses/{email}/messages/{messageId}/labels/{label}": {
            verb: _operation(
                f"{'add' if verb == 'put' else 'remove'}Label",
                f"{'Add' if verb == 'put' else 'Remove'} a label "
                f"({'M13' if verb == 'put' else 'M14'})",
                "A no-op when already so. A label has 1 to 64 characters; a message has at "
                "most 20 labels (Mailsac gives no figure for this route). " + _FLAG,
                "Message state",
                {"200": _json("The labels now.", _object(
                    {"_id": {"type": "string"}, "labels": _arrayOf({"type": "string"})})),
                 **read, **({"413": _response("PayloadTooLarge")} if verb == "put" else {})},
                [*_MESSAGE, _pathParameter("label", "The label, URL-encoded.",
                                           {"type": "string", "minLength": 1,
                                            "maxLength": 64})],
                _KEY, _KEY_BODY if verb == "put" else None)
            for verb in ("put", "delete")
        },
        "/api/addresses/{email}/messages/{messageId}/labels": {
            "put": _operation(
                "replaceLabels", "Replace the labels (L1, legacy)",
                "The older clients' route: the body's `labels` replace the message's labels; "
                "at most 20, the same limit as M13 (the old client's \"Maximum 3 labels per "
                "message\" is not kept: one limit for both routes). " + _FLAG,
                "Legacy",
                {"200": _json("The labels now.", _object(
                    {"_id": {"type": "string"}, "labels": _arrayOf({"type": "string"})})),
                 **read, "413": _response("PayloadTooLarge")},
                _MESSAGE, _KEY,
                _body(_object({"labels": _arrayOf({"type": "string", "minLength": 1,
                                                   "maxLength": 64}, 20),
                               "_mailsacKey": {"type": "string"}},
                              optional=("_mailsacKey",), closed=False),
                      "The new labels.", required=True)),
        },
        "/api/addresses/{email}/messages/{messageId}/folder/{folder}": {
            "put": _operation(
                "setFolder", "Move to a folder (M15)",
                "One of Mailsac's folders (the old docs' `sent` and `drafts` included); "
                "another is 400. " + _FLAG, "Message state",
                {"200": _json("The folder now.", _object(
                    {"_id": {"type": "string"}, "folder": {"enum": list(FOLDERS)}})),
                 **read, "413": _response("PayloadTooLarge")},
                [*_MESSAGE, _pathParameter("folder", "The folder.",
                                           {"type": "string", "enum": list(FOLDERS)})],
                _KEY, _KEY_BODY),
        },
        "/api/addresses/{email}/messages/{messageId}/read/{state}": {
            "put": _operation(
                "setRead", "Mark read or unread (M16)",
                "Answers `read` (the S1 schema's `folder` is a mistake of the reference's "
                "source). " + _FLAG, "Message state",
                {"200": _json("The read state now.", _object(
                    {"_id": {"type": "string"}, "read": {"type": "boolean"}})),
                 **read, "413": _response("PayloadTooLarge")},
                [*_MESSAGE, _pathParameter("state", "`true` or `false`; anything else is 400.",
                                           {"type": "string", "enum": ["true", "false"]})],
                _KEY, _KEY_BODY),
        },
        "/api/addresses/{email}/messages/{messageId}/attachments": {
            "get": _operation(
                "listAttachments", "The message's attachments (A1)",
                "An array (the reference's examples and clients; S1 declares one object). "
                + _COPY_READ, "Attachments",
                {"200": _json("The attachments.", _arrayOf(_schema("AttachmentMeta"))), **read},
                _MESSAGE, _KEY_OR_NONE),
        },
        "/api/addresses/{email}/messages/{messageId}/attachments/{identifier}": {
            "get": _operation(
                "getAttachment", "One attachment's bytes (A2)",
                "Named by its md5, its content-id (with or without `<>`) or its file name. "
                "Answered with the attachment's own Content-Type and `Content-Disposition: "
                "attachment`. " + _COPY_READ, "Attachments",
                {"200": {"description": "The decoded attachment.",
                         "content": {"*/*": {"schema": {"type": "string",
                                                        "contentMediaType":
                                                            "application/octet-stream"}}}},
                 **read},
                [*_MESSAGE, _pathParameter("identifier", "md5, content-id or file name.")],
                _KEY_OR_NONE),
        },
    }


def _headersParameters() -> list[Json]:
    formats = {"type": "string", "enum": ["json", "json-ordered", "plain"], "default": "json"}
    return [*_MESSAGE, _query("messageHeadersFormat", "The format.", formats),
            _query("format", "The older name of `messageHeadersFormat`.", formats),
            _P("download")]


def _headersResponses(read: Json) -> Json:
    return {
        "200": {"description": "The headers.", "content": {
            "application/json": {"schema": {"oneOf": [
                {"type": "object", "additionalProperties": _arrayOf({"type": "string"})},
                _arrayOf(_object({"name": {"type": "string"}, "value": {"type": "string"}})),
            ]}},
            "text/plain": {"schema": {"type": "string"}},
        }},
        **read,
    }


def _accountPaths() -> Json:
    messages = _arrayOf(_schema("EmailMessage"))
    return {
        "/api/inbox": {
            "get": _operation(
                "unifiedInbox", "Every message of the account (M17)",
                "Across its owned addresses and domains and its starred mail, newest first. "
                "`skip` pages; `since` keeps messages received from that date on. The answer "
                "carries `limit` and `skip` back (not `since`, which only the old docs show).",
                "Account inbox",
                {"200": _json("A page of messages.", _object({
                    "messages": messages, "unread": {"type": "integer", "minimum": 0},
                    "limit": {"type": "integer"}, "skip": {"type": "integer"}})),
                 **_refusals("400", "401")},
                [_P("limit"), _query("skip", "How many to skip.",
                                     {"type": "integer", "minimum": 0, "default": 0}),
                 _query("since", "Only messages received from this ISO 8601 date on.",
                        {"type": "string", "format": "date-time"})], _KEY),
        },
        "/api/inbox-filter": {
            "get": _operation(
                "filterInbox", "Filter the account's messages (M18)",
                "Messages matching every condition given (substrings, any case; `andTo` also "
                "matches the inbox). At least one condition, else 400. At most 100 results.",
                "Account inbox",
                {"200": _json("The matches.", _object({"messages": _arrayOf(
                    _schema("EmailMessage"), 100)})), **_refusals("400", "401")},
                [_query("andSubjectIncludes", "Subject contains."),
                 _query("andFrom", "A sender address contains."),
                 _query("andTo", "A recipient address or the inbox contains."),
                 _query("andRead", "Read state.", {"type": "string", "enum": ["true", "false"]})],
                _KEY),
        },
        "/api/inbox-search": {
            "get": _operation(
                "searchInbox", "Search the account's messages (M19)",
                "Messages whose subject, sender or recipients contain `query`. At most 100.",
                "Account inbox",
                {"200": _json("The matches.", _object({"query": {"type": "string"},
                                                       "messages": _arrayOf(
                                                           _schema("EmailMessage"), 100)})),
                 **_refusals("400", "401")},
                [_query("query", "What to look for (required).", required=True)], _KEY),
        },
        "/api/me": {
            "get": _operation(
                "getMe", "The key's account (U1)",
                "With no key, or a bad or revoked one, 401 with the error body (the old docs "
                "say `null`; the reference leaves it UNKNOWN and Capture follows S1).",
                "Account", {"200": _json("The account.", _schema("CurrentUserInfo")),
                            **_refusals("401")}, None, _KEY),
        },
        "/api/me/stats": {
            "get": _operation(
                "getMyStats", "The key's account's figures (U2)",
                "Counts of what the account holds. `storedMessages` and `inboxBytes` cover "
                "its owned addresses, private domains and the mail it starred anywhere "
                "(what `messageLimit` covers); `lastMonthOps` is last calendar month's (UTC) "
                "count, this month's is `/me`'s `moAPICount`. Mailsac's `overrideAccountId` "
                "may only name the key's own account (403 otherwise).",
                "Account", {"200": _json("The figures.", _schema("CurrentUserStats")),
                            **_refusals("401", "403")},
                [_query("overrideAccountId", "Only the key's own account.")], _KEY),
        },
        "/api/auth/logout": {
            "post": _operation(
                "logout", "Sign out of the web site (L3, legacy)",
                "The older clients' sign-out: ends the web page's session, if the request "
                "has one, and answers `{\"ok\": true}` either way (an API key has no "
                "session to end).", "Legacy",
                {"200": _json("Signed out.", _object({"ok": {"const": True}}))},
                None, _NO_KEY),
        },
    }


def _addressPaths() -> Json:
    address = _refusals("400", "401")
    settings = _body(_schema("AddressSettings"), "The settings to change.")
    return {
        "/api/addresses": {
            "get": _operation(
                "listAddresses", "The account's owned addresses (D1)", "", "Addresses",
                {"200": _json("The addresses.", _arrayOf(_schema("EmailAddress"))),
                 **_refusals("401")}, None, _KEY),
        },
        "/api/addresses/{email}": {
            "get": _operation(
                "getAddress", "An address (D2)",
                "The account's own (an `EmailAddress`; one of its custom domains with "
                "`implicit: true` until it has settings of its own), or one nobody owns "
                "(without `owner`); another account's is 401.", "Addresses",
                {"200": _json("The address.", {"oneOf": [_schema("EmailAddress"),
                                                         _schema("UnownedAddress")]}),
                 **address}, [_P("email")], _KEY),
            "post": _operation(
                "reserveAddress", "Reserve an address (D3)",
                "Its mail, past and future, becomes the account's only. No credits: any "
                "number may be reserved. Already yours: 400; another account's: 401. An "
                "address of your own domain may be reserved (it gets settings of its own); "
                "a catch-all `*@domain` only in your own domain (nobody's: 400). An "
                "optional body of settings (as for PUT) applies at once; a bad one is 400 "
                "and reserves nothing.", "Addresses",
                {"200": _json("The reserved address.", _schema("EmailAddress")),
                 **address, "413": _response("PayloadTooLarge")},
                [_P("email")], _KEY, settings),
            "put": _operation(
                "updateAddress", "Change an owned address's settings (D4)",
                "Answers the updated address (the reference infers so from L2). An address "
                "of your own domain gets a record of its own. Not yours: 400; another "
                "account's: 401.", "Addresses",
                {"200": _json("The updated address.", _schema("EmailAddress")),
                 **address, "413": _response("PayloadTooLarge")},
                [_P("email")], _KEY, settings),
            "delete": _operation(
                "releaseAddress", "Release an owned address (D5)",
                "Its future mail is public again, and so is the mail it holds (ownership is "
                "looked up when mail is read), unless `deleteAddressMessages=true` deletes it "
                "first: all but starred mail, as the purge (M2) does. Not yours: 400; "
                "another account's: 401.", "Addresses",
                {"200": _json("Released.", _object({"message": {"type": "string"},
                                                    "_id": {"type": "string"}})),
                 **address},
                [_P("email"), _query("deleteAddressMessages",
                                     "Delete the address's unstarred mail before releasing it.",
                                     {"type": "string", "enum": ["true", "false", "1", "0"]})],
                _KEY),
        },
        "/api/private-address-forwarding/{email}": {
            "put": _operation(
                "updateAddressLegacy", "Change an owned address's settings (L2)",
                "The older path for D4, still in Mailsac's webhook and websocket docs.",
                "Legacy",
                {"200": _json("The updated address.", _schema("EmailAddress")),
                 **address, "413": _response("PayloadTooLarge")},
                [_P("email")], _KEY, settings),
        },
        "/api/addresses/{email}/availability": {
            "get": _operation(
                "addressAvailability", "Whether an address may be reserved (D6)",
                "No key needed; `owned` is true only for the key's own address.", "Addresses",
                {"200": _json("Availability.", _object({
                    "available": {"type": "boolean"}, "email": {"type": "string"},
                    "owned": {"type": "boolean"}})), **_refusals("400", "401")},
                [_P("email")], _KEY_OR_NONE),
        },
        "/api/private-addresses-bulk": {
            "post": _operation(
                "reserveAddresses", "Reserve many addresses (D7)",
                "At most 100. No credits: 400 only for a malformed body or address.",
                "Addresses",
                {"200": _json("The reserved addresses.", _arrayOf(_schema("EmailAddress"))),
                 **_refusals("400", "401", "413")},
                None, _KEY,
                _body(_object({"addresses": _arrayOf({"type": "string"}, 100),
                               "_mailsacKey": {"type": "string"}},
                              optional=("_mailsacKey",), closed=False),
                      "The addresses.", required=True)),
        },
    }


def _domainPaths() -> Json:
    domain = [_P("domain")]
    claim = _body(_object({"isPrivate": {"type": "boolean", "default": True},
                           "_mailsacKey": {"type": "string"}},
                          optional=("isPrivate", "_mailsacKey"), closed=False),
                  "Optional: whether the domain's mail is private (default true).")
    return {
        "/api/domains": {
            "get": _operation(
                "listDomains", "The account's domains (N1)", "", "Domains",
                {"200": _json("The domains.", _arrayOf(_schema("Domain"))),
                 **_refusals("401")}, None, _KEY),
        },
        "/api/domains/{domain}": {
            "get": _operation(
                "getDomain", "A domain and its figures (N2)", "", "Domains",
                {"200": _json("The domain.", _object({
                    "domain": _schema("Domain"), "totalMessages": {"type": "integer"},
                    "catchAllAddress": {"oneOf": [_schema("EmailAddress"), {"type": "null"}],
                                        "description": "The domain's `*@domain`, if reserved."},
                })), **_refusals("400", "401", "404")}, domain, _KEY),
            "post": _operation(
                "claimDomain", "Claim a custom domain",
                "Mailsac verifies domains by DNS in its web app; Capture has no DNS to check, "
                "so a domain is claimed by this call. Every address in it is then the "
                "account's (`implicit`), private unless `isPrivate` is false.", "Domains",
                {"200": _json("The domain.", _schema("Domain")),
                 **_refusals("400", "401", "413")}, domain, _KEY, claim, extension=True),
            "delete": _operation(
                "releaseDomain", "Release a custom domain",
                "The domain's mail is then public again, address by address.", "Domains",
                {"200": _json("Released.", _object({"message": {"type": "string"},
                                                    "_id": {"type": "string"}})),
                 **_refusals("400", "401", "404")}, domain, _KEY, extension=True),
        },
        "/api/domains/{domain}/privacy/{isPrivate}": {
            "put": _operation(
                "setDomainPrivacy", "Make a domain private or public (N3)",
                "The reference declares this path with no method (UNKNOWN); Capture chose "
                "PUT.", "Domains",
                {"200": _json("The domain.", _schema("Domain")),
                 **_refusals("400", "401", "404", "413")},
                [*domain, _pathParameter("isPrivate", "`true` or `false`.",
                                         {"type": "string", "enum": ["true", "false"]})],
                _KEY, _KEY_BODY),
        },
        "/api/domains/{domain}/messages": {
            "get": _operation(
                "listDomainMessages", "A domain's messages (M20)",
                "Newest first, every inbox of the domain; `until` and `limit` as for M1.",
                "Domains", {"200": _json("The messages.", _MESSAGES),
                            **_refusals("400", "401", "403", "404")},
                [*domain, _P("limit"), _P("until")], _KEY),
        },
        "/api/domains/{domain}/delete-all-domain-mail": {
            "post": _operation(
                "purgeDomain", "Delete a domain's mail (M21)",
                "The reference contradicts itself on starred mail (UNKNOWN); Capture keeps it, "
                "as the inbox purge (M2) does.", "Domains",
                {"204": {"description": "Purged."},
                 **_refusals("400", "401", "404", "413")},
                domain, _KEY, _KEY_BODY),
        },
    }


def _livePaths() -> Json:
    events = {"200": _text(
        "Server-Sent Events: for each new message `event: message`, `id:` its copy `_id` and "
        "`data:` its `EmailMessage` JSON on one line; for each deleted message the stream "
        "could have listed (deleted through the API, IMAP or POP3, or purged; not retention's "
        "clean-up) `event: removed` and `data: {\"_id\": ...}`, with no `id:` line. An "
        "`EventSource` gets messages with `onmessage` and removals only with "
        "`addEventListener('removed', ...)`, so older clients are unaffected.",
        "text/event-stream"),
        **_refusals("400", "401", "403")}
    keyInQuery = ("The key may come as `?_mailsacKey=` (an `EventSource` cannot set headers). ")
    return {
        "/api/addresses/{email}/messages/wait": {
            "get": _operation(
                "waitForMessage", "Wait for a message",
                "Answers as soon as a matching message arrives in the inbox, or 408 at the "
                "timeout. Without `since` only mail that arrives after the request counts; "
                "with it, the oldest matching message received at or after `since` is "
                "answered at once (of the newest 5,000 in the inbox). A copy the key may not "
                "list (starred by another account) never counts. Nothing polls: it wakes on "
                "the store's new-message event. " + _PUBLIC_READ, "Live", {
                    "200": _json("The first matching message.", _schema("EmailMessage")),
                    "408": _json("None came in time.", _schema("Error")),
                    **_refusals("400", "401", "403")},
                [_P("email"),
                 _query("timeout", "Seconds to wait.",
                        {"type": "integer", "minimum": 1, "maximum": 300, "default": 30}),
                 _query("since", "Also take a message received from this ISO 8601 date on.",
                        {"type": "string", "format": "date-time"}),
                 _query("subject", "The subject contains this (any case)."),
                 _query("from", "A From address or name contains this (any case).")],
                _KEY_OR_NONE, extension=True),
        },
        "/api/addresses/{email}/events": {
            "get": _operation(
                "inboxEvents", "An inbox's new messages as Server-Sent Events",
                keyInQuery + "A client that reconnects with `Last-Event-ID` (as "
                "`EventSource` does) first gets the messages that came after that id, "
                "oldest first, at most 100. " + _PUBLIC_READ, "Live", events,
                [_P("email"), {"name": "Last-Event-ID", "in": "header", "required": False,
                               "description": "The last copy `_id` the client saw.",
                               "schema": {"type": "string"}}],
                _KEY_OR_NONE, extension=True),
        },
        "/api/inbox/events": {
            "get": _operation(
                "accountEvents", "The account's new messages as Server-Sent Events",
                keyInQuery + "Every message `/api/inbox` would list.", "Live", events, None,
                _KEY, extension=True),
        },
        "/incoming-messages": {
            "get": _operation(
                "webSocket", "Mailsac's websocket",
                "Upgrade to a websocket (Mailsac serves it at `wss://sock.mailsac.com`). "
                "`addresses` lists owned addresses and domains; `_id` is accepted and ignored. "
                "The first frame is `{\"status\":200,\"msg\":\"Listening\",\"addresses\":[...],"
                "\"domains\":[...]}`; each new message is `{\"status\":200,\"email\":{...}}` "
                "(an `EmailMessage` with `text`, `html`, `body`, `raw` and `headers`). Error "
                "frames are UNKNOWN in the reference; Capture sends `{\"status\":4xx,"
                "\"msg\":\"...\"}` (a missing or bad key 401, no or a malformed address or "
                "domain 400, an address or domain it may not read, or a public address, 403) "
                "and then closes (close code 4000 + status). Only routed mail is sent "
                "(Mailsac's rule): an owned address's while its `enablews` is on, a domain's "
                "other addresses while its catch-all `*@domain` has `enablews` on. Each email "
                "frame is one op of the account. A "
                "client that leaves over 4 MiB unread is dropped. A plain HTTP request (no "
                "`Upgrade: websocket`) is answered 426. Frames follow the schema "
                "`WebSocketFrame`.",
                "Live", {"101": {"description": "Switching to the websocket protocol."},
                         **_refusals("400"),
                         "426": _json("Not a websocket upgrade.", _schema("Error"))},
                [_query("addresses", "Comma-separated addresses and domains.", required=True),
                 _query("_id", "The account name; ignored.")],
                [{"WebSocketKey": []}]),
        },
    }


def _webhookPaths() -> Json:
    attempts = {"200": _json("The attempts, newest first.",
                             _arrayOf(_schema("WebhookAttempt"))),
                **_refusals("400", "401")}
    about = ("Webhooks: for a new message in an owned address with a `webhook` URL, Capture "
             "POSTs an `EmailMessageWithBodies` as `application/json` and expects a 2xx. "
             "Retries are UNKNOWN at Mailsac; Capture retries a failed delivery "
             "`--webhook-retries` times (default 5) with backoff (1 s doubling, capped at 10 "
             "minutes, with jitter), from a queue bounded by `--webhook-queue`, with "
             "`--webhook-timeout` (default 10 s) per attempt, and never slows SMTP. Each "
             "POST counts one op. The last 200 attempts per account are kept in memory "
             "(not across a restart) and listed here, newest first; owner only. ")
    return {
        "/api/addresses/{email}/webhook-attempts": {
            "get": _operation("addressWebhookAttempts", "An address's webhook deliveries",
                              about, "Webhooks", attempts, [_P("email")], _KEY,
                              extension=True),
        },
        "/api/webhook-attempts": {
            "get": _operation("webhookAttempts", "The account's webhook deliveries", about,
                              "Webhooks", attempts, None, _KEY, extension=True),
        },
    }


def _servicePaths() -> Json:
    return {
        "/livez": {
            "get": _operation("livez", "Liveness", "200 while the process serves HTTP.",
                              EXTENSION, {"200": _json("Alive.", _object(
                                  {"status": {"const": "ok"}}))}, None, _NO_KEY,
                              extension=True),
        },
        "/readyz": {
            "get": _operation("readyz", "Readiness",
                              "200 when the store answers a trivial read within 2 s and "
                              "every listener is bound, else 503 with the error body (its "
                              "`validationErrors` name the failed checks) and `checks`.",
                              EXTENSION,
                              {"200": _json("Ready.", _object({
                                  "status": {"const": "ready"}, "checks": _CHECKS})),
                               "503": _json("Not ready.", _object({
                                   "message": {"type": "string"}, "error": {"type": "string"},
                                   "validationErrors": _arrayOf({"type": "string"}),
                                   "checks": _CHECKS}))},
                              None, _NO_KEY, extension=True),
        },
        "/metrics": {
            "get": _operation("metrics", "Prometheus metrics",
                              "Messages captured, bytes, sessions per protocol, auth failures, "
                              "store commit latency, queue depth.", EXTENSION,
                              {"200": _text("Prometheus text exposition format 0.0.4.",
                                            "text/plain"),
                               **_refusals("404")}, None, _NO_KEY, extension=True),
        },
        "/api/openapi.json": {
            "get": _operation("openapi", "This document", "OpenAPI 3.1; no key needed.",
                              EXTENSION, {"200": _json("The document.", {"type": "object"})},
                              None, _NO_KEY, extension=True),
        },
        **{
            path: {
                "get": _operation(
                    operationId, "Mail client autoconfig",
                    "Thunderbird's autoconfig file (clientConfig version 1.1): the enabled "
                    "IMAP, POP3 and SMTP listeners with host name, port and TLS style; user "
                    "name `%EMAILADDRESS%`, password the API key. No key needed: it holds "
                    "no mail.",
                    EXTENSION,
                    {"200": {"description": "The configuration.",
                             "content": {"application/xml": {"schema": {"type": "string"}}}}},
                    [_query("emailaddress", "The address the client is setting up.")],
                    _NO_KEY, extension=True,
                ),
            }
            for path, operationId in (
                ("/.well-known/autoconfig/mail/config-v1.1.xml", "autoconfigWellKnown"),
                ("/mail/config-v1.1.xml", "autoconfig"),
            )
        },
    }


def buildDocument(version: str) -> Json:
    """
    The OpenAPI document of Capture C{version}.
    """
    paths: Json = {}
    for part in (_messagePaths, _addressPaths, _accountPaths, _domainPaths, _livePaths,
                 _webhookPaths, _servicePaths):
        paths.update(part())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Capture HTTP API",
            "version": version,
            "summary": "Mailsac's API, served by a self-hosted email capture server.",
            "description": "Capture serves Mailsac's HTTP API (base path `/api`): code written "
            "for Mailsac works after changing the base URL. Errors are JSON `{message, error, "
            "validationErrors}`. Where Mailsac's behaviour is unknown, each operation says "
            "what Capture chose (also in Capture's `docs/api.md`). Operations marked "
            "`x-capture-extension` are Capture's own additions. Every GET also answers HEAD; "
            "an unknown path is 404 and a wrong method 405, both as JSON errors; a path that is "
            "not UTF-8 or a Host that is not a host name is 400. A write the full store has "
            "no room for is 507.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/", "description": "This Capture server."}],
        "security": _KEY,
        "tags": [
            {"name": "Messages"}, {"name": "Message bodies"}, {"name": "Message state"},
            {"name": "Attachments"}, {"name": "Addresses"}, {"name": "Account inbox"},
            {"name": "Account"}, {"name": "Domains"}, {"name": "Live"}, {"name": "Webhooks"},
            {"name": "Legacy", "description": "Older Mailsac paths, kept for old clients."},
            {"name": EXTENSION, "description": "Not in Mailsac's API."},
        ],
        "paths": _withStoreFull(paths),
        "components": _components(),
    }


def _withStoreFull(paths: Json) -> Json:
    """
    Every operation that writes may find the store full: 507.
    """
    for item in paths.values():
        for method, operation in item.items():
            if method in ("post", "put", "patch", "delete"):
                operation["responses"]["507"] = _response("InsufficientStorage")
    return paths


@functools.cache
def document() -> Json:
    """
    The document of the installed Capture, built once; callers must not
    change it.
    """
    try:
        version = metadata.version("capture")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return buildDocument(version)
