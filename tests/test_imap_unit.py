"""
The pure pieces of the IMAP server: flag arithmetic, header field
selection, dates, FETCH batching, SEARCH and sequence set parsing, LIST
patterns.
"""

from __future__ import annotations

import itertools
import random
import sys

import pytest
from twisted.mail.imap4 import (
    IllegalIdentifierError,
    parseIdList,
    parseNestedParens,
    wildcardToRegexp,
)

from capture.imapitems import applyFlags, fetchBatches, flagList, headerFields, internalDate
from capture.imapmatch import MAX_PATTERN, MailboxPattern, PatternTooLong
from capture.imapsearch import MAX_DEPTH, MAX_KEYS, SearchError, parseSearch, splitSearchKeys
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


def _matchesByDefinition(pattern: str, name: str) -> bool:
    """
    RFC 3501 6.3.8 read literally, by trying every split (exponential: for
    short strings only): C{*} takes any characters, C{%} any but C{/}.
    """
    if not pattern:
        return not name
    first, rest = pattern[0], pattern[1:]
    if first == "*":
        return any(_matchesByDefinition(rest, name[i:]) for i in range(len(name) + 1))
    if first == "%":
        for i in range(len(name) + 1):
            if _matchesByDefinition(rest, name[i:]):
                return True
            if name[i : i + 1] == "/":
                return False
        return False
    return name[:1].lower() == first.lower() and _matchesByDefinition(rest, name[1:])


def test_mailboxPatternsAgainstTheDefinition() -> None:
    """
    Every pattern of up to 4 items over C{a b / * %} and every name of up to
    5 characters over C{a B /}: the compiled pattern matches exactly when
    the definition does and when Twisted's regular expression matches the
    whole name (case aside).
    """
    names = ["".join(t) for k in range(6) for t in itertools.product("aB/", repeat=k)]
    for size in range(5):
        for items in itertools.product("ab/*%", repeat=size):
            pattern = "".join(items)
            compiled = MailboxPattern.compile(pattern, "/")
            theirs = wildcardToRegexp(pattern, "/")
            for name in names:
                expected = _matchesByDefinition(pattern, name)
                assert compiled.matches(name) == expected, (pattern, name)
                assert bool(theirs.fullmatch(name)) == expected, (pattern, name)


def test_percentStopsAtTheDelimiter() -> None:
    """
    C{%} matches within one level, C{*} across levels; a pattern matches
    the whole name, not a prefix of it; INBOX in any case.
    """
    names = ["INBOX", "Trash", "Inboxes", "Inboxes/a@x.test", "Inboxes/b@y.test"]

    def listed(pattern: str) -> list[str]:
        compiled = MailboxPattern.compile(pattern, "/")
        return [n for n in names if compiled.matches(n)]

    assert listed("%") == ["INBOX", "Trash", "Inboxes"]
    assert listed("*") == names
    assert listed("Inboxes/%") == ["Inboxes/a@x.test", "Inboxes/b@y.test"]
    assert listed("%/%") == ["Inboxes/a@x.test", "Inboxes/b@y.test"]
    assert listed("%@x.test") == []
    assert listed("*@x.test") == ["Inboxes/a@x.test"]
    assert listed("Inboxes") == ["Inboxes"]
    assert listed("inbox") == ["INBOX"]
    assert listed("Inbox%") == ["INBOX", "Inboxes"]
    assert listed("%*%*%*%*%*%*%*%*%*%*%*%*Z") == []
    assert listed("%*%*%*%*%*%*%*%*%*%*%*%*t") == ["Inboxes/a@x.test", "Inboxes/b@y.test"]


