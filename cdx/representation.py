"""Legal representation, the contract: who may act for whom, for what, and how an action taken
for someone else is named; pure, no I/O.

A representative (a parent or guardian of a minor, a court-appointed guardian, a person the
represented authorised) logs in as themself and acts for the represented person. The relations
live in the consent service (docs/adr/0018), registered by the representation authority global
configuration designates; the audit log asks the consent service (``RepresentationChecker``)
before it shows a history to a representative, the consent service checks its own table inside
the transaction of each consent change. Both sides share what is defined here:

- ``RelationKind`` and ``Scope``: what a relation is and what it covers (parents and guardians
  cover every scope; an authorised person the scopes registered);
- ``RepresentationGrant``: a relation found in force now, for one scope;
- the **actor** of an action taken by a representative: ``representative:<kind>:<relation id>``
  in the consent service's own events (the relation id leads, inside that service, to the sealed
  relation; it is a random UUID, never derived from a national id), and the shorter
  ``representative:<kind>`` in what leaves it (audit-log entries are readable by every
  security server, and a stable relation id there would link one child's consents across
  agencies). A person's national id is never an actor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from cdx import errors
from cdx.ids import CitizenId

__all__ = [
    "ACTOR_PREFIX",
    "FULL_SCOPES",
    "RelationKind",
    "RepresentationChecker",
    "RepresentationGrant",
    "Scope",
    "is_representative_actor",
    "parse_actor",
    "public_actor",
    "representative_actor",
]


class RelationKind(StrEnum):
    """Why someone may act for someone else."""

    PARENT = "parent"  # of a minor: ends at the child's majority date
    GUARDIAN = "guardian"  # court-appointed (of a minor: ends at majority too)
    AUTHORISED = "authorised"  # a person the represented authorised, for the scopes registered


class Scope(StrEnum):
    """What a representative does for the represented person."""

    HISTORY = "history"  # read their data-use history (the audit log)
    CONSENTS = "consents"  # see and change their consents


FULL_SCOPES = frozenset(Scope)
ACTOR_PREFIX = "representative"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class RepresentationGrant:
    """A relation in force: ``representative`` may act for ``represented`` (in the scope it was
    checked for) until ``ends_at`` (``None``: until the authority ends it)."""

    relation_id: str
    kind: RelationKind
    representative: CitizenId = field(repr=False)
    represented: CitizenId = field(repr=False)
    ends_at: datetime | None = None

    @property
    def actor(self) -> str:
        """How the consent service's events name an action taken under this relation."""
        return representative_actor(self.kind, self.relation_id)


class RepresentationChecker(Protocol):
    """Answers whether a relation in force now lets one person act for another.

    The consent service implements it over its relations table; the audit log holds a client
    of it (``consent.representation_client``)."""

    def check(
        self, representative: CitizenId, represented: CitizenId, scope: Scope
    ) -> RepresentationGrant:
        """The relation in force now that covers ``scope``.

        Raises:
            RepresentationMissingError: no relation between them.
            RepresentationEndedError: relations existed but none is in force (ended by the
                authority, past its validity, or the represented came of age).
            RepresentationScopeError: one is in force but does not cover ``scope``.
            UnavailableError: the relations cannot be read now (fail closed).
        """
        ...


def representative_actor(kind: RelationKind, relation_id: str) -> str:
    """The actor of an action taken under relation ``relation_id``.

    Raises:
        InvalidArgumentError: ``relation_id`` is not a relation id (a UUID).
    """
    if not _UUID.fullmatch(relation_id):
        raise errors.InvalidArgumentError("a relation id is a UUID")
    return f"{ACTOR_PREFIX}:{RelationKind(kind).value}:{relation_id}"


def parse_actor(actor: str) -> tuple[RelationKind, str | None] | None:
    """``(kind, relation id)`` of a representative actor (``None`` as the relation id in the
    public form), or ``None`` when ``actor`` is not one. Strict: anything else that starts like
    one (a national id where the relation id goes, an unknown kind) is not a representative."""
    parts = actor.split(":")
    if parts[0] != ACTOR_PREFIX or len(parts) not in (2, 3):
        return None
    try:
        kind = RelationKind(parts[1])
    except ValueError:
        return None
    if len(parts) == 2:
        return kind, None
    return (kind, parts[2]) if _UUID.fullmatch(parts[2]) else None


def is_representative_actor(actor: str) -> bool:
    return parse_actor(actor) is not None


def public_actor(actor: str) -> str:
    """The form of ``actor`` that may leave the consent service: a representative's relation id
    dropped (``representative:<kind>``); any other actor unchanged."""
    parsed = parse_actor(actor)
    if parsed is None:
        return actor
    return f"{ACTOR_PREFIX}:{parsed[0].value}"
