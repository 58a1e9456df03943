# -*- test-case-name: tests.test_store,tests.test_smtp_unit -*-
"""
Identifiers that leave the server: queue ids and API keys.

Both are random, URL-safe and alphanumeric, so a copy id C{<queueId>-<n>}
can be split on its last C{-} without ambiguity.
"""

from __future__ import annotations

import os
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KEY_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _encode(value: int, alphabet: str, width: int) -> str:
    base = len(alphabet)
    out = []
    for _ in range(width):
        value, digit = divmod(value, base)
        out.append(alphabet[digit])
    return "".join(reversed(out))


def newQueueId() -> str:
    """
    A new 24-character queue id: 7 characters of millisecond time (so ids
    sort roughly by arrival, which keeps the index append-mostly) followed by
    17 random base62 characters (about 101 bits).
    """
    millis = int(time.time() * 1000)
    return _encode(millis, _ALPHABET, 7) + _encode(
        int.from_bytes(os.urandom(13)), _ALPHABET, 17
    )


def newApiKey() -> str:
    """
    A new API key in Mailsac's shape: C{k_} and 24 lowercase alphanumerics
    (about 124 bits of entropy), for example C{k_eoj1mn7x5y61w0egs25j6xrv}.
    """
    return "k_" + _encode(secrets.randbits(125), _KEY_ALPHABET, 24)


def copyId(queueId: str, n: int) -> str:
    """
    The Mailsac C{_id} of the C{n}th copy of a message.
    """
    return f"{queueId}-{n}"


def splitCopyId(copyIdText: str) -> tuple[str, int] | None:
    """
    Split a copy id into its queue id and copy number, or L{None} when the
    text is not shaped like one.
    """
    queueId, sep, n = copyIdText.rpartition("-")
    if not sep or not n.isdigit() or not queueId.isalnum() or len(n) > 6:
        return None
    return queueId, int(n)