def test_longPatternsRefused() -> None:
    """
    A pattern longer than L{MAX_PATTERN} is refused before any matching;
    one at the limit, all wildcards, matches a long name.
    """
    with pytest.raises(PatternTooLong):
        MailboxPattern.compile("%*" * (MAX_PATTERN // 2) + "Z", "/")
    compiled = MailboxPattern.compile("%*" * (MAX_PATTERN // 2), "/")
    assert compiled.matches("Inboxes/" + "x" * 300 + "@example.com")


@pytest.mark.parametrize("line", [
    b"ALL", b"FROM alice SUBJECT \"two words\"", b"(OR SEEN DELETED) NOT (FLAGGED UNSEEN)",
    b'HEADER X-Note "a \\"quoted\\" b" 1:3,5', b"((SEEN))", b"UID 1:*",
])
def test_searchKeysSplitAsTwistedSplitsThem(line: bytes) -> None:
    """
    For the search keys clients send, the one-pass split gives what
    Twisted's C{parseNestedParens} gives.
    """
    assert splitSearchKeys(line) == parseNestedParens(line)


@pytest.mark.parametrize("line, problem", [
    (b"(SEEN", "Unmatched '\\('"),
    (b"SEEN)", "Unmatched '\\)'"),
    (b")", "Unmatched '\\)'"),
    (b'SUBJECT "open', "Unterminated quoted string"),
    (b"(" * (MAX_DEPTH + 1) + b"ALL" + b")" * (MAX_DEPTH + 1), "nested too deeply"),
    (b"(" * 100_000, "nested too deeply"),
])
def test_badSearchKeySyntax(line: bytes, problem: str) -> None:
    """
    Unbalanced parentheses or quotes, and groups nested deeper than
    L{MAX_DEPTH}, are a SearchError (BAD), never Twisted's exceptions or a
    RecursionError.
    """
    with pytest.raises(SearchError, match=problem):
        splitSearchKeys(line)


def test_searchBracketsAreText() -> None:
    """
    A bracket is a character of an atom (C{SUBJECT [JIRA]}), not a group
    as Twisted's parser takes it.
    """
    assert splitSearchKeys(b"SUBJECT [JIRA]") == [b"SUBJECT", b"[JIRA]"]


@pytest.mark.parametrize("keys", [
    b"NOT " * (MAX_DEPTH + 1) + b"ALL",
    b"OR ALL " * (MAX_DEPTH + 1) + b"ALL",
    b"(" * MAX_DEPTH + b"NOT ALL" + b")" * MAX_DEPTH,
    b"NOT " * 100_000 + b"ALL",
])
def test_deepSearchRefused(keys: bytes) -> None:
    """
    Parentheses, NOT and OR together nest at most L{MAX_DEPTH} levels (the
    parse and the predicate recurse once a level); deeper is a SearchError
    even far past Python's recursion limit.
    """
    assert sys.getrecursionlimit() < 100_000
    with pytest.raises(SearchError, match="nested too deeply"):
        parseSearch(splitSearchKeys(keys), [1, 2])


def test_deepestSearchAllowedRuns() -> None:
    """
    Keys nested exactly L{MAX_DEPTH} levels parse and match.
    """
    search = parseSearch(splitSearchKeys(b"NOT " * (MAX_DEPTH - 1) + b"SEEN"), [1])
    state = FlagState(1, read=False, deleted=False, answered=False, flagged=False, labels=())
    # MAX_DEPTH - 1 NOTs of SEEN, on an unread message.
    assert search.match(state, FetchedMessage(1, 1, 0, 0, raw=b""), None, None) is (
        (MAX_DEPTH - 1) % 2 == 1)


def test_tooManySearchKeys() -> None:
    """
    More than L{MAX_KEYS} keys in one SEARCH are refused (each would run on
    every message); L{MAX_KEYS} of them are fine, however large the
    mailbox, and sequence sets match by position.
    """
    uids = list(range(1, 100_001))
    with pytest.raises(SearchError, match="Too many search keys"):
        parseSearch(splitSearchKeys(b"1:* " * (MAX_KEYS + 1)), uids)
    search = parseSearch(splitSearchKeys(b"2:5 " * (MAX_KEYS - 1) + b"UID 4:*"), uids)

    def matches(uid: int) -> bool:
        state = FlagState(uid, False, False, False, False, ())
        return search.match(state, FetchedMessage(uid, 1, 0, 0, raw=b""), None, None)

    assert [u for u in range(1, 10) if matches(u)] == [4, 5]


@pytest.mark.parametrize("keys", [b"LARGER \xc2\xb2", b"LARGER " + b"9" * 5000, b"SMALLER -1"])
def test_badSizes(keys: bytes) -> None:
    """
    A size that is not a plain decimal number of a sane length (a Unicode
    superscript digit, 5,000 digits) is a SearchError, not a ValueError
    from int().
    """
    with pytest.raises(SearchError, match="Bad size"):
        parseSearch(splitSearchKeys(keys), [1])
