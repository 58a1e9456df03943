"""
IMAP with real clients (imaplib, imapclient, curl) against the real server
on loopback: login on both listeners, mailboxes, FETCH of every item
Thunderbird and imaplib ask for (bytes checked against the stored raw
message), flags shared with the HTTP API, SEARCH, IDLE, EXPUNGE, and each
bad input the server answers.
"""

from __future__ import annotations

import base64
import imaplib
import re
import secrets
import socket
import ssl
import subprocess
import time
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.harness import CaptureServer, LineSocket
from tests.test_api import assertListingIsEachMessagesJSON, call, callJSON, inbox, send

MULTIPART = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>, carol@example.org\r\n"
    b"Cc: dave@example.org\r\n"
    b"Subject: Quarterly report\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <report-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Plain body with kiwi\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"<p>HTML body</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b'Content-Type: application/octet-stream; name="data.bin"\r\n'
    b'Content-Disposition: attachment; filename="data.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQ=\r\n"
    b"--outer--\r\n"
)

REFUSED = (b"NO [CANNOT] Capture's folders are its inboxes: they cannot be created, renamed, "
           b"deleted or appended to")

ODD = (
    "From: Jürgen Müller <j@example.com>\r\n"
    "To: box@example.com\r\n"
    "Subject: Grüße aus Köln\r\n"
    "X-Note: =?utf-8?q?K=C3=B6ln?=\r\n"
    "Content-Type: text/plain; charset=utf-8;\r\n"
    "\r\n"
    "Grüße\r\n"
).encode()


def imap(server: CaptureServer, user: str, key: str | None = None) -> imaplib.IMAP4:
    """
    An imaplib client on the STARTTLS listener, logged in.
    """
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.starttls(server.tlsContext())
    client.login(user, key or server.key or "")
    return client


def imaps(server: CaptureServer, user: str, key: str | None = None) -> imaplib.IMAP4_SSL:
    """
    An imaplib client on the implicit-TLS listener, logged in.
    """
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=server.tlsContext(), timeout=30
    )
    client.login(user, key or server.key or "")
    return client


def fetchOne(client: imaplib.IMAP4, what: str, message: str = "1") -> dict[bytes, Any]:
    """
    One message's FETCH items, literals as bytes, other items as text.
    """
    status, data = client.fetch(message, what)
    assert status == "OK", data
    joined = b""
    literals: list[bytes] = []
    for piece in data:
        if isinstance(piece, tuple):
            joined += piece[0] + b"\0%d\0" % len(literals)
            literals.append(piece[1])
        else:
            joined += piece
    found: dict[bytes, Any] = {}
    for match in re.finditer(rb"(BODY\[[^\]]*\](?:<\d+>)?|RFC822(?:\.HEADER|\.TEXT)?) \{\d+\}\0(\d+)\0",
                             joined):
        found[match.group(1)] = literals[int(match.group(2))]
    return {"text": joined, **found}  # type: ignore[dict-item]


class Raw(LineSocket):
    """
    A line-level IMAP client over TLS, for inputs real clients never send.
    """

    def __init__(self, server: CaptureServer, login: bool = True) -> None:
        plain = socket.create_connection(("127.0.0.1", server.ports["imaps"]), timeout=10)
        self.sock = server.tlsContext().wrap_socket(plain, server_hostname="localhost")
        self.buffer = b""
        assert self.line().startswith(b"* OK")
        if login:
            assert self.command(b"a LOGIN " + server.account.encode() + b" " +
                                (server.key or "").encode()).startswith(b"a OK")


    def until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, line: bytes) -> bytes:
        return self.exchange(line)[-1]

    def exchange(self, line: bytes) -> list[bytes]:
        """
        Send one command; every line of its answer, the tagged one last.
        """
        self.send(line + b"\r\n")
        return self.until(line.split(b" ", 1)[0])

    def close(self) -> None:
        self.sock.close()


def _reserve(server: CaptureServer) -> tuple[str, str, str]:
    """
    A new account owning a new address: (account, key, address).
    """
    account = f"imap{secrets.token_hex(4)}"
    key = server.cli("account", "create", account).stdout.strip().splitlines()[-1]
    address = inbox()
    status, _ = callJSON(server, "POST", f"/api/addresses/{address}", key)
    assert status == 200
    return account, key, address


def _stillServes(server: CaptureServer) -> None:
    client = imaps(server, server.account)
    assert client.noop()[0] == "OK"
    client.logout()


# Listeners and login


def test_loginDisabledUntilSTARTTLS(server: CaptureServer) -> None:
    """
    On the STARTTLS listener, LOGIN is refused before TLS with
    PRIVACYREQUIRED and LOGINDISABLED advertised; after STARTTLS the
    capabilities offer AUTH=PLAIN, not STARTTLS, and LOGIN works.
    """
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    for name in ("IMAP4REV1", "LITERAL+", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT",
                 "ID", "ENABLE", "CHILDREN", "STARTTLS", "LOGINDISABLED"):
        assert name in client.capabilities
    assert "AUTH=PLAIN" not in client.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        client.login(server.account, server.key or "")
    client.starttls(server.tlsContext())
    capabilities = client.capability()[1][0].split()
    assert b"AUTH=PLAIN" in capabilities and b"STARTTLS" not in capabilities
    assert b"LOGINDISABLED" not in capabilities
    assert client.login(server.account, server.key or "")[0] == "OK"
    client.logout()


@pytest.mark.serverOptions("--allow-insecure-auth")
def test_allowInsecureAuthPermitsPlaintextLogin(freshServer: CaptureServer) -> None:
    """
    With --allow-insecure-auth, LOGIN works before TLS.
    """
    client = imaplib.IMAP4("127.0.0.1", freshServer.ports["imap"], timeout=30)
    assert "LOGINDISABLED" not in client.capabilities
    assert client.login(freshServer.account, freshServer.key or "")[0] == "OK"
    client.logout()


def test_imapsAccountAndAddressLogins(server: CaptureServer) -> None:
    """
    On IMAPS, the account name opens the account's view (INBOX and an
    Inboxes/<address> folder per owned address), an address opens that
    inbox alone as INBOX; AUTHENTICATE PLAIN works like LOGIN; a wrong key
    is refused with AUTHENTICATIONFAILED.
    """
    account, key, address = _reserve(server)
    send(server, address, b"Subject: for the owner\r\n\r\nx\r\n")
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"],
                               ssl_context=server.tlsContext(), timeout=30)
    assert "AUTH=PLAIN" in client.capabilities and "STARTTLS" not in client.capabilities
    assert "LOGINDISABLED" not in client.capabilities
    client.login(account, key)
    listed = client.list()[1]
    assert listed == [
        b'(\\HasNoChildren) "/" "INBOX"',
        b'(\\Trash \\HasNoChildren) "/" "Trash"',
        b'(\\Noselect \\HasChildren) "/" "Inboxes"',
        b'(\\HasNoChildren) "/" "Inboxes/' + address.encode() + b'"',
    ]
    assert client.lsub()[1] == listed
    assert client.list('""', "Inboxes/%")[1] == listed[3:]
    assert client.select(f'"Inboxes/{address}"') == ("OK", [b"1"])
    client.logout()

    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"],
                               ssl_context=server.tlsContext(), timeout=30)
    assert client.authenticate("PLAIN", lambda _: f"\0{address}\0{key}".encode())[0] == "OK"
    assert client.list()[1] == [b'(\\HasNoChildren) "/" "INBOX"',
                                b'(\\Trash \\HasNoChildren) "/" "Trash"']
    assert client.select("INBOX") == ("OK", [b"1"])
    client.logout()

    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"],
                               ssl_context=server.tlsContext(), timeout=30)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(account, "k_wrong")
    client.logout()


