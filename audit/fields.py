"""What the log accepts in a record's text fields and in an inspector's reason; pure, no I/O.

**Fields that are not free text** (ids, recorder, client, service, purpose, lawful-basis
references by code, reason code, kind, released field names, actor) are names a machine made.
A control character (ESC sequences can rewrite a terminal), a bidi control (U+202E can make
``VN:GOV:A`` read as another agency), a zero-width or other format character, a line or
paragraph separator, a surrogate, a private-use or unassigned code point has no business there:
the log refuses the record with ``unsafe_characters`` (the security server then keeps it as a
dead letter; nothing is stored). Free text (an inspector's reason, a legal reference) may hold
any text; every display escapes it.

**An inspector's reason** must say something a person can read: at least ``MIN_REASON_CHARS``
visible characters (letters, digits, punctuation, symbols), not counting spaces, format
characters and the letters that render as nothing (U+3164 HANGUL FILLER and its kin).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from cdx import errors
from cdx.v1 import audit_pb2

#: Fields of ``AccessRecord`` that hold names, not free text.
IDENTIFIER_FIELDS = (
    "record_id",
    "message_id",
    "recorder",
    "client",
    "service",
    "purpose",
    "consent_id",
    "reason_code",
    "kind",
    "target_record_id",
    "actor",
)
MIN_REASON_CHARS = 10

#: Categories refused in names: control, format (bidi, zero-width), surrogate, private use,
#: unassigned, and line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: Letters and marks that render as nothing (Unicode Default_Ignorable_Code_Point outside Cf,
#: and the blank Braille pattern): they must not count as a visible character.
_INVISIBLE = frozenset(
    {
        "\u034f",  # COMBINING GRAPHEME JOINER
        "\u115f",  # HANGUL CHOSEONG FILLER
        "\u1160",  # HANGUL JUNGSEONG FILLER
        "\u17b4",  # KHMER VOWEL INHERENT AQ
        "\u17b5",  # KHMER VOWEL INHERENT AA
        "\u2800",  # BRAILLE PATTERN BLANK
        "\u3164",  # HANGUL FILLER
        "\uffa0",  # HALFWIDTH HANGUL FILLER
    }
)
_VISIBLE_CLASSES = frozenset("LNPS")


def unsafe_character(value: str) -> str | None:
    """The first character of ``value`` that may not appear in a name, or ``None``."""
    if value.isascii() and value.isprintable():
        return None  # printable ASCII (what machines name things with) holds none of them
    for ch in value:
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES or ch in _INVISIBLE:
            return ch
    return None


def check_names(record: audit_pb2.AccessRecord) -> None:
    """Refuse a record whose name fields hold unsafe characters.

    Raises:
        UnsafeCharactersError: naming the field (never its value).
    """
    names = [getattr(record, name) for name in IDENTIFIER_FIELDS]
    joined = "".join(names) + "".join(record.released_fields)
    if joined.isascii() and joined.isprintable():
        return  # the usual record: one check of all of them at once
    for name in IDENTIFIER_FIELDS:
        if unsafe_character(getattr(record, name)) is not None:
            raise errors.UnsafeCharactersError(f"{name} holds a control or invisible character")
    if any(unsafe_character(f) is not None for f in record.released_fields):
        raise errors.UnsafeCharactersError("a released field name holds an unsafe character")


def visible_characters(text: Iterable[str]) -> int:
    """How many characters of ``text`` a reader sees (letters, digits, punctuation, symbols)."""
    return sum(
        1 for ch in text if unicodedata.category(ch)[0] in _VISIBLE_CLASSES and ch not in _INVISIBLE
    )


def check_reason(reason: str, *, required: bool) -> str:
    """The reason, stripped; checked only when ``required`` (a subject search, an unseal).

    Raises:
        ReasonRequiredError: required, and fewer than ``MIN_REASON_CHARS`` visible characters
            (missing, blank, zero-width or filler characters only, or too short).
    """
    reason = reason.strip()
    if not required:
        return reason
    if visible_characters(reason) < MIN_REASON_CHARS:
        raise errors.ReasonRequiredError(
            f"a reason needs at least {MIN_REASON_CHARS} visible characters"
        )
    return reason
