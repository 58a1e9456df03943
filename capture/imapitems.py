# -*- test-case-name: tests.test_imap_unit,tests.test_imap -*-
"""
One message's FETCH items and flags as IMAP text.

Everything here works on what one store read gave
(L{capture.store.model.FetchedMessage}): sections are cut from the raw
bytes at the offsets ingest stored (gap I12: never re-serialised), partial
fetches are exactly the octets asked for (gap I2), and ENVELOPE and
BODYSTRUCTURE are the texts computed at ingest.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from twisted.mail import imap4

from capture.imapdata import bodyStructure
from capture.mime import Part, findPart
from capture.store.model import (
    FLAG_ANSWERED,
    FLAG_DELETED,
    FLAG_FLAGGED,
    FLAG_READ,
    FetchedMessage,
    FlagState,
    MetadataRow,
)

_KEYWORD_RE = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~]+")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def internalDate(milliseconds: int) -> bytes:
    """
    IMAP's C{date-time} of a copy's arrival, in UTC.
    """
    t = time.gmtime(milliseconds / 1000)
    return (
        f'"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year} '
        f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"'
    ).encode("ascii")


def flagList(state: FlagState, recent: bool = False) -> bytes:
    """
    The FLAGS of a copy: system flags from its columns (C{\\Recent} from
    the session, L{capture.imaprecent}), labels as keywords.
    """
    flags = []
    if state.read:
        flags.append("\\Seen")
    if recent:
        flags.append("\\Recent")
    if state.answered:
        flags.append("\\Answered")
    if state.flagged:
        flags.append("\\Flagged")
    if state.deleted:
        flags.append("\\Deleted")
    flags.extend(keywords(state.labels))
    return ("(" + " ".join(flags) + ")").encode("ascii")


def keywords(labels: tuple[str, ...]) -> list[str]:
    """
    The labels IMAP shows as keywords.  A label that is not an IMAP atom
    ("big deal") cannot be one: the API shows it, IMAP does not (and keeps
    it when flags change).
    """
    return [label for label in labels if _KEYWORD_RE.fullmatch(label)]


def applyFlags(state: FlagState, flags: list[str], mode: int) -> FlagState:
    """
    C{state} after STORE C{FLAGS} (mode 0), C{+FLAGS} (1) or C{-FLAGS} (-1).
    """
    system = {f.lower() for f in flags if f.startswith("\\")}
    keywords = [f for f in flags if not f.startswith("\\")]

    def flag(name: str, current: bool) -> bool:
        given = name in system
        if mode == 0:
            return given
        if given:
            return mode > 0
        return current

    if mode == 0:
        # Labels IMAP cannot show are not the client's to drop.
        hidden = [k for k in state.labels if not _KEYWORD_RE.fullmatch(k)]
        labels = tuple(dict.fromkeys([*hidden, *keywords]))
    elif mode > 0:
        labels = tuple(dict.fromkeys([*state.labels, *keywords]))
    else:
        labels = tuple(k for k in state.labels if k not in keywords)
    return FlagState(
        state.uid,
        flag("\\seen", state.read),
        flag("\\deleted", state.deleted),
        flag("\\answered", state.answered),
        flag("\\flagged", state.flagged),
        labels,
    )


def headerFields(block: bytes, names: set[bytes], negate: bool) -> bytes:
    """
    The fields of a header block named (or, with C{negate}, not named) in
    C{names} (lower case), exactly as they are in the message, and the
    blank line that ends a header block.
    """
    out = []
    keep = False
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        keep = (name in names) != negate
        if keep:
            out.append(line)
    return b"".join(x + b"\r\n" for x in out) + b"\r\n"


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _sectionName(body: Any) -> bytes:
    part = b".".join(b"%d" % (p + 1) for p in body.part)
    if body.header is not None:
        header = body.header
        if header.fields:
            kind = b"HEADER.FIELDS.NOT" if header.negate else b"HEADER.FIELDS"
            section = kind + b" (" + b" ".join(header.fields) + b")"
        else:
            section = b"HEADER"
    elif body.text is not None:
        section = b"TEXT"
    elif body.mime is not None:
        section = b"MIME"
    else:
        section = b""
    if part and section:
        return part + b"." + section
    return part or section


def _section(body: Any, message: FetchedMessage) -> bytes:
    raw = message.raw or b""
    if not body.part:
        if body.header is not None:
            block = raw[: message.headerSize]
            if body.header.fields:
                names = {f.lower() for f in body.header.fields}
                return headerFields(block, names, bool(body.header.negate))
            return block
        if body.text is not None:
            return raw[message.headerSize :]
        return raw
    tree: Part = message.part
    part = findPart(tree, ".".join(str(p + 1) for p in body.part))
    if part is None:
        return b""
    if body.mime is not None:
        return raw[part.headerStart : part.bodyStart]
    if body.header is not None or body.text is not None:
        if not (part.mainType == "message" and part.children):
            return b""
        inner = part.children[0]
        if body.text is not None:
            return raw[inner.bodyStart : inner.end]
        block = raw[inner.headerStart : inner.bodyStart]
        if body.header.fields:
            return headerFields(
                block, {f.lower() for f in body.header.fields}, bool(body.header.negate)
            )
        return block
    return raw[part.bodyStart : part.end]


def isSection(body: Any) -> bool:
    """
    Whether a parsed C{BODY} item names a section (C{BODY[]},
    C{BODY[1.TEXT]}): bare C{BODY} is the body structure.
    """
    return bool(body.header or body.text or body.mime or body.empty or body.part)


def headersOnly(body: Any) -> bool:
    return not body.part and body.header is not None


def fetchItem(item: Any, message: FetchedMessage, state: FlagState, recent: bool = False) -> bytes:
    kind = type(item).__name__
    if kind == "UID":
        return b"UID %d" % message.uid
    if kind == "Flags":
        return b"FLAGS " + flagList(state, recent)
    if kind == "RFC822Size":
        return b"RFC822.SIZE %d" % message.size
    if kind == "InternalDate":
        return b"INTERNALDATE " + internalDate(message.received)
    if kind == "Envelope":
        return b"ENVELOPE " + (message.envelope or "NIL").encode("ascii")
    if kind == "BodyStructure":
        return b"BODYSTRUCTURE " + (message.structure or "NIL").encode("ascii")
    if kind == "RFC822Header":
        return b"RFC822.HEADER " + _literal((message.raw or b"")[: message.headerSize])
    if kind == "RFC822Text":
        return b"RFC822.TEXT " + _literal((message.raw or b"")[message.headerSize :])
    if kind == "RFC822":
        return b"RFC822 " + _literal(message.raw or b"")
    if kind == "Body":
        if not isSection(item):
            text = bodyStructure(message.raw or b"", message.part, extended=False)
            return b"BODY " + text.encode("ascii")
        data = _section(item, message)
        name = b"BODY[" + _sectionName(item) + b"]"
        if item.partialBegin is not None:
            begin = item.partialBegin
            data = data[begin : begin + item.partialLength]
            name += b"<%d>" % begin
        return name + b" " + _literal(data)
    raise imap4.IllegalClientResponse(f"Unsupported FETCH item {kind}")


# The FETCH items a store row of metadata answers (see metadataItems).
METADATA_ITEMS = frozenset(
    {"UID", "Flags", "RFC822Size", "InternalDate", "Envelope", "BodyStructure"}
)


def metadataFlags(uid: int, bits: int, labels: str) -> FlagState:
    """
    The L{FlagState} of a L{MetadataRow}'s flag bits and labels JSON.
    """
    return FlagState(
        uid, bool(bits & FLAG_READ), bool(bits & FLAG_DELETED), bool(bits & FLAG_ANSWERED),
        bool(bits & FLAG_FLAGGED), tuple(json.loads(labels)) if labels != "[]" else (),
    )


def metadataItems(query: list[Any], recent: set[int] | frozenset[int] = frozenset()
                  ) -> Callable[[MetadataRow], bytes]:
    """
    The text of C{query}'s items (all in L{METADATA_ITEMS}) for one
    L{MetadataRow}, byte for byte what L{fetchItem} gives: decided once
    per FETCH rather than per message and item, FLAGS text kept per
    distinct flags (a mailbox has few). C{recent} are the uids that are
    C{\\Recent} in the session.
    """
    flagTexts: dict[tuple[int, str, bool], bytes] = {}

    def flags(row: MetadataRow) -> bytes:
        key = (row[1], row[2], row[0] in recent)
        text = flagTexts.get(key)
        if text is None:
            text = flagTexts[key] = b"FLAGS " + flagList(
                metadataFlags(row[0], row[1], row[2]), key[2]
            )
        return text

    items: list[Callable[[MetadataRow], bytes]] = []
    for item in query:
        kind = type(item).__name__
        if kind == "UID":
            items.append(lambda row: b"UID %d" % row[0])
        elif kind == "Flags":
            items.append(flags)
        elif kind == "RFC822Size":
            items.append(lambda row: b"RFC822.SIZE %d" % row[3])
        elif kind == "InternalDate":
            items.append(lambda row: b"INTERNALDATE " + internalDate(row[4]))
        elif kind == "Envelope":
            items.append(lambda row: b"ENVELOPE " + (row[5] or b"NIL"))
        elif kind == "BodyStructure":
            items.append(lambda row: b"BODYSTRUCTURE " + (row[6] or b"NIL"))
        else:
            raise ValueError(f"{kind} is not a metadata FETCH item")
    if len(items) == 1:
        return items[0]
    return lambda row: b" ".join([item(row) for item in items])


def fetchBatches(uids: list[int], sizes: dict[int, FetchedMessage], octets: int) -> list[list[int]]:
    """
    C{uids} in order, cut into runs of about C{octets} of message each (a
    larger message alone).
    """
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for u in uids:
        size = sizes[u].size if u in sizes else 0
        if current and total + size > octets:
            batches.append(current)
            current, total = [], 0
        current.append(u)
        total += size
    if current:
        batches.append(current)
    return batches