@pytest.mark.serverOptions("--max-failed-logins", "2")
def test_failedLoginsThrottled(freshServer: CaptureServer) -> None:
    """
    Past --max-failed-logins failures from one client, even the right key
    is refused for a while (UNAVAILABLE), shared with the other protocols;
    failures are counted in the metrics as IMAP's.
    """
    for _ in range(2):
        client = imaplib.IMAP4_SSL("127.0.0.1", freshServer.ports["imaps"],
                                   ssl_context=freshServer.tlsContext(), timeout=30)
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(freshServer.account, "k_wrong")
        client.logout()
    client = imaplib.IMAP4_SSL("127.0.0.1", freshServer.ports["imaps"],
                               ssl_context=freshServer.tlsContext(), timeout=30)
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        client.login(freshServer.account, freshServer.key or "")
    assert client.noop()[0] == "OK"
    client.logout()
    _, _, body = call(freshServer, "GET", "/metrics")
    assert b'capture_auth_failures_total{protocol="imap"} 2.0' in body
    assert b'capture_sessions_total{protocol="imap"} 3.0' in body


@pytest.mark.serverOptions("--max-connections", "1")
def test_connectionLimit(freshServer: CaptureServer) -> None:
    """
    Past --max-connections on a listener, a new client gets BYE and is
    disconnected; once the first leaves, the next is served.
    """
    first = Raw(freshServer)
    second = socket.create_connection(("127.0.0.1", freshServer.ports["imaps"]), timeout=10)
    tls = freshServer.tlsContext().wrap_socket(second, server_hostname="localhost")
    assert tls.recv(4096) == b"* BYE Too many connections, try again later\r\n"
    tls.close()
    first.command(b"z LOGOUT")
    first.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            _stillServes(freshServer)
            break
        except imaplib.IMAP4.abort:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.serverOptions("--idle-timeout", "1")
def test_silentClientBeforeLoginTimedOut(freshServer: CaptureServer) -> None:
    """
    A client that connects and never logs in gets BYE after
    --idle-timeout and is disconnected; the next client is served.
    """
    raw = Raw(freshServer, login=False)
    raw.sock.settimeout(10)
    assert raw.line().startswith(b"* BYE")
    with pytest.raises(ConnectionError):
        raw.line()
    raw.close()
    _stillServes(freshServer)


def test_othersInboxesStayClosed(server: CaptureServer) -> None:
    """
    Another account's key can neither log in as its owned address nor
    select it as a folder, and its mail never shows.
    """
    _, _, address = _reserve(server)
    send(server, address, b"Subject: private\r\n\r\nsecret\r\n")
    with pytest.raises(imaplib.IMAP4.error):
        imaps(server, address)
    client = imaps(server, server.account)
    status, data = client.select(f'"Inboxes/{address}"')
    assert status == "NO" and b"NONEXISTENT" in data[0]
    assert b"private" not in b"".join(client.list()[1])
    client.logout()


def test_publicInboxByAddressLogin(server: CaptureServer) -> None:
    """
    Any account's key opens a public inbox by its address; a copy another
    account starred stays hidden.
    """
    address = inbox()
    send(server, address, b"Subject: one\r\n\r\nx\r\n")
    send(server, address, b"Subject: two\r\n\r\nx\r\n")
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    other, otherKey, _ = _reserve(server)
    starred = [m for m in listed if m["subject"] == "two"][0]
    status, _ = callJSON(server, "PUT", f"/api/addresses/{address}/messages/{starred['_id']}/star",
                         otherKey)
    assert status == 200
    client = imaps(server, address)
    assert client.select("INBOX") == ("OK", [b"1"])
    assert b"Subject: one" in fetchOne(client, "(BODY.PEEK[HEADER])")[b"BODY[HEADER]"]
    client.logout()
    client = imaps(server, address, otherKey)
    assert client.select("INBOX") == ("OK", [b"2"])
    client.logout()


def test_sentMailIsTheAccountsInbox(server: CaptureServer) -> None:
    """
    The account's INBOX holds what it sent through Capture, one entry per
    message however many recipients it had.
    """
    account, key, _ = _reserve(server)
    client = server.smtp(login=False)
    client.login(account, key)
    client.sendmail("me@example.com", [inbox(), inbox()], b"Subject: sent by me\r\n\r\nx\r\n")
    client.quit()
    reader = imaps(server, account, key)
    assert reader.select("INBOX") == ("OK", [b"1"])
    assert b"sent by me" in fetchOne(reader, "(BODY.PEEK[HEADER])")[b"BODY[HEADER]"]
    # New sent mail shows up in the selected INBOX; mail to another
    # account's owned address is not the sender's to read.
    _, _, othersAddress = _reserve(server)
    client = server.smtp(login=False)
    client.login(account, key)
    client.sendmail("me@example.com", [othersAddress], b"Subject: to them\r\n\r\nx\r\n")
    client.sendmail("me@example.com", [inbox()], b"Subject: again\r\n\r\nx\r\n")
    client.quit()
    deadline = time.monotonic() + 10
    while reader.noop() and reader.untagged_responses.get("EXISTS", [b""])[-1] != b"2":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert b"again" in fetchOne(reader, "(BODY.PEEK[HEADER])", "2")[b"BODY[HEADER]"]
    assert reader.select("INBOX") == ("OK", [b"2"])
    reader.logout()


# SELECT and FETCH


def test_selectReportsWhatRFC3501Requires(server: CaptureServer) -> None:
    """
    SELECT answers EXISTS, RECENT, FLAGS, PERMANENTFLAGS, UIDVALIDITY,
    UIDNEXT and UNSEEN; EXAMINE is read-only; STATUS agrees.
    """
    address = inbox()
    for n in range(3):
        send(server, address, b"Subject: m%d\r\n\r\nx\r\n" % n)
    client = imaps(server, address)
    assert client.select("INBOX") == ("OK", [b"3"])
    responses = client.untagged_responses
    # New since the server started, and this is the first session to
    # select them: \Recent here (issue 12 item 11).
    assert responses["RECENT"] == [b"3"]
    assert b"\\Seen" in responses["FLAGS"][0]
    assert b"\\Seen" in responses["PERMANENTFLAGS"][0]
    uids = [int(u) for u in client.uid("SEARCH", "ALL")[1][0].split()]
    assert uids == sorted(uids) and len(uids) == 3
    assert int(responses["UIDNEXT"][0]) > uids[-1]
    assert responses["UNSEEN"] == [b"1"]
    assert int(responses["UIDVALIDITY"][0]) > 0
    status = client.status("INBOX", "(MESSAGES UIDNEXT UNSEEN UIDVALIDITY RECENT)")[1][0]
    assert b"MESSAGES 3" in status and b"UNSEEN 3" in status
    assert b"UIDNEXT " + responses["UIDNEXT"][0] in status
    assert client.namespace()[1] == [b'(("" "/")) NIL NIL']
    client.logout()
    client = imaps(server, address)
    client.select("INBOX", readonly=True)
    assert "READ-ONLY" in client.untagged_responses
    client.logout()


