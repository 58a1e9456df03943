"""
Capture's HTTP side: the Mailsac-compatible API (L{capture.web.api}), served
by Klein on C{--http}.
"""
