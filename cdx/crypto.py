"""Keys, signatures, HPKE and AEAD for CDX; the one place key material is created and encoded.

Promises:

- signing keys are ECDSA P-256 (SHA-256, DER signatures) or Ed25519; HPKE keys are X25519;
- ``verify`` takes the algorithm from the key object, never from the message (DESIGN §5);
- every failed verification or decryption raises one opaque domain error
  (``SignatureError`` / ``DecryptionError``) chained to the foreign exception;
- private keys at rest are PKCS#8 PEM encrypted with ``BestAvailableEncryption``
  (``private_key_to_pem`` / ``private_key_from_pem``; ``cdx.keyfiles`` writes and reads the
  files);
- nothing here does I/O, reads the clock or logs; reprs never show key material.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import AnyStr, Generic, Literal, Protocol, TypeAlias

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdx.errors import (
    DecryptionError,
    InvalidArgumentError,
    KeyStoreError,
    MalformedError,
    SignatureError,
    UnknownKeyError,
)

__all__ = [
    "AEAD_KEY_SIZE",
    "AEAD_NONCE_SIZE",
    "HPKE_SUITE",
    "SALT_SIZE",
    "KeySigner",
    "PrivateKey",
    "PrivateSigningKey",
    "PublicKey",
    "PublicSigningKey",
    "Secret",
    "Signer",
    "SigningAlgorithm",
    "aead_open",
    "aead_seal",
    "as_signing_public_key",
    "commitment",
    "constant_time_equal",
    "generate_hpke_key",
    "generate_signing_key",
    "hpke_open",
    "hpke_seal",
    "key_id",
    "new_salt",
    "private_key_from_pem",
    "private_key_to_pem",
    "private_key_to_unencrypted_pem",
    "public_key_from_der",
    "public_key_from_pem",
    "public_key_to_der",
    "public_key_to_pem",
    "raw_x25519_public",
    "verify",
    "x25519_public_from_raw",
]

PrivateSigningKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicSigningKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
#: Every private key type CDX stores: signing keys and the X25519 HPKE key.
PrivateKey: TypeAlias = PrivateSigningKey | x25519.X25519PrivateKey
#: Every public key type CDX accepts from global configuration or certificates.
PublicKey: TypeAlias = PublicSigningKey | x25519.X25519PublicKey
SigningAlgorithm: TypeAlias = Literal["ecdsa-p256", "ed25519"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())

#: RFC 9180 suite for request payloads: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM.
#: One module-level object: constructing a Suite per message is wasted work on the hot path.
HPKE_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
_HPKE_MIN_CIPHERTEXT = 32 + 16  # X25519 encapsulated key (RFC 9180 §7.1) + GCM tag

AEAD_KEY_SIZE = 32
AEAD_NONCE_SIZE = 12
_AEAD_TAG_SIZE = 16
SALT_SIZE = 32


# --- key generation and identity ---------------------------------------------------------------


def generate_signing_key(algorithm: SigningAlgorithm = "ecdsa-p256") -> PrivateSigningKey:
    """Generate a fresh signing key.

    Raises:
        InvalidArgumentError: ``algorithm`` is not ``"ecdsa-p256"`` or ``"ed25519"``.
    """
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise InvalidArgumentError("unsupported signing algorithm")


def generate_hpke_key() -> x25519.X25519PrivateKey:
    """Generate a fresh X25519 key for receiving HPKE-sealed payloads."""
    return x25519.X25519PrivateKey.generate()


def _check_supported_public(public_key: object) -> PublicKey:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise UnknownKeyError("only the P-256 curve is supported")
        return public_key
    if isinstance(public_key, ed25519.Ed25519PublicKey | x25519.X25519PublicKey):
        return public_key
    raise UnknownKeyError("unsupported key type")


def key_id(public_key: PublicKey) -> str:
    """Lowercase hex SHA-256 of the key's SubjectPublicKeyInfo DER (64 characters).

    Raises:
        UnknownKeyError: the key is not an ECDSA P-256, Ed25519 or X25519 public key.
    """
    return hashlib.sha256(public_key_to_der(public_key)).hexdigest()


# --- signing -----------------------------------------------------------------------------------


class Signer(Protocol):
    """Anything that signs on behalf of one key (a key in memory, an HSM, a test double)."""

    @property
    def key_id(self) -> str:
        """``key_id()`` of the public key that verifies this signer's signatures."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with the key's one algorithm (ECDSA P-256/SHA-256 DER, or Ed25519)."""
        ...


class KeySigner:
    """A ``Signer`` over an in-memory private key. Its repr shows the key id only."""

    __slots__ = ("_key", "algorithm", "key_id")

    def __init__(self, private_key: PrivateSigningKey) -> None:
        """Wrap ``private_key``.

        Raises:
            UnknownKeyError: not an ECDSA P-256 or Ed25519 private key.
        """
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            self.algorithm: SigningAlgorithm = "ecdsa-p256"
        elif isinstance(private_key, ed25519.Ed25519PrivateKey):
            self.algorithm = "ed25519"
        else:
            raise UnknownKeyError("unsupported signing key type")
        self._key = private_key
        self.key_id: str = key_id(private_key.public_key())

    def public_key(self) -> PublicSigningKey:
        """The public half, for publishing in global configuration or a CSR."""
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` (ECDSA P-256 with SHA-256 and a DER signature, or Ed25519)."""
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, _ECDSA_SHA256)
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"KeySigner(algorithm={self.algorithm!r}, key_id={self.key_id!r})"