def test_fetchEveryItemWithExactBytes(server: CaptureServer) -> None:
    """
    Every FETCH item a client asks for: sections and partial fetches are
    exactly the stored raw bytes (as the API's raw route serves them), the
    ENVELOPE and BODYSTRUCTURE describe the message.
    """
    address = inbox()
    send(server, address, MULTIPART)
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    status, _, raw = call(server, "GET", f"/api/raw/{address}/{listed[0]['_id']}", server.key)
    assert status == 200 and raw.endswith(MULTIPART)
    client = imaps(server, address)
    client.select("INBOX")
    got = fetchOne(
        client,
        "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE "
        "BODY.PEEK[HEADER.FIELDS (From Subject)] BODY.PEEK[] BODY.PEEK[HEADER] "
        "BODY.PEEK[TEXT] BODY.PEEK[1.2.MIME] BODY.PEEK[1.1] BODY.PEEK[2] BODY.PEEK[]<10.25>)",
    )
    text = got["text"]
    headerEnd = raw.index(b"\r\n\r\n") + 4
    assert got[b"BODY[]"] == raw
    assert b"RFC822.SIZE %d" % len(raw) in text
    assert got[b"BODY[HEADER]"] == raw[:headerEnd]
    assert got[b"BODY[TEXT]"] == raw[headerEnd:]
    assert got[b"BODY[HEADER.FIELDS (FROM SUBJECT)]"] == (
        b"From: Alice <alice@example.com>\r\nSubject: Quarterly report\r\n\r\n"
    )
    assert got[b"BODY[1.2.MIME]"] == (
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: "
        b"quoted-printable\r\n\r\n"
    )
    assert got[b"BODY[1.1]"] == b"Plain body with kiwi"
    assert got[b"BODY[2]"] == b"AAECAwQ="
    assert got[b"BODY[]<10>"] == raw[10:35]
    assert b"FLAGS (\\Recent)" in text
    assert re.search(rb'INTERNALDATE "\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d \+0000"', text)
    assert (b'ENVELOPE ("Mon, 1 Jan 2024 10:00:00 +0000" "Quarterly report" '
            b'(("Alice" NIL "alice" "example.com"))') in text
    assert b'(("Bob" NIL "bob" "example.org")(NIL NIL "carol" "example.org"))' in text
    assert b'"<report-1@example.com>")' in text
    assert (b'BODYSTRUCTURE ((("text" "plain" ("charset" "utf-8") NIL NIL "7BIT" 20 1 NIL NIL '
            b'NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 16 1 NIL NIL '
            b'NIL NIL) "alternative" ("boundary" "inner") NIL NIL NIL)("application" '
            b'"octet-stream" ("name" "data.bin") NIL NIL "BASE64" 8 NIL ("attachment" '
            b'("filename" "data.bin")) NIL NIL) "mixed" ("boundary" "outer") NIL NIL NIL)') in text
    # PEEK left it unread; a plain BODY[] marks it \Seen, as the API shows.
    assert listed[0]["read"] is None or listed[0]["read"] is False
    got = fetchOne(client, "(BODY[]<0.7>)")
    assert got[b"BODY[]<0>"] == raw[:7] and b"\\Seen" in got["text"]
    _, message = callJSON(server, "GET", f"/api/addresses/{address}/messages/{listed[0]['_id']}",
                          server.key)
    assert message["read"] is True
    assert b"RFC822 {%d}" % len(raw) in fetchOne(client, "(RFC822)")["text"]
    client.logout()


def test_wholeMailboxFetchInBatches(server: CaptureServer) -> None:
    """
    FETCH 1:* of whole messages larger, together, than one store read
    (4 MiB) answers every message whole, in order, with its own bytes.
    """
    address = inbox()
    bodies = []
    for n in range(5):
        body = ((b"%d" % n) * 78 + b"\r\n") * 20000
        bodies.append(body)
        send(server, address, b"Subject: big %d\r\n\r\n" % n + body)
    client = imaps(server, address)
    client.select("INBOX")
    status, data = client.fetch("1:*", "(BODY.PEEK[TEXT])")
    assert status == "OK"
    texts = [piece[1] for piece in data if isinstance(piece, tuple)]
    assert texts == bodies
    assert [piece[0].split()[0] for piece in data if isinstance(piece, tuple)] == [
        b"1", b"2", b"3", b"4", b"5"]
    client.logout()


@pytest.mark.serverOptions("--public-inbox-limit", "0")
def test_headerSyncOfALargeMailboxInBatches(freshServer: CaptureServer) -> None:
    """
    A header FETCH of more messages than one store read takes (2,000)
    answers every message once, in order, across the batches.  (Its own
    server: on the shared one, retention would trim this public inbox to
    500 meanwhile.)
    """
    server = freshServer
    address = inbox()
    client = server.smtp()
    for n in range(2101):
        client.sendmail("s@example.com", [address], b"Subject: sync %d\r\n\r\nx\r\n" % n)
    client.quit()
    reader = imaps(server, address)
    reader.select("INBOX")
    status, data = reader.fetch("1:*", "(UID RFC822.SIZE ENVELOPE)")
    assert status == "OK"
    lines = [piece if isinstance(piece, bytes) else piece[0] for piece in data]
    assert [int(line.split()[0]) for line in lines] == list(range(1, 2102))
    assert [re.search(rb'"sync (\d+)"', line)[1] for line in lines] == [  # type: ignore[index]
        b"%d" % n for n in range(2101)]
    reader.logout()


_METADATA = b"(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)"


def test_metadataFetchSameAsOneByOne(server: CaptureServer) -> None:
    """
    A FETCH of metadata alone over many messages (read as plain rows, a
    dense set as one range of uids) answers byte for byte what the same
    items fetched one message at a time answer, in a mailbox of mixed
    flags, keywords, a label IMAP cannot show, \\Deleted and non-ASCII
    headers; copies of another inbox within the range never show; a
    sparse UID set (read by IN lists) answers the same lines.
    """
    address, other = inbox(), inbox()
    client = server.smtp()
    for n in range(70):
        message = ODD if n % 7 == 3 else MULTIPART if n % 5 == 1 else b"Subject: m %d\r\n\r\nx\r\n" % n
        client.sendmail("s@example.com", [address], message)
        client.sendmail("s@example.com", [other], b"Subject: other %d\r\n\r\nx\r\n" % n)
    client.quit()
    raw = _loggedIn(server, address)
    for command in (b"s1 STORE 1:10 +FLAGS (\\Seen)", b"s2 STORE 5:15 +FLAGS (\\Flagged work)",
                    b"s3 STORE 20 +FLAGS (\\Answered \\Deleted urgent)"):
        assert raw.command(command).startswith(command[:2] + b" OK")
    messageId = send(server, address, b"Subject: labelled\r\n\r\nx\r\n") + "-0"
    assert callJSON(server, "PUT", f"/api/addresses/{address}/messages/{messageId}/labels/big%20deal",
                    server.key)[0] == 200
    assert raw.command(b"n NOOP").startswith(b"n OK")

    whole = raw.exchange(b"f FETCH 1:* " + _METADATA)
    assert whole[-1] == b"f OK FETCH completed"
    singles = [raw.exchange(b"g%d FETCH %d " % (n, n) + _METADATA) for n in range(1, 72)]
    assert all(len(lines) == 2 for lines in singles)
    assert whole[:-1] == [lines[0] for lines in singles]
    assert [line.split()[1] for line in whole[:-1]] == [b"%d" % n for n in range(1, 72)]
    assert b"(\\Recent \\Answered \\Deleted urgent)" in whole[19]
    assert b"other" not in b"".join(whole)
    assert b"FLAGS (big deal)" not in whole[70] and b"FLAGS (\\Recent)" in whole[70]

    uids = [re.search(rb"UID (\d+)", line)[1] for line in whole[:-1]]  # type: ignore[index]
    sparse = raw.exchange(b"u UID FETCH " + b",".join(uids[::3]) + b" " + _METADATA)
    assert sparse[:-1] == whole[:-1:3]
    assert raw.command(b"z LOGOUT").startswith(b"z OK")
    raw.close()
    _stillServes(server)


