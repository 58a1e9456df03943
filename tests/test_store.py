"""
The store conformance suite (L{tests.storesuite}), once per store backend:
C{CAPTURE_TEST_STORE=sqlite} (comma-separated names) picks backends,
unset runs every registered one.  The SQLite store's own tests are in
C{tests/test_store_sqlite.py}.
"""

from tests.storesuite import SUITE, makeTestCaseClasses

globals().update(makeTestCaseClasses(SUITE, __name__))
