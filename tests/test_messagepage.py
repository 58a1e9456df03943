"""
The message page and its parts (body frame, raw, attachments, delete and
star) on a real server, read with a cookie-keeping HTTP client.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import struct
import urllib.parse
import zlib
from email.message import EmailMessage

import pytest

from capture.web.safehtml import clean
from tests.harness import CaptureServer
from tests.test_api import call, send
from tests.webclient import WebClient, mainContent


def _png(width: int, height: int) -> bytes:
    """
    A small PNG (a blue gradient), so thumbnails show something.
    """
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (30 + 180 * x // width, 95, 191))
        for _ in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


PNG = _png(64, 40)
BODY_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "font-src data:; form-action 'none'; frame-ancestors 'self'"
)
REMOTE_POLICY = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "style-src 'unsafe-inline' *; img-src * data:; font-src * data:; "
    "form-action 'none'; frame-ancestors 'self'"
)
_NOT_FOUND = "There is no such inbox or message, or it is private."


def address() -> str:
    return f"page-{secrets.token_hex(6)}@example.com"


def richMessage(to: str, link: str = "https://app.example.com/reset?token=abc123&x=1") -> bytes:
    """
    A message with text and HTML bodies, an inline (cid:) image, a link and
    three attachments: a CSV with a non-ASCII name, a PNG, and an HTML file.
    """
    message = EmailMessage()
    message["From"] = "Alice <alice@example.net>"
    message["To"] = to
    message["Cc"] = "carol@example.org"
    message["Subject"] = "Reset your password"
    message.set_content(f"Hello,\nreset here: {link}\n")
    message.add_alternative(
        f'<p style="color: #1f5fbf">Hello, <a href="{link}">reset here</a>.</p>'
        '<img src="cid:logo1" alt="logo">',
        subtype="html",
    )
    message.get_payload()[1].add_related(PNG, maintype="image", subtype="png", cid="<logo1>")
    message.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv",
                           filename="report \u00e9.csv")
    message.add_attachment(PNG, maintype="image", subtype="png", filename="dot.png")
    message.add_attachment(b"<script>alert(1)</script>", maintype="text", subtype="html",
                           filename="page.html")
    return message.as_bytes().replace(b"\n", b"\r\n")


def hostileHTML(trap: str) -> str:
    """
    HTML that tries everything issue 5 names: scripts, event handlers,
    C{javascript:} and C{data:} links, C{<meta refresh>}, CSS C{url()}
    tracking (inline, in a style sheet, by C{@import}), forms, SVG scripts,
    plus other ways to fetch (C{<link>}, C{<base>}, frames, objects,
    C{srcset}, C{poster}, C{background}).  Every fetch goes to C{trap};
    every script would set C{window.__pwned}.  One plain remote image
    (C{trap/remote.png}) is what "Load remote content" must show.
    """
    return f"""<html><head>
