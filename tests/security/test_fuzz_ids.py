"""Fuzzing the identifier parsers: only InvalidIdentifierError / InvalidCitizenIdError escape,
and whatever parses round-trips exactly (so a hostile id can never alias a registered one)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx.errors import InvalidCitizenIdError, InvalidIdentifierError
from cdx.ids import CitizenId, MemberId, SecurityServerId, ServiceId, SubsystemId

from .fuzzing import HOSTILE_STRINGS, expect_error, fuzz_settings, outcome

_PART_CHARS = "ABCXYZabcxyz0189'()+,-.=?"
#: Mostly grammar characters and separators, so that many examples get deep into the parser.
_ID_TEXT = st.one_of(
    st.text(alphabet=_PART_CHARS + ":/%", max_size=80),
    st.text(max_size=80),
    st.sampled_from(HOSTILE_STRINGS),
    st.lists(st.text(alphabet=_PART_CHARS, max_size=70), min_size=1, max_size=6).map(":".join),
)

PARSERS = [MemberId.parse, SubsystemId.parse, ServiceId.parse, SecurityServerId.parse]


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__qualname__)
@fuzz_settings()
@given(text=_ID_TEXT)
def test_fuzz_identifier_parsers_raise_only_invalid_identifier(parse, text: str) -> None:
    result = outcome(parse, text)
    if isinstance(result, Exception):
        assert isinstance(result, InvalidIdentifierError)
        return
    assert str(result) == text
    assert parse(str(result)) == result


@fuzz_settings()
@given(text=st.one_of(_ID_TEXT, _ID_TEXT.map(lambda t: "urn:cdx:server:" + t)))
def test_fuzz_server_uri_parser(text: str) -> None:
    result = outcome(SecurityServerId.from_uri, text)
    if isinstance(result, Exception):
        assert isinstance(result, InvalidIdentifierError)
        return
    assert SecurityServerId.from_uri(result.uri()) == result


@fuzz_settings()
@given(
    text=st.one_of(st.text(max_size=30), st.text(alphabet="0123456789", max_size=14)),
    instance=st.sampled_from(["VN", "EE", ""]),
)
def test_fuzz_citizen_id_parser(text: str, instance: str) -> None:
    result = outcome(CitizenId.parse, text, instance)
    if isinstance(result, Exception):
        assert isinstance(result, InvalidCitizenIdError)
        return
    assert result.value == text
    assert text not in repr(result) and text not in str(result)


@pytest.mark.parametrize("hostile", HOSTILE_STRINGS)
def test_hostile_strings_are_not_identifiers(hostile: str) -> None:
    for parse in PARSERS:
        expect_error(InvalidIdentifierError, parse, hostile)
    expect_error(InvalidCitizenIdError, CitizenId.parse, hostile)
