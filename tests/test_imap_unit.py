"""
The pure pieces of the IMAP server: flag arithmetic, header field
selection, dates, FETCH batching and SEARCH parsing.
"""

from __future__ import annotations

import pytest
from twisted.mail.imap4 import parseNestedParens

from capture.imapitems import applyFlags, fetchBatches, flagList, headerFields, internalDate
from capture.imapsearch import SearchError, parseSearch
from capture.store.model import FetchedMessage, FlagState

STATE = FlagState(7, read=False, deleted=False, answered=True, flagged=False,
                  labels=("work", "big deal"))


def test_storeModes() -> None:
    """
    FLAGS replaces (keeping labels IMAP cannot show), +FLAGS adds, -FLAGS
    removes; system flags match case-insensitively.
    """
    assert applyFlags(STATE, ["\\SEEN", "new"], 0) == FlagState(
        7, True, False, False, False, ("big deal", "new"))
    assert applyFlags(STATE, ["\\Flagged", "work", "x"], 1) == FlagState(
        7, False, False, True, True, ("work", "big deal", "x"))
    assert applyFlags(STATE, ["\\Answered", "work"], -1) == FlagState(
        7, False, False, False, False, ("big deal",))


def test_flagListHidesNonAtoms() -> None:
    """
    FLAGS shows system flags and the labels that are IMAP atoms.
    """
    assert flagList(STATE) == b"(\\Answered work)"


def test_headerFieldsKeepsFoldedLinesAndEndsWithBlankLine() -> None:
    """
    HEADER.FIELDS picks whole fields, continuation lines included, in
    message order; .NOT picks the others.
    """
    block = b"From: a\r\nSubject: one\r\n two\r\nTo: b\r\n\r\n"
    assert headerFields(block, {b"subject"}, False) == b"Subject: one\r\n two\r\n\r\n"
    assert headerFields(block, {b"subject"}, True) == b"From: a\r\nTo: b\r\n\r\n"
    assert headerFields(block, {b"x-none"}, False) == b"\r\n"


def test_internalDate() -> None:
    """
    INTERNALDATE is the arrival time in UTC, in IMAP's date-time form.
    """
    assert internalDate(0) == b'"01-Jan-1970 00:00:00 +0000"'
    assert internalDate(1_700_000_000_123) == b'"14-Nov-2023 22:13:20 +0000"'


def test_batchesCutBySize() -> None:
    """
    Whole-message FETCHes are cut into runs of about the given size; a
    message larger than that goes alone; order is kept.
    """
    sizes = {u: FetchedMessage(u, size, 0, 0) for u, size in
             [(1, 3), (2, 3), (3, 10), (4, 1), (5, 1)]}
    assert fetchBatches([1, 2, 3, 4, 5], sizes, 6) == [[1, 2], [3], [4, 5]]
    assert fetchBatches([], sizes, 6) == []


@pytest.mark.parametrize("keys, problem", [
    (b"", "Empty search"),
    (b"FROB", "Unknown search key 'FROB'"),
    (b"SINCE yesterday", "Bad date 'yesterday'"),
    (b"LARGER big", "Bad size 'big'"),
    (b"OR SEEN", "Missing search argument"),
])
def test_badSearchKeys(keys: bytes, problem: str) -> None:
    """
    Malformed SEARCH keys are a SearchError naming the problem (BAD).
    """
    with pytest.raises(SearchError, match=problem):
        parseSearch(parseNestedParens(keys), [1, 2])


def test_searchSequenceSetsAndNesting() -> None:
    """
    Sequence numbers are positions in the mailbox; parentheses group keys.
    """
    search = parseSearch(parseNestedParens(b"(2:* NOT DELETED) UNSEEN"), [10, 20, 30])

    def matches(uid: int, **flags: bool) -> bool:
        state = FlagState(uid, flags.get("read", False), flags.get("deleted", False),
                          False, False, ())
        return search.match(state, FetchedMessage(uid, 1, 0, 0, raw=b""), None, None)

    assert [u for u in (10, 20, 30) if matches(u)] == [20, 30]
    assert not matches(20, deleted=True) and not matches(30, read=True)
    assert not search.bodies
