"""
A browser-like HTTP client for the web pages: it keeps cookies, reads the
CSRF token from each page, and does not follow redirects (tests check
them).
"""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

from tests.harness import CaptureServer

_CSRF = re.compile(rb'<meta name="csrf-token" content="([^"]*)"')
_MAIN = re.compile(rb"<main[^>]*>(.*)</main>", re.S)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class WebClient:
    """
    One browser: its cookie jar, and the CSRF token of the last page.

    @ivar csrf: The token the last page carried (for the next form).
    """

    def __init__(self, server: CaptureServer) -> None:
        self.base = f"http://127.0.0.1:{server.ports['http']}"
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect
        )
        self.csrf = ""

    def request(
        self, method: str, path: str, fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """
        One request; C{fields} are sent form-encoded.  Returns status,
        headers (lower-case names) and body.
        """
        data = urllib.parse.urlencode(fields).encode() if fields is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers or {}
        )
        try:
            with self._opener.open(request, timeout=30) as response:
                status, head, body = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, head, body = error.code, error.headers, error.read()
        found = _CSRF.search(body)
        if found:
            self.csrf = found.group(1).decode()
        return status, {k.lower(): v for k, v in head.items()}, body

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path)

    def post(
        self, path: str, fields: dict[str, str] | None = None, csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """
        Submit a form, with this browser's CSRF token unless C{csrf} is
        false.
        """
        body = dict(fields or {})
        if csrf:
            if not self.csrf:
                self.get("/")
            body.setdefault("csrf", self.csrf)
        return self.request("POST", path, body, headers)

    def signIn(self, key: str) -> None:
        status, headers, body = self.post("/signin", {"key": key})
        assert status == 303 and headers["location"] == "/account", (status, body[:500])
        # As a browser does: follow the redirect, whose page carries the
        # CSRF token of the new session.
        self.get(headers["location"])

    def cookie(self, name: str) -> str | None:
        for cookie in self.cookies:
            if cookie.name == name:
                return cookie.value
        return None

    def setCookie(self, name: str, value: str) -> None:
        """
        Replace a cookie's value (to forge one).
        """
        for cookie in list(self.cookies):
            if cookie.name == name:
                cookie.value = value
                return
        raise KeyError(name)


def mainContent(body: bytes) -> bytes:
    """
    What a page shows in its C{<main>}: the part that differs between
    pages (the layout around it carries a per-browser CSRF token).
    """
    found = _MAIN.search(body)
    assert found, body[:300]
    return found.group(1)
