"""Text that came from outside (files, servers, phones) made safe for where it goes.

A device or op name, a server's reply or a phone's output can hold anything: Markdown markup
and line breaks (which would restructure `report.md` or `gate.md`), terminal escape sequences
(which would recolour, move the cursor or retitle the user's terminal) and binary bytes. Each
output format escapes it once, here; HTML and JUnit have their own escapers (html, xml).
"""

from __future__ import annotations

import re

# ESC-introduced sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-byte escapes.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_BREAKS = re.compile(r"[\r\n\t\x0b\x0c\u2028\u2029\x85]+")
# Characters that make Markdown markup anywhere in a line: backslash-escaped (GitHub renders each
# literally). `#`, `+`, `-` and `1.` make markup only at a line's start, which escaped text never is.
_MARKDOWN = re.compile(r"([\\`*\[\]<>|~])")
# An underscore opens or closes emphasis only at a word's edge (`swiftformer_encoder` is safe).
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def terminal_safe(text: str, *, one_line: bool = False) -> str:
    """`text` without terminal escape sequences, with other control characters and undecodable
    bytes shown as `\\xNN` (line breaks kept unless `one_line`)."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    if one_line:
        text = _LINE_BREAKS.sub(" ", text)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\ufffd", "\\ufffd"))


def markdown_safe(text: str) -> str:
    """`text` as literal Markdown on one line: no markup of its own, no line break, no HTML."""
    text = terminal_safe(text, one_line=True).replace("&", "&amp;")
    text = _MARKDOWN.sub(r"\\\1", text)
    return _EDGE_UNDERSCORE.sub(r"\\_", text)


def markdown_code(text: str) -> str:
    """`text` as a Markdown code span (literal inside), or as escaped text where a backtick, a
    table's `|` or a control character would break out of one."""
    plain = "`" not in text and "|" not in text and terminal_safe(text, one_line=True) == text
    return f"`{text}`" if plain else markdown_safe(text)
