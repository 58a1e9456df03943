# -*- test-case-name: tests.test_store -*-
"""
API keys at rest: only a key's SHA-256 digest and its first characters
(to name it in listings) are stored, whatever the backend.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from capture.ids import newApiKey
from capture.store._backend import Connection
from capture.store.errors import Conflict, NotFound

KEY_LENGTH = len(newApiKey())
# What is kept of a key besides its hash, to name it: "k_" and 6 characters.
PREFIX_LENGTH = 8


def keyHash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def insertKey(conn: Connection, account: str, key: str, label: str, now: int) -> None:
    conn.execute(
        "INSERT INTO api_keys(hash, account, prefix, label, created) VALUES (?, ?, ?, ?, ?)",
        (keyHash(key), account, key[:PREFIX_LENGTH], label, now),
    )


def keyAccount(conn: Connection, digest: bytes) -> str | None:
    """
    The account whose live key has this digest, if any.
    """
    row = conn.execute(
        "SELECT hash, account FROM api_keys WHERE hash = ? AND revoked IS NULL", (digest,)
    ).fetchone()
    # The lookup is by SHA-256 digest, so its timing says nothing about how
    # much of a guessed key was right; the comparison in constant time is
    # there for whoever changes the lookup.
    if row is None or not hmac.compare_digest(row[0], digest):
        return None
    return str(row[1])


def namedKey(rows: list[Any], account: str, prefix: str) -> Any:
    """
    The one row of C{(hash, account, prefix, label, created)} (the
    account's live keys) that C{prefix} names: a whole key, or at most
    L{PREFIX_LENGTH} of its first characters.

    @raise NotFound: None does, or C{prefix} is longer than what is stored.
    @raise Conflict: More than one does.
    """
    if len(prefix) == KEY_LENGTH:
        # A whole key: match it exactly.
        matches = [r for r in rows if r[0] == keyHash(prefix)]
    elif len(prefix) > PREFIX_LENGTH:
        # Only the prefix is stored; more of the key cannot be
        # checked, and matching on part of what was given would
        # revoke a key the caller did not name.
        raise NotFound(
            f"a key prefix has at most {PREFIX_LENGTH} characters "
            f"(as 'capture key list' shows them); or give the whole key"
        )
    else:
        matches = [r for r in rows if r[2].startswith(prefix)]
    if not prefix or not matches:
        raise NotFound(f"no live key of {account!r} starts with {prefix!r}")
    if len(matches) > 1:
        raise Conflict(f"{len(matches)} keys of {account!r} start with {prefix!r}")
    return matches[0]
