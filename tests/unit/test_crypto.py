"""Unit tests for cdx.crypto: signatures, key files, HPKE, AEAD, commitments, secrets."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from cdx import crypto
from cdx.errors import (
    DecryptionError,
    InvalidArgumentError,
    KeyStoreError,
    MalformedError,
    SignatureError,
    UnknownKeyError,
)

ALGORITHMS = ["ecdsa-p256", "ed25519"]
PASSPHRASE = b"correct horse battery staple"


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _rsa_public() -> rsa.RSAPublicKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


# --- signatures --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sign_verify_round_trip(algorithm: Any) -> None:
    signer = crypto.KeySigner(crypto.generate_signing_key(algorithm))
    signature = signer.sign(b"exact signed bytes")
    crypto.verify(signer.public_key(), signature, b"exact signed bytes")
    assert signer.algorithm == algorithm


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tampered_data_is_rejected(algorithm: Any) -> None:
    signer = crypto.KeySigner(crypto.generate_signing_key(algorithm))
    signature = signer.sign(b"amount=100")
    with pytest.raises(SignatureError):
        crypto.verify(signer.public_key(), signature, b"amount=900")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("position", [0, 5, -1])
def test_tampered_signature_is_rejected(algorithm: Any, position: int) -> None:
    signer = crypto.KeySigner(crypto.generate_signing_key(algorithm))
    signature = signer.sign(b"data")
    with pytest.raises(SignatureError):
        crypto.verify(signer.public_key(), _flip(signature, position), b"data")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("signature", [b"", b"\x00" * 64, b"\x30\x00", b"\xff" * 200])
def test_garbage_signature_is_rejected(algorithm: Any, signature: bytes) -> None:
    key = crypto.generate_signing_key(algorithm)
    with pytest.raises(SignatureError):
        crypto.verify(key.public_key(), signature, b"data")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_signature_from_another_key_is_rejected(algorithm: Any) -> None:
    signature = crypto.KeySigner(crypto.generate_signing_key(algorithm)).sign(b"data")
    other = crypto.generate_signing_key(algorithm).public_key()
    with pytest.raises(SignatureError):
        crypto.verify(other, signature, b"data")


def test_signature_does_not_verify_under_the_other_algorithm() -> None:
    ed_signature = crypto.KeySigner(crypto.generate_signing_key("ed25519")).sign(b"data")
    with pytest.raises(SignatureError):
        crypto.verify(crypto.generate_signing_key("ecdsa-p256").public_key(), ed_signature, b"data")


@pytest.mark.parametrize(
    "public_key",
    [
        pytest.param(lambda: _rsa_public(), id="rsa"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()).public_key(), id="p384"),
        pytest.param(lambda: x25519.X25519PrivateKey.generate().public_key(), id="x25519"),
    ],
)
def test_verify_with_unsupported_key_type_raises_unknown_key(public_key: Any) -> None:
    with pytest.raises(UnknownKeyError):
        crypto.verify(public_key(), b"sig", b"data")


@pytest.mark.parametrize(
    "private_key",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="p384"),
        pytest.param(lambda: x25519.X25519PrivateKey.generate(), id="x25519"),
    ],
)
def test_key_signer_refuses_unsupported_keys(private_key: Any) -> None:
    with pytest.raises(UnknownKeyError):
        crypto.KeySigner(private_key())


def test_key_signer_satisfies_the_signer_protocol() -> None:
    signer: crypto.Signer = crypto.KeySigner(crypto.generate_signing_key())  # checked by mypy
    assert len(signer.sign(b"x")) > 0 and len(signer.key_id) == 64


def test_generate_signing_key_refuses_unknown_algorithm() -> None:
    with pytest.raises(InvalidArgumentError):
        crypto.generate_signing_key("rsa")  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_key_signer_repr_shows_no_key_material(algorithm: Any) -> None:
    key = crypto.generate_signing_key(algorithm)
    signer = crypto.KeySigner(key)
    raw = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    text = repr(signer)
    assert text == f"KeySigner(algorithm={algorithm!r}, key_id={signer.key_id!r})"
    assert raw.hex() not in text and raw[-32:].hex() not in text
    assert not hasattr(signer, "__dict__")  # no stray attribute can leak the key


def test_key_id_is_sha256_of_spki_der() -> None:
    key = crypto.generate_signing_key().public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = crypto.key_id(key)
    assert kid == hashlib.sha256(der).hexdigest()
    assert len(kid) == 64 and kid == kid.lower()
    assert crypto.KeySigner(crypto.generate_signing_key()).key_id != kid


def test_key_id_of_x25519_key() -> None:
    assert len(crypto.key_id(crypto.generate_hpke_key().public_key())) == 64


# --- public key serialisation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: crypto.generate_signing_key("ecdsa-p256").public_key(),
        lambda: crypto.generate_signing_key("ed25519").public_key(),
        lambda: crypto.generate_hpke_key().public_key(),
    ],
    ids=["p256", "ed25519", "x25519"],
)
def test_public_key_der_and_pem_round_trip(make: Any) -> None:
    key = make()
    assert crypto.key_id(crypto.public_key_from_der(crypto.public_key_to_der(key))) == (
        crypto.key_id(key)
    )
    assert crypto.key_id(crypto.public_key_from_pem(crypto.public_key_to_pem(key))) == (
        crypto.key_id(key)
    )


_GOOD_DER = crypto.public_key_to_der(crypto.generate_signing_key().public_key())
_GOOD_PEM = crypto.public_key_to_pem(crypto.generate_signing_key().public_key())

MALFORMED_DER = [
    b"",
    b"\x00",
    b"garbage",
    b"\x30\x00",
    _GOOD_DER[:-1],
    _GOOD_DER[:10],
    _GOOD_DER + b"\x00",
    _flip(_GOOD_DER, 1),
    _GOOD_PEM,
    "a string",
    None,
]
MALFORMED_PEM = [
    b"",
    b"garbage",
    b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
    b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
    _GOOD_PEM[:40],
    _GOOD_PEM.replace(b"PUBLIC KEY", b"CERTIFICATE"),
    _GOOD_DER,
    _GOOD_PEM.decode(),
    None,
]


@pytest.mark.parametrize("data", MALFORMED_DER)
def test_malformed_der_public_key_raises_malformed(data: Any) -> None:
    with pytest.raises(MalformedError):
        crypto.public_key_from_der(data)


@pytest.mark.parametrize("data", MALFORMED_PEM)
def test_malformed_pem_public_key_raises_malformed(data: Any) -> None:
    with pytest.raises(MalformedError):
        crypto.public_key_from_pem(data)


@pytest.mark.parametrize(
    "make",
    [_rsa_public, lambda: ec.generate_private_key(ec.SECP384R1()).public_key()],
    ids=["rsa", "p384"],
)
def test_unsupported_public_key_raises_unknown_key(make: Any) -> None:
    key = make()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(UnknownKeyError):
        crypto.public_key_from_der(der)
    with pytest.raises(UnknownKeyError):
        crypto.public_key_from_pem(pem)
    with pytest.raises(UnknownKeyError):
        crypto.public_key_to_der(key)


def test_raw_x25519_round_trip() -> None:
    public = crypto.generate_hpke_key().public_key()
    raw = crypto.raw_x25519_public(public)
    assert len(raw) == 32
    assert crypto.raw_x25519_public(crypto.x25519_public_from_raw(raw)) == raw


@pytest.mark.parametrize("data", [b"", b"\x00" * 31, b"\x00" * 33, b"\x00" * 64, "x" * 32, None])
def test_malformed_raw_x25519_raises_malformed(data: Any) -> None:
    with pytest.raises(MalformedError):
        crypto.x25519_public_from_raw(data)


def test_raw_x25519_refuses_other_keys() -> None:
    with pytest.raises(UnknownKeyError):
        crypto.raw_x25519_public(crypto.generate_signing_key("ed25519").public_key())  # type: ignore[arg-type]


# --- private keys as bytes (the files: tests/unit/test_keyfiles.py) ----------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: crypto.generate_signing_key("ecdsa-p256"),
        lambda: crypto.generate_signing_key("ed25519"),
        crypto.generate_hpke_key,
    ],
    ids=["p256", "ed25519", "x25519"],
)
def test_private_key_pem_round_trip_is_encrypted(make: Any) -> None:
    key = make()
    pem = crypto.private_key_to_pem(key, PASSPHRASE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = crypto.private_key_from_pem(pem, PASSPHRASE)
    assert crypto.key_id(loaded.public_key()) == crypto.key_id(key.public_key())
    with pytest.raises(KeyStoreError):
        crypto.private_key_from_pem(pem, b"wrong passphrase")


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["hunter2-password", b"hunter2-password"])
def test_secret_repr_and_str_are_redacted(value: Any) -> None:
    secret = crypto.Secret(value)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert "hunter2" not in text
    assert "redacted" in repr(secret)
    assert secret.reveal() == value


# --- HPKE --------------------------------------------------------------------------------------

INFO = b"cdx/v1 request VN:GOV:BCA:population/address"


def test_hpke_round_trip_and_fresh_ciphertexts() -> None:
    key = crypto.generate_hpke_key()
    a = crypto.hpke_seal(key.public_key(), b"payload", INFO)
    b = crypto.hpke_seal(key.public_key(), b"payload", INFO)
    assert a != b  # fresh ephemeral key per message
    assert crypto.hpke_open(key, a, INFO) == b"payload"
    assert crypto.hpke_open(key, crypto.hpke_seal(key.public_key(), b"", INFO), INFO) == b""


@settings(max_examples=30, deadline=None)
@given(plaintext=st.binary(max_size=2048), info=st.binary(max_size=64))
def test_hpke_round_trip_property(plaintext: bytes, info: bytes) -> None:
    key = _HPKE_KEY
    assert crypto.hpke_open(key, crypto.hpke_seal(key.public_key(), plaintext, info), info) == (
        plaintext
    )


_HPKE_KEY = crypto.generate_hpke_key()
_HPKE_CT = crypto.hpke_seal(_HPKE_KEY.public_key(), b"secret payload", INFO)


def test_hpke_wrong_info_fails() -> None:
    with pytest.raises(DecryptionError):
        crypto.hpke_open(_HPKE_KEY, _HPKE_CT, INFO + b"x")
    with pytest.raises(DecryptionError):
        crypto.hpke_open(_HPKE_KEY, _HPKE_CT, b"")


def test_hpke_wrong_key_fails() -> None:
    with pytest.raises(DecryptionError):
        crypto.hpke_open(crypto.generate_hpke_key(), _HPKE_CT, INFO)


@pytest.mark.parametrize("index", [0, 31, 32, 40, len(_HPKE_CT) - 1])
def test_hpke_flipped_byte_fails(index: int) -> None:
    with pytest.raises(DecryptionError):
        crypto.hpke_open(_HPKE_KEY, _flip(_HPKE_CT, index), INFO)


@pytest.mark.parametrize("length", [0, 1, 31, 32, 47, 48, len(_HPKE_CT) - 1])
def test_hpke_truncated_fails(length: int) -> None:
    with pytest.raises(DecryptionError):
        crypto.hpke_open(_HPKE_KEY, _HPKE_CT[:length], INFO)


@pytest.mark.parametrize("ciphertext", [_HPKE_CT + b"\x00", "text", None])
def test_hpke_extended_or_non_bytes_fails(ciphertext: Any) -> None:
    with pytest.raises(DecryptionError):
        crypto.hpke_open(_HPKE_KEY, ciphertext, INFO)


def test_hpke_seal_refuses_non_x25519_keys() -> None:
    with pytest.raises(UnknownKeyError):
        crypto.hpke_seal(crypto.generate_signing_key().public_key(), b"x", INFO)  # type: ignore[arg-type]


# --- AEAD --------------------------------------------------------------------------------------

_AEAD_KEY = os.urandom(32)
AAD = b"response-to:" + b"\x01" * 32
_AEAD_CT = crypto.aead_seal(_AEAD_KEY, b"response body", AAD)


def test_aead_round_trip_with_random_nonce() -> None:
    assert crypto.aead_open(_AEAD_KEY, _AEAD_CT, AAD) == b"response body"
    again = crypto.aead_seal(_AEAD_KEY, b"response body", AAD)
    assert again[:12] != _AEAD_CT[:12] and again != _AEAD_CT
    assert len(_AEAD_CT) == 12 + len(b"response body") + 16
    assert crypto.aead_open(_AEAD_KEY, crypto.aead_seal(_AEAD_KEY, b"", b""), b"") == b""


def test_aead_wrong_key_or_aad_fails() -> None:
    with pytest.raises(DecryptionError):
        crypto.aead_open(os.urandom(32), _AEAD_CT, AAD)
    with pytest.raises(DecryptionError):
        crypto.aead_open(_AEAD_KEY, _AEAD_CT, AAD + b"x")


@pytest.mark.parametrize("index", [0, 11, 12, len(_AEAD_CT) - 1])
def test_aead_flipped_byte_fails(index: int) -> None:
    with pytest.raises(DecryptionError):
        crypto.aead_open(_AEAD_KEY, _flip(_AEAD_CT, index), AAD)


@pytest.mark.parametrize("length", [0, 11, 12, 27, len(_AEAD_CT) - 1])
def test_aead_truncated_fails(length: int) -> None:
    with pytest.raises(DecryptionError):
        crypto.aead_open(_AEAD_KEY, _AEAD_CT[:length], AAD)


@pytest.mark.parametrize("key", [b"", b"\x00" * 16, b"\x00" * 31, b"\x00" * 33, "k" * 32])
def test_aead_refuses_wrong_key_size(key: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        crypto.aead_seal(key, b"x", b"")
    with pytest.raises(InvalidArgumentError):
        crypto.aead_open(key, _AEAD_CT, AAD)


@settings(max_examples=30, deadline=None)
@given(plaintext=st.binary(max_size=2048), aad=st.binary(max_size=64))
def test_aead_round_trip_property(plaintext: bytes, aad: bytes) -> None:
    assert crypto.aead_open(_AEAD_KEY, crypto.aead_seal(_AEAD_KEY, plaintext, aad), aad) == (
        plaintext
    )


# --- small primitives --------------------------------------------------------------------------


def test_constant_time_equal() -> None:
    assert crypto.constant_time_equal(b"abc", b"abc")
    assert not crypto.constant_time_equal(b"abc", b"abd")
    assert not crypto.constant_time_equal(b"abc", b"abcd")


def test_commitment_is_sha256_of_salt_and_value() -> None:
    salt = crypto.new_salt()
    assert len(salt) == 32 and crypto.new_salt() != salt
    value = b"079123456789"
    assert crypto.commitment(salt, value) == hashlib.sha256(salt + value).digest()
    assert crypto.commitment(crypto.new_salt(), value) != crypto.commitment(salt, value)


@pytest.mark.parametrize("salt", [b"", b"\x00" * 16, b"\x00" * 31, b"\x00" * 33, "s" * 32])
def test_commitment_requires_a_32_byte_salt(salt: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        crypto.commitment(salt, b"value")


def test_ed25519_keys_are_typed_as_signing_keys() -> None:
    assert isinstance(crypto.generate_signing_key("ed25519"), ed25519.Ed25519PrivateKey)
