# -*- test-case-name: tests.test_smtp_ingest -*-
"""
Give the memory of big messages back to the system once they are stored.

glibc's malloc serves a large block from C{mmap} (returned at C{free}) only
above a threshold that it raises to the size of every such block freed, up
to 32 MiB: after a few 24 MiB messages, the next ones come from the heap,
which keeps what it grew to.  Fixing the threshold keeps every message
buffer an C{mmap} of its own, returned the moment it is freed, so the
server's resident memory after a burst of big mail falls back instead of
staying at the burst's peak.  Elsewhere than glibc nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt's parameter number for the mmap threshold (malloc.h).
_M_MMAP_THRESHOLD = -3
# Blocks this large are mapped on their own: message buffers, bodies and
# attachments, never Python's small objects (its arenas are 1 MiB mmaps).
LARGE_BLOCK = 256 * 1024


def returnLargeBlocks(threshold: int = LARGE_BLOCK) -> bool:
    """
    Have malloc map blocks of C{threshold} octets and more on their own.

    @return: Whether the C library took the setting (glibc does).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
