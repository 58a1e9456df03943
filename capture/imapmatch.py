# -*- test-case-name: tests.test_imap_unit,tests.test_imap -*-
"""
LIST and LSUB patterns (RFC 3501 section 6.3.8) matched in time linear in
the mailbox name, whatever the pattern.

Twisted's C{wildcardToRegexp} turns each wildcard into a lazy C{.*?}: a
pattern such as C{%*%*%*%*%*%*Z} that fails on a long name makes the
regular expression engine try every way of splitting the name between the
wildcards, exponential in their number (12 wildcards held the reactor for
49 seconds).  Here the pattern is a small automaton run over the name once,
all its states at a time, as bits of one integer: one step per character
of the name, however many wildcards there are.
"""

from __future__ import annotations

import attrs

MAX_PATTERN = 1024
"""
The longest pattern (reference and mailbox name together, in characters)
LIST and LSUB match; Capture's longest mailbox name is C{Inboxes/} and an
address, under 300.
"""


class PatternTooLong(ValueError):
    """
    The pattern is over L{MAX_PATTERN} characters.
    """


@attrs.frozen
class MailboxPattern:
    """
    One LIST pattern, compiled: C{*} matches any characters, C{%} any but
    the hierarchy delimiter; letters match without regard to case (mailbox
    names here are C{INBOX}, C{Trash} and lowercased addresses, and C{INBOX}
    is case-insensitive by RFC 3501).

    State C{i} of the automaton means "the first C{i} items of the pattern
    are matched"; bit C{i} of an integer holds it.

    @ivar literals: For each character of the pattern, the states that step
        over it.
    @ivar star: The states of a C{*} (they stay on any character).
    @ivar percent: The states of a C{%} (they stay on any character but the
        delimiter).
    @ivar accept: The bit of the state after the whole pattern.
    """

    literals: dict[str, int]
    star: int
    percent: int
    accept: int
    delimiter: str

    @classmethod
    def compile(cls, pattern: str, delimiter: str) -> MailboxPattern:
        """
        @raise PatternTooLong: The pattern is over L{MAX_PATTERN} characters.
        """
        if len(pattern) > MAX_PATTERN:
            raise PatternTooLong(f"Mailbox pattern over {MAX_PATTERN} characters")
        # A run of wildcards matches what its widest member matches: after
        # this no two wildcards are neighbours, so one shift closes the
        # states over the empty matches (see _closed).
        items: list[str] = []
        for c in pattern.lower():
            if c in "*%" and items and items[-1] in "*%":
                if c == "*":
                    items[-1] = "*"
                continue
            items.append(c)
        literals: dict[str, int] = {}
        star = percent = 0
        for i, c in enumerate(items):
            if c == "*":
                star |= 1 << i
            elif c == "%":
                percent |= 1 << i
            else:
                literals[c] = literals.get(c, 0) | 1 << i
        return cls(literals, star, percent, 1 << len(items), delimiter)

    def _closed(self, states: int) -> int:
        # A wildcard may match nothing: its state also stands for the next.
        return states | (states & (self.star | self.percent)) << 1

    def matches(self, name: str) -> bool:
        """
        Whether the whole of C{name} matches the pattern.
        """
        states = self._closed(1)
        stay = self.star | self.percent
        for c in name.lower():
            kept = states & (self.star if c == self.delimiter else stay)
            states = self._closed(kept | (states & self.literals.get(c, 0)) << 1)
            if not states:
                return False
        return bool(states & self.accept)