def test_metadataFetchTakesFlagsAsStored(server: CaptureServer) -> None:
    """
    A metadata FETCH that shows no flags still takes them as stored now:
    \\Deleted set by another session is expunged by this one's EXPUNGE.
    """
    address = inbox()
    for n in range(3):
        send(server, address, b"Subject: d %d\r\n\r\nx\r\n" % n)
    first, second = _loggedIn(server, address), _loggedIn(server, address)
    assert second.command(b"s STORE 2 +FLAGS.SILENT (\\Deleted)").startswith(b"s OK")
    lines = first.exchange(b"f FETCH 1:* (BODYSTRUCTURE)")
    assert len(lines) == 4 and lines[-1] == b"f OK FETCH completed"
    assert first.exchange(b"e EXPUNGE") == [b"* 2 EXPUNGE", b"e OK EXPUNGE completed"]
    for raw in (first, second):
        raw.close()


def test_nonAsciiHeadersAndOddContentTypes(server: CaptureServer) -> None:
    """
    Raw UTF-8 and RFC 2047 headers and a Content-Type with a trailing ';'
    (gaps I1, I3) are fetched without breaking the session.
    """
    address = inbox()
    send(server, address, ODD)
    client = imaps(server, address)
    client.select("INBOX")
    got = fetchOne(client, "(ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (Subject X-Note)] "
                           "BODY.PEEK[HEADER])")
    assert got[b"BODY[HEADER.FIELDS (SUBJECT X-NOTE)]"] == (
        "Subject: Grüße aus Köln\r\nX-Note: =?utf-8?q?K=C3=B6ln?=\r\n\r\n".encode()
    )
    subject = base64.b64encode("Grüße aus Köln".encode()).decode()
    assert f'"=?utf-8?b?{subject}?="'.encode() in got["text"]
    assert b'BODYSTRUCTURE ("text" "plain" ("charset" "utf-8")' in got["text"]
    assert client.noop()[0] == "OK"
    client.logout()


def test_imapclientFetchesAndSearches(server: CaptureServer) -> None:
    """
    imapclient (which parses every response strictly) reads the mailbox:
    envelope, body structure, flags, search.
    """
    address = inbox()
    send(server, address, MULTIPART)
    send(server, address, ODD)
    with IMAPClient("127.0.0.1", port=server.ports["imaps"],
                    ssl_context=server.tlsContext()) as client:
        client.login(address, server.key or "")
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 2
        uids = client.search(["ALL"])
        data = client.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "RFC822.SIZE"])
        envelope = data[uids[0]][b"ENVELOPE"]
        assert envelope.subject == b"Quarterly report"
        assert envelope.to[1].mailbox == b"carol"
        assert data[uids[1]][b"BODYSTRUCTURE"][0] == b"text"
        assert client.search(["SUBJECT", "Quarterly"]) == [uids[0]]
        assert client.search(["SUBJECT", "Köln"], charset="UTF-8") == [uids[1]]
        assert client.capabilities()


# Flags, EXPUNGE, SEARCH


def test_flagsPersistAsTheAPIShowsThem(server: CaptureServer) -> None:
    """
    STORE \\Seen is the API's read, keywords are its labels; flags persist
    for the next session; -FLAGS and FLAGS replace them.
    """
    address = inbox()
    send(server, address, b"Subject: flags\r\n\r\nx\r\n")
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    messageId = listed[0]["_id"]
    client = imaps(server, address)
    client.select("INBOX")
    assert client.store("1", "+FLAGS", "(\\Seen \\Flagged work urgent)")[1] == [
        b"1 (FLAGS (\\Seen \\Recent \\Flagged work urgent))"
    ]
    _, message = callJSON(server, "GET", f"/api/addresses/{address}/messages/{messageId}",
                          server.key)
    assert message["read"] is True and message["labels"] == ["work", "urgent"]
    client.logout()
    client = imaps(server, address)
    client.select("INBOX")
    assert b"FLAGS (\\Seen \\Flagged work urgent)" in fetchOne(client, "(FLAGS)")["text"]
    client.uid("STORE", client.uid("SEARCH", "ALL")[1][0].decode(), "-FLAGS.SILENT",
               "(\\Seen urgent)")
    _, message = callJSON(server, "GET", f"/api/addresses/{address}/messages/{messageId}",
                          server.key)
    assert message["read"] is False and message["labels"] == ["work"]
    client.logout()


def test_apiChangesSeenBySelectedSession(server: CaptureServer) -> None:
    """
    Read and labels set over the API after SELECT show in FETCH FLAGS; a
    label that is not an IMAP atom is not shown, and survives STORE.
    """
    address = inbox()
    messageId = send(server, address, b"Subject: both\r\n\r\nx\r\n") + "-0"
    base = f"/api/addresses/{address}/messages/{messageId}"
    client = imaps(server, address)
    client.select("INBOX")
    assert b"FLAGS (\\Recent)" in fetchOne(client, "(FLAGS)")["text"]
    for path in ("labels/work", "labels/big%20deal", "read/true"):
        assert callJSON(server, "PUT", f"{base}/{path}", server.key)[0] == 200
    assert b"FLAGS (\\Seen \\Recent work)" in fetchOne(client, "(FLAGS)")["text"]
    client.store("1", "FLAGS", "(\\Flagged other)")
    message = callJSON(server, "GET", base, server.key)[1]
    assert message["labels"] == ["big deal", "other"] and message["read"] is False
    client.logout()


def test_expungeDeletesCopies(server: CaptureServer) -> None:
    """
    \\Deleted + EXPUNGE deletes the copy (the API no longer has it), UID
    EXPUNGE only the UIDs named, CLOSE the rest.
    """
    address = inbox()
    for n in range(4):
        send(server, address, b"Subject: e%d\r\n\r\nx\r\n" % n)
    client = imaps(server, address)
    client.select("INBOX")
    uids = client.uid("SEARCH", "ALL")[1][0].split()
    client.store("2", "+FLAGS", "(\\Deleted)")
    assert client.expunge()[1] == [b"2"]
    assert client.select("INBOX")[1] == [b"3"]
    client.uid("STORE", b",".join(uids[2:]).decode(), "+FLAGS", "(\\Deleted)")
    assert client.uid("EXPUNGE", uids[3].decode())[0] == "OK"
    assert client.uid("SEARCH", "ALL")[1][0].split() == [uids[0], uids[2]]
    assert client.close()[0] == "OK"
    client.logout()
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    assert [m["subject"] for m in listed] == ["e0"]


