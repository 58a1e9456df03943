# -*- test-case-name: tests.test_imap -*-
"""
IMAP SEARCH keys turned into one predicate the store runs on a read thread.

Twisted's own SEARCH is broken on Python 3 for every header key and omits
the C{* SEARCH} line when nothing matches (gap I4); this replaces it.  The
predicate sees each copy's flags, its header block (decoded as the HTTP API
decodes headers) and, only when a key needs them, its bodies.
"""

from __future__ import annotations

import bisect
import calendar
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.mail.imap4 import IllegalIdentifierError, MessageSet

from capture.addresslist import parseAddressList
from capture.imapsets import parseSequenceSet
from capture.mime import decodeHeaderValue, headerBlock
from capture.store.model import FetchedMessage, FlagState

MAX_DEPTH = 32
"""
How deeply search keys may nest (parentheses, C{NOT} and C{OR} alike): the
parse and the predicate recurse once a level, and a client's search
(Thunderbird's longest C{OR} chains included) nests a few levels.
"""

MAX_KEYS = 1000
"""
Search keys in one SEARCH: the predicate runs every key on every message
of the mailbox, so 30,000 keys on a long line would hold a read thread
(and the GIL) for seconds.
"""


class SearchError(ValueError):
    """
    The search keys are malformed (answered C{BAD}).
    """


def splitSearchKeys(line: bytes) -> list[Any]:
    """
    SEARCH's arguments as tokens: atoms and quoted strings as L{bytes}
    (backslash escapes undone), parenthesised groups as lists, nested at
    most L{MAX_DEPTH} deep.

    One pass and no recursion: Twisted's C{parseNestedParens} recurses per
    level when it collapses its result (C{RecursionError} on a thousand
    parentheses), raises several kinds of errors, and takes C{[} for a
    parenthesis (C{SUBJECT [JIRA]} split in two).

    @raise SearchError: Unbalanced parentheses or quotes, or groups nested
        too deeply.
    """
    stack: list[list[Any]] = [[]]
    i, end = 0, len(line)
    while i < end:
        c = line[i]
        if c in b" \t":
            i += 1
        elif c == 0x28:  # (
            if len(stack) > MAX_DEPTH:
                raise SearchError(f"Search keys nested too deeply (the limit is {MAX_DEPTH})")
            group: list[Any] = []
            stack[-1].append(group)
            stack.append(group)
            i += 1
        elif c == 0x29:  # )
            if len(stack) == 1:
                raise SearchError("Unmatched ')' in search keys")
            stack.pop()
            i += 1
        elif c == 0x22:  # "
            i += 1
            text = bytearray()
            while True:
                if i >= end:
                    raise SearchError("Unterminated quoted string in search keys")
                q = line[i]
                if q == 0x22:
                    break
                if q == 0x5C and i + 1 < end:
                    i += 1
                    q = line[i]
                text.append(q)
                i += 1
            stack[-1].append(bytes(text))
            i += 1
        else:
            start = i
            while i < end and line[i] not in b' \t()"':
                i += 1
            stack[-1].append(line[start:i])
    if len(stack) != 1:
        raise SearchError("Unmatched '(' in search keys")
    return stack[0]


@attrs.define
class _Message:
    """
    One copy as a predicate sees it; headers are decoded once, on demand.
    """

    state: FlagState
    fetched: FetchedMessage
    text: str | None
    html: str | None
    _headers: list[tuple[str, str]] | None = None
    _raw: list[tuple[str, str]] | None = None

    def headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            raw = self.fetched.raw or b""
            fields, _ = headerBlock(raw[: self.fetched.headerSize])
            self._raw = [(n.lower(), v) for n, v in fields]
            self._headers = [(n, decodeHeaderValue(v)) for n, v in self._raw]
        return self._headers

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers() if n == name]

    def addresses(self, name: str) -> list[str]:
        """
        An address header as written and as its addresses read
        (C{name <mailbox@host>}, comments and white space gone), as
        Dovecot searches them: C{FROM user@domain.org} finds
        C{<user (comment)@ (comment) domain.org>}.
        """
        found = self.header(name)
        assert self._raw is not None
        for field, value in self._raw:
            if field == name:
                for a in parseAddressList(value):
                    if a.address is not None:
                        name_ = decodeHeaderValue(a.name) if a.name else ""
                        found.append(f"{name_} <{a.address}>" if name_ else a.address)
        return found

    def body(self) -> str:
        parts = [self.text or "", self.html or ""]
        if not any(parts):
            raw = self.fetched.raw or b""
            parts.append(raw[self.fetched.headerSize :].decode("utf-8", "replace"))
        return "\n".join(parts)


