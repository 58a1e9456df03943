# -*- test-case-name: tests.test_api -*-
"""
JSON in and out of Klein routes, and Mailsac's error body.

Klein drops a C{dict} returned by a route and answers an empty 200 (gap K1),
so every route returns through L{jsonBody}, and every refusal is an
L{ApiError} turned into C{{"message", "error", "validationErrors"}} by the
app's error handler.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from twisted.web.iweb import IRequest

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class ApiError(Exception):
    """
    A refusal with its HTTP status and Mailsac's error body.
    """

    def __init__(self, code: int, message: str, validationErrors: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.validationErrors = validationErrors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message": self.message,
            "error": HTTPStatus(self.code).phrase,
        }
        if self.validationErrors is not None:
            body["validationErrors"] = self.validationErrors
        return body


def jsonBody(request: IRequest, value: Any, code: int = 200) -> bytes:
    """
    Answer C{value} as JSON with status C{code}.
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    return _ENCODER.encode(value).encode("utf-8")


def jsonText(request: IRequest, data: bytes, code: int = 200) -> bytes:
    """
    Answer C{data}, JSON already encoded (a listing, as
    L{capture.store.interface.IStore.listInboxJSON} gives it).
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    return data


# What a browser may do with a message's own bytes served by the API
# (bodies as sent, attachments, sources): show them, never run them.  The
# sandbox gives the document an origin of its own, so a script in a message
# could not reach the API with a signed-in reader's cookie even if one ran;
# nothing remote loads (a web page shows remote content only when asked).
UNTRUSTED_POLICY = (
    b"sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"
)


def textBody(request: IRequest, text: str | bytes, contentType: bytes, download: str | None) -> bytes:
    """
    Answer a non-JSON body, a message's own bytes; C{download} (Mailsac's
    C{?download=1}) makes it an attachment named C{download}.
    """
    request.setHeader(b"content-type", contentType)
    request.setHeader(b"content-security-policy", UNTRUSTED_POLICY)
    request.setHeader(b"x-content-type-options", b"nosniff")
    if download is not None:
        request.setHeader(
            b"content-disposition", b'attachment; filename="' + download.encode("ascii") + b'"'
        )
    return text if isinstance(text, bytes) else text.encode("utf-8")
