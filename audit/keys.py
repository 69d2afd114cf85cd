"""Keys that protect commitment openings: per-epoch keys, the subject-index key, shredding.

Openings (salts and the subject id, DESIGN §8) are sealed with AES-256-GCM under the key of
their **epoch** (the UTC calendar month of the record's time). Each epoch key, and the key of
the subject index (HMAC-SHA256), is random, stored in ``audit_keys`` HPKE-wrapped to the log's
X25519 **master key** (a file encrypted with the instance passphrase). Destroying an epoch's
wrapped key crypto-shreds its openings; the tree, which holds only salted commitments, still
verifies.

Writers cache unwrapped keys for a few seconds; readers of openings check the database every
time, so a shred takes effect at once for citizens and inspectors.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from audit.store import AuditStore
from cdx import crypto, errors
from cdx.v1 import audit_pb2

_WRAP_INFO = b"cdx/audit-key/v1\n"
_OPENING_AAD = b"cdx/audit-opening/v1\n"
_SUBJECT_MAC_CONTEXT = b"cdx/audit-subject/v1\n"
INDEX_KEY_NAME = "index"
EPOCH_PREFIX = "epoch:"
_WRITER_CACHE_SECONDS = 10.0


def epoch_of(time_ms: int) -> str:
    """The epoch (``YYYY-MM``, UTC) of a record time in Unix milliseconds."""
    when = datetime.fromtimestamp(max(time_ms, 0) / 1000, tz=UTC)
    return f"{when.year:04d}-{when.month:02d}"


def epoch_end(epoch: str) -> datetime:
    """The first instant after ``epoch``.

    Raises:
        InvalidArgumentError: not a ``YYYY-MM`` epoch.
    """
    try:
        year, month = (int(p) for p in epoch.split("-"))
        if not (1 <= month <= 12 and 1970 <= year <= 9999):
            raise ValueError(epoch)
    except ValueError as exc:
        raise errors.InvalidArgumentError("an epoch is YYYY-MM") from exc
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


_ciphers: dict[bytes, AESGCM] = {}


def seal_opening(key: bytes, opening: audit_pb2.RecordOpening) -> bytes:
    """Encrypt an opening, bound to its record id (``crypto.aead_seal``'s format).

    The cipher object of each epoch key is kept: building it (the AES key schedule) costs
    more than sealing one small opening.
    """
    cipher = _ciphers.get(key)
    if cipher is None:
        if len(key) != crypto.AEAD_KEY_SIZE:
            raise errors.InvalidArgumentError("an AEAD key is 32 bytes")
        if len(_ciphers) > 64:
            _ciphers.clear()
        cipher = _ciphers[key] = AESGCM(key)
    data = opening.SerializeToString(deterministic=True)
    nonce = os.urandom(crypto.AEAD_NONCE_SIZE)
    return nonce + cipher.encrypt(nonce, data, _OPENING_AAD + opening.record_id.encode())


def open_opening(key: bytes, record_id: str, sealed: bytes) -> audit_pb2.RecordOpening:
    """Decrypt an opening sealed for ``record_id``.

    Raises:
        DecryptionError: wrong key, wrong record, or tampered bytes.
    """
    data = crypto.aead_open(key, sealed, _OPENING_AAD + record_id.encode())
    opening: audit_pb2.RecordOpening = audit_pb2.RecordOpening.FromString(data)
    return opening


class KeyRing:
    """Creates, unwraps, caches and destroys the opening keys of one audit database."""

    def __init__(self, store: AuditStore, master_key: x25519.X25519PrivateKey) -> None:
        self._store = store
        self._master = master_key
        self._public = master_key.public_key()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._index_key: bytes | None = None

    def _wrap(self, name: str, key: bytes) -> bytes:
        return crypto.hpke_seal(self._public, key, _WRAP_INFO + name.encode())

    def _unwrap(self, name: str, wrapped: bytes) -> bytes:
        try:
            return crypto.hpke_open(self._master, wrapped, _WRAP_INFO + name.encode())
        except errors.DecryptionError as exc:
            raise errors.KeyStoreError("an audit key does not open with the master key") from exc

    def _get_or_create(self, name: str, now_ms: int) -> bytes | None:
        found = self._store.wrapped_keys([name])
        if name not in found:
            self._store.insert_key(name, self._wrap(name, secrets.token_bytes(32)), now_ms)
            found = self._store.wrapped_keys([name])  # another process may have won the insert
        wrapped = found.get(name)
        return None if wrapped is None else self._unwrap(name, wrapped)

    def index_key(self, now_ms: int) -> bytes:
        """The subject-index HMAC key (created on first use, then kept in memory)."""
        with self._lock:
            if self._index_key is None:
                key = self._get_or_create(INDEX_KEY_NAME, now_ms)
                if key is None:
                    raise errors.KeyStoreError("the subject-index key was destroyed")
                self._index_key = key
            return self._index_key

    def subject_mac(self, subject: str, now_ms: int) -> bytes:
        """HMAC-SHA256 of a subject under the index key: links entries, reveals nothing."""
        # hmac.digest: the one-shot form of hmac.new(...).digest(), the same bytes, faster.
        return hmac.digest(
            self.index_key(now_ms), _SUBJECT_MAC_CONTEXT + subject.encode(), hashlib.sha256
        )

    def epoch_key_for_writing(self, epoch: str, now_ms: int) -> bytes | None:
        """The key of ``epoch`` (created if new); ``None`` if the epoch was shredded."""
        name = EPOCH_PREFIX + epoch
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and now - cached[0] < _WRITER_CACHE_SECONDS:
                return cached[1]
            key = self._get_or_create(name, now_ms)
            if key is None:
                self._cache.pop(name, None)
                return None
            self._cache[name] = (now, key)
            return key

    def epoch_keys_for_reading(self, epochs: Sequence[str]) -> dict[str, bytes]:
        """Keys of the given epochs that still exist (read from the database each time)."""
        names = {EPOCH_PREFIX + e: e for e in set(epochs)}
        found = self._store.wrapped_keys(list(names))
        return {
            names[name]: self._unwrap(name, wrapped)
            for name, wrapped in found.items()
            if wrapped is not None
        }

    def epochs(self) -> list[tuple[str, bool]]:
        """``(epoch, destroyed)`` of every epoch that has a key."""
        return [(n[len(EPOCH_PREFIX) :], d) for n, d in self._store.key_names(EPOCH_PREFIX)]

    def shred_before(self, before: datetime, now_ms: int) -> list[str]:
        """Destroy the key of every epoch that ended at or before ``before``; returns them."""
        doomed = [e for e, destroyed in self.epochs() if not destroyed and epoch_end(e) <= before]
        if doomed:
            self._store.destroy_keys([EPOCH_PREFIX + e for e in doomed], doomed, now_ms)
        with self._lock:
            for e in doomed:
                self._cache.pop(EPOCH_PREFIX + e, None)
        return doomed
