"""Dovecot beside Capture: the mail reader benchmark's client, run against Dovecot.

Issue 4 judges Capture's IMAP and POP3 speed against figures for Dovecot.
To compare on the same machine with the same client, this script writes
the same ``--messages`` messages as ``bench/imap_pop3.py`` (from
``bench/api.py``'s ``generateMessages``) into a maildir, starts a private
``dovecot -F`` on it (its own configuration, runtime and state
directories in a temporary directory: nothing of the system's Dovecot is
read or touched), and runs ``bench/imap_pop3.py``'s very sessions
(``runSessions``) against it: POP3 login, UIDL, RETRs one at a time; IMAP
LOGIN+SELECT, the two whole-mailbox FETCHes, and ``--fetches``
``BODY.PEEK[]`` fetches one command at a time, pipelined, and as one
``UID FETCH`` of a UID set.

With ``--capture DATA`` (a data directory ``bench/imap_pop3.py`` filled,
e.g. ``/var/tmp/capture-10k``) it also starts ``twistd capture`` on a copy
of DATA (DATA itself is only read), runs the sessions alternately against
the two servers (a Dovecot run, a Capture run, the next Dovecot run...),
so both sets of figures are taken in the same minutes under the same load,
and prints them side by side.

The maildir holds the messages as Dovecot's own delivery would save them:
LF line ends, with the ``S=`` (size) and ``W=`` (size with CRLF) fields in
the file names. Dovecot builds its index and cache files in the first
sessions; the first run's figures show that, best and median the warm case.

Dovecot comes from Debian (``apt-get install -y dovecot-imapd
dovecot-pop3d``); this script installs nothing. It runs as root, as a
packaged Dovecot does: the master as root, session processes as ``nobody``
(Dovecot refuses mail access as uid 0), login processes as the package's
``dovenull`` and internal ones as its ``dovecot``.

Usage::

    python bench/dovecot.py                                   # Dovecot alone
    python bench/dovecot.py --capture /var/tmp/capture-10k    # and Capture, side by side

"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api import generateMessages, inboxAddress, prepareData  # noqa: E402  (bench/ is not a package)
from imap_pop3 import (  # noqa: E402
    Server,
    Steps,
    Target,
    captureTarget,
    conditions,
    copyData,
    runSessions,
)

DOVECOT = "/usr/sbin/dovecot"
_USER = "bench"
_PASSWORD = "bench-password"

_CONFIG = """\
# A private Dovecot for bench/dovecot.py: nothing here is the system's.
base_dir = {directory}/run
state_dir = {directory}/state
instance_name = capture-bench-{port}
log_path = {directory}/dovecot.log
protocols = imap pop3
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
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


def freePort() -> int:
    """
    A loopback port free now (Dovecot cannot listen on port 0 and say
    which it got, so the port is chosen here; a race with another program
    shows as Dovecot failing to start).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def writeMaildir(maildir: str, messages: int, uid: int, gid: int) -> int:
    """
    The bench's messages as Dovecot's delivery saves them (LF line ends,
    S= and W= sizes in the name, already seen as new: in C{cur/}), named
    by their received time so Dovecot gives them UIDs in the same order
    as Capture; the octets written.
    """
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub))
    written = 0
    for seq, _, when, raw in generateMessages(messages, 1):
        stored = raw.replace(b"\r\n", b"\n")
        name = (f"{int(when)}.M{int(when * 1e6) % 1_000_000}P{seq}.bench,"
                f"S={len(stored)},W={len(raw)}:2,")
        with open(os.path.join(maildir, "cur", name), "wb") as f:
            f.write(stored)
        written += len(stored)
    for path, _, files in os.walk(maildir):
        os.chown(path, uid, gid)
        for name in files:
            os.chown(os.path.join(path, name), uid, gid)
    return written


def _children(parent: int) -> dict[int, tuple[str, int]]:
    """
    Every process under C{parent}: its name and parent.
    """
    table: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        table[int(entry)] = (name, int(stat[stat.rindex(")") + 2:].split()[1]))
    found: dict[int, tuple[str, int]] = {}
    frontier = {parent}
    while frontier:
        frontier = {pid for pid, (_, ppid) in table.items() if ppid in frontier}
        found.update((pid, table[pid]) for pid in frontier)
    return found


def _status(pid: int, field: str) -> float:
    """
    A /proc/<pid>/status figure in MiB (0 once the process is gone).
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name == field:
                    return int(value.split()[0]) / 1024
    except OSError:
        pass
    return 0.0


