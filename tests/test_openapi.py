"""
The OpenAPI document at /api/openapi.json: valid OpenAPI 3.1, one operation
for every route and a route for every operation, and real answers of a
running server valid against its response schemas.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from capture.ids import newApiKey
from capture.web.api import MailsacAPI
from capture.web.openapi import document
from tests.harness import CaptureServer

_URI = "urn:capture:openapi"
_METHODS = ("get", "put", "post", "delete", "patch")

# Routes documented now whose code other branches are adding; the lead
# empties this set while merging them (test_pendingRoutesAreStillPending
# fails for an entry that has become a real route).
PENDING: set[tuple[str, str]] = set()


def routes() -> set[tuple[str, str]]:
    """
    Every (method, path) the Klein app routes, paths in OpenAPI's
    C{{name}} form; HEAD and OPTIONS, which Werkzeug adds, left out.
    """
    found = set()
    for rule in MailsacAPI.app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((method, path))
    return found


def operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item if method in _METHODS
    }


def test_documentIsValidOpenAPI31() -> None:
    """
    The document validates as OpenAPI 3.1, and operation ids are unique.
    """
    spec = document()
    assert spec["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(spec).validate()
    ids = [spec["paths"][p][m.lower()]["operationId"] for m, p in operations(spec)]
    assert len(ids) == len(set(ids))


def test_everyRouteIsDocumented() -> None:
    """
    Every route is an operation of the document, and every operation is a
    route, except those other branches are adding (L{PENDING}).
    """
    documented = operations(document())
    real = routes()
    assert real - documented == set(), "routes missing from the document"
    assert documented - real - PENDING == set(), "operations that are no route"


def test_pendingRoutesAreStillPending() -> None:
    """
    A PENDING entry that has become a real route must leave the set (so
    the exception cannot outlive its reason), and each is documented.
    """
    assert PENDING & routes() == set(), "now real routes: remove them from PENDING"
    assert PENDING <= operations(document())


def test_refusalsDocumented() -> None:
    """
    Every operation with an C{{email}} documents the 400 for a malformed
    address; every one that needs a key, the 401; every extension carries
    its tag.
    """
    spec = document()
    for method, path in operations(spec):
        operation = spec["paths"][path][method.lower()]
        if "{email}" in path:
            assert "400" in operation["responses"], (method, path)
        if operation.get("security", spec["security"]) and path != "/incoming-messages":
            assert "401" in operation["responses"], (method, path)
        if operation.get("x-capture-extension"):
            assert "Capture extensions" in operation["tags"], (method, path)
        assert operation["description"] or operation["summary"], (method, path)


class _Checker:
    """
    Calls a real server and validates each answer against the document's
    schema for its operation and status.
    """

    def __init__(self, server: CaptureServer, spec: dict[str, Any]) -> None:
        self.server = server
        self.spec = spec
        self.registry = Registry().with_resource(
            _URI, Resource.from_contents(spec, default_specification=DRAFT202012)
        )

    def validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"{_URI}#{pointer}"}, registry=self.registry)

    def schemaPointer(self, method: str, template: str, status: int, mediaType: str) -> str:
        """
        The JSON pointer of the schema the document gives for this answer.
        """
        escaped = template.replace("~", "~0").replace("/", "~1")
        operation = self.spec["paths"][template][method.lower()]
        responses = operation["responses"]
        assert str(status) in responses, f"{method} {template}: {status} not documented"
        pointer = f"/paths/{escaped}/{method.lower()}/responses/{status}"
        response = responses[str(status)]
        if "$ref" in response:
            pointer = response["$ref"][1:]
            response = self.spec["components"]["responses"][pointer.rsplit("/", 1)[1]]
        content = response.get("content", {})
        if mediaType not in content:
            assert "*/*" in content, f"{method} {template}: {mediaType} not documented"
            mediaType = "*/*"
        return f"{pointer}/content/{mediaType.replace('/', '~1')}/schema"

    def __call__(self, method: str, template: str, values: dict[str, str],
                 expect: int = 200, key: str | None = None, query: str = "",
                 body: Any = None) -> Any:
        path = template
        for name, value in values.items():
            path = path.replace("{" + name + "}", urllib.parse.quote(value, safe="@"))
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.server.ports['http']}{path}{query}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={**({"Mailsac-Key": key} if key else {}),
                     **({} if body is None else {"Content-Type": "application/json"})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, headers, data = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, data = error.code, error.headers, error.read()
        assert status == expect, (method, path, status, data[:500])
        if status == 204:
            assert data == b""
            return None
        mediaType = headers.get_content_type()
        pointer = self.schemaPointer(method, template, status, mediaType)
        value = json.loads(data) if mediaType == "application/json" else data.decode("latin-1")
        self.validator(pointer).validate(value)
        return value


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


_ATTACHED = (
    b"From: Ann <ann@example.net>\r\nTo: someone@example.com\r\nCc: Bo <bo@example.org>\r\n"
    b"Subject: schema check\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
    b"--B\r\nContent-Type: text/html\r\n\r\n<p>see https://example.com/a</p>"
    b'<img src="cid:logo@x">\r\n'
    b'--B\r\nContent-Type: application/pdf; name="r.pdf"\r\n'
    b'Content-Disposition: attachment; filename="r.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n" + _base64(b"%PDF-1 x" * 40)
    + b"--B\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + _base64(b"\x89PNG" * 30)
    + b"--B--\r\n"
)


def _send(server: CaptureServer, to: str, message: bytes) -> str:
    client = server.smtp()
    client.mail("sender@example.com")
    client.rcpt(to)
    code, reply = client.data(message)
    client.quit()
    match = re.match(rb"OK : queued as ([0-9A-Za-z]+)", reply)
    assert code == 250 and match
    return match.group(1).decode() + "-0"


def _address() -> str:
    return f"openapi-{secrets.token_hex(6)}@example.com"


def test_servedDocument(server: CaptureServer) -> None:
    """
    /api/openapi.json answers the document without a key, as JSON, and
    is valid against its own operation's schema.
    """
    check = _Checker(server, document())
    assert check("GET", "/api/openapi.json", {}) == document()
    assert check("GET", "/api/openapi.json", {}, key=server.key) == document()


def test_messageAnswersMatchTheDocument(server: CaptureServer) -> None:
    """
    Real answers of the message routes (a message with Cc, links and two
    attachments), and their refusals, are valid against the document.
    """
    check = _Checker(server, document())
    address = _address()
    messageId = _send(server, address, _ATTACHED)
    one = {"email": address}
    ids = {"email": address, "messageId": messageId}
    listed = check("GET", "/api/addresses/{email}/messages", one)
    assert [m["_id"] for m in listed] == [messageId] and listed[0]["cc"]
    assert len(listed[0]["attachments"]) == 2 and listed[0]["links"]
    check("GET", "/api/addresses/{email}/message-count", one)
    check("GET", "/api/addresses/{email}/messages/{messageId}", ids)
    described = check("GET", "/api/addresses/{email}/messages/{messageId}/attachments", ids)
    check("GET", "/api/addresses/{email}/messages/{messageId}/attachments/{identifier}",
          {**ids, "identifier": described[0]["checksum"]})
    for style in ("json", "json-ordered", "plain"):
        check("GET", "/api/addresses/{email}/messages/{messageId}/headers", ids,
              query=f"?messageHeadersFormat={style}")
    check("GET", "/api/headers/{email}/{messageId}", ids, query="?format=json-ordered")
    for template in ("/api/raw/{email}/{messageId}", "/api/text/{email}/{messageId}",
                     "/api/body/{email}/{messageId}", "/api/dirty/{email}/{messageId}"):
        check("GET", template, ids, query="?download=1")
    base = "/api/addresses/{email}/messages/{messageId}"
    starred = check("PUT", base + "/star", ids, key=server.key)
    assert starred["savedBy"] == server.account
    check("GET", "/api/addresses/starred/messages", {}, key=server.key, query="?limit=5")
    check("PUT", base + "/labels/{label}", {**ids, "label": "a b"}, key=server.key)
    check("DELETE", base + "/labels/{label}", {**ids, "label": "a b"}, key=server.key)
    check("PUT", base + "/folder/{folder}", {**ids, "folder": "trash"}, key=server.key,
          body={"_mailsacKey": server.key})
    check("PUT", base + "/read/{state}", {**ids, "state": "true"}, key=server.key)
    # Refusals, each with the error body the document gives.
    check("GET", base, {**ids, "messageId": "nope-0"}, expect=404)
    check("GET", "/api/addresses/{email}/messages", one, expect=400, query="?limit=1001")
    check("GET", "/api/addresses/{email}/messages", {"email": "not-an-address"}, expect=400)
    check("GET", "/api/addresses/{email}/messages", one, expect=401, key=newApiKey())
    check("PUT", base + "/folder/{folder}", {**ids, "folder": "nowhere"}, expect=400,
          key=server.key)
    check("PUT", base + "/star", ids, key=server.key)
    check("DELETE", base, ids)
    check("GET", base, ids, expect=404)
    check("GET", "/livez", {})


def test_accountAnswersMatchTheDocument(server: CaptureServer) -> None:
    """
    Owned addresses (reserve, read, change, release), another account's
    inbox (401/403), the unified inbox, search and /api/me answer as the
    document says.
    """
    check = _Checker(server, document())
    address = _address()
    one = {"email": address}
    check("GET", "/api/addresses/{email}/availability", one)
    check("GET", "/api/addresses/{email}", one, key=server.key)
    check("POST", "/api/addresses/{email}", one, key=server.key)
    check("POST", "/api/addresses/{email}", one, expect=400, key=server.key)
    check("GET", "/api/addresses/{email}", one, key=server.key)
    check("PUT", "/api/addresses/{email}", one, key=server.key,
          body={"info": "schema", "enablews": True, "webhook": "https://hooks.example/x"})
    check("PUT", "/api/private-address-forwarding/{email}", one, key=server.key,
          body={"forward": None})
    check("PUT", "/api/addresses/{email}", one, expect=400, key=server.key,
          body={"webhook": "ftp://x"})
    listed = check("GET", "/api/addresses", {}, key=server.key)
    assert address in [a["_id"] for a in listed]
    messageId = _send(server, address, b"Subject: owned schema\r\n\r\nx\r\n")
    other = f"openapi{secrets.token_hex(4)}"
    otherKey = server.cli("account", "create", other).stdout.strip().splitlines()[-1]
    check("GET", "/api/addresses/{email}/messages", one, expect=403, key=otherKey)
    check("GET", "/api/addresses/{email}/messages", one, expect=401)
    check("GET", "/api/addresses/{email}", one, expect=401, key=otherKey)
    check("GET", "/api/webhook-attempts", {}, key=server.key)
    check("GET", "/api/addresses/{email}/webhook-attempts", one, key=server.key)
    check("GET", "/api/addresses/{email}/webhook-attempts", one, expect=401, key=otherKey)
    check("GET", "/api/addresses/{email}/messages/{messageId}",
          {**one, "messageId": messageId}, expect=403, key=otherKey)
    check("GET", "/api/inbox", {}, key=server.key, query="?limit=3&skip=0")
    check("GET", "/api/inbox-search", {}, key=server.key, query="?query=schema")
    check("GET", "/api/inbox-filter", {}, key=server.key, query="?andSubjectIncludes=owned")
    check("GET", "/api/inbox-filter", {}, expect=400, key=server.key)
    check("GET", "/api/me", {}, key=server.key)
    check("GET", "/api/me", {}, expect=401, key=newApiKey())
    check("DELETE", "/api/addresses/{email}/messages", one, expect=401, key=otherKey)
    check("DELETE", "/api/addresses/{email}/messages", one, expect=204, key=server.key)
    check("DELETE", "/api/addresses/{email}", one, key=server.key)
    check("DELETE", "/api/addresses/{email}", one, expect=400, key=server.key)
    # The server still serves the next client after every refusal above.
    check("GET", "/api/openapi.json", {})
    check("GET", "/readyz", {})
    check("POST", "/api/auth/logout", {})
    check("GET", "/metrics", {})


def test_domainAndStatsAnswersMatchTheDocument(server: CaptureServer) -> None:
    """
    Custom domains (claim, list, read, privacy, messages, purge, release),
    bulk reservation, the legacy labels route and /api/me/stats answer as
    the document says.
    """
    check = _Checker(server, document())
    domain = {"domain": f"s{secrets.token_hex(4)}.example"}
    check("POST", "/api/domains/{domain}", domain, key=server.key, body={"isPrivate": True})
    check("POST", "/api/domains/{domain}", domain, expect=400, key=server.key)
    check("GET", "/api/domains", {}, key=server.key)
    messageId = _send(server, f"a@{domain['domain']}", b"Subject: domain schema\r\n\r\nx\r\n")
    check("GET", "/api/domains/{domain}", domain, key=server.key)
    check("GET", "/api/domains/{domain}/messages", domain, key=server.key)
    check("PUT", "/api/domains/{domain}/privacy/{isPrivate}", {**domain, "isPrivate": "false"},
          key=server.key)
    check("PUT", "/api/addresses/{email}/messages/{messageId}/labels",
          {"email": f"a@{domain['domain']}", "messageId": messageId}, key=server.key,
          body={"labels": ["x", "y"]})
    check("POST", "/api/private-addresses-bulk", {}, key=server.key,
          body={"addresses": [_address(), _address()]})
    check("POST", "/api/private-addresses-bulk", {}, expect=400, key=server.key,
          body={"addresses": []})
    check("GET", "/api/me/stats", {}, key=server.key)
    check("GET", "/api/me/stats", {}, expect=403, key=server.key,
          query="?overrideAccountId=someone-else")
    check("POST", "/api/domains/{domain}/delete-all-domain-mail", domain, expect=204,
          key=server.key)
    check("DELETE", "/api/domains/{domain}", domain, key=server.key)
    check("GET", "/api/domains/{domain}", domain, expect=404, key=server.key)
    check("GET", "/api/domains/{domain}/messages", domain, expect=404, key=server.key)


def test_schemasRefuseDrift(server: CaptureServer) -> None:
    """
    The message schema refuses a field the document does not list and
    misses a field it requires: a change to messageJSON without the
    document fails the tests above.
    """
    check = _Checker(server, document())
    address = _address()
    _send(server, address, b"Subject: drift\r\n\r\nx\r\n")
    message = check("GET", "/api/addresses/{email}/messages", {"email": address})[0]
    validator = check.validator("/components/schemas/EmailMessage")
    validator.validate(message)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**message, "newField": 1})
    renamed = {("savedby" if k == "savedBy" else k): v for k, v in message.items()}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(renamed)


def test_documentedLimitIsTheServersLimit(server: CaptureServer) -> None:
    """
    The range the document gives for C{limit} is the one the server
    enforces: its maximum is taken, one more is 400.
    """
    limit = document()["components"]["parameters"]["limit"]["schema"]
    check = _Checker(server, document())
    one = {"email": _address()}
    check("GET", "/api/addresses/{email}/messages", one, query=f"?limit={limit['maximum']}")
    check("GET", "/api/addresses/{email}/messages", one, query=f"?limit={limit['minimum']}")
    check("GET", "/api/addresses/{email}/messages", one, expect=400,
          query=f"?limit={limit['maximum'] + 1}")
