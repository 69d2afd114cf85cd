"""Legal representation relations: what the authority registers, when a relation is in force,
which relation lets someone act, and who is a minor; pure, no I/O (time is a parameter).

A relation names a representative and a represented person, a kind, the scopes it covers and
its validity (docs/adr/0018):

- it is **in force** from ``valid_from`` until the earliest of ``valid_until``, the start of the
  represented person's ``majority_on`` date (00:00 UTC; a minor's representation ends at
  majority by itself) and the time the authority ended it;
- parents and guardians cover every scope; an authorised person only the scopes registered; a
  parent's relation must carry the child's majority date (a majority date, never a birth date);
- a person is a **minor** while any relation naming them as represented has a majority date
  still ahead, ended relations included (the authority's word on who is a minor until when).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from cdx import errors
from cdx.ids import CitizenId
from cdx.representation import FULL_SCOPES, RelationKind, RepresentationGrant, Scope

MAX_NAME_CHARS = 200
MAX_REFERENCE_CHARS = 200
MAX_REASON_CHARS = 64
#: How far ahead a majority date may lie (a newborn's, with room for a later age of majority).
MAX_MINORITY_YEARS = 25
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def majority_start(day: date) -> datetime:
    """The moment a person whose majority date is ``day`` comes of age: 00:00 UTC that day."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class RelationTerms:
    """What the authority states about one relation (everything but its bookkeeping)."""

    kind: RelationKind
    representative: CitizenId = field(repr=False)
    represented: CitizenId = field(repr=False)
    scopes: frozenset[Scope]
    valid_from: datetime
    valid_until: datetime | None = None
    majority_on: date | None = field(default=None, repr=False)
    reference: str = field(default="", repr=False)
    representative_name: str = field(default="", repr=False)
    represented_name: str = field(default="", repr=False)


@dataclass(frozen=True)
class Relation:
    """A relation as stored: its terms, who registered it, and whether it was ended."""

    id: str
    terms: RelationTerms
    authority: str
    version: int
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    end_reason: str = ""

    @property
    def ends_at(self) -> datetime | None:
        """When it stops being in force (``None``: not before the authority ends it)."""
        t = self.terms
        ends = [
            moment
            for moment in (
                t.valid_until,
                majority_start(t.majority_on) if t.majority_on else None,
                self.ended_at,
            )
            if moment is not None
        ]
        return min(ends) if ends else None

    def in_force(self, now: datetime) -> bool:
        ends = self.ends_at
        return self.terms.valid_from <= now and (ends is None or now < ends)

    def covers(self, scope: Scope) -> bool:
        return scope in self.terms.scopes

    def grant(self) -> RepresentationGrant:
        return RepresentationGrant(
            self.id,
            self.terms.kind,
            self.terms.representative,
            self.terms.represented,
            self.ends_at,
        )


def _text(value: str, what: str, limit: int) -> str:
    value = value.strip()
    if len(value) > limit:
        raise errors.LimitExceededError(f"{what} is longer than {limit} characters")
    if any(unicodedata.category(ch) in _UNSAFE for ch in value):
        raise errors.UnsafeCharactersError(f"{what} holds a control or invisible character")
    return value


