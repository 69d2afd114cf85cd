"""Text that is safe to show on a terminal or in a log line: control and bidi characters escaped.

Values CDX prints and logs often come from someone else: records in the audit log carry the
client, purpose and reason strings a peer sent, consent terms and registry names are typed by
people. Printed raw, an ESC sequence can clear the screen or forge a line ("ALL RECORDS
VERIFIED OK"), a carriage return can overwrite one, and a bidi override (U+202E) can reorder
what the reader sees (threat model T191, T192). ``escape`` turns every such character into a
visible escape (``\\x1b``, ``\\u202e``); ``escape_json`` does the same inside JSON text, where
the escape keeps the decoded value unchanged. Pure functions, no I/O.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["escape", "escape_json", "is_unsafe"]

#: Unicode categories escaped: controls (C0, DEL, C1), format characters (bidi embeddings,
#: overrides and isolates, zero-width characters, the BOM), line and paragraph separators,
#: and lone surrogates (unprintable, and not encodable).
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

_ASCII_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def is_unsafe(char: str) -> bool:
    """Whether ``char`` (one character) is escaped by ``escape``."""
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every unsafe character (``is_unsafe``) replaced by its escape.

    A line stays one line: newlines and carriage returns are escaped too.
    """
    if text.isascii():
        if not _ASCII_UNSAFE.search(text):
            return text  # the common case, without a per-character walk
        return _ASCII_UNSAFE.sub(lambda m: _escaped(m.group()), text)
    return "".join(_escaped(c) if is_unsafe(c) else c for c in text)


def escape_json(json_text: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with every unsafe character inside
    its strings written as a ``\\uXXXX`` escape: the same JSON value, safe to print.

    ``json.dumps`` already escapes C0 controls inside strings, so a raw newline in its output is
    layout (``indent``) and is kept; everything else unsafe is escaped.
    """
    if json_text.isascii() and "\x7f" not in json_text:
        return json_text  # json.dumps escaped every other ASCII control already
    out: list[str] = []
    for c in json_text:
        if c != "\n" and is_unsafe(c):
            code = ord(c)
            if code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:  # JSON writes characters beyond the BMP as a UTF-16 surrogate pair
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(c)
    return "".join(out)
