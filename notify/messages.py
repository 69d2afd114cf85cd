"""Writes the message a citizen receives, in English or Vietnamese; no I/O beyond reading the
templates shipped in ``notify/templates``.

A message says who used which data, for what, on which basis, with which result and when,
in the citizen's language, and links to the entry in the portal, where it is verified against
the witnessed audit log. It never holds a national id or a payload value: an ``Event`` carries
neither, and the templates see nothing else (plus display names from global configuration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from cdx.globalconf import VerifiedGlobalConf
from notify.model import Category, Event

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
#: Order in which the reason for a message is named (the first category the citizen chose).
_ORDER = (
    Category.UNSEALED,
    Category.REPRESENTATIVE_ACTIONS,
    Category.CONSENT_REQUESTS,
    Category.DENIALS,
    Category.CONSENT_ACCESS,
    Category.EVERY_ACCESS,
)

_env = Environment(
    loader=PackageLoader("notify", "templates"),
    autoescape=False,  # noqa: S701 - plain-text mail; every value is a checked identifier or name
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Message:
    """A rendered notification."""

    subject: str
    text: str
    link: str
    category: Category


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def _clean(text: str) -> str:
    """A name from global configuration on one line (it may reach a mail header)."""
    return _CONTROL.sub(" ", text)


def _member_of(identifier: str) -> str:
    return ":".join(identifier.split("/", 1)[0].split(":")[:3])


@dataclass(frozen=True)
class Names:
    """Display names from global configuration, in one language."""

    conf: VerifiedGlobalConf | None
    language: str

    def agency(self, identifier: str) -> str:
        if not identifier:
            return ""
        member = self.conf.members.get(_member_of(identifier)) if self.conf else None
        return member.name if member is not None and member.name else _member_of(identifier)

    def service(self, service_id: str) -> str:
        info = self.conf.services.get(service_id) if self.conf else None
        return info.description if info is not None and info.description else service_id

    def purpose(self, code: str) -> str:
        p = self.conf.purposes.get(code) if self.conf else None
        if p is None:
            return code
        if self.language == "vi" and p.description_vi:
            return str(p.description_vi)
        return str(p.description or code)


def reason_for(event: Event, chosen: frozenset[Category]) -> Category:
    """The category a message names as the reason it was sent."""
    for category in _ORDER:
        if category in event.categories and category in chosen:
            return category
    return next(c for c in _ORDER if c in event.categories)


def entry_link(portal_url: str, record_id: str) -> str:
    """Where the citizen sees the entry, verified (``/me/access/<record id>``)."""
    return f"{portal_url.rstrip('/')}/me/access/{record_id}"


def render(
    event: Event,
    *,
    language: str,
    chosen: frozenset[Category],
    conf: VerifiedGlobalConf | None,
    portal_url: str,
    timezone: str = DEFAULT_TIMEZONE,
) -> Message:
    """The message for ``event`` in ``language`` (``en`` or ``vi``)."""
    zone = ZoneInfo(timezone)
    when = datetime.fromtimestamp(event.time_ms / 1000, tz=UTC).astimezone(zone)
    offset = when.strftime("%z")
    zone_text = f"UTC{offset[:3]}:{offset[3:]}" if offset not in ("", "+0000") else "UTC"
    stamp = (
        f"{when:%H:%M, %d/%m/%Y} ({zone_text})"
        if language == "vi"
        else f"{when:%d %b %Y, %H:%M} ({zone_text})"
    )
    category = reason_for(event, chosen)
    link = entry_link(portal_url, event.link_record_id)
    names = Names(conf, language)
    template = _env.get_template(f"message.{language}.txt")
    rendered = template.render(
        event=event,
        category=category.value,
        when=stamp,
        link=link,
        settings=f"{portal_url.rstrip('/')}/me/notifications",
        client=_clean(names.agency(event.client)),
        system=_clean(event.client.split(":")[3]) if event.client.count(":") >= 3 else "",
        provider=_clean(names.agency(event.service)),
        service=_clean(names.service(event.service)) if event.service else "",
        purpose=_clean(names.purpose(event.purpose)) if event.purpose else "",
    )
    subject, _, text = rendered.partition("\n")
    return Message(subject.strip(), text.lstrip("\n"), link, category)
