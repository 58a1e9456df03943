# -*- test-case-name: tests.test_smtp_unit -*-
"""
Which inbox an address files into, shared by everything that names inboxes
(SMTP when it files a copy, the admin command and readers when they look
one up).
"""

from __future__ import annotations


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
