# -*- test-case-name: tests.test_pages -*-
"""
The web pages: one object carrying every page mixin's routes (all
declared on L{capture.web.pagebase.pages}).
"""

from __future__ import annotations

from capture.web.accountpages import AccountPages
from capture.web.homepage import HomePages
from capture.web.inboxpages import InboxPages
from capture.web.messagepages import MessagePages


class WebPages(HomePages, InboxPages, MessagePages, AccountPages):
    """
    Every page of the site, on one store, session signer and throttle.
    """
