"""
L{capture.ingest}: a message prepared once, whatever its content, and
prepared where its size says (on the calling thread or a thread pool).
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from capture import imapdata, ingest
from capture.emailmessage import listingHead, summaryJSON
from capture.ids import newQueueId
from capture.ingest import Ingest, backfillIMAP, prepare
from capture.mime import MailAddress, Part, parseMessage
from capture.store.model import Envelope, PreparedCopy, PreparedMessage, Recipient

RAW = (
    b"From: Ann <ann@example.net>\r\nTo: Bob <bob@example.com>\r\nSubject: hi\r\n"
    b"Message-ID: <m1@example.net>\r\n\r\nsee https://example.com/x\r\n"
)


def envelope(*recipients: tuple[str, str], received: int = 1_700_000_000_000) -> Envelope:
    return Envelope(
        queueId=newQueueId(), mailFrom="ann@example.net",
        recipients=tuple(Recipient(inbox, original) for inbox, original in recipients)
        or (Recipient("bob@example.com", "bob@example.com"),),
        account=None, helo="client.example", ip="192.0.2.7", via="127.0.0.1", tls=True,
        received=received,
    )


class PrepareTests(SynchronousTestCase):
    """
    L{prepare} parses once and derives every text readers need.
    """

    def test_derivedTexts(self) -> None:
        """
        The summary, IMAP texts, header size and JSON blocks are those of
        the one parse.
        """
        env = envelope()
        prepared = prepare(env, RAW)
        parsed = parseMessage(RAW)
        self.assertEqual(prepared.parsed, parsed)
        self.assertIs(prepared.raw, RAW)
        self.assertEqual(prepared.summary, summaryJSON(
            fromAddresses=parsed.fromAddresses, to=parsed.to, cc=parsed.cc, bcc=parsed.bcc,
            subject="hi", received=env.received, size=len(RAW), attachments=[],
            ip="192.0.2.7", via="127.0.0.1", tls=True, links=["https://example.com/x"],
        ))
        self.assertEqual(prepared.imapEnvelope, imapdata.envelope(RAW))
        self.assertEqual(prepared.imapStructure, imapdata.bodyStructure(RAW, parsed.structure))
        self.assertEqual(prepared.headerSize, RAW.index(b"\r\n\r\n") + 4)
        self.assertEqual(json.loads(prepared.headersJSON), [list(h) for h in parsed.headers])
        self.assertEqual(Part.fromJSON(json.loads(prepared.structureJSON)), parsed.structure)

    def test_copyPerRecipient(self) -> None:
        """
        One copy per recipient, in RCPT order, numbered from 0: the inbox
        in lower case, the original as given, the inbox's domain, and its
        listing head as filed (unread, unlabelled, saved by nobody).
        """
        prepared = prepare(envelope(("Bob@Example.COM", "Bob+tag@Example.COM"),
                                    ("carol@b\u00fccher.example", "carol@b\u00fccher.example")),
                           RAW)
        queueId = prepared.envelope.queueId
        self.assertEqual(prepared.copies, (
            PreparedCopy(0, "bob@example.com", "Bob+tag@Example.COM", "example.com",
                         listingHead(copyId=f"{queueId}-0", savedBy=None,
                                     inbox="bob@example.com", originalInbox="Bob+tag@Example.COM",
                                     domain="example.com", folder="inbox", labels=(), read=None)),
            PreparedCopy(1, "carol@b\u00fccher.example", "carol@b\u00fccher.example",
                         "b\u00fccher.example",
                         listingHead(copyId=f"{queueId}-1", savedBy=None,
                                     inbox="carol@b\u00fccher.example",
                                     originalInbox="carol@b\u00fccher.example",
                                     domain="b\u00fccher.example", folder="inbox", labels=(),
                                     read=None)),
        ))

    def test_month(self) -> None:
        """
        The usage month is the UTC month of C{received}.
        """
        lastSecond = calendar.timegm((2024, 1, 31, 23, 59, 59)) * 1000 + 999
        self.assertEqual(prepare(envelope(received=lastSecond), RAW).month, "2024-01")
        self.assertEqual(prepare(envelope(received=lastSecond + 1), RAW).month, "2024-02")

    def test_parserFailureStoresUnparsed(self) -> None:
        """
        When the parser raises, the message is prepared unparsed (its raw
        bytes as text, no parsed facts) and the failure is logged, not
        raised: it is stored rather than refused.
        """
        def broken(raw: bytes) -> Any:
            raise ValueError("parser bug")

        self.patch(ingest, "parseMessage", broken)
        prepared = prepare(envelope(), RAW)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertUnparsed(prepared)

    def test_unencodableTextStoresUnparsed(self) -> None:
        """
        Parsed text no database could store as UTF-8 (a lone surrogate,
        here in a sender's name) makes the message prepared unparsed.
        """
        parsed = parseMessage(RAW)
        odd = attrs.evolve(parsed, fromAddresses=(MailAddress("ann@example.net", "\udcff"),))
        self.patch(ingest, "parseMessage", lambda raw: odd)
        prepared = prepare(envelope(), RAW)
        self.assertEqual(len(self.flushLoggedErrors(UnicodeEncodeError)), 1)
        self.assertUnparsed(prepared)

    def assertUnparsed(self, prepared: PreparedMessage) -> None:
        self.assertEqual(prepared.parsed.subject, "")
        self.assertEqual(prepared.parsed.fromAddresses, ())
        self.assertEqual(prepared.parsed.text, RAW.decode())
        self.assertEqual(prepared.headerSize, 0)
        self.assertEqual(json.loads(prepared.summary)["from"], [])
        self.assertEqual(len(prepared.copies), 1)

    def test_backfillIMAP(self) -> None:
        """
        A stored message's IMAP texts are derived from its raw bytes and
        stored part tree as at ingest; a part tree that cannot be read
        gives the unparsed fallback's, not an exception.
        """
        prepared = prepare(envelope(), RAW)
        self.assertEqual(backfillIMAP(RAW, prepared.structureJSON),
                         (prepared.imapEnvelope, prepared.imapStructure, prepared.headerSize))
        envelopeText, structure, headerSize = backfillIMAP(RAW, "not json")
        self.assertEqual(envelopeText, "(" + " ".join(["NIL"] * 10) + ")")
        self.assertTrue(structure.startswith('("text" "plain"'), structure)
        self.assertEqual(headerSize, 0)


@attrs.define
class _Store:
    """
    Records what it is given to store.
    """

    added: list[PreparedMessage] = attrs.Factory(list)

    def addMessage(self, prepared: PreparedMessage) -> Deferred[list[Any]]:
        self.added.append(prepared)
        return succeed([prepared.envelope.queueId])


@attrs.define
class _Pool:
    """
    A thread pool that runs nothing until told (C{deferToThreadPool}'s
    side of L{twisted.python.threadpool.ThreadPool}).

    @ivar queued: What was handed to the pool, as C{(f, args, run)}.
    """

    queued: list[tuple[Callable[..., Any], tuple[Any, ...], Callable[[], None]]] = (
        attrs.Factory(list))

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, object], None], f: Callable[..., Any], *args: Any,
    ) -> None:
        self.queued.append((f, args, lambda: onResult(True, f(*args))))


class _Reactor:
    """
    Runs what a pool thread hands back at once; its own thread pool is
    C{pool}.
    """

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)

    def getThreadPool(self) -> _Pool:
        return self.pool


class IngestTests(SynchronousTestCase):
    """
    L{Ingest} prepares small messages on the calling thread and large ones
    on its pool, then gives them to the store.
    """

    def setUp(self) -> None:
        self.store = _Store()
        self.pool = _Pool()
        self.ingest = Ingest(self.store, _Reactor(self.pool), self.pool,  # type: ignore[arg-type]
                             inlineLimit=len(RAW))

    def test_smallPreparedInline(self) -> None:
        """
        A message up to the limit is prepared on the calling thread and
        stored before C{add} returns; the pool is not used.
        """
        env = envelope()
        d = self.ingest.add(env, RAW)
        self.assertEqual(self.successResultOf(d), [env.queueId])
        self.assertEqual(self.pool.queued, [])
        (prepared,) = self.store.added
        self.assertEqual((prepared.envelope, prepared.parsed.subject), (env, "hi"))

    def test_largePreparedOnPool(self) -> None:
        """
        A message over the limit is prepared on the pool; the store gets
        it when the pool's answer reaches the reactor.
        """
        env = envelope()
        large = RAW + b"x"
        d = self.ingest.add(env, large)
        self.assertNoResult(d)
        self.assertEqual(self.store.added, [])
        ((f, args, run),) = self.pool.queued
        self.assertEqual((f, args), (prepare, (env, large)))
        run()
        self.assertEqual(self.successResultOf(d), [env.queueId])
        (prepared,) = self.store.added
        self.assertEqual((prepared.raw, prepared.parsed.subject), (large, "hi"))

    def test_reactorPoolByDefault(self) -> None:
        """
        Without a pool of its own, ingest uses the reactor's.
        """
        ingest = Ingest(self.store, _Reactor(self.pool), inlineLimit=0)  # type: ignore[arg-type]
        d = ingest.add(envelope(), RAW)
        ((f, _, run),) = self.pool.queued
        run()
        self.successResultOf(d)
        self.assertEqual(len(self.store.added), 1)

    def test_inlineFailureIsAFailedDeferred(self) -> None:
        """
        Should preparing itself raise on the calling thread, C{add} fails
        its Deferred rather than raising into the SMTP session.
        """
        def broken(envelope: Envelope, raw: bytes) -> PreparedMessage:
            raise MemoryError()

        self.patch(ingest, "prepare", broken)
        self.failureResultOf(self.ingest.add(envelope(), RAW), MemoryError)
        self.assertEqual(self.store.added, [])
