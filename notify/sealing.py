"""Seals what the notification store must keep but must not show, and tags citizens; no I/O.

Preferences hold a citizen's e-mail address and app handle, and every queued message its
address: personal data. They are stored only sealed, AES-256-GCM under the service's **data
key** with a fresh 96-bit nonce and ``"cdx/notify/sealed/v1\\n" || table || "\\n" || row key``
as associated data, so a value copied into another row does not open. Stored text::

    cdx-sealed-v1.<key id>.<base64url(nonce || ciphertext || tag)>

Rows are found by **tags**, HMAC-SHA256 under the **tag key**: of the national id for a
citizen's preferences (the id itself is never stored), of the event, channel and address for a
delivery's idempotency key (it names the delivery without revealing the address).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdx import crypto, errors

PREFIX = "cdx-sealed-v1"
_AAD = b"cdx/notify/sealed/v1\n"
_KEY_ID_CONTEXT = b"cdx/notify/data-key-id/v1"
_SUBJECT_TAG = b"cdx/notify/subject-tag/v1\n"
_DELIVERY_TAG = b"cdx/notify/delivery/v1\n"
_NONCE = crypto.AEAD_NONCE_SIZE
_TAG = 16


def key_id(key: bytes) -> str:
    """The public name of a data key (reveals nothing about it)."""
    return hmac.new(key, _KEY_ID_CONTEXT, hashlib.sha256).hexdigest()[:16]


class Sealer:
    """Seals and opens stored values under the data key; tags under the tag key."""

    __slots__ = ("_cipher", "_kid", "_tag_key")

    def __init__(self, data_key: bytes, tag_key: bytes) -> None:
        for key in (data_key, tag_key):
            if not isinstance(key, bytes) or len(key) != crypto.AEAD_KEY_SIZE:
                raise errors.InvalidArgumentError("a notification service key is 32 bytes")
        self._cipher = AESGCM(data_key)
        self._kid = key_id(data_key)
        self._tag_key = tag_key

    def __repr__(self) -> str:
        return f"Sealer(data key {self._kid})"

    def subject_tag(self, subject: str) -> str:
        """The keyed tag a citizen's preferences are stored under (never the id)."""
        return hmac.new(self._tag_key, _SUBJECT_TAG + subject.encode(), hashlib.sha256).hexdigest()

    def delivery_key(self, event_key: str, channel: str, address: str) -> str:
        """The idempotency key of one message: event x channel x address."""
        data = f"{event_key}\n{channel}\n{address}".encode()
        return hmac.new(self._tag_key, _DELIVERY_TAG + data, hashlib.sha256).hexdigest()

    def seal(self, table: str, row: str, plaintext: str) -> str:
        nonce = os.urandom(_NONCE)
        data = self._cipher.encrypt(nonce, plaintext.encode(), _aad(table, row))
        encoded = base64.urlsafe_b64encode(nonce + data).rstrip(b"=").decode("ascii")
        return f"{PREFIX}.{self._kid}.{encoded}"

    def open(self, table: str, row: str, text: str) -> str:
        """The plaintext of a value sealed for this table and row.

        Raises:
            KeyStoreError: not sealed, sealed under another key, or does not open.
        """
        parts = text.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise errors.KeyStoreError("a stored notification value is not sealed")
        if not hmac.compare_digest(parts[1], self._kid):
            raise errors.KeyStoreError(
                f"a stored notification value is sealed under data key {parts[1][:16]!r}, "
                "which this service does not hold"
            )
        try:
            data = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
            if len(data) < _NONCE + _TAG:
                raise ValueError("too short")
            return self._cipher.decrypt(data[:_NONCE], data[_NONCE:], _aad(table, row)).decode()
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise errors.KeyStoreError("a stored notification value does not open") from exc


def _aad(table: str, row: str) -> bytes:
    return _AAD + table.encode() + b"\n" + row.encode()