Predicate = Callable[[_Message], bool]


@attrs.frozen
class Search:
    """
    A parsed SEARCH: C{match} takes what L{IStore.searchMessages} hands it.

    @ivar bodies: Whether some key needs the message bodies.
    """

    predicate: Predicate
    bodies: bool

    def match(self, state: FlagState, fetched: FetchedMessage, text: str | None,
              html: str | None) -> bool:
        return self.predicate(_Message(state, fetched, text, html))


def _date(token: Any) -> int:
    """
    Milliseconds at the start (UTC) of an IMAP date (C{1-Feb-2024}).
    """
    try:
        parsed = time.strptime(_text(token), "%d-%b-%Y")
    except ValueError:
        raise SearchError(f"Bad date {_text(token)[:100]!r} (use 1-Feb-2024)") from None
    return calendar.timegm(parsed) * 1000


def _text(token: Any) -> str:
    if isinstance(token, bytes):
        return token.decode("utf-8", "replace")
    if isinstance(token, str):
        return token
    raise SearchError("A string was expected")


def _contains(needle: str) -> Callable[[str], bool]:
    folded = needle.casefold()
    return lambda haystack: folded in haystack.casefold()


def _sentDate(message: _Message) -> int | None:
    import email.utils

    for value in message.header("date"):
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        day = parsed.date()
        return calendar.timegm(day.timetuple()) * 1000
    return None


_DAY = 86400 * 1000


def _inRanges(ranges: list[tuple[int, int]]) -> Predicate:
    """
    Whether a message's uid is in one of C{ranges} (ascending, disjoint):
    a bisection a message, and no set as large as the mailbox built on the
    reactor for each of a thousand C{1:*} keys.
    """
    starts = [low for low, _ in ranges]
    ends = [high for _, high in ranges]

    def member(m: _Message) -> bool:
        uid = m.state.uid
        i = bisect.bisect_right(starts, uid) - 1
        return i >= 0 and uid <= ends[i]

    return member


