"""Identifiers of members, subsystems, services, security servers and citizens; pure, no I/O.

Grammar (DESIGN §4, X-Road style):

- member      ``INSTANCE:CLASS:MEMBER``                e.g. ``VN:GOV:BCA``
- subsystem   ``INSTANCE:CLASS:MEMBER:SUBSYSTEM``      e.g. ``VN:GOV:BCA:population``
- service     ``SUBSYSTEM/CODE[/VERSION]``             e.g. ``VN:GOV:BCA:population/address/v1``
- server      ``INSTANCE:CLASS:MEMBER:SERVERCODE``     e.g. ``VN:GOV:BCA:ss1``

Every part allows only ``A-Z a-z 0-9 ' ( ) + , - . = ?`` and is 1..64 characters long.
``parse(str(x)) == x`` for every identifier.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import ClassVar, Self

from cdx.errors import InvalidCitizenIdError, InvalidIdentifierError

__all__ = [
    "MAX_PART_LENGTH",
    "CitizenId",
    "MemberId",
    "SecurityServerId",
    "ServiceId",
    "SubsystemId",
]

MAX_PART_LENGTH = 64
_PART = re.compile(r"[A-Za-z0-9'()+,\-.=?]{1,64}")


def _check_part(kind: str, part: str) -> str:
    if not isinstance(part, str) or not _PART.fullmatch(part):
        raise InvalidIdentifierError(f"invalid {kind} part in identifier")
    return part


def _split(kind: str, text: str, count: int) -> list[str]:
    if not isinstance(text, str) or len(text) > 4 * (MAX_PART_LENGTH + 1) + 2 * (
        MAX_PART_LENGTH + 1
    ):
        raise InvalidIdentifierError(f"invalid {kind} identifier")
    parts = text.split(":")
    if len(parts) != count:
        raise InvalidIdentifierError(f"a {kind} identifier has {count} ':'-separated parts")
    return [_check_part(kind, p) for p in parts]


@dataclass(frozen=True, slots=True, order=True)
class MemberId:
    """An organisation registered in an instance: ``INSTANCE:CLASS:MEMBER``."""

    instance: str
    member_class: str
    code: str

    def __post_init__(self) -> None:
        for p in (self.instance, self.member_class, self.code):
            _check_part("member", p)

    @classmethod
    def parse(cls, text: str) -> MemberId:
        """Parse ``INSTANCE:CLASS:MEMBER``.

        Raises:
            InvalidIdentifierError: the text does not follow the grammar.
        """
        return cls(*_split("member", text, 3))

    def __str__(self) -> str:
        return f"{self.instance}:{self.member_class}:{self.code}"


@dataclass(frozen=True, slots=True, order=True)
class _MemberScoped:
    """Something a member owns, named ``INSTANCE:CLASS:MEMBER:CODE`` (a subsystem, a server)."""

    member: MemberId
    code: str

    _KIND: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_part(self._KIND, self.code)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``INSTANCE:CLASS:MEMBER:CODE``.

        Raises:
            InvalidIdentifierError: the text does not follow the grammar.
        """
        i, c, m, code = _split(cls._KIND, text, 4)
        return cls(MemberId(i, c, m), code)

    def __str__(self) -> str:
        return f"{self.member}:{self.code}"


@dataclass(frozen=True, slots=True, order=True)
class SubsystemId(_MemberScoped):
    """An information system of a member: ``INSTANCE:CLASS:MEMBER:SUBSYSTEM``."""

    _KIND: ClassVar[str] = "subsystem"


@dataclass(frozen=True, slots=True, order=True)
class ServiceId:
    """A service of a subsystem: ``SUBSYSTEM/CODE[/VERSION]``."""

    subsystem: SubsystemId
    code: str
    version: str = ""

    def __post_init__(self) -> None:
        _check_part("service", self.code)
        if self.version:
            _check_part("service version", self.version)

    @classmethod
    def parse(cls, text: str) -> ServiceId:
        """Parse ``INSTANCE:CLASS:MEMBER:SUBSYSTEM/CODE[/VERSION]``.

        Raises:
            InvalidIdentifierError: the text does not follow the grammar.
        """
        if not isinstance(text, str):
            raise InvalidIdentifierError("invalid service identifier")
        pieces = text.split("/")
        if len(pieces) not in (2, 3):
            raise InvalidIdentifierError("a service identifier is SUBSYSTEM/CODE[/VERSION]")
        version = pieces[2] if len(pieces) == 3 else ""
        if len(pieces) == 3 and not version:
            raise InvalidIdentifierError("empty service version")
        return cls(SubsystemId.parse(pieces[0]), _check_part("service", pieces[1]), version)

    def __str__(self) -> str:
        base = f"{self.subsystem}/{self.code}"
        return f"{base}/{self.version}" if self.version else base


@dataclass(frozen=True, slots=True, order=True)
class SecurityServerId(_MemberScoped):
    """A security server of a member: ``INSTANCE:CLASS:MEMBER:SERVERCODE``."""

    _KIND: ClassVar[str] = "server"

    @classmethod
    def from_uri(cls, uri: str) -> SecurityServerId:
        """Parse the URI SAN form produced by ``uri()``.

        Raises:
            InvalidIdentifierError: not a CDX server URI.
        """
        prefix = "urn:cdx:server:"
        if not isinstance(uri, str) or not uri.startswith(prefix):
            raise InvalidIdentifierError("not a CDX server URI")
        return cls.parse(urllib.parse.unquote(uri[len(prefix) :]))

    def uri(self) -> str:
        """The URI placed in the server's certificates (``urn:cdx:server:...``)."""
        return "urn:cdx:server:" + urllib.parse.quote(str(self), safe=":")


# National ids: VN uses 12 digits. Other instances may register other formats.
_CITIZEN_FORMATS: dict[str, re.Pattern[str]] = {"VN": re.compile(r"[0-9]{12}")}
_DEFAULT_CITIZEN_FORMAT = re.compile(r"[0-9A-Za-z]{6,20}")


@dataclass(frozen=True, slots=True)
class CitizenId:
    """A citizen's national id. Its ``repr``/``str`` never show the number; use ``.value``."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _DEFAULT_CITIZEN_FORMAT.fullmatch(self.value):
            raise InvalidCitizenIdError()

    @classmethod
    def parse(cls, text: str, instance: str = "VN") -> CitizenId:
        """Validate a national id for ``instance`` (VN: exactly 12 digits).

        Raises:
            InvalidCitizenIdError: the text is not a valid national id.
        """
        pattern = _CITIZEN_FORMATS.get(instance, _DEFAULT_CITIZEN_FORMAT)
        if not isinstance(text, str) or not pattern.fullmatch(text):
            raise InvalidCitizenIdError()
        return cls(text)

    def __repr__(self) -> str:
        return "CitizenId(<redacted>)"

    def __str__(self) -> str:
        return "<citizen>"
