# -*- test-case-name: tests.test_store_roles -*-
"""
The store's errors: what every backend raises, and all a caller catches.

A backend maps its driver's own exceptions (C{sqlite3.Error}, later
psycopg's) to these before they leave it, so no caller imports a driver to
handle a failure, and a second backend fails the same way the first does.
"""

from __future__ import annotations


class StoreError(Exception):
    """
    The store could not do what was asked, for a reason that is not the
    caller's fault (SMTP answers 451 4.3.0).
    """


class StoreUnavailable(StoreError):
    """
    The store cannot be reached or used at all: its data cannot be opened
    (missing permissions, a corrupt or foreign file, a read-only disk), or
    it is not running.  The message says which, in one line.
    """


class StoreFull(StoreError):
    """
    The store has no room left: the disk or the configured size limit is
    full (SMTP answers 452 4.3.1).
    """


class SchemaTooNew(StoreUnavailable):
    """
    The data directory was written by a newer Capture than this one.
    """


class NotFound(LookupError):
    """
    No such account, key, address, domain or message.
    """


class Conflict(ValueError):
    """
    The thing to create exists already, or a prefix names several things.
    """
