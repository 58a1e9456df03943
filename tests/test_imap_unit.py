"""
The pure pieces of the IMAP server: flag arithmetic, header field
selection, dates, FETCH batching, SEARCH and sequence set parsing.
"""

from __future__ import annotations

import random

import pytest
from twisted.mail.imap4 import IllegalIdentifierError, parseIdList, parseNestedParens

from capture.imapitems import applyFlags, fetchBatches, flagList, headerFields, internalDate
from capture.imapsearch import SearchError, parseSearch
from capture.imapsets import parseSequenceSet, uidsIn
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


@pytest.mark.parametrize("text", [
    b"1", b"*", b"1:4", b"4:1", b"*:3", b"3:*", b"1,3,2", b"5,4,3,2,1", b"1:*,2",
    b"1:3,2:5,7,6,9:*", b"10:12,1,12:10,3:2",
])
def test_sequenceSetsAsTwistedParsesThem(text: bytes) -> None:
    """
    The one-pass parse gives Twisted's ranges: ordered, merged, C{*} as
    None until C{last} is set, and the same after.
    """
    ours, theirs = parseSequenceSet(text), parseIdList(text)
    assert ours.ranges == theirs.ranges
    ours.last = theirs.last = 20
    assert ours.ranges == theirs.ranges and list(ours) == list(theirs)


def test_longScatteredSequenceSet() -> None:
    """
    A thousand scattered parts, repeats and ranges among them (a client
    fetching many bodies in one command), merge as Twisted merges them.
    """
    rng = random.Random(3)
    parts = [str(rng.randint(1, 5000)).encode() for _ in range(1000)]
    parts += [b"4990:4995", b"4996", b"30:20", b"17:*"]
    rng.shuffle(parts)
    text = b",".join(parts)
    assert parseSequenceSet(text).ranges == parseIdList(text).ranges


@pytest.mark.parametrize("text", [
    b"0", b"0:3", b"3:0", b"x", b"x:y", b"1,,2", b"*:*", b"-1", b"", b"1:", b"2,0",
])
def test_badSequenceSetsRefusedAsTwistedRefusesThem(text: bytes) -> None:
    """
    What Twisted refuses is refused with the same error text (the BAD
    reply quotes it).
    """
    with pytest.raises(IllegalIdentifierError) as theirs:
        parseIdList(text)
    with pytest.raises(IllegalIdentifierError) as ours:
        parseSequenceSet(text)
    assert str(ours.value) == str(theirs.value)


def test_uidSetsResolvedAgainstTheMailbox() -> None:
    """
    A UID set names the mailbox's uids in its ranges, ascending and once
    each; C{*} is the largest uid, so C{100:*} names it even below 100.
    """
    uids = [3, 5, 9, 12, 40]
    assert uidsIn(parseSequenceSet(b"10:4,1,9,100:*"), uids) == [5, 9, 40]
    assert uidsIn(parseSequenceSet(b"*"), uids) == [40]
    assert uidsIn(parseSequenceSet(b"13:39"), uids) == []
    assert uidsIn(parseSequenceSet(b"1:*"), []) == []


def test_searchByLongUidSet() -> None:
    """
    UID SEARCH's C{UID} key with many ranges matches exactly the named
    uids of the mailbox.
    """
    uids = list(range(10, 1010, 10))
    named = uids[::7]
    search = parseSearch([b"UID", b",".join(b"%d" % u for u in reversed(named))], uids)

    def matches(uid: int) -> bool:
        state = FlagState(uid, False, False, False, False, ())
        return search.match(state, FetchedMessage(uid, 1, 0, 0, raw=b""), None, None)

    assert [u for u in uids if matches(u)] == named
