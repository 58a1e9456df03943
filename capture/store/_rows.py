# -*- test-case-name: tests.test_store -*-
"""
Rows to model values and back: the column lists the core selects, and the
functions that turn their rows into L{Copy}, L{OwnedAddress} and
L{FlagState} (the same for every backend: the schema's columns are
integers, text and bytes everywhere).
"""

from __future__ import annotations

import json
from typing import Any

from capture.events import ChangedCopy
from capture.ids import copyId
from capture.mime import Attachment, MailAddress
from capture.store._backend import Connection
from capture.store._uids import chunks
from capture.store.model import Copy, FlagState, MessageInfo, OwnedAddress

COPY_COLUMNS = """
    c.uid, c.n, c.inbox, c.original_inbox, c.saved_by, c.read, c.deleted,
    c.answered, c.flagged, c.labels_json, c.folder,
    m.id, m.queue_id, m.received, m.account, m.mail_from, m.size, m.subject,
    m.from_json, m.to_json, m.cc_json, m.bcc_json, m.date, m.message_id,
    m.links_json, m.attachments_json, m.ip, m.via, m.tls
"""
COPY_FROM = "FROM copies c JOIN messages m ON m.id = c.message"

ADDRESS_COLUMNS = "address, account, created, updated, info, forward, webhook, enablews"
# The settings updateAddress may change; each is also its column's name.
ADDRESS_SETTINGS = {"info", "forward", "webhook", "enablews"}

# One encoder for every column: json.dumps with options builds a new
# encoder on each call, which shows on the ingest path.
toJSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def addresses(data: str) -> tuple[MailAddress, ...]:
    return tuple(MailAddress(address=a, name=n) for a, n in json.loads(data))


def addressesJSON(addresses: tuple[MailAddress, ...]) -> str:
    if not addresses:
        return "[]"
    return toJSON([[a.address, a.name] for a in addresses])


def copyFromRow(row: tuple[Any, ...]) -> Copy:
    """
    A row of L{COPY_COLUMNS} as a L{Copy}.
    """
    (
        uid, n, inbox, original, savedBy, read, deleted, answered, flagged,
        labels, folder, rowid, queueId, received, account, mailFrom, size,
        subject, fromJSON, toJSON, ccJSON, bccJSON, date, messageId, links,
        attachments, ip, via, tls,
    ) = row
    return Copy(
        uid=uid,
        n=n,
        inbox=inbox,
        originalInbox=original,
        savedBy=savedBy,
        read=None if read is None else bool(read),
        deleted=bool(deleted),
        answered=bool(answered),
        flagged=bool(flagged),
        labels=tuple(json.loads(labels)),
        folder=folder,
        message=MessageInfo(
            rowid=rowid,
            queueId=queueId,
            received=received,
            account=account,
            mailFrom=mailFrom,
            size=size,
            subject=subject,
            fromAddresses=addresses(fromJSON),
            to=addresses(toJSON),
            cc=addresses(ccJSON),
            bcc=addresses(bccJSON),
            date=date,
            messageId=messageId,
            links=tuple(json.loads(links)),
            attachments=tuple(Attachment(*a) for a in json.loads(attachments)),
            ip=ip,
            via=via,
            tls=bool(tls),
        ),
    )


def windowPage(rows: list[Any], limit: int, bound: Any) -> tuple[list[Copy], int | None]:
    """
    A bounded search's page and where the next one starts: below its last
    copy when the page is full, else below the window (C{bound}, the
    window's oldest uid row) when the window ended before the oldest copy,
    else nowhere.
    """
    copies = [copyFromRow(r) for r in rows[:limit]]
    if len(rows) > limit:
        return copies, copies[-1].uid
    return copies, None if bound is None else int(bound[0])


def addressFromRow(row: tuple[Any, ...]) -> OwnedAddress:
    """
    A row of L{ADDRESS_COLUMNS} as an L{OwnedAddress}.
    """
    address, account, created, updated, info, forward, webhook, enablews = row
    return OwnedAddress(
        address=address, account=account, created=created, updated=updated, info=info,
        forward=forward, webhook=webhook, enablews=bool(enablews),
    )


def flagState(row: tuple[Any, ...]) -> FlagState:
    """
    C{(uid, read, deleted, answered, flagged, labels_json)} as a
    L{FlagState}.
    """
    uid, read, deleted, answered, flagged, labels = row
    return FlagState(
        uid, bool(read), bool(deleted), bool(answered), bool(flagged),
        tuple(json.loads(labels)) if labels != "[]" else (),
    )


def changedCopies(conn: Connection, uids: list[int]) -> list[ChangedCopy]:
    """
    The state of the copies C{uids} names, read in the transaction that
    changed them, for the event bus (uids no longer there are left out).
    """
    changed: list[ChangedCopy] = []
    for chunk in chunks(uids):
        rows = conn.execute(
            "SELECT c.uid, m.queue_id, c.n, c.inbox, c.saved_by, m.account, c.read, c.deleted, "
            f"c.answered, c.flagged, c.labels_json, c.folder {COPY_FROM} "
            f"WHERE c.uid IN ({','.join('?' * len(chunk))}) ORDER BY c.uid",
            chunk,
        )
        for uid, queueId, n, inbox, savedBy, sender, read, deleted, answered, flagged, \
                labels, folder in rows:
            changed.append(ChangedCopy(
                uid, copyId(queueId, n), inbox, savedBy, sender, bool(read), bool(deleted),
                bool(answered), bool(flagged),
                tuple(json.loads(labels)) if labels != "[]" else (), folder,
            ))
    return changed
