"""
The login throttle on real servers: failed logins past the first ten from
one client address are answered about a second late, and past
C{--max-failed-logins} refused, over SMTP, POP3 and IMAP alike; another
address is not affected.

Loopback is all of 127.0.0.0/8 on Linux, so a client bound to 127.0.0.2 is
another address to the server.
"""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import socket
import time

import pytest

from capture.ids import newApiKey
from tests.harness import CaptureServer
from tests.test_smtp_server import _rows, _send

# Past ten failures answers come late (README); the limit is set just past
# it so each test pays for few late answers.
_LIMIT = "12"
# A late answer comes after the throttle's second; "late" is checked
# loosely (half of it), and "answered" within a bound no healthy run nears.
_LATE = 0.5
_ANSWERED = 15.0
_OTHER_ADDRESS = ("127.0.0.2", 0)


def _smtp(server: CaptureServer, source: tuple[str, int] | None = None) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30, source_address=source)
    client.starttls(context=server.tlsContext())
    return client


def _wrongPlain(server: CaptureServer) -> str:
    return base64.b64encode(f"\0{server.account}\0{newApiKey()}".encode()).decode()


@pytest.mark.serverOptions("--max-failed-logins", _LIMIT)
def test_smtpFailuresAnsweredLateThenRefused(freshServer: CaptureServer) -> None:
    """
    Twelve wrong AUTHs from one address each get C{535}: the first ten
    at once, the eleventh and twelfth about a second late (they used to get
    no answer at all); the thirteenth AUTH, even with the right key, gets
    C{421} and the connection closes.  A client from another address logs
    in and its message is stored.
    """
    server = freshServer
    assert server.key is not None
    for attempt in range(1, 13):
        client = _smtp(server)
        started = time.monotonic()
        code, reply = client.docmd("AUTH", "PLAIN " + _wrongPlain(server))
        took = time.monotonic() - started
        assert (code, reply) == (535, b"5.7.8 Authentication credentials invalid"), attempt
        assert took < _ANSWERED
        if attempt > 10:
            assert took >= _LATE, (attempt, took)
        client.close()
    client = _smtp(server)
    token = base64.b64encode(f"\0{server.account}\0{server.key}".encode()).decode()
    assert client.docmd("AUTH", "PLAIN " + token) == (
        421, b"4.7.0 localhost Too many failed logins, try again later"
    )
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    other = _smtp(server, _OTHER_ADDRESS)
    assert other.login(server.account, server.key)[0] == 235
    queueId = _send(other, "from another address")
    other.quit()
    assert _rows(server, "SELECT ip FROM messages WHERE queue_id = ?", queueId) == [
        ("127.0.0.2",)
    ]


@pytest.mark.serverOptions("--max-failed-logins", _LIMIT)
def test_smtpRightLoginForgivesLateFailures(freshServer: CaptureServer) -> None:
    """
    A client past ten failures (answered late) that then gives the right
    key logs in, and its failures are forgotten: its next wrong key is
    answered at once again.
    """
    server = freshServer
    assert server.key is not None
    for _ in range(11):
        client = _smtp(server)
        assert client.docmd("AUTH", "PLAIN " + _wrongPlain(server))[0] == 535
        client.close()
    client = _smtp(server)
    assert client.login(server.account, server.key)[0] == 235
    _send(client, "after failures")
    client.quit()
    client = _smtp(server)
    started = time.monotonic()
    assert client.docmd("AUTH", "PLAIN " + _wrongPlain(server))[0] == 535
    assert time.monotonic() - started < _LATE
    client.close()


@pytest.mark.serverOptions("--allow-insecure-auth", "--max-failed-logins", _LIMIT)
def test_pop3FailuresAnsweredLateThenRefused(freshServer: CaptureServer) -> None:
    """
    POP3 shares the throttle: the eleventh and twelfth wrong PASS are
    answered late with the usual C{-ERR [AUTH]}, the next USER gets
    C{-ERR [LOGIN-DELAY]} and the connection closes; another address logs
    in.
    """
    server = freshServer
    for attempt in range(1, 13):
        client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
        client.user(server.account)
        started = time.monotonic()
        with pytest.raises(poplib.error_proto) as refused:
            client.pass_("k_wrong")
        took = time.monotonic() - started
        assert refused.value.args[0] == b"-ERR [AUTH] Invalid user name or API key"
        assert took < _ANSWERED
        if attempt > 10:
            assert took >= _LATE, (attempt, took)
        client.close()
    client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    with pytest.raises(poplib.error_proto) as refused:
        client.user(server.account)
    assert refused.value.args[0] == b"-ERR [LOGIN-DELAY] Too many failed logins, try again later"
    client.close()
    other = _POP3From(server.ports["pop3"], _OTHER_ADDRESS)
    other.user(server.account)
    assert other.pass_(server.key or "").startswith(b"+OK Logged in")
    other.quit()


class _POP3From(poplib.POP3):
    """
    poplib from a chosen source address.
    """

    def __init__(self, port: int, source: tuple[str, int]) -> None:
        self._source = source
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, self._source)


@pytest.mark.serverOptions("--max-failed-logins", _LIMIT)
def test_imapFailuresAnsweredLateThenRefused(freshServer: CaptureServer) -> None:
    """
    IMAP shares the throttle: the eleventh and twelfth wrong LOGIN get
    their C{NO [AUTHENTICATIONFAILED]} late, the next login (right key)
    C{NO [UNAVAILABLE]}, and the session goes on.
    """
    server = freshServer
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"],
                               ssl_context=server.tlsContext(), timeout=30)
    for attempt in range(1, 13):
        started = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\]"):
            client.login(server.account, "k_wrong")
        took = time.monotonic() - started
        assert took < _ANSWERED
        if attempt > 10:
            assert took >= _LATE, (attempt, took)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
        client.login(server.account, server.key or "")
    assert client.noop()[0] == "OK"
    client.logout()
    with socket.create_connection(("127.0.0.1", server.ports["imaps"]), 30, _OTHER_ADDRESS) as sock:
        with server.tlsContext().wrap_socket(sock, server_hostname="localhost") as tls:
            reader = tls.makefile("rb")
            assert reader.readline().startswith(b"* OK")
            tls.sendall(b"a LOGIN " + server.account.encode() + b" " + (server.key or "").encode()
                        + b"\r\n")
            assert reader.readline().startswith(b"a OK [CAPABILITY ")
