"""
The server starts on its defaults and captures one message end to end.
"""

from tests.harness import CaptureServer


def test_sendOneMessage(server: CaptureServer) -> None:
    """
    smtplib with STARTTLS and LOGIN gets C{250 OK : queued as <id>}.
    """
    client = server.smtp()
    client.mail("me@example.com")
    client.rcpt("you@example.org")
    code, reply = client.data(b"Subject: smoke\r\n\r\nhello\r\n")
    client.quit()
    assert code == 250
    assert reply.startswith(b"OK : queued as ")
