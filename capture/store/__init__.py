# -*- test-case-name: tests.test_store_roles -*-
"""
Storage: the role interfaces every protocol uses (L{capture.store.interface}),
their value objects (L{capture.store.model}) and errors
(L{capture.store.errors}), and the backends (L{capture.store.sqlite} is the
embedded default).

L{makeStore} is the one place a backend is chosen: the server (C{capture.tap})
and the console (C{capture.cli}) both make their store through it.

The store's core (C{_core.StoreCore} and the role modules beside it) holds
Capture's rules and queries once; a backend provides an L{IBackend} and its
L{Dialect}.  C{StoreCore} itself is not re-exported here: it imports
L{capture.access}, which imports L{capture.store.model}, so importing it from
this package's C{__init__} would make a cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from capture.events import IEventBus
from capture.store._backend import Connection, Cursor, Dialect, IBackend, Operation
from capture.store.interface import IStore

__all__ = [
    "Connection", "Cursor", "Dialect", "IBackend", "IStore", "Operation", "hasStoredData",
    "makeStore",
]


def makeStore(
    directory: str,
    reactor: Any,
    maxSize: int = 0,
    reserve: int | None = None,
    observeCommit: Callable[[float, int], None] | None = None,
    events: IEventBus | None = None,
) -> IStore:
    """
    The store on the data in C{directory}, not opened yet (the server opens
    it before C{twistd} daemonizes and starts it after).

    @param maxSize: The largest the data may grow, in octets (0: the disk).
    @param reserve: Octets new mail leaves free for deletions; L{None} for
        the backend's default.
    @param observeCommit: Called on the reactor after each write batch with
        its seconds and number of operations.
    @param events: Where the store publishes every committed change to
        copies (L{None}: a bus of its own nobody hears, for the console).
    """
    # Imported here, not at the top: importing the package (for its
    # interfaces, errors or value objects) then loads no backend and no
    # database driver.
    from capture.store.sqlite import DEFAULT_RESERVE, SQLiteStore

    return SQLiteStore(
        directory, reactor, maxSize=maxSize, observeCommit=observeCommit, events=events,
        reserve=DEFAULT_RESERVE if reserve is None else reserve,
    )


def hasStoredData(directory: str) -> bool:
    """
    Whether C{directory} holds a store's data already (the console refuses
    to make an empty store by mistake, on a mistyped C{--data}).
    """
    from capture.store.sqlite import DATABASE_NAME

    return os.path.exists(os.path.join(directory, DATABASE_NAME))