class _Parser:
    def __init__(self, tokens: list[Any], uids: list[int], recent: frozenset[int]) -> None:
        self.uids = uids
        self.recent = recent
        self.bodies = False
        self.keys = 0
        self.depth = 0
        self._groups: list[tuple[list[Any], int]] = [(tokens, 0)]

    def _more(self) -> bool:
        tokens, at = self._groups[-1]
        return at < len(tokens)

    def take(self) -> Any:
        tokens, at = self._groups[-1]
        if at >= len(tokens):
            raise SearchError("Missing search argument")
        self._groups[-1] = (tokens, at + 1)
        return tokens[at]

    def all(self) -> Predicate:
        keys = []
        while self._more():
            keys.append(self.key())
        if not keys:
            raise SearchError("Empty search")
        if len(keys) == 1:
            return keys[0]
        return lambda m: all(k(m) for k in keys)

    def _set(self, token: bytes, uid: bool) -> Predicate:
        try:
            messages: MessageSet = parseSequenceSet(token)
        except (IllegalIdentifierError, ValueError):
            raise SearchError(f"Bad message set {token[:100]!r}") from None
        uids = self.uids
        if uid:
            messages.last = uids[-1] if uids else 1
            return _inRanges(messages.ranges)
        messages.last = max(len(uids), 1)
        # Positions low..high are the uids from the low-th to the high-th.
        return _inRanges([
            (uids[low - 1], uids[min(high, len(uids)) - 1])
            for low, high in messages.ranges if low <= len(uids)
        ])

    def key(self) -> Predicate:
        self.keys += 1
        if self.keys > MAX_KEYS:
            raise SearchError(f"Too many search keys (the limit is {MAX_KEYS})")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise SearchError(f"Search keys nested too deeply (the limit is {MAX_DEPTH})")
            return self._key()
        finally:
            self.depth -= 1

    def _key(self) -> Predicate:
        token = self.take()
        if isinstance(token, list):
            self._groups.append((token, 0))
            try:
                return self.all()
            finally:
                self._groups.pop()
        name = _text(token).upper()
        recent = self.recent
        flags: dict[str, Predicate] = {
            "ALL": lambda m: True,
            "SEEN": lambda m: m.state.read,
            "UNSEEN": lambda m: not m.state.read,
            "NEW": lambda m: m.state.uid in recent and not m.state.read,
            "OLD": lambda m: m.state.uid not in recent,
            "RECENT": lambda m: m.state.uid in recent,
            "DELETED": lambda m: m.state.deleted,
            "UNDELETED": lambda m: not m.state.deleted,
            "FLAGGED": lambda m: m.state.flagged,
            "UNFLAGGED": lambda m: not m.state.flagged,
            "ANSWERED": lambda m: m.state.answered,
            "UNANSWERED": lambda m: not m.state.answered,
            "DRAFT": lambda m: False,
            "UNDRAFT": lambda m: True,
        }
        if name in flags:
            return flags[name]
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword = _text(self.take())
            if name == "KEYWORD":
                return lambda m: keyword in m.state.labels
            return lambda m: keyword not in m.state.labels
        if name in ("FROM", "TO", "CC", "BCC"):
            field, test = name.lower(), _contains(_text(self.take()))
            return lambda m: any(test(v) for v in m.addresses(field))
        if name == "SUBJECT":
            test = _contains(_text(self.take()))
            return lambda m: any(test(v) for v in m.header("subject"))
        if name == "HEADER":
            field, test = _text(self.take()).lower(), _contains(_text(self.take()))
            return lambda m: any(test(v) for v in m.header(field))
        if name == "BODY":
            self.bodies = True
            test = _contains(_text(self.take()))
            return lambda m: test(m.body())
        if name == "TEXT":
            self.bodies = True
            test = _contains(_text(self.take()))
            return lambda m: test(m.body()) or any(test(v) for _, v in m.headers())
        if name in ("SINCE", "BEFORE", "ON"):
            day = _date(self.take())
            if name == "SINCE":
                return lambda m: m.fetched.received >= day
            if name == "BEFORE":
                return lambda m: m.fetched.received < day
            return lambda m: day <= m.fetched.received < day + _DAY
        if name in ("SENTSINCE", "SENTBEFORE", "SENTON"):
            day = _date(self.take())

            def sent(m: _Message, name: str = name) -> bool:
                at = _sentDate(m)
                if at is None:
                    return False
                if name == "SENTSINCE":
                    return at >= day
                if name == "SENTBEFORE":
                    return at < day
                return at == day

            return sent
        if name in ("LARGER", "SMALLER"):
            size = _text(self.take())
            if not (size.isascii() and size.isdigit() and len(size) < 20):
                raise SearchError(f"Bad size {size[:100]!r}")
            limit = int(size)
            if name == "LARGER":
                return lambda m: m.fetched.size > limit
            return lambda m: m.fetched.size < limit
        if name == "NOT":
            negated = self.key()
            return lambda m: not negated(m)
        if name == "OR":
            left, right = self.key(), self.key()
            return lambda m: left(m) or right(m)
        if name == "UID":
            token = self.take()
            return self._set(token if isinstance(token, bytes) else b"", uid=True)
        if isinstance(token, bytes) and (token[:1].isdigit() or token[:1] == b"*"):
            return self._set(token, uid=False)
        raise SearchError(f"Unknown search key {name[:100]!r}")


def parseSearch(tokens: list[Any], uids: list[int], recent: frozenset[int] = frozenset()
                ) -> Search:
    """
    Turn SEARCH's keys (as L{splitSearchKeys} splits them) into a
    L{Search}.

    @param uids: The selected mailbox's uids, ascending: sequence numbers
        in the keys are positions in it.
    @param recent: The uids that are C{\\Recent} in the session.
    @raise SearchError: The keys are malformed.
    """
    parser = _Parser(tokens, uids, recent)
    predicate = parser.all()
    return Search(predicate, parser.bodies)
