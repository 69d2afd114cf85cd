"""Builds, signs, encrypts and verifies the exchange envelope (DESIGN §6); pure, no I/O.

Request (consumer -> provider)::

    header     = EnvelopeHeader, serialized deterministically
    info       = "cdx/request/v1" || SHA-256(header)                 (HPKE info, RFC 9180 §5.1)
    ciphertext = HPKE-Seal(provider HPKE key, RequestBody, info)
    signed     = "cdx/envelope/v1\\n" || u32be(len(header)) || header || SHA-256(ciphertext)
    signature  = Sign(consumer signing key, signed)
    request_hash = SHA-256(signed)

The body (subject, parameters, a fresh response key) is bound to its header through ``info``,
so a ciphertext moved into another envelope does not open. The subject never travels in clear.

Response (provider -> consumer)::

    ciphertext = AES-256-GCM(response_key, ResponseBody, aad = "cdx/response/v1" || request_hash)
    signed     = "cdx/envelope/v1\\n" || u32be(len(header)) || header || SHA-256(ciphertext)

and the ``ResponseHeader`` carries ``request_hash``, which binds the answer to the question.

Every failure raises its own ``cdx.errors`` class. Freshness takes ``now`` as a parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric import x25519
from google.protobuf.message import DecodeError, Message

from cdx import crypto, errors
from cdx.v1 import exchange_pb2

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_SKEW",
    "MAX_CIPHERTEXT_BYTES",
    "MAX_FIELDS",
    "MAX_HEADER_BYTES",
    "MAX_MESSAGE_ID_CHARS",
    "MAX_SIGNATURE_BYTES",
    "PROTOCOL_VERSION",
    "REQUEST_INFO",
    "RESPONSE_AAD",
    "SIGNING_CONTEXT",
    "SUPPORTED_VERSIONS",
    "SealedRequest",
    "VerifiedRequest",
    "VerifiedResponse",
    "open_request_body",
    "open_response",
    "parse_unverified_header",
    "seal_request",
    "seal_response",
    "signing_input",
    "verify_request",
]

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})
SIGNING_CONTEXT = b"cdx/envelope/v1\n"
REQUEST_INFO = b"cdx/request/v1"
RESPONSE_AAD = b"cdx/response/v1"

MAX_HEADER_BYTES = 64 * 1024
MAX_CIPHERTEXT_BYTES = 2 * 1024 * 1024
MAX_SIGNATURE_BYTES = 512
MAX_FIELDS = 256
#: Message ids are UUIDs (36 characters); the replay cache stores at most 64 visible ASCII
#: characters (PostgreSQL text cannot even hold a NUL).
MAX_MESSAGE_ID_CHARS = 64
_MESSAGE_ID = re.compile(r"[\x21-\x7e]+")
DEFAULT_MAX_AGE = timedelta(seconds=60)
DEFAULT_MAX_SKEW = timedelta(seconds=5)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def signing_input(header: bytes, ciphertext: bytes) -> bytes:
    """The exact bytes an envelope signature covers."""
    return (
        SIGNING_CONTEXT
        + struct.pack(">I", len(header))
        + header
        + hashlib.sha256(ciphertext).digest()
    )


def _check_sizes(env: exchange_pb2.SignedEnvelope) -> None:
    if len(env.header) > MAX_HEADER_BYTES:
        raise errors.LimitExceededError("envelope header too large")
    if len(env.ciphertext) > MAX_CIPHERTEXT_BYTES:
        raise errors.LimitExceededError("envelope body too large")
    if len(env.signature) > MAX_SIGNATURE_BYTES:
        raise errors.LimitExceededError("envelope signature too large")
    if not env.header or not env.signature:
        raise errors.MalformedError("envelope lacks header or signature")


_M = TypeVar("_M", bound=Message)


def _parse(cls: type[_M], data: bytes, what: str) -> _M:
    try:
        parsed: _M = cls.FromString(data)
    except DecodeError as exc:
        raise errors.MalformedError(f"{what} does not parse") from exc
    return parsed


_H = TypeVar("_H", exchange_pb2.EnvelopeHeader, exchange_pb2.ResponseHeader)


def _signed_header(
    env: exchange_pb2.SignedEnvelope, key: crypto.PublicSigningKey, cls: type[_H], what: str
) -> tuple[_H, bytes]:
    """Sizes, then the signature over header and ciphertext (verify first, parse second), then
    the protocol version; returns the header and the signed bytes."""
    _check_sizes(env)
    signed = signing_input(env.header, env.ciphertext)
    crypto.verify(key, env.signature, signed)
    header = _parse(cls, env.header, what)
    if header.protocol_version not in SUPPORTED_VERSIONS:
        raise errors.ProtocolVersionError()
    return header, signed


# --- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealedRequest:
    envelope: exchange_pb2.SignedEnvelope
    request_hash: bytes
    response_key: bytes


def seal_request(
    header: exchange_pb2.EnvelopeHeader,
    body: exchange_pb2.RequestBody,
    provider_hpke_key: x25519.X25519PublicKey,
    signer: crypto.Signer,
) -> SealedRequest:
    """Sign and encrypt a request. ``body.response_key`` is filled with a fresh key if empty."""
    if not body.response_key:
        body.response_key = crypto.new_salt()
    header.signing_key_id = signer.key_id
    header_bytes = header.SerializeToString(deterministic=True)
    info = REQUEST_INFO + hashlib.sha256(header_bytes).digest()
    ciphertext = crypto.hpke_seal(
        provider_hpke_key, body.SerializeToString(deterministic=True), info
    )
    signed = signing_input(header_bytes, ciphertext)
    envelope = exchange_pb2.SignedEnvelope(
        header=header_bytes, ciphertext=ciphertext, signature=signer.sign(signed)
    )
    return SealedRequest(envelope, hashlib.sha256(signed).digest(), bytes(body.response_key))


def parse_unverified_header(env: exchange_pb2.SignedEnvelope) -> exchange_pb2.EnvelopeHeader:
    """Parse the header only to find who claims to have signed it (a hint, not a fact).

    Raises:
        LimitExceededError: a part exceeds its size limit.
        MalformedError: the header does not parse or lacks required fields.
    """
    _check_sizes(env)
    header = _parse(exchange_pb2.EnvelopeHeader, env.header, "envelope header")
    if not header.message_id or not header.client or not header.consumer_server:
        raise errors.MalformedError("envelope header lacks message id, client or server")
    _check_header_limits(header)
    return header


def _check_header_limits(header: exchange_pb2.EnvelopeHeader) -> None:
    if len(header.message_id) > MAX_MESSAGE_ID_CHARS:
        raise errors.LimitExceededError("message id too long")
    if not _MESSAGE_ID.fullmatch(header.message_id):
        raise errors.MalformedError("message id is not visible ASCII")
    if len(header.fields) > MAX_FIELDS:
        raise errors.LimitExceededError("too many requested fields")


@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose signature, protocol version and freshness were checked."""

    header: exchange_pb2.EnvelopeHeader
    header_bytes: bytes
    ciphertext: bytes
    request_hash: bytes


