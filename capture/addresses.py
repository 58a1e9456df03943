# -*- test-case-name: tests.test_smtp_unit -*-
"""
Which inbox an address files into, shared by everything that names inboxes
(SMTP when it files a copy, the admin command and readers when they look
one up).
"""

from __future__ import annotations

import re

# What readers accept as an inbox name: no path characters, quotes, angle
# brackets or controls, so an address can never walk out of its path segment.
_ADDRESS_RE = re.compile(r"[^@\s/\\\x00-\x1f\"<>]{1,64}@[A-Za-z0-9.-]{1,253}")
# A DNS name in A-labels (lower case), at least two labels.
_DOMAIN_RE = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


def isAddress(text: str) -> bool:
    """
    Whether C{text} names an inbox that readers (the API, the admin
    command) will look up.
    """
    return _ADDRESS_RE.fullmatch(text) is not None


def isDomain(text: str) -> bool:
    """
    Whether C{text} (already lower case) is a domain name a custom domain
    may have.
    """
    return _DOMAIN_RE.fullmatch(text) is not None


def baseInbox(address: str) -> str:
    """
    The inbox an address files into: lower-cased, with any C{+tag} of the
    local part removed (plus-addressing).
    """
    local, _, domain = address.rpartition("@")
    # In a quoted local part the "+" may sit inside the quotes: cutting
    # there would leave an unbalanced quote, so it is kept whole.
    base = local.split("+", 1)[0] if not local.startswith(("+", '"')) else local
    return f"{base}@{domain}".lower()