def test_searchAgainstTheStore(server: CaptureServer) -> None:
    """
    Each SEARCH key the issue names, and an empty result still gives an
    untagged SEARCH line.
    """
    address = inbox()
    send(server, address, MULTIPART)
    send(server, address, b"From: zed@example.net\r\nTo: yan@example.net\r\nSubject: other\r\n"
                          b"X-Tag: blue\r\n\r\nbanana split\r\n")
    client = imaps(server, address)
    client.select("INBOX")
    client.store("2", "+FLAGS", "(\\Seen \\Flagged \\Deleted tagged)")

    def search(*keys: str) -> list[bytes]:
        status, data = client.search(None, *keys)
        assert status == "OK"
        return data[0].split()

    assert search("ALL") == [b"1", b"2"]
    assert search("SEEN") == [b"2"] and search("UNSEEN") == [b"1"]
    assert search("DELETED") == [b"2"] and search("FLAGGED") == [b"2"]
    assert search("KEYWORD", "tagged") == [b"2"]
    assert search("FROM", "alice") == [b"1"] and search("TO", "yan") == [b"2"]
    assert search("CC", "dave") == [b"1"] and search("SUBJECT", "QUARTERLY") == [b"1"]
    assert search("BODY", "kiwi") == [b"1"] and search("TEXT", "banana") == [b"2"]
    assert search("HEADER", "X-Tag", "blue") == [b"2"]
    assert search("SINCE", "1-Jan-2020") == [b"1", b"2"] and search("BEFORE", "1-Jan-2020") == []
    assert search("ON", time.strftime("%d-%b-%Y", time.gmtime())) == [b"1", b"2"]
    assert search("LARGER", "500") == [b"1"] and search("SMALLER", "500") == [b"2"]
    assert search("NOT", "SEEN") == [b"1"] and search("OR", "SEEN", "BODY", "kiwi") == [b"1", b"2"]
    assert search("CHARSET", "UTF-8", "SUBJECT", "other") == [b"2"]
    assert search("2") == [b"2"]
    uid = client.uid("SEARCH", "ALL")[1][0].split()[0]
    assert client.uid("SEARCH", "UID", uid.decode())[1] == [uid]
    assert client.search(None, "SUBJECT", "nothing-like-this") == ("OK", [b""])
    status, data = client.search("KOI8-R", "ALL")
    client.logout()
    assert status == "NO" and b"BADCHARSET" in data[0]


def test_idleSeesNewMail(server: CaptureServer) -> None:
    """
    A message captured by SMTP shows up as EXISTS in an idling session,
    and in another selected session at its next command.
    """
    address = inbox()
    send(server, address, b"Subject: first\r\n\r\nx\r\n")
    other = imaps(server, address)
    other.select("INBOX")
    with IMAPClient("127.0.0.1", port=server.ports["imaps"],
                    ssl_context=server.tlsContext()) as client:
        client.login(address, server.key or "")
        client.select_folder("INBOX")
        client.idle()
        send(server, address, b"Subject: second\r\n\r\nx\r\n")
        responses = client.idle_check(timeout=10)
        client.idle_done()
        assert (2, b"EXISTS") in responses
    other.noop()
    assert other.untagged_responses["EXISTS"][-1] == b"2"
    other.logout()


@pytest.mark.serverOptions("--public-inbox-limit", "2", "--retention-interval", "1")
def test_retentionIsExpunged(freshServer: CaptureServer) -> None:
    """
    A copy recycled by retention (a public inbox over its limit) shows up
    as EXPUNGE in an idling session, like a deletion made elsewhere.
    """
    address = inbox()
    send(freshServer, address, b"Subject: old\r\n\r\nx\r\n")
    send(freshServer, address, b"Subject: kept\r\n\r\nx\r\n")
    with IMAPClient("127.0.0.1", port=freshServer.ports["imaps"],
                    ssl_context=freshServer.tlsContext()) as client:
        client.login(address, freshServer.key or "")
        client.select_folder("INBOX")
        client.idle()
        send(freshServer, address, b"Subject: new\r\n\r\nx\r\n")
        responses: list[Any] = []
        for _ in range(20):
            responses += client.idle_check(timeout=1)
            if (1, b"EXPUNGE") in responses:
                break
        client.idle_done()
        assert (3, b"EXISTS") in responses and (1, b"EXPUNGE") in responses
        subjects = client.fetch(client.search(["ALL"]), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        assert sorted(m[b"BODY[HEADER.FIELDS (SUBJECT)]"] for m in subjects.values()) == [
            b"Subject: kept\r\n\r\n", b"Subject: new\r\n\r\n"
        ]


def test_deletionsElsewhereAreExpunged(server: CaptureServer) -> None:
    """
    A copy deleted through the HTTP API shows up as EXPUNGE in an idling
    session at once, and in another selected session at its next NOOP;
    the sequence numbers that follow stay right.
    """
    address = inbox()
    for n in range(3):
        send(server, address, b"Subject: d%d\r\n\r\nx\r\n" % n)
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    middle = [m for m in listed if m["subject"] == "d1"][0]
    other = imaps(server, address)
    other.select("INBOX")
    with IMAPClient("127.0.0.1", port=server.ports["imaps"],
                    ssl_context=server.tlsContext()) as client:
        client.login(address, server.key or "")
        client.select_folder("INBOX")
        client.idle()
        status, _, _ = call(server, "DELETE",
                            f"/api/addresses/{address}/messages/{middle['_id']}", server.key)
        assert status == 200
        responses = client.idle_check(timeout=10)
        client.idle_done()
        assert (2, b"EXPUNGE") in responses
        second = client.search(["ALL"])[1]
        fetched = client.fetch([second], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[second]
        assert fetched[b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: d2\r\n\r\n"
    other.noop()
    assert other.untagged_responses["EXPUNGE"] == [b"2"]
    assert b"Subject: d2" in fetchOne(other, "(BODY.PEEK[HEADER])", "2")[b"BODY[HEADER]"]
    other.logout()


def test_pipelinedLoginSelectFetch(server: CaptureServer) -> None:
    """
    LOGIN, SELECT and FETCH sent in one packet are answered in order, each
    in the state the one before left (gap I9: Twisted ran them in the old
    state).
    """
    address = inbox()
    send(server, address, b"Subject: piped\r\n\r\nx\r\n")
    raw = Raw(server, login=False)
    raw.send(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode() + b"\r\n"
             b"b SELECT INBOX\r\nc FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"
             b"d LOGOUT\r\n")
    assert raw.until(b"a")[-1].startswith(b"a OK")
    assert raw.until(b"b")[-1] == b"b OK [READ-WRITE] SELECT completed"
    lines = raw.until(b"c")
    assert lines[0] == b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}"
    assert lines[-1] == b"c OK FETCH completed"
    assert raw.until(b"d")[-1] == b"d OK LOGOUT successful"
    raw.close()


def _loggedIn(server: CaptureServer, address: str) -> Raw:
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode()
                       ).startswith(b"a OK")
    assert raw.command(b"b SELECT INBOX").startswith(b"b OK")
    return raw


def test_pipelinedFetchesReadAheadExactly(server: CaptureServer) -> None:
    """
    Single-message FETCHes pipelined together (read ahead in one store
    read) answer byte for byte what the same FETCHes answer one at a time,
    repeats, UID FETCHes and other items included.
    """
    address = inbox()
    for i in range(6):
        send(server, address, b"Subject: ahead %d\r\n\r\n" % i + b"line\r\n" * i)
    commands = [b"t%d FETCH %d (BODY.PEEK[])" % (i, n) for i, n in enumerate([3, 1, 6, 3, 2])]
    commands += [b"u1 FETCH 4 (BODY.PEEK[HEADER])", b"u2 FETCH 5 (BODY.PEEK[HEADER])",
                 b"u3 FETCH 2 (BODY.PEEK[] RFC822.SIZE)", b"u4 FETCH 9 (BODY.PEEK[])"]
    single = _loggedIn(server, address)
    expected = [single.exchange(c) for c in commands]
    single.close()
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(
        _loggedIn(server, address).exchange(b"c FETCH 1:* (UID)")))]
    piped = _loggedIn(server, address)
    piped.send(b"".join(c + b"\r\n" for c in commands))
    answers = [piped.until(c.split(b" ", 1)[0]) for c in commands]
    assert answers == expected
    assert answers[-1][-1].startswith(b"u4 BAD")
    piped.send(b"".join(b"v%d UID FETCH %d (BODY.PEEK[])\r\n" % (i, u) for i, u in enumerate(uids)))
    for i in range(len(uids)):
        lines = piped.until(b"v%d" % i)
        assert b"ahead %d" % i in b"\n".join(lines) and lines[-1].startswith(b"v%d OK" % i)
    piped.close()