def verify(public_key: PublicKey, signature: bytes, data: bytes) -> None:
    """Verify ``signature`` over ``data``; the algorithm is fixed by the key's type.

    Raises:
        UnknownKeyError: the key is not an ECDSA P-256 or Ed25519 public key.
        SignatureError: the signature does not verify (one opaque error for every cause).
    """
    checked = _check_supported_public(public_key)
    if not isinstance(signature, bytes) or not isinstance(data, bytes):
        raise SignatureError()
    try:
        if isinstance(checked, ec.EllipticCurvePublicKey):
            checked.verify(signature, data, _ECDSA_SHA256)
        elif isinstance(checked, ed25519.Ed25519PublicKey):
            checked.verify(signature, data)
        else:
            raise UnknownKeyError("an X25519 key cannot verify signatures")
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError() from exc


# --- public key serialisation ------------------------------------------------------------------


def _public_bytes(public_key: PublicKey, encoding: serialization.Encoding) -> bytes:
    checked = _check_supported_public(public_key)
    return checked.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_to_der(public_key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER of a supported public key.

    Raises:
        UnknownKeyError: the key type or curve is not supported.
    """
    return _public_bytes(public_key, serialization.Encoding.DER)


def public_key_to_pem(public_key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of a supported public key.

    Raises:
        UnknownKeyError: the key type or curve is not supported.
    """
    return _public_bytes(public_key, serialization.Encoding.PEM)


def _load_public(load: Callable[[bytes], object], data: bytes, form: str) -> PublicKey:
    if not isinstance(data, bytes):
        raise MalformedError("public key must be bytes")
    try:
        key = load(data)
    except UnsupportedAlgorithm as exc:
        raise UnknownKeyError("unsupported key type") from exc
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"not a {form} public key") from exc
    return _check_supported_public(key)


def public_key_from_der(data: bytes) -> PublicKey:
    """Parse SubjectPublicKeyInfo DER from untrusted bytes.

    Raises:
        MalformedError: the bytes are not a public key.
        UnknownKeyError: a well-formed key of an unsupported type or curve.
    """
    return _load_public(serialization.load_der_public_key, data, "DER")


def public_key_from_pem(data: bytes) -> PublicKey:
    """Parse a SubjectPublicKeyInfo PEM block from untrusted bytes.

    Raises:
        MalformedError: the bytes are not a PEM public key.
        UnknownKeyError: a well-formed key of an unsupported type or curve.
    """
    return _load_public(serialization.load_pem_public_key, data, "PEM")


def raw_x25519_public(public_key: x25519.X25519PublicKey) -> bytes:
    """The 32 raw bytes of an X25519 public key (RFC 7748 encoding).

    Raises:
        UnknownKeyError: not an X25519 public key.
    """
    if not isinstance(public_key, x25519.X25519PublicKey):
        raise UnknownKeyError("not an X25519 public key")
    return public_key.public_bytes_raw()


def x25519_public_from_raw(data: bytes) -> x25519.X25519PublicKey:
    """Parse 32 raw bytes as an X25519 public key.

    Raises:
        MalformedError: not exactly 32 bytes.
    """
    if not isinstance(data, bytes) or len(data) != 32:
        raise MalformedError("an X25519 public key is 32 bytes")
    try:
        return x25519.X25519PublicKey.from_public_bytes(data)
    except ValueError as exc:  # pragma: no cover - every 32-byte string is accepted today
        raise MalformedError("not an X25519 public key") from exc


# --- private keys at rest (the bytes; ``cdx.keyfiles`` reads and writes the files) ------------


def private_key_to_pem(key: PrivateKey, passphrase: bytes) -> bytes:
    """``key`` as PKCS#8 PEM encrypted with ``BestAvailableEncryption(passphrase)``.

    Raises:
        InvalidArgumentError: the passphrase is empty or not bytes.
        UnknownKeyError: the key is not an ECDSA P-256, Ed25519 or X25519 private key.
    """
    if not isinstance(passphrase, bytes) or not passphrase:
        raise InvalidArgumentError("a private key is never stored without a passphrase")
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey
    ):
        raise UnknownKeyError("unsupported private key type")
    _check_supported_public(key.public_key())
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
    )


