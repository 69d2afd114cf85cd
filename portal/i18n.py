"""The portal's message catalogues (English and Vietnamese) and language negotiation.

Every string a page shows comes from ``portal/locales/<lang>.json``; both catalogues hold the
same keys (a unit test enforces it). Messages use ``str.format`` placeholders (``{count}``);
Jinja escapes the result like any other value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LANGUAGES: tuple[str, ...] = ("en", "vi")
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "vi": "Tiếng Việt"}


def load_catalogues() -> dict[str, dict[str, str]]:
    """Read every catalogue shipped in ``portal/locales``."""
    folder = resources.files("portal") / "locales"
    out: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        data = json.loads((folder / f"{lang}.json").read_text(encoding="utf-8"))
        out[lang] = {str(k): str(v) for k, v in data.items()}
    return out


def negotiate(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """Pick a supported language from an ``Accept-Language`` header (RFC 9110 §12.5.4)."""
    best, best_q = default, -1.0
    for part in (accept_language or "").split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        lang = tag.strip().lower().split("-", 1)[0]
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best


@dataclass(frozen=True)
class Translator:
    """Messages and formats for one language."""

    lang: str
    messages: Mapping[str, str]
    fallback: Mapping[str, str]
    zone: ZoneInfo | None

    def __call__(self, key: str, **values: object) -> str:
        text = self.messages.get(key) or self.fallback.get(key) or key
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self.messages

    def optional(self, key: str, default: str) -> str:
        """The message for ``key`` if the catalogue has one (e.g. a reason code), else default."""
        return self.messages.get(key, default)

    def when(self, moment: datetime | None) -> str:
        """A date and time in the portal's time zone, written the way the language does."""
        if moment is None:
            return "—"
        local = moment.astimezone(self.zone) if self.zone else moment
        offset = local.strftime("%z")
        zone = f"UTC{offset[:3]}:{offset[3:]}" if offset not in ("", "+0000") else "UTC"
        if self.lang == "vi":
            return f"{local:%H:%M, %d/%m/%Y} ({zone})"
        return f"{local:%d %b %Y, %H:%M} ({zone})"

    def day(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        local = moment.astimezone(self.zone) if self.zone else moment
        return f"{local:%d/%m/%Y}" if self.lang == "vi" else f"{local:%d %b %Y}"


class Catalogue:
    """All languages; ``translator(lang)`` gives the per-request callable."""

    def __init__(self, timezone: str = "UTC") -> None:
        self.messages = load_catalogues()
        try:
            self.zone: ZoneInfo | None = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.zone = None

    def translator(self, lang: str) -> Translator:
        lang = lang if lang in self.messages else DEFAULT_LANGUAGE
        return Translator(lang, self.messages[lang], self.messages[DEFAULT_LANGUAGE], self.zone)
