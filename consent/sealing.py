"""Seals what the consent store must keep but must not show: terms and artefacts; no I/O.

The stored terms and the signed artefact both name the citizen (``sub``), so the consent
database keeps them only sealed (ADR 0004, "Personal data at rest"): AES-256-GCM under the
consent service's **data key**, with a fresh random 96-bit nonce, and the consent id and the
column as associated data, so a sealed value opens only in the row and column it was written
for (a value copied into another consent's row does not open). The stored text is::

    cdx-sealed-v1.<key id>.<base64url(nonce || ciphertext || tag)>

The key id (``key_id``: 16 hex digits of an HMAC of the key) names the key a value was sealed
under, so a rotation can keep the previous keys for opening while every new value is sealed
under the current one, and a wrong key file is reported as such rather than as tampering.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdx import crypto, errors

PREFIX = "cdx-sealed-v1"
#: The sealed columns of ``consents``.
TERMS, ARTEFACT = "terms", "artefact"
#: The Alembic attribute that hands the data keys to migration ``consent_0003``.
MIGRATION_ATTRIBUTE = "consent_data_keys"
_AAD = b"cdx/consent/sealed/v1\n"
_KEY_ID_CONTEXT = b"cdx/consent/data-key-id/v1"
_DATA_KEY_CONTEXT = b"cdx/consent/data-key/v1"
_NONCE = crypto.AEAD_NONCE_SIZE
_TAG = 16


def key_id(key: bytes) -> str:
    """The public name of a data key (it reveals nothing about the key)."""
    return hmac.new(key, _KEY_ID_CONTEXT, hashlib.sha256).hexdigest()[:16]


def derive_data_key(tag_key: bytes) -> bytes:
    """The data key of an instance provisioned without ``data.key``: HMAC-SHA256 keyed with
    the subject tag key over a fixed context (an independent key for a different use)."""
    return hmac.new(tag_key, _DATA_KEY_CONTEXT, hashlib.sha256).digest()


def is_sealed(text: str) -> bool:
    """Whether a stored value is sealed (rows written before ``consent_0003`` are not)."""
    return text.startswith(PREFIX + ".")


def _aad(consent_id: str, column: str) -> bytes:
    return _AAD + column.encode() + b"\n" + consent_id.encode()


class DataKeys:
    """The consent store's data keys: ``current`` seals, ``current`` or a ``retired`` key
    opens (a rotation resealing under the new key still reads what the old one sealed)."""

    __slots__ = ("_ciphers", "current_id", "retired_ids")

    def __init__(self, current: bytes, retired: Iterable[bytes] = ()) -> None:
        keys = [current, *retired]
        if any(not isinstance(k, bytes) or len(k) != crypto.AEAD_KEY_SIZE for k in keys):
            raise errors.InvalidArgumentError("a consent data key is 32 bytes")
        self._ciphers = {key_id(k): AESGCM(k) for k in reversed(keys)}
        self.current_id = key_id(current)
        self.retired_ids = tuple(k for k in self._ciphers if k != self.current_id)

    def __repr__(self) -> str:
        return f"DataKeys(current={self.current_id}, retired={list(self.retired_ids)})"

    def seal(self, consent_id: str, column: str, plaintext: str) -> str:
        """Seal ``plaintext`` for ``column`` of consent ``consent_id`` under the current key."""
        nonce = os.urandom(_NONCE)
        data = self._ciphers[self.current_id].encrypt(
            nonce, plaintext.encode(), _aad(consent_id, column)
        )
        encoded = base64.urlsafe_b64encode(nonce + data).rstrip(b"=").decode("ascii")
        return f"{PREFIX}.{self.current_id}.{encoded}"

    def sealed_under_current(self, text: str) -> bool:
        return text.startswith(f"{PREFIX}.{self.current_id}.")

    def open(self, consent_id: str, column: str, text: str) -> str:
        """The plaintext of a value ``seal`` produced for this consent and column.

        Raises:
            KeyStoreError: the value is not sealed, was sealed under a key this service does
                not hold, or does not open (tampered, or moved from another row or column).
        """
        parts = text.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise errors.KeyStoreError("a stored consent value is not sealed")
        cipher = self._ciphers.get(parts[1])
        if cipher is None:
            raise errors.KeyStoreError(
                f"a stored consent is sealed under data key {parts[1][:16]!r}, "
                "which this consent service does not hold"
            )
        try:
            data = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
            if len(data) < _NONCE + _TAG:
                raise ValueError("too short")
            plain = cipher.decrypt(data[:_NONCE], data[_NONCE:], _aad(consent_id, column))
            return plain.decode()
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise errors.KeyStoreError("a stored consent value does not open") from exc
