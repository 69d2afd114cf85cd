"""Unit tests for the consent checker's cache rules (which change overtakes which decision)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cdx import errors
from cdx.lawful import ConsentGrant
from consent.checker import CacheEntry

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLIENT, OTHER = "VN:GOV:VSS:benefits", "VN:GOV:GDT:income"


def allow(
    consent_id: str = "c1", decided_at: int = 10, until: datetime | None = None
) -> CacheEntry:
    grant = ConsentGrant(consent_id, frozenset({"annual_income"}))
    return CacheEntry(grant, "", consent_id, until or NOW + timedelta(days=1), 100.0, decided_at)


def deny(code: str = "consent_missing", consent_id: str = "", decided_at: int = 10) -> CacheEntry:
    return CacheEntry(None, code, consent_id, None, 100.0, decided_at)


def test_a_change_of_the_consent_relied_on_overtakes_an_allow() -> None:
    assert allow().affected_by(11, "c1", CLIENT, CLIENT)
    assert not allow().affected_by(11, "c2", CLIENT, CLIENT)  # another consent cannot revoke it
    assert not allow().affected_by(10, "c1", CLIENT, CLIENT)  # already reflected


def test_any_change_for_the_client_overtakes_a_denial() -> None:
    assert deny().affected_by(11, "c9", CLIENT, CLIENT)  # e.g. a new consent
    assert not deny().affected_by(11, "c9", OTHER, CLIENT)
    assert not deny().affected_by(9, "c9", CLIENT, CLIENT)
    assert deny("consent_paused", "c3").affected_by(11, "c3", OTHER, CLIENT)


def test_entries_expire_by_ttl_and_by_consent_end() -> None:
    entry = allow(until=NOW + timedelta(seconds=5))
    assert entry.fresh(101.0, 30.0, NOW)
    assert not entry.fresh(131.0, 30.0, NOW)  # older than the TTL
    assert not entry.fresh(101.0, 30.0, NOW + timedelta(seconds=5))  # consent ended


def test_cached_denial_raises_its_reason() -> None:
    with pytest.raises(errors.ConsentPausedError) as info:
        deny("consent_paused", "c3").result()
    assert info.value.consent_id == "c3"  # type: ignore[attr-defined]
    assert allow().result().consent_id == "c1"