def test_readAheadStopsAtAChange(server: CaptureServer) -> None:
    """
    A STORE and EXPUNGE pipelined between FETCHes: the FETCHes after them
    see the mailbox as the EXPUNGE left it, not what was read ahead.
    """
    address = inbox()
    for i in range(1, 5):
        send(server, address, b"Subject: number %d\r\n\r\nx\r\n" % i)
    raw = _loggedIn(server, address)
    raw.send(b"c FETCH 1 (BODY.PEEK[])\r\nd FETCH 2 (BODY.PEEK[])\r\n"
             b"e STORE 2 +FLAGS.SILENT (\\Deleted)\r\nf EXPUNGE\r\n"
             b"g FETCH 2 (BODY.PEEK[])\r\nh FETCH 3 (BODY.PEEK[])\r\n")
    assert b"number 1" in b"\n".join(raw.until(b"c"))
    assert b"number 2" in b"\n".join(raw.until(b"d"))
    assert raw.until(b"e")[-1].startswith(b"e OK")
    assert raw.until(b"f")[-1].startswith(b"f OK")
    assert b"number 3" in b"\n".join(raw.until(b"g"))
    assert b"number 4" in b"\n".join(raw.until(b"h"))
    raw.close()


# Bad input


def test_commandsBeforeLogin(server: CaptureServer) -> None:
    """
    Only CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE, ID, NOOP and LOGOUT
    work before login; the rest get BAD, and the session goes on.
    """
    raw = Raw(server, login=False)
    for command in (b"a SELECT INBOX", b"b LIST \"\" *", b"c FETCH 1 (FLAGS)",
                    b"d STATUS INBOX (MESSAGES)"):
        assert raw.command(command) == command[:1] + b" BAD Log in first (LOGIN or AUTHENTICATE)"
    assert raw.command(b"e FROB") == b"e BAD Unsupported command"
    assert raw.command(b"f NOOP") == b"f OK NOOP completed"
    assert raw.command(b'g ID ("name" "test")') == b"g OK ID completed"
    assert raw.command(b"h AUTHENTICATE CRAM-MD5") == b"h NO Unsupported mechanism; use PLAIN or LOGIN"
    raw.send(b"i AUTHENTICATE PLAIN\r\n")
    assert raw.line().startswith(b"+ ")
    raw.send(b"!!!notbase64\r\n")
    assert raw.until(b"i")[-1] == b"i BAD Malformed PLAIN response"
    raw.close()
    _stillServes(server)


def test_pipelinedAfterSTARTTLSIsDiscarded(server: CaptureServer) -> None:
    """
    A command sent in the clear right behind STARTTLS is dropped, never
    run inside the TLS session.
    """
    plain = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10)
    plain.recv(4096)
    plain.sendall(b"a STARTTLS\r\nb LOGOUT\r\n")
    reply = b""
    while b"\r\n" not in reply:
        reply += plain.recv(1)
    assert reply.startswith(b"a OK")
    tls = server.tlsContext().wrap_socket(plain, server_hostname="localhost")
    tls.sendall(b"c NOOP\r\n")
    data = b""
    while b"c OK" not in data:
        data += tls.recv(4096)
    assert b"BYE" not in data and b"b OK" not in data
    tls.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_commandInTheFinishedFlightIsAnswered(server: CaptureServer,
                                              version: ssl.TLSVersion) -> None:
    """
    After STARTTLS, a client whose first command leaves in the same TCP
    segment as its TLS Finished message (the client side run on memory BIOs,
    so the test decides the flights) gets it answered: bytes that arrive
    inside TLS with the end of the handshake are read, only what came in
    the clear is dropped.  (The offlineimap hang of issue 10 is not this:
    see README, "offlineimap".)
    """
    plain = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10)
    buffered = b""

    def clearLine() -> bytes:
        nonlocal buffered
        while b"\r\n" not in buffered:
            buffered += plain.recv(1)
        line, buffered = buffered.split(b"\r\n", 1)
        return line

    assert clearLine().startswith(b"* OK")
    plain.sendall(b"a STARTTLS\r\n")
    assert clearLine() == b"a OK Begin TLS negotiation now"
    context = server.tlsContext()
    context.minimum_version = context.maximum_version = version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                plain.sendall(outgoing.read())
            incoming.write(plain.recv(65536))
    # The client's last handshake flight (TLS 1.3: its Finished) is still
    # in the BIO: the command goes out in the same segment.
    tls.write(b"b CAPABILITY\r\n")
    plain.sendall(outgoing.read())
    answer = b""
    while b"b OK" not in answer:
        data = plain.recv(65536)
        assert data, answer
        incoming.write(data)
        try:
            while True:
                answer += tls.read(65536)
        except ssl.SSLWantReadError:
            pass
    assert tls.version() == {ssl.TLSVersion.TLSv1_3: "TLSv1.3",
                             ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
    lines = answer.split(b"\r\n")
    assert lines[0].startswith(b"* CAPABILITY IMAP4rev1 ") and b"AUTH=PLAIN" in lines[0]
    assert lines[1:] == [b"b OK CAPABILITY completed", b""]
    plain.close()
    _stillServes(server)


def test_badSequencesAndNames(server: CaptureServer) -> None:
    """
    Malformed or out-of-range message sets, '*' in an empty mailbox, bad
    mailbox names, unknown UID commands: BAD or NO, and the session goes
    on.
    """
    account, key, address = _reserve(server)
    raw = Raw(server)
    assert raw.command(b"a FETCH 1 (FLAGS)") == b"a BAD No mailbox selected"
    assert raw.command(b'b SELECT "Inboxes/../x"') == b"b NO [CANNOT] Invalid mailbox name"
    for n, name in enumerate((b"&Jjo", b"a&", b"&AGEAYgBj-", b"a\0b")):
        tag = b"c%d" % n
        assert raw.command(tag + b' SELECT "' + name + b'"') == (
            tag + b" NO [CANNOT] Invalid mailbox name (modified UTF-7)")
    assert raw.command(b'c STATUS "Inboxes/\x01" (MESSAGES)') == (
        b"c NO [CANNOT] Invalid mailbox name (modified UTF-7)")
    assert raw.command(b"d SELECT nosuchbox") == b"d NO [NONEXISTENT] No such mailbox"
    raw.close()
    raw = Raw(server, login=False)
    raw.command(b"a LOGIN " + address.encode() + b" " + key.encode())
    assert raw.command(b"b SELECT INBOX").startswith(b"b OK")
    assert raw.command(b"c FETCH * (FLAGS)") == b"c BAD Illegal syntax: No messages in this mailbox"
    assert raw.command(b"d FETCH 1:2 (FLAGS)") == b"d BAD Illegal syntax: No messages in this mailbox"
    assert raw.command(b"e UID FETCH 1:* (FLAGS)") == b"e OK FETCH completed"
    send(server, address, b"Subject: one\r\n\r\nx\r\n")
    assert raw.command(b"f NOOP") == b"f OK NOOP completed"
    assert raw.command(b"g FETCH 5 (FLAGS)") == (
        b"g BAD Illegal syntax: Message sequence number out of range (1:1)")
    assert raw.command(b"h FETCH x:y (FLAGS)") == b"h BAD Illegal syntax: Bad message number b'x:y'"
    assert raw.command(b"i FETCH 1 (NOSUCHITEM)").startswith(
        b"i BAD Illegal syntax: Unknown FETCH item")
    assert raw.command(b"j UID FROB 1") == b"j BAD Illegal syntax: Unknown UID command b'FROB'"
    assert raw.command(b"k STORE 1 FROB (\\Seen)") == (
        b"k BAD Illegal syntax: Unknown STORE item b'FROB'")
    assert raw.command(b"l FETCH 1 (FLAGS)") == b"l OK FETCH completed"
    raw.close()
    _stillServes(server)


def test_longScatteredSets(server: CaptureServer) -> None:
    """
    One FETCH, UID FETCH or UID SEARCH naming many scattered messages (a
    client fetching bodies in one command; repeats and reversed ranges
    among them) answers each named message once, in mailbox order; a bad
    part anywhere in a long set is a BAD quoting it, and the session goes
    on.
    """
    address = inbox()
    for i in range(8):
        send(server, address, b"Subject: scattered %d\r\n\r\nx\r\n" % i)
    raw = _loggedIn(server, address)
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(raw.exchange(b"c FETCH 1:* (UID)")))]
    assert len(uids) == 8
    chosen = [7, 2, 4, 2, 7, 1]
    parts = [b"%d" % n for n in chosen] * 200 + [b"6:5"]
    lines = raw.exchange(b"d FETCH " + b",".join(parts) + b" (UID)")
    assert lines[-1] == b"d OK FETCH completed"
    assert lines[:-1] == [b"* %d FETCH (UID %d)" % (n, uids[n - 1]) for n in (1, 2, 4, 5, 6, 7)]
    uidParts = [b"%d" % uids[n - 1] for n in chosen] * 200 + [b"%d:%d" % (uids[5], uids[4])]
    lines = raw.exchange(b"e UID FETCH " + b",".join(uidParts) + b" (UID)")
    assert lines[-1] == b"e OK FETCH completed"
    assert lines[:-1] == [b"* %d FETCH (UID %d)" % (n, uids[n - 1]) for n in (1, 2, 4, 5, 6, 7)]
    lines = raw.exchange(b"f UID SEARCH UID " + b",".join(uidParts))
    assert lines == [b"* SEARCH " + b" ".join(b"%d" % uids[n - 1] for n in (1, 2, 4, 5, 6, 7)),
                     b"f OK SEARCH completed"]
    assert raw.command(b"g FETCH " + b",".join(parts + [b"0"]) + b" (UID)") == (
        b"g BAD Illegal syntax: Bad message number 0")
    assert raw.command(b"h UID FETCH " + b",".join(uidParts + [b"*:*"]) + b" (UID)") == (
        b"h BAD Illegal syntax: Bad message number b'*:*'")
    assert raw.command(b"i FETCH 1,,2 (UID)") == b"i BAD Illegal syntax: Bad message number b''"
    assert raw.command(b"j FETCH 9,1 (UID)") == (
        b"j BAD Illegal syntax: Message sequence number out of range (1:8)")
    assert raw.command(b"k FETCH 3 (UID)") == b"k OK FETCH completed"
    raw.close()
    _stillServes(server)


