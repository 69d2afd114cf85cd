"""Identifiers: grammar of DESIGN §4, parse/str round trips, citizen ids never shown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx.errors import InvalidCitizenIdError, InvalidIdentifierError
from cdx.ids import CitizenId, MemberId, SecurityServerId, ServiceId, SubsystemId

PART = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'()+,-.=?",
    min_size=1,
    max_size=64,
)


@given(PART, PART, PART)
def test_member_round_trip(i: str, c: str, m: str) -> None:
    member = MemberId(i, c, m)
    assert MemberId.parse(str(member)) == member


@given(PART, PART, PART, PART)
def test_subsystem_and_server_round_trip(i: str, c: str, m: str, s: str) -> None:
    sub = SubsystemId(MemberId(i, c, m), s)
    assert SubsystemId.parse(str(sub)) == sub
    server = SecurityServerId(MemberId(i, c, m), s)
    assert SecurityServerId.parse(str(server)) == server
    assert SecurityServerId.from_uri(server.uri()) == server


@given(PART, PART, PART, PART, PART, st.one_of(st.just(""), PART))
def test_service_round_trip(i: str, c: str, m: str, s: str, code: str, version: str) -> None:
    svc = ServiceId(SubsystemId(MemberId(i, c, m), s), code, version)
    assert ServiceId.parse(str(svc)) == svc


def test_examples_from_the_design() -> None:
    svc = ServiceId.parse("VN:GOV:BCA:population/address/v1")
    assert svc.subsystem == SubsystemId.parse("VN:GOV:BCA:population")
    assert svc.code == "address"
    assert svc.version == "v1"
    assert str(svc.subsystem.member) == "VN:GOV:BCA"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "VN:GOV",
        "VN:GOV:BCA:x:y",
        "VN::BCA",
        "VN:GOV:BC A",
        "VN:GOV:BCA;DROP TABLE members",
        "VN:GOV:../../etc/passwd",
        "VN:GOV:BCA\x00",
        "VN:GOV:BCÁ",
        "VN:GOV:" + "A" * 65,
    ],
)
def test_malformed_member_ids_are_rejected(text: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        MemberId.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "VN:GOV:BCA:population",
        "VN:GOV:BCA:population/",
        "VN:GOV:BCA:population/address/",
        "VN:GOV:BCA:population/address/v1/x",
        "VN:GOV:BCA/address",
        "VN:GOV:BCA:population/addr ess",
        "VN:GOV:BCA:population/' OR 1=1 --",
    ],
)
def test_malformed_service_ids_are_rejected(text: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        ServiceId.parse(text)


@pytest.mark.parametrize("bad", [None, 42, b"VN:GOV:BCA"])
def test_non_strings_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidIdentifierError):
        MemberId.parse(bad)  # type: ignore[arg-type]


def test_server_uri_rejects_other_schemes() -> None:
    with pytest.raises(InvalidIdentifierError):
        SecurityServerId.from_uri("urn:cdx:admin:alice")


def test_citizen_id_is_validated_and_never_shown() -> None:
    cid = CitizenId.parse("079123456789")
    assert cid.value == "079123456789"
    assert "079123456789" not in repr(cid)
    assert "079123456789" not in str(cid)
    assert "079123456789" not in f"{cid!r} {cid}"


@pytest.mark.parametrize(
    "text", ["", "12345678901", "1234567890123", "07912345678a", " 079123456789"]
)
def test_invalid_vn_citizen_ids_are_rejected(text: str) -> None:
    with pytest.raises(InvalidCitizenIdError):
        CitizenId.parse(text, "VN")
