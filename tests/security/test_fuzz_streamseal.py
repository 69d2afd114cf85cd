"""Fuzzing stream-epoch sealing (cdx.streamseal) with what a peer controls: epoch starts
(random, mutated, or garbage correctly signed by the registered consumer key) and items
(random epoch, sequence number and ciphertext). Only the domain errors escape, each malformed
epoch start in the table raises exactly its error, and a changed epoch start is never accepted."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx import crypto, streamseal
from cdx.errors import (
    DecryptionError,
    EnvelopeExpiredError,
    EnvelopeFromFutureError,
    LimitExceededError,
    MalformedError,
    ProtocolVersionError,
    SignatureError,
    StreamEpochError,
    StreamSequenceError,
)
from cdx.v1 import exchange_pb2

from .fuzzing import expect_error, fuzz_settings, mutated, outcome, protobuf_messages

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONSUMER_ID = "VN:GOV:VSS:ss1"
PROVIDER_ID = "VN:GOV:BCA:ss1"
CONSUMER = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
HPKE_KEY = crypto.generate_hpke_key()


def _consumer() -> streamseal.ConsumerStream:
    return streamseal.ConsumerStream(
        stream_id=b"\x01" * 16,
        consumer_server=CONSUMER_ID,
        provider_server=PROVIDER_ID,
        provider_hpke_key=HPKE_KEY.public_key(),
        signer=CONSUMER,
    )


def _provider() -> streamseal.ProviderStream:
    return streamseal.ProviderStream(provider_server=PROVIDER_ID, hpke_private_key=HPKE_KEY)


def _accept(start: exchange_pb2.EpochStart) -> int | Exception:
    return outcome(
        _provider().accept_epoch,
        start,
        peer_server=CONSUMER_ID,
        consumer_signing_key=CONSUMER.public_key(),
        now=NOW,
    )


VALID = _consumer().start_epoch(NOW)


def _insider(header: bytes, sealed: bytes | None = None) -> exchange_pb2.EpochStart:
    """``header`` bytes sealed and signed correctly by the registered consumer key."""
    if sealed is None:
        info = streamseal.EPOCH_INFO + hashlib.sha256(header).digest()
        sealed = crypto.hpke_seal(HPKE_KEY.public_key(), os.urandom(32), info)
    signature = CONSUMER.sign(streamseal.epoch_signing_input(header, sealed))
    return exchange_pb2.EpochStart(header=header, sealed_secret=sealed, signature=signature)


def _header(**changes: object) -> bytes:
    header = exchange_pb2.EpochHeader.FromString(VALID.header)
    for name, value in changes.items():
        setattr(header, name, value)
    return header.SerializeToString(deterministic=True)


MALFORMED = {
    "empty": (exchange_pb2.EpochStart(), MalformedError),
    "no_signature": (
        exchange_pb2.EpochStart(header=VALID.header, sealed_secret=VALID.sealed_secret),
        MalformedError,
    ),
    "secret_79_bytes": (_insider(bytes(VALID.header), VALID.sealed_secret[:-1]), MalformedError),
    "secret_81_bytes": (
        _insider(bytes(VALID.header), VALID.sealed_secret + b"\x00"),
        MalformedError,
    ),
    "header_too_large": (_insider(b"\x12" * 1025), LimitExceededError),
    "signature_too_large": (
        exchange_pb2.EpochStart(
            header=VALID.header, sealed_secret=VALID.sealed_secret, signature=b"\x30" * 513
        ),
        LimitExceededError,
    ),
    "signature_of_other_bytes": (
        exchange_pb2.EpochStart(
            header=VALID.header,
            sealed_secret=VALID.sealed_secret,
            signature=CONSUMER.sign(b"other"),
        ),
        SignatureError,
    ),
    "signed_header_does_not_parse": (_insider(b"\xff\xff\xff"), MalformedError),
    "signed_stream_id_15_bytes": (_insider(_header(stream_id=b"s" * 15)), MalformedError),
    "signed_version_2": (_insider(_header(protocol_version=2)), ProtocolVersionError),
    "signed_epoch_zero": (_insider(_header(epoch=0)), StreamEpochError),
    "signed_time_far_past": (_insider(_header(issued_at_ms=-(2**63))), EnvelopeExpiredError),
    "signed_time_far_future": (_insider(_header(issued_at_ms=2**63 - 1)), EnvelopeFromFutureError),
    "signed_secret_garbage": (_insider(bytes(VALID.header), b"\x00" * 80), DecryptionError),
}


@pytest.mark.parametrize(("start", "error"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_epoch_starts_raise_exactly_their_error(
    start: exchange_pb2.EpochStart, error: type[Exception]
) -> None:
    result = expect_error(
        error,  # type: ignore[arg-type]
        _provider().accept_epoch,
        start,
        peer_server=CONSUMER_ID,
        consumer_signing_key=CONSUMER.public_key(),
        now=NOW,
    )
    assert type(result) is error


def _same(a: exchange_pb2.EpochStart, b: exchange_pb2.EpochStart) -> bool:
    return (a.header, a.sealed_secret, a.signature) == (b.header, b.sealed_secret, b.signature)


@fuzz_settings()
@given(
    part=st.sampled_from(["header", "sealed_secret", "signature"]),
    data=st.data(),
)
def test_fuzz_mutated_epoch_start_is_never_accepted(part: str, data: st.DataObject) -> None:
    start = exchange_pb2.EpochStart()
    start.CopyFrom(VALID)
    setattr(start, part, data.draw(mutated(getattr(VALID, part))))
    result = _accept(start)
    if _same(start, VALID):
        assert result == 1
    else:
        assert isinstance(result, SignatureError | MalformedError | LimitExceededError), result


@fuzz_settings()
@given(start=protobuf_messages(exchange_pb2.EpochStart))
def test_fuzz_random_epoch_starts(start: exchange_pb2.EpochStart) -> None:
    result = _accept(start)
    assert isinstance(result, SignatureError | MalformedError | LimitExceededError), result


@fuzz_settings(scale=0.5)
@given(header=protobuf_messages(exchange_pb2.EpochHeader))
def test_fuzz_insider_signed_epoch_header(header: exchange_pb2.EpochHeader) -> None:
    """A registered server signs a random header: every check fails with its code."""
    result = _accept(_insider(header.SerializeToString()))
    assert isinstance(
        result,
        MalformedError
        | LimitExceededError
        | ProtocolVersionError
        | StreamEpochError
        | EnvelopeExpiredError
        | EnvelopeFromFutureError,
    ), result


@fuzz_settings()
@given(
    epoch=st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1)),
    seq=st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1)),
    header=st.binary(max_size=64),
    ciphertext=st.binary(max_size=200),
)
def test_fuzz_items_from_the_peer(epoch: int, seq: int, header: bytes, ciphertext: bytes) -> None:
    provider = _provider()
    provider.accept_epoch(
        _consumer().start_epoch(NOW),
        peer_server=CONSUMER_ID,
        consumer_signing_key=CONSUMER.public_key(),
        now=NOW,
    )
    place = outcome(provider.receive_request, epoch, seq, NOW)
    if isinstance(place, Exception):
        assert isinstance(place, StreamEpochError | StreamSequenceError), place
        assert (epoch, seq) != (1, 0)
        return
    assert (epoch, seq) == (1, 0)
    result = outcome(place.open, header, ciphertext)
    assert isinstance(result, DecryptionError), result


def test_oversized_item_is_refused_before_decryption() -> None:
    provider = _provider()
    provider.accept_epoch(
        _consumer().start_epoch(NOW),
        peer_server=CONSUMER_ID,
        consumer_signing_key=CONSUMER.public_key(),
        now=NOW,
    )
    place = provider.receive_request(1, 0, NOW)
    expect_error(LimitExceededError, place.open, b"h", b"\x00" * (2 * 1024 * 1024 + 1))
