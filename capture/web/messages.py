# -*- test-case-name: tests.test_api -*-
"""
Stored copies in Mailsac's JSON shapes (C{reference/mailsac-api.md} 5.1).
"""

from __future__ import annotations

import datetime
from typing import Any

from capture.mime import MailAddress
from capture.store.model import Copy


def isoTime(millis: int) -> str:
    """
    Mailsac's time format: ISO 8601 UTC with milliseconds and a C{Z}.
    """
    when = datetime.datetime.fromtimestamp(millis / 1000, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _recipients(addresses: tuple[MailAddress, ...]) -> list[dict[str, str]]:
    return [{"address": a.address, "name": a.name} for a in addresses]


def messageJSON(copy: Copy) -> dict[str, Any]:
    """
    The C{EmailMessage} object of one copy, every field present; list fields
    are C{[]}, never C{null} (pymailsac's models require lists).
    """
    message = copy.message
    return {
        "_id": copy.id,
        "from": _recipients(message.fromAddresses),
        "to": _recipients(message.to),
        "cc": _recipients(message.cc),
        "bcc": _recipients(message.bcc),
        "subject": message.subject,
        "savedBy": copy.savedBy,
        "inbox": copy.inbox,
        "originalInbox": copy.originalInbox,
        "domain": copy.domain,
        "received": isoTime(message.received),
        "size": message.size,
        "attachments": [a.md5 for a in message.attachments],
        "ip": message.ip,
        "via": message.via,
        "folder": copy.folder,
        "labels": list(copy.labels),
        "read": copy.read,
        "rtls": message.tls,
        "links": list(message.links),
        "spam": 0,
    }
