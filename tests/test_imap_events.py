"""
What happens elsewhere reaches selected IMAP sessions unasked: flag changes
(another session's STORE, the HTTP API) as untagged FETCH FLAGS, at once
while idling and at the next command otherwise; expunges by another
session; keywords announced in FLAGS before they are used.  Real clients
(imapclient) and exact exchanges (a raw TLS socket) on the real server.
"""

from __future__ import annotations

import time
from typing import Any

from imapclient import IMAPClient

from tests.harness import CaptureServer
from tests.test_api import callJSON, inbox, send
from tests.test_imap import Raw

_SYSTEM = b"\\Seen \\Answered \\Flagged \\Deleted \\Draft"
_PERMANENT = b"\\Seen \\Answered \\Flagged \\Deleted"


def _client(server: CaptureServer, address: str) -> IMAPClient:
    # A timeout, so that a failed assertion made while idling (the client
    # then logs out into the IDLE) fails the test instead of hanging it.
    client = IMAPClient("127.0.0.1", port=server.ports["imaps"], ssl_context=server.tlsContext(),
                        timeout=5)
    client.login(address, server.key or "")
    client.select_folder("INBOX")
    return client


def _claimRecent(server: CaptureServer, address: str) -> None:
    """
    Let a session of its own select the mailbox first, so that the mail
    sent so far is no longer C{\\Recent} for the sessions a test opens
    next (each copy is recent in one session only): their answers then
    show the flags under test alone.
    """
    with _client(server, address):
        pass


def _raw(server: CaptureServer, address: str) -> Raw:
    """
    A raw session logged in as C{address}, its INBOX selected.
    """
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode()
                       ).startswith(b"a OK")
    assert raw.command(b"b SELECT INBOX").startswith(b"b OK [READ-WRITE]")
    return raw


def _idleUntil(client: IMAPClient, wanted: Any, timeout: float = 1.0) -> list[Any]:
    """
    What an idling client heard within C{timeout} seconds, stopping as
    soon as C{wanted} came.
    """
    heard: list[Any] = []
    deadline = time.monotonic() + timeout
    while wanted not in heard and time.monotonic() < deadline:
        heard += client.idle_check(timeout=max(0.01, deadline - time.monotonic()))
    return heard


def test_storeElsewhereReachesAnIdlingSession(server: CaptureServer) -> None:
    """
    One session's STORE reaches another session idling on the same mailbox
    as an untagged FETCH FLAGS within a second, and a third one, not
    idling, at its next NOOP (once); the session that stored it hears only
    its own STORE answer, not an echo.
    """
    address = inbox()
    send(server, address, b"Subject: one\r\n\r\nx\r\n")
    send(server, address, b"Subject: two\r\n\r\nx\r\n")
    _claimRecent(server, address)
    with _client(server, address) as storing, _client(server, address) as idling, \
            _client(server, address) as waiting:
        second = storing.search()[1]
        idling.idle()
        assert storing.add_flags([second], [b"\\Flagged"]) == {second: (b"\\Flagged",)}
        flagged = (2, b"FETCH", (b"FLAGS", (b"\\Flagged",)))
        assert _idleUntil(idling, flagged) == [flagged]
        # Not idling: told at its next command.
        assert waiting.noop() == (b"NOOP completed", [flagged])
        assert waiting.noop() == (b"NOOP completed", [])
        storing.remove_flags([second], [b"\\Flagged"], silent=True)
        cleared = (2, b"FETCH", (b"FLAGS", ()))
        assert _idleUntil(idling, cleared) == [cleared]
        idling.idle_done()
        assert storing.noop() == (b"NOOP completed", [])


def test_storeElsewhereToldAtTheNextCommand(server: CaptureServer) -> None:
    """
    A session that is not idling is told at the completion of its next
    command (here NOOP, then a SEARCH), exactly once, in the exact form.
    """
    address = inbox()
    send(server, address, b"Subject: one\r\n\r\nx\r\n")
    send(server, address, b"Subject: two\r\n\r\nx\r\n")
    _claimRecent(server, address)
    raw = _raw(server, address)
    with _client(server, address) as storing:
        first, second = storing.search()
        storing.add_flags([first], [b"\\Seen", b"\\Answered"])
        assert raw.exchange(b"c NOOP") == [
            b"* 1 FETCH (FLAGS (\\Seen \\Answered))", b"c OK NOOP completed"
        ]
        assert raw.exchange(b"d NOOP") == [b"d OK NOOP completed"]
        # Told after the SEARCH answer, before its tagged OK.
        storing.set_flags([second], [b"\\Deleted"])
        assert raw.exchange(b"e SEARCH UNSEEN") == [
            b"* SEARCH 2", b"* 2 FETCH (FLAGS (\\Deleted))", b"e OK SEARCH completed"
        ]
    raw.close()


