"""
Live events on a real server with real clients: the wait-for-message route
(urllib, http.client), the Mailsac websocket (the C{websockets} client) and
Server-Sent Events (http.client), all fed by mail sent over SMTP.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.web.server import Site
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from capture.ids import newApiKey
from capture.ingest import prepare
from capture.web.api import BoundedRequest, MailsacAPI
from capture.web.live import Listener, LiveHub
from capture.web.openapi import document
from tests.harness import CaptureServer
from tests.storesuite import envelope, message
from tests.test_api import _FIELDS, call, callJSON, inbox, send
from tests.test_store_sqlite import SQLiteStoreCase as _StoreCase

_EMAIL_FIELDS = _FIELDS | {"text", "html", "body", "raw", "headers"}


class _Wait(threading.Thread):
    """
    One wait request in a thread of its own; C{result} is its status and
    JSON body once it is answered.
    """

    def __init__(self, server: CaptureServer, path: str, key: str | None = None) -> None:
        super().__init__(daemon=True)
        self._server = server
        self._path = path
        self._key = key
        self.result: tuple[int, Any] | None = None

    def run(self) -> None:
        self.result = callJSON(self._server, "GET", self._path, self._key)


def _sendUntilAnswered(wait: _Wait, sendOne: Callable[[int], str]) -> list[str]:
    """
    Send messages (C{sendOne(i)} returns a queue id) until C{wait} is
    answered: the wait has no way to say it is listening, so this proves it
    returns mail sent after the request without guessing how long it takes
    to start.  @return: the queue ids sent.
    """
    sent = []
    for i in range(40):
        sent.append(sendOne(i))
        wait.join(0.5)
        if not wait.is_alive():
            return sent
    raise AssertionError("the wait never returned")


def _newAccount(server: CaptureServer) -> tuple[str, str]:
    name = f"live{secrets.token_hex(4)}"
    created = server.cli("account", "create", name)
    return name, created.stdout.strip().splitlines()[-1]


def _reserveAPI(server: CaptureServer, key: str, address: str) -> None:
    status, _ = callJSON(server, "POST", f"/api/addresses/{address}", key)
    assert status == 200


def _enablews(server: CaptureServer, key: str, address: str, on: bool = True) -> None:
    """
    Reserve C{address} (unless it is the key's already) and switch its
    websocket on or off (D4).
    """
    status, body = callJSON(server, "GET", f"/api/addresses/{address}", key)
    if "owner" not in body:
        # Nobody's yet; an address of the key's domain (implicit) is its
        # already, and D4 gives it a record of its own.
        _reserveAPI(server, key, address)
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.ports['http']}/api/addresses/{address}",
        data=json.dumps({"enablews": on}).encode(), method="PUT",
        headers={"Content-Type": "application/json", "Mailsac-Key": key},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200 and json.loads(response.read())["enablews"] is on


def _addDomain(server: CaptureServer, account: str, domain: str) -> None:
    """
    Give C{account} a private custom domain (the admin command).
    """
    server.cli("domain", "add", account, domain)


def _stillServes(server: CaptureServer) -> None:
    status, body = callJSON(server, "GET", f"/api/addresses/{inbox()}/messages")
    assert (status, body) == (200, [])


# Wait for a message


def test_waitReturnsMailSentAfterIt(server: CaptureServer) -> None:
    """
    A wait without C{since} ignores the mail already there and returns the
    first message sent by SMTP after the request, as Mailsac's
    C{EmailMessage}.
    """
    address = inbox()
    old = send(server, address, b"Subject: before\r\n\r\nold\r\n")
    wait = _Wait(server, f"/api/addresses/{address}/messages/wait?timeout=60")
    wait.start()
    sent = _sendUntilAnswered(
        wait, lambda i: send(server, address, b"Subject: after %d\r\n\r\nnew\r\n" % i)
    )
    assert wait.result is not None
    status, body = wait.result
    assert status == 200 and set(body) == _FIELDS
    assert body["_id"] in [f"{q}-0" for q in sent] and body["_id"] != f"{old}-0"
    assert body["subject"].startswith("after ") and body["inbox"] == address


def test_waitSinceReturnsExistingMessage(server: CaptureServer) -> None:
    """
    With C{since}, a message already received at or after it is returned at
    once (the oldest such), and one before it is not.
    """
    address = inbox()
    first = send(server, address, b"Subject: first\r\n\r\n1\r\n")
    second = send(server, address, b"Subject: second\r\n\r\n2\r\n")
    _, listed = callJSON(server, "GET", f"/api/addresses/{address}/messages")
    received = {m["_id"]: m["received"] for m in listed}
    since = urllib.parse.quote(received[f"{first}-0"])
    status, body = callJSON(
        server, "GET", f"/api/addresses/{address}/messages/wait?timeout=30&since={since}"
    )
    assert status == 200 and body["_id"] == f"{first}-0"
    since = urllib.parse.quote(received[f"{second}-0"])
    status, body = callJSON(
        server, "GET", f"/api/addresses/{address}/messages/wait?timeout=30&since={since}"
    )
    assert status == 200 and body["_id"] == f"{second}-0"
    status, body = callJSON(
        server, "GET", f"/api/addresses/{address}/messages/wait?timeout=1&since=2999-01-01"
    )
    assert status == 408


def test_waitFiltersBySubjectAndSender(server: CaptureServer) -> None:
    """
    C{subject} and C{from} are case-insensitive substrings (of the subject,
    of a From address or name); other mail does not end the wait, whether
    it was there already (C{since}) or arrives while waiting.
    """
    address = inbox()
    send(server, address, b"From: Bob <bob@example.net>\r\nSubject: other\r\n\r\nx\r\n")
    send(server, address, b"From: Eve <eve@example.net>\r\nSubject: Your CODE\r\n\r\nx\r\n")
    wanted = send(server, address, b"From: Bob <bob@example.net>\r\nSubject: Your code\r\n\r\n.\r\n")
    send(server, address, b"From: Bob <bob@example.net>\r\nSubject: code again\r\n\r\nx\r\n")
    path = f"/api/addresses/{address}/messages/wait?timeout=30&since=2000-01-01&subject=your%20code&from=BOB"
    status, body = callJSON(server, "GET", path)
    assert status == 200 and body["_id"] == f"{wanted}-0"
    status, body = callJSON(server, "GET", path.replace("from=BOB", "from=Eve"))
    assert status == 200 and body["from"][0]["name"] == "Eve"

    wait = _Wait(server, f"/api/addresses/{address}/messages/wait?timeout=60&subject=MATCH&from=carol")
    wait.start()

    def sendPair(i: int) -> str:
        send(server, address, b"From: carol@example.net\r\nSubject: no %d\r\n\r\nx\r\n" % i)
        send(server, address, b"From: dave@example.net\r\nSubject: match %d\r\n\r\nx\r\n" % i)
        return send(server, address, b"From: carol@example.net\r\nSubject: a match\r\n\r\nx\r\n")

    sent = _sendUntilAnswered(wait, sendPair)
    assert wait.result is not None
    status, body = wait.result
    assert status == 200 and body["_id"] in [f"{q}-0" for q in sent]
    assert body["subject"] == "a match"


def test_waitTimesOut(server: CaptureServer) -> None:
    """
    No matching mail within C{timeout}: 408 with Mailsac's error body.
    """
    status, body = callJSON(server, "GET", f"/api/addresses/{inbox()}/messages/wait?timeout=1")
    assert status == 408
    assert body == {"message": "No matching message arrived in 1 s.", "error": "Request Timeout"}
    _stillServes(server)


@pytest.mark.parametrize("timeout", ["0", "301", "abc", "-1", "1.5", ""])
def test_waitBadTimeout(server: CaptureServer, timeout: str) -> None:
    """
    A timeout that is not a whole number of seconds from 1 to 300 gets 400
    with C{validationErrors}; a bad C{since} too.
    """
    status, body = callJSON(
        server, "GET", f"/api/addresses/{inbox()}/messages/wait?timeout={timeout}"
    )
    assert status == 400 and body["error"] == "Bad Request"
    assert "timeout" in body["validationErrors"][0]
    status, body = callJSON(server, "GET", f"/api/addresses/{inbox()}/messages/wait?since=soon")
    assert status == 400 and "since" in body["validationErrors"][0]
    _stillServes(server)


def test_waitOnAnotherAccountsInbox(server: CaptureServer) -> None:
    """
    Waiting on another account's owned address is 401 without a key and
    403 with another key, as M1; its owner's wait gets the mail.
    """
    _, ownerKey = _newAccount(server)
    address = inbox()
    _reserveAPI(server, ownerKey, address)
    queueId = send(server, address, b"Subject: secret\r\n\r\nsecret\r\n")
    path = f"/api/addresses/{address}/messages/wait?timeout=5&since=2000-01-01"
    for key, expected in ((None, 401), (server.key, 403)):
        status, _, body = call(server, "GET", path, key)
        assert status == expected and b"secret" not in body
    status, body = callJSON(server, "GET", path, ownerKey)
    assert status == 200 and body["_id"] == f"{queueId}-0"


def test_waitNeverReturnsCopyStarredByAnother(server: CaptureServer) -> None:
    """
    In a public inbox, a copy starred by another account (a capturePrivate
    sender) never satisfies a wait, neither already there nor arriving;
    the starring account's wait gets it.
    """
    sender, senderKey = _newAccount(server)
    server.cli("account", "set", sender, "--capture-private", "on")
    address = inbox()

    def sendPrivate(i: int = 0) -> str:
        client = server.smtp(login=False)
        client.login(sender, senderKey)
        client.sendmail("s@example.com", [address], b"Subject: private %d\r\n\r\nx\r\n" % i)
        client.quit()
        return ""

    sendPrivate()
    path = f"/api/addresses/{address}/messages/wait?timeout=2&since=2000-01-01"
    status, _, body = call(server, "GET", path, server.key)
    assert status == 408 and b"private" not in body
    status, _, body = call(server, "GET", path)
    assert status == 408 and b"private" not in body
    wait = _Wait(server, f"/api/addresses/{address}/messages/wait?timeout=3", server.key)
    wait.start()
    sendPrivate(1)
    wait.join(30)
    assert wait.result is not None and wait.result[0] == 408
    status, body = callJSON(server, "GET", path, senderKey)
    assert status == 200 and body["savedBy"] == sender


def test_waitClientDisconnects(server: CaptureServer) -> None:
    """
    A client that goes away while waiting leaves a server that serves the
    next one, and whose next wait on the same inbox works.
    """
    address = inbox()
    for _ in range(5):
        connection = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
        connection.request("GET", f"/api/addresses/{address}/messages/wait?timeout=300")
        connection.close()
    _stillServes(server)
    wait = _Wait(server, f"/api/addresses/{address}/messages/wait?timeout=60")
    wait.start()
    sent = _sendUntilAnswered(wait, lambda i: send(server, address, b"Subject: s\r\n\r\nx\r\n"))
    assert wait.result is not None and wait.result[1]["_id"] in [f"{q}-0" for q in sent]


# The websocket


def _websocket(server: CaptureServer, query: str) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{server.ports['http']}/incoming-messages?{query}",
                   open_timeout=30)


_FRAME = Draft202012Validator(
    {"$ref": "urn:capture:openapi#/components/schemas/WebSocketFrame"},
    registry=Registry().with_resource(
        "urn:capture:openapi", Resource.from_contents(document(), DRAFT202012)
    ),
)


def _frame(ws: ClientConnection) -> dict[str, Any]:
    """
    The next frame, checked against the API document's C{WebSocketFrame}.
    """
    frame = ws.recv(timeout=30)
    assert isinstance(frame, str)
    parsed = json.loads(frame)
    assert isinstance(parsed, dict)
    _FRAME.validate(parsed)
    return parsed


def _ops(server: CaptureServer) -> int:
    return int(callJSON(server, "GET", "/api/me", server.key)[1]["moAPICount"])


def test_websocketListensAndSendsEmail(server: CaptureServer) -> None:
    """
    The first frame says what is listened to; each new message then comes
    as C{{"status": 200, "email": ...}}: the EmailMessage with text, html,
    body, raw and headers (lower-case names; a list for a repeated one),
    and one op of the key's account.
    """
    address = inbox()
    other = inbox()
    assert server.key is not None
    _enablews(server, server.key, address)
    _enablews(server, server.key, other)
    with _websocket(server, f"key={server.key}&addresses={address},{other.upper()}&_id=x") as ws:
        assert _frame(ws) == {"status": 200, "msg": "Listening", "addresses": [address, other],
                              "domains": []}
        before = _ops(server)
        queueId = send(
            server, address,
            b"From: Ann <ann@example.net>\r\nSubject: hello\r\nX-Tag: one\r\nX-Tag: two\r\n"
            b"Content-Type: multipart/alternative; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
            b"--b\r\nContent-Type: text/html\r\n\r\n<p>html text</p>\r\n--b--\r\n",
        )
        frame = _frame(ws)
        # This /me call, the message sent (an op of its sender, the same
        # account) and the frame.
        assert _ops(server) == before + 3
    assert set(frame) == {"status", "email"} and frame["status"] == 200
    email = frame["email"]
    assert set(email) == _EMAIL_FIELDS
    assert email["_id"] == f"{queueId}-0" and email["subject"] == "hello"
    assert email["text"].strip() == "plain text"
    assert email["html"].strip() == "<p>html text</p>" and email["body"] == email["html"]
    assert email["raw"].startswith("Received: ") and "X-Tag: two" in email["raw"]
    assert email["headers"]["x-tag"] == ["one", "two"]
    assert email["headers"]["subject"] == "hello"
    assert email["from"] == [{"address": "ann@example.net", "name": "Ann"}]


@pytest.mark.parametrize(
    "query, status",
    [
        ("addresses={address}", 401),
        ("key=&addresses={address}", 401),
        ("key={bad}&addresses={address}", 401),
        ("key={key}", 400),
        ("key={key}&addresses=,", 400),
        ("key={key}&addresses=a%20b@example.com", 400),
        ("key={key}&addresses={mine},not@an@address", 400),
        ("key={key}&addresses=under_score.example", 400),
        ("key={key}&addresses={owned}", 403),
        ("key={key}&addresses={address},{owned}", 403),
        ("key={key}&addresses=nobodys-domain.example", 403),
        ("key={key}&addresses={address}", 403),
        ("key={key}&addresses={mine},{address}", 403),
    ],
)
def test_websocketRefusals(server: CaptureServer, query: str, status: int) -> None:
    """
    A missing or bad key (401), no or a malformed address (400), an
    address or domain the key's account may not read, and a public address
    (not routable: reference 9.1) (403) get one error frame and a close; the
    server then serves the next client.
    """
    _, ownerKey = _newAccount(server)
    owned = inbox()
    _reserveAPI(server, ownerKey, owned)
    assert server.key is not None
    mine = inbox()
    _reserveAPI(server, server.key, mine)
    query = query.format(address=inbox(), owned=owned, mine=mine, key=server.key,
                         bad=newApiKey())
    with _websocket(server, query) as ws:
        frame = _frame(ws)
        assert frame["status"] == status and isinstance(frame["msg"], str)
        assert set(frame) == {"status", "msg"}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    _stillServes(server)


def test_websocketPathOverPlainHTTP(server: CaptureServer) -> None:
    """
    A plain HTTP request to the websocket path is told, in JSON, to upgrade.
    """
    status, headers, body = call(server, "GET", f"/incoming-messages?key={server.key}")
    assert status == 426 and headers["upgrade"] == "websocket"
    assert json.loads(body)["error"] == "Upgrade Required"
    _stillServes(server)


def test_websocketDomains(server: CaptureServer) -> None:
    """
    A domain of the key's account may be listened to: with its catch-all's
    C{enablews} on, mail to any address in it comes as email frames;
    another account cannot listen to it.
    """
    account, key = _newAccount(server)
    domain = f"live-{secrets.token_hex(4)}.example"
    _addDomain(server, account, domain)
    _enablews(server, key, f"*@{domain}")
    with _websocket(server, f"key={key}&addresses={domain.upper()}") as ws:
        assert _frame(ws) == {"status": 200, "msg": "Listening", "addresses": [],
                              "domains": [domain]}
        queueId = send(server, f"anyone@{domain}", b"Subject: in domain\r\n\r\nx\r\n")
        frame = _frame(ws)
    assert frame["email"]["_id"] == f"{queueId}-0"
    assert frame["email"]["inbox"] == f"anyone@{domain}"
    with _websocket(server, f"key={server.key}&addresses={domain}") as ws:
        assert _frame(ws)["status"] == 403


def test_websocketSkipsUnreadableCopies(server: CaptureServer) -> None:
    """
    Listening to an address of one's public custom domain (routed by its
    catch-all), a copy starred by another account is not sent; the next
    readable one is.
    """
    sender, senderKey = _newAccount(server)
    server.cli("account", "set", sender, "--capture-private", "on")
    account, key = _newAccount(server)
    domain = f"pub-{secrets.token_hex(4)}.example"
    _addDomain(server, account, domain)
    assert callJSON(server, "PUT", f"/api/domains/{domain}/privacy/false", key)[0] == 200
    _enablews(server, key, f"*@{domain}")
    address = f"someone@{domain}"
    with _websocket(server, f"key={key}&addresses={address}") as ws:
        assert _frame(ws)["msg"] == "Listening"
        client = server.smtp(login=False)
        client.login(sender, senderKey)
        client.sendmail("s@example.com", [address], b"Subject: private\r\n\r\nx\r\n")
        client.quit()
        public = send(server, address, b"Subject: public\r\n\r\nx\r\n")
        assert _frame(ws)["email"]["_id"] == f"{public}-0"


def test_websocketFollowsEnablews(server: CaptureServer) -> None:
    """
    An owned address's mail reaches the websocket only while its
    C{enablews} is on (Mailsac's switch; off by default): mail that came
    while it was off is never sent, later mail is.  Frames come in commit
    order, so the first frame after a skipped message proves it was
    skipped.  Another address on the same socket follows its own switch.
    """
    assert server.key is not None
    address, other = inbox(), inbox()
    _reserveAPI(server, server.key, address)
    _enablews(server, server.key, other)
    with _websocket(server, f"key={server.key}&addresses={address},{other}") as ws:
        assert _frame(ws)["msg"] == "Listening"
        send(server, address, b"Subject: while off\r\n\r\nx\r\n")
        _enablews(server, server.key, address)
        on = send(server, address, b"Subject: while on\r\n\r\nx\r\n")
        assert _frame(ws)["email"]["_id"] == f"{on}-0"
        _enablews(server, server.key, address, on=False)
        send(server, address, b"Subject: off again\r\n\r\nx\r\n")
        elsewhere = send(server, other, b"Subject: other\r\n\r\nx\r\n")
        assert _frame(ws)["email"]["_id"] == f"{elsewhere}-0"
    _stillServes(server)


def test_websocketDomainSwitches(server: CaptureServer) -> None:
    """
    Listening to a domain: an address with no record of its own follows
    the catch-all's C{enablews} (off: nothing); an address with its own
    record follows its own switch, whatever the catch-all says; an address
    another account reserved inside the domain never comes.
    """
    account, key = _newAccount(server)
    _, carolKey = _newAccount(server)
    domain = f"sw-{secrets.token_hex(4)}.example"
    carols = f"carol@{domain}"
    _reserveAPI(server, carolKey, carols)
    _addDomain(server, account, domain)
    _enablews(server, key, f"*@{domain}", on=False)
    _enablews(server, key, f"own@{domain}")
    _enablews(server, key, f"quiet@{domain}", on=False)
    with _websocket(server, f"key={key}&addresses={domain}") as ws:
        assert _frame(ws)["msg"] == "Listening"
        send(server, f"anyone@{domain}", b"Subject: catch-all off\r\n\r\nx\r\n")
        own = send(server, f"own@{domain}", b"Subject: own on\r\n\r\nx\r\n")
        assert _frame(ws)["email"]["_id"] == f"{own}-0"
        _enablews(server, key, f"*@{domain}")
        send(server, carols, b"Subject: carol's\r\n\r\nx\r\n")
        send(server, f"quiet@{domain}", b"Subject: own off\r\n\r\nx\r\n")
        anyone = send(server, f"anyone@{domain}", b"Subject: catch-all on\r\n\r\nx\r\n")
        assert _frame(ws)["email"]["_id"] == f"{anyone}-0"
    _stillServes(server)


def test_liveStreamsTakeEitherSpelling(server: CaptureServer) -> None:
    """
    An internationalized address may be named by its A-label spelling on
    the websocket and the event stream: both listen to the canonical
    (U-label) inbox, and SMTPUTF8 mail to the U-label spelling reaches
    them.
    """
    assert server.key is not None
    label = f"ex\u00e4mple{secrets.token_hex(3)}"
    alabel = "xn--" + label.encode("punycode").decode("ascii")
    address = f"\u00fcser@{label}.test"
    quoted = urllib.parse.quote(address, safe="@")
    _enablews(server, server.key, quoted)
    spelled = urllib.parse.quote(f"\u00dcSER@{alabel.upper()}.test", safe="@")
    with _websocket(server, f"key={server.key}&addresses={spelled}") as ws, \
            _events(server, f"/api/addresses/{spelled}/events?_mailsacKey={server.key}") as sse:
        assert _frame(ws) == {"status": 200, "msg": "Listening", "addresses": [address],
                              "domains": []}
        assert _nextEvent(sse) == [": listening"]
        client = server.smtp()
        client.mail("app@example.com", ["SMTPUTF8"])
        client.rcpt(address)
        code, reply = client.data(b"Subject: idn\r\n\r\nx\r\n")
        client.quit()
        assert code == 250
        queueId = reply.decode().rsplit(" ", 1)[-1]
        assert _frame(ws)["email"]["_id"] == f"{queueId}-0"
        assert _nextMessage(sse)[:2] == ["event: message", f"id: {queueId}-0"]
    _stillServes(server)


# Server-Sent Events


@contextmanager
def _events(server: CaptureServer, path: str,
            headers: dict[str, str] | None = None) -> Iterator[http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        yield connection.getresponse()
    finally:
        connection.close()


def _nextEvent(response: http.client.HTTPResponse) -> list[str]:
    """
    The lines of the next event or comment, up to its blank line.
    """
    lines = []
    while True:
        line = response.readline().decode("utf-8")
        assert line, "the stream ended"
        if line == "\n":
            return lines
        lines.append(line.rstrip("\n"))


@pytest.mark.serverOptions("--sse-heartbeat", "1")
def test_serverSentEvents(freshServer: CaptureServer) -> None:
    """
    An inbox's event stream (key in the query, as EventSource must send
    it) says it listens, sends each new message as C{event: message} with
    the copy id and its EmailMessage JSON, and heartbeat comments; the
    account's unified stream gets mail of its owned addresses.
    """
    server = freshServer
    address = inbox()
    owned = inbox()
    _reserveAPI(server, server.key or "", owned)
    with _events(server, f"/api/addresses/{address}/events?_mailsacKey={server.key}") as one, \
            _events(server, f"/api/inbox/events?_mailsacKey={server.key}") as unified:
        for response in (one, unified):
            assert response.status == 200
            assert response.getheader("content-type") == "text/event-stream; charset=utf-8"
            assert response.getheader("cache-control") == "no-cache"
            assert _nextEvent(response) == [": listening"]
        queueId = send(server, address, b"Subject: streamed\r\n\r\nx\r\n")
        ownedId = send(server, owned, b"Subject: mine\r\n\r\nx\r\n")
        lines = _nextEvent(one)
        while lines == [": heartbeat"]:
            lines = _nextEvent(one)
        assert lines[:2] == ["event: message", f"id: {queueId}-0"]
        data = json.loads(lines[2].removeprefix("data: "))
        assert set(data) == _FIELDS and data["subject"] == "streamed"
        lines = _nextEvent(unified)
        while lines == [": heartbeat"]:
            lines = _nextEvent(unified)
        assert lines[:2] == ["event: message", f"id: {ownedId}-0"]
        assert _nextEvent(one) == [": heartbeat"]
    _stillServes(server)


def _nextMessage(response: http.client.HTTPResponse) -> list[str]:
    """
    The next C{event: message}, past at most two comments (heartbeats
    come every 15 s: a message that never comes fails the test).
    """
    for _ in range(3):
        lines = _nextEvent(response)
        if not lines[0].startswith(":"):
            return lines
    raise AssertionError("no message came")


def test_serverSentEventsReplayAfterReconnect(server: CaptureServer) -> None:
    """
    A client that comes back with C{Last-Event-ID} first gets what came
    while it was away, oldest first and once each, then new mail; an id of
    another inbox or an unknown one replays nothing.
    """
    address = inbox()
    path = f"/api/addresses/{address}/events"
    with _events(server, path) as stream:
        assert _nextEvent(stream) == [": listening"]
        first = send(server, address, b"Subject: seen\r\n\r\nx\r\n") + "-0"
        assert _nextMessage(stream)[1] == f"id: {first}"
    missed = [send(server, address, b"Subject: missed %d\r\n\r\nx\r\n" % n) + "-0"
              for n in range(3)]
    with _events(server, path, {"Last-Event-ID": first}) as stream:
        assert _nextEvent(stream) == [": listening"]
        assert [_nextMessage(stream)[1] for _ in missed] == [f"id: {m}" for m in missed]
        new = send(server, address, b"Subject: new\r\n\r\nx\r\n") + "-0"
        assert _nextMessage(stream)[1] == f"id: {new}"
    other = send(server, inbox(), b"Subject: elsewhere\r\n\r\nx\r\n") + "-0"
    latest = new
    for lastId in (other, "nonsense", "latest"):
        with _events(server, path, {"Last-Event-ID": latest if lastId == "latest" else lastId}
                     ) as stream:
            assert _nextEvent(stream) == [": listening"]
            latest = send(server, address, b"Subject: later\r\n\r\nx\r\n") + "-0"
            assert _nextMessage(stream)[1] == f"id: {latest}"
    _stillServes(server)


def _removedEvent(copyId: str) -> list[str]:
    return ["event: removed", "data: " + json.dumps({"_id": copyId}, separators=(",", ":"))]


def test_serverSentEventsRemoved(server: CaptureServer) -> None:
    """
    A deleted copy (one message, or a purge) is C{event: removed} with its
    C{_id} and no C{id:} line, on the streams that could list it: its
    inbox's and its owner's unified one; never on another inbox's stream
    or another account's unified stream, which get their own next event
    instead (events of one stream keep the store's order, so a removal sent
    to the wrong stream would have come first).
    """
    _, key = _newAccount(server)
    owned, theirs = inbox(), inbox()
    _reserveAPI(server, key, owned)
    _reserveAPI(server, server.key or "", theirs)
    public, other = inbox(), inbox()
    with _events(server, f"/api/addresses/{public}/events") as one, \
            _events(server, f"/api/addresses/{other}/events") as two, \
            _events(server, f"/api/inbox/events?_mailsacKey={key}") as mine, \
            _events(server, f"/api/inbox/events?_mailsacKey={server.key}") as notMine:
        for stream in (one, two, mine, notMine):
            assert _nextEvent(stream) == [": listening"]
        a = send(server, public, b"Subject: a\r\n\r\nx\r\n") + "-0"
        b = send(server, other, b"Subject: b\r\n\r\nx\r\n") + "-0"
        c = send(server, owned, b"Subject: c\r\n\r\nx\r\n") + "-0"
        assert _nextMessage(one)[1] == f"id: {a}"
        assert _nextMessage(two)[1] == f"id: {b}"
        assert _nextMessage(mine)[1] == f"id: {c}"
        status, _ = callJSON(server, "DELETE", f"/api/addresses/{public}/messages/{a}", server.key)
        assert status == 200
        assert _nextMessage(one) == _removedEvent(a)
        status, _, _ = call(server, "DELETE", f"/api/addresses/{owned}/messages", key)
        assert status == 204
        assert _nextMessage(mine) == _removedEvent(c)
        status, _ = callJSON(server, "DELETE", f"/api/addresses/{other}/messages/{b}", server.key)
        assert status == 200
        assert _nextMessage(two) == _removedEvent(b)
        d = send(server, theirs, b"Subject: d\r\n\r\nx\r\n") + "-0"
        assert _nextMessage(notMine)[:2] == ["event: message", f"id: {d}"]
    _stillServes(server)


def test_serverSentEventsRefused(server: CaptureServer) -> None:
    """
    Another account's inbox: JSON 401 without a key, 403 with another key,
    as M1; the unified stream needs a key; a bad key is 401.
    """
    _, ownerKey = _newAccount(server)
    owned = inbox()
    _reserveAPI(server, ownerKey, owned)
    for key, expected in ((None, 401), (server.key, 403)):
        status, body = callJSON(server, "GET", f"/api/addresses/{owned}/events", key)
        assert status == expected and set(body) >= {"message", "error"}
    assert callJSON(server, "GET", "/api/inbox/events")[0] == 401
    assert callJSON(server, "GET", f"/api/inbox/events?_mailsacKey={newApiKey()}")[0] == 401
    _stillServes(server)


# Clean-up, seen from inside: the API in this process on a real store


class _RawClient(Protocol):
    def __init__(self, request: bytes) -> None:
        self._request = request
        self.received = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class LiveCleanupTests(_StoreCase):
    """
    Clients that go away take their listeners with them: the hub ends with
    none, and lets go of the store's new-message event.
    """

    def setUp(self) -> None:
        super().setUp()
        self.api = MailsacAPI(self.store, events=self.events)
        site = Site(self.api.app.resource(), requestFactory=BoundedRequest)
        self.listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.listening.stopListening)

    async def _until(self, condition: Callable[[], bool]) -> None:
        for _ in range(1000):
            if condition():
                return
            await deferLater(reactor, 0.01, lambda: None)
        raise AssertionError("condition never held")

    async def _connectAndLeave(self, path: str) -> bytes:
        port = self.listening.getHost().port
        client = _RawClient(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await connectProtocol(endpoint, client)
        await self._until(lambda: self.api._live.listeners() == 1)
        assert client.transport is not None
        client.transport.loseConnection()
        await self._until(lambda: self.api._live.listeners() == 0)
        return client.received

    async def test_waitLeavesNoListener(self) -> None:
        """
        A wait whose client disconnects is removed at once, not at its
        timeout; new mail then reaches nobody, without error.
        """
        await self._connectAndLeave("/api/addresses/a@example.com/messages/wait?timeout=300")
        self.assertIsNone(self.api._live._unsubscribe)
        await self.store.addMessage(prepare(envelope("a@example.com"), message()))

    async def test_eventStreamLeavesNoListener(self) -> None:
        """
        An event stream whose client disconnects stops its listener and its
        heartbeat (trial fails a test that leaves a timer behind).
        """
        received = await self._connectAndLeave("/api/addresses/a@example.com/events")
        self.assertIn(b"text/event-stream", received)
        self.assertIsNone(self.api._live._unsubscribe)

    async def test_slowWebsocketClientDropped(self) -> None:
        """
        A websocket client that stops reading is dropped once what waits
        for it passes the backlog limit, instead of being buffered without
        bound.
        """
        account, key = await self.store.createAccount("slow")
        await self.store.reserveAddress(account.name, "s@example.com")
        await self.store.updateAddress(account.name, "s@example.com", {"enablews": True})
        self.api._incoming.maxBacklog = 64 * 1024
        port = self.listening.getHost().port
        client = _RawClient(
            b"GET /incoming-messages?key=" + key.encode() + b"&addresses=s@example.com "
            b"HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        await self._until(lambda: b"Listening" in client.received)
        assert client.transport is not None
        client.transport.pauseProducing()  # type: ignore[attr-defined]
        body = (b"y" * 76 + b"\r\n") * 4000
        for _ in range(200):
            await self.store.addMessage(prepare(envelope("s@example.com"), message(body=body)))
            if self.api._live.listeners() == 0:
                break
        self.assertEqual(self.api._live.listeners(), 0)
        client.transport.loseConnection()


class LiveHubTests(_StoreCase):
    """
    The hub on a real store, without HTTP.
    """

    async def test_bodiesReadOncePerMessage(self) -> None:
        """
        However many full listeners (websockets) a message has, across its
        copies, its bodies and raw bytes are read once, and every listener
        of one copy gets the same frame.
        """
        reads: list[str] = []
        getBodies, getRaw = self.store.getBodies, self.store.getRaw

        def countBodies(copy: Any) -> Any:
            reads.append("bodies")
            return getBodies(copy)

        def countRaw(copy: Any) -> Any:
            reads.append("raw")
            return getRaw(copy)

        self.store.getBodies = countBodies  # type: ignore[method-assign]
        self.store.getRaw = countRaw  # type: ignore[method-assign]
        await self.store.createAccount("a")
        await self.store.addDomain("a", "d.example")
        await self.store.reserveAddress("a", "*@d.example")
        await self.store.updateAddress("a", "*@d.example", {"enablews": True})
        hub = LiveHub(self.store, self.events)
        frames: list[tuple[str, bytes | None]] = []
        stops = [
            hub.listen(Listener("a", lambda c, f: frames.append((c.inbox, f)), full=True),
                       inboxes, domains)
            for inboxes, domains in ((["x@d.example"], []), (["x@d.example"], []),
                                     ([], ["d.example"]))
        ]
        await self.store.addMessage(prepare(envelope("x@d.example", "y@d.example"), message()))
        for _ in range(500):
            if len(frames) == 4:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(sorted(reads), ["bodies", "raw"])
        self.assertEqual(sorted(inbox for inbox, _ in frames), ["x@d.example"] * 3 + ["y@d.example"])
        xFrames = {f for inbox, f in frames if inbox == "x@d.example"}
        self.assertEqual(len(xFrames), 1)
        email = json.loads(xFrames.pop() or b"")["email"]
        self.assertEqual(email["headers"]["subject"], "hello")
        for stop in stops:
            stop()
            stop()
        self.assertEqual(hub.listeners(), 0)

    async def test_removalsOnlyToListenersWhoCouldListThem(self) -> None:
        """
        A deleted copy is told to the listeners that could have listed it:
        its inbox's listeners, but a copy starred by C{b} only to C{b}'s
        (as a listing hides it from others), and the unified inbox of the
        account that starred it; not to another inbox's listener, another
        account's unified inbox, or a listener that asked only for new mail.
        """
        await self.store.createAccount("a")
        await self.store.createAccount("b")
        hub = LiveHub(self.store, self.events)
        heard: dict[str, list[str]] = {
            name: [] for name in ("anonymous", "b", "b-unified", "a-unified", "other")
        }

        def listener(name: str, viewer: str | None, unified: bool = False) -> Listener:
            return Listener(viewer, lambda c, f: None, unified=unified,
                            removed=lambda gone: heard[name].append(gone.id))

        stops = [
            hub.listen(listener("anonymous", None), ["x@d.example"]),
            hub.listen(listener("b", "b"), ["x@d.example"]),
            hub.listen(listener("b-unified", "b", unified=True)),
            hub.listen(listener("a-unified", "a", unified=True)),
            hub.listen(listener("other", None), ["y@d.example"]),
            hub.listen(Listener(None, lambda c, f: None), ["x@d.example"]),
        ]
        [plain] = await self.add("x@d.example")
        [starred] = await self.add("x@d.example")
        starred = await self.store.setStarred(starred, "b")
        await self.store.deleteCopy(plain)
        await self.store.deleteCopies([starred.uid])
        # Batches are delivered in order: once this last one is heard, the
        # two before it have been delivered to everyone.
        [last] = await self.add("y@d.example")
        await self.store.purgeInbox("y@d.example")
        for _ in range(500):
            if heard["other"]:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(heard, {
            "anonymous": [plain.id], "b": [plain.id, starred.id], "b-unified": [starred.id],
            "a-unified": [], "other": [last.id],
        })
        for stop in stops:
            stop()
        self.assertEqual(hub.listeners(), 0)
