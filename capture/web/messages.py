# -*- test-case-name: tests.test_api -*-
"""
Stored copies in Mailsac's JSON shapes (C{reference/mailsac-api.md} 5.1).
"""

from __future__ import annotations

from typing import Any

from capture.store.model import Bodies, Copy, Domain, OwnedAddress
from capture.summary import isoTime, summaryFields


def messageJSON(copy: Copy) -> dict[str, Any]:
    """
    The C{EmailMessage} object of one copy, every field present; list fields
    are C{[]}, never C{null} (pymailsac's models require lists).  The same
    fields as a listing's rows, which SQLite joins from the stored summary
    (L{capture.summary}).
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
        **summaryFields(
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


def addressJSON(address: OwnedAddress, implicit: bool = False) -> dict[str, Any]:
    """
    An owned address as Mailsac's C{EmailAddress} (reference 5.2).

    @param implicit: The address is its owner's through a custom domain,
        with no record (settings) of its own.
    """
    return {
        "_id": address.address,
        "owner": address.account,
        "forward": address.forward,
        "enablews": address.enablews,
        "webhook": address.webhook,
        "webhookSlack": None,
        "webhookSlackToFrom": None,
        "catchAll": address.address[2:] if address.address.startswith("*@") else None,
        "implicit": implicit,
        "password": None,
        "info": address.info,
        "created": isoTime(address.created),
        "updated": isoTime(address.updated),
    }


def domainJSON(domain: Domain) -> dict[str, Any]:
    """
    A custom domain as Mailsac's C{Domain} (reference 5.5).  Capture files
    whatever mail SMTP gives it, so there is no DNS to verify: a domain is
    C{verified} as soon as it is claimed.
    """
    created = isoTime(domain.created)
    return {
        "_id": domain.domain,
        "owner": domain.account,
        "isPrivate": domain.isPrivate,
        "enablews": False,
        "hosted": False,
        "isDefault": False,
        "verified": True,
        "verifiedMx": True,
        "verificationTxt": None,
        "lastVerificationErrors": [],
        "created": created,
        "updated": created,
    }


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