def test_refusedChangesAnswerNo(server: CaptureServer) -> None:
    """
    CREATE, DELETE, RENAME, APPEND, COPY and MOVE get a clear NO: folders
    are inboxes.  A LITERAL+ APPEND's octets are skipped, not run.
    """
    address = inbox()
    send(server, address, b"Subject: one\r\n\r\nx\r\n")
    raw = Raw(server)
    assert raw.command(b"a CREATE foo") == b"a " + REFUSED
    assert raw.command(b"b DELETE INBOX") == b"b " + REFUSED
    assert raw.command(b"c RENAME INBOX foo") == b"c " + REFUSED
    assert raw.command(b"d APPEND INBOX {5}") == b"d " + REFUSED
    raw.send(b"e APPEND INBOX {13+}\r\nf LOGOUT\r\nxyz\r\n")
    assert raw.until(b"e")[-1] == b"e " + REFUSED
    assert raw.command(b"g NOOP").startswith(b"g OK")
    raw.command(b"h LOGOUT")
    raw.close()
    raw = Raw(server, login=False)
    raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode())
    raw.command(b"b SELECT INBOX")
    cannot = (b"NO [CANNOT] Each copy belongs to its inbox; it can only be moved to Trash, "
              b"which deletes it")
    assert raw.command(b"c COPY 1 INBOX") == b"c " + cannot
    assert raw.command(b"d MOVE 1 INBOX") == b"d " + cannot
    raw.close()
    _stillServes(server)


def test_deleteByMovingToTrash(server: CaptureServer) -> None:
    """
    Thunderbird deletes by moving to Trash: MOVE (and UID MOVE) to Trash
    deletes the copies (EXPUNGE answered, gone from the API too); COPY to
    Trash changes nothing; Trash itself is always empty.
    """
    address = inbox()
    ids = [send(server, address, b"Subject: trash %d\r\n\r\nx\r\n" % n) + "-0" for n in range(4)]
    client = imaps(server, address)
    client.select("INBOX")
    assert client.copy("1", "Trash")[0] == "OK"
    typ, data = client._simple_command("MOVE", "2", "Trash")  # type: ignore[attr-defined]
    assert typ == "OK"
    assert client.response("EXPUNGE")[1] == [b"2"]
    uid = client.fetch("2", "(UID)")[1][0].split()[-1].rstrip(b")")
    assert client.uid("MOVE", uid.decode(), '"Trash"')[0] == "OK"
    assert client.select("Trash") == ("OK", [b"0"])
    client.logout()
    listed = callJSON(server, "GET", f"/api/addresses/{address}/messages")[1]
    assert [m["_id"] for m in listed] == [ids[3], ids[0]]
    _stillServes(server)


def test_absurdNonSynchronizingAppend(server: CaptureServer) -> None:
    """
    An APPEND announcing an absurd LITERAL+ literal gets BAD [TOOBIG] at
    once and the connection is closed (the octets would follow unasked);
    the server serves the next client.
    """
    raw = Raw(server)
    raw.send(b"a APPEND INBOX {99999999999+}\r\n")
    assert raw.line() == b"a BAD [TOOBIG] Literal too large"
    with pytest.raises(ConnectionError):
        raw.line()
    raw.close()
    _stillServes(server)


