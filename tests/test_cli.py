"""
The C{capture} admin command, run as a real process against the data of a
running server: what it changes takes effect on the server at once.
"""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.harness import CaptureServer

_KEY = re.compile(r"k_[0-9a-z]{24}")
_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
_RECEIVED = re.compile(rb"Received: [^\r\n]*\r\n(?:\t[^\r\n]*\r\n)*")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def cli(server: CaptureServer, *args: str) -> subprocess.CompletedProcess[str]:
    return server.cli(*args, check=False)


def createdKey(result: subprocess.CompletedProcess[str]) -> str:
    """
    The key a create command printed on its last line, checked.
    """
    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    assert _KEY.fullmatch(key), result.stdout
    return key


def assertOneError(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    """
    The command failed with status 1, printing one line on stderr and
    nothing on stdout.
    """
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("capture: ")
    assert fragment in lines[0]


def login(server: CaptureServer, name: str, key: str) -> smtplib.SMTP:
    client = server.smtp(login=False)
    client.login(name, key)
    return client


def assertLoginRefused(server: CaptureServer, name: str, key: str) -> None:
    client = server.smtp(login=False)
    with pytest.raises(smtplib.SMTPAuthenticationError) as raised:
        client.login(name, key)
    client.quit()
    assert raised.value.smtp_code == 535


def send(client: smtplib.SMTP, to: str, message: bytes, sender: str = "sender@example.com") -> None:
    client.sendmail(sender, [to], message)


def inboxLines(server: CaptureServer, address: str, *extra: str) -> list[list[str]]:
    """
    The tab-separated fields of each message line of C{capture inbox},
    after checking the last line is the count.
    """
    result = cli(server, "inbox", address, *extra)
    assert result.returncode == 0, result.stderr
    *lines, last = result.stdout.splitlines()
    assert re.fullmatch(r"\d+ messages", last), last
    return [line.split("\t") for line in lines]


def countLine(server: CaptureServer, address: str, *extra: str) -> str:
    return cli(server, "inbox", address, *extra).stdout.splitlines()[-1]


# Accounts and keys, against a running server


def test_accountCreateLogsInWithoutRestart(freshServer: CaptureServer) -> None:
    """
    C{account create} prints the new key alone as the last line, and that
    key logs in over SMTP to the server that was already running.
    """
    result = cli(freshServer, "account", "create", "bob")
    key = createdKey(result)
    client = login(freshServer, "bob", key)
    send(client, "someone@example.com", b"Subject: hi\r\n\r\nhello\r\n")
    client.quit()


def test_accountCreateExisting(freshServer: CaptureServer) -> None:
    """
    Creating an account that exists is one error line, and the existing
    account keeps its key.
    """
    assertOneError(cli(freshServer, "account", "create", "admin"), "exists already")
    assert freshServer.key is not None
    login(freshServer, "admin", freshServer.key).quit()


def test_keyCreate(freshServer: CaptureServer) -> None:
    """
    C{key create} prints a new key as the last line; it logs in at once, and
    the account's first key still does.
    """
    first = createdKey(cli(freshServer, "account", "create", "carol"))
    second = createdKey(cli(freshServer, "key", "create", "carol", "--label", "ci"))
    assert second != first
    login(freshServer, "carol", second).quit()
    login(freshServer, "carol", first).quit()


def test_keyRevokeRefusesLoginAtOnce(freshServer: CaptureServer) -> None:
    """
    After C{key revoke NAME PREFIX} the running server answers 535 to that
    key, without a restart; the account's other key still logs in.
    """
    first = createdKey(cli(freshServer, "account", "create", "dave"))
    second = createdKey(cli(freshServer, "key", "create", "dave"))
    login(freshServer, "dave", first).quit()
    result = cli(freshServer, "key", "revoke", "dave", first[:8])
    assert result.returncode == 0, result.stderr
    assert first[:8] in result.stdout
    assertLoginRefused(freshServer, "dave", first)
    login(freshServer, "dave", second).quit()


def test_keyRevokeWholeKey(freshServer: CaptureServer) -> None:
    """
    The whole key works as its own prefix.
    """
    key = createdKey(cli(freshServer, "key", "create", "admin"))
    assert cli(freshServer, "key", "revoke", "admin", key).returncode == 0
    assertLoginRefused(freshServer, "admin", key)


def test_keyRevokeAmbiguousOrUnknownPrefix(freshServer: CaptureServer) -> None:
    """
    A prefix that several live keys share, or that none has, is one error
    line and revokes nothing.
    """
    first = createdKey(cli(freshServer, "account", "create", "erin"))
    second = createdKey(cli(freshServer, "key", "create", "erin"))
    assertOneError(cli(freshServer, "key", "revoke", "erin", "k_"), "2 keys")
    assertOneError(cli(freshServer, "key", "revoke", "erin", "k_zzzzzz"), "no live key")
    assertOneError(cli(freshServer, "key", "revoke", "nobody", "k_"), "no account 'nobody'")
    login(freshServer, "erin", first).quit()
    login(freshServer, "erin", second).quit()


def test_keyList(freshServer: CaptureServer) -> None:
    """
    C{key list} shows each key's prefix (never the key), label, creation
    time and whether it is revoked.
    """
    first = createdKey(cli(freshServer, "account", "create", "frank"))
    second = createdKey(cli(freshServer, "key", "create", "frank", "--label", "build bot"))
    cli(freshServer, "key", "revoke", "frank", first[:8])
    result = cli(freshServer, "key", "list", "frank")
    assert result.returncode == 0, result.stderr
    assert first not in result.stdout and second not in result.stdout
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(lines) == 2
    byPrefix = {fields[0]: fields for fields in lines}
    assert byPrefix[first[:8]][1] == "label="
    assert re.fullmatch(f"revoked={_ISO}", byPrefix[first[:8]][3])
    assert byPrefix[second[:8]][1:4:2] == ["label=build bot", "live"]
    assert re.fullmatch(f"created={_ISO}", byPrefix[second[:8]][2])


def test_accountList(freshServer: CaptureServer) -> None:
    """
    C{account list} has one line per account, by name: creation time in
    UTC, capture-private on or off, how many live keys.
    """
    key = createdKey(cli(freshServer, "account", "create", "gina"))
    cli(freshServer, "key", "create", "gina")
    cli(freshServer, "key", "revoke", "gina", key[:8])
    cli(freshServer, "account", "set", "gina", "--capture-private", "on")
    result = cli(freshServer, "account", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["admin", "gina"]
    assert re.fullmatch(
        f"admin\tcreated={_ISO}\tcapture-private=off\tkeys=1\tmessage-limit=default", lines[0]
    )
    assert re.fullmatch(
        f"gina\tcreated={_ISO}\tcapture-private=on\tkeys=1\tmessage-limit=default", lines[1]
    )


def test_accountSet(freshServer: CaptureServer) -> None:
    """
    C{account set} changes the settings it is given, leaves the others, and
    prints the result; an unknown account is one error line.
    """
    result = cli(freshServer, "account", "set", "admin", "--message-limit", "20")
    assert result.stdout == "admin: capture-private off, message limit 20\n"
    result = cli(freshServer, "account", "set", "admin", "--capture-private", "ON")
    assert result.stdout == "admin: capture-private on, message limit 20\n"
    assertOneError(
        cli(freshServer, "account", "set", "nobody", "--capture-private", "on"),
        "no account 'nobody'",
    )


def test_accountDelete(freshServer: CaptureServer) -> None:
    """
    C{account delete NAME} deletes the account at once (no confirmation,
    like every command here) and says what went: its keys stop working
    (SMTP 535, API 401, its web session ends), its owned address and
    domain are released (reservable by another account) and the mail in
    them is deleted; a public copy it starred stays, unstarred; mail it
    sent stays with its recipient; an account made later with the name
    starts empty.  An unknown account is one error line.
    """
    from tests.test_api import call, callJSON
    from tests.webclient import WebClient

    key = createdKey(cli(freshServer, "account", "create", "ivy"))
    owned, domain, public = "ivy-own@example.com", "ivy-corp.test", "ivy-pub@example.com"
    assert call(freshServer, "POST", f"/api/addresses/{owned}", key)[0] == 200
    assert call(freshServer, "POST", f"/api/domains/{domain}", key)[0] == 200
    client = login(freshServer, "ivy", key)
    send(client, owned, b"Subject: owned\r\n\r\nx\r\n")
    send(client, f"anyone@{domain}", b"Subject: in domain\r\n\r\nx\r\n")
    send(client, public, b"Subject: sent by ivy\r\n\r\nx\r\n")
    client.quit()
    (copy,) = callJSON(freshServer, "GET", f"/api/addresses/{public}/messages")[1]
    assert call(freshServer, "PUT", f"/api/addresses/{public}/messages/{copy['_id']}/star",
                key)[0] == 200
    browser = WebClient(freshServer)
    browser.signIn(key)
    result = cli(freshServer, "account", "delete", "ivy")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("Deleted account ivy: 1 API keys, 1 addresses and 1 domains "
                             "released, 2 messages deleted, 1 stars dropped.\n")
    assertLoginRefused(freshServer, "ivy", key)
    assert call(freshServer, "GET", "/api/me", key)[0] == 401
    assert browser.get("/account")[0] == 401
    status, listed = callJSON(freshServer, "GET", f"/api/addresses/{public}/messages")
    assert status == 200 and [(m["_id"], m["savedBy"]) for m in listed] == [(copy["_id"], None)]
    assert freshServer.key is not None
    for inbox in (owned, f"anyone@{domain}"):
        assert callJSON(freshServer, "GET", f"/api/addresses/{inbox}/messages")[1] == []
    assert call(freshServer, "POST", f"/api/addresses/{owned}", freshServer.key)[0] == 200
    assert call(freshServer, "POST", f"/api/domains/{domain}", freshServer.key)[0] == 200
    again = createdKey(cli(freshServer, "account", "create", "ivy"))
    status, body = callJSON(freshServer, "GET", "/api/inbox", again)
    assert status == 200 and body["messages"] == []
    assertOneError(cli(freshServer, "account", "delete", "nobody"), "no account 'nobody'")


def test_capturePrivateStarsAtOnce(freshServer: CaptureServer) -> None:
    """
    After C{account set NAME --capture-private on}, the running server stars
    what NAME sends next (C{starred=NAME} in C{capture inbox}); mail sent
    before, and by other accounts, is not starred.
    """
    key = createdKey(cli(freshServer, "account", "create", "hank"))
    assert freshServer.key is not None
    client = login(freshServer, "hank", key)
    send(client, "Shared@Example.com", b"Subject: before\r\n\r\n1\r\n")
    result = cli(freshServer, "account", "set", "hank", "--capture-private", "on")
    assert result.returncode == 0, result.stderr
    send(client, "shared@example.com", b"Subject: after\r\n\r\n2\r\n")
    client.quit()
    other = login(freshServer, "admin", freshServer.key)
    send(other, "shared@example.com", b"Subject: admin\r\n\r\n3\r\n")
    other.quit()
    lines = inboxLines(freshServer, "shared@example.com")
    assert [(f[3], f[5:]) for f in lines] == [
        ("admin", []),
        ("after", ["starred=hank"]),
        ("before", []),
    ]


# Stored mail (the shared server; each test has inboxes of its own)


def test_inboxNewestFirst(server: CaptureServer) -> None:
    """
    C{capture inbox} lists the copies newest first: Mailsac id, received
    time (UTC, milliseconds), first From address, subject, size; then the
    count.  The address is matched case-insensitively.
    """
    address = unique("list") + "@example.com"
    client = server.smtp()
    sent = []
    for n in range(3):
        message = (
            f"From: Writer {n} <w{n}@example.net>, other@example.net\r\n"
            f"Subject: number {n}\r\n\r\nbody {n}\r\n"
        ).encode()
        send(client, address, message)
        sent.append(message)
    client.quit()
    lines = inboxLines(server, address.upper())
    assert [f[3] for f in lines] == ["number 2", "number 1", "number 0"]
    assert [f[2] for f in lines] == ["w2@example.net", "w1@example.net", "w0@example.net"]
    for fields in lines:
        assert len(fields) == 5
        assert re.fullmatch(r"[0-9A-Za-z]+-0", fields[0])
        assert re.fullmatch(_ISO, fields[1])
    assert [f[1] for f in lines] == sorted((f[1] for f in lines), reverse=True)
    # The size is the stored size: Capture's Received: line plus what was sent.
    raw = subprocess.run(
        [sys.executable, "-m", "capture.cli", "--data", server.data, "show", lines[0][0]],
        capture_output=True, check=True,
    ).stdout
    assert raw.endswith(sent[2])
    assert int(lines[0][4]) == len(raw)
    assert countLine(server, address) == "3 messages"


def test_inboxLimit(server: CaptureServer) -> None:
    """
    C{--limit N} shows the N newest copies; the last line still counts all.
    """
    address = unique("limit") + "@example.com"
    client = server.smtp()
    for n in range(4):
        send(client, address, f"Subject: m{n}\r\n\r\nx\r\n".encode())
    client.quit()
    lines = inboxLines(server, address, "--limit", "2")
    assert [f[3] for f in lines] == ["m3", "m2"]
    assert countLine(server, address, "--limit", "2") == "4 messages"


def test_inboxEmpty(server: CaptureServer) -> None:
    """
    An inbox that never got mail is no error: just C{0 messages}.
    """
    result = cli(server, "inbox", unique("empty") + "@example.com")
    assert (result.returncode, result.stdout) == (0, "0 messages\n")


def test_inboxCountsPlusAddressedCopies(server: CaptureServer) -> None:
    """
    Mail to C{box+tag@...} is filed in C{box@...}, and listed there.
    """
    local = unique("plus")
    client = server.smtp()
    send(client, f"{local}+tag@example.com", b"Subject: tagged\r\n\r\nx\r\n")
    client.quit()
    assert [f[3] for f in inboxLines(server, f"{local}@example.com")] == ["tagged"]
    # Asked for by the plus-address it was sent to, the inbox is the same.
    assert [f[3] for f in inboxLines(server, f"{local}+other@example.com")] == ["tagged"]


def test_showExactBytes(server: CaptureServer) -> None:
    """
    C{capture show ID} writes the stored message exactly: Capture's
    C{Received:} header, then the bytes the client sent, byte for byte
    (8-bit text, a dot-stuffed line, a header-less start of the body).
    """
    address = unique("show") + "@example.com"
    message = (
        b"From: a@example.net\r\nSubject: exact\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b"caf\xc3\xa9\r\n.leading dot\r\n..two dots\r\n \ttrailing space \r\n"
    )
    client = server.smtp()
    send(client, address, message)
    client.quit()
    [fields] = inboxLines(server, address)
    result = subprocess.run(
        [sys.executable, "-m", "capture.cli", "--data", server.data, "show", fields[0]],
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr
    raw = result.stdout
    received = _RECEIVED.match(raw)
    assert received is not None, raw[:200]
    assert raw[received.end():] == message


# Errors and usage


def test_errorsAreOneLine(server: CaptureServer) -> None:
    """
    An unknown account, an address that is not one and an unknown message
    id are each one line on stderr and exit status 1, never a traceback.
    """
    assertOneError(cli(server, "key", "create", "nobody"), "no account 'nobody'")
    assertOneError(cli(server, "key", "list", "nobody"), "no account 'nobody'")
    assertOneError(cli(server, "inbox", "not-an-address"), "not an email address")
    assertOneError(cli(server, "inbox", "two@at@example.com"), "not an email address")
    assertOneError(cli(server, "show", "AAAAAAAAAAAAAAAAAAAAAAAA-0"), "no message")
    assertOneError(cli(server, "show", "not an id"), "no message")


def test_usageErrors(tmp_path: Path) -> None:
    """
    Bad usage is argparse's: a usage message and exit status 2.
    """
    offline = CaptureServer(directory=str(tmp_path))
    for args in [
        (),
        ("account",),
        ("account", "set", "bob"),
        ("account", "set", "bob", "--capture-private", "maybe"),
        ("account", "create", "with space"),
        ("inbox", "a@example.com", "--limit", "0"),
        ("key", "revoke", "bob"),
    ]:
        result = cli(offline, *args)
        assert result.returncode == 2, args
        assert "usage:" in result.stderr
        assert "Traceback" not in result.stderr


def test_missingDataDirectory(tmp_path: Path) -> None:
    """
    Every command but C{account create} refuses a data directory with no
    store in it, saying so, instead of creating an empty store.
    """
    offline = CaptureServer(directory=str(tmp_path))
    for args in [("account", "list"), ("inbox", "a@example.com"), ("key", "list", "bob")]:
        assertOneError(cli(offline, *args), "no Capture data in")
    assert not os.path.exists(offline.data)


def test_consoleScript(tmp_path: Path) -> None:
    """
    The installed C{capture} script takes its data directory from
    C{CAPTURE_DATA}; C{account create} makes a new store there, and a server
    started on it later accepts the key.
    """
    data = os.path.join(str(tmp_path), "data")
    script = os.path.join(os.path.dirname(sys.executable), "capture")
    env = {**os.environ, "CAPTURE_DATA": data}
    created = subprocess.run(
        [script, "account", "create", "ivy"], capture_output=True, text=True, env=env
    )
    key = createdKey(created)
    assert "new Capture store" in created.stderr
    listed = subprocess.run([script, "account", "list"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["ivy"]
    running = CaptureServer(directory=str(tmp_path)).start()
    try:
        login(running, "ivy", key).quit()
    finally:
        running.stop()


def test_domainAddListRemove(server: CaptureServer) -> None:
    """
    C{domain add} makes a domain the account's at once (its inboxes close
    to other readers over HTTP), C{domain list} shows it, C{domain remove}
    gives it up; bad names, another account's domain and unknown accounts
    are one-line errors.
    """
    name = unique("dom")
    createdKey(cli(server, "account", "create", name))
    domain = f"{unique('cli')}.example"
    added = cli(server, "domain", "add", name, domain.upper())
    assert (added.returncode, added.stdout) == (0, f"{domain} is now a private domain of {name}.\n")
    assert re.fullmatch(rf"{domain}\tprivate\tcreated={_ISO}\n",
                        cli(server, "domain", "list", name).stdout)
    url = f"http://127.0.0.1:{server.ports['http']}/api/addresses/x@{domain}/messages"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code == 401
    assertOneError(cli(server, "domain", "add", "admin", domain), "owned already")
    assertOneError(cli(server, "domain", "add", name, "not_a_domain"), "not a domain name")
    assertOneError(cli(server, "domain", "add", unique("nobody"), f"{unique('x')}.example"),
                   "nobody")
    removed = cli(server, "domain", "remove", name, domain)
    assert (removed.returncode, removed.stdout) == (0, f"{domain} is no longer a domain of {name}.\n")
    assert cli(server, "domain", "list", name).stdout == ""
    assertOneError(cli(server, "domain", "remove", name, domain), "does not own")
    public = f"{unique('pub')}.example"
    added = cli(server, "domain", "add", name, public, "--public")
    assert added.stdout == f"{public} is now a public domain of {name}.\n"
