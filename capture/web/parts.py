# -*- test-case-name: tests.test_messagepage -*-
"""
A stored message's parts read back for the API and the message page: an
attachment's bytes (cut from the raw message at the offsets found at
ingest, never re-parsed), C{cid:} images inlined, a plain-text rendering of
an HTML-only message, and file names safe to put in a header.
"""

from __future__ import annotations

import base64
import html
import re

from capture.mime import Attachment, Part, decodeBody, findPart
from capture.store.interface import IStore
from capture.store.model import Bodies, Copy

_TAG_RE = re.compile(r"<[^>]*>")
_SAFE_FILENAME_RE = re.compile(r"[^A-Za-z0-9._ -]")


def plainText(htmlText: str) -> str:
    """
    A simple plain-text rendering of an HTML-only message, as Mailsac's
    C{/text} makes one.
    """
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", "", htmlText)
    text = re.sub(r"(?i)<br\s*/?>|</p\s*>|</div\s*>|</li\s*>|</tr\s*>", "\n", text)
    return html.unescape(_TAG_RE.sub("", text)).strip() + "\n"


def textOf(bodies: Bodies) -> str:
    """
    A message's text: its text part, else a plain rendering of its HTML
    part, else nothing.
    """
    if bodies.text is not None:
        return bodies.text
    if bodies.html is not None:
        return plainText(bodies.html)
    return ""


def safeFilename(attachment: Attachment) -> str:
    """
    The attachment's file name with everything but letters, digits, dots,
    dashes, underscores and spaces replaced, so it can be quoted in a
    C{Content-Disposition} header as it is (its md5 when it has none).
    """
    return _SAFE_FILENAME_RE.sub("_", attachment.filename or attachment.md5)


def partData(raw: bytes, structure: Part, attachment: Attachment) -> bytes | None:
    """
    The decoded bytes of one attachment of the message C{raw}, or L{None}
    when its part is not in the stored structure.
    """
    part = findPart(structure, attachment.part)
    if part is None:
        return None
    return bytes(decodeBody(raw[part.bodyStart : part.end], part.encoding))


async def attachmentData(store: IStore, copy: Copy, attachment: Attachment) -> bytes | None:
    """
    L{partData} of one attachment of a stored copy: two reads (the part
    tree, the raw bytes).
    """
    structure = Part.fromJSON((await store.getBodies(copy)).structure)
    return partData(await store.getRaw(copy), structure, attachment)


async def inlineImages(store: IStore, copy: Copy, htmlText: str, bodies: Bodies) -> str:
    """
    C{htmlText} with each C{cid:} reference to an attachment of the message
    replaced by a C{data:} URI of its bytes, so that the HTML shows whole
    on its own (a sandboxed frame has no origin from which to fetch them).
    """
    inline = [a for a in copy.message.attachments if a.contentId]
    if not inline or "cid:" not in htmlText.lower():
        return htmlText
    structure = Part.fromJSON(bodies.structure)
    raw = await store.getRaw(copy)
    for attachment in inline:
        data = partData(raw, structure, attachment)
        if data is None:
            continue
        uri = f"data:{attachment.contentType};base64,{base64.b64encode(data).decode()}"
        cid = (attachment.contentId or "").strip("<>")
        htmlText = re.sub(
            r"cid:" + re.escape(cid) + r"(?=[\"')\s>])",
            lambda match, uri=uri: uri,  # type: ignore[misc]
            htmlText,
            flags=re.IGNORECASE,
        )
    return htmlText
