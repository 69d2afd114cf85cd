"""Seals exchange items per stream epoch: one HPKE operation per epoch, AES-GCM per item; pure.

``cryptography``'s HPKE is single-shot (``Suite.encrypt``/``decrypt``, no exported context), so
the epoch is built on it (docs/adr/0009)::

    header     = EpochHeader(version, stream_id, epoch, consumer_server, provider_server,
                             issued_at_ms, signing_key_id), serialized deterministically
    sealed     = HPKE-Seal(provider HPKE key, secret32,
                           info = "cdx/epoch-secret/v1" || SHA-256(header))     RFC 9180 §5.1
    signed     = "cdx/epoch/v1\\n" || u32be(len(header)) || header || SHA-256(sealed)
    signature  = Sign(consumer signing key, signed)
    transcript = SHA-256(signed)
    key_d      = HKDF-SHA256(secret32, salt = transcript, info = "cdx/stream/v1 <d> key", 32)
    nonce_d    = HKDF-SHA256(secret32, salt = transcript, info = "cdx/stream/v1 <d> nonce", 12)
    item       = AES-256-GCM(key_d, nonce = nonce_d XOR u96be(seq), plaintext,
                 aad = "cdx/stream-item/v1\\n" || u8(d) || u32be(epoch) || u64be(seq)
                       || SHA-256(item header))

with ``d`` = ``request`` (consumer -> provider, 1) or ``response`` (provider -> consumer, 2).

Sequence rule: in each epoch and direction the sender numbers items 0, 1, 2, ... in the order
it sends them, and the receiver requires, on arrival, exactly the next number. gRPC delivers a
stream's messages in order over TLS, so any other number is a replayed, reordered or dropped
item: it raises ``StreamSequenceError`` and the stream side is broken from then on (every later
arrival fails; the caller ends the stream). Responses are numbered when they are sent, not after
their requests, so the provider may answer in any order. An item's sequence is checked on
arrival and its body opened later (``ReceivedItem.open``), when the checks that come before
decryption allow it.

Re-keying: the consumer starts epoch 1 and a new one whenever ``needs_epoch(now)`` (after
``RekeyPolicy.max_items`` requests or ``max_age``); a response is sealed under its request's
epoch, so old epochs stay open for late answers until retired (at most ``MAX_LIVE_EPOCHS``).
Nothing here reads the clock or does I/O: time comes in as ``now``.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import struct
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf.message import DecodeError

from cdx import crypto, envelope, errors
from cdx.v1 import exchange_pb2

PROTOCOL_VERSION = 1
EPOCH_CONTEXT = b"cdx/epoch/v1\n"
EPOCH_INFO = b"cdx/epoch-secret/v1"
ITEM_CONTEXT = b"cdx/stream-item/v1\n"
STREAM_ID_SIZE = 16
SECRET_SIZE = 32
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
#: HPKE of a 32-byte secret: X25519 enc (32) + ciphertext (32) + GCM tag (16), RFC 9180 §7.
SEALED_SECRET_SIZE = 32 + SECRET_SIZE + TAG_SIZE
MAX_EPOCH_HEADER_BYTES = 1024
MAX_SIGNATURE_BYTES = 512
MAX_EPOCH = 2**32 - 1
#: Epochs a stream side keeps open at once; starting another retires the oldest.
MAX_LIVE_EPOCHS = 8


class Direction(enum.IntEnum):
    """Which way an item travels; each direction of an epoch has its own key and counter."""

    REQUEST = 1  # consumer -> provider
    RESPONSE = 2  # provider -> consumer


@dataclass(frozen=True)
class RekeyPolicy:
    """When an epoch is used up: after ``max_items`` requests or ``max_age`` since it started.

    The provider refuses requests beyond ``max_items``, or later than ``max_age + grace`` after
    it accepted the epoch (``grace`` covers items queued in transit). Both sides use the same
    policy; the defaults are the protocol's.
    """

    max_items: int = 65_536
    max_age: timedelta = timedelta(minutes=5)
    grace: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        # AES-GCM with deterministic nonces: one key never seals more than 2**32 items here.
        if not 1 <= self.max_items <= 2**32:
            raise errors.InvalidArgumentError("max_items must be in [1, 2**32]")
        if self.max_age <= timedelta(0) or self.grace < timedelta(0):
            raise errors.InvalidArgumentError("max_age must be positive and grace not negative")


@dataclass(frozen=True, slots=True)
class SealedItem:
    """An item's ciphertext and its place: travels as ``StreamItem.epoch``/``.seq``."""

    epoch: int
    seq: int
    ciphertext: bytes


