"""Server memory while big messages arrive at once.

``--max-ingest-memory`` is meant to bound what message data costs the
server.  This starts ``twistd capture`` (tests/harness.py: loopback,
ephemeral ports, a fresh data directory, the budget given), sends
``--count`` messages of ``--size`` MiB at once over as many SMTP
connections, and prints the server's peak resident memory (``VmHWM`` in
``/proc/PID/status``) and what it still holds once every answer is in and
the server has been idle for ``--settle`` seconds (``VmRSS``), beside how
many messages were accepted (250) and put off (452 4.3.1).

Kinds of message (``--kind``): ``attachment`` (a short text part and one
base64 attachment of random octets, the common big message), ``text`` (one
plain-text body of ASCII lines), ``utf8`` (a plain-text body of mostly
ASCII with an emoji per line: the parser's text is then 4 octets a
character).

Usage::

    python bench/ingest_memory.py --count 20 --size 24 --budget 512MiB
    python bench/ingest_memory.py --count 20 --size 24 --budget 128MiB --kind text
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness import CaptureServer  # noqa: E402  (bench/ is not a package)


def _status(pid: int) -> dict[str, float]:
    """
    The C{/proc/PID/status} memory figures, in MiB.
    """
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                found[name] = int(value.split()[0]) / 1024
    return found


def _message(kind: str, size: int, n: int) -> bytes:
    head = (
        f"From: bench@example.com\r\nTo: big{n}@example.org\r\nSubject: big {n}\r\n"
        "MIME-Version: 1.0\r\n"
    ).encode()
    if kind == "attachment":
        raw = random.randbytes(size * 3 // 4)
        encoded = base64.encodebytes(raw).replace(b"\n", b"\r\n")
        return head + (
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
            b"--b\r\nContent-Type: application/octet-stream\r\n"
            b'Content-Disposition: attachment; filename="big.bin"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b--\r\n"
        )
    line = (b"x" * 70 + ("\N{GRINNING FACE}".encode() if kind == "utf8" else b"....")) + b"\r\n"
    charset = b"utf-8" if kind == "utf8" else b"us-ascii"
    return head + b"Content-Type: text/plain; charset=" + charset + b"\r\n\r\n" + (
        line * (size // len(line))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="messages sent at once")
    parser.add_argument("--size", type=int, default=24, help="MiB per message")
    parser.add_argument("--budget", default="512MiB", help="--max-ingest-memory")
    parser.add_argument("--kind", choices=("attachment", "text", "utf8"), default="attachment")
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds before 'after'")
    options = parser.parse_args()
    size = options.size * 1024 * 1024
    messages = [_message(options.kind, size, n) for n in range(options.count)]
    server = CaptureServer(extra=[
        "--allow-insecure-auth", "--max-ingest-memory", options.budget,
        "--max-message-size", f"{options.size + 2}MiB",
    ]).start()
    try:
        assert server.process is not None and server.key is not None
        pid = server.process.pid
        idle = _status(pid)
        replies: list[str] = []
        start = threading.Barrier(options.count)

        def send(message: bytes) -> None:
            client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=600)
            client.login(server.account, server.key or "")
            start.wait()
            try:
                client.sendmail("bench@example.com", ["big@example.org"], message)
                replies.append("250")
            except smtplib.SMTPDataError as e:
                replies.append(f"{e.smtp_code} {e.smtp_error[:5].decode()}")
            client.quit()

        started = time.monotonic()
        threads = [threading.Thread(target=send, args=(m,)) for m in messages]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        time.sleep(options.settle)
        after = _status(pid)
        counts = {r: replies.count(r) for r in sorted(set(replies))}
        print(
            f"# count={options.count} size={options.size}MiB kind={options.kind}"
            f" budget={options.budget} cores={os.cpu_count()} python={sys.version.split()[0]}"
            f" server=twistd capture (loopback, plain SMTP)"
        )
        print(
            f"replies={counts} elapsed={elapsed:.1f}s idle_rss={idle['VmRSS']:.0f}MiB"
            f" peak_rss={after['VmHWM']:.0f}MiB after_rss={after['VmRSS']:.0f}MiB"
            f" (after {options.settle:g}s idle)"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
