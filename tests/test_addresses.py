"""
What an address is (L{capture.addresses}): the rule itself, and on a real
server, SMTP refusing what no reader could open while every reader (the
API, the pages, the admin command, POP3 and IMAP) opens what SMTP took,
under either spelling of an internationalized domain.
"""

from __future__ import annotations

import imaplib
import poplib
import secrets
import urllib.parse

import pytest
import twisted.mail.imap4  # noqa: F401  (registers the imap4-utf-7 codec)

from capture.addresses import canonicalAddress, customDomain, inboxOf, shown
from tests.harness import CaptureServer, RawClient
from tests.test_api import call, callJSON
from tests.test_smtp_server import _copies, _queueId, _rawTLS, _rows

# (address as sent, the escaped form SMTP's 553 names it by)
_NOT_ADDRESSES = [
    (b"a\x00b@nul.test", b"a\\x00b@nul.test"),
    (b"a\x01b@ctl.test", b"a\\x01b@ctl.test"),
    (b"a\x7fb@del.test", b"a\\x7fb@del.test"),
    (b"a\x1bb@esc.test", b"a\\x1bb@esc.test"),
    (b"a\rb@cr.test", b"a\\rb@cr.test"),
    (b"a\tb@tab.test", b"a\\tb@tab.test"),
    (b'"a b"@space.test', b'"a b"@space.test'),
    (b"@empty.test", b"@empty.test"),
    (b"x" * 65 + b"@long.test", b"x" * 65 + b"@long.test"),
    (b"a@" + (b"d" * 60 + b".") * 5 + b"test", b"a@" + b"d" * 60 + b"." + b"d" * 17 + b"..."),
    (b"a@" + b"l" * 64 + b".test", b"a@" + b"l" * 64 + b".test"),
    (b"a@xn--zz.test", b"a@xn--zz.test"),
    ("a@ex\u200bample.test".encode(), b"a@ex\\u200bample.test"),
    ("a\u202eb@bidi.test".encode(), b"a\\u202eb@bidi.test"),
    (b"a/b@slash.test", b"a/b@slash.test"),
    (b"a@[192.0.2.1]", b"a@[192.0.2.1]"),
    (b"a@dots..test", b"a@dots..test"),
    (b"a@-hyphen.test", b"a@-hyphen.test"),
]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Bob@Example.COM", "bob@example.com"),
        ("a@localhost", "a@localhost"),
        ("x" * 64 + "@a.test", "x" * 64 + "@a.test"),
        ("üser@exämple.test", "üser@exämple.test"),
        ("ÜSER@EXÄMPLE.TEST", "üser@exämple.test"),
        ("info@xn--exmple-cua.test", "info@exämple.test"),
        ("u\u0308ser@exa\u0308mple.test", "üser@exämple.test"),
        ("a@ＥＸＡＭＰＬＥ.test", "a@example.test"),
        ('"john"@example.com', "john@example.com"),
        ("*@bobcorp.test", "*@bobcorp.test"),
    ],
)
def test_canonicalAddress(text: str, canonical: str) -> None:
    """
    Case, Unicode normalization, compatibility forms and the A-label
    spelling all give one canonical name (domain as U-labels).
    """
    assert canonicalAddress(text) == canonical


@pytest.mark.parametrize(("sent", "escaped"), _NOT_ADDRESSES)
def test_notAnAddress(sent: bytes, escaped: bytes) -> None:
    """
    Each entry of the corpus is no address, and is escaped to printable
    ASCII, cut to 80 characters, when named in a reply.
    """
    text = sent.decode("utf-8")
    assert canonicalAddress(text) is None and inboxOf(text) is None
    assert shown(text) == escaped


@pytest.mark.parametrize(
    "text",
    ["\ud800x@a.test", "a@\ud800.test", "x@ＡＢ.", "x@a\u3002", "İ@a.test", "ΣΑΣ@ς.test",
     "a@xn--", "a@xn---aa--", "a@" + "ä" * 70 + ".test", "@", "", "a@b@c", "ß@straße.test"],
)
def test_oddTextNeverRaises(text: str) -> None:
    """
    Whatever text comes (lone surrogates, a trailing or ideographic dot,
    case mappings that undo NFC, over-long U-labels), the rule answers
    without raising, and a canonical name is its own canonical name.
    """
    canonical = canonicalAddress(text)
    assert canonical is None or canonicalAddress(canonical) == canonical
    domain = customDomain(text.rpartition("@")[2])
    assert domain is None or customDomain(domain) == domain
    assert shown(text).isascii()


def test_customDomain() -> None:
    """
    A custom domain's name takes either spelling and needs two labels.
    """
    assert customDomain("XN--EXMPLE-CUA.test") == customDomain("Exämple.test") == "exämple.test"
    assert customDomain("localhost") is None and customDomain("a..b") is None


