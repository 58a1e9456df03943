# -*- test-case-name: tests.test_store,tests.test_addresses -*-
"""
The SQLite schema's migrations: the scripts shipped in C{migrations/}, and
the Python steps some of them need to fill what SQL alone cannot (from
data stored by older Captures).  A new backend starts at the current
schema and needs none of the steps.
"""

from __future__ import annotations

import json
import re
import sqlite3
from importlib import resources

from twisted.logger import Logger

from capture.addresses import canonicalAddress, canonicalDomain
from capture.store._listing import refreshListing
from capture.store._rows import addresses as _addresses
from capture.store._rows import toJSON

_log = Logger()


def _migrations() -> list[tuple[int, str]]:
    """
    The schema migrations shipped with this Capture, in order.
    """
    found = []
    for entry in resources.files("capture.store").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text("utf-8")))
    return sorted(found)


def _fillSummaries(conn: sqlite3.Connection) -> None:
    """
    Write the summary of every message stored before migration 2, from its
    parsed columns (within the migration's transaction).
    """
    while True:
        rows = conn.execute(
            "SELECT id, received, size, subject, from_json, to_json, cc_json, bcc_json, "
            "links_json, attachments_json, ip, via, tls FROM messages "
            "WHERE summary_json IS NULL LIMIT 1000"
        ).fetchall()
        if not rows:
            return
        # Made as ingest makes it for new mail; imported only when there is
        # such data (the listing text aside, the store renders nothing).
        from capture.emailmessage import summaryJSON

        conn.executemany(
            "UPDATE messages SET summary_json = ? WHERE id = ?",
            [
                (
                    summaryJSON(
                        fromAddresses=_addresses(f), to=_addresses(t), cc=_addresses(c),
                        bcc=_addresses(b), subject=subject, received=received, size=size,
                        attachments=[a[0] for a in json.loads(attachments)], ip=ip, via=via,
                        tls=bool(tls), links=json.loads(links),
                    ),
                    rowid,
                )
                for (rowid, received, size, subject, f, t, c, b, links, attachments, ip, via,
                     tls) in rows
            ],
        )


# Names that may not be canonical: any character outside printable ASCII,
# or an A-label.
_MAYBE_IDN = "{0} GLOB '*[^ -~]*' OR {0} LIKE '%xn--%'"


def _canonicalNames(conn: sqlite3.Connection) -> None:
    """
    Rename inboxes, owned addresses and custom domains stored in another
    spelling than L{canonicalAddress}'s (migration 4, within its
    transaction).  Two spellings of one inbox merge; an owned address or
    domain whose canonical name is taken already keeps its old name (and a
    warning is logged), since two accounts cannot own one name.
    """
    inboxes = [r[0] for r in conn.execute(
        f"SELECT DISTINCT inbox FROM copies WHERE {_MAYBE_IDN.format('inbox')}"
    )]
    for inbox in inboxes:
        canonical = canonicalAddress(inbox)
        if canonical is not None and canonical != inbox:
            conn.execute(
                "UPDATE copies SET inbox = ?, domain = ? WHERE inbox = ?",
                (canonical, canonical.rpartition("@")[2], inbox),
            )
    for table, column, canonicalOf in (
        ("addresses", "address", canonicalAddress),
        ("domains", "domain", canonicalDomain),
    ):
        names = [r[0] for r in conn.execute(
            f"SELECT {column} FROM {table} WHERE {_MAYBE_IDN.format(column)}"
        )]
        for name in names:
            canonical = canonicalOf(name)
            if canonical is None or canonical == name:
                continue
            cursor = conn.execute(
                f"UPDATE OR IGNORE {table} SET {column} = ? WHERE {column} = ?", (canonical, name)
            )
            if cursor.rowcount == 0:
                _log.warn(
                    "{name!r} is also stored as {canonical!r}: kept under its old name",
                    name=name, canonical=canonical,
                )


def _fillIMAP(conn: sqlite3.Connection) -> None:
    """
    Write the IMAP texts of every message stored before migration 3, from
    its raw bytes and stored part tree (within the migration's transaction).
    """
    while True:
        rows = conn.execute(
            "SELECT m.id, r.raw, b.structure_json FROM messages m "
            "JOIN message_raw r ON r.message = m.id JOIN message_bodies b ON b.message = m.id "
            "WHERE m.imap_envelope IS NULL LIMIT 1000"
        ).fetchall()
        if not rows:
            return
        # Made by ingest, as for new mail; imported only when there is
        # such data, so that the store loads ingest (and the IMAP and
        # EmailMessage renderers behind it) only to migrate old data.
        from capture.ingest import backfillIMAP

        updates = [
            (*backfillIMAP(bytes(raw), structureJSON), rowid)
            for rowid, raw, structureJSON in rows
        ]
        conn.executemany(
            "UPDATE messages SET imap_envelope = ?, imap_structure = ?, header_size = ? "
            "WHERE id = ?",
            updates,
        )


# A parameter folded inside its quotes (boundary="a<CRLF> b"), which the
# part tree found before migration 6 missed: such messages are parsed again.
_FOLDED_PARAMETER = re.compile(rb'="[^"\r\n]*\r\n[ \t]')


def _refreshIMAP(conn: sqlite3.Connection) -> None:
    """
    Migration 6: write again the IMAP texts of every message stored before
    it (ENVELOPE groups, routes and defaults, and the ENVELOPEs inside
    BODYSTRUCTURE, issue 12), and the part tree of those whose raw bytes
    hold a parameter folded inside its quotes (the multipart once seen as
    text). A message whose texts cannot be made keeps the ones it had.
    """
    last = 0
    while True:
        rows = conn.execute(
            "SELECT m.id, r.raw, b.structure_json FROM messages m "
            "JOIN message_raw r ON r.message = m.id JOIN message_bodies b ON b.message = m.id "
            "WHERE m.id > ? ORDER BY m.id LIMIT 1000",
            (last,),
        ).fetchall()
        if not rows:
            return
        # Imported only when there is such data, so that the store loads
        # the parser and IMAP's renderer only to migrate old data.
        from capture import imapdata
        from capture.mime import Part, parseMessage

        updates = []
        trees = []
        for rowid, raw, structureJSON in rows:
            last = rowid
            raw = bytes(raw)
            try:
                if _FOLDED_PARAMETER.search(raw):
                    part = parseMessage(raw).structure
                    trees.append((toJSON(part.toJSON()), rowid))
                else:
                    part = Part.fromJSON(json.loads(structureJSON))
                updates.append(
                    (imapdata.envelope(raw), imapdata.bodyStructure(raw, part), rowid)
                )
            except Exception:
                continue
        conn.executemany(
            "UPDATE messages SET imap_envelope = ?, imap_structure = ? WHERE id = ?", updates
        )
        conn.executemany("UPDATE message_bodies SET structure_json = ? WHERE message = ?", trees)


def _fillListings(conn: sqlite3.Connection) -> None:
    """
    Write the listing head of every copy stored before migration 7, with
    the one function every writer uses (within the migration's
    transaction).
    """
    while True:
        uids = [r[0] for r in conn.execute(
            "SELECT uid FROM copies WHERE listing_head IS NULL LIMIT 1000"
        )]
        if not uids:
            return
        refreshListing(conn, uids)
