"""
Message data on its way in, on a real server: a line of a megabyte sent
in small segments, and big messages sent at once against a small
C{--max-ingest-memory}.  What was stored is compared byte for byte.
"""

from __future__ import annotations

import base64
import random
import smtplib
import socket
import threading

import pytest

from tests.harness import CaptureServer, RawClient
from tests.test_smtp_server import _plain, _queueId, _rows


def _storedRaw(server: CaptureServer, queueId: str) -> bytes:
    rows = _rows(
        server,
        "SELECT r.raw FROM message_raw r JOIN messages m ON m.id = r.message "
        "WHERE m.queue_id = ?",
        queueId,
    )
    assert len(rows) == 1, rows
    return bytes(rows[0][0])


def _withoutReceived(raw: bytes) -> bytes:
    assert raw.startswith(b"Received: from "), raw[:100]
    rest = raw.split(b"\r\n", 1)[1]
    while rest.startswith(b"\t"):
        rest = rest.split(b"\r\n", 1)[1]
    return rest


@pytest.mark.serverOptions("--allow-insecure-auth")
def test_megabyteLineInSmallSegmentsStoredExactly(freshServer: CaptureServer) -> None:
    """
    A message with one line of 1,000,000 octets (under the 1 MiB line
    limit) sent in 200-octet writes, followed by a dot-stuffed line, is
    accepted and stored byte for byte; the next client is served.
    """
    server = freshServer
    assert server.key is not None
    raw = RawClient(server.ports["smtp"], timeout=120)
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert raw.command(b"EHLO client.example").startswith(b"250")
    assert raw.command(b"AUTH PLAIN " + _plain(server.account, server.key)).startswith(b"235")
    assert raw.command(b"MAIL FROM:<a@example.com>") == b"250 2.1.0 Accepted"
    assert raw.command(b"RCPT TO:<long-line@example.org>") == b"250 2.1.5 Accepted"
    assert raw.command(b"DATA").startswith(b"354")
    line = bytes(random.choice(b"abcdefghij ") for _ in range(1_000_000))
    message = b"Subject: one long line\r\n\r\n" + line + b"\r\n..stuffed\r\nend\r\n"
    for i in range(0, len(message), 200):
        raw.send(message[i : i + 200])
    reply = raw.command(b".")
    queueId = _queueId(reply)
    raw.close()
    assert _withoutReceived(_storedRaw(server, queueId)) == (
        b"Subject: one long line\r\n\r\n" + line + b"\r\n.stuffed\r\nend\r\n"
    )
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30)
    assert client.login(server.account, server.key)[0] == 235
    client.quit()


def _bigMessage(n: int, size: int) -> bytes:
    payload = base64.encodebytes(random.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        f"From: a@example.com\r\nTo: big{n}@example.org\r\nSubject: big {n}\r\n".encode()
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + payload + b"--b--\r\n"
    )


@pytest.mark.serverOptions(
    "--allow-insecure-auth", "--max-message-size", "5MiB", "--max-ingest-memory", "30MiB"
)
def test_bigMessagesPastTheBudgetPutOff(freshServer: CaptureServer) -> None:
    """
    Six 4 MiB messages sent at once against a 30 MiB budget (which counts
    each message three times over, for its copies: two fit): the
    ones past it get C{452 4.3.1}, at least one is accepted, and every
    accepted one is stored intact.  Once they are done, a message that
    was put off is accepted when sent again.
    """
    server = freshServer
    assert server.key is not None
    messages = [_bigMessage(n, 4 * 1024 * 1024) for n in range(6)]
    results: dict[int, tuple[int, bytes]] = {}
    ready = threading.Barrier(len(messages))

    def send(n: int) -> None:
        client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=120)
        client.login(server.account, server.key or "")
        client.mail("a@example.com")
        client.rcpt(f"big{n}@example.org")
        ready.wait()
        results[n] = client.data(messages[n])
        client.quit()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(messages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = {n: reply for n, (code, reply) in results.items() if code == 250}
    refused = {n: (code, reply) for n, (code, reply) in results.items() if code != 250}
    assert accepted and refused, results
    assert set(refused.values()) == {(452, b"4.3.1 Insufficient system storage, try again later")}
    for n, reply in accepted.items():
        assert _withoutReceived(_storedRaw(server, _queueId(b"250 " + reply))) == messages[n]
    again = next(iter(refused))
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=120)
    client.login(server.account, server.key)
    client.mail("a@example.com")
    client.rcpt(f"big{again}@example.org")
    code, reply = client.data(messages[again])
    client.quit()
    assert code == 250, reply
    assert _withoutReceived(_storedRaw(server, _queueId(b"250 " + reply))) == messages[again]
    assert _rows(server, "SELECT count(*) FROM messages") == [(len(accepted) + 1,)]
