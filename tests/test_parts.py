"""
L{capture.web.parts.plainText}: HTML-only mail read as text, with each
link's target kept.
"""

from __future__ import annotations

import pytest

from capture.web.parts import plainText


@pytest.mark.parametrize(("html", "text"), [
    ('Hello <b>bold</b> <a href="https://example.com">link</a>',
     "Hello bold link (https://example.com)\n"),
    ('<a href="https://example.com/r?a=1&amp;b=2">Reset</a>',
     "Reset (https://example.com/r?a=1&b=2)\n"),
    ('<a href="https://example.com/">https://example.com/</a>', "https://example.com/\n"),
    ('<a href="mailto:help@example.com">help@example.com</a>', "help@example.com\n"),
    ('<a href="mailto:help@example.com">Write to us</a>',
     "Write to us (mailto:help@example.com)\n"),
    ('<a href="https://example.com/i"><img src="x.png"></a> after',
     "https://example.com/i after\n"),
    ('<a href="#top">Top</a> <a>no target</a> <a href="">empty</a>', "Top no target empty\n"),
    ('<a href="https://example.com/u">never closed', "never closed (https://example.com/u)\n"),
    ('<p>one</p><p>two<br>three</p><ul><li>a</li><li>b</li></ul>',
     "one\n\ntwo\nthree\n\na\nb\n"),
    ("<head><title>T</title><style>p {}</style></head><script>x()</script>  Hi\n\n there ",
     "Hi there\n"),
    ("&lt;not a tag&gt; &amp;", "<not a tag> &\n"),
    ("<table><tr><td>a</td><td>b</td></tr></table>", "a b\n"),
    ("", "\n"),
])
def test_plainText(html: str, text: str) -> None:
    """
    Tags dropped, entities decoded, blocks and line breaks kept as lines,
    hidden elements left out, and each link followed by its target in
    parentheses unless the link shows it already.
    """
    assert plainText(html) == text
