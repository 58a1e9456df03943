"""
Storage: the L{IStore} interface every protocol uses, its value objects, and
its backends (L{capture.store.sqlite} is the embedded default).

The store's core (C{_core.StoreCore} and the role modules beside it) holds
Capture's rules and queries once; a backend provides an L{IBackend} and its
L{Dialect}.  C{StoreCore} itself is not re-exported here: it imports
L{capture.access}, which imports L{capture.store.model}, so importing it from
this package's C{__init__} would make a cycle.
"""

from capture.store._backend import Connection, Cursor, Dialect, IBackend, Operation

__all__ = ["Connection", "Cursor", "Dialect", "IBackend", "Operation"]
