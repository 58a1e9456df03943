"""
A private Dovecot IMAP server holding given messages, for tests that
compare Capture's answers with Dovecot's (the server issue 12 measures
Capture against).

Like C{bench/dovecot.py}, nothing of the system's Dovecot is read or
touched: its own configuration, runtime, state and maildir in a temporary
directory, IMAP only, on a loopback port. Dovecot runs as root (the master
as root, the session as C{nobody}), as a packaged Dovecot does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DOVECOT = "/usr/sbin/dovecot"
USER = "tester"
PASSWORD = "tester-password"

_CONFIG = """\
base_dir = {directory}/run
state_dir = {directory}/state
instance_name = capture-test-{port}
log_path = {directory}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{directory}/home/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {directory}/passwd
}}
userdb {{
  driver = passwd-file
  args = {directory}/passwd
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def available() -> bool:
    """
    Whether a private Dovecot can run here: the binary, its IMAP service,
    and root (Dovecot's master must be root to run sessions as another
    user).
    """
    return (
        os.access(DOVECOT, os.X_OK)
        and os.path.exists("/usr/lib/dovecot/imap")
        and os.geteuid() == 0
    )


class PrivateDovecot:
    """
    C{dovecot -F} serving one user whose INBOX holds C{messages} (CRLF
    messages, stored with LF as Dovecot's delivery stores them), in order.
    """

    def __init__(self, messages: list[bytes]) -> None:
        # Not under $TMPDIR: the test run's own is private (0700), and
        # Dovecot's unprivileged processes must reach the maildir.
        self.directory = tempfile.mkdtemp(prefix="capture-test-dovecot-", dir="/tmp")
        os.chmod(self.directory, 0o755)
        user = pwd.getpwnam("nobody")
        uid, gid = user.pw_uid, user.pw_gid
        home = os.path.join(self.directory, "home")
        maildir = os.path.join(home, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, sub))
        for i, raw in enumerate(messages):
            stored = raw.replace(b"\r\n", b"\n")
            name = f"{1_000_000 + i}.M{i}P1.test,S={len(stored)},W={len(raw)}:2,"
            with open(os.path.join(maildir, "cur", name), "wb") as f:
                f.write(stored)
        for path, _, files in os.walk(home):
            os.chown(path, uid, gid)
            for name in files:
                os.chown(os.path.join(path, name), uid, gid)
        with open(os.path.join(self.directory, "passwd"), "w") as f:
            f.write(f"{USER}:{PASSWORD}:{uid}:{gid}::{home}::\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        config = os.path.join(self.directory, "dovecot.conf")
        with open(config, "w") as f:
            f.write(_CONFIG.format(directory=self.directory, port=self.port, uid=uid, gid=gid))
        with open(os.path.join(self.directory, "stderr.log"), "w") as log:
            self.process = subprocess.Popen([DOVECOT, "-F", "-c", config],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("dovecot did not start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
