"""The pure rules of legal representation (``consent.relations``, ``cdx.representation``): when a
relation is in force, which one lets someone act, who is a minor, what the authority may
register, and how an action taken for someone is named."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from cdx import errors
from cdx.ids import CitizenId
from cdx.representation import (
    FULL_SCOPES,
    RelationKind,
    Scope,
    parse_actor,
    public_actor,
    representative_actor,
)
from consent.relations import (
    Relation,
    RelationTerms,
    check_amendment,
    check_end,
    check_terms,
    choose,
    is_minor,
    majority_start,
    minor_until,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PARENT, CHILD, OTHER = (
    CitizenId("079090000001"),
    CitizenId("079190000011"),
    CitizenId("079090000002"),
)
RID = "0190e0c2-1234-7abc-8def-0123456789ab"


def terms(**kw: object) -> RelationTerms:
    values: dict[str, object] = {
        "kind": RelationKind.PARENT,
        "representative": PARENT,
        "represented": CHILD,
        "scopes": frozenset(),
        "valid_from": NOW - timedelta(days=1),
        "majority_on": date(2030, 3, 14),
    }
    values.update(kw)
    return RelationTerms(**values)  # type: ignore[arg-type]


def relation(rid: str = RID, *, ended_at: datetime | None = None, **kw: object) -> Relation:
    return Relation(
        rid, check_terms(terms(**kw), now=NOW), "VN:GOV:BCA:population", 1, NOW, NOW, ended_at
    )


def test_a_minors_representation_ends_at_00_00_utc_of_the_majority_date() -> None:
    r = relation(majority_on=date(2030, 3, 14))
    assert r.ends_at == datetime(2030, 3, 14, tzinfo=UTC) == majority_start(date(2030, 3, 14))
    assert r.in_force(datetime(2030, 3, 13, 23, 59, 59, tzinfo=UTC))
    assert not r.in_force(datetime(2030, 3, 14, tzinfo=UTC))


def test_a_relation_is_in_force_until_the_earliest_of_its_ends() -> None:
    until = NOW + timedelta(days=30)
    ended = NOW + timedelta(days=10)
    r = relation(valid_until=until, ended_at=ended)
    assert r.ends_at == ended
    assert r.in_force(ended - timedelta(seconds=1)) and not r.in_force(ended)
    assert relation(valid_until=until).ends_at == until
    starts_later = relation(valid_from=NOW + timedelta(days=1))
    assert not starts_later.in_force(NOW)
    adult_guardianship = relation(kind=RelationKind.GUARDIAN, majority_on=None)
    assert adult_guardianship.ends_at is None and adult_guardianship.in_force(NOW)


def test_parents_and_guardians_cover_every_scope_authorised_persons_only_theirs() -> None:
    assert relation().terms.scopes == FULL_SCOPES
    assert relation(kind=RelationKind.GUARDIAN, scopes=frozenset({Scope.HISTORY})).covers(
        Scope.CONSENTS
    )
    helper = relation(
        kind=RelationKind.AUTHORISED, scopes=frozenset({Scope.HISTORY}), majority_on=None
    )
    assert helper.covers(Scope.HISTORY) and not helper.covers(Scope.CONSENTS)


def test_choose_says_why_no_relation_lets_someone_act() -> None:
    with pytest.raises(errors.RepresentationMissingError):
        choose([], Scope.CONSENTS, NOW)
    ended = relation(ended_at=NOW - timedelta(hours=1))
    with pytest.raises(errors.RepresentationEndedError):
        choose([ended], Scope.CONSENTS, NOW)
    history_only = relation(
        "0190e0c2-1234-7abc-8def-0123456789ac",
        kind=RelationKind.AUTHORISED,
        scopes=frozenset({Scope.HISTORY}),
        majority_on=None,
    )
    with pytest.raises(errors.RepresentationScopeError):
        choose([ended, history_only], Scope.CONSENTS, NOW)
    assert choose([ended, history_only], Scope.HISTORY, NOW) is history_only
    longer = relation("0190e0c2-1234-7abc-8def-0123456789ad", majority_on=date(2031, 1, 1))
    assert choose([relation(), longer], Scope.CONSENTS, NOW) is longer


def test_who_is_a_minor_is_the_latest_majority_date_even_of_ended_relations() -> None:
    ended = relation(ended_at=NOW - timedelta(days=1), majority_on=date(2032, 1, 1))
    guardian = relation(kind=RelationKind.GUARDIAN, majority_on=None)
    assert minor_until([ended, guardian]) == datetime(2032, 1, 1, tzinfo=UTC)
    assert is_minor([ended], NOW) and not is_minor([guardian], NOW)
    assert minor_until([]) is None


@pytest.mark.parametrize(
    "change,error",
    [
        (dict(represented=PARENT), errors.InvalidArgumentError),
        (dict(majority_on=None), errors.InvalidArgumentError),
        (dict(majority_on=date(2026, 6, 1)), errors.InvalidArgumentError),  # already of age
        (dict(majority_on=date(2060, 1, 1)), errors.InvalidArgumentError),
        (dict(kind=RelationKind.AUTHORISED, scopes=frozenset()), errors.InvalidArgumentError),
        (dict(kind="stepparent"), errors.InvalidArgumentError),
        (
            dict(kind=RelationKind.AUTHORISED, scopes=frozenset({"everything"})),
            errors.InvalidArgumentError,
        ),
        (dict(valid_until=NOW - timedelta(days=2)), errors.InvalidArgumentError),
        (dict(represented_name="An\u202eBình"), errors.UnsafeCharactersError),
        (dict(representative_name="\x1b[2Jroot"), errors.UnsafeCharactersError),
        (dict(reference="x" * 201), errors.LimitExceededError),
    ],
)
def test_what_the_authority_may_not_register(
    change: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        check_terms(terms(**change), now=NOW)


def test_an_amendment_keeps_the_people_and_the_kind_and_an_end_is_final() -> None:
    old = relation()
    assert check_amendment(old, replace(old.terms, reference="birth reg."), now=NOW).reference
    for swapped in (
        replace(old.terms, representative=OTHER),
        replace(old.terms, represented=OTHER),
        replace(old.terms, kind=RelationKind.GUARDIAN),
    ):
        with pytest.raises(errors.InvalidArgumentError):
            check_amendment(old, swapped, now=NOW)
    ended = relation(ended_at=NOW)
    with pytest.raises(errors.FailedPreconditionError):
        check_amendment(ended, ended.terms, now=NOW)
    with pytest.raises(errors.FailedPreconditionError):
        check_end(ended, NOW, "again")
    with pytest.raises(errors.InvalidArgumentError):
        check_end(old, old.terms.valid_from - timedelta(seconds=1), "before it began")


def test_a_representatives_actor_names_the_relation_and_leaves_it_behind_outside() -> None:
    actor = representative_actor(RelationKind.PARENT, RID)
    assert actor == f"representative:parent:{RID}"
    assert parse_actor(actor) == (RelationKind.PARENT, RID)
    assert public_actor(actor) == "representative:parent"
    assert parse_actor("representative:parent") == (RelationKind.PARENT, None)
    assert public_actor("citizen") == "citizen" and public_actor("VN:GOV:VSS:benefits")


@pytest.mark.parametrize(
    "actor",
    [
        "representative:parent:079090000001",  # a national id where the relation id goes
        f"representative:stepfather:{RID}",
        f"representative:parent:{RID}:extra",
        f"Representative:parent:{RID}",
        "representative",
        "citizen",
        f"representative:parent:{RID.upper()}",
    ],
)
def test_anything_else_is_not_a_representative(actor: str) -> None:
    assert parse_actor(actor) is None
    with pytest.raises(errors.InvalidArgumentError):
        representative_actor(RelationKind.PARENT, "079090000001")
