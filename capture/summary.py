# -*- test-case-name: tests.test_store -*-
"""
A message's summary: the message-level fields of Mailsac's C{EmailMessage}
(C{reference/mailsac-api.md} 5.1) as JSON text, written once at ingest.

Listings are the hottest read (an inbox page is 50 of them); building each
row's JSON from parsed columns costs far more than the query.  With the
summary stored beside the message, a listing row is the summary plus the
copy's own few fields (id, inbox, flags), joined by SQLite: the API, the
live events and the web page show one and the same object.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from capture.mime import MailAddress

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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


def summaryFields(
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
    """
    The message-level C{EmailMessage} fields; the copy-level ones (C{_id},
    C{savedBy}, C{inbox}, C{originalInbox}, C{domain}, C{folder},
    C{labels}, C{read}) are added per copy.

    @param attachments: The attachments' MD5 sums, in order.
    """
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


def summaryJSON(**fields: Any) -> str:
    """
    L{summaryFields} as a JSON object's text, as the store keeps it.
    """
    return _encode(summaryFields(**fields))