def test_apiChangesReachAnIdlingSession(server: CaptureServer) -> None:
    """
    Read/unread and labels set over the HTTP API reach an idling imapclient
    session as FETCH FLAGS; starring (not an IMAP flag) sends nothing.
    """
    address = inbox()
    messageId = send(server, address, b"Subject: api\r\n\r\nx\r\n") + "-0"
    base = f"/api/addresses/{address}/messages/{messageId}"
    _claimRecent(server, address)
    with _client(server, address) as client:
        client.idle()
        assert callJSON(server, "PUT", f"{base}/read/true", server.key)[0] == 200
        seen = (1, b"FETCH", (b"FLAGS", (b"\\Seen",)))
        assert _idleUntil(client, seen) == [seen]
        assert callJSON(server, "PUT", f"{base}/star", server.key)[0] == 200
        assert callJSON(server, "PUT", f"{base}/read/false", server.key)[0] == 200
        unseen = (1, b"FETCH", (b"FLAGS", ()))
        assert _idleUntil(client, unseen) == [unseen]
        assert callJSON(server, "PUT", f"{base}/labels/work", server.key)[0] == 200
        labelled = (1, b"FETCH", (b"FLAGS", (b"work",)))
        heard = _idleUntil(client, labelled)
        client.idle_done()
        assert heard[0] == (b"FLAGS", (*_SYSTEM.split(), b"work"))
        assert heard[-1] == labelled
        assert client.noop()[0] == b"NOOP completed"


def test_apiChangeExactLinesDuringIdle(server: CaptureServer) -> None:
    """
    The exact lines an idling session gets for an API read flag, and the
    IDLE still ends as usual.
    """
    address = inbox()
    messageId = send(server, address, b"Subject: api\r\n\r\nx\r\n") + "-0"
    _claimRecent(server, address)
    raw = _raw(server, address)
    raw.send(b"c IDLE\r\n")
    assert raw.line() == b"+ idling"
    path = f"/api/addresses/{address}/messages/{messageId}/read/true"
    assert callJSON(server, "PUT", path, server.key)[0] == 200
    assert raw.line() == b"* 1 FETCH (FLAGS (\\Seen))"
    raw.send(b"DONE\r\n")
    assert raw.line() == b"c OK IDLE terminated"
    assert raw.exchange(b"d NOOP") == [b"d OK NOOP completed"]
    raw.close()


def test_expungeElsewhereToldAtExpungeAndFetchOfItRefused(server: CaptureServer) -> None:
    """
    Session A expunges message 2. Session B, which has not been told, gets
    no EXPUNGE during FETCH: a FETCH of the gone message answers
    C{NO [EXPUNGEISSUED]} with what is left; B's own EXPUNGE reports it;
    the next commands are served with the new numbers.
    """
    address = inbox()
    for n in range(3):
        send(server, address, b"Subject: m%d\r\n\r\nx\r\n" % n)
    _claimRecent(server, address)
    a = _raw(server, address)
    b = _raw(server, address)
    assert a.exchange(b"c STORE 2 +FLAGS.SILENT (\\Deleted)") == [b"c OK STORE completed"]
    assert a.exchange(b"d EXPUNGE") == [b"* 2 EXPUNGE", b"d OK EXPUNGE completed"]
    gone = b"NO [EXPUNGEISSUED] Some of the requested messages no longer exist"
    assert b.exchange(b"e FETCH 2 (FLAGS)") == [b"e " + gone]
    assert b.exchange(b"f FETCH 1:3 (FLAGS)") == [
        b"* 1 FETCH (FLAGS ())", b"* 3 FETCH (FLAGS ())", b"f " + gone
    ]
    assert b.exchange(b"g EXPUNGE") == [b"* 2 EXPUNGE", b"g OK EXPUNGE completed"]
    assert b.exchange(b"h FETCH 2 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])") == [
        b"* 2 FETCH (FLAGS () BODY[HEADER.FIELDS (SUBJECT)] {15}", b"Subject: m2", b"",
        b")", b"h OK FETCH completed",
    ]
    assert b.exchange(b"i NOOP") == [b"i OK NOOP completed"]
    a.close()
    b.close()


