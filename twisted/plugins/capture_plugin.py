"""
twistd plugin for Capture: C{twistd -n capture}.

The lazy L{ServiceMaker} keeps C{twistd --help} fast: L{capture.tap} is only
imported when the C{capture} subcommand is used.
"""

from twisted.application.service import ServiceMaker

Capture = ServiceMaker(
    "Capture",
    "capture.tap",
    "Email capture server: a fake SMTP relay that stores every message.",
    "capture",
)
