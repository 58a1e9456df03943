"""
The SMTP capture relay over loopback, with smtplib and a raw socket.

Every bad input here is sent for real; each test checks the exact reply,
what was (or was not) stored, and that a new client is still served.
Stored state is checked by reading the server's SQLite file directly;
accounts, owned addresses and settings are written through the store API
in a child process (L{_storeCalls}).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from capture.ids import newApiKey
from tests.harness import CaptureServer, RawClient

_QUEUED = re.compile(rb"^250 OK : queued as ([0-9A-Za-z]{24})$")

_STORE_SCRIPT = """
import json, sys
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import react
from capture.store.sqlite import SQLiteStore

async def main(reactor, data, calls):
    store = SQLiteStore(data, reactor)
    store.start()
    try:
        for name, args in calls:
            await getattr(store, name)(*args)
    finally:
        await store.stop()

react(lambda reactor: ensureDeferred(main(reactor, sys.argv[1], json.loads(sys.argv[2]))))
"""


def _storeCalls(server: CaptureServer, *calls: tuple[str, list[Any]]) -> None:
    """
    Call store methods, in order, on the server's data from a child
    process, as the admin console does.
    """
    subprocess.run(
        [sys.executable, "-c", _STORE_SCRIPT, server.data, json.dumps(calls)],
        check=True, capture_output=True, timeout=60,
    )


def _rows(server: CaptureServer, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(os.path.join(server.data, "capture.sqlite3"), timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _copies(server: CaptureServer, queueId: str) -> list[tuple[Any, ...]]:
    """
    C{(inbox, original_inbox, saved_by)} of each stored copy of a message.
    """
    return _rows(
        server,
        "SELECT c.inbox, c.original_inbox, c.saved_by FROM copies c "
        "JOIN messages m ON m.id = c.message WHERE m.queue_id = ? ORDER BY c.n",
        queueId,
    )


def _raw(server: CaptureServer, queueId: str) -> bytes:
    rows = _rows(
        server,
        "SELECT r.raw FROM message_raw r JOIN messages m ON m.id = r.message "
        "WHERE m.queue_id = ?",
        queueId,
    )
    assert len(rows) == 1
    return bytes(rows[0][0])


def _countSubject(server: CaptureServer, subject: str) -> int:
    return int(_rows(server, "SELECT count(*) FROM messages WHERE subject = ?", subject)[0][0])


def _queueId(reply: bytes) -> str:
    """
    The queue id of a C{250 OK : queued as <id>} reply (with or without
    its code).
    """
    if not reply.startswith(b"250 "):
        reply = b"250 " + reply
    match = _QUEUED.match(reply)
    assert match, reply
    return match.group(1).decode()


def _message(subject: str, body: bytes = b"hello\r\n") -> bytes:
    return (
        b"From: app@example.com\r\nTo: user@example.org\r\nSubject: "
        + subject.encode()
        + b"\r\n\r\n"
        + body
    )


def _send(client: smtplib.SMTP, subject: str, rcpts: list[str] | None = None) -> str:
    """
    One transaction on a logged-in client; its queue id.  By default the
    recipient is an inbox of its own, so no public-inbox limit ever
    recycles what a test counts on.
    """
    assert client.mail("app@example.com") == (250, b"2.1.0 Accepted")
    for rcpt in rcpts or [f"user-{secrets.token_hex(6)}@example.org"]:
        assert client.rcpt(rcpt) == (250, b"2.1.5 Accepted")
    code, reply = client.data(_message(subject))
    assert code == 250, reply
    return _queueId(reply)


def _storedIds(server: CaptureServer) -> set[str]:
    return {r[0] for r in _rows(server, "SELECT queue_id FROM messages")}


def _assertNextClientServed(
    server: CaptureServer, before: set[str] | None = None, *added: str
) -> None:
    """
    A new client logs in over STARTTLS, sends a message, gets its queue id,
    and the message is stored.

    @param before: What was stored when the test began: then what is
        stored now must be exactly that, plus C{added}, plus this message
        (nothing lost, nothing half-stored or smuggled in).
    """
    client = server.smtp()
    subject = "next client " + secrets.token_hex(6)
    queueId = _send(client, subject)
    client.quit()
    assert _rows(server, "SELECT subject FROM messages WHERE queue_id = ?", queueId) == [
        (subject,)
    ]
    if before is not None:
        assert _storedIds(server) == before | set(added) | {queueId}


def _plain(user: str, key: str) -> bytes:
    return base64.b64encode(b"\0" + user.encode() + b"\0" + key.encode())


def _wrapTLS(server: CaptureServer, raw: RawClient) -> None:
    assert raw.buffer == b""
    raw.sock = server.tlsContext().wrap_socket(raw.sock, server_hostname="localhost")


def _rawTLS(server: CaptureServer, login: bool = True) -> RawClient:
    """
    A raw client on the STARTTLS port, upgraded and (by default) logged in.
    """
    raw = server.raw()
    assert raw.command(b"STARTTLS") == b"220 2.0.0 Ready to start TLS"
    _wrapTLS(server, raw)
    if login:
        assert server.key is not None
        reply = raw.command(b"AUTH PLAIN " + _plain(server.account, server.key))
        assert reply == b"235 2.7.0 Authentication successful"
    return raw


def _rawSMTPS(server: CaptureServer) -> RawClient:
    raw = RawClient.__new__(RawClient)
    sock = socket.create_connection(("127.0.0.1", server.ports["smtps"]), timeout=10)
    raw.sock = server.tlsContext().wrap_socket(sock, server_hostname="localhost")
    raw.buffer = b""
    raw.greeting = raw.reply()
    return raw


def _closed(raw: RawClient, wait: float = 5.0) -> bool:
    """
    Whether the server closed the connection within C{wait} seconds.
    (Unlike L{RawClient.closed}, a silent but open connection is not
    taken for a closed one.)
    """
    assert raw.buffer == b"", raw.buffer
    raw.sock.settimeout(wait)
    try:
        return raw.sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def _ehloKeywords(reply: bytes) -> list[bytes]:
    return [line[4:] for line in reply.split(b"\n")[1:]]


class _Accounts:
    """
    Accounts made for this module on the shared server: C{bob} owns an
    address and a domain, C{carol} has C{capturePrivate} on.
    """

    def __init__(self, server: CaptureServer) -> None:
        tag = secrets.token_hex(4)
        self.bob, self.bobKey = f"smtp-bob-{tag}", newApiKey()
        self.carol, self.carolKey = f"smtp-carol-{tag}", newApiKey()
        self.ownedAddress = f"owned-{tag}@smtp-owned.test"
        self.ownedDomain = f"bob-{tag}.test"
        _storeCalls(
            server,
            ("createAccount", [self.bob, self.bobKey]),
            ("reserveAddress", [self.bob, self.ownedAddress]),
            ("addDomain", [self.bob, self.ownedDomain]),
            ("createAccount", [self.carol, self.carolKey]),
            ("setAccountSettings", [self.carol, True]),
        )


@pytest.fixture(scope="module")
def accounts(server: CaptureServer) -> _Accounts:
    return _Accounts(server)


# Greeting, extensions, TLS


def test_greetingAndExtensionsBeforeTLS(server: CaptureServer) -> None:
    """
    The greeting is C{220}; EHLO before TLS lists SIZE, 8BITMIME,
    PIPELINING, ENHANCEDSTATUSCODES, SMTPUTF8 and STARTTLS, and no AUTH.
    """
    raw = server.raw()
    assert raw.greeting == b"220 localhost ESMTP Capture ready"
    reply = raw.command(b"EHLO client.example")
    assert reply.split(b"\n")[0] == b"250-localhost Hello client.example"
    keywords = _ehloKeywords(reply)
    for wanted in (b"SIZE 26214400", b"8BITMIME", b"PIPELINING", b"ENHANCEDSTATUSCODES",
                   b"SMTPUTF8", b"STARTTLS"):
        assert wanted in keywords
    assert not any(k.startswith(b"AUTH") for k in keywords)
    raw.close()


def test_extensionsAfterStarttls(server: CaptureServer) -> None:
    """
    After STARTTLS, EHLO offers C{AUTH PLAIN LOGIN} and no longer
    STARTTLS; after login it no longer offers AUTH.
    """
    raw = _rawTLS(server, login=False)
    keywords = _ehloKeywords(raw.command(b"EHLO client.example"))
    assert b"AUTH PLAIN LOGIN" in keywords and b"STARTTLS" not in keywords
    assert b"SIZE 26214400" in keywords and b"SMTPUTF8" in keywords
    assert server.key is not None
    assert raw.command(b"AUTH PLAIN " + _plain(server.account, server.key)).startswith(b"235 ")
    assert not any(k.startswith(b"AUTH") for k in _ehloKeywords(raw.command(b"EHLO c")))
    raw.close()


def test_extensionsOnImplicitTLS(server: CaptureServer) -> None:
    """
    On the SMTPS port the session is TLS from the first byte: AUTH is
    offered, STARTTLS is not (and is refused with C{503}).
    """
    raw = _rawSMTPS(server)
    assert raw.greeting == b"220 localhost ESMTP Capture ready"
    keywords = _ehloKeywords(raw.command(b"EHLO client.example"))
    assert b"AUTH PLAIN LOGIN" in keywords and b"STARTTLS" not in keywords
    assert raw.command(b"STARTTLS") == b"503 5.5.1 TLS already active"
    raw.close()


def test_certificateVerifiesForLocalhost(server: CaptureServer) -> None:
    """
    The generated certificate passes Python's default verification for
    C{localhost} (and names 127.0.0.1); a wrong name is refused, so the
    check is real.
    """
    context = server.tlsContext()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with socket.create_connection(("127.0.0.1", server.ports["smtps"]), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            certificate = tls.getpeercert()
    assert certificate is not None
    names = certificate["subjectAltName"]
    assert ("DNS", "localhost") in names and ("IP Address", "127.0.0.1") in names
    with socket.create_connection(("127.0.0.1", server.ports["smtps"]), timeout=10) as sock:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(sock, server_hostname="not-localhost.example")


@pytest.mark.parametrize("port", ["smtp", "smtps"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_loginAndSend(server: CaptureServer, port: str, mechanism: str) -> None:
    """
    smtplib logs in with PLAIN and with LOGIN (each with its initial
    response), over STARTTLS and over implicit TLS, and sends a message
    that is stored under the account with C{tls} set.
    """
    client = server.smtp(login=False) if port == "smtp" else server.smtps(login=False)
    client.ehlo()
    assert server.key is not None
    client.user, client.password = server.account, server.key
    method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
    assert client.auth(mechanism, method) == (235, b"2.7.0 Authentication successful")
    queueId = _send(client, f"{port} {mechanism}")
    client.quit()
    assert _rows(server, "SELECT account, tls FROM messages WHERE queue_id = ?", queueId) == [
        (server.account, 1)
    ]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_loginWithoutInitialResponse(server: CaptureServer, mechanism: str) -> None:
    """
    PLAIN and LOGIN also work step by step: AUTH alone, then the answers
    to the C{334} challenges.
    """
    client = server.smtp(login=False)
    client.ehlo()
    assert server.key is not None
    client.user, client.password = server.account, server.key
    method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
    reply = client.auth(mechanism, method, initial_response_ok=False)
    assert reply == (235, b"2.7.0 Authentication successful")
    _send(client, f"stepwise {mechanism}")
    client.quit()


# AUTH refusals


def test_mailBeforeAuthRefused(server: CaptureServer) -> None:
    """
    MAIL without AUTH gets C{530 5.7.0 Authentication required}, over TLS
    too; the session can then log in and send.
    """
    before = _storedIds(server)
    raw = _rawTLS(server, login=False)
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"530 5.7.0 Authentication required"
    assert server.key is not None
    assert raw.command(b"AUTH PLAIN " + _plain(server.account, server.key)).startswith(b"235 ")
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"250 2.1.0 Accepted"
    raw.close()
    _assertNextClientServed(server, before)


def test_authBeforeTLSRefused(server: CaptureServer) -> None:
    """
    AUTH on the plain-text session, even with the right key, gets
    C{538 5.7.11}; the session is kept and can still upgrade.
    """
    before = _storedIds(server)
    raw = server.raw()
    assert server.key is not None
    for command in (b"AUTH PLAIN " + _plain(server.account, server.key), b"AUTH LOGIN"):
        assert raw.command(command) == (
            b"538 5.7.11 Encryption required for requested authentication mechanism"
        )
    assert raw.command(b"NOOP") == b"250 2.0.0 OK"
    assert raw.command(b"STARTTLS") == b"220 2.0.0 Ready to start TLS"
    raw.close()
    _assertNextClientServed(server, before)


def test_wrongKeyRefused(server: CaptureServer, accounts: _Accounts) -> None:
    """
    A wrong key, another account's key, an unknown user and an empty key
    each get C{535 5.7.8}; the connection is kept and the right key then
    works on it.
    """
    before = _storedIds(server)
    raw = _rawTLS(server, login=False)
    assert server.key is not None
    for user, key in (
        (server.account, "k_notakeynotakeynotakey00"),
        (server.account, accounts.bobKey),
        (accounts.bob, server.key),
        ("nobody-here", server.key),
        (server.account, ""),
    ):
        assert raw.command(b"AUTH PLAIN " + _plain(user, key)) == (
            b"535 5.7.8 Authentication credentials invalid"
        )
    assert raw.command(b"AUTH PLAIN " + _plain(server.account, server.key)).startswith(b"235 ")
    raw.close()
    _assertNextClientServed(server, before)


def test_badAuthInputKeepsConnection(server: CaptureServer) -> None:
    """
    A bare AUTH, bad base64, a PLAIN response without its NULs, an
    unknown mechanism, and C{*} cancelling LOGIN at either step get their
    errors and the connection is kept; AUTH then works on it.
    """
    before = _storedIds(server)
    raw = _rawTLS(server, login=False)
    assert raw.command(b"AUTH") == b"501 5.5.4 Syntax: AUTH mechanism [initial-response]"
    assert raw.command(b"AUTH PLAIN %%%not-base64") == (
        b"501 5.5.2 Cannot decode the authentication response"
    )
    assert raw.command(b"AUTH PLAIN " + base64.b64encode(b"no nul")) == (
        b"501 5.5.2 Cannot decode the authentication response"
    )
    assert raw.command(b"AUTH CRAM-MD5") == b"504 5.5.4 Unrecognized authentication type"
    assert raw.command(b"AUTH LOGIN") == b"334 VXNlciBOYW1lAA=="
    assert raw.command(b"*") == b"501 5.0.0 Authentication cancelled"
    assert raw.command(b"AUTH LOGIN " + base64.b64encode(b"admin")) == b"334 UGFzc3dvcmQA"
    assert raw.command(b"*") == b"501 5.0.0 Authentication cancelled"
    assert raw.command(b"AUTH PLAIN") == b"334 "
    assert raw.command(b"!!") == b"501 5.5.2 Cannot decode the authentication response"
    assert raw.command(b"NOOP") == b"250 2.0.0 OK"
    assert server.key is not None
    assert raw.command(b"AUTH PLAIN") == b"334 "
    assert raw.command(_plain(server.account, server.key)) == (
        b"235 2.7.0 Authentication successful"
    )
    raw.close()
    _assertNextClientServed(server, before)


@pytest.mark.parametrize("which", ["address", "domain", "addressInDomain"])
def test_loginWithOwnedName(server: CaptureServer, accounts: _Accounts, which: str) -> None:
    """
    The user name may be an address the account owns, a domain it owns, or
    any address in that domain; the password is the account's API key and
    the mail is the account's.
    """
    user = {
        "address": accounts.ownedAddress,
        "domain": accounts.ownedDomain,
        "addressInDomain": f"anyone@{accounts.ownedDomain}",
    }[which]
    client = server.smtp(login=False)
    assert client.login(user, accounts.bobKey) == (235, b"2.7.0 Authentication successful")
    queueId = _send(client, f"owned login {which}")
    client.quit()
    assert _rows(server, "SELECT account FROM messages WHERE queue_id = ?", queueId) == [
        (accounts.bob,)
    ]
    client = server.smtp(login=False)
    assert server.key is not None
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.login(user, server.key)
    assert refused.value.smtp_code == 535
    client.close()


# Storing mail


def test_copyPerRecipientWithBccAndPlusAddressing(server: CaptureServer) -> None:
    """
    One transaction is one stored message with one copy per RCPT, in RCPT
    order: a Bcc recipient (in the envelope, not the headers) gets a copy,
    a plus-address files into its base inbox with the original kept, and
    the stored bytes are the message behind one C{Received:} header.
    """
    client = server.smtp()
    subject = "copies " + secrets.token_hex(4)
    message = (
        b"From: app@example.com\r\nTo: To@Example.org\r\nCc: cc@example.org\r\n"
        b"Subject: " + subject.encode() + b"\r\n\r\nbody\r\n"
    )
    client.mail("app@example.com")
    for rcpt in ("To@Example.org", "cc@example.org", "hidden+Tag@example.net"):
        client.rcpt(rcpt)
    code, reply = client.data(message)
    client.quit()
    assert code == 250
    queueId = _queueId(reply)
    assert _countSubject(server, subject) == 1
    assert _copies(server, queueId) == [
        ("to@example.org", "To@Example.org", None),
        ("cc@example.org", "cc@example.org", None),
        ("hidden@example.net", "hidden+Tag@example.net", None),
    ]
    raw = _raw(server, queueId)
    assert raw.startswith(b"Received: from ")
    assert raw.count(b"Received:") == 1
    assert f"with ESMTPSA id {queueId}".encode() in raw
    assert raw.endswith(message)


def test_capturePrivateStarsEveryCopy(server: CaptureServer, accounts: _Accounts) -> None:
    """
    With C{capturePrivate} on, every copy of what the account sends is
    starred by it; another account's mail is not starred.
    """
    client = server.smtp(login=False)
    client.login(accounts.carol, accounts.carolKey)
    queueId = _send(client, "private", ["a@example.org", "b@example.org"])
    client.quit()
    assert [c[2] for c in _copies(server, queueId)] == [accounts.carol, accounts.carol]
    client = server.smtp()
    queueId = _send(client, "public", ["a@example.org"])
    client.quit()
    assert [c[2] for c in _copies(server, queueId)] == [None]


def test_utf8AddressesWithSmtputf8(server: CaptureServer) -> None:
    """
    With C{SMTPUTF8}, a UTF-8 sender, a UTF-8 local part and an IDN
    domain are accepted and filed under their (lower-cased) UTF-8 inbox.
    """
    client = server.smtp()
    assert client.mail("δοκιμή@παράδειγμα.δοκιμή", ["SMTPUTF8", "BODY=8BITMIME"]) == (
        250, b"2.1.0 Accepted",
    )
    assert client.rcpt("Ünïcode+tag@Bücher.example") == (250, b"2.1.5 Accepted")
    assert client.rcpt("用户@例子.广告") == (250, b"2.1.5 Accepted")
    code, reply = client.data("Subject: ünïcode\r\n\r\nκείμενο\r\n".encode())
    client.quit()
    assert code == 250
    queueId = _queueId(reply)
    assert _copies(server, queueId) == [
        ("ünïcode@bücher.example", "Ünïcode+tag@Bücher.example", None),
        ("用户@例子.广告", "用户@例子.广告", None),
    ]
    assert _rows(server, "SELECT mail_from FROM messages WHERE queue_id = ?", queueId) == [
        ("δοκιμή@παράδειγμα.δοκιμή",)
    ]


def test_utf8AddressNeedsSmtputf8Param(server: CaptureServer) -> None:
    """
    Without the SMTPUTF8 parameter a UTF-8 sender or recipient is refused
    with C{553 5.6.7} (RFC 6531 3.4, as Postfix does: a real relay would
    refuse it too), escaped in the reply; the session goes on, and the
    A-label spelling of the same recipient (plain ASCII) is accepted and
    filed under the canonical U-label inbox.
    """
    raw = _rawTLS(server)
    assert raw.command("MAIL FROM:<отправитель@пример.рф>".encode()) == (
        b"553 5.6.7 <\\u043e\\u0442\\u043f\\u0440\\u0430\\u0432\\u0438\\u0442\\u0435"
        b"\\u043b\\u044c@\\u043f\\u0440\\u0438\\u043c\\u0435\\u0440.\\u0440\\u0444>: "
        b"a non-ASCII address needs SMTPUTF8 on MAIL FROM"
    )
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"250 2.1.0 Accepted"
    assert raw.command("RCPT TO:<info@exämple.test>".encode()) == (
        b"553 5.6.7 <info@ex\\xe4mple.test>: a non-ASCII address needs SMTPUTF8 on MAIL FROM"
    )
    assert raw.command(b"RCPT TO:<Info@XN--EXMPLE-CUA.test>") == b"250 2.1.5 Accepted"
    assert raw.command(b"DATA").startswith(b"354 ")
    queueId = _queueId(raw.command(b"Subject: raw utf8\r\n\r\nhi\r\n."))
    raw.close()
    assert _copies(server, queueId) == [("info@exämple.test", "Info@XN--EXMPLE-CUA.test", None)]


def test_emptyReversePath(server: CaptureServer) -> None:
    """
    C{MAIL FROM:<>} (a bounce) is accepted; C{RCPT TO:<>} is not, and the
    transaction goes on.
    """
    raw = _rawTLS(server)
    assert raw.command(b"MAIL FROM:<>") == b"250 2.1.0 Accepted"
    assert raw.command(b"RCPT TO:<>") == b"553 5.1.3 Bad recipient address syntax"
    assert raw.command(b"RCPT TO:<user@example.org>") == b"250 2.1.5 Accepted"
    assert raw.command(b"DATA").startswith(b"354 ")
    queueId = _queueId(raw.command(b"Subject: bounce\r\n\r\n."))
    raw.close()
    assert _rows(server, "SELECT mail_from FROM messages WHERE queue_id = ?", queueId) == [("",)]


# Simple commands and resets


def test_simpleCommands(server: CaptureServer) -> None:
    """
    NOOP, RSET, VRFY, EXPN, HELP, HELO and QUIT answer as RFC 5321 asks,
    before and after login; QUIT closes.
    """
    raw = server.raw()
    expected = {
        b"NOOP": b"250 2.0.0 OK",
        b"RSET": b"250 2.0.0 OK",
        b"VRFY postmaster": b"252 2.5.0 Cannot VRFY user, but will accept message",
        b"EXPN list": b"252 2.5.0 Cannot EXPN, but will accept message",
        b"HELP": b"214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP "
                 b"VRFY HELP QUIT",
        b"HELO client.example": b"250 localhost Hello client.example",
        b"noop": b"250 2.0.0 OK",
    }
    for command, reply in expected.items():
        assert raw.command(command) == reply
    raw.close()
    raw = _rawTLS(server)
    for command, reply in expected.items():
        assert raw.command(command) == reply
    assert raw.command(b"QUIT") == b"221 2.0.0 Bye"
    assert _closed(raw)


@pytest.mark.parametrize("reset", [b"RSET", b"EHLO client.example", b"HELO client.example"])
def test_resetAbandonsTransaction(server: CaptureServer, reset: bytes) -> None:
    """
    RSET, EHLO and HELO abandon the transaction under way: RCPT and DATA
    after them have no sender, and nothing is stored.
    """
    raw = _rawTLS(server)
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"250 2.1.0 Accepted"
    assert raw.command(b"RCPT TO:<user@example.org>") == b"250 2.1.5 Accepted"
    assert raw.command(reset).startswith(b"250")
    assert raw.command(b"RCPT TO:<user@example.org>") == b"503 5.5.1 Need MAIL before RCPT"
    assert raw.command(b"DATA") == b"503 5.5.1 Need MAIL before DATA"
    # The login survives: a new transaction works at once.
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"250 2.1.0 Accepted"
    raw.close()


def test_starttlsDiscardsPipelinedCommands(server: CaptureServer) -> None:
    """
    Commands sent in the same packet as STARTTLS are never run (gap S1):
    after the handshake the first reply is to the client's own next
    command.
    """
    before = _storedIds(server)
    raw = server.raw()
    raw.send(b"STARTTLS\r\nNOOP\r\nHELP\r\nMAIL FROM:<injected@example.com>\r\n")
    assert raw.reply() == b"220 2.0.0 Ready to start TLS"
    _wrapTLS(server, raw)
    assert raw.command(b"VRFY someone") == b"252 2.5.0 Cannot VRFY user, but will accept message"
    assert raw.command(b"NOOP") == b"250 2.0.0 OK"
    assert raw.buffer == b""
    raw.close()
    _assertNextClientServed(server, before)


@pytest.mark.serverOptions("--allow-insecure-auth", "--allow-anonymous")
def test_starttlsForgetsTransactionAndLogin(freshServer: CaptureServer) -> None:
    """
    STARTTLS resets the session (RFC 3207 4.2): a transaction begun and a
    login made in plain text are both forgotten.
    """
    raw = freshServer.raw()
    assert freshServer.key is not None
    assert raw.command(b"AUTH PLAIN " + _plain(freshServer.account, freshServer.key)).startswith(
        b"235 "
    )
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"250 2.1.0 Accepted"
    assert raw.command(b"STARTTLS") == b"220 2.0.0 Ready to start TLS"
    _wrapTLS(freshServer, raw)
    assert raw.command(b"RCPT TO:<user@example.org>") == b"503 5.5.1 Need MAIL before RCPT"
    assert b"250-AUTH PLAIN LOGIN" in raw.command(b"EHLO client.example")
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"250 2.1.0 Accepted"
    assert raw.command(b"RCPT TO:<user@example.org>") == b"250 2.1.5 Accepted"
    assert raw.command(b"DATA").startswith(b"354 ")
    queueId = _queueId(raw.command(b"Subject: after tls\r\n\r\n."))
    raw.close()
    # Logged in before TLS, but the login was forgotten: anonymous mail.
    assert _rows(freshServer, "SELECT account FROM messages WHERE queue_id = ?", queueId) == [
        (None,)
    ]


# Bad input


def test_declaredSizeTooBig(server: CaptureServer) -> None:
    """
    MAIL declaring a SIZE over the limit gets C{552 5.3.4} and no
    transaction starts; a MAIL within the limit then works.
    """
    before = _storedIds(server)
    raw = _rawTLS(server)
    assert raw.command(b"MAIL FROM:<app@example.com> SIZE=26214401") == (
        b"552 5.3.4 Message size exceeds fixed maximum message size"
    )
    assert raw.command(b"RCPT TO:<user@example.org>") == b"503 5.5.1 Need MAIL before RCPT"
    assert raw.command(b"MAIL FROM:<app@example.com> SIZE=26214400") == b"250 2.1.0 Accepted"
    raw.close()
    _assertNextClientServed(server, before)


@pytest.mark.serverOptions("--max-message-size", "64KiB")
def test_messageTooBigWhileStreaming(freshServer: CaptureServer) -> None:
    """
    A message that turns out bigger than the limit while streaming gets
    C{552 5.3.4} once, at its end; the rest of it is swallowed (its
    command-looking lines never run), nothing is stored, and the next
    transaction on the same connection is stored.
    """
    raw = _rawTLS(freshServer)
    assert b"250-SIZE 65536" in raw.command(b"EHLO client.example")
    raw.command(b"MAIL FROM:<app@example.com>")
    raw.command(b"RCPT TO:<user@example.org>")
    assert raw.command(b"DATA").startswith(b"354 ")
    line = b"x" * 70 + b"\r\n"
    raw.send(b"Subject: too big\r\n\r\n" + line * 1000 + b"QUIT\r\nRSET\r\n" + line * 10 + b".\r\n")
    assert raw.reply() == b"552 5.3.4 Message size exceeds fixed maximum message size"
    assert raw.command(b"NOOP") == b"250 2.0.0 OK"
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"250 2.1.0 Accepted"
    raw.command(b"RCPT TO:<user@example.org>")
    raw.command(b"DATA")
    queueId = _queueId(raw.command(b"Subject: small\r\n\r\n" + line * 100 + b"."))
    raw.close()
    assert _rows(freshServer, "SELECT queue_id, subject FROM messages") == [(queueId, "small")]
    _assertNextClientServed(freshServer)


def test_recipient101Refused(server: CaptureServer) -> None:
    """
    The 101st RCPT gets C{452 4.5.3}; the message is stored with the 100
    recipients accepted.
    """
    before = _storedIds(server)
    client = server.smtp()
    client.mail("app@example.com")
    for i in range(100):
        assert client.rcpt(f"r{i}@example.org") == (250, b"2.1.5 Accepted")
    assert client.rcpt("r100@example.org") == (452, b"4.5.3 Too many recipients")
    code, reply = client.data(_message("hundred"))
    client.quit()
    assert code == 250
    queueId = _queueId(reply)
    inboxes = [c[0] for c in _copies(server, queueId)]
    assert inboxes == [f"r{i}@example.org" for i in range(100)]
    _assertNextClientServed(server, before, queueId)


@pytest.mark.serverOptions("--max-line-length", "1000")
def test_longDataLineRejectedAtEnd(freshServer: CaptureServer) -> None:
    """
    A data line over C{--max-line-length} rejects the message with one
    reply at its end; no line after it is run as a command (gap S2), and
    a line of exactly the limit is fine.
    """
    raw = _rawTLS(freshServer)
    raw.command(b"MAIL FROM:<app@example.com>")
    raw.command(b"RCPT TO:<user@example.org>")
    assert raw.command(b"DATA").startswith(b"354 ")
    raw.send(
        b"Subject: long line\r\n\r\n" + b"a" * 2000 + b"\r\n"
        b"RSET\r\nQUIT\r\nMAIL FROM:<injected@example.com>\r\nNOOP\r\n.\r\n"
    )
    assert raw.reply() == b"500 5.5.2 Line too long (limit 1000 octets); message rejected"
    assert raw.command(b"RCPT TO:<user@example.org>") == b"503 5.5.1 Need MAIL before RCPT"
    assert raw.buffer == b""
    raw.command(b"MAIL FROM:<app@example.com>")
    raw.command(b"RCPT TO:<user@example.org>")
    raw.command(b"DATA")
    queueId = _queueId(raw.command(b"Subject: at the limit\r\n\r\n" + b"b" * 1000 + b"\r\n."))
    raw.close()
    assert _rows(freshServer, "SELECT queue_id FROM messages") == [(queueId,)]
    _assertNextClientServed(freshServer)


def test_bareLineFeedEndAnsweredPromptly(server: CaptureServer) -> None:
    """
    DATA ended with a bare-LF C{\\n.\\n} gets C{554 5.6.0} within two
    seconds (no hang), the connection is closed so nothing after it runs
    as a command, and nothing is stored.
    """
    before = _storedIds(server)
    raw = _rawTLS(server)
    raw.command(b"MAIL FROM:<app@example.com>")
    raw.command(b"RCPT TO:<user@example.org>")
    assert raw.command(b"DATA").startswith(b"354 ")
    subject = "bare lf " + secrets.token_hex(4)
    raw.sock.settimeout(2)
    raw.send(b"Subject: " + subject.encode() + b"\n\nbody\n.\n")
    assert raw.reply() == b"554 5.6.0 Message ended with a bare LF; end DATA with <CRLF>.<CRLF>"
    assert _closed(raw)
    assert _countSubject(server, subject) == 0
    _assertNextClientServed(server, before)


def test_garbageCommandsKeepSession(server: CaptureServer) -> None:
    """
    Unknown verbs, binary junk, an empty line and a command line over 4096
    octets each get C{500}; the session goes on and can send mail.
    """
    before = _storedIds(server)
    raw = _rawTLS(server)
    assert raw.command(b"BOGUS stuff") == b"500 5.5.2 Syntax error, command unrecognized"
    assert raw.command(b"\x00\xff\xfe junk") == b"500 5.5.2 Syntax error, command unrecognized"
    assert raw.command(b"") == b"500 5.5.2 Syntax error, command unrecognized"
    assert raw.command(b"MAIL FROM:<a@example.com>" + b" " * 5000) == b"500 5.5.2 Line too long"
    assert raw.command(b"MAIL FROM <a@example.com>") == b"501 5.5.4 Syntax: MAIL FROM:<address>"
    assert raw.command(b"NOOP") == b"250 2.0.0 OK"
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"250 2.1.0 Accepted"
    raw.close()
    _assertNextClientServed(server, before)


def test_tooManyErrorsCloses(server: CaptureServer) -> None:
    """
    The tenth protocol error gets C{421} and the connection is closed.
    """
    before = _storedIds(server)
    raw = server.raw()
    for _ in range(9):
        assert raw.command(b"WHAT") == b"500 5.5.2 Syntax error, command unrecognized"
    assert raw.command(b"WHAT") == b"421 4.7.0 localhost Too many errors, closing connection"
    assert _closed(raw)
    _assertNextClientServed(server, before)


@pytest.mark.serverOptions("--idle-timeout", "1")
def test_silentClientTimedOut(freshServer: CaptureServer) -> None:
    """
    A client that connects and says nothing gets C{421 4.4.2} after the
    idle timeout, then the connection is closed.
    """
    raw = freshServer.raw()
    started = time.monotonic()
    raw.sock.settimeout(5)
    assert raw.reply() == b"421 4.4.2 localhost Idle timeout, closing connection"
    assert 0.5 < time.monotonic() - started < 4
    assert _closed(raw)
    _assertNextClientServed(freshServer)


def test_lockedStoreGives451(freshServer: CaptureServer) -> None:
    """
    While another process holds the database locked, the end of DATA gets
    C{451 4.3.0} (after the writer's 2 s busy wait) and nothing of the
    message is stored; once the lock is gone the next message gets C{250}
    on the same connection.
    """
    client = freshServer.smtp()
    lock = sqlite3.connect(
        os.path.join(freshServer.data, "capture.sqlite3"), isolation_level=None, timeout=10
    )
    lock.execute("BEGIN EXCLUSIVE")
    try:
        client.mail("app@example.com")
        client.rcpt("user@example.org")
        code, reply = client.data(_message("locked out"))
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert (code, reply) == (451, b"4.3.0 Temporary storage failure, try again later")
    queueId = _send(client, "after the lock")
    client.quit()
    assert _rows(freshServer, "SELECT queue_id, subject FROM messages") == [
        (queueId, "after the lock")
    ]
    for table in ("copies", "message_raw", "message_bodies"):
        assert _rows(freshServer, f"SELECT count(*) FROM {table}") == [(1,)]
    _assertNextClientServed(freshServer)


@pytest.mark.serverOptions("--max-store-size", "300KiB")
def test_fullStoreGives452(freshServer: CaptureServer) -> None:
    """
    When the store reaches C{--max-store-size}, the end of DATA gets
    C{452 4.3.1}; the session still answers, every message that got
    C{250} is stored and nothing else; after a restart with room, the same
    data takes mail again.
    """
    client = freshServer.smtp()
    body = b"".join(os.urandom(38).hex().encode() + b"\r\n" for _ in range(300))
    accepted: list[str] = []
    for n in range(60):
        client.mail("app@example.com")
        client.rcpt("user@example.org")
        code, reply = client.data(_message(f"fill {n}", body))
        if code != 250:
            break
        accepted.append(_queueId(reply))
    assert (code, reply) == (452, b"4.3.1 Insufficient system storage, try again later")
    assert accepted
    assert client.ehlo()[0] == 250
    assert client.noop() == (250, b"2.0.0 OK")
    client.mail("app@example.com")
    client.rcpt("user@example.org")
    assert client.data(_message("still full", body))[0] == 452
    client.quit()
    stored = sorted(r[0] for r in _rows(freshServer, "SELECT queue_id FROM messages"))
    assert stored == sorted(accepted)
    for table in ("copies", "message_raw", "message_bodies"):
        assert _rows(freshServer, f"SELECT count(*) FROM {table}") == [(len(accepted),)]

    account, key = freshServer.account, freshServer.key
    freshServer.stop()
    freshServer.extra = ["--max-store-size", "0"]
    freshServer.start()
    freshServer.account, freshServer.key = account, key
    _assertNextClientServed(freshServer)
    assert len(_rows(freshServer, "SELECT queue_id FROM messages")) == len(accepted) + 1


# Pipelining and concurrency


def test_manyTransactionsPipelinedInOneWrite(server: CaptureServer) -> None:
    """
    Twenty whole transactions written at once on one connection are all
    answered, in order, each with its own queue id, and all stored.
    """
    raw = _rawTLS(server)
    tag = secrets.token_hex(4)
    raw.send(b"".join(
        b"MAIL FROM:<app@example.com>\r\nRCPT TO:<pipe%d@example.org>\r\nDATA\r\n"
        b"Subject: pipelined %s %d\r\n\r\n.body\r\n.\r\n" % (n, tag.encode(), n)
        for n in range(20)
    ))
    queueIds = []
    for _ in range(20):
        assert raw.reply() == b"250 2.1.0 Accepted"
        assert raw.reply() == b"250 2.1.5 Accepted"
        assert raw.reply().startswith(b"354 ")
        queueIds.append(_queueId(raw.reply()))
    assert raw.command(b"NOOP") == b"250 2.0.0 OK"
    raw.close()
    assert len(set(queueIds)) == 20
    for n, queueId in enumerate(queueIds):
        assert _copies(server, queueId) == [(f"pipe{n}@example.org",) * 2 + (None,)]
        assert _raw(server, queueId).endswith(b"\r\n\r\nbody\r\n")
        assert _rows(server, "SELECT subject FROM messages WHERE queue_id = ?", queueId) == [
            (f"pipelined {tag} {n}",)
        ]


def test_fiftyConcurrentClients(server: CaptureServer) -> None:
    """
    Fifty smtplib clients in parallel, each sending four messages on its
    connection, all get queue ids, and every message is stored once.
    """
    tag = secrets.token_hex(4)

    def sender(index: int) -> list[str]:
        client = server.smtp()
        try:
            return [_send(client, f"concurrent {tag} {index} {n}") for n in range(4)]
        finally:
            client.quit()

    with ThreadPoolExecutor(50) as pool:
        queueIds = [q for batch in pool.map(sender, range(50)) for q in batch]
    assert len(set(queueIds)) == 200
    stored = _rows(
        server, "SELECT count(*), count(DISTINCT queue_id) FROM messages WHERE subject LIKE ?",
        f"concurrent {tag} %",
    )
    assert stored == [(200, 200)]


# Options


@pytest.mark.serverOptions("--allow-anonymous")
def test_allowAnonymous(freshServer: CaptureServer) -> None:
    """
    With C{--allow-anonymous}, mail without AUTH is taken, in plain text and
    over TLS, and belongs to no account; AUTH still works and tags mail.
    """
    raw = freshServer.raw()
    assert raw.command(b"MAIL FROM:<anon@example.com>") == b"250 2.1.0 Accepted"
    raw.command(b"RCPT TO:<user@example.org>")
    raw.command(b"DATA")
    plain = _queueId(raw.command(b"Subject: anonymous\r\n\r\n."))
    raw.close()
    client = freshServer.smtp(login=False)
    overTLS = _send(client, "anonymous over tls")
    client.quit()
    client = freshServer.smtp()
    named = _send(client, "named")
    client.quit()
    assert dict(_rows(freshServer, "SELECT queue_id, account FROM messages")) == {
        plain: None, overTLS: None, named: freshServer.account,
    }


@pytest.mark.serverOptions("--accept-any-auth")
def test_acceptAnyAuth(freshServer: CaptureServer) -> None:
    """
    With C{--accept-any-auth}, any user name and password log in; an
    unknown name becomes an account on first use and owns its mail.
    """
    client = freshServer.smtp(login=False)
    assert client.login("newcomer", "any password at all") == (
        235, b"2.7.0 Authentication successful",
    )
    queueId = _send(client, "from a newcomer")
    client.quit()
    client = freshServer.smtp(login=False)
    assert client.login("newcomer", "another password")[0] == 235
    client.quit()
    assert _rows(freshServer, "SELECT account FROM messages WHERE queue_id = ?", queueId) == [
        ("newcomer",)
    ]
    assert ("newcomer",) in _rows(freshServer, "SELECT name FROM accounts")


@pytest.mark.serverOptions("--allow-insecure-auth")
def test_allowInsecureAuth(freshServer: CaptureServer) -> None:
    """
    With C{--allow-insecure-auth}, AUTH is offered and accepted before TLS
    (STARTTLS is still offered); a wrong key is still refused.
    """
    client = smtplib.SMTP("localhost", freshServer.ports["smtp"], timeout=30)
    client.ehlo()
    assert client.has_extn("starttls")
    assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    with pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(freshServer.account, "k_wrongwrongwrongwrongwrong")
    assert freshServer.key is not None
    assert client.login(freshServer.account, freshServer.key)[0] == 235
    queueId = _send(client, "insecure")
    client.quit()
    assert _rows(freshServer, "SELECT account, tls FROM messages WHERE queue_id = ?", queueId) == [
        (freshServer.account, 0)
    ]


@pytest.mark.serverOptions("--max-failed-logins", "2")
def test_tooManyFailedLoginsRefused(freshServer: CaptureServer) -> None:
    """
    A client that fails to log in C{--max-failed-logins} times is refused
    with C{421} on its next AUTH, also on a new connection and with the
    right key, until the failures age out; the connection still answers
    other commands (NOOP) until then, and the refusal closes it.
    """
    server = freshServer
    assert server.key is not None

    def plain(key: str) -> str:
        return base64.b64encode(f"\0{server.account}\0{key}".encode()).decode()

    for _ in range(2):
        client = server.smtp(login=False)
        assert client.docmd("AUTH", "PLAIN " + plain(newApiKey()))[0] == 535
        client.close()
    client = server.smtp(login=False)
    assert client.noop()[0] == 250
    code, reply = client.docmd("AUTH", "PLAIN " + plain(server.key))
    assert (code, reply) == (421, b"4.7.0 localhost Too many failed logins, try again later")
    client.close()
    raw = RawClient(server.ports["smtp"])
    raw.command(b"EHLO client.example")
    assert raw.command(b"STARTTLS").startswith(b"220")
    raw.sock = server.tlsContext().wrap_socket(raw.sock, server_hostname="localhost")
    raw.command(b"EHLO client.example")
    token = base64.b64encode(b"\0" + server.account.encode() + b"\0" + server.key.encode())
    assert raw.command(b"AUTH PLAIN " + token) == (
        b"421 4.7.0 localhost Too many failed logins, try again later"
    )
    assert raw.closed()
