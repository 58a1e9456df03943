# -*- test-case-name: tests.test_emailmessage -*-
"""
Mailsac's C{EmailMessage} (C{reference/mailsac-api.md} 5.1, with the body
properties of 9.1): the one place its fields are spelled.

A message's fields fall in two parts.  The message-level ones (from, to,
subject, received, size, attachments...) never change once the message is
filed, so L{summaryJSON} writes them once, at ingest, as JSON text the store
keeps beside the message.  The copy-level ones (C{_id}, C{savedBy},
C{inbox}, C{originalInbox}, C{domain}, C{folder}, C{labels}, C{read})
change or differ per copy; they are added when a copy is shown.

Listings are the hottest read (an inbox page is 50 messages): building each
row's JSON from parsed columns costs far more than the query, and building
it in Python at all holds the GIL the reactor needs.  So the copy-level
fields are written as text too, by L{listingHead}, which the store keeps in
each copy's row and re-makes whenever one of them changes: a listing is then
the stored texts joined by the database (each copy's head, its message's
summary minus its C{{}), with no JSON made per request.
L{messageJSON} builds the same object from a L{Copy}; both spell the fields
here, in one order, so the API, the live events, the webhooks and the web
page show one and the same object.

Below C{capture.web} and C{capture.webhooks}, above the store: it imports
only the store's value types (the store calls L{listingHead}, the one maker
of the text it keeps, from C{capture.store._listing}).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from json.encoder import encode_basestring
from typing import Any

from capture.mime import MailAddress
from capture.store.model import Bodies, Copy

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# The C quoting of one string, as _encode quotes it (ensure_ascii off).
_quote = encode_basestring
_READ = {True: "true", False: "false", None: "null"}


def isoTime(millis: int) -> str:
    """
    Mailsac's time format: ISO 8601 UTC with milliseconds and a C{Z}.

    C{time.gmtime} rather than a C{datetime}: half the cost, and no float
    rounding of the milliseconds.
    """
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def _recipients(addresses: Iterable[MailAddress]) -> list[dict[str, str]]:
    return [{"address": a.address, "name": a.name} for a in addresses]


def _summaryFields(
    *,
    fromAddresses: Iterable[MailAddress],
    to: Iterable[MailAddress],
    cc: Iterable[MailAddress],
    bcc: Iterable[MailAddress],
    subject: str,
    received: int,
    size: int,
    attachments: Iterable[str],
    ip: str,
    via: str,
    tls: bool,
    links: Iterable[str],
) -> dict[str, Any]:
    return {
        "from": _recipients(fromAddresses),
        "to": _recipients(to),
        "cc": _recipients(cc),
        "bcc": _recipients(bcc),
        "subject": subject,
        "received": isoTime(received),
        "size": size,
        "attachments": list(attachments),
        "ip": ip,
        "via": via,
        "rtls": tls,
        "links": list(links),
        "spam": 0,
    }


def summaryJSON(
    *,
    fromAddresses: Iterable[MailAddress],
    to: Iterable[MailAddress],
    cc: Iterable[MailAddress],
    bcc: Iterable[MailAddress],
    subject: str,
    received: int,
    size: int,
    attachments: Iterable[str],
    ip: str,
    via: str,
    tls: bool,
    links: Iterable[str],
) -> str:
    """
    The message-level C{EmailMessage} fields as a JSON object's text, as
    the store keeps it (the copy-level ones are added per copy by
    L{listingHead}).

    @param attachments: The attachments' MD5 sums, in order.
    """
    return _encode(_summaryFields(
        fromAddresses=fromAddresses, to=to, cc=cc, bcc=bcc, subject=subject,
        received=received, size=size, attachments=attachments, ip=ip, via=via, tls=tls,
        links=links,
    ))


def messageJSON(copy: Copy) -> dict[str, Any]:
    """
    The C{EmailMessage} object of one copy, every field present; list fields
    are C{[]}, never C{null} (pymailsac's models require lists).  The same
    object, field for field and in the same order, as a listing's
    (L{listingHead} followed by the message's L{summaryJSON} minus its C{{}).
    """
    message = copy.message
    return {
        "_id": copy.id,
        "savedBy": copy.savedBy,
        "inbox": copy.inbox,
        "originalInbox": copy.originalInbox,
        "domain": copy.domain,
        "folder": copy.folder,
        "labels": list(copy.labels),
        "read": copy.read,
        **_summaryFields(
            fromAddresses=message.fromAddresses,
            to=message.to,
            cc=message.cc,
            bcc=message.bcc,
            subject=message.subject,
            received=message.received,
            size=message.size,
            attachments=[a.md5 for a in message.attachments],
            ip=message.ip,
            via=message.via,
            tls=message.tls,
            links=message.links,
        ),
    }


def listingHead(
    *,
    copyId: str,
    savedBy: str | None,
    inbox: str,
    originalInbox: str,
    domain: str,
    folder: str,
    labels: Sequence[str],
    read: bool | None,
) -> str:
    """
    The copy-level C{EmailMessage} fields as the opening of the object's
    text, up to and with the comma after C{read}: C{{"_id":...,"read":...,}.
    Its message's L{summaryJSON} text without its C{{} completes it, equal
    text for text to C{json} of L{messageJSON} for the same copy.

    The store keeps this text in each copy's row, made at ingest and made
    again, by this function, in the transaction of every change to one of
    these fields, so that C{GET /api/addresses/:email/messages} is served
    as the stored texts joined by the database, without a row parsed or a
    string made in Python per request (C{bench/api.py}).

    @param copyId: The Mailsac C{_id} (L{Copy.id}).
    """
    quote = _quote
    return (
        f'{{"_id":{quote(copyId)},'
        f'"savedBy":{"null" if savedBy is None else quote(savedBy)},'
        f'"inbox":{quote(inbox)},"originalInbox":{quote(originalInbox)},'
        f'"domain":{quote(domain)},"folder":{quote(folder)},'
        f'"labels":{_encode(list(labels)) if labels else "[]"},'
        f'"read":{_READ[read]},'
    )


def headersJSON(headers: tuple[tuple[str, str], ...], style: str) -> Any:
    """
    A message's headers in one of Mailsac's three formats: C{json} (lower
    case names, each to a list of values), C{json-ordered} (name/value
    pairs in order) or C{plain} (the header lines, as text).
    """
    if style == "json-ordered":
        return [{"name": name.lower(), "value": value} for name, value in headers]
    if style == "plain":
        return "".join(f"{name}: {value}\r\n" for name, value in headers)
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    return grouped


def messageWithBodiesJSON(copy: Copy, bodies: Bodies, raw: bytes) -> dict[str, Any]:
    """
    Mailsac's C{EmailMessage} with its C{EmailMessageBodyProps} (reference
    9.1 and 9.2), the body of a webhook POST: C{text}, C{html} and C{body}
    (the same HTML: S1 names it C{body}, S6 sends both), C{raw}, and
    C{headers} with lower-case names, a repeated header as a list.
    """
    headers: dict[str, Any] = {}
    for name, values in headersJSON(bodies.headers, "json").items():
        headers[name] = values[0] if len(values) == 1 else values
    return {
        **messageJSON(copy),
        "text": bodies.text,
        "html": bodies.html,
        "body": bodies.html,
        "raw": raw.decode("utf-8", "replace"),
        "headers": headers,
    }
