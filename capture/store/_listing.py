# -*- test-case-name: tests.test_store -*-
"""
The stored listing text of each copy (C{copies.listing_head}), and the one
way every writer keeps it true.

A listing (C{GET /api/addresses/:email/messages}, the hot read) is served
as stored text joined by the database: each copy's head (its own
C{EmailMessage} fields, L{capture.emailmessage.listingHead}) followed by
its message's summary minus its C{{}, the page's objects joined with
commas in one aggregated row.  No JSON is made per request, in SQL or in
Python.  The price is that the head must be made again whenever a field
it shows changes (read, labels, folder, savedBy, inbox): every statement
that changes one of those columns is followed, in its transaction, by
L{refreshListing} for the copies it touched.  The conformance suite's
C{test_listingFollowsEveryChange} checks each such write.
"""

from __future__ import annotations

import json

from capture.emailmessage import listingHead
from capture.ids import copyId
from capture.store._backend import Connection
from capture.store._uids import chunks

# A listing page's one row: the newest copies' texts (a subquery selecting
# LISTING_TEXT AS j), joined by the dialect's aggregate.
LISTING_TEXT = "c.listing_head || substr(m.summary_json, 2)"

_FIELDS = (
    "SELECT c.uid, m.queue_id, c.n, c.saved_by, c.inbox, c.original_inbox, c.domain, "
    "c.folder, c.labels_json, c.read FROM copies c JOIN messages m ON m.id = c.message "
    "WHERE c.uid IN "
)


def refreshListing(conn: Connection, uids: list[int]) -> None:
    """
    Make the listing head of each copy in C{uids} again from its stored
    fields, within the caller's transaction (uids of copies gone are
    skipped).  Every write that changes C{read}, C{labels_json},
    C{folder}, C{saved_by}, C{inbox}, C{original_inbox} or C{domain} calls
    it, so a listing never shows an old state.
    """
    for chunk in chunks(uids):
        rows = conn.execute(_FIELDS + "(" + ",".join("?" * len(chunk)) + ")", chunk).fetchall()
        conn.executemany(
            "UPDATE copies SET listing_head = ? WHERE uid = ?",
            [
                (
                    listingHead(
                        copyId=copyId(queueId, n), savedBy=savedBy, inbox=inbox,
                        originalInbox=original, domain=domain, folder=folder,
                        labels=json.loads(labels), read=None if read is None else bool(read),
                    ),
                    uid,
                )
                for uid, queueId, n, savedBy, inbox, original, domain, folder, labels, read
                in rows
            ],
        )