def _session(server: CaptureServer) -> RawClient:
    raw = _rawTLS(server)
    assert raw.command(b"MAIL FROM:<app@example.com> SMTPUTF8") == b"250 2.1.0 Accepted"
    return raw


def test_smtpRefusesWhatNoReaderOpens(server: CaptureServer) -> None:
    """
    At RCPT every entry of the corpus gets C{553 5.1.3} naming it escaped
    (never a raw control byte) and the transaction goes on: a valid
    recipient after it is accepted, and the message is stored once, in
    that inbox alone, readable through the API, POP3 and IMAP.  Sessions
    are cut short of the error limit (10).
    """
    good = f"after-{secrets.token_hex(4)}@example.com"
    queueIds = []
    for start in range(0, len(_NOT_ADDRESSES), 5):
        raw = _session(server)
        for sent, escaped in _NOT_ADDRESSES[start : start + 5]:
            assert raw.command(b"RCPT TO:<" + sent + b">") == (
                b"553 5.1.3 <" + escaped + b">: not a valid address"
            )
        assert raw.command(b"RCPT TO:<" + good.encode() + b">") == b"250 2.1.5 Accepted"
        assert raw.command(b"DATA").startswith(b"354 ")
        queueIds.append(_queueId(raw.command(b"Subject: survived\r\n\r\nbody\r\n.")))
        assert raw.command(b"NOOP") == b"250 2.0.0 OK"
        raw.close()
    for queueId in queueIds:
        assert _copies(server, queueId) == [(good, good, None)]
    status, listed = callJSON(server, "GET", f"/api/addresses/{good}/messages")
    assert status == 200 and sorted(m["_id"] for m in listed) == sorted(
        f"{q}-0" for q in queueIds
    )
    pop = poplib.POP3("localhost", server.ports["pop3"], timeout=30)
    pop.stls(context=server.tlsContext())
    pop.user(good)
    pop.pass_(server.key or "")
    assert pop.stat()[0] == len(queueIds)
    pop.quit()
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.starttls(server.tlsContext())
    imap.login(good, server.key or "")
    assert imap.select("INBOX") == ("OK", [str(len(queueIds)).encode()])
    imap.logout()


def test_smtpRefusesBadSenders(server: CaptureServer) -> None:
    """
    MAIL FROM with a control or format character gets C{553 5.1.7}, escaped;
    the session goes on and the next MAIL is taken.
    """
    raw = _rawTLS(server)
    for sent, escaped in [
        (b"a\x00b@nul.test", b"a\\x00b@nul.test"),
        (b"a\x1bb@esc.test", b"a\\x1bb@esc.test"),
        ("a\u202eb@bidi.test".encode(), b"a\\u202eb@bidi.test"),
    ]:
        assert raw.command(b"MAIL FROM:<" + sent + b"> SMTPUTF8") == (
            b"553 5.1.7 <" + escaped + b">: not a valid sender address"
        )
    assert raw.command(b"MAIL FROM:<app@example.com>") == b"250 2.1.0 Accepted"
    raw.close()


def _path(address: str) -> str:
    return urllib.parse.quote(address, safe="@+")


def _sendUTF8(server: CaptureServer, to: str, subject: str) -> str:
    client = server.smtp()
    client.mail("app@example.com", ["SMTPUTF8"])
    assert client.rcpt(to) == (250, b"2.1.5 Accepted")
    code, reply = client.data(f"Subject: {subject}\r\n\r\nhi\r\n".encode())
    client.quit()
    assert code == 250
    return _queueId(reply)


def _imapPlain(server: CaptureServer, user: str) -> imaplib.IMAP4:
    """
    An IMAP login as C{user} (UTF-8, so through AUTHENTICATE PLAIN, which
    carries any octets).
    """
    client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    client.starttls(server.tlsContext())
    response = b"\0" + user.encode() + b"\0" + (server.key or "").encode()
    client.authenticate("PLAIN", lambda _: response)
    return client


