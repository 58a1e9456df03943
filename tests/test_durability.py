"""
Nothing acknowledged is lost: a server killed with SIGKILL while clients
are sending has, after restart, every message it answered C{250} for,
byte for byte.
"""

from __future__ import annotations

import os
import re
import smtplib
import sqlite3
import threading
import time

from tests.harness import CaptureServer

_QUEUED = re.compile(rb"OK : queued as ([0-9A-Za-z]+)")


def _sender(server: CaptureServer, index: int, acked: dict[str, bytes], stop: threading.Event,
            lock: threading.Lock) -> None:
    """
    Send messages back to back on one connection until the server dies,
    recording what each C{250} acknowledged.
    """
    n = 0
    try:
        client = server.smtp()
        while not stop.is_set():
            n += 1
            body = os.urandom(300).hex().encode()
            message = (
                b"From: sender%d@example.com\r\nTo: crash@example.org\r\n"
                b"Subject: crash test %d/%d\r\n\r\n" % (index, index, n)
                + b"\r\n".join(body[i : i + 76] for i in range(0, len(body), 76))
                + b"\r\n"
            )
            client.mail(f"sender{index}@example.com")
            client.rcpt("crash@example.org")
            code, reply = client.data(message)
            match = _QUEUED.match(reply)
            if code == 250 and match:
                with lock:
                    acked[match.group(1).decode()] = message
    except (smtplib.SMTPException, OSError):
        # The server was killed under us: expected.
        pass


def test_sigkillLosesNoAcknowledgedMessage() -> None:
    """
    Ten clients send continuously; the server is killed with SIGKILL once a
    few hundred messages were acknowledged.  After a restart on the same
    data, every acknowledged message is stored with exactly the bytes sent,
    behind the one C{Received:} header Capture prepends, and the database
    passes SQLite's integrity check.
    """
    server = CaptureServer().start()
    acked: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_sender, args=(server, i, acked, stop, lock)) for i in range(10)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(30)
    assert len(acked) >= 300

    server.start()
    try:
        with sqlite3.connect(os.path.join(server.data, "capture.sqlite3")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = dict(
                db.execute(
                    "SELECT m.queue_id, r.raw FROM messages m "
                    "JOIN message_raw r ON r.message = m.id"
                )
            )
        missing = [queueId for queueId in acked if queueId not in stored]
        assert missing == []
        for queueId, sent in acked.items():
            raw = bytes(stored[queueId])
            assert raw.endswith(sent), queueId
            trace = raw[: len(raw) - len(sent)]
            assert trace.startswith(b"Received: from ")
            assert f" id {queueId}".encode() in trace
            # Only the Received: header precedes the message: its folded
            # continuation lines start with a tab.
            assert all(line.startswith(b"\t") for line in trace.split(b"\r\n")[1:-1])
        # The restarted server goes on capturing.
        client = server.smtp()
        client.sendmail("after@example.com", ["crash@example.org"], b"Subject: after\r\n\r\nok\r\n")
        client.quit()
    finally:
        server.stop()
