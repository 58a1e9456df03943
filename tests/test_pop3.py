"""
POP3 on a real server with real clients: poplib (STLS and POP3S), curl
(C{pop3://} and C{pop3s://}) and a raw socket for what poplib will not send.
Mail goes in over SMTP and is read over POP3.
"""

from __future__ import annotations

import poplib
import secrets
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import CaptureServer, LineSocket
from tests.test_api import call, callJSON, send


def _inbox() -> str:
    return f"pop-{secrets.token_hex(6)}@example.com"


def _account(server: CaptureServer, prefix: str = "pop") -> tuple[str, str]:
    name = f"{prefix}{secrets.token_hex(4)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    return name, key


def _pop(server: CaptureServer, user: str, key: str | None = None) -> poplib.POP3:
    """
    poplib on the STLS port, upgraded and logged in.
    """
    client = poplib.POP3("localhost", server.ports["pop3"], timeout=30)
    client.stls(context=server.tlsContext())
    client.user(user)
    client.pass_(key if key is not None else server.key or "")
    return client


class Raw(LineSocket):
    """
    A plain socket speaking POP3, for replies checked byte for byte.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        self.greeting = self.line()

    def multi(self) -> bytes:
        """
        The data of a multi-line reply, up to and with its C{.CRLF}.
        """
        while b"\r\n.\r\n" not in b"\r\n" + self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buffer!r}")
            self.buffer += chunk
        end = (b"\r\n" + self.buffer).index(b"\r\n.\r\n") + 3
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.line()

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def insecure() -> Iterator[CaptureServer]:
    """
    A server allowing login before TLS, so raw-socket tests can log in.
    """
    running = CaptureServer(extra=["--allow-insecure-auth"]).start()
    yield running
    running.stop()


def _loggedIn(server: CaptureServer, user: str, key: str) -> Raw:
    raw = Raw(server.ports["pop3"])
    assert raw.command(b"USER " + user.encode()) == b"+OK Send the API key with PASS"
    assert raw.command(b"PASS " + key.encode()).startswith(b"+OK Logged in")
    return raw


def test_loginOnBothListenersWithBothKinds(server: CaptureServer) -> None:
    """
    The account's name and an address both log in, over STLS and over
    implicit TLS; the address lists what the API lists.
    """
    address = _inbox()
    send(server, address, b"Subject: one\r\n\r\nfirst\r\n")
    send(server, address, b"Subject: two\r\n\r\nsecond\r\n")
    assert server.key is not None
    client = _pop(server, address)
    assert client.stat()[0] == 2
    client.quit()
    secure = poplib.POP3_SSL(
        "localhost", server.ports["pop3s"], timeout=30, context=server.tlsContext()
    )
    secure.user(server.account)
    secure.pass_(server.key)
    count, size = secure.stat()
    # The account's INBOX: everything it sent through Capture, both at least.
    assert count >= 2 and size > 0
    secure.quit()


def test_accountInboxIsWhatItSent(server: CaptureServer) -> None:
    """
    The account name serves the mail the account sent (oldest first),
    not mail sent by others.
    """
    name, key = _account(server)
    client = server.smtp(login=False)
    client.login(name, key)
    for n in range(3):
        client.sendmail("me@example.com", [_inbox()], b"Subject: sent %d\r\n\r\nbody\r\n" % n)
    client.quit()
    send(server, _inbox(), b"Subject: not mine\r\n\r\nx\r\n")
    pop = _pop(server, name, key)
    assert pop.stat()[0] == 3
    subjects = [pop.top(n, 0)[1] for n in (1, 2, 3)]
    assert [[line for line in lines if line.startswith(b"Subject:")] for lines in subjects] == [
        [b"Subject: sent 0"], [b"Subject: sent 1"], [b"Subject: sent 2"],
    ]
    pop.quit()


def test_uidlStableAndRetrExact(server: CaptureServer) -> None:
    """
    UIDL names a message by its copy id in every session; RETR gives the
    stored bytes exactly (what the API's raw route gives), dots stuffed
    on the wire and unstuffed by the client; TOP gives the header and the
    asked lines.
    """
    address = _inbox()
    body = (
        b"Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\nplain\r\n.\r\nend\r\n"
    )
    send(server, address, body)
    send(server, address, b"Subject: second\r\n\r\nline 1\r\nline 2\r\nline 3\r\n")
    first = _pop(server, address)
    uids = first.uidl()[1]
    first.quit()
    second = _pop(server, address)
    assert second.uidl()[1] == uids
    ids = [line.split()[1].decode() for line in uids]
    status, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    assert status == 200
    assert sorted(m["_id"] for m in listed) == sorted(ids)
    # Oldest first: the last of the newest-first API listing is message 1.
    assert ids == [m["_id"] for m in reversed(listed)]
    _, _, raw = call(server, "GET", f"/api/raw/{address}/{ids[0]}", server.key)
    response, lines, octets = second.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == raw
    assert b".starts with a dot" in lines and b"..two dots" in lines and b"." in lines
    _, topLines, _ = second.top(2, 2)
    assert topLines[-3:] == [b"", b"line 1", b"line 2"]
    assert topLines[-4] == b"Subject: second"
    second.quit()


def test_retrOnTheWire(insecure: CaptureServer) -> None:
    """
    On the wire: a first body line starting with a dot is stuffed, every
    line ends CRLF (never CR CR LF), and the terminator comes with the
    data.
    """
    assert insecure.key is not None
    address = _inbox()
    send(insecure, address, b"Subject: wire\r\n\r\n.dot\r\nnext\r\n")
    raw = _loggedIn(insecure, address, insecure.key)
    status = raw.command(b"RETR 1")
    assert status.startswith(b"+OK ") and status.endswith(b" octets")
    data = raw.multi()
    assert data.endswith(b"\r\n\r\n..dot\r\nnext\r\n.\r\n")
    assert b"\r\r\n" not in data
    assert int(status.split()[1]) == len(data) - 3 - data.count(b"\r\n..")
    assert raw.command(b"QUIT") == b"+OK Bye"
    raw.close()


def test_deleteSemantics(server: CaptureServer) -> None:
    """
    DELE hides the message from STAT, LIST and UIDL at once; RSET brings
    it back; after QUIT it is gone from the store (the API no longer
    lists it), and a session that ends without QUIT deletes nothing.
    """
    address = _inbox()
    for n in range(3):
        send(server, address, b"Subject: %d\r\n\r\nx\r\n" % n)
    pop = _pop(server, address)
    assert pop.stat()[0] == 3
    pop.dele(2)
    assert pop.stat()[0] == 2
    assert [line.split()[0] for line in pop.list()[1]] == [b"1", b"3"]
    assert [line.split()[0] for line in pop.uidl()[1]] == [b"1", b"3"]
    pop.rset()
    assert pop.stat()[0] == 3
    pop.dele(1)
    pop.sock.close()  # no QUIT: nothing is deleted
    pop = _pop(server, address)
    assert pop.stat()[0] == 3
    gone = pop.uidl(1).split()[2].decode()
    pop.dele(1)
    assert pop.quit().startswith(b"+OK Bye, 1 messages deleted")
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    assert [m["_id"] for m in listed if m["_id"] == gone] == []
    assert len(listed) == 2


def test_ownedAddressNeedsItsOwnersKey(server: CaptureServer) -> None:
    """
    An address another account reserved cannot be opened with one's own
    key, even one that logs in to one's own account; its owner can.
    """
    owner, ownerKey = _account(server, "owner")
    _, otherKey = _account(server, "other")
    address = _inbox()
    status, _ = callJSON(server, "POST", f"/api/addresses/{address}", ownerKey)
    assert status == 200
    send(server, address, b"Subject: private\r\n\r\nsecret\r\n")
    with pytest.raises(poplib.error_proto, match="-ERR \\[AUTH\\] Invalid user name or API key"):
        _pop(server, address, otherKey)
    pop = _pop(server, address, ownerKey)
    assert pop.stat()[0] == 1
    pop.quit()


def test_publicInboxHidesOthersStarredMail(server: CaptureServer) -> None:
    """
    In a public inbox, a copy someone else starred is not served, as the
    API does not list it.
    """
    _, starrerKey = _account(server, "star")
    address = _inbox()
    send(server, address, b"Subject: a\r\n\r\nx\r\n")
    send(server, address, b"Subject: b\r\n\r\ny\r\n")
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", starrerKey)
    status, _ = callJSON(server, "PUT", f"/api/addresses/{address}/messages/{listed[0]['_id']}/star",
                         starrerKey)
    assert status == 200
    assert server.key is not None
    pop = _pop(server, address)
    assert [line.split()[1].decode() for line in pop.uidl()[1]] == [listed[1]["_id"]]
    pop.quit()
    pop = _pop(server, address, starrerKey)
    assert pop.stat()[0] == 2
    pop.quit()


def test_curl(server: CaptureServer) -> None:
    """
    curl lists and fetches over pop3:// with STLS required, and pop3s://.
    """
    assert server.key is not None
    address = _inbox()
    send(server, address, b"Subject: curl\r\n\r\nhello curl\r\n")
    ca = f"{server.tlsDir}/localhost.pem"
    base = ["curl", "-s", "--cacert", ca, "--max-time", "30", "-u", f"{address}:{server.key}"]
    listing = subprocess.run(
        [*base, "--ssl-reqd", f"pop3://localhost:{server.ports['pop3']}/"],
        capture_output=True, check=True, timeout=60,
    )
    assert listing.stdout.startswith(b"1 ")
    message = subprocess.run(
        [*base, f"pop3s://localhost:{server.ports['pop3s']}/1"],
        capture_output=True, check=True, timeout=60,
    )
    assert b"Subject: curl\r\n" in message.stdout and b"hello curl" in message.stdout
    refused = subprocess.run(
        ["curl", "-s", "--cacert", ca, "--max-time", "30", "-u", f"{address}:k_wrong",
         f"pop3s://localhost:{server.ports['pop3s']}/"],
        capture_output=True, timeout=60,
    )
    assert refused.returncode == 67  # CURLE_LOGIN_DENIED


def test_capaAndLoginBeforeTLS(server: CaptureServer) -> None:
    """
    Before TLS, CAPA offers STLS and no login; USER is refused; after STLS
    the login capabilities appear and STLS goes.  Over implicit TLS, no
    STLS.
    """
    raw = Raw(server.ports["pop3"])
    assert raw.greeting == b"+OK Capture POP3 server ready"
    assert raw.command(b"CAPA") == b"+OK Capability list follows"
    assert raw.multi() == (
        b"TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\n"
        b"IMPLEMENTATION Capture\r\n.\r\n"
    )
    assert raw.command(b"USER admin") == b"-ERR [AUTH] Use STLS first: no login before TLS here"
    assert raw.command(b"AUTH PLAIN AGFkbWluAGs=") == (
        b"-ERR [AUTH] Use STLS first: no login before TLS here"
    )
    assert raw.command(b"NOOP") == b"-ERR Log in first (USER and PASS, or AUTH PLAIN)"
    raw.close()
    client = poplib.POP3("localhost", server.ports["pop3"], timeout=30)
    client.stls(context=server.tlsContext())
    assert client.capa() == {
        "TOP": [], "UIDL": [], "RESP-CODES": [], "AUTH-RESP-CODE": [], "PIPELINING": [],
        "USER": [], "SASL": ["PLAIN", "LOGIN"], "IMPLEMENTATION": ["Capture"],
    }
    client.quit()
    secure = poplib.POP3_SSL(
        "localhost", server.ports["pop3s"], timeout=30, context=server.tlsContext()
    )
    assert "STLS" not in secure.capa() and "USER" in secure.capa()
    secure.quit()


def test_authPlain(server: CaptureServer) -> None:
    """
    AUTH PLAIN, with the initial response or after the continuation.
    """
    import base64

    assert server.key is not None
    address = _inbox()
    # poplib has no AUTH: its private command helpers send it.
    client: Any = poplib.POP3_SSL(
        "localhost", server.ports["pop3s"], timeout=30, context=server.tlsContext()
    )
    token = base64.b64encode(b"\0" + address.encode() + b"\0" + server.key.encode())
    assert client._shortcmd("AUTH PLAIN " + token.decode()).startswith(b"+OK Logged in")
    client.quit()
    client = poplib.POP3_SSL(
        "localhost", server.ports["pop3s"], timeout=30, context=server.tlsContext()
    )
    client._putcmd("AUTH PLAIN")
    assert client._getline()[0] == b"+ "
    assert client._shortcmd(token.decode()).startswith(b"+OK Logged in")
    client.quit()


def test_stlsDropsPipelinedCommands(server: CaptureServer) -> None:
    """
    Commands sent in the same packet after STLS are not run after the
    handshake (RFC 2595 section 4).
    """
    import ssl

    sock = socket.create_connection(("127.0.0.1", server.ports["pop3"]), timeout=30)
    sock.recv(1024)
    sock.sendall(b"STLS\r\nCAPA\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += sock.recv(1)
    assert reply == b"+OK Begin TLS negotiation\r\n"
    wrapped = server.tlsContext().wrap_socket(sock, server_hostname="localhost")
    wrapped.sendall(b"NOOP\r\n")
    answer = wrapped.recv(1024)
    # The first thing over TLS answers NOOP (not logged in), not the CAPA.
    assert answer == b"-ERR Log in first (USER and PASS, or AUTH PLAIN)\r\n"
    wrapped.close()
    del ssl


def test_badInput(insecure: CaptureServer) -> None:
    """
    Each bad command gets its -ERR and the session goes on; a new client
    is served as well.
    """
    assert insecure.key is not None
    address = _inbox()
    send(insecure, address, b"Subject: only\r\n\r\nx\r\n")
    raw = Raw(insecure.ports["pop3"])
    assert raw.command(b"STAT") == b"-ERR Log in first (USER and PASS, or AUTH PLAIN)"
    assert raw.command(b"RETR 1") == b"-ERR Log in first (USER and PASS, or AUTH PLAIN)"
    assert raw.command(b"USER") == b"-ERR USER needs a user name"
    assert raw.command(b"PASS x") == b"-ERR USER first"
    assert raw.command(b"XYZZY") == b"-ERR Unknown command: XYZZY"
    assert raw.command(b"") == b"-ERR Empty command"
    assert raw.command(b"A" * 5000) == b"-ERR Line too long"
    assert raw.command(b"USER " + address.encode()) == b"+OK Send the API key with PASS"
    assert raw.command(b"PASS " + insecure.key.encode()) == (
        b"+OK Logged in, 1 messages (%d octets)" % raw_size(insecure, address)
    )
    assert raw.command(b"DELE 9") == b"-ERR No such message: 9"
    assert raw.command(b"DELE abc") == b"-ERR Invalid message number: abc"
    assert raw.command(b"DELE 0") == b"-ERR No such message: 0"
    assert raw.command(b"DELE -1") == b"-ERR Invalid message number: -1"
    assert raw.command(b"TOP 1") == b"-ERR Syntax: TOP message lines"
    assert raw.command(b"TOP 1 x") == b"-ERR Syntax: TOP message lines"
    assert raw.command(b"DELE 1") == b"+OK Message 1 deleted"
    assert raw.command(b"DELE 1") == b"-ERR Message 1 is deleted"
    assert raw.command(b"RETR 1") == b"-ERR Message 1 is deleted"
    assert raw.command(b"LIST 1") == b"-ERR Message 1 is deleted"
    assert raw.command(b"STAT") == b"+OK 0 0"
    assert raw.command(b"USER again") == b"-ERR Already logged in"
    assert raw.command(b"STLS") == b"-ERR STLS not available now"
    raw.sock.sendall(b"B" * 3000)
    raw.sock.sendall(b"C" * 3000 + b"\r\nNOOP\r\n")
    assert raw.line() == b"-ERR Line too long"
    assert raw.line() == b"+OK"
    assert raw.command(b"RSET") == b"+OK 1 messages"
    assert raw.command(b"NOOP") == b"+OK"
    assert raw.command(b"QUIT") == b"+OK Bye"
    assert raw.closed()
    raw.close()
    another = Raw(insecure.ports["pop3"])
    assert another.command(b"CAPA") == b"+OK Capability list follows"
    another.close()


def raw_size(server: CaptureServer, address: str) -> int:
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    return sum(m["size"] for m in listed)


def test_pipelinedCommandsAnsweredInOrder(insecure: CaptureServer) -> None:
    """
    A client may send every command at once (PIPELINING): the replies come
    in order, each RETR whole.
    """
    assert insecure.key is not None
    address = _inbox()
    for n in range(3):
        send(insecure, address, b"Subject: p%d\r\n\r\nbody %d\r\n" % (n, n))
    raw = Raw(insecure.ports["pop3"])
    raw.sock.sendall(
        b"USER " + address.encode() + b"\r\nPASS " + insecure.key.encode()
        + b"\r\nRETR 1\r\nRETR 2\r\nNOOP\r\nRETR 3\r\nQUIT\r\n"
    )
    assert raw.line() == b"+OK Send the API key with PASS"
    assert raw.line().startswith(b"+OK Logged in, 3 messages")
    for n in range(3):
        assert raw.line().startswith(b"+OK ")
        assert raw.multi().endswith(b"\r\nbody %d\r\n.\r\n" % n)
        if n == 1:
            assert raw.line() == b"+OK"
    assert raw.line() == b"+OK Bye"
    raw.close()


@pytest.mark.serverOptions("--allow-insecure-auth", "--max-failed-logins", "3")
def test_failedLoginsRefused(freshServer: CaptureServer) -> None:
    """
    Past the limit of failed logins a client's next try is refused and the
    connection closed; the server still greets clients.
    """
    raw = Raw(freshServer.ports["pop3"])
    for _ in range(3):
        assert raw.command(b"USER admin") == b"+OK Send the API key with PASS"
        assert raw.command(b"PASS k_wrong") == b"-ERR [AUTH] Invalid user name or API key"
    assert raw.command(b"USER admin") == (
        b"-ERR [LOGIN-DELAY] Too many failed logins, try again later"
    )
    assert raw.closed()
    raw.close()
    another = Raw(freshServer.ports["pop3"])
    assert another.greeting == b"+OK Capture POP3 server ready"
    assert another.command(b"NOOP") == b"-ERR Log in first (USER and PASS, or AUTH PLAIN)"
    another.close()
    _, _, metrics = call(freshServer, "GET", "/metrics")
    assert b'protocol="pop3"' in metrics