class Dovecot:
    """
    C{dovecot -F} on a private configuration in a temporary directory,
    serving one user (C{bench}) whose INBOX is the filled maildir.
    """

    def __init__(self, messages: int) -> None:
        self.directory = tempfile.mkdtemp(prefix="capture-bench-dovecot-")
        # Dovecot's unprivileged processes must reach the maildir and passwd file.
        os.chmod(self.directory, 0o755)
        mailUser = pwd.getpwnam("nobody")
        uid, gid = mailUser.pw_uid, mailUser.pw_gid
        home = os.path.join(self.directory, "home")
        self.octets = writeMaildir(os.path.join(home, "Maildir"), messages, uid, gid)
        os.chown(home, uid, gid)
        with open(os.path.join(self.directory, "passwd"), "w") as f:
            f.write(f"{_USER}:{_PASSWORD}:{uid}:{gid}::{home}::\n")
        self.ports = {"imap": freePort(), "pop3": freePort()}
        self.config = os.path.join(self.directory, "dovecot.conf")
        with open(self.config, "w") as f:
            f.write(_CONFIG.format(
                directory=self.directory, port=self.ports["imap"], uid=uid, gid=gid, **self.ports,
            ))
        self.logPath = os.path.join(self.directory, "dovecot.log")
        with open(os.path.join(self.directory, "stderr.log"), "w") as log:
            self.process = subprocess.Popen([DOVECOT, "-F", "-c", self.config],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        waiting = set(self.ports.values())
        while waiting:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop(keep=True)
                sys.exit(f"dovecot did not start; see {self.directory}/*.log")
            for port in list(waiting):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                        if s.recv(100).startswith((b"* OK", b"+OK")):
                            waiting.discard(port)
                except OSError:
                    time.sleep(0.05)

    def memory(self) -> str:
        """
        The session process's peak resident set (Dovecot forks one C{imap}
        or C{pop3} process for each logged-in client) and what all of
        Dovecot's processes hold resident now.
        """
        processes = _children(self.process.pid)
        sessions = [pid for pid, (name, _) in processes.items() if name in ("imap", "pop3")]
        everything = _status(self.process.pid, "VmRSS") + sum(
            _status(pid, "VmRSS") for pid in processes)
        peak = max((_status(pid, "VmHWM") for pid in sessions), default=0.0)
        return (f"session process peak {peak:.0f} MiB (all {len(processes) + 1} "
                f"Dovecot processes now {everything:.0f} MiB)")

    def target(self) -> Target:
        return Target("Dovecot", "127.0.0.1", self.ports["pop3"], self.ports["imap"],
                      _USER, _PASSWORD, self.memory)

    def stop(self, keep: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep:
            shutil.rmtree(self.directory, ignore_errors=True)


def version() -> str:
    return subprocess.run([DOVECOT, "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def compare(dovecot: Steps, capture: Steps) -> None:
    """
    Both servers' figures for each step, and Capture's median over Dovecot's.
    """
    print(f"\n{'step':<52} {'Dovecot best/median':>20} {'Capture best/median':>20} {'ratio':>6}")
    for label, times in dovecot.times.items():
        ours = capture.times.get(label)
        if not ours:
            continue
        theirs = statistics.median(times)
        print(f"{label:<52} {min(times) * 1000:9.1f}/{theirs * 1000:<9.1f} "
              f"{min(ours) * 1000:9.1f}/{statistics.median(ours) * 1000:<9.1f} "
              f"{statistics.median(ours) / theirs:5.1f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--fetches", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="sessions of each protocol")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--capture", metavar="DATA",
                        help="then run Capture on a copy of this filled data directory")
    args = parser.parse_args(argv)
    if not os.path.exists(DOVECOT):
        sys.exit(f"{DOVECOT} is missing: apt-get install -y dovecot-imapd dovecot-pop3d")
    if os.getuid() != 0:
        sys.exit("run as root: Dovecot's master sets its services' owners and users")

    dovecot = Dovecot(args.messages)
    scratch = tempfile.mkdtemp(prefix="capture-bench-dovecot-data-")
    capture: Server | None = None
    try:
        targets = [dovecot.target()]
        if args.capture:
            copyData(args.capture, scratch)
            key = prepareData(scratch, args.messages, 1, 0)
            capture = Server(scratch)
            targets.append(captureTarget(capture, inboxAddress(0), key))
        print(f"{conditions(args.messages)}; {args.runs} runs of each session"
              f"{', alternating between the servers' if capture else ''}; "
              f"Dovecot {version()}, maildir of {dovecot.octets} octets (LF)"
              f"{f'; Capture on a copy of {args.capture}' if capture else ''}")
        steps = runSessions(targets, args.fetches, args.seed, args.runs)
        print(f"load after: {os.getloadavg()[0]:.2f}")
        for record in steps:
            record.report()
        if len(steps) == 2:
            compare(*steps)
    finally:
        dovecot.stop()
        if capture is not None:
            capture.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
