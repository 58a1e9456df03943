"""
Issue 12's IMAP protocol bugs, each as the exact exchange imaptest found
it with, against the real server: the exact answer, and the next command
still served.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote

from tests.harness import CaptureServer
from tests.imapcorpus import CORPUS
from tests.test_api import callJSON, inbox, send
from tests.test_imap import Raw, _reserve


def _session(server: CaptureServer, address: str, select: bytes = b"SELECT") -> Raw:
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode()
                       ).startswith(b"a OK")
    assert raw.command(b"b " + select + b" INBOX").startswith(b"b OK")
    return raw


def _literal(raw: Raw, first: bytes) -> bytes:
    """
    The octets of the literal C{first} announces (C{... {n}}), and the
    rest of the response line after them.
    """
    size = int(first[first.rindex(b"{") + 1 : -1])
    while len(raw.buffer) < size:
        raw.buffer += raw.sock.recv(65536)
    data, raw.buffer = raw.buffer[:size], raw.buffer[size:]
    return data + b"|" + raw.line()


def _stillServes(raw: Raw) -> None:
    assert raw.command(b"z NOOP") == b"z OK NOOP completed"


# 1. BODY is the structure, not a read


def test_bareBodyDoesNotSetSeen(server: CaptureServer) -> None:
    """
    C{FETCH n (BODY)} and C{FULL} show the structure and leave C{\\Seen}
    alone (RFC 3501 6.4.5); C{BODY[TEXT]} without C{.PEEK} sets it.
    """
    address = inbox()
    send(server, address, CORPUS["plain"])
    raw = _session(server, address)
    assert raw.exchange(b"c FETCH 1 (BODY)") == [
        b'* 1 FETCH (BODY ("text" "plain" NIL NIL NIL "7BIT" 11 1))', b"c OK FETCH completed"]
    assert raw.exchange(b"d FETCH 1 FULL")[-1] == b"d OK FETCH completed"
    assert raw.exchange(b"e FETCH 1 (FLAGS)") == [
        b"* 1 FETCH (FLAGS (\\Recent))", b"e OK FETCH completed"]
    lines = raw.exchange(b"f FETCH 1 (BODY[TEXT])")
    assert lines[0] == b"* 1 FETCH (BODY[TEXT] {11}"
    assert lines[1:] == [b"just text", b" FLAGS (\\Seen \\Recent))", b"f OK FETCH completed"]
    _stillServes(raw)
    raw.close()


# 2. Literals are data, never commands


def test_literalPlusBehindAWaitingCommand(server: CaptureServer) -> None:
    """
    A LITERAL+ literal pipelined behind SELECT (which waits on the store)
    is the argument it is: its lines ("x NOOP") never run, and the
    commands after it are answered in order.
    """
    address = inbox()
    send(server, address, b"Subject: x NOOP\r\n\r\nbody\r\n")
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode()
                       ).startswith(b"a OK")
    raw.send(b"b SELECT INBOX\r\nc SEARCH SUBJECT {6+}\r\nx NOOP\r\nd NOOP\r\n")
    assert raw.until(b"b")[-1] == b"b OK [READ-WRITE] SELECT completed"
    assert raw.until(b"c") == [b"* SEARCH 1", b"c OK SEARCH completed"]
    assert raw.until(b"d") == [b"d OK NOOP completed"]
    # A literal holding a whole message and command-like lines.
    literal = b"From: x\r\ng NOOP\r\n\r\nbody"
    raw.send(b"e SELECT INBOX\r\nf SEARCH BODY {%d+}\r\n" % len(literal) + literal
             + b"\r\nh NOOP\r\n")
    assert raw.until(b"e")[-1] == b"e OK [READ-WRITE] SELECT completed"
    assert raw.until(b"f") == [b"* SEARCH", b"f OK SEARCH completed"]
    assert raw.until(b"h") == [b"h OK NOOP completed"]
    _stillServes(raw)
    raw.close()


def test_literalOfARefusedCommandIsSkipped(server: CaptureServer) -> None:
    """
    A command answered before it reads its LITERAL+ literal (an APPEND,
    which is refused; a command unknown in this state; a CREATE), at once
    or behind a waiting command: the literal is skipped, never run.
    """
    address = inbox()
    send(server, address, b"Subject: s\r\n\r\nbody\r\n")
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode()
                       ).startswith(b"a OK")
    message = b"From: x\r\nj NOOP\r\n\r\nk NOOP\r\n"
    raw.send(b"b APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\nc NOOP\r\n")
    assert raw.line().startswith(b"b NO [CANNOT]")
    assert raw.line() == b"c OK NOOP completed"
    raw.send(b"d LOGIN {8+}\r\nk NOOP\r\n\r\ne NOOP\r\n")
    assert raw.line() == b"d BAD Unsupported command"
    assert raw.line() == b"e OK NOOP completed"
    raw.send(b"f SELECT INBOX\r\ng APPEND INBOX (\\Seen) {%d+}\r\n" % len(message) + message
             + b"\r\nh CREATE {8+}\r\nk NOOP\r\n\r\ni NOOP\r\n")
    assert raw.until(b"f")[-1] == b"f OK [READ-WRITE] SELECT completed"
    assert raw.line().startswith(b"g NO [CANNOT]")
    assert raw.line().startswith(b"h NO [CANNOT]")
    assert raw.line() == b"i OK NOOP completed"
    _stillServes(raw)
    raw.close()


def test_synchronizingLiteralBehindAWaitingCommand(server: CaptureServer) -> None:
    """
    A synchronizing literal announced behind SELECT gets its continuation
    once SELECT is answered, and is read as the argument.
    """
    address = inbox()
    send(server, address, b"Subject: hello there\r\n\r\nbody\r\n")
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode()
                       ).startswith(b"a OK")
    raw.send(b"b SELECT INBOX\r\nc SEARCH SUBJECT {5}\r\n")
    assert raw.until(b"b")[-1] == b"b OK [READ-WRITE] SELECT completed"
    assert raw.line() == b"+ Ready for 5 octets of text"
    raw.send(b"there\r\n")
    assert raw.until(b"c") == [b"* SEARCH 1", b"c OK SEARCH completed"]
    _stillServes(raw)
    raw.close()


# 3, 4. Sections of message/rfc822 parts; a folded boundary


def _sections(server: CaptureServer, name: str, sections: list[bytes]) -> dict[bytes, bytes]:
    address = inbox()
    send(server, address, CORPUS[name])
    raw = _session(server, address)
    found = {}
    for section in sections:
        raw.send(b"c FETCH 1 (BODY.PEEK[" + section + b"])\r\n")
        first = raw.line()
        assert first.startswith(b"* 1 FETCH (BODY[" + section + b"] {"), first
        found[section] = _literal(raw, first)
        assert raw.line() == b"c OK FETCH completed"
    _stillServes(raw)
    raw.close()
    return found


def test_sectionsOfATopLevelMessageRfc822(server: CaptureServer) -> None:
    """
    C{BODY[1]} of a message/rfc822 message is the whole enclosed message;
    C{[1.HEADER]}, C{[1.TEXT]} its header and text; C{[1.MIME]} the outer
    header; C{[1.1]}, C{[1.2]} the enclosed multipart's parts.
    """
    got = _sections(server, "toprfc822multi",
                    [b"1", b"1.HEADER", b"1.TEXT", b"1.MIME", b"1.1", b"1.2", b"1.3"])
    inner = CORPUS["toprfc822multi"].split(b"message/rfc822\r\n\r\n", 1)[1]
    assert got[b"1"] == inner + b"|)"
    assert got[b"1.HEADER"] == inner.split(b"\r\n\r\n")[0] + b"\r\n\r\n|)"
    assert got[b"1.TEXT"] == inner.split(b"\r\n\r\n", 1)[1] + b"|)"
    assert got[b"1.MIME"].endswith(b"Content-Type: message/rfc822\r\n\r\n|)")
    assert got[b"1.MIME"].startswith(b"Received: ")
    assert got[b"1.1"] == b"first|)"
    assert got[b"1.2"] == b"second|)"
    assert got[b"1.3"] == b"|)"


def test_sectionsOfNestedMessageRfc822Parts(server: CaptureServer) -> None:
    """
    A message/rfc822 part's numbers go on into the message it encloses:
    C{[2.1]}, C{[2.2]} are the enclosed multipart's parts; C{[3.1]} the
    body of an enclosed single-part message; a leaf's C{.1} is itself.
    """
    got = _sections(server, "nested", [b"2.1", b"2.2", b"2.HEADER", b"2.MIME", b"3", b"3.1",
                                       b"3.TEXT", b"1.1", b"1.HEADER", b"2.1.MIME"])
    assert got == {
        b"2.1": b"plain|)",
        b"2.2": b"<b>html</b>|)",
        b"2.HEADER": b"From: inner@x.test\r\nTo: group: a@b.test;\r\nSubject: inner\r\n"
                     b"Content-Type: multipart/alternative; boundary=in\r\n\r\n|)",
        b"2.MIME": b"Content-Type: message/rfc822\r\nContent-Description: fwd\r\n\r\n|)",
        b"3": b"From: single@x.test\r\nSubject: single\r\n\r\nsingle body|)",
        b"3.1": b"single body|)",
        b"3.TEXT": b"single body|)",
        b"1.1": b"hello|)",
        b"1.HEADER": b"|)",
        b"2.1.MIME": b"Content-Type: text/plain\r\n\r\n|)",
    }


def test_boundaryFoldedInsideItsQuotes(server: CaptureServer) -> None:
    """
    C{boundary="foo<CRLF> bar"} is the boundary C{foo bar} (RFC 5322
    unfolding): the message is multipart, its parts are sections.
    """
    address = inbox()
    send(server, address, CORPUS["foldedboundary"])
    raw = _session(server, address)
    assert raw.exchange(b"c FETCH 1 (BODYSTRUCTURE)") == [
        b'* 1 FETCH (BODYSTRUCTURE (("text" "plain" NIL NIL NIL "7BIT" 3 1 NIL NIL NIL NIL)'
        b'("text" "html" NIL NIL NIL "7BIT" 10 1 NIL NIL NIL NIL) "mixed" '
        b'("boundary" "foo bar") NIL NIL NIL))',
        b"c OK FETCH completed",
    ]
    raw.send(b"d FETCH 1 (BODY.PEEK[2])\r\n")
    assert _literal(raw, raw.line()) == b"<p>two</p>|)"
    assert raw.line() == b"d OK FETCH completed"
    _stillServes(raw)
    raw.close()


# 5. ENVELOPE


def _envelope(server: CaptureServer, name: str) -> bytes:
    address = inbox()
    send(server, address, CORPUS[name])
    raw = _session(server, address)
    lines = raw.exchange(b"c FETCH 1 (ENVELOPE)")
    assert lines[-1] == b"c OK FETCH completed"
    _stillServes(raw)
    raw.close()
    match = re.fullmatch(rb"\* 1 FETCH \(ENVELOPE \(NIL (.*)\)\)", lines[0])
    assert match, lines[0]
    return match.group(1)


def test_envelopeGroups(server: CaptureServer) -> None:
    """
    A group is its start marker, its members and its end marker; an empty
    group is the two markers.
    """
    assert _envelope(server, "group") == (
        b'"groups" (("Alice" NIL "alice" "example.com")) (("Alice" NIL "alice" "example.com")) '
        b'(("Alice" NIL "alice" "example.com")) ((NIL NIL "group" NIL)(NIL NIL "a" "b.test")'
        b'("Carl" NIL "c" "d.test")(NIL NIL NIL NIL)(NIL NIL "after" "x.test")) '
        b'((NIL NIL "empty" NIL)(NIL NIL NIL NIL)) NIL NIL NIL')


def test_envelopeEmptySenderIsFrom(server: CaptureServer) -> None:
    """
    An empty Sender and Reply-To are From (RFC 3501 7.4.2).
    """
    assert _envelope(server, "senderempty") == (
        b'"defaults" (("Alice" NIL "alice" "example.com")) (("Alice" NIL "alice" "example.com")) '
        b'(("Alice" NIL "alice" "example.com")) ((NIL NIL "bob" "example.org")) NIL NIL NIL NIL')


def test_envelopeSourceRoutes(server: CaptureServer) -> None:
    """
    A source route is the address's adl.
    """
    assert _envelope(server, "route") == (
        b'"route" (("Joe" "@relay.test,@two.test" "joe" "example.com")) '
        b'(("Joe" "@relay.test,@two.test" "joe" "example.com")) '
        b'(("Joe" "@relay.test,@two.test" "joe" "example.com")) ((NIL "@r.test" "x" "y.test")) '
        b'NIL NIL NIL NIL')


def test_envelopeAddressWithoutDomain(server: CaptureServer) -> None:
    """
    An address without a domain has a host (Dovecot's C{MISSING_DOMAIN}),
    never NIL, which would start a group.
    """
    assert _envelope(server, "nodomain") == (
        b'"nodomain" ((NIL NIL "user" "MISSING_DOMAIN")) ((NIL NIL "user" "MISSING_DOMAIN")) '
        b'((NIL NIL "user" "MISSING_DOMAIN")) ((NIL NIL "justlocal" "MISSING_DOMAIN")'
        b'(NIL NIL "other" "x.test")) (("Name" NIL "nodom" "MISSING_DOMAIN")) NIL NIL NIL')


def test_envelopeComments(server: CaptureServer) -> None:
    """
    Comments are no part of an address; a comment is a name only where
    Dovecot takes it for one (after a bare address), never inside angle
    brackets or before the address.
    """
    assert _envelope(server, "comments") == (
        b'"comments" (("comment" NIL "user-from" "domain.org")) '
        b'(("comment" NIL "user-from" "domain.org")) (("comment" NIL "user-from" "domain.org")) '
        b'(("A Person" NIL "a" "b.test")) ((NIL NIL "user-from" "domain.org")) '
        b'((NIL NIL "x" "y.test")) NIL NIL')


# 6, 8. SEARCH


def test_searchAddressesInTheirParsedForm(server: CaptureServer) -> None:
    """
    C{SEARCH FROM user-from@domain.org} finds
    C{<user-from (comment)@ (comment) domain.org>}: addresses are searched
    as written and as read.
    """
    address = inbox()
    send(server, address, b"From: <user-from (comment)@ (comment) domain.org>\r\n"
                          b"To: group: a@b.test;\r\nSubject: s\r\n\r\nbody\r\n")
    send(server, address, b"From: other@domain.org\r\nSubject: s\r\n\r\nbody\r\n")
    raw = _session(server, address)
    assert raw.exchange(b"c SEARCH FROM user-from@domain.org") == [
        b"* SEARCH 1", b"c OK SEARCH completed"]
    assert raw.exchange(b"d SEARCH FROM comment") == [b"* SEARCH 1", b"d OK SEARCH completed"]
    assert raw.exchange(b"e SEARCH TO a@b.test") == [b"* SEARCH 1", b"e OK SEARCH completed"]
    assert raw.exchange(b"f SEARCH FROM @domain.org") == [
        b"* SEARCH 1 2", b"f OK SEARCH completed"]
    _stillServes(raw)
    raw.close()


def test_searchStarFirstRangeAndNil(server: CaptureServer) -> None:
    """
    C{*:3} is C{3:*}; C{SUBJECT NIL} searches for the text "NIL".
    """
    address = inbox()
    for subject in (b"one", b"NIL two", b"three", b"four"):
        send(server, address, b"Subject: " + subject + b"\r\n\r\nbody\r\n")
    raw = _session(server, address)
    assert raw.exchange(b"c SEARCH *:3") == [b"* SEARCH 3 4", b"c OK SEARCH completed"]
    assert raw.exchange(b"d SEARCH 3:*") == [b"* SEARCH 3 4", b"d OK SEARCH completed"]
    assert raw.exchange(b"e SEARCH SUBJECT NIL") == [b"* SEARCH 2", b"e OK SEARCH completed"]
    assert raw.exchange(b"f UID SEARCH *:3 NOT 4")[-1] == b"f OK SEARCH completed"
    _stillServes(raw)
    raw.close()


# 10. LIST


def test_listOfEveryValidName(server: CaptureServer) -> None:
    """
    LIST of a name made of atom characters answers as for any name (OK,
    listing it if it is a mailbox); a captured inbox whose address holds
    C{&}, C{'} and C{!} is listed, and selected, by its modified UTF-7
    name.
    """
    account, key, _ = _reserve(server)
    # "+" starts a sub-address, which names the inbox without it.
    odd = f"a&b'c!d-{int(time.time() * 1000)}@example.com"
    status, created = callJSON(server, "POST", "/api/addresses/" + quote(odd), key)
    assert status == 200 and created["_id"] == odd
    send(server, odd, b"Subject: odd\r\n\r\nbody\r\n")
    raw = Raw(server, login=False)
    assert raw.command(b"a LOGIN " + account.encode() + b" " + key.encode()).startswith(b"a OK")
    assert raw.exchange(b'b LIST "" "!#$&\'+,-.0123456789:;<=>?@^_`|}~"') == [
        b"b OK LIST completed"]
    assert raw.exchange(b'c LIST "" "a&b"') == [b"c OK LIST completed"]
    encoded = odd.replace("&", "&-").encode()
    assert raw.exchange(b'd LIST "" "Inboxes/' + encoded + b'"') == [
        b'* LIST (\\HasNoChildren) "/" "Inboxes/' + encoded + b'"', b"d OK LIST completed"]
    assert raw.exchange(b'e LIST "" "Inboxes/a&-b\'c!d-*"') == [
        b'* LIST (\\HasNoChildren) "/" "Inboxes/' + encoded + b'"', b"e OK LIST completed"]
    assert raw.command(b'f SELECT "Inboxes/' + encoded + b'"') == (
        b"f OK [READ-WRITE] SELECT completed")
    assert raw.command(b'g SELECT "a&b"') == b"g NO [CANNOT] Invalid mailbox name (modified UTF-7)"
    _stillServes(raw)
    raw.close()


# 11. \Recent


def test_recentInExactlyOneSession(server: CaptureServer) -> None:
    """
    A new copy is C{\\Recent} in the first session to select its mailbox,
    or in the one that had it selected when it arrived, and in no other;
    EXAMINE shows recent copies and leaves them recent; STATUS counts them.
    """
    address = inbox()
    send(server, address, b"Subject: first\r\n\r\nbody\r\n")
    watcher = _session(server, address, b"EXAMINE")
    assert watcher.exchange(b"c FETCH 1 (FLAGS)") == [
        b"* 1 FETCH (FLAGS (\\Recent))", b"c OK FETCH completed"]
    first = Raw(server, login=False)
    assert first.command(b"a LOGIN " + address.encode() + b" " + (server.key or "").encode()
                         ).startswith(b"a OK")
    assert first.exchange(b"s STATUS INBOX (MESSAGES RECENT)") == [
        b'* STATUS "INBOX" (MESSAGES 1 RECENT 1)', b"s OK STATUS completed"]
    lines = first.exchange(b"b SELECT INBOX")
    assert lines[:2] == [b"* 1 EXISTS", b"* 1 RECENT"]
    second = _session(server, address)
    assert second.exchange(b"c SEARCH RECENT") == [b"* SEARCH", b"c OK SEARCH completed"]
    # Arrives while both have it selected: recent in one of them only.
    send(server, address, b"Subject: second\r\n\r\nbody\r\n")
    answers = []
    for session in (first, second):
        lines = session.exchange(b"n NOOP")
        assert lines[0] == b"* 2 EXISTS" and lines[-1] == b"n OK NOOP completed"
        answers.append(lines[1])
        found = session.exchange(b"r SEARCH RECENT")
        answers.append(found[0])
    # Whichever session claimed the second copy, the first keeps the first.
    assert answers in (
        [b"* 2 RECENT", b"* SEARCH 1 2", b"* 0 RECENT", b"* SEARCH"],
        [b"* 1 RECENT", b"* SEARCH 1", b"* 1 RECENT", b"* SEARCH 2"],
    )
    third = _session(server, address)
    assert third.exchange(b"c FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())", b"c OK FETCH completed"]
    assert third.exchange(b"s STATUS INBOX (RECENT)") == [
        b'* STATUS "INBOX" (RECENT 0)', b"s OK STATUS completed"]
    assert third.exchange(b"t SEARCH NEW") == [b"* SEARCH", b"t OK SEARCH completed"]
    assert third.exchange(b"u SEARCH OLD") == [b"* SEARCH 1 2", b"u OK SEARCH completed"]
    for session in (watcher, first, second, third):
        _stillServes(session)
        session.close()
