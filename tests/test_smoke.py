"""
The server starts on its defaults and captures one message end to end.
"""

import os
import sqlite3

from tests.harness import CaptureServer


def test_sendOneMessage(server: CaptureServer) -> None:
    """
    smtplib with STARTTLS and LOGIN gets C{250 OK : queued as <id>}.
    """
    client = server.smtp()
    client.mail("me@example.com")
    client.rcpt("you@example.org")
    code, reply = client.data(b"Subject: smoke\r\n\r\nhello\r\n")
    client.quit()
    assert code == 250
    assert reply.startswith(b"OK : queued as ")


def test_daemonModeCaptures() -> None:
    """
    C{twistd capture} without C{-n} forks into the background; the daemon
    still creates the first account, stores a message, and stops cleanly on
    SIGTERM (the store's threads start after the fork, not before it).
    """
    running = CaptureServer(daemon=True).start()
    try:
        client = running.smtp()
        client.mail("me@example.com")
        client.rcpt("you@example.org")
        code, reply = client.data(b"Subject: daemon\r\n\r\nhello\r\n")
        client.quit()
        assert code == 250
        queueId = reply.decode().rsplit(" ", 1)[1]
        with sqlite3.connect(os.path.join(running.data, "capture.sqlite3")) as db:
            stored = db.execute(
                "SELECT subject FROM messages WHERE queue_id = ?", (queueId,)
            ).fetchall()
        assert stored == [("daemon",)]
    finally:
        running.stop()
    assert "Server Shut Down." in running.log()