def epoch_signing_input(header: bytes, sealed_secret: bytes) -> bytes:
    """The exact bytes an epoch start's signature covers."""
    return (
        EPOCH_CONTEXT
        + struct.pack(">I", len(header))
        + header
        + hashlib.sha256(sealed_secret).digest()
    )


def item_aad(direction: Direction, epoch: int, seq: int, header: bytes) -> bytes:
    """The associated data binding an item's ciphertext to its header, direction and place."""
    return (
        ITEM_CONTEXT + struct.pack(">BIQ", direction, epoch, seq) + hashlib.sha256(header).digest()
    )


class _Keys:
    """One direction of one epoch: its AES-256-GCM key and nonce base."""

    __slots__ = ("aead", "direction", "epoch", "nonce_base")

    def __init__(self, secret: bytes, transcript: bytes, epoch: int, direction: Direction) -> None:
        label = b"cdx/stream/v1 " + direction.name.lower().encode()
        key = HKDF(hashes.SHA256(), KEY_SIZE, salt=transcript, info=label + b" key").derive(secret)
        nonce = HKDF(hashes.SHA256(), NONCE_SIZE, salt=transcript, info=label + b" nonce")
        self.aead = AESGCM(key)
        self.nonce_base = int.from_bytes(nonce.derive(secret), "big")
        self.epoch = epoch
        self.direction = direction

    def nonce(self, seq: int) -> bytes:
        # RFC 9180 §5.2: nonce = base XOR I2OSP(seq, Nn); seq < 2**64, so never wraps.
        return (self.nonce_base ^ seq).to_bytes(NONCE_SIZE, "big")


@dataclass(frozen=True, slots=True)
class ReceivedItem:
    """An item whose place in its stream was checked on arrival; open it when checks allow."""

    epoch: int
    seq: int
    _keys: _Keys = field(repr=False)

    def open(self, header: bytes, ciphertext: bytes) -> bytes:
        """Decrypt the item's ciphertext, bound to ``header`` (the item's exact header bytes).

        Raises:
            LimitExceededError: the ciphertext exceeds the envelope body limit.
            DecryptionError: tampered, truncated, moved to another header, place, direction,
                epoch or stream (one error for every cause).
        """
        if len(ciphertext) > envelope.MAX_CIPHERTEXT_BYTES:
            raise errors.LimitExceededError("stream item too large")
        if len(ciphertext) < TAG_SIZE:
            raise errors.DecryptionError()
        aad = item_aad(self._keys.direction, self.epoch, self.seq, header)
        try:
            return self._keys.aead.decrypt(self._keys.nonce(self.seq), ciphertext, aad)
        except (InvalidTag, ValueError, TypeError) as exc:
            raise errors.DecryptionError() from exc


class _Epoch:
    __slots__ = ("keys", "number", "opened_at", "received", "sent")

    def __init__(self, number: int, secret: bytes, transcript: bytes, opened_at: datetime) -> None:
        self.number = number
        self.opened_at = opened_at
        self.keys = {d: _Keys(secret, transcript, number, d) for d in Direction}
        self.sent = dict.fromkeys(Direction, 0)
        self.received = dict.fromkeys(Direction, 0)


