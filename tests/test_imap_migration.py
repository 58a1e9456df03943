"""
Migration 0006: ENVELOPE texts stored before issue 12's fixes are written
again when the store opens.
"""

from __future__ import annotations

import os
import sqlite3

from tests.harness import CaptureServer
from tests.imapcorpus import CORPUS
from tests.test_api import inbox, send
from tests.test_imap import Raw


def test_migrationSixRewritesEnvelopes() -> None:
    """
    A store at version 5 whose ENVELOPE text is the old one (groups lost)
    answers the new ENVELOPE after a restart.
    """
    server = CaptureServer().start()
    address = inbox()
    try:
        send(server, address, CORPUS["group"])
    finally:
        server.stop()
    db = sqlite3.connect(os.path.join(server.data, "capture.sqlite3"))
    db.execute("UPDATE messages SET imap_envelope = '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)'")
    # Back to version 5: what migration 7 adds goes too.
    db.execute("ALTER TABLE copies DROP COLUMN listing_head")
    db.execute("PRAGMA user_version = 5")
    db.commit()
    db.close()
    server.start()
    try:
        raw = Raw(server, login=False)
        assert raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode()
                           ).startswith(b"a OK")
        assert raw.command(b"b EXAMINE INBOX").startswith(b"b OK")
        line = raw.exchange(b"c FETCH 1 (ENVELOPE)")[0]
        assert b'((NIL NIL "group" NIL)(NIL NIL "a" "b.test")' in line
        raw.close()
    finally:
        server.stop()
