"""
The store conformance suite (L{tests.storesuite}), once per store backend:
C{CAPTURE_TEST_STORE=sqlite} (comma-separated names) picks backends,
unset runs every registered one.  The SQLite store's own tests are in
C{tests/test_store_sqlite.py}.
"""

import pytest

from tests.storesuite import (
    FACTORIES,
    SELECT_VARIABLE,
    SUITE,
    makeTestCaseClasses,
    selectedFactories,
)

globals().update(makeTestCaseClasses(SUITE, __name__))


def test_backendSelection() -> None:
    """
    Unset or empty, every registered backend runs, none of them required;
    named, only those run, required (one that cannot run fails); an
    unknown name is refused before any test runs.
    """
    every = [(factory, False) for factory in FACTORIES.values()]
    assert selectedFactories({}) == every
    assert selectedFactories({SELECT_VARIABLE: " "}) == every
    assert selectedFactories({SELECT_VARIABLE: "sqlite"}) == [(FACTORIES["sqlite"], True)]
    with pytest.raises(ValueError, match="unknown store backends \\['nosuch'\\]"):
        selectedFactories({SELECT_VARIABLE: "sqlite,nosuch"})
