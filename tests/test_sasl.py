"""
SASL on real servers, one set of mechanisms and one authorization rule for
SMTP, POP3 and IMAP (L{capture.auth}): PLAIN and LOGIN everywhere, with
the prompts other servers send (C{Username:}, C{Password:}), and a PLAIN
authorization identity accepted only when it is empty or the user name
itself.
"""

from __future__ import annotations

import base64
import imaplib
import poplib
import secrets
import subprocess
from typing import Any

import pytest

from tests.harness import CaptureServer
from tests.test_api import send
from tests.test_smtp_server import _send


def _inbox() -> str:
    return f"sasl-{secrets.token_hex(6)}@example.com"


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _curl(server: CaptureServer, url: str, user: str, key: str, mechanism: str,
          ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sv", "--cacert", f"{server.tlsDir}/localhost.pem", "--max-time", "30",
         "-u", f"{user}:{key}", "--login-options", f"AUTH={mechanism}", url],
        capture_output=True, timeout=60,
    )


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_curlLogsInWithEachMechanism(server: CaptureServer, scheme: str, mechanism: str) -> None:
    """
    C{curl --login-options AUTH=LOGIN} and C{AUTH=PLAIN} log in over
    imaps:// and pop3:// (curl picks the mechanism it was told, and fails
    when the server does not offer it) and read the inbox's message.
    """
    assert server.key is not None
    address = _inbox()
    send(server, address, b"Subject: sasl curl\r\n\r\nhello sasl\r\n")
    port = server.ports[scheme]
    url = f"{scheme}://localhost:{port}/" + ("INBOX;MAILINDEX=1" if scheme == "imaps" else "1")
    done = _curl(server, url, address, server.key, mechanism)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    command = b"AUTHENTICATE " if scheme == "imaps" else b"AUTH "
    assert command + mechanism.encode() in done.stderr
    assert b"hello sasl" in done.stdout
    wrong = _curl(server, url, address, "k_wrong", mechanism)
    assert wrong.returncode == 67  # CURLE_LOGIN_DENIED


def test_imaplibAuthenticateLogin(server: CaptureServer) -> None:
    """
    imaplib's C{authenticate("LOGIN")} is asked C{Username:} then
    C{Password:}, and logs in; C{authenticate("PLAIN")} too; AUTH=LOGIN
    is offered beside AUTH=PLAIN.
    """
    assert server.key is not None
    key = server.key
    address = _inbox()
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"],
                               ssl_context=server.tlsContext(), timeout=30)
    assert "AUTH=LOGIN" in client.capabilities and "AUTH=PLAIN" in client.capabilities
    asked: list[bytes] = []

    def answer(challenge: bytes) -> bytes:
        asked.append(challenge)
        return address.encode() if challenge == b"Username:" else key.encode()

    typ, _ = client.authenticate("LOGIN", answer)
    assert typ == "OK" and asked == [b"Username:", b"Password:"]
    assert client.select("INBOX")[0] == "OK"
    client.logout()
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"],
                               ssl_context=server.tlsContext(), timeout=30)
    typ, _ = client.authenticate("PLAIN", lambda _: b"\0" + address.encode() + b"\0" + key.encode())
    assert typ == "OK"
    client.logout()


def _pop3s(server: CaptureServer) -> Any:
    return poplib.POP3_SSL(
        "localhost", server.ports["pop3s"], timeout=30, context=server.tlsContext()
    )


def test_pop3AuthLogin(server: CaptureServer) -> None:
    """
    POP3 C{AUTH LOGIN} asks C{Username:} and C{Password:} (base64) and
    logs in, also with the user name as an initial response; C{AUTH}
    lists both mechanisms; C{*} cancels.
    """
    assert server.key is not None
    address = _inbox()
    client = _pop3s(server)
    # poplib has no AUTH: its private command helpers send it.
    client._putcmd("AUTH")
    assert client._getline()[0] == b"+OK"
    assert [client._getline()[0] for _ in range(3)] == [b"PLAIN", b"LOGIN", b"."]
    client._putcmd("AUTH LOGIN")
    assert client._getline()[0] == b"+ " + _b64(b"Username:")
    client._putcmd(_b64(address.encode()).decode())
    assert client._getline()[0] == b"+ " + _b64(b"Password:")
    assert client._shortcmd(_b64(server.key.encode()).decode()).startswith(b"+OK Logged in")
    client.quit()
    client = _pop3s(server)
    client._putcmd("AUTH LOGIN " + _b64(address.encode()).decode())
    assert client._getline()[0] == b"+ " + _b64(b"Password:")
    client._putcmd("*")
    assert client._getline()[0] == b"-ERR Authentication cancelled"
    with pytest.raises(poplib.error_proto, match="Log in first"):
        client.noop()
    client.quit()


def test_smtplibLoginPrompts(server: CaptureServer) -> None:
    """
    SMTP's LOGIN prompts are C{Username:} and C{Password:} (Twisted's
    ended in a NUL byte), and smtplib's LOGIN then sends and is stored.
    """
    assert server.key is not None
    client = server.smtp(login=False)
    client.ehlo()
    assert client.docmd("AUTH", "LOGIN") == (334, _b64(b"Username:"))
    assert client.docmd(_b64(server.account.encode()).decode()) == (334, _b64(b"Password:"))
    assert client.docmd(_b64(server.key.encode()).decode()) == (
        235, b"2.7.0 Authentication successful"
    )
    _send(client, "login prompts")
    client.quit()


def _plainToken(authzid: str, user: str, key: str) -> str:
    return _b64(f"{authzid}\0{user}\0{key}".encode()).decode()


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap"])
def test_plainAuthorizationIdentityRule(server: CaptureServer, protocol: str) -> None:
    """
    The one rule of L{capture.auth.mayActAs}, in every protocol: PLAIN
    with an authorization identity equal to the user name logs in; with
    another one (another account's name), the right key is refused with
    the protocol's own failed-login answer, and the session goes on.
    """
    assert server.key is not None
    user = server.account if protocol == "smtp" else _inbox()
    right = _plainToken(user, user, server.key)
    other = _plainToken("someone-else", user, server.key)
    if protocol == "smtp":
        client = server.smtp(login=False)
        client.ehlo()
        assert client.docmd("AUTH", "PLAIN " + other) == (
            535, b"5.7.8 Authentication credentials invalid"
        )
        assert client.docmd("AUTH", "PLAIN " + right) == (235, b"2.7.0 Authentication successful")
        _send(client, "authzid")
        client.quit()
    elif protocol == "pop3":
        client = _pop3s(server)
        with pytest.raises(poplib.error_proto) as refused:
            client._shortcmd("AUTH PLAIN " + other)
        assert refused.value.args[0] == b"-ERR [AUTH] Invalid user name or API key"
        assert client._shortcmd("AUTH PLAIN " + right).startswith(b"+OK Logged in")
        client.quit()
    else:
        client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"],
                                   ssl_context=server.tlsContext(), timeout=30)
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\]"):
            client.authenticate("PLAIN", lambda _: base64.b64decode(other))
        assert client.authenticate("PLAIN", lambda _: base64.b64decode(right))[0] == "OK"
        assert client.select("INBOX")[0] == "OK"
        client.logout()

