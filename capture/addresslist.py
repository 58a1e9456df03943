# -*- test-case-name: tests.test_imapdata -*-
"""
RFC 5322 address lists as IMAP's ENVELOPE and SEARCH read them: groups,
source routes, comments and addresses without a domain kept as what they
are, the way Dovecot reads them.

The C{email} package's C{getaddresses} (what the HTTP API's addresses come
from) flattens groups into their members, drops the route and makes any
comment a display name; ENVELOPE must show a group as its start and end
markers (RFC 3501 7.4.2) and a route as the address's C{adl}. Where RFC
5322 leaves room, Dovecot (what Capture's IMAP is measured against) is
followed: a bare C{addr-spec}'s comment is its name (C{a@b (Alice)}), a
comment never is in the C{name <addr>} form, and a missing domain or local
part is C{MISSING_DOMAIN} / C{MISSING_MAILBOX}, never C{NIL}, which would
mark a group.
"""

from __future__ import annotations

import attrs

MISSING_DOMAIN = "MISSING_DOMAIN"
MISSING_MAILBOX = "MISSING_MAILBOX"
_SPECIALS = "()<>[]:;@\\,.\""
# The longest value read: a header is at most a message's size, and an
# ENVELOPE of a megabyte of addresses helps no client.
_MAX_VALUE = 64 * 1024


@attrs.frozen
class Address:
    """
    One ENVELOPE address: C{(name adl mailbox host)}. A group start is
    C{(None, None, groupName, None)}, a group end all L{None}.
    """

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None

    @property
    def address(self) -> str | None:
        """
        C{mailbox@host} of a real address (L{None} for group markers).
        """
        if self.host is None or self.mailbox is None:
            return None
        return f"{self.mailbox}@{self.host}"


_GROUP_END = Address(None, None, None, None)


def _tokens(value: str) -> list[tuple[str, str]]:
    """
    The value as C{(kind, text)} tokens: C{word} (an atom), C{quoted} (a
    quoted string, escapes undone), C{comment} (its text, nested comments
    flattened), C{literal} (a domain literal as written) and each special
    character as its own kind.
    """
    out: list[tuple[str, str]] = []
    i, end = 0, min(len(value), _MAX_VALUE)
    while i < end:
        c = value[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            i += 1
            text = []
            while i < end and value[i] != '"':
                if value[i] == "\\" and i + 1 < end:
                    i += 1
                text.append(value[i])
                i += 1
            i += 1
            out.append(("quoted", "".join(text)))
        elif c == "(":
            depth, i, text = 1, i + 1, []
            while i < end and depth:
                ch = value[i]
                if ch == "\\" and i + 1 < end:
                    i += 1
                    text.append(value[i])
                elif ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if not depth:
                        break
                else:
                    text.append(ch)
                i += 1
            i += 1
            out.append(("comment", " ".join("".join(text).split())))
        elif c == "[":
            close = value.find("]", i, end)
            close = end - 1 if close < 0 else close
            out.append(("literal", value[i : close + 1]))
            i = close + 1
        elif c in _SPECIALS:
            out.append((c, c))
            i += 1
        else:
            start = i
            while i < end and value[i] not in _SPECIALS and value[i] not in " \t\r\n":
                i += 1
            out.append(("word", value[start:i]))
    return out


class _Reader:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0
        # The last comment since the current mailbox's first word.
        self.comment: str | None = None
        self.started = False

    def peek(self) -> str | None:
        self._skipComments()
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def _skipComments(self) -> None:
        while self.at < len(self.tokens) and self.tokens[self.at][0] == "comment":
            if self.started and self.tokens[self.at][1]:
                self.comment = self.tokens[self.at][1]
            self.at += 1

    def take(self) -> tuple[str, str]:
        self._skipComments()
        token = self.tokens[self.at]
        self.at += 1
        return token

    def words(self, stops: str) -> list[tuple[str, str]]:
        """
        Words, quoted strings, dots and literals up to one of C{stops}.
        """
        found: list[tuple[str, str]] = []
        while True:
            kind = self.peek()
            if kind is None or kind in stops:
                return found
            if kind in ("word", "quoted", ".", "literal"):
                found.append(self.take())
                self.started = True
            else:
                # A stray special ('>' outside brackets, ']'): skipped.
                self.take()


def _phrase(words: list[tuple[str, str]]) -> str | None:
    """
    A display name: its words one space apart (a dot, as in C{John Q.
    Public}, sticks to the word before it).
    """
    text = ""
    for kind, word in words:
        if kind == ".":
            text += "."
        elif text:
            text += " " + word
        else:
            text = word
    return text or None


def _joined(words: list[tuple[str, str]]) -> str:
    """
    A local part or domain: its pieces as written, without the space
    between them.
    """
    return "".join(word for _, word in words)


def _domain(reader: _Reader, stops: str) -> str:
    return _joined(reader.words(stops)) or MISSING_DOMAIN


def _angle(reader: _Reader) -> tuple[str | None, str, str]:
    """
    What follows C{<}: an optional route (C{@a,@b:}), the address, C{>}.
    """
    route: list[str] = []
    while reader.peek() in ("@", ","):
        if reader.take()[0] == "@":
            route.append("@" + _joined(reader.words(",:>")))
    if route and reader.peek() == ":":
        reader.take()
    local = reader.words("@>,;")
    domain = MISSING_DOMAIN
    if reader.peek() == "@":
        reader.take()
        domain = _domain(reader, ">,;")
    if reader.peek() == ">":
        reader.take()
    return (",".join(route) or None), (_joined(local) or MISSING_MAILBOX), domain


def parseAddressList(value: str) -> list[Address]:
    """
    An address header's value (unfolded) as ENVELOPE addresses, group
    markers included, in order; empty for a value with no address.
    """
    reader = _Reader(_tokens(value))
    out: list[Address] = []
    inGroup = False
    while reader.peek() is not None:
        kind = reader.peek()
        if kind == ",":
            reader.take()
            continue
        if kind == ";":
            reader.take()
            if inGroup:
                out.append(_GROUP_END)
                inGroup = False
            continue
        reader.comment, reader.started = None, False
        words = reader.words("<@:,;")
        kind = reader.peek()
        if kind == ":":
            reader.take()
            if not inGroup:
                out.append(Address(None, None, _phrase(words) or "", None))
                inGroup = True
            continue
        if kind == "<":
            reader.take()
            adl, mailbox, host = _angle(reader)
            out.append(Address(_phrase(words), adl, mailbox, host))
            # Whatever follows up to the next address (a comment) is no name.
            reader.words(",;")
            continue
        if kind == "@":
            reader.take()
            host = _domain(reader, ",;<")
            if reader.peek() == "<":
                # "a@b <c@d>": the angle address is the address.
                reader.take()
                adl, mailbox, host = _angle(reader)
                out.append(Address(_joined(words) or None, adl, mailbox, host))
                continue
            out.append(Address(reader.comment, None, _joined(words) or MISSING_MAILBOX, host))
            continue
        if words:
            # No "@" at all: a local part without its domain (not a group,
            # whose host is NIL).
            out.append(Address(reader.comment, None, _joined(words), MISSING_DOMAIN))
    if inGroup:
        out.append(_GROUP_END)
    return out
