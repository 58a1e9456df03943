"""
L{capture.emailmessage}: Mailsac's C{EmailMessage}, spelled once, the same
whether built from a L{Copy} or joined from a listing's stored summary.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from capture.emailmessage import (
    headersJSON,
    isoTime,
    listingHead,
    messageJSON,
    messageWithBodiesJSON,
    summaryJSON,
)
from capture.mime import Attachment, MailAddress
from capture.store.model import Bodies, Copy, MessageInfo

# How the API encodes one message (capture.web.responses).
_API_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def info(**overrides: Any) -> MessageInfo:
    fields: dict[str, Any] = {
        "rowid": 1, "queueId": "Q1abc", "received": 1_700_000_000_123, "account": None,
        "mailFrom": "a@example.net", "size": 321, "subject": 'say "hi" \u2603\t\x01',
        "fromAddresses": (MailAddress("a@example.net", 'Ann "Q" O\'Neil'),),
        "to": (MailAddress("b@example.com", "J\u00fcrgen"),), "cc": (), "bcc": (),
        "date": None, "messageId": None, "links": ("https://example.com/a?b=1",),
        "attachments": (Attachment("0af2", "a.pdf", "application/pdf", None, 3, "2"),),
        "ip": "192.0.2.1", "via": "127.0.0.1", "tls": True,
    }
    fields.update(overrides)
    return MessageInfo(**fields)


def copy(message: MessageInfo, **overrides: Any) -> Copy:
    fields: dict[str, Any] = {
        "uid": 7, "n": 0, "inbox": "b@example.com", "originalInbox": "B+x@Example.com",
        "savedBy": None, "read": None, "deleted": False, "answered": False, "flagged": False,
        "labels": (), "folder": "inbox", "message": message,
    }
    fields.update(overrides)
    return Copy(**fields)


def summaryOf(message: MessageInfo) -> str:
    return summaryJSON(
        fromAddresses=message.fromAddresses, to=message.to, cc=message.cc, bcc=message.bcc,
        subject=message.subject, received=message.received, size=message.size,
        attachments=[a.md5 for a in message.attachments], ip=message.ip, via=message.via,
        tls=message.tls, links=message.links,
    )


def headOf(c: Copy) -> str:
    """
    The listing head a store keeps for C{c}.
    """
    return listingHead(copyId=c.id, savedBy=c.savedBy, inbox=c.inbox,
                       originalInbox=c.originalInbox, domain=c.domain, folder=c.folder,
                       labels=c.labels, read=c.read)


class EmailMessageTests(SynchronousTestCase):
    def test_listingIsMessageJSON(self) -> None:
        """
        A listing joined from each copy's L{listingHead} and its message's
        summary minus its C{{} (as a store joins them) is, byte for byte,
        the array of L{messageJSON} of the same copies as the API encodes
        it: across starred, read, unread, labelled copies, quotes,
        non-ASCII and control characters.
        """
        message = info()
        copies = [
            copy(message),
            copy(message, n=1, savedBy="alice", read=True, labels=('a"b', "\u00e9"),
                 folder="spam", inbox='"q\\x"@b\u00fccher.example',
                 originalInbox="\"q\\x\"@B\u00fccher.example"),
            copy(info(queueId="Q2", subject="", fromAddresses=(), links=(), attachments=(),
                      tls=False), read=False, labels=("line\nbreak",)),
        ]
        joined = "[" + ",".join(headOf(c) + summaryOf(c.message)[1:] for c in copies) + "]"
        expected = "[" + ",".join(_API_JSON(messageJSON(c)) for c in copies) + "]"
        self.assertEqual(joined, expected)

    def test_fieldsInMailsacOrder(self) -> None:
        """
        Every field of the reference's C{EmailMessage}, the copy's first.
        """
        self.assertEqual(list(messageJSON(copy(info()))), [
            "_id", "savedBy", "inbox", "originalInbox", "domain", "folder", "labels", "read",
            "from", "to", "cc", "bcc", "subject", "received", "size", "attachments", "ip",
            "via", "rtls", "links", "spam",
        ])

    def test_messageJSON(self) -> None:
        """
        Addresses as C{address}/C{name} objects, attachments as their MD5
        sums, Mailsac's time format.
        """
        shown = messageJSON(copy(info(), n=2))
        self.assertEqual(shown["_id"], "Q1abc-2")
        self.assertEqual(shown["domain"], "example.com")
        self.assertEqual(shown["from"], [{"address": "a@example.net", "name": 'Ann "Q" O\'Neil'}])
        self.assertEqual(shown["attachments"], ["0af2"])
        self.assertEqual(shown["received"], "2023-11-14T22:13:20.123Z")
        self.assertEqual((shown["rtls"], shown["spam"], shown["cc"]), (True, 0, []))

    def test_isoTime(self) -> None:
        self.assertEqual(isoTime(0), "1970-01-01T00:00:00.000Z")
        self.assertEqual(isoTime(1_700_000_000_001), "2023-11-14T22:13:20.001Z")

    def test_headersJSON(self) -> None:
        """
        Mailsac's three header formats.
        """
        headers = (("Received", "one"), ("Subject", "s"), ("received", "two"))
        self.assertEqual(headersJSON(headers, "json"),
                         {"received": ["one", "two"], "subject": ["s"]})
        self.assertEqual(headersJSON(headers, "json-ordered"), [
            {"name": "received", "value": "one"}, {"name": "subject", "value": "s"},
            {"name": "received", "value": "two"}])
        self.assertEqual(headersJSON(headers, "plain"),
                         "Received: one\r\nSubject: s\r\nreceived: two\r\n")

    def test_messageWithBodies(self) -> None:
        """
        The webhook body: the message's fields, its bodies, raw text and
        headers, a repeated one as a list.
        """
        c = copy(info())
        bodies = Bodies(text="t", html="<p>h</p>",
                        headers=(("Received", "1"), ("Received", "2"), ("To", "b")),
                        structure={})
        shown = messageWithBodiesJSON(c, bodies, b"raw \xff")
        self.assertEqual({k: shown[k] for k in messageJSON(c)}, messageJSON(c))
        self.assertEqual(
            (shown["text"], shown["html"], shown["body"], shown["raw"], shown["headers"]),
            ("t", "<p>h</p>", "<p>h</p>", "raw \ufffd", {"received": ["1", "2"], "to": "b"}))
