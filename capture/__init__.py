"""
Capture: a self-hosted email capture server.

Applications send mail to Capture as to a real SMTP relay; Capture stores every
message, delivers none, and files a copy in the inbox of every recipient.
"""
