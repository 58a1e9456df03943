"""
A full store can be emptied through Capture: new mail stops at a reserve
(the last C{--store-reserve} octets of the disk, or of C{--max-store-size}
at most a quarter of it), so deletes, purges and retention still commit;
SMTP answers C{452 4.3.1} past it and accepts again once there is room;
nothing accepted is lost; a write that finds no room at all is 507 with
Mailsac's error body.
"""

from __future__ import annotations

import os
import secrets
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.harness import CaptureServer
from tests.test_api import call, callJSON
from tests.test_api_domains import withBody

_FILLER = b"Subject: filler\r\n\r\n" + (b"x" * 998 + b"\r\n") * 60
_STORE_FULL = {
    "message": "The store is full: delete or purge mail to make room, then try again.",
    "error": "Insufficient Storage",
}


def _owned(server: CaptureServer) -> tuple[str, str]:
    """
    An account and an address it owns (owned mail is never recycled by
    the public retention rules while the test runs).
    """
    name = f"full{secrets.token_hex(3)}"
    key = server.cli("account", "create", name).stdout.strip().splitlines()[-1]
    address = f"full-{secrets.token_hex(4)}@example.com"
    assert call(server, "POST", f"/api/addresses/{address}", key)[0] == 200
    return key, address


def _sendOne(client: smtplib.SMTP, address: str) -> tuple[int, bytes]:
    client.mail("sender@example.com")
    client.rcpt(address)
    return client.data(_FILLER)


def _fill(server: CaptureServer, address: str) -> list[str]:
    """
    Send 60 KiB messages until SMTP refuses one; return the queue ids of
    those accepted.
    """
    client = server.smtp()
    accepted = []
    for _ in range(2000):
        code, reply = _sendOne(client, address)
        if code != 250:
            assert (code, reply) == (452, b"4.3.1 Insufficient system storage, try again later")
            client.rset()
            break
        accepted.append(reply.split()[-1].decode())
    else:
        raise AssertionError("the store never filled")
    client.quit()
    assert len(accepted) > 3
    return accepted


def _listed(server: CaptureServer, address: str, key: str) -> list[str]:
    status, body = callJSON(server, "GET", f"/api/addresses/{address}/messages?limit=1000", key)
    assert status == 200
    return sorted(m["_id"].rsplit("-", 1)[0] for m in body)


def _accepts(server: CaptureServer, address: str) -> str:
    client = server.smtp()
    code, reply = _sendOne(client, address)
    client.quit()
    assert code == 250, reply
    return reply.split()[-1].decode()


@pytest.fixture
def smallStore() -> Iterator[CaptureServer]:
    """
    A 4 MiB store (a 1 MiB reserve), no retention pass in the way.
    """
    running = CaptureServer(extra=["--max-store-size", "4MiB", "--retention-interval", "0"])
    running.start()
    yield running
    running.stop()


def test_fullStoreIsEmptiedThroughTheAPI(smallStore: CaptureServer) -> None:
    """
    Filled until SMTP answers 452, the store still deletes one message
    (200) and purges the inbox (204) through the API (both were 500 on a
    full disk); SMTP accepts again after each; every message accepted
    before is listed until deleted.
    """
    key, address = _owned(smallStore)
    accepted = _fill(smallStore, address)
    assert _listed(smallStore, address, key) == sorted(accepted)
    first = f"{accepted[0]}-0"
    status, body = callJSON(smallStore, "DELETE", f"/api/addresses/{address}/messages/{first}",
                            key)
    assert (status, body["_id"]) == (200, first)
    # Settings still write inside the reserve.
    assert callJSON(smallStore, "PUT", f"/api/addresses/{address}/messages/"
                    f"{accepted[1]}-0/labels/kept", key)[0] == 200
    again = _accepts(smallStore, address)
    assert _listed(smallStore, address, key) == sorted([*accepted[1:], again])
    assert call(smallStore, "DELETE", f"/api/addresses/{address}/messages", key)[0] == 204
    assert _listed(smallStore, address, key) == []
    # Room for as much again as before, and more.
    refilled = _fill(smallStore, address)
    assert len(refilled) >= len(accepted) - 1
    assert "Traceback" not in smallStore.log()
    assert "The store is full: a message was put off with 452 4.3.1" in smallStore.log()