def verify_request(
    env: exchange_pb2.SignedEnvelope,
    signing_key: crypto.PublicSigningKey,
    now: datetime,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> VerifiedRequest:
    """Verify a request envelope signed with the consumer server's registered ``signing_key``.

    Raises:
        LimitExceededError, MalformedError: bad sizes or bytes.
        SignatureError: the signature does not verify under ``signing_key``.
        ProtocolVersionError: an unsupported (e.g. downgraded) protocol version.
        EnvelopeFromFutureError: issued after ``now`` + ``max_skew``.
        EnvelopeExpiredError: older than ``max_age`` or past its deadline.
    """
    header, signed = _signed_header(
        env, signing_key, exchange_pb2.EnvelopeHeader, "envelope header"
    )
    now_ms = _ms(now)
    if header.issued_at_ms > now_ms + int(max_skew.total_seconds() * 1000):
        raise errors.EnvelopeFromFutureError()
    if now_ms - header.issued_at_ms > int(max_age.total_seconds() * 1000):
        raise errors.EnvelopeExpiredError()
    if header.deadline_ms and now_ms > header.deadline_ms:
        raise errors.EnvelopeExpiredError("message deadline passed")
    _check_header_limits(header)
    return VerifiedRequest(
        header, bytes(env.header), bytes(env.ciphertext), hashlib.sha256(signed).digest()
    )


def open_request_body(
    request: VerifiedRequest, hpke_private_key: x25519.X25519PrivateKey
) -> exchange_pb2.RequestBody:
    """Decrypt the body of a verified request (after the agreement checks).

    Raises:
        DecryptionError: the ciphertext was tampered with, moved, or is for another key.
        MalformedError: the plaintext is not a request body or lacks a 32-byte response key.
    """
    info = REQUEST_INFO + hashlib.sha256(request.header_bytes).digest()
    plaintext = crypto.hpke_open(hpke_private_key, request.ciphertext, info)
    body = _parse(exchange_pb2.RequestBody, plaintext, "request body")
    if len(body.response_key) != 32:
        raise errors.MalformedError("request body lacks a response key")
    return body


# --- responses ---------------------------------------------------------------------------------


def seal_response(
    header: exchange_pb2.ResponseHeader,
    body: exchange_pb2.ResponseBody,
    response_key: bytes,
    signer: crypto.Signer,
) -> exchange_pb2.SignedEnvelope:
    """Encrypt a response under the request's response key and sign it.

    ``header.request_hash`` must be the hash of the request being answered.
    """
    header.signing_key_id = signer.key_id
    header_bytes = header.SerializeToString(deterministic=True)
    ciphertext = crypto.aead_seal(
        response_key,
        body.SerializeToString(deterministic=True),
        RESPONSE_AAD + header.request_hash,
    )
    signature = signer.sign(signing_input(header_bytes, ciphertext))
    return exchange_pb2.SignedEnvelope(
        header=header_bytes, ciphertext=ciphertext, signature=signature
    )


@dataclass(frozen=True)
class VerifiedResponse:
    header: exchange_pb2.ResponseHeader
    body: exchange_pb2.ResponseBody
    response_hash: bytes


def open_response(
    env: exchange_pb2.SignedEnvelope,
    *,
    request_hash: bytes,
    response_key: bytes,
    provider_signing_key: crypto.PublicSigningKey,
) -> VerifiedResponse:
    """Verify a response's signature and its binding to ``request_hash``, then decrypt it.

    Raises:
        LimitExceededError, MalformedError: bad sizes or bytes.
        SignatureError: not signed by the provider server's registered key.
        ProtocolVersionError: an unsupported protocol version.
        RequestHashMismatchError: the response answers another request (e.g. replayed).
        DecryptionError: the ciphertext was tampered with.
    """
    header, signed = _signed_header(
        env, provider_signing_key, exchange_pb2.ResponseHeader, "response header"
    )
    if not hmac.compare_digest(header.request_hash, request_hash):
        raise errors.RequestHashMismatchError()
    plaintext = crypto.aead_open(response_key, env.ciphertext, RESPONSE_AAD + request_hash)
    body = _parse(exchange_pb2.ResponseBody, plaintext, "response body")
    return VerifiedResponse(header, body, hashlib.sha256(signed).digest())
