"""
The HTTP listener's caps on the real server (issue 10, item 4): connections
per listener, live streams (waits, event streams, websockets) at once and
per client address, and the lifetime of a stream without a key.  Past a
cap the answer is C{503} with Mailsac's JSON error body and
C{Retry-After}; the mail listeners keep accepting; a closed stream gives
its slot back.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.harness import CaptureServer

_EVENTS = b"/api/addresses/x@public.test/events"


class HTTP:
    """
    One raw HTTP/1.1 connection from a chosen loopback address.
    """

    def __init__(self, server: CaptureServer, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=10,
                                             source_address=(source, 0))
        self.data = b""

    def get(self, path: bytes, *headers: bytes) -> None:
        extra = b"".join(h + b"\r\n" for h in headers)
        self.sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n" + extra + b"\r\n")

    def until(self, marker: bytes, within: float = 10) -> bytes:
        deadline = time.monotonic() + within
        while marker not in self.data:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; got {self.data!r}")
            self.data += chunk
        return self.data

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """
        A whole answer that ends with the connection (C{Connection: close}).
        """
        self.sock.settimeout(10)
        while chunk := self.sock.recv(65536):
            self.data += chunk
        head, _, body = self.data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            body = _unchunk(body)
        return int(lines[0].split()[1]), headers, body

    def close(self) -> None:
        self.sock.close()


def _unchunk(data: bytes) -> bytes:
    body = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        body, data = body + rest[:n], rest[n + 2:]
    return body


def _stream(server: CaptureServer, source: str, *headers: bytes) -> HTTP:
    client = HTTP(server, source)
    client.get(_EVENTS, *headers)
    client.until(b": listening")
    return client


def _refused(server: CaptureServer, source: str, path: bytes, *headers: bytes) -> tuple[
        int, dict[str, str], bytes]:
    client = HTTP(server, source)
    client.get(path, b"Connection: close", *headers)
    try:
        return client.answer()
    finally:
        client.close()


def _mailStillFlows(server: CaptureServer) -> None:
    with server.smtp() as client:
        client.sendmail("a@sender.test", ["x@public.test"], b"Subject: live\r\n\r\nok\r\n")
    imap = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10)
    assert imap.recv(100).startswith(b"* OK")
    imap.close()


_PER_ADDRESS = {
    "message": "Too many live streams from your address (waits, event streams, websockets): "
               "close one or try again later.",
    "error": "Service Unavailable",
}
_TOTAL = {"message": "Too many live streams at once, try again later.",
          "error": "Service Unavailable"}


@pytest.fixture
def streams() -> Iterator[CaptureServer]:
    running = CaptureServer(extra=["--max-streams", "3", "--max-streams-per-address", "2"])
    running.start()
    yield running
    running.stop()


def test_streamCaps(streams: CaptureServer) -> None:
    held = [_stream(streams, "127.0.0.1"), _stream(streams, "127.0.0.1")]
    code, headers, body = _refused(streams, "127.0.0.1", _EVENTS)
    assert (code, headers["retry-after"], json.loads(body)) == (503, "5", _PER_ADDRESS)
    # A wait from the same address is a stream too.
    code, _, body = _refused(streams, "127.0.0.1",
                             b"/api/addresses/x@public.test/messages/wait?timeout=5")
    assert (code, json.loads(body)) == (503, _PER_ADDRESS)
    # Another address gets the last slot; then the listener is full.
    held.append(_stream(streams, "127.0.0.2"))
    code, headers, body = _refused(streams, "127.0.0.3", _EVENTS)
    assert (code, headers["retry-after"], json.loads(body)) == (503, "5", _TOTAL)
    # So is the websocket, refused before its upgrade.
    code, _, body = _refused(
        streams, "127.0.0.3",
        b"/incoming-messages?key=" + (streams.key or "").encode() + b"&addresses=x@public.test",
        b"Upgrade: websocket", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        b"Sec-WebSocket-Version: 13",
    )
    assert (code, json.loads(body)) == (503, _TOTAL)
    # Ordinary requests and the mail listeners are still served, and the
    # open streams get the new mail.
    code, _, body = _refused(streams, "127.0.0.3", b"/api/addresses/x@public.test/message-count")
    assert code == 200
    _mailStillFlows(streams)
    for client in held:
        client.until(b"event: message")
    # A closed stream gives its slot back.
    held.pop(0).close()
    deadline = time.monotonic() + 10
    while True:
        client = HTTP(streams, "127.0.0.1")
        client.get(_EVENTS)
        data = client.until(b"\r\n\r\n")
        if data.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
            break
        client.close()
        time.sleep(0.1)
    assert data.startswith(b"HTTP/1.1 200")
    client.close()
    for client in held:
        client.close()


def test_websocketCountsAsAStream(streams: CaptureServer) -> None:
    # Mailsac's websocket carries only owned addresses with enablews on.
    key = streams.key or ""
    for method, body in (("POST", None), ("PUT", b'{"enablews": true}')):
        request = urllib.request.Request(
            f"http://127.0.0.1:{streams.ports['http']}/api/addresses/ws@public.test",
            data=body, method=method,
            headers={"Content-Type": "application/json", "Mailsac-Key": key})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    ws = HTTP(streams, "127.0.0.5")
    ws.get(b"/incoming-messages?key=" + key.encode() + b"&addresses=ws@public.test",
           b"Upgrade: websocket", b"Connection: Upgrade",
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13")
    assert ws.until(b"Listening").startswith(b"HTTP/1.1 101")
    held = [_stream(streams, "127.0.0.5")]
    code, _, body = _refused(streams, "127.0.0.5", _EVENTS)
    assert (code, json.loads(body)) == (503, _PER_ADDRESS)
    ws.close()
    deadline = time.monotonic() + 10
    while True:
        code, _, _ = _refused(streams, "127.0.0.5", b"/api/addresses/x@public.test/messages/"
                              b"wait?timeout=1")
        if code == 408 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == 408
    for client in held:
        client.close()


def test_httpConnectionCap() -> None:
    server = CaptureServer(extra=["--max-http-connections", "3"]).start()
    try:
        idle = [HTTP(server) for _ in range(3)]
        time.sleep(0.3)
        code, headers, body = _refused(server, "127.0.0.1", b"/api/addresses/x@public.test/message-count")
        assert (code, headers["retry-after"], headers["connection"]) == (503, "5", "close")
        assert json.loads(body) == {"message": "Too many connections, try again later.",
                                    "error": "Service Unavailable"}
        code, headers, body = _refused(server, "127.0.0.1", b"/")
        assert (code, headers["content-type"]) == (503, "text/html; charset=utf-8")
        assert b"Too many connections, try again later." in body
        _mailStillFlows(server)
        for client in idle:
            client.close()
        deadline = time.monotonic() + 10
        while True:
            code, _, body = _refused(server, "127.0.0.1", b"/api/addresses/x@public.test/message-count")
            if code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert (code, json.loads(body)) == (200, {"count": 1, "inbox": "x@public.test"})
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_anonymousStreamLifetime() -> None:
    server = CaptureServer(extra=["--anonymous-stream-lifetime", "2s"]).start()
    try:
        anonymous = _stream(server, "127.0.0.1")
        keyed = _stream(server, "127.0.0.1", b"Mailsac-Key: " + (server.key or "").encode())
        start = time.monotonic()
        # The anonymous stream ends cleanly: the last chunk, nothing cut.
        anonymous.until(b"0\r\n\r\n", within=10)
        assert b": stream lifetime over, reconnect" in anonymous.data
        assert time.monotonic() - start < 10
        # The keyed one is still listening and gets new mail.
        _mailStillFlows(server)
        keyed.until(b"event: message")
        # An anonymous wait is cut at the lifetime too: 408.
        code, _, body = _refused(server, "127.0.0.1",
                                 b"/api/addresses/nobody@public.test/messages/wait?timeout=60")
        assert (code, json.loads(body)["message"]) == (408, "No matching message arrived in 2 s.")
        anonymous.close()
        keyed.close()
    finally:
        server.stop()


def test_descriptorsKeptForEveryListener() -> None:
    """
    The issue's case: 1,100 anonymous event streams used to exhaust the
    process's descriptors, and then SMTP, IMAP, POP3 and HTTP all failed to
    accept.  With an open-file limit of 500 (and 600 streams from ten
    addresses, inside the cap per address), the caps are fitted under it
    with a reserve: HTTP refuses past its share, the mail listeners still
    greet, and the store still takes mail.
    """
    server = CaptureServer(openFiles=500).start()
    flood: list[socket.socket] = []
    try:
        assert "Open file limit 500: connection caps lowered to" in server.log()
        for n in range(600):
            sock = socket.socket()
            sock.settimeout(10)
            try:
                # From ten addresses, inside the cap per address.
                sock.bind((f"127.0.0.{10 + n % 10}", 0))
                sock.connect(("127.0.0.1", server.ports["http"]))
                sock.sendall(b"GET " + _EVENTS + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                sock.close()
                continue
            flood.append(sock)
        time.sleep(1)
        for name, greeting in (("smtp", b"220 "), ("imap", b"* OK"), ("pop3", b"+OK")):
            sock = socket.create_connection(("127.0.0.1", server.ports[name]), timeout=10)
            assert sock.recv(100).startswith(greeting), name
            sock.close()
        _mailStillFlows(server)
        assert "EMFILE" not in server.log() and "Too many open files" not in server.log()
        assert "Traceback" not in server.log()
    finally:
        for sock in flood:
            sock.close()
        server.stop()
