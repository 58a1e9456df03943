# -*- test-case-name: tests.test_api -*-
"""
Owned addresses and custom domains in Mailsac's JSON shapes
(C{reference/mailsac-api.md} 5.2 and 5.5); messages are
L{capture.emailmessage}'s.
"""

from __future__ import annotations

from typing import Any

from capture.emailmessage import isoTime
from capture.store.model import Domain, OwnedAddress


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