def check_terms(terms: RelationTerms, *, now: datetime) -> RelationTerms:
    """Validate what the authority registers (or amends to); returns the normalised terms.

    Raises:
        InvalidArgumentError: a person represents themself; an unknown kind or scope; an
            authorised person with no scope; a parent without a majority date; a majority date
            already past or implausibly far; a validity that ends before it starts.
        LimitExceededError, UnsafeCharactersError: an over-long or unreadable name or reference.
    """
    try:
        kind = RelationKind(terms.kind)
        scopes = frozenset(Scope(s) for s in terms.scopes)
    except ValueError as exc:
        raise errors.InvalidArgumentError("unknown relation kind or scope") from exc
    if terms.representative == terms.represented:
        raise errors.InvalidArgumentError("a person does not represent themself")
    if kind is RelationKind.AUTHORISED:
        if not scopes:
            raise errors.InvalidArgumentError("an authorised person needs at least one scope")
    else:
        scopes = FULL_SCOPES  # parents and guardians act in every respect
    if kind is RelationKind.PARENT and terms.majority_on is None:
        raise errors.InvalidArgumentError("a parent's relation needs the child's majority date")
    if terms.majority_on is not None:
        if majority_start(terms.majority_on) <= now:
            raise errors.InvalidArgumentError("the represented person is no longer a minor")
        if terms.majority_on > (now + timedelta(days=366 * MAX_MINORITY_YEARS)).date():
            raise errors.InvalidArgumentError("the majority date is implausibly far ahead")
    if terms.valid_until is not None and terms.valid_until <= terms.valid_from:
        raise errors.InvalidArgumentError("the relation ends before it starts")
    return RelationTerms(
        kind=kind,
        representative=terms.representative,
        represented=terms.represented,
        scopes=scopes,
        valid_from=terms.valid_from,
        valid_until=terms.valid_until,
        majority_on=terms.majority_on,
        reference=_text(terms.reference, "the reference", MAX_REFERENCE_CHARS),
        representative_name=_text(terms.representative_name, "a name", MAX_NAME_CHARS),
        represented_name=_text(terms.represented_name, "a name", MAX_NAME_CHARS),
    )


def check_amendment(old: Relation, new: RelationTerms, *, now: datetime) -> RelationTerms:
    """The amended terms of ``old`` (validity, majority date, scopes, names, reference).

    Raises:
        FailedPreconditionError: the relation was ended (end it and register a new one).
        InvalidArgumentError: the people or the kind change, or the new terms are invalid.
    """
    if old.ended_at is not None:
        raise errors.FailedPreconditionError("an ended relation cannot be amended")
    if (new.kind, new.representative, new.represented) != (
        old.terms.kind,
        old.terms.representative,
        old.terms.represented,
    ):
        raise errors.InvalidArgumentError("an amendment keeps the people and the kind")
    return check_terms(new, now=now)


def check_end(relation: Relation, ended_at: datetime, reason: str) -> str:
    """The reason an end is recorded with.

    Raises:
        FailedPreconditionError: the relation was already ended.
        InvalidArgumentError: the end lies before the relation began.
        LimitExceededError, UnsafeCharactersError: an unreadable reason.
    """
    if relation.ended_at is not None:
        raise errors.FailedPreconditionError("the relation was already ended")
    if ended_at < relation.terms.valid_from:
        raise errors.InvalidArgumentError("a relation cannot end before it began")
    return _text(reason, "the reason", MAX_REASON_CHARS)


def choose(relations: Iterable[Relation], scope: Scope, now: datetime) -> Relation:
    """The relation (between one representative and one represented person) that lets the
    representative act in ``scope`` at ``now``; the one in force longest wins.

    Raises:
        RepresentationMissingError: there is none at all.
        RepresentationEndedError: none is in force now.
        RepresentationScopeError: one is in force, but none covers ``scope``.
    """
    candidates = list(relations)
    if not candidates:
        raise errors.RepresentationMissingError()
    in_force = [r for r in candidates if r.in_force(now)]
    if not in_force:
        raise errors.RepresentationEndedError()
    covering = [r for r in in_force if r.covers(scope)]
    if not covering:
        raise errors.RepresentationScopeError()
    return max(covering, key=lambda r: (r.ends_at or datetime.max.replace(tzinfo=UTC), r.id))


def minor_until(relations: Iterable[Relation]) -> datetime | None:
    """When the person these relations represent comes of age (the latest majority date the
    authority gave for them), or ``None`` when no relation says they are a minor."""
    moments = [majority_start(r.terms.majority_on) for r in relations if r.terms.majority_on]
    return max(moments) if moments else None


def is_minor(relations: Iterable[Relation], now: datetime) -> bool:
    until = minor_until(relations)
    return until is not None and now < until
