# -*- test-case-name: tests.test_store -*-
"""
Ingest's CPU work, before the writer sees a message: parsing it once and
building its rows (moved here verbatim from C{sqlite.py}; issue 11's ingest
part moves it out of the store).
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from twisted.logger import Logger

from capture import imapdata
from capture.mime import ParsedMessage, Part, parseMessage
from capture.store._rows import addressesJSON as _addressesJSON
from capture.store._rows import toJSON as _toJSON
from capture.store.model import Envelope
from capture.summary import summaryJSON

_log = Logger()


@attrs.frozen
class _PreparedMessage:
    """
    A message parsed and turned into rows, ready for the writer: all the
    CPU work of ingest happens before the writer sees it, so the writer
    thread only runs SQL (which releases the GIL) and never competes with
    the reactor for the interpreter.
    """

    envelope: Envelope
    parsed: ParsedMessage
    messageRow: tuple[Any, ...]
    bodiesRow: tuple[Any, ...]
    raw: bytes
    attachmentRows: list[tuple[str, str]]
    copyRows: list[tuple[Any, ...]]
    month: str


def _prepare(envelope: Envelope, raw: bytes) -> _PreparedMessage:
    """
    Parse a message (once) and build its rows.

    Whatever goes wrong in parsing, the message is still stored: a message
    the parser cannot handle, or whose parsed text SQLite would refuse, is
    stored with its raw bytes and no parsed facts, rather than refused with
    a 4xx that the client would retry forever.
    """
    try:
        prepared = _rows(envelope, raw, parseMessage(raw))
        for row in (prepared.messageRow, prepared.bodiesRow):
            for value in row:
                # ASCII text is known to encode (constant time, no copy).
                if isinstance(value, str) and not value.isascii():
                    value.encode("utf-8")
        return prepared
    except Exception:
        _log.failure("parsing {queueId} failed; storing it unparsed", queueId=envelope.queueId)
        return _rows(envelope, raw, _fallbackParse(raw))


def _rows(envelope: Envelope, raw: bytes, parsed: ParsedMessage) -> _PreparedMessage:
    attachments = [
        [a.md5, a.filename, a.contentType, a.contentId, a.size, a.part]
        for a in parsed.attachments
    ]
    messageRow = (
        envelope.queueId, envelope.received, envelope.account, envelope.mailFrom,
        envelope.helo, envelope.ip, envelope.via, int(envelope.tls), len(raw),
        parsed.subject, _addressesJSON(parsed.fromAddresses),
        _addressesJSON(parsed.to), _addressesJSON(parsed.cc),
        _addressesJSON(parsed.bcc), parsed.date, parsed.messageId,
        _toJSON(list(parsed.links)) if parsed.links else "[]",
        _toJSON(attachments) if attachments else "[]",
        summaryJSON(
            fromAddresses=parsed.fromAddresses, to=parsed.to, cc=parsed.cc, bcc=parsed.bcc,
            subject=parsed.subject, received=envelope.received, size=len(raw),
            attachments=[a.md5 for a in parsed.attachments], ip=envelope.ip,
            via=envelope.via, tls=envelope.tls, links=parsed.links,
        ),
        imapdata.envelope(raw),
        imapdata.bodyStructure(raw, parsed.structure),
        parsed.structure.bodyStart,
    )
    bodiesRow = (
        parsed.text,
        parsed.html,
        _toJSON([list(h) for h in parsed.headers]),
        _toJSON(parsed.structure.toJSON()),
    )
    copyRows = [
        (n, r.inbox.lower(), r.original, r.inbox.lower().rpartition("@")[2], envelope.received)
        for n, r in enumerate(envelope.recipients)
    ]
    return _PreparedMessage(
        envelope=envelope,
        parsed=parsed,
        messageRow=messageRow,
        bodiesRow=bodiesRow,
        raw=raw,
        attachmentRows=[(a.md5, a.part) for a in parsed.attachments],
        copyRows=copyRows,
        month=time.strftime("%Y-%m", time.gmtime(envelope.received / 1000)),
    )


def _fallbackParse(raw: bytes) -> ParsedMessage:
    """
    What to file when the parser itself fails: the raw bytes are kept, so
    nothing the client sent is lost; only the parsed facts are missing.
    """
    return ParsedMessage(
        subject="",
        fromAddresses=(),
        to=(),
        cc=(),
        bcc=(),
        date=None,
        messageId=None,
        headers=(),
        text=raw.decode("utf-8", "replace"),
        html=None,
        attachments=(),
        links=(),
        structure=Part(
            mainType="text", subType="plain", params=(), contentId=None,
            description=None, encoding=None, disposition=None,
            dispositionParams=(), language=None, md5=None, headerStart=0,
            bodyStart=0, end=len(raw), lines=raw.count(b"\n"),
        ),
    )
