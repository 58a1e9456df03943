# -*- test-case-name: tests.test_ingest -*-
"""
Ingest: a message as SMTP hands it over (an L{Envelope} and its raw bytes)
turned into a L{PreparedMessage}, the neutral value every store backend
persists as it is.

All the CPU work of filing a message happens here, before any store sees
it: the message is parsed once, and the texts readers need later are
derived once (Mailsac's summary, IMAP's ENVELOPE and BODYSTRUCTURE, the
header and part-tree JSON), so a backend only writes rows, and a reader
never re-parses.

Two rules live here rather than in a backend, since every backend would
need them alike:

  - A message is never refused for its content.  If the parser fails, or
    what it made is text no database can store (lone surrogates), the
    message is prepared unparsed (L{fallbackParse}): its raw bytes are kept
    and only the parsed facts are missing.  A 4xx would have the client
    retry the same message forever.
  - Where the CPU work runs (L{Ingest}): a small message, most of them, at
    once on the calling (reactor) thread, which costs less than a hand-off;
    a large one on a thread pool, so the reactor never stalls on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from capture import imapdata
from capture.emailmessage import listingHead, summaryJSON
from capture.ids import copyId
from capture.mime import ParsedMessage, Part, parseMessage
from capture.store.interface import IStore
from capture.store.model import Copy, Envelope, PreparedCopy, PreparedMessage

_log = Logger()

# Messages up to this size are prepared on the calling thread.  Parsing
# 32 KiB takes about a millisecond; a thread hand-off costs more than that
# for the small messages most mail is.
INLINE_LIMIT = 32 * 1024

_toJSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# A message without a header block has an ENVELOPE of ten NILs.
_EMPTY_ENVELOPE = "(" + " ".join(["NIL"] * 10) + ")"


def prepare(envelope: Envelope, raw: bytes) -> PreparedMessage:
    """
    Parse a message (once) and derive what a store keeps of it.

    Whatever goes wrong in parsing, a value comes back (see the module's
    first rule): a message the parser cannot handle, or whose parsed text
    cannot be encoded as UTF-8, is prepared from L{fallbackParse}.
    """
    try:
        prepared = _derive(envelope, raw, parseMessage(raw))
        for value in _texts(prepared):
            # ASCII text is known to encode (constant time, no copy).
            if not value.isascii():
                value.encode("utf-8")
        return prepared
    except Exception:
        _log.failure("parsing {queueId} failed; storing it unparsed", queueId=envelope.queueId)
        return _derive(envelope, raw, fallbackParse(raw))


def _texts(prepared: PreparedMessage) -> Iterator[str]:
    """
    Every text of C{prepared} a store writes, but the envelope's (which
    the parser did not make).
    """
    parsed = prepared.parsed
    yield from (prepared.summary, prepared.imapEnvelope, prepared.imapStructure,
                prepared.headersJSON, prepared.structureJSON)
    yield from (v for v in (parsed.date, parsed.messageId, parsed.text, parsed.html) if v)
    for addresses in (parsed.fromAddresses, parsed.to, parsed.cc, parsed.bcc):
        for a in addresses:
            yield a.address
            yield a.name
    for attachment in parsed.attachments:
        yield from (v for v in (attachment.filename, attachment.contentType,
                                attachment.contentId, attachment.part) if v)


def _derive(envelope: Envelope, raw: bytes, parsed: ParsedMessage) -> PreparedMessage:
    return PreparedMessage(
        envelope=envelope,
        parsed=parsed,
        raw=raw,
        copies=tuple(
            PreparedCopy(n, inbox, r.original, domain, listingHead(
                copyId=copyId(envelope.queueId, n), savedBy=None, inbox=inbox,
                originalInbox=r.original, domain=domain, folder="inbox", labels=(), read=None,
            ))
            for n, r in enumerate(envelope.recipients)
            for inbox in (r.inbox.lower(),)
            for domain in (inbox.rpartition("@")[2],)
        ),
        summary=summaryJSON(
            fromAddresses=parsed.fromAddresses, to=parsed.to, cc=parsed.cc, bcc=parsed.bcc,
            subject=parsed.subject, received=envelope.received, size=len(raw),
            attachments=[a.md5 for a in parsed.attachments], ip=envelope.ip,
            via=envelope.via, tls=envelope.tls, links=parsed.links,
        ),
        imapEnvelope=imapdata.envelope(raw),
        imapStructure=imapdata.bodyStructure(raw, parsed.structure),
        headerSize=parsed.structure.bodyStart,
        headersJSON=_toJSON([list(h) for h in parsed.headers]),
        structureJSON=_toJSON(parsed.structure.toJSON()),
        month=time.strftime("%Y-%m", time.gmtime(envelope.received / 1000)),
    )


def fallbackParse(raw: bytes) -> ParsedMessage:
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


def backfillIMAP(raw: bytes, structureJSON: str) -> tuple[str, str, int]:
    """
    L{PreparedMessage}'s C{imapEnvelope}, C{imapStructure} and
    C{headerSize} of a message filed before stores kept them (migration 3),
    from its raw bytes and its stored L{PreparedMessage.structureJSON}.  A
    message they cannot be
    derived from is served as its unparsed fallback would be, so one odd
    message cannot keep a store from opening.
    """
    try:
        structure = Part.fromJSON(json.loads(structureJSON))
        return (imapdata.envelope(raw), imapdata.bodyStructure(raw, structure),
                structure.bodyStart)
    except Exception:
        part = fallbackParse(raw).structure
        return _EMPTY_ENVELOPE, imapdata.bodyStructure(raw, part), part.bodyStart


@attrs.define
class Ingest:
    """
    Files messages: prepares each (L{prepare}) where its size says, and
    hands the L{PreparedMessage} to the store.

    @ivar pool: Where large messages are prepared; by default the
        reactor's thread pool (which the reactor starts and stops), not the
        store's read threads: a burst of large messages would otherwise
        queue every read behind the parses.
    @ivar inlineLimit: Messages up to this many octets are prepared on the
        calling thread; larger ones on C{pool}.
    """

    store: IStore
    reactor: IReactorThreads
    pool: ThreadPool | None = None
    inlineLimit: int = INLINE_LIMIT

    def add(self, envelope: Envelope, raw: bytes) -> Deferred[list[Copy]]:
        """
        File one message.

        @return: Deferred firing with the new copies once the store has
            committed them (L{IStore.addMessage}).
        """
        if len(raw) <= self.inlineLimit:
            try:
                prepared = prepare(envelope, raw)
            except Exception:
                return fail()
            d: Deferred[list[Copy]] = self.store.addMessage(prepared)
            return d
        pool = self.pool if self.pool is not None else self.reactor.getThreadPool()
        parsing = deferToThreadPool(self.reactor, pool, prepare, envelope, raw)
        return parsing.addCallback(self.store.addMessage)
