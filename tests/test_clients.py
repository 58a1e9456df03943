"""
Real third-party SMTP clients against a running Capture: Mailsac's
nodemailer snippet and swaks, as the README shows them.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess

import pytest

from tests.harness import CaptureServer

_NODE_DIR = os.path.join(os.path.dirname(__file__), "node")
_QUEUED = re.compile(r"250 OK : queued as ([0-9A-Za-z]+)")


def _storedQueueIds(server: CaptureServer) -> set[str]:
    with sqlite3.connect(os.path.join(server.data, "capture.sqlite3")) as db:
        return {row[0] for row in db.execute("SELECT queue_id FROM messages")}


def test_mailsacNodemailerSnippet(server: CaptureServer) -> None:
    """
    The nodemailer example of Mailsac's Email Capture page, unchanged but
    for host, port and credentials, upgrades with STARTTLS, logs in with the
    account name and API key, and prints C{response: '250 OK : queued as
    <id>'}; the id names a stored message.
    """
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(_NODE_DIR, "node_modules", "nodemailer")):
        pytest.fail("node and tests/node/node_modules are installed by scripts/test")
    env = {
        **os.environ,
        "CAPTURE_PORT": str(server.ports["smtp"]),
        "CAPTURE_USER": server.account,
        "CAPTURE_KEY": server.key or "",
        "NODE_EXTRA_CA_CERTS": os.path.join(server.tlsDir, "localhost.pem"),
    }
    result = subprocess.run(
        [node, "mailsac_capture_snippet.js"], cwd=_NODE_DIR, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"response: '250 OK : queued as ([0-9A-Za-z]+)'\n", result.stdout)
    assert match, result.stdout
    assert match.group(1) in _storedQueueIds(server)


def test_swaksWithTLSAndAuth(server: CaptureServer) -> None:
    """
    C{swaks --tls --auth} delivers a message: STARTTLS, AUTH, and the
    queued-as reply naming a stored message.
    """
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.fail("swaks is installed by scripts/test")
    result = subprocess.run(
        [
            swaks, "--server", f"localhost:{server.ports['smtp']}", "--tls",
            "--auth", "LOGIN", "--auth-user", server.account,
            "--auth-password", server.key or "",
            "--from", "app@example.com", "--to", "swaks-user@example.org",
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = _QUEUED.search(result.stdout)
    assert match, result.stdout
    assert match.group(1) in _storedQueueIds(server)
