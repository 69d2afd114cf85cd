"""Sealing of stored consent terms and artefacts (``consent.sealing``): AES-256-GCM bound to
the consent id and column, named by key id, opened by the current or a retired key."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx import errors
from consent.sealing import (
    ARTEFACT,
    PREFIX,
    TERMS,
    DataKeys,
    derive_data_key,
    is_sealed,
    key_id,
)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
CONSENT = "01a237de-9730-7f13-b8f2-d40e537f3cac"
TERMS_JSON = '{"grantee":"VN:GOV:VSS:benefits","sub":"079090000001"}'


def test_sealed_terms_open_only_for_their_consent_and_column() -> None:
    keys = DataKeys(KEY)
    sealed = keys.seal(CONSENT, TERMS, TERMS_JSON)
    assert keys.open(CONSENT, TERMS, sealed) == TERMS_JSON
    assert is_sealed(sealed) and sealed.startswith(f"{PREFIX}.{key_id(KEY)}.")
    assert "079090000001" not in sealed
    with pytest.raises(errors.KeyStoreError, match="does not open"):
        keys.open("01a237de-9730-7f13-b8f2-d40e537f3cad", TERMS, sealed)
    with pytest.raises(errors.KeyStoreError, match="does not open"):
        keys.open(CONSENT, ARTEFACT, sealed)


def test_each_seal_uses_a_fresh_nonce() -> None:
    keys = DataKeys(KEY)
    assert keys.seal(CONSENT, TERMS, TERMS_JSON) != keys.seal(CONSENT, TERMS, TERMS_JSON)


def test_a_value_sealed_under_an_unknown_key_names_that_key() -> None:
    sealed = DataKeys(OTHER).seal(CONSENT, TERMS, TERMS_JSON)
    with pytest.raises(errors.KeyStoreError, match=key_id(OTHER)):
        DataKeys(KEY).open(CONSENT, TERMS, sealed)


def test_retired_keys_open_and_only_the_current_key_seals() -> None:
    old = DataKeys(OTHER).seal(CONSENT, TERMS, TERMS_JSON)
    rotated = DataKeys(KEY, [OTHER])
    assert rotated.open(CONSENT, TERMS, old) == TERMS_JSON
    assert not rotated.sealed_under_current(old)
    fresh = rotated.seal(CONSENT, TERMS, TERMS_JSON)
    assert rotated.sealed_under_current(fresh)
    assert rotated.retired_ids == (key_id(OTHER),)
    assert DataKeys(KEY, [KEY]).retired_ids == ()


def test_keys_never_appear_in_repr() -> None:
    text = repr(DataKeys(KEY, [OTHER]))
    assert KEY.hex() not in text and OTHER.hex() not in text and key_id(KEY) in text


@pytest.mark.parametrize("key", [b"", b"x" * 31, b"x" * 33, "k" * 32])
def test_data_keys_are_32_bytes(key: object) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        DataKeys(key)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgumentError):
        DataKeys(KEY, [key])  # type: ignore[list-item]


def test_derived_data_key_differs_from_the_tag_key() -> None:
    tag = os.urandom(32)
    assert derive_data_key(tag) != tag and len(derive_data_key(tag)) == 32
    assert derive_data_key(tag) == derive_data_key(tag) != derive_data_key(os.urandom(32))


_SEALED = DataKeys(KEY).seal(CONSENT, TERMS, TERMS_JSON)
_PREFIX, _KID, _BODY = _SEALED.split(".")
_RAW = base64.urlsafe_b64decode(_BODY + "=" * (-len(_BODY) % 4))


def _enc(data: bytes) -> str:
    return f"{_PREFIX}.{_KID}." + base64.urlsafe_b64encode(data).rstrip(b"=").decode()


#: Named cases (the values hold a random nonce: pytest ids must not depend on them).
_TAMPERED = {
    "never_sealed": TERMS_JSON,
    "empty": "",
    "no_body": f"{_PREFIX}.{_KID}",
    "empty_body": f"{_PREFIX}.{_KID}.",
    "extra_part": f"{_SEALED}.x",
    "other_version": f"cdx-sealed-v2.{_KID}.{_BODY}",
    "not_base64": f"{_PREFIX}.{_KID}.{_BODY[:-1]}!",
    "cut_text": f"{_PREFIX}.{_KID}.{_BODY[:10]}",
    "shorter_than_nonce_and_tag": _enc(_RAW[:27]),
    "nonce_bit_flipped": _enc(bytes([_RAW[0] ^ 1]) + _RAW[1:]),
    "tag_bit_flipped": _enc(_RAW[:-1] + bytes([_RAW[-1] ^ 0x80])),
    "byte_appended": _enc(_RAW + b"\x00"),
    "two_chars_cut": f"{_PREFIX}.{_KID}.{_BODY[:-2]}",
}


@pytest.mark.parametrize("case", sorted(_TAMPERED))
def test_malformed_or_tampered_values_raise_key_store_error(case: str) -> None:
    with pytest.raises(errors.KeyStoreError):
        DataKeys(KEY).open(CONSENT, TERMS, _TAMPERED[case])


@given(st.text(max_size=2000), st.sampled_from([TERMS, ARTEFACT]))
def test_seal_and_open_round_trip(plaintext: str, column: str) -> None:
    keys = DataKeys(KEY)
    assert keys.open(CONSENT, column, keys.seal(CONSENT, column, plaintext)) == plaintext


@given(st.text(max_size=300))
def test_opening_arbitrary_text_raises_only_key_store_error(text: str) -> None:
    with pytest.raises(errors.KeyStoreError):
        DataKeys(KEY).open(CONSENT, TERMS, f"{PREFIX}.{key_id(KEY)}.{text}")