def test_literalAndLineLimits(server: CaptureServer) -> None:
    """
    An argument literal over the limit, a negative or absurd size, a
    LITERAL+ literal over the limit and a command line over the limit get
    BAD [TOOBIG] (or BAD) before any octet is buffered; the session goes on.
    """
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN {99999999999}") == (
        b"a BAD [TOOBIG] Literal of 99999999999 octets; the limit is 65536")
    assert raw.command(b"b LOGIN {-5}") == b"b BAD Illegal syntax: Negative literal size"
    assert raw.command(b"c LOGIN {x}") == b"c BAD Illegal syntax: Bad literal size: b'x'"
    raw.send(b"d LOGIN {70000+}\r\n" + b"x" * 70000 + b"\r\n")
    assert raw.line() == b"d BAD [TOOBIG] Literal of 70000 octets; the limit is 65536"
    assert raw.command(b"e NOOP").startswith(b"e OK")
    raw.send(b"f NOOP " + b"x" * 70000 + b"\r\n")
    assert raw.line() == b"* BAD [TOOBIG] Command line too long"
    assert raw.command(b"g NOOP").startswith(b"g OK")
    raw.send(b"f2 NOOP " + b"x" * 70000 + b"\r\ng2 NOOP\r\n")
    assert raw.line() == b"* BAD [TOOBIG] Command line too long"
    assert raw.until(b"g2")[-1] == b"g2 OK NOOP completed"
    raw.send(b"h LOGIN {%d}\r\n" % len(server.account))
    assert raw.line().startswith(b"+")
    raw.send(server.account.encode() + b" " + (server.key or "").encode() + b"\r\n")
    assert raw.until(b"h")[-1].startswith(b"h OK")
    raw.close()
    _stillServes(server)


# Real client sequences


def test_thunderbirdAccountOpenAndSync(server: CaptureServer) -> None:
    """
    The commands Thunderbird sends when it opens an account and syncs a
    folder, pipelined where it pipelines them, all answered.
    """
    account, key, address = _reserve(server)
    send(server, address, MULTIPART)
    send(server, address, ODD)
    raw = Raw(server, login=False)
    assert raw.command(b"1 capability").startswith(b"1 OK")
    raw.send(b"2 authenticate PLAIN\r\n")
    assert raw.line().startswith(b"+ ")
    raw.send(base64.b64encode(f"\0{account}\0{key}".encode()) + b"\r\n")
    assert raw.until(b"2")[-1].startswith(b"2 OK [CAPABILITY")
    assert raw.command(b'3 ID ("name" "Thunderbird" "version" "115.0")').startswith(b"3 OK")
    raw.send(b"4 namespace\r\n5 enable UTF8=ACCEPT\r\n")
    assert raw.until(b"5")[-1].startswith(b"5 OK")
    lines = raw.exchange(b'6 list (SUBSCRIBED) "" "*"')
    assert lines[-1].startswith(b"6 ")
    lines = raw.exchange(b'7 list "" "*"')
    assert any(address.encode() in line for line in lines)
    lines = raw.exchange(b'8 lsub "" "*"')
    assert lines[-1].startswith(b"8 OK")
    folder = b'"Inboxes/' + address.encode() + b'"'
    lines = raw.exchange(b"9 select " + folder)
    assert lines[-1].startswith(b"9 OK [READ-WRITE]")
    assert b"* 2 EXISTS" in lines
    lines = raw.exchange(b"10 getquotaroot " + folder)
    assert lines[-1].startswith(b"10 BAD")
    lines = raw.exchange(b"11 UID fetch 1:* (FLAGS)")
    assert len([x for x in lines if b" FETCH (" in x]) == 2
    raw.send(
        b"12 UID fetch 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc "
        b"Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To "
        b"Content-Type Reply-To)])\r\n"
    )
    lines = raw.until(b"12")
    assert lines[-1] == b"12 OK FETCH completed"
    assert sum(1 for x in lines if b"BODY[HEADER.FIELDS (FROM TO CC BCC SUBJECT DATE" in x) == 2
    uid = lines[0].split(b"UID ")[1].split()[0]
    lines = raw.exchange(b"13 UID fetch " + uid + b" (UID RFC822.SIZE BODY.PEEK[])")
    assert lines[-1] == b"13 OK FETCH completed"
    # A large message comes in chunks; they add up to the message exactly.
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", key)
    _, _, whole = call(server, "GET", f"/api/raw/{address}/{listed[-1]['_id']}", key)
    chunks = []
    for n, start in enumerate(range(0, len(whole) + 200, 200)):
        tag = b"c%d" % n
        raw.send(tag + b" UID fetch " + uid + b" (UID BODY.PEEK[]<%d.200>)\r\n" % start)
        head = raw.line()
        size = int(head.rsplit(b"{", 1)[1][:-1])
        assert head.startswith(b"* 1 FETCH (UID " + uid + b" BODY[]<%d> {" % start)
        while len(raw.buffer) < size:
            raw.buffer += raw.sock.recv(65536)
        chunks.append(raw.buffer[:size])
        raw.buffer = raw.buffer[size:]
        assert raw.until(tag)[-1] == tag + b" OK FETCH completed"
    assert b"".join(chunks) == whole and chunks[-1] == b""

    raw.send(b"14 IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    raw.send(b"DONE\r\n")
    assert raw.until(b"14")[-1] == b"14 OK IDLE terminated"
    assert raw.command(b"15 logout").startswith(b"15 OK")
    raw.close()


def test_curlReadsOverIMAPS(server: CaptureServer) -> None:
    """
    curl lists the folder and fetches a message over imaps:// and over
    imap:// with STARTTLS required.
    """
    address = inbox()
    send(server, address, MULTIPART)
    ca = f"{server.tlsDir}/localhost.pem"
    user = f"{address}:{server.key}"
    listing = subprocess.run(
        ["curl", "-s", "--cacert", ca, "--ssl-reqd", "--user", user,
         f"imap://localhost:{server.ports['imap']}/"],
        capture_output=True, timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert b'"INBOX"' in listing.stdout
    search = subprocess.run(
        ["curl", "-s", "--cacert", ca, "--user", user, "-X", "SEARCH ALL",
         f"imaps://localhost:{server.ports['imaps']}/INBOX"],
        capture_output=True, timeout=60,
    )
    assert search.returncode == 0 and search.stdout.startswith(b"* SEARCH 1"), search
    message = subprocess.run(
        ["curl", "-s", "--cacert", ca, "--user", user,
         f"imaps://localhost:{server.ports['imaps']}/INBOX;MAILINDEX=1"],
        capture_output=True, timeout=60,
    )
    assert message.returncode == 0 and message.stdout.endswith(MULTIPART), message


def test_storeShowsInListing(server: CaptureServer) -> None:
    """
    A STORE of \\Seen (read), -\\Seen (unread) and keywords (labels) shows
    in the API's listing, which stays, byte for byte, the array of the
    single-message answers.
    """
    address = inbox()
    for n in range(3):
        send(server, address, b"Subject: s%d\r\n\r\nx\r\n" % n)
    client = imaps(server, address)
    client.select("INBOX")
    for message, change, flags in [("1", "+FLAGS", "(\\Seen)"), ("2", "+FLAGS", "(work $Later)"),
                                   ("1", "-FLAGS", "(\\Seen)"), ("3", "FLAGS", "(\\Seen other)")]:
        assert client.store(message, change, flags)[0] == "OK"
        assertListingIsEachMessagesJSON(server, address)
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages", server.key)
    assert [(m["subject"], m["labels"]) for m in listed] == [
        ("s2", ["other"]), ("s1", ["work", "$Later"]), ("s0", []),
    ]
    assert (listed[0]["read"], listed[2]["read"]) == (True, False)
    client.logout()