<base href="{trap}/base/">
<meta http-equiv="refresh" content="0;url={trap}/refresh">
<link rel="stylesheet" href="{trap}/link.css">
<link rel="prefetch" href="{trap}/prefetch">
<link rel="dns-prefetch" href="{trap}/dns">
<style>@import url({trap}/import.css); @import "{trap}/import2.css";
body {{ background: url({trap}/sheet.png); }}
.x {{ background-image: image-set("{trap}/imageset.png" 1x); }}</style>
<script>window.__pwned = "script"; alert("script");</script>
</head><body onload="window.__pwned = 'onload'">
<p id="hello">Hostile hello</p>
<img src="{trap}/remote.png" alt="remote image" id="remote">
<img src="x:y" onerror="window.__pwned = 'onerror'; alert('onerror')">
<img srcset="{trap}/srcset.png 1x" alt="by set">
<a href="javascript:window.__pwned = 'javascript'" id="jslink">javascript link</a>
<a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;" id="datalink">data link</a>
<div style="background: url({trap}/inline.png); width: 10px; height: 10px">styled</div>
<form action="{trap}/form" method="post"><input name="q" value="x"><button>Send</button></form>
<svg xmlns="http://www.w3.org/2000/svg"><script>window.__pwned = "svg"</script>
<image href="{trap}/svg.png" width="10" height="10"/></svg>
<iframe src="{trap}/iframe"></iframe><object data="{trap}/object"></object>
<embed src="{trap}/embed"><video poster="{trap}/poster.png"></video>
<table background="{trap}/table.png"><tr><td>cell</td></tr></table>
</body></html>"""


def hostileMessage(to: str, trap: str) -> bytes:
    message = EmailMessage()
    message["From"] = "mallory@example.net"
    message["To"] = to
    message["Subject"] = "Hostile HTML"
    message.set_content(hostileHTML(trap), subtype="html")
    return message.as_bytes().replace(b"\n", b"\r\n")


def deliver(server: CaptureServer, to: str, message: bytes) -> str:
    """
    Send C{message} to C{to} (as the admin account, whose mail is not
    private) and return the copy's C{_id}.
    """
    return send(server, to, message) + "-0"


def page(inbox: str, messageId: str, rest: str = "") -> str:
    return f"/inbox/{inbox}/{messageId}{rest}"


def assertNotFound(status: int, body: bytes) -> None:
    assert status == 404
    assert _NOT_FOUND.encode() in body


def test_messagePage(server: CaptureServer) -> None:
    """
    The page shows subject, sender, recipients, size, the tabs with the
    HTML tab first (its frame sandboxed, pointing at /body), the links of
    the message as new-window links and the attachments with thumbnails for
    images; opening it marks the message read.
    """
    inbox = address()
    messageId = deliver(server, inbox, richMessage(inbox))
    browser = WebClient(server)
    status, headers, body = browser.get(page(inbox, messageId))
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    main = mainContent(body).decode()
    assert '<h1 id="message-subject">Reset your password</h1>' in main
    assert "<dd>Alice &lt;alice@example.net&gt;</dd>" in main
    assert f"<dd>{inbox}</dd>" in main and "<dd>carol@example.org</dd>" in main
    assert re.search(r'role="tab" id="tab-html" tabindex="0" aria-selected="true"', main)
    assert (f'<iframe src="/inbox/{inbox}/{messageId}/body" sandbox="" title="Message body" '
            'referrerpolicy="no-referrer" id="message-frame"></iframe>') in main
    # Its link opens from the frame only with remote content allowed.
    assert "Remote content is blocked." in main
    # The link of both bodies, once.
    assert ('<h2 id="links-heading">Links (1)</h2><ol><li><a href="https://app.example.com/'
            'reset?token=abc123&amp;x=1" target="_blank" rel="noopener noreferrer">'
            'https://app.example.com/reset?token=abc123&amp;x=1</a></li></ol>') in main
    for index, name in ((1, "report \u00e9.csv"), (2, "dot.png"), (3, "page.html")):
        assert f'/attachments/{index}" download="" class="name">{name}</a>' in main
    assert f'<img src="/inbox/{inbox}/{messageId}/attachments/2?inline=1"' in main
    assert "/attachments/1?inline=1" not in main and "/attachments/3?inline=1" not in main
    status, _, listed = call(server, "GET", f"/api/addresses/{inbox}/messages/{messageId}")
    assert json.loads(listed)["read"] is True
    # No star button for a visitor who is not signed in.
    assert 'id="star-form"' not in main and 'id="delete-form"' in main


def test_headDoesNotMarkRead(server: CaptureServer) -> None:
    """
    A HEAD of the message page (Klein routes it through the page's GET
    route) answers the page's status and type with no body, and leaves the
    message unread; the GET that follows marks it read.
    """
    inbox = address()
    messageId = deliver(server, inbox, richMessage(inbox))
    api = f"/api/addresses/{inbox}/messages/{messageId}"
    # Mailsac's read is null until the message is first marked.
    assert json.loads(call(server, "GET", api)[2])["read"] is None
    for _ in range(2):
        status, headers, body = call(server, "HEAD", page(inbox, messageId))
        assert (status, headers["content-type"], body) == (200, "text/html; charset=utf-8", b"")
        assert json.loads(call(server, "GET", api)[2])["read"] is None
    assert call(server, "GET", page(inbox, messageId))[0] == 200
    assert json.loads(call(server, "GET", api)[2])["read"] is True


def test_views(server: CaptureServer) -> None:
    """
    C{?view=} picks the tab shown without script; a text-only message has
    no HTML tab and opens on its text; an unknown view is the default one.
    An HTML message with nothing remote has no "remote content" notice.
    """
    inbox = address()
    rich = deliver(server, inbox, richMessage(inbox))
    plain = deliver(server, inbox, b"Subject: plain\r\n\r\nJust text & more\r\n")
    html = deliver(server, inbox, b"Subject: html\r\nContent-Type: text/html\r\n\r\n"
                                  b"<p>No <b>links</b>, no images.</p>\r\n")
    browser = WebClient(server)
    _, _, body = browser.get(page(inbox, rich) + "?view=headers")
    main = mainContent(body).decode()
    assert 'id="panel-headers" tabindex="0" class="panel panel-headers" aria-labelledby=' \
           '"tab-headers">' in main
    assert 'aria-labelledby="tab-html" hidden="hidden"' in main
    assert '<th scope="row">Subject</th><td>Reset your password</td>' in main
    _, _, body = browser.get(page(inbox, rich) + "?view=raw")
    main = mainContent(body).decode()
    assert 'aria-labelledby="tab-raw">' in main and "Content-Type: multipart/mixed" in main
    _, _, body = browser.get(page(inbox, html))
    main = mainContent(body).decode()
    assert 'aria-controls="panel-html"' in main and "<iframe" in main
    assert "Remote content is blocked." not in main  # nothing remote in it
    for query in ("", "?view=html", "?view=nonsense"):
        _, _, body = browser.get(page(inbox, plain) + query)
        main = mainContent(body).decode()
        assert 'id="tab-html"' not in main and "<iframe" not in main
        assert 'aria-selected="true" aria-controls="panel-text"' in main
        assert '<pre class="text-body">Just text &amp; more\r\n</pre>' in main


def test_bodyPolicy(server: CaptureServer) -> None:
    """
    The body document carries its own policy, exactly: sandboxed, nothing
    remote, no forms, framed only by Capture; C{?remote=1} allows remote
    images, styles and fonts and popups, never scripts or same-origin.
    C{cid:} images are inlined as C{data:} URIs (a sandboxed frame has no
    origin to fetch them from).
    """
    inbox = address()
    messageId = deliver(server, inbox, richMessage(inbox))
    for query, policy in (("", BODY_POLICY), ("?remote=1", REMOTE_POLICY)):
        status, headers, body = call(server, "GET", page(inbox, messageId, "/body" + query))
        assert status == 200
        assert headers["content-security-policy"] == policy
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        text = body.decode()
        assert '<img src="data:image/png;base64,' + base64.b64encode(PNG).decode() in text
        assert 'href="https://app.example.com/reset?token=abc123&amp;x=1" target="_blank" ' \
               'rel="noopener noreferrer"' in text
        assert '<p style="color: #1f5fbf">' in text


_TRAP = "http://trap.invalid:9"


@pytest.mark.parametrize(
    "forbidden",
    ["<script", "__pwned", "onload", "onerror", "javascript:", "data:text", "http-equiv",
     "<meta http", "<base", "<link", "@import", "url(", "image-set(", "<form", "<input",
     "<svg", "<iframe", "<object", "<embed", "<video", "srcset", "background=", "trap.invalid"],
)
def test_hostileHTMLSanitized(server: CaptureServer, forbidden: str) -> None:
    """
    The body served for a hostile message holds none of its scripts,
    handlers, script and data links, refresh, base, links to style sheets,
    CSS that fetches, forms, SVG, frames or objects, and no URL of the
    trap at all; its text stays.
    """
    inbox = address()
    messageId = deliver(server, inbox, hostileMessage(inbox, _TRAP))
    status, _, body = call(server, "GET", page(inbox, messageId, "/body"))
    assert status == 200
    text = body.decode()
    assert forbidden not in text
    assert "Hostile hello" in text and "cell" in text and 'alt="remote image"' in text


def test_hostileHTMLRemoteAllowed(server: CaptureServer) -> None:
    """
    With remote content asked for, remote images and CSS come back (the
    policy allows them), and everything that runs or navigates stays out.
    The page says remote content is blocked until then.
    """
    inbox = address()
    messageId = deliver(server, inbox, hostileMessage(inbox, _TRAP))
    _, _, body = call(server, "GET", page(inbox, messageId, "/body?remote=1"))
    text = body.decode()
    assert f'<img src="{_TRAP}/remote.png" alt="remote image" id="remote">' in text
    assert f"url({_TRAP}/sheet.png)" in text
    for forbidden in ("<script", "__pwned", "javascript:", "http-equiv", "<form", "<svg",
                      "<iframe", "<base", "<link"):
        assert forbidden not in text
    _, _, page1 = WebClient(server).get(page(inbox, messageId))
    main = mainContent(page1).decode()
    assert "Remote content is blocked." in main
    assert '<a href="?view=html&amp;remote=1" id="load-remote"' in main
    # Image, style and form URLs are not links to follow.
    assert "Links (" not in main
    _, _, page2 = WebClient(server).get(page(inbox, messageId) + "?view=html&remote=1")
    main = mainContent(page2).decode()
    assert "Remote content is shown." in main
    assert ('sandbox="allow-popups allow-popups-to-escape-sandbox"') in main
    assert f'src="/inbox/{inbox}/{messageId}/body?remote=1"' in main


def test_attachments(server: CaptureServer) -> None:
    """
    Attachments download as C{application/octet-stream} with a safe file
    name (and the real one in C{filename*}); only raster images are served
    inline with their type, on C{?inline=1}; an HTML attachment never is.
    """
    inbox = address()
    messageId = deliver(server, inbox, richMessage(inbox))
    status, headers, body = call(server, "GET", page(inbox, messageId, "/attachments/1"))
    assert (status, body) == (200, b"a,b\n1,2\n")
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == (
        "attachment; filename=\"report _.csv\"; filename*=UTF-8''report%20%C3%A9.csv"
    )
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"
    )
    status, headers, body = call(server, "GET", page(inbox, messageId, "/attachments/2?inline=1"))
    assert (status, body, headers["content-type"]) == (200, PNG, "image/png")
    assert headers["content-disposition"] == "inline; filename=\"dot.png\"; filename*=UTF-8''dot.png"
    status, headers, _ = call(server, "GET", page(inbox, messageId, "/attachments/2"))
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"].startswith("attachment;")
    status, headers, body = call(server, "GET", page(inbox, messageId, "/attachments/3?inline=1"))
    assert status == 200 and body == b"<script>alert(1)</script>"
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"].startswith('attachment; filename="page.html"')
    for bad in ("/attachments/4", "/attachments/-1", "/attachments/x", "/attachments/"):
        status, _, body = call(server, "GET", page(inbox, messageId, bad))
        assertNotFound(status, body)
    status, _, _ = call(server, "GET", page(inbox, messageId, "/attachments/0"))
    assert status == 200


def test_raw(server: CaptureServer) -> None:
    """
    C{/raw} is the message as stored, as a C{.eml} download.
    """
    inbox = address()
    messageId = deliver(server, inbox, b"Subject: raw\r\n\r\nbody\r\n")
    status, headers, body = call(server, "GET", page(inbox, messageId, "/raw"))
    assert status == 200 and body.startswith(b"Received: ") and body.endswith(b"\r\nbody\r\n")
    assert headers["content-type"] == "message/rfc822"
    assert headers["content-disposition"] == f'attachment; filename="{messageId}.eml"'
    _, _, api = call(server, "GET", f"/api/raw/{inbox}/{messageId}")
    assert body == api


@pytest.mark.parametrize("rest", ["", "/body", "/raw", "/attachments/0"])
def test_privateMessageLooksMissing(server: CaptureServer, rest: str) -> None:
    """
    A message in another account's private address is the same 404 page as
    a message that does not exist, on the page and every part of it; its
    owner sees it.
    """
    owner = f"own{secrets.token_hex(4)}"
    key = server.cli("account", "create", owner).stdout.strip().splitlines()[-1]
    inbox = address()
    status, _, _ = call(server, "POST", f"/api/addresses/{inbox}", key)
    assert status == 200
    messageId = deliver(server, inbox, richMessage(inbox))
    stranger = WebClient(server)
    assert server.key is not None
    stranger.signIn(server.key)
    status, _, hidden = stranger.get(page(inbox, messageId, rest))
    status2, _, missing = stranger.get(page(inbox, "NoSuchMessage000000000000-0", rest))
    assertNotFound(status, hidden)
    assert status2 == 404 and mainContent(hidden) == mainContent(missing)
    anonymous = WebClient(server)
    status, _, body = anonymous.get(page(inbox, messageId, rest))
    assertNotFound(status, body)
    ownerBrowser = WebClient(server)
    ownerBrowser.signIn(key)
    status, _, _ = ownerBrowser.get(page(inbox, messageId, rest))
    assert status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/inbox/not-an-address/{id}",
        "/inbox/{other}/{id}",
        "/inbox/{inbox}/NoSuchMessage000000000000-0",
        "/inbox/{inbox}/" + "x" * 500,
        "/inbox/{inbox}/%00",
        "/inbox/{inbox}/{id}/nothing",
        "/inbox/{inbox}/{id}/body/more",
    ],
)
def test_badIds(server: CaptureServer, path: str) -> None:
    """
    A malformed address, a message asked for under another inbox, an
    unknown, over-long or binary id, and an unknown sub-path are the 404
    page; the next request is served.
    """
    inbox = address()
    messageId = deliver(server, inbox, b"Subject: x\r\n\r\nx\r\n")
    browser = WebClient(server)
    status, headers, body = browser.get(path.format(inbox=inbox, other=address(), id=messageId))
    assertNotFound(status, body)
    assert headers["content-type"] == "text/html; charset=utf-8"
    status, _, _ = browser.get(page(inbox, messageId))
    assert status == 200


def test_delete(server: CaptureServer) -> None:
    """
    Delete from the form: 303 to the inbox, and the message is gone; from
    a script (C{Accept: application/json}): C{{"ok": true}}.
    """
    inbox = address()
    first = deliver(server, inbox, b"Subject: one\r\n\r\n1\r\n")
    second = deliver(server, inbox, b"Subject: two\r\n\r\n2\r\n")
    browser = WebClient(server)
    browser.get(page(inbox, first))
    status, headers, _ = browser.post(page(inbox, first, "/delete"))
    assert (status, headers["location"]) == (303, f"/inbox/{inbox}")
    status, _, body = browser.get(page(inbox, first))
    assertNotFound(status, body)
    status, headers, body = browser.post(page(inbox, second, "/delete"),
                                         headers={"Accept": "application/json"})
    assert (status, json.loads(body)) == (200, {"ok": True})
    assert headers["content-type"] == "application/json; charset=utf-8"
    status, _, body = call(server, "GET", f"/api/addresses/{inbox}/messages")
    assert json.loads(body) == []
    # Deleting what is gone: the 404, as page or JSON.
    status, _, body = browser.post(page(inbox, second, "/delete"))
    assertNotFound(status, body)
    status, _, body = browser.post(page(inbox, second, "/delete"),
                                   headers={"Accept": "application/json"})
    assert (status, json.loads(body)) == (404, {"message": "Nothing here", "error": "Not Found"})


@pytest.mark.parametrize("action, fields", [("/delete", {}), ("/star", {"starred": "1"})])
@pytest.mark.parametrize("csrf", ["none", "wrong", "another browser's"])
def test_csrfRefused(server: CaptureServer, action: str, fields: dict[str, str],
                     csrf: str) -> None:
    """
    Both POSTs without this browser's CSRF token get the 403 page (or 403
    JSON for a script) and change nothing; the next request is served.
    """
    inbox = address()
    messageId = deliver(server, inbox, b"Subject: keep\r\n\r\nkeep\r\n")
    browser = WebClient(server)
    assert server.key is not None
    browser.signIn(server.key)
    other = WebClient(server)
    other.get("/")
    token = {"none": None, "wrong": "x" * 43, "another browser's": other.csrf}[csrf]
    form = dict(fields, **({"csrf": token} if token else {}))
    status, _, body = browser.post(page(inbox, messageId, action), form, csrf=False)
    assert status == 403 and b"This form has expired" in body
    status, headers, body = browser.post(page(inbox, messageId, action), form, csrf=False,
                                         headers={"Accept": "application/json"})
    assert (status, json.loads(body)) == (
        403, {"message": "This form has expired", "error": "Forbidden"}
    )
    status, _, body = call(server, "GET", f"/api/addresses/{inbox}/messages/{messageId}")
    assert status == 200 and json.loads(body)["savedBy"] is None


def test_star(server: CaptureServer) -> None:
    """
    A signed-in reader stars (C{starred=1}) and unstars (C{starred=0}) a
    message, back to the message each time; the page shows the state.  A
    visitor who is not signed in gets 401; a bad C{starred} gets 400.
    """
    inbox = address()
    messageId = deliver(server, inbox, b"Subject: star me\r\n\r\nx\r\n")
    anonymous = WebClient(server)
    status, _, body = anonymous.post(page(inbox, messageId, "/star"), {"starred": "1"})
    assert status == 401 and b"Sign in first" in body
    status, _, body = anonymous.post(page(inbox, messageId, "/star"), {"starred": "1"},
                                     headers={"Accept": "application/json"})
    assert (status, json.loads(body)) == (401, {"message": "Sign in first",
                                                "error": "Unauthorized"})
    browser = WebClient(server)
    assert server.key is not None
    browser.signIn(server.key)
    status, headers, _ = browser.post(page(inbox, messageId, "/star"), {"starred": "1"})
    assert (status, headers["location"]) == (303, page(inbox, messageId))
    _, _, body = call(server, "GET", f"/api/addresses/{inbox}/messages/{messageId}", server.key)
    assert json.loads(body)["savedBy"] == server.account
    _, _, body = browser.get(page(inbox, messageId))
    main = mainContent(body).decode()
    assert '<input type="hidden" name="starred" value="0" />' in main
    assert 'aria-pressed="true"' in main and "<dd>by you</dd>" in main
    # Starred by the admin: gone from everyone else's view of the inbox.
    status, _, body = anonymous.get(page(inbox, messageId))
    assertNotFound(status, body)
    status, _, body = browser.post(page(inbox, messageId, "/star"), {"starred": "0"},
                                   headers={"Accept": "application/json"})
    assert (status, json.loads(body)) == (200, {"ok": True})
    _, _, body = call(server, "GET", f"/api/addresses/{inbox}/messages/{messageId}")
    assert json.loads(body)["savedBy"] is None
    for bad in ({"starred": "2"}, {}):
        status, _, body = browser.post(page(inbox, messageId, "/star"), bad)
        assert status == 400 and b"Star or unstar?" in body
    status, _, _ = browser.get(page(inbox, messageId))
    assert status == 200


def test_quotedPaths(server: CaptureServer) -> None:
    """
    An address written with a plus tag or in capitals finds the copy in its
    base inbox, as the API's paths do.
    """
    inbox = address()
    messageId = deliver(server, inbox, b"Subject: tagged\r\n\r\nx\r\n")
    local, _, domain = inbox.partition("@")
    tagged = urllib.parse.quote(f"{local.upper()}+tag@{domain}", safe="@")
    status, _, body = WebClient(server).get(f"/inbox/{tagged}/{messageId}")
    assert status == 200 and b"tagged" in body


@pytest.mark.parametrize(
    "source, expected",
    [
        ('<a href="&#106;avascript:alert(1)">a</a>', '<a target="_blank" rel="noopener noreferrer">a</a>'),
        ('<a href="java&#9;script:alert(1)">a</a>', '<a target="_blank" rel="noopener noreferrer">a</a>'),
        ('<a href="JaVaScRiPt:alert(1)">a</a>', '<a target="_blank" rel="noopener noreferrer">a</a>'),
        ('<img src=" HTTP://t/x.png">', "<img>"),
        ('<p style="color:red;background:URL(http://t/a)">x</p>', '<p style="color:red">x</p>'),
        ('<p style="background:u\\72l(http://t/a)">x</p>', "<p>x</p>"),
        ('<p style="background:-webkit-image-set(\'http://t/a\' 1x)">x</p>', "<p>x</p>"),
        ("<style>p{background:url(http://t/a</style>", "<style>p{background:none</style>"),
        ("<style>p{background:\\75rl(http://t/a)}</style>", "<style></style>"),
        ('<style>@IMPORT "http://t/i.css";p{color:red}</style>', "<style>p{color:red}</style>"),
        ("<style>@font-face{font-family:x;src:url(http://t/f.woff)}</style>",
         "<style>@font-face{font-family:x;src:none}</style>"),
        ('<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
         "<img>\"&gt;"),
        ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', "<img>"),
        ('<img src="data:image/png;base64,AAA" onload=x>', '<img src="data:image/png;base64,AAA">'),
    ],
)
def test_sanitizerEdges(source: str, expected: str) -> None:
    """
    Disguised script links, escaped or unclosed CSS fetches, upper-case
    schemes, parser tricks and SVG data images come out harmless.
    """
    document = clean(source).html
    assert document.split("<body>", 1)[1].rsplit("</body>", 1)[0] == expected


def test_starredInSomeoneElsesInbox(server: CaptureServer) -> None:
    """
    An account that starred a copy in an address another account then
    reserved may still read and unstar it, but not delete it: no Delete
    button, and the POST is refused with 403 (the owner may).
    """
    inbox = address()
    messageId = deliver(server, inbox, b"Subject: mine too\r\n\r\nx\r\n")
    assert server.key is not None
    status, _, _ = call(server, "PUT", f"/api/addresses/{inbox}/messages/{messageId}/star",
                        server.key)
    assert status == 200
    owner = f"own{secrets.token_hex(4)}"
    ownerKey = server.cli("account", "create", owner).stdout.strip().splitlines()[-1]
    status, _, _ = call(server, "POST", f"/api/addresses/{inbox}", ownerKey)
    assert status == 200
    starrer = WebClient(server)
    starrer.signIn(server.key)
    status, _, body = starrer.get(page(inbox, messageId))
    main = mainContent(body).decode()
    assert status == 200 and 'id="delete-form"' not in main and 'id="star-form"' in main
    status, _, body = starrer.post(page(inbox, messageId, "/delete"))
    assert status == 403 and b"Not yours to change" in body
    ownerBrowser = WebClient(server)
    ownerBrowser.signIn(ownerKey)
    status, _, body = ownerBrowser.get(page(inbox, messageId))
    assert status == 200 and b'id="delete-form"' in body
    status, headers, _ = ownerBrowser.post(page(inbox, messageId, "/delete"))
    assert (status, headers["location"]) == (303, f"/inbox/{inbox}")


@pytest.mark.serverOptions("--require-key")
def test_requireKey(freshServer: CaptureServer) -> None:
    """
    With C{--require-key}, a public message is the 404 page for a visitor
    who is not signed in, and readable once signed in.
    """
    inbox = address()
    messageId = deliver(freshServer, inbox, b"Subject: keyed\r\n\r\nx\r\n")
    visitor = WebClient(freshServer)
    for rest in ("", "/body", "/raw"):
        status, _, body = visitor.get(page(inbox, messageId, rest))
        assertNotFound(status, body)
    assert freshServer.key is not None
    visitor.signIn(freshServer.key)
    status, _, body = visitor.get(page(inbox, messageId))
    assert status == 200 and b"keyed" in body