def test_expungeElsewhereDuringIdleAndAtUidCommands(server: CaptureServer) -> None:
    """
    An expunge by another session reaches an idling session at once, and a
    session that is not idling at the end of a UID FETCH (RFC 3501 7.4.1
    lets UID commands carry it), not at the end of a plain FETCH.
    """
    address = inbox()
    for n in range(2):
        send(server, address, b"Subject: m%d\r\n\r\nx\r\n" % n)
    _claimRecent(server, address)
    with _client(server, address) as a, _client(server, address) as idling:
        b = _raw(server, address)
        idling.idle()
        a.delete_messages([a.search()[0]])
        a.expunge()
        heard = _idleUntil(idling, (1, b"EXPUNGE"))
        idling.idle_done()
        assert (1, b"FETCH", (b"FLAGS", (b"\\Deleted",))) in heard
        assert heard[-1] == (1, b"EXPUNGE")
        lines = b.exchange(b"c FETCH 2 (FLAGS)")
        assert lines == [b"* 2 FETCH (FLAGS ())", b"c OK FETCH completed"]
        uid = b.exchange(b"d UID SEARCH ALL")
        assert uid[-2:] == [b"* 1 EXPUNGE", b"d OK SEARCH completed"]
        b.close()


def test_keywordsListedInFlags(server: CaptureServer) -> None:
    """
    SELECT lists the keywords in use in FLAGS and PERMANENTFLAGS; a keyword
    first stored later is announced with a new FLAGS and PERMANENTFLAGS
    before the FETCH that shows it, in the storing session and in another
    one (at its next FETCH of flags), once; the next command is served.
    """
    address = inbox()
    messageId = send(server, address, b"Subject: kw\r\n\r\nx\r\n") + "-0"
    send(server, address, b"Subject: other\r\n\r\nx\r\n")
    path = f"/api/addresses/{address}/messages/{messageId}/labels/work"
    assert callJSON(server, "PUT", path, server.key)[0] == 200
    _claimRecent(server, address)
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode()
                       ).startswith(b"a OK")
    selected = raw.exchange(b"b SELECT INBOX")
    assert b"* FLAGS (" + _SYSTEM + b" work)" in selected
    assert (b"* OK [PERMANENTFLAGS (" + _PERMANENT + b" work \\*)] Flags and keywords persist"
            in selected)
    other = _raw(server, address)
    uids = other.exchange(b"x UID SEARCH ALL")[0].split()[2:]
    # Stored by the other session after this one selected: announced with
    # the FETCH that first shows it.
    stored = raw.exchange(b"c STORE 2 +FLAGS ($Label1)")
    assert stored == [
        b"* FLAGS (" + _SYSTEM + b" work $Label1)",
        b"* OK [PERMANENTFLAGS (" + _PERMANENT + b" work $Label1 \\*)] Flags and keywords persist",
        b"* 2 FETCH (FLAGS ($Label1))",
        b"c OK STORE completed",
    ]
    # Told once: this session's next FETCH shows it without a new FLAGS.
    assert raw.exchange(b"d FETCH 1:2 (FLAGS)") == [
        b"* 1 FETCH (FLAGS (work))", b"* 2 FETCH (FLAGS ($Label1))", b"d OK FETCH completed"
    ]
    assert other.exchange(b"e FETCH 1:2 (UID FLAGS)") == [
        b"* 1 FETCH (UID " + uids[0] + b" FLAGS (work))",
        *stored[:2],
        b"* 2 FETCH (UID " + uids[1] + b" FLAGS ($Label1))",
        b"e OK FETCH completed",
    ]
    assert other.exchange(b"f NOOP") == [b"f OK NOOP completed"]
    raw.close()
    other.close()