class _StreamSide:
    """Live epochs of one side of one stream, their counters, and the broken flag."""

    def __init__(self, policy: RekeyPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._epochs: dict[int, _Epoch] = {}
        self._current: _Epoch | None = None
        self._broken = False

    @property
    def current_epoch(self) -> int:
        """The epoch new requests use (0 before the first)."""
        return self._current.number if self._current else 0

    @property
    def live_epochs(self) -> tuple[int, ...]:
        """Epochs still open, oldest first."""
        return tuple(self._epochs)

    def retire(self, epoch: int) -> None:
        """Forget ``epoch`` (no item of it is outstanding); later items under it are refused."""
        with self._lock:
            gone = self._epochs.pop(epoch, None)
            if gone is not None and gone is self._current:
                self._current = None

    def _add(self, epoch: _Epoch) -> None:
        self._epochs[epoch.number] = epoch
        self._current = epoch
        while len(self._epochs) > MAX_LIVE_EPOCHS:
            del self._epochs[next(iter(self._epochs))]

    def _live(self, number: int) -> _Epoch:
        epoch = self._epochs.get(number)
        if epoch is None:
            raise errors.StreamEpochError("unknown or retired epoch")
        return epoch

    def _seal(self, epoch: _Epoch, direction: Direction, header: bytes, body: bytes) -> SealedItem:
        seq = epoch.sent[direction]
        epoch.sent[direction] = seq + 1
        keys = epoch.keys[direction]
        aad = item_aad(direction, epoch.number, seq, header)
        return SealedItem(epoch.number, seq, keys.aead.encrypt(keys.nonce(seq), body, aad))

    def _arrive(self, epoch: _Epoch, direction: Direction, seq: int) -> ReceivedItem:
        expected = epoch.received[direction]
        if seq != expected:
            what = "replayed or duplicated" if seq < expected else "reordered or after a drop"
            raise self._fail(errors.StreamSequenceError(f"stream item {what}"))
        epoch.received[direction] = expected + 1
        return ReceivedItem(epoch.number, seq, epoch.keys[direction])

    def _check_not_broken(self) -> None:
        if self._broken:
            raise errors.StreamSequenceError("the stream is broken; end it")

    def _fail(self, exc: errors.CdxError) -> errors.CdxError:
        """Break this side (fail closed: every later arrival is refused) and return ``exc``."""
        self._broken = True
        return exc


class ConsumerStream(_StreamSide):
    """The consumer's side of one stream: starts epochs, seals requests, receives responses."""

    def __init__(
        self,
        *,
        stream_id: bytes,
        consumer_server: str,
        provider_server: str,
        provider_hpke_key: x25519.X25519PublicKey,
        signer: crypto.Signer,
        policy: RekeyPolicy | None = None,
    ) -> None:
        """Set up a stream to ``provider_server`` (no epoch yet: call ``start_epoch``).

        Raises:
            InvalidArgumentError: ``stream_id`` is not 16 bytes.
            UnknownKeyError: ``provider_hpke_key`` is not an X25519 public key.
        """
        super().__init__(policy or RekeyPolicy())
        if not isinstance(stream_id, bytes) or len(stream_id) != STREAM_ID_SIZE:
            raise errors.InvalidArgumentError("a stream id is 16 bytes")
        if not isinstance(provider_hpke_key, x25519.X25519PublicKey):
            raise errors.UnknownKeyError("the provider's HPKE key must be X25519")
        self.stream_id = stream_id
        self._consumer = consumer_server
        self._provider = provider_server
        self._hpke_key = provider_hpke_key
        self._signer = signer
        self._last = 0

    def needs_epoch(self, now: datetime) -> bool:
        """True before the first epoch and once the current one is used up or too old."""
        current = self._current
        return (
            current is None
            or current.sent[Direction.REQUEST] >= self.policy.max_items
            or now - current.opened_at >= self.policy.max_age
        )

    def start_epoch(self, now: datetime) -> exchange_pb2.EpochStart:
        """Start the next epoch (one HPKE seal, one signature); send it before its first item.

        Raises:
            StreamEpochError: the stream has used every epoch number.
        """
        with self._lock:
            if self._last >= MAX_EPOCH:
                raise errors.StreamEpochError("the stream has used every epoch number")
            number = self._last + 1
            header = exchange_pb2.EpochHeader(
                protocol_version=PROTOCOL_VERSION,
                stream_id=self.stream_id,
                epoch=number,
                consumer_server=self._consumer,
                provider_server=self._provider,
                issued_at_ms=int(now.timestamp() * 1000),
                signing_key_id=self._signer.key_id,
            ).SerializeToString(deterministic=True)
            secret = secrets.token_bytes(SECRET_SIZE)
            info = EPOCH_INFO + hashlib.sha256(header).digest()
            sealed = crypto.hpke_seal(self._hpke_key, secret, info)
            signed = epoch_signing_input(header, sealed)
            signature = self._signer.sign(signed)
            self._add(_Epoch(number, secret, hashlib.sha256(signed).digest(), now))
            self._last = number
            return exchange_pb2.EpochStart(header=header, sealed_secret=sealed, signature=signature)

    def seal_request(self, header: bytes, body: bytes, now: datetime) -> SealedItem:
        """Seal a request body under the current epoch, numbering it in send order.

        Call it where items are queued for sending, in that order: the provider requires the
        numbers to arrive consecutively.

        Raises:
            StreamEpochError: no epoch yet, or the current one is used up (``needs_epoch``).
        """
        with self._lock:
            if self.needs_epoch(now):
                raise errors.StreamEpochError("start a new epoch first")
            assert self._current is not None
            return self._seal(self._current, Direction.REQUEST, header, body)

    def receive_response(self, epoch: int, seq: int) -> ReceivedItem:
        """Check a response's place on arrival (in stream order); open it with ``.open``.

        Raises:
            StreamEpochError: ``epoch`` is not live on this stream.
            StreamSequenceError: not the next response of its epoch (replayed, reordered,
                after a dropped one, or more responses than requests); the stream is broken.
        """
        with self._lock:
            self._check_not_broken()
            live = self._epochs.get(epoch)
            if live is None:
                raise self._fail(errors.StreamEpochError("response under an unknown epoch"))
            if seq >= live.sent[Direction.REQUEST]:
                raise self._fail(
                    errors.StreamSequenceError("more responses than requests in this epoch")
                )
            return self._arrive(live, Direction.RESPONSE, seq)


class ProviderStream(_StreamSide):
    """The provider's side of one stream: accepts epochs, receives requests, seals responses."""

    def __init__(
        self,
        *,
        provider_server: str,
        hpke_private_key: x25519.X25519PrivateKey,
        policy: RekeyPolicy | None = None,
    ) -> None:
        """Serve one stream as ``provider_server``, opening epoch secrets with its HPKE key.

        Raises:
            UnknownKeyError: ``hpke_private_key`` is not an X25519 private key.
        """
        super().__init__(policy or RekeyPolicy())
        if not isinstance(hpke_private_key, x25519.X25519PrivateKey):
            raise errors.UnknownKeyError("the provider's HPKE key must be X25519")
        self._provider = provider_server
        self._hpke_key = hpke_private_key
        self.stream_id: bytes | None = None
        self.consumer_server: str | None = None
        self._last = 0

    def accept_epoch(
        self,
        start: exchange_pb2.EpochStart,
        *,
        peer_server: str,
        consumer_signing_key: crypto.PublicSigningKey,
        now: datetime,
        max_age: timedelta = envelope.DEFAULT_MAX_AGE,
        max_skew: timedelta = envelope.DEFAULT_MAX_SKEW,
    ) -> int:
        """Verify an epoch start from ``peer_server`` (the stream's TLS peer) and open it.

        Checks, in order: sizes; the signature under the consumer server's registered
        ``consumer_signing_key`` (verify first, parse second); the header; that it comes from
        the TLS peer and is addressed to this server; freshness; opens the secret; that it
        belongs to this stream and is its next epoch. Returns the epoch number, now current.
        Any failure breaks this side of the stream (the caller ends it).

        Raises:
            LimitExceededError, MalformedError: bad sizes or bytes.
            SignatureError: not signed by ``consumer_signing_key``.
            ProtocolVersionError: an unsupported protocol version.
            StreamEpochError: from another server, for another provider or stream, or not the
                next epoch number.
            EnvelopeFromFutureError, EnvelopeExpiredError: outside the freshness window.
            DecryptionError: the secret does not open with this server's HPKE key.
        """
        with self._lock:
            self._check_not_broken()
        try:
            return self._accept(start, peer_server, consumer_signing_key, now, max_age, max_skew)
        except errors.CdxError as exc:
            with self._lock:
                self._fail(exc)
            raise

    def _accept(
        self,
        start: exchange_pb2.EpochStart,
        peer_server: str,
        consumer_signing_key: crypto.PublicSigningKey,
        now: datetime,
        max_age: timedelta,
        max_skew: timedelta,
    ) -> int:
        if not isinstance(start, exchange_pb2.EpochStart):
            raise errors.MalformedError("not an epoch start")
        header, sealed, signature = (
            bytes(start.header),
            bytes(start.sealed_secret),
            bytes(start.signature),
        )
        if len(header) > MAX_EPOCH_HEADER_BYTES or len(signature) > MAX_SIGNATURE_BYTES:
            raise errors.LimitExceededError("epoch start too large")
        if not header or not signature or len(sealed) != SEALED_SECRET_SIZE:
            raise errors.MalformedError("epoch start lacks header, secret or signature")
        signed = epoch_signing_input(header, sealed)
        crypto.verify(consumer_signing_key, signature, signed)
        try:
            parsed: exchange_pb2.EpochHeader = exchange_pb2.EpochHeader.FromString(header)
        except DecodeError as exc:
            raise errors.MalformedError("epoch header does not parse") from exc
        if parsed.protocol_version != PROTOCOL_VERSION:
            raise errors.ProtocolVersionError()
        if len(parsed.stream_id) != STREAM_ID_SIZE:
            raise errors.MalformedError("a stream id is 16 bytes")
        if parsed.consumer_server != peer_server:
            raise errors.StreamEpochError("epoch started by another server than the peer")
        if parsed.provider_server != self._provider:
            raise errors.StreamEpochError("epoch addressed to another provider")
        now_ms = int(now.timestamp() * 1000)
        if parsed.issued_at_ms > now_ms + int(max_skew.total_seconds() * 1000):
            raise errors.EnvelopeFromFutureError()
        if now_ms - parsed.issued_at_ms > int(max_age.total_seconds() * 1000):
            raise errors.EnvelopeExpiredError("epoch start too old")
        info = EPOCH_INFO + hashlib.sha256(header).digest()
        secret = crypto.hpke_open(self._hpke_key, sealed, info)
        if len(secret) != SECRET_SIZE:
            raise errors.MalformedError("an epoch secret is 32 bytes")
        with self._lock:
            if self.stream_id is not None and (
                parsed.stream_id != self.stream_id or parsed.consumer_server != self.consumer_server
            ):
                raise errors.StreamEpochError("epoch of another stream")
            if parsed.epoch != self._last + 1:
                raise errors.StreamEpochError("not the next epoch of this stream")
            self.stream_id = bytes(parsed.stream_id)
            self.consumer_server = parsed.consumer_server
            self._add(_Epoch(parsed.epoch, secret, hashlib.sha256(signed).digest(), now))
            number: int = parsed.epoch
            self._last = number
            return number

    def receive_request(self, epoch: int, seq: int, now: datetime) -> ReceivedItem:
        """Check a request's place on arrival (in stream order); open it with ``.open``.

        Raises:
            StreamEpochError: ``epoch`` is not the current epoch, or it is used up (more than
                ``max_items`` requests, or older than ``max_age + grace``).
            StreamSequenceError: not the next request (replayed, reordered, after a dropped
                one); the stream is broken.
        """
        with self._lock:
            self._check_not_broken()
            current = self._current
            if current is None or current.number != epoch:
                raise self._fail(errors.StreamEpochError("requests must use the current epoch"))
            if seq >= self.policy.max_items:
                raise self._fail(errors.StreamEpochError("epoch used up: too many requests"))
            if now - current.opened_at > self.policy.max_age + self.policy.grace:
                raise self._fail(errors.StreamEpochError("epoch used up: too old"))
            return self._arrive(current, Direction.REQUEST, seq)

    def seal_response(self, epoch: int, header: bytes, body: bytes) -> SealedItem:
        """Seal a response under its request's ``epoch``, numbering it in send order.

        Call it where answers are queued for sending, in that order.

        Raises:
            StreamEpochError: ``epoch`` is retired, or already has a response per request.
        """
        with self._lock:
            live = self._live(epoch)
            if live.sent[Direction.RESPONSE] >= live.received[Direction.REQUEST]:
                raise errors.StreamEpochError("more responses than requests in this epoch")
            return self._seal(live, Direction.RESPONSE, header, body)