@pytest.mark.parametrize("local", ["üser", "info"])
def test_internationalizedAddressEverywhere(server: CaptureServer, local: str) -> None:
    """
    SMTPUTF8 mail to the U-label and to the A-label spelling of a domain
    lands in one inbox (the canonical U-label one), read under both
    spellings through the API (percent-encoded UTF-8 paths), the pages
    (the A-label URL redirects to the canonical one), C{capture inbox},
    POP3 and IMAP logins.
    """
    label = f"ex\u00e4mple{secrets.token_hex(3)}"
    alabel = "xn--" + label.encode("punycode").decode("ascii")
    ulabelAddress = f"{local}@{label}.test"
    alabelAddress = f"{local.upper()}@{alabel.upper()}.test"
    first = _sendUTF8(server, ulabelAddress, "by u-label")
    second = _sendUTF8(server, alabelAddress, "by a-label")
    assert _copies(server, first) == [(ulabelAddress, ulabelAddress, None)]
    assert _copies(server, second) == [(ulabelAddress, alabelAddress, None)]
    wanted = [f"{second}-0", f"{first}-0"]
    for spelling in (ulabelAddress, alabelAddress):
        status, listed = callJSON(server, "GET", f"/api/addresses/{_path(spelling)}/messages")
        assert status == 200 and [m["_id"] for m in listed] == wanted
        assert {m["inbox"] for m in listed} == {ulabelAddress}
        status, counted = callJSON(server, "GET", f"/api/addresses/{_path(spelling)}", server.key)
        assert status == 200 and counted["_id"] == ulabelAddress
    status, _, page = call(server, "GET", f"/inbox/{_path(ulabelAddress)}")
    assert status == 200 and b"by a-label" in page and b"by u-label" in page
    for path in (f"/inbox/{_path(alabelAddress)}", f"/inbox?address={_path(alabelAddress)}"):
        # Redirected (urllib follows) to the canonical page.
        status, _, redirected = call(server, "GET", path)
        assert status == 200 and b"by a-label" in redirected and b"by u-label" in redirected
    for spelling in (ulabelAddress, alabelAddress):
        result = server.cli("inbox", spelling)
        assert result.stdout.splitlines()[-1] == "2 messages", result.stderr
        pop = poplib.POP3("localhost", server.ports["pop3"], timeout=30)
        pop.stls(context=server.tlsContext())
        pop.user(spelling)
        pop.pass_(server.key or "")
        assert pop.stat()[0] == 2
        assert any(b"Subject: by a-label" == line for line in pop.retr(2)[1])
        pop.quit()
        imap = _imapPlain(server, spelling)
        assert imap.select("INBOX") == ("OK", [b"2"])
        fetched = imap.fetch("1:2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1]
        assert [part[1].strip() for part in fetched if isinstance(part, tuple)] == [
            b"Subject: by u-label", b"Subject: by a-label",
        ]
        imap.logout()


def test_internationalizedAddressReservedAndDomain(server: CaptureServer) -> None:
    """
    Reserving an address, or claiming a custom domain, under one spelling
    holds the other: the owner reads it under both, another account is
    refused under both.
    """
    label = f"b\u00fccher{secrets.token_hex(3)}"
    alabel = "xn--" + label.encode("punycode").decode("ascii")
    address = f"ünïcode@{label}.test"
    status, reserved = callJSON(server, "POST", f"/api/addresses/{_path(address)}", server.key)
    assert status == 200 and reserved["_id"] == address
    status, again = callJSON(
        server, "POST", f"/api/addresses/{_path(f'ÜNÏCODE@{alabel}.test')}", server.key
    )
    assert status == 400 and again["message"] == "You own that address already."
    other = server.cli("account", "create", f"idn{secrets.token_hex(4)}")
    otherKey = other.stdout.strip().splitlines()[-1]
    _sendUTF8(server, address, "private")
    for spelling in (address, f"ünïcode@{alabel}.test"):
        status, _ = callJSON(server, "GET", f"/api/addresses/{_path(spelling)}/messages", otherKey)
        assert status == 403
        status, listed = callJSON(
            server, "GET", f"/api/addresses/{_path(spelling)}/messages", server.key
        )
        assert status == 200 and len(listed) == 1
    domain = f"d{label}.test"
    status, claimed = callJSON(
        server, "POST", f"/api/domains/xn--{('d' + label).encode('punycode').decode()}.test",
        server.key,
    )
    assert status == 200 and claimed["_id"] == domain
    status, listed = callJSON(server, "GET", f"/api/domains/{_path(domain)}/messages", server.key)
    assert status == 200
    # The account's IMAP login lists the reserved address's folder under
    # its canonical name (modified UTF-7), and that name selects it.
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    imap.starttls(server.tlsContext())
    imap.login(server.account or "", server.key or "")
    folder = "Inboxes/" + address
    encoded = folder.encode("imap4-utf-7")
    assert any(encoded in line for line in imap.list()[1] if isinstance(line, bytes))
    assert imap.select('"' + encoded.decode("ascii") + '"') == ("OK", [b"1"])
    imap.logout()


def test_smtputf8NotNeededForALabels(server: CaptureServer) -> None:
    """
    smtplib without SMTPUTF8 can still reach an internationalized inbox
    through its A-label spelling (the envelope is ASCII).
    """
    label = f"ex\u00e4mple{secrets.token_hex(3)}"
    alabel = "xn--" + label.encode("punycode").decode("ascii")
    client = server.smtp()
    client.sendmail("app@example.com", [f"ascii@{alabel}.test"], b"Subject: a\r\n\r\nx\r\n")
    client.quit()
    rows = _rows(server, "SELECT count(*) FROM copies WHERE inbox = ?", f"ascii@{label}.test")
    assert rows == [(1,)]