def private_key_from_pem(data: bytes, passphrase: bytes) -> PrivateKey:
    """Decrypt a ``private_key_to_pem`` result.

    Raises:
        KeyStoreError: no passphrase; the PEM is not encrypted, encrypted under another
            passphrase, corrupted, or holds an unsupported key type.
    """
    if not isinstance(passphrase, bytes) or not passphrase:
        raise KeyStoreError("a passphrase is required to load a private key")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # TypeError: the PEM is not encrypted; ValueError: wrong passphrase or corruption.
        raise KeyStoreError("wrong passphrase, or not an encrypted private key") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey):
        return key
    raise KeyStoreError("an unsupported key type")


def private_key_to_unencrypted_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM without encryption, for memory only: gRPC core needs a TLS key in clear."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Secret(Generic[AnyStr]):
    """A secret value (passphrase, token, password) whose repr and str are redacted."""

    __slots__ = ("_value",)
    _value: AnyStr

    def __init__(self, value: AnyStr) -> None:
        self._value = value

    def reveal(self) -> AnyStr:
        """The secret value itself; call at the point of use only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    def __str__(self) -> str:
        return "<redacted>"


# --- HPKE (RFC 9180) and AEAD ------------------------------------------------------------------


def hpke_seal(public_key: x25519.X25519PublicKey, plaintext: bytes, info: bytes) -> bytes:
    """Seal ``plaintext`` to ``public_key`` (RFC 9180 base mode, single shot); ``enc || ct``.

    ``info`` binds the ciphertext to its context (RFC 9180 §5.1): opening under other info fails.

    Raises:
        UnknownKeyError: not an X25519 public key.
    """
    if not isinstance(public_key, x25519.X25519PublicKey):
        raise UnknownKeyError("HPKE needs an X25519 public key")
    return HPKE_SUITE.encrypt(plaintext, public_key, info=info)


def hpke_open(private_key: x25519.X25519PrivateKey, ciphertext: bytes, info: bytes) -> bytes:
    """Open an ``hpke_seal`` ciphertext.

    Raises:
        DecryptionError: wrong key, wrong info, tampered or truncated ciphertext (one error).
    """
    if not isinstance(ciphertext, bytes) or len(ciphertext) < _HPKE_MIN_CIPHERTEXT:
        raise DecryptionError()
    try:
        return HPKE_SUITE.decrypt(ciphertext, private_key, info=info)
    except (InvalidTag, ValueError, TypeError) as exc:
        raise DecryptionError() from exc


def _check_aead_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != AEAD_KEY_SIZE:
        raise InvalidArgumentError("an AEAD key is 32 bytes")


def aead_seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM with a random 96-bit nonce; returns ``nonce || ciphertext || tag``.

    Random nonces are safe here because each response key seals few messages (NIST SP 800-38D
    §8.3 bounds random-nonce use at 2**32 messages per key).

    Raises:
        InvalidArgumentError: the key is not 32 bytes.
    """
    _check_aead_key(key)
    nonce = secrets.token_bytes(AEAD_NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, data: bytes, aad: bytes) -> bytes:
    """Open an ``aead_seal`` result.

    Raises:
        InvalidArgumentError: the key is not 32 bytes.
        DecryptionError: wrong key or aad, tampered or truncated data (one error).
    """
    _check_aead_key(key)
    if not isinstance(data, bytes) or len(data) < AEAD_NONCE_SIZE + _AEAD_TAG_SIZE:
        raise DecryptionError()
    try:
        return AESGCM(key).decrypt(data[:AEAD_NONCE_SIZE], data[AEAD_NONCE_SIZE:], aad)
    except (InvalidTag, ValueError, TypeError) as exc:
        raise DecryptionError() from exc


# --- small primitives --------------------------------------------------------------------------


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two secrets without leaking where they differ (``hmac.compare_digest``)."""
    return hmac.compare_digest(a, b)


def new_salt() -> bytes:
    """32 fresh random bytes for ``commitment``."""
    return secrets.token_bytes(SALT_SIZE)


def commitment(salt: bytes, value: bytes) -> bytes:
    """Hiding commitment ``SHA-256(salt || value)`` with a 32-byte salt.

    Raises:
        InvalidArgumentError: the salt is not exactly 32 bytes.
    """
    if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
        raise InvalidArgumentError("a commitment salt is 32 bytes")
    return hashlib.sha256(salt + value).digest()


def as_signing_public_key(public_key: object) -> PublicSigningKey:
    """Narrow a public key (e.g. from a certificate) to an ECDSA P-256 or Ed25519 key.

    Raises:
        UnknownKeyError: any other key type or curve (X25519 included: it cannot verify).
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise UnknownKeyError("only the P-256 curve is supported")
        return public_key
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return public_key
    raise UnknownKeyError("not a signing key")