def test_writeWithNoRoomIs507(smallStore: CaptureServer) -> None:
    """
    With new mail refused and the reserve then used up by settings (bulk
    reserves of long addresses), a write that cannot be done answers 507
    with Mailsac's error body, not 500; what was stored is all there, and
    releasing the addresses and deleting mail still work.
    """
    key, address = _owned(smallStore)
    accepted = _fill(smallStore, address)
    refused = None
    reserved: list[str] = []
    for batch in range(200):
        addresses = [f"{'a' * 60}{i}@{'d' * 60}{batch}.example" for i in range(100)]
        status, body = withBody(smallStore, "POST", "/api/private-addresses-bulk",
                                {"addresses": addresses}, key)
        if status != 200:
            refused = (status, body)
            break
        reserved += addresses
    assert refused == (507, _STORE_FULL)
    assert callJSON(smallStore, "GET", "/livez")[0] == 200
    assert _listed(smallStore, address, key) == sorted(accepted)
    for name in reserved[:5]:
        assert call(smallStore, "DELETE", f"/api/addresses/{name}", key)[0] == 200
    status, body = callJSON(smallStore, "DELETE",
                            f"/api/addresses/{address}/messages/{accepted[0]}-0", key)
    assert status == 200
    assert "Traceback" not in smallStore.log()


def _mount(size: str) -> str | None:
    """
    A tmpfs of C{size} (a real full filesystem), or L{None} where this
    process may not mount one.
    """
    point = tempfile.mkdtemp(prefix="capture-tmpfs-")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", point],
                            capture_output=True)
    if result.returncode != 0:
        os.rmdir(point)
        return None
    return point


@pytest.fixture
def fullDisk() -> Iterator[CaptureServer]:
    point = _mount("40m") if shutil.which("mount") else None
    if point is None:
        pytest.skip("cannot mount a tmpfs here (needs root); the --max-store-size tests cover "
                    "the reserve")
    running = CaptureServer(directory=point, extra=["--retention-interval", "0",
                                                    "--store-reserve", "8MiB"])
    try:
        running.start()
        yield running
    finally:
        running.stop()
        subprocess.run(["umount", point], check=True)
        os.rmdir(point)


def test_fullFilesystemIsEmptiedThroughTheAPI(fullDisk: CaptureServer) -> None:
    """
    On a real 40 MiB filesystem: SMTP 452s with the reserve left, the
    API's deletes and purge answer 200 and 204 (they were 500), SMTP
    accepts again, nothing accepted is lost; with the disk then filled to the last
    byte by another program, an API write is 507 in Mailsac's shape.
    """
    key, address = _owned(fullDisk)
    accepted = _fill(fullDisk, address)
    assert _listed(fullDisk, address, key) == sorted(accepted)
    for queued in accepted[:6]:
        status, _ = callJSON(fullDisk, "DELETE",
                             f"/api/addresses/{address}/messages/{queued}-0", key)
        assert status == 200
    again = _accepts(fullDisk, address)
    assert _listed(fullDisk, address, key) == sorted([*accepted[6:], again])
    assert call(fullDisk, "DELETE", f"/api/addresses/{address}/messages", key)[0] == 204
    kept = _accepts(fullDisk, address)
    hog = os.path.join(fullDisk.directory, "hog")
    with open(hog, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    try:
        status, body = callJSON(fullDisk, "PUT", f"/api/addresses/{address}/messages/"
                                f"{kept}-0/labels/{'x' * 60}", key)
        for attempt in range(200):
            if status != 200:
                break
            status, body = withBody(
                fullDisk, "POST", "/api/private-addresses-bulk",
                {"addresses": [f"{'b' * 60}{i}@{'e' * 60}{attempt}.example"
                               for i in range(100)]}, key,
            )
        assert (status, body) == (507, _STORE_FULL)
    finally:
        os.remove(hog)
    assert _listed(fullDisk, address, key) == [kept]
    assert _accepts(fullDisk, address)
