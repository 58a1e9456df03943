"""
The inbox page (C{/inbox/<address>}) and its purge form on a real server,
with a cookie-keeping HTTP client: what the list shows, paging, search,
who may see it, and the answers to bad input.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import urllib.parse
from email.message import EmailMessage

import pytest

from tests.harness import CaptureServer
from tests.webclient import WebClient, mainContent

_ROW_LINK = re.compile(rb'<a href="(/inbox/[^"/]+/([^"/]+))" class="open"')
_OLDER = re.compile(rb'<a href="([^"]+)" rel="next">Older</a>')
_SUBJECT = re.compile(rb'<span class="subject">(?:<span class="visually-hidden">unread, </span>)?'
                      rb'([^<]*)</span>')


def address(prefix: str = "page") -> str:
    return f"{prefix}-{secrets.token_hex(6)}@example.com"


def send(server: CaptureServer, to: str, *messages: EmailMessage) -> None:
    """
    Send each message to C{to} over one SMTP session.
    """
    client = server.smtp()
    for message in messages:
        client.send_message(message, from_addr="sender@example.com", to_addrs=[to])
    client.quit()


def mail(subject: str, body: str = "Hello.\n", sender: str = "Shop <shop@example.com>",
         attachment: bool = False) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "someone@example.com"
    if subject:
        message["Subject"] = subject
    message.set_content(body)
    if attachment:
        message.add_attachment(b"report", maintype="text", subtype="plain",
                               filename="report.txt")
    return message


def apiIds(server: CaptureServer, inbox: str, key: str | None = None) -> list[str]:
    client = WebClient(server)
    status, _, body = client.request(
        "GET", f"/api/addresses/{inbox}/messages?limit=1000",
        headers={"Mailsac-Key": key} if key else {},
    )
    assert status == 200, body
    return [m["_id"] for m in json.loads(body)]


def subjects(body: bytes) -> list[str]:
    return [html.unescape(s.decode()) for s in _SUBJECT.findall(body)]


def createAccount(server: CaptureServer, prefix: str) -> tuple[str, str]:
    name = f"{prefix}{secrets.token_hex(4)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    return name, key


def reserve(server: CaptureServer, inbox: str, key: str) -> None:
    status, _, body = WebClient(server).request(
        "POST", f"/api/addresses/{inbox}", headers={"Mailsac-Key": key}
    )
    assert status == 200, body


def stillServes(server: CaptureServer) -> None:
    """
    The next client is answered as usual.
    """
    status, _, body = WebClient(server).get("/")
    assert status == 200 and b"Check the mail!" in body


def test_listShowsTheInboxNewestFirst(server: CaptureServer) -> None:
    """
    The page lists the inbox newest first: sender name, subject (or "(no
    subject)"), a machine-readable time, size, an attachment mark with a
    label, the unread state for screen readers; each row links to the
    message page by its API id; the count is shown.
    """
    inbox = address()
    send(server, inbox,
         mail("First order", sender="Shop <shop@example.com>"),
         mail("", sender="bare@example.com"),
         mail("With a report", sender="Reports <r@example.com>", attachment=True))
    status, headers, body = WebClient(server).get(f"/inbox/{inbox}")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert subjects(body) == ["With a report", "(no subject)", "First order"]
    ids = [m.decode() for _, m in _ROW_LINK.findall(body)]
    assert ids == apiIds(server, inbox)
    assert [p.decode() for p, _ in _ROW_LINK.findall(body)] == [
        f"/inbox/{inbox}/{i}" for i in ids
    ]
    text = mainContent(body)
    assert b"3 messages" in text
    assert b'<span class="from">Reports</span>' in text
    assert b'<span class="from">bare@example.com</span>' in text
    assert text.count(b'aria-label="1 attachment"') == 1
    assert text.count(b'<span class="visually-hidden">unread, </span>') == 3
    assert len(re.findall(rb'<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z">', text)) == 3
    assert re.search(rb'<span class="size">\d+ B</span>', text)
    # Anyone may delete public mail; starring needs an account.
    assert text.count(b'class="inline delete-form"') == 3
    assert b"star-form" not in text and b"purge-form" not in text


def test_emptyInboxSaysHowToSendMail(server: CaptureServer) -> None:
    """
    An inbox with no mail says mail will appear live and where to send it.
    """
    inbox = address()
    status, _, body = WebClient(server).get(f"/inbox/{inbox}")
    text = mainContent(body)
    assert status == 200 and b"No mail here yet." in text
    assert b"will appear here as it arrives" in text
    assert f"<code>{server.ports['smtp']}</code>".encode() in text
    assert b"0 messages" in text


def test_pagingByCursorMissesNothing(server: CaptureServer) -> None:
    """
    Following "Older" from the first page walks the whole inbox in pages
    of 50, newest first, with no message twice and none missed; later
    pages link back to the newest.
    """
    inbox = address()
    send(server, inbox, *(mail(f"Message {n}") for n in range(120)))
    client = WebClient(server)
    seen: list[str] = []
    sizes = []
    path: str | None = f"/inbox/{inbox}"
    while path is not None:
        status, _, body = client.get(path)
        assert status == 200
        page = [m.decode() for _, m in _ROW_LINK.findall(body)]
        sizes.append(len(page))
        seen += page
        assert b"120 messages" in body
        if len(sizes) > 1:
            assert f'<a href="/inbox/{inbox}" rel="first">Newest</a>'.encode() in body
        older = _OLDER.search(body)
        path = html.unescape(older.group(1).decode()) if older else None
    assert sizes == [50, 50, 20]
    assert seen == apiIds(server, inbox)


def test_searchWithinTheInbox(server: CaptureServer) -> None:
    """
    C{q} keeps the messages with every word in the subject, sender,
    recipients or text body, in the same rows; only this inbox's.
    """
    inbox = address()
    send(server, inbox,
         mail("Password reset", body="Click to reset.\n"),
         mail("Welcome aboard", body="Your invoice is attached.\n"),
         mail("Invoice 42", sender="Billing <billing@example.com>"))
    send(server, address(), mail("Invoice elsewhere"))
    client = WebClient(server)
    for query, expected in (
        ("invoice", ["Invoice 42", "Welcome aboard"]),
        ("INVOICE billing", ["Invoice 42"]),
        ("reset", ["Password reset"]),
        ("someone@example.com welcome", ["Welcome aboard"]),
        ("nothing-like-this", []),
    ):
        status, _, body = client.get(f"/inbox/{inbox}?" + urllib.parse.urlencode({"q": query}))
        assert status == 200 and subjects(body) == expected, query
        assert html.escape(query).encode() in mainContent(body)
    assert b"No messages match." in body


@pytest.mark.parametrize("query", [
    '"quoted"', "'", "%", "_", "100%_off\\", "a" * 5000, "%00", "<script>x</script>",
    "ünïcödé ✓", "   ",
])
def test_oddSearchesAreAnswered(server: CaptureServer, query: str) -> None:
    """
    Quotes, LIKE wildcards, backslashes, markup, a very long query and
    blanks are answered 200 (never a 500), shown escaped, and the server
    serves the next client.
    """
    inbox = address()
    send(server, inbox, mail("Plain subject"))
    status, _, body = WebClient(server).get(f"/inbox/{inbox}?" + urllib.parse.urlencode({"q": query}))
    assert status == 200
    assert b"<script>x" not in body
    if query.strip():
        assert subjects(body) == []
    else:
        assert subjects(body) == ["Plain subject"]
    stillServes(server)


def test_wildcardsMatchThemselves(server: CaptureServer) -> None:
    """
    A search for C{%} or C{_} finds those characters, not everything.
    """
    inbox = address()
    send(server, inbox, mail("50% off"), mail("snake_case"), mail("plain"))
    client = WebClient(server)
    assert subjects(client.get(f"/inbox/{inbox}?q=%25")[2]) == ["50% off"]
    assert subjects(client.get(f"/inbox/{inbox}?q=_")[2]) == ["snake_case"]


@pytest.mark.parametrize("path", [
    "/inbox/not-an-address", "/inbox/%40example.com", "/inbox/a%40b%40c",
])
def test_invalidAddressIs400(server: CaptureServer, path: str) -> None:
    """
    What is not an address is a 400 page saying so; the server goes on.
    """
    status, _, body = WebClient(server).get(path)
    assert status == 400 and b"Not an email address" in mainContent(body)
    stillServes(server)


def test_badCursorIs400(server: CaptureServer) -> None:
    """
    A C{before} that is not a number is a 400 page, not a 500.
    """
    for before in ("abc", "-1", "1e9", "９", "9" * 40):
        status, _, body = WebClient(server).get(
            f"/inbox/{address()}?" + urllib.parse.urlencode({"before": before})
        )
        assert status == 400 and b"That page link is broken" in body, before
    stillServes(server)


def test_addressIsNormalized(server: CaptureServer) -> None:
    """
    Upper case and a +tag redirect to the inbox's one URL, keeping the
    query.
    """
    status, headers, _ = WebClient(server).get("/inbox/Bob+News@Example.COM?q=hi")
    assert status == 303 and headers["location"] == "/inbox/bob@example.com?q=hi"


def test_privateInboxOfAnotherAccountIsNotFound(server: CaptureServer) -> None:
    """
    Another account's private inbox is the same 404 page as a path that
    does not exist, without a byte of its mail or its count, signed in or
    not; its owner sees it, marked private, with the purge form.
    """
    owner, ownerKey = createAccount(server, "owner")
    _, otherKey = createAccount(server, "other")
    inbox = address("private")
    reserve(server, inbox, ownerKey)
    send(server, inbox, mail("secret-subject"))
    missing = WebClient(server).get("/inbox/nobody@example.com/no/such/page")
    assert missing[0] == 404
    anonymous = WebClient(server)
    signedIn = WebClient(server)
    signedIn.signIn(otherKey)
    for client in (anonymous, signedIn):
        for query in ("", "?q=secret", "?before=999999999"):
            status, _, body = client.get(f"/inbox/{inbox}{query}")
            assert status == 404 and b"secret" not in body and b"1 message" not in body
            assert mainContent(body) == mainContent(missing[2])
    ownerClient = WebClient(server)
    ownerClient.signIn(ownerKey)
    status, _, body = ownerClient.get(f"/inbox/{inbox}")
    assert status == 200 and subjects(body) == ["secret-subject"]
    assert b"private, yours" in body and b"purge-form" in body and b"star-form" in body


def test_purge(server: CaptureServer) -> None:
    """
    Purge needs the browser's CSRF token (403 page otherwise, nothing
    deleted) and ownership: on a public inbox it is a 403 page, on another
    account's private inbox the 404 page; the owner's purge deletes all
    but starred mail and shows the inbox again.
    """
    owner, ownerKey = createAccount(server, "purger")
    _, otherKey = createAccount(server, "nosy")
    inbox = address("purge")
    public = address("public")
    send(server, public, mail("public mail"))
    reserve(server, inbox, ownerKey)
    send(server, inbox, mail("keep me"), mail("drop me"), mail("drop me too"))
    keep = apiIds(server, inbox, ownerKey)[-1]
    status, _, body = WebClient(server).request(
        "PUT", f"/api/addresses/{inbox}/messages/{keep}/star", headers={"Mailsac-Key": ownerKey}
    )
    assert status == 200, body

    ownerClient = WebClient(server)
    ownerClient.signIn(ownerKey)
    ownerClient.get(f"/inbox/{inbox}")
    # Without the token, and with another browser's token.
    status, _, body = ownerClient.post(f"/inbox/{inbox}/purge", csrf=False)
    assert status == 403 and b"This form has expired" in body
    stranger = WebClient(server)
    stranger.get("/")
    status, _, body = ownerClient.post(f"/inbox/{inbox}/purge", {"csrf": stranger.csrf})
    assert status == 403 and b"This form has expired" in body
    assert len(apiIds(server, inbox, ownerKey)) == 3

    nosy = WebClient(server)
    nosy.signIn(otherKey)
    status, _, body = nosy.post(f"/inbox/{inbox}/purge")
    assert status == 404 and b"Nothing here" in body
    status, _, body = nosy.post(f"/inbox/{public}/purge")
    assert status == 403 and b"Only the owner can purge an inbox" in body
    status, _, body = WebClient(server).post(f"/inbox/{public}/purge")
    assert status == 403
    assert len(apiIds(server, public)) == 1 and len(apiIds(server, inbox, ownerKey)) == 3

    status, headers, _ = ownerClient.post(f"/inbox/{inbox}/purge")
    assert status == 303 and headers["location"] == f"/inbox/{inbox}"
    assert apiIds(server, inbox, ownerKey) == [keep]
    status, _, body = ownerClient.get(f"/inbox/{inbox}")
    assert subjects(body) == ["keep me"] and b"1 message" in body
    stillServes(server)


def test_starredByOthersIsHidden(server: CaptureServer) -> None:
    """
    In a public inbox, a copy another account starred is not listed (as
    in the API's listing), and the account that starred it sees it with
    its star.
    """
    name, key = createAccount(server, "starrer")
    inbox = address()
    send(server, inbox, mail("shared"), mail("mine"))
    mine = apiIds(server, inbox)[0]
    status, _, _ = WebClient(server).request(
        "PUT", f"/api/addresses/{inbox}/messages/{mine}/star", headers={"Mailsac-Key": key}
    )
    assert status == 200
    assert subjects(WebClient(server).get(f"/inbox/{inbox}")[2]) == ["shared"]
    client = WebClient(server)
    client.signIn(key)
    body = client.get(f"/inbox/{inbox}")[2]
    assert subjects(body) == ["mine", "shared"]
    assert body.count(b'aria-label="Starred"') == 1 and b'aria-pressed="true"' in body
