"""Attacks on the stream's amortized cryptography: batch signatures and epoch sealing.

The kernel parts are pure (``cdx.batchsig``, ``cdx.streamseal``), so the attacker here is a
peer security server (or anyone holding its TLS certificate) that controls every byte of what it
sends on the stream, and a verifier that must refuse each trick with its stable error. Wiring
into the security server keeps these checks as they are (docs/adr/0009). The threat-model rows
T210-T219 name these tests.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from cdx import batchsig, crypto, errors, merkle, streamseal
from cdx.streamseal import RekeyPolicy
from cdx.v1 import exchange_pb2

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SERVER_A = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
SERVER_B = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
CONSUMER_ID = "VN:GOV:VSS:ss1"
OTHER_CONSUMER_ID = "VN:GOV:BHXH:ss1"
PROVIDER_ID = "VN:GOV:BCA:ss1"
PROVIDER_HPKE = crypto.generate_hpke_key()
OTHER_HPKE = crypto.generate_hpke_key()


def _batch(n: int, tag: bytes, signer: crypto.Signer = SERVER_A) -> tuple[list[bytes], list]:  # type: ignore[type-arg]
    digests = [hashlib.sha256(b"%s item %d" % (tag, i)).digest() for i in range(n)]
    return digests, batchsig.sign_batch(digests, signer)


# --- T210: an item moved, reordered, duplicated, or the batch cut off ---------------------------


def test_item_moved_from_another_batch_is_refused() -> None:
    a_digests, a_proofs = _batch(4, b"a")
    b_digests, b_proofs = _batch(4, b"b")
    verifier = batchsig.BatchVerifier()
    # With its own genuine proof, the moved item makes batch B a mix of two signed batches.
    digests = [*b_digests[:2], a_digests[1], b_digests[3]]
    proofs = [*b_proofs[:2], a_proofs[1], b_proofs[3]]
    with pytest.raises(errors.BatchProofError):
        verifier.verify_batch(digests, proofs, SERVER_A.public_key())
    # Wearing B's proof for that place, it is not in B's signed tree.
    with pytest.raises(errors.BatchProofError):
        verifier.verify_item(a_digests[1], b_proofs[2], SERVER_A.public_key())


def test_reordered_batch_is_refused() -> None:
    digests, proofs = _batch(5, b"order")
    verifier = batchsig.BatchVerifier()
    swapped = [1, 0, 2, 3, 4]
    with pytest.raises(errors.BatchProofError):  # items moved together with their proofs
        verifier.verify_batch(
            [digests[i] for i in swapped], [proofs[i] for i in swapped], SERVER_A.public_key()
        )
    with pytest.raises(errors.BatchProofError):  # items moved, proofs left in place
        verifier.verify_batch([digests[i] for i in swapped], proofs, SERVER_A.public_key())


def test_duplicated_item_is_refused() -> None:
    digests, proofs = _batch(4, b"dup")
    verifier = batchsig.BatchVerifier()
    with pytest.raises(errors.BatchProofError):  # appended copy
        verifier.verify_batch([*digests, digests[2]], [*proofs, proofs[2]], SERVER_A.public_key())
    with pytest.raises(errors.BatchProofError):  # copy in place of another item
        verifier.verify_batch(
            [*digests[:3], digests[2]], [*proofs[:3], proofs[2]], SERVER_A.public_key()
        )


def test_cut_off_batch_is_refused() -> None:
    digests, proofs = _batch(6, b"cut")
    verifier = batchsig.BatchVerifier()
    with pytest.raises(errors.BatchProofError):  # the tail dropped
        verifier.verify_batch(digests[:5], proofs[:5], SERVER_A.public_key())
    with pytest.raises(errors.BatchProofError):  # an item from the middle dropped
        verifier.verify_batch(
            digests[:2] + digests[3:], proofs[:2] + proofs[3:], SERVER_A.public_key()
        )


# --- T211, T212, T213: the verified-root cache and what the signature covers -------------------


def test_forged_signature_beside_a_verified_root_is_refused() -> None:
    """A stored proof must verify for a third party: a cached root does not excuse a bad
    signature next to it (else a sender could make its own items unattributable later)."""
    digests, proofs = _batch(3, b"cache")
    verifier = batchsig.BatchVerifier()
    verifier.verify_batch(digests, proofs, SERVER_A.public_key())
    forged = exchange_pb2.BatchProof()
    forged.CopyFrom(proofs[2])
    forged.root_signature = SERVER_A.sign(b"something else")
    with pytest.raises(errors.SignatureError):
        verifier.verify_item(digests[2], forged, SERVER_A.public_key())


def test_a_root_verified_for_one_server_does_not_vouch_for_another() -> None:
    digests, proofs = _batch(3, b"cross")
    verifier = batchsig.BatchVerifier()
    verifier.verify_batch(digests, proofs, SERVER_A.public_key())
    # B's TLS peer replays A's batch (same key id hint, same root): B's registered key decides.
    with pytest.raises(errors.SignatureError):
        verifier.verify_batch(digests, proofs, SERVER_B.public_key())
    for proof in proofs:
        proof.key_id = SERVER_B.key_id
    with pytest.raises(errors.SignatureError):
        verifier.verify_batch(digests, proofs, SERVER_B.public_key())


def test_batch_size_is_signed() -> None:
    """RFC 9162 paths bind the size only through the root (leaf 0 of 3 and of 4 share a path
    shape), so the signed bytes carry the size: claiming another size fails."""
    digests, proofs = _batch(3, b"size")
    claimed = exchange_pb2.BatchProof()
    claimed.CopyFrom(proofs[0])
    claimed.size = 4
    merkle.verify_inclusion(
        batchsig.item_leaf(digests[0]), 0, 4, list(claimed.path), bytes(claimed.root)
    )
    with pytest.raises(errors.SignatureError):
        batchsig.BatchVerifier().verify_item(digests[0], claimed, SERVER_A.public_key())


# --- T214-T218: epoch sealing -------------------------------------------------------------------


@dataclass
class Stream:
    consumer: streamseal.ConsumerStream
    provider: streamseal.ProviderStream


def _stream(
    consumer_policy: RekeyPolicy | None = None, provider_policy: RekeyPolicy | None = None
) -> Stream:
    stream = Stream(
        streamseal.ConsumerStream(
            stream_id=os.urandom(16),
            consumer_server=CONSUMER_ID,
            provider_server=PROVIDER_ID,
            provider_hpke_key=PROVIDER_HPKE.public_key(),
            signer=SERVER_A,
            policy=consumer_policy,
        ),
        streamseal.ProviderStream(
            provider_server=PROVIDER_ID, hpke_private_key=PROVIDER_HPKE, policy=provider_policy
        ),
    )
    stream.provider.accept_epoch(
        stream.consumer.start_epoch(NOW),
        peer_server=CONSUMER_ID,
        consumer_signing_key=SERVER_A.public_key(),
        now=NOW,
    )
    return stream


def _requests(stream: Stream, n: int) -> list[streamseal.SealedItem]:
    return [stream.consumer.seal_request(b"h%d" % i, b"b%d" % i, NOW) for i in range(n)]


def _responses(stream: Stream, n: int) -> list[streamseal.SealedItem]:
    for item in _requests(stream, n):
        stream.provider.receive_request(item.epoch, item.seq, NOW)
    return [stream.provider.seal_response(1, b"r%d" % i, b"a%d" % i) for i in range(n)]


#: Arrival orders of items 0..3 as an attacker (or a broken sender) would produce them.
TAMPERED_ORDERS = {
    "replayed": [0, 1, 1],
    "duplicated_earlier": [0, 1, 2, 0],
    "dropped": [0, 2],
    "reordered": [1, 0],
}


@pytest.mark.parametrize("order", TAMPERED_ORDERS.values(), ids=TAMPERED_ORDERS.keys())
@pytest.mark.parametrize("direction", ["request", "response"])
def test_replayed_reordered_or_dropped_stream_items_are_refused(
    order: list[int], direction: str
) -> None:
    stream = _stream()
    if direction == "request":
        items = _requests(stream, 4)

        def arrive(item: streamseal.SealedItem) -> object:
            return stream.provider.receive_request(item.epoch, item.seq, NOW)
    else:
        items = _responses(stream, 4)

        def arrive(item: streamseal.SealedItem) -> object:
            return stream.consumer.receive_response(item.epoch, item.seq)

    position = next(p for p, index in enumerate(order) if index != p)
    for index in order[:position]:
        arrive(items[index])
    with pytest.raises(errors.StreamSequenceError):
        arrive(items[order[position]])
    # Fail closed: the stream side is broken; even the item that was due is refused now.
    with pytest.raises(errors.StreamSequenceError):
        arrive(items[position])


def _moved_to_another_header(stream: Stream, item: streamseal.SealedItem) -> Callable[[], bytes]:
    place = stream.provider.receive_request(item.epoch, item.seq, NOW)
    return lambda: place.open(b"another header", item.ciphertext)


def _moved_to_another_place(stream: Stream, item: streamseal.SealedItem) -> Callable[[], bytes]:
    stream.consumer.seal_request(b"h0", b"next", NOW)
    stream.provider.receive_request(item.epoch, item.seq, NOW)
    place = stream.provider.receive_request(item.epoch, item.seq + 1, NOW)
    return lambda: place.open(b"h0", item.ciphertext)


def _moved_to_another_direction(stream: Stream, item: streamseal.SealedItem) -> Callable[[], bytes]:
    stream.provider.receive_request(item.epoch, item.seq, NOW)
    place = stream.consumer.receive_response(item.epoch, item.seq)
    return lambda: place.open(b"h0", item.ciphertext)


def _moved_to_another_epoch(stream: Stream, item: streamseal.SealedItem) -> Callable[[], bytes]:
    stream.provider.accept_epoch(
        stream.consumer.start_epoch(NOW),
        peer_server=CONSUMER_ID,
        consumer_signing_key=SERVER_A.public_key(),
        now=NOW,
    )
    place = stream.provider.receive_request(2, item.seq, NOW)
    return lambda: place.open(b"h0", item.ciphertext)


def _moved_to_another_stream(stream: Stream, item: streamseal.SealedItem) -> Callable[[], bytes]:
    other = _stream()
    place = other.provider.receive_request(item.epoch, item.seq, NOW)
    return lambda: place.open(b"h0", item.ciphertext)


def _tampered(stream: Stream, item: streamseal.SealedItem) -> Callable[[], bytes]:
    place = stream.provider.receive_request(item.epoch, item.seq, NOW)
    flipped = bytes([item.ciphertext[0] ^ 1]) + item.ciphertext[1:]
    return lambda: place.open(b"h0", flipped)


MOVES = {
    "another_header": _moved_to_another_header,
    "another_place": _moved_to_another_place,
    "another_direction": _moved_to_another_direction,
    "another_epoch": _moved_to_another_epoch,
    "another_stream": _moved_to_another_stream,
    "tampered": _tampered,
}


@pytest.mark.parametrize("move", MOVES.values(), ids=MOVES.keys())
def test_item_ciphertext_moved_or_tampered_does_not_open(
    move: Callable[[Stream, streamseal.SealedItem], Callable[[], bytes]],
) -> None:
    stream = _stream()
    item = stream.consumer.seal_request(b"h0", b"the subject's request", NOW)
    with pytest.raises(errors.DecryptionError):
        move(stream, item)()


def _start(**header: object) -> exchange_pb2.EpochStart:
    """An epoch start as a (malicious) consumer builds it, signed by server A."""
    fields: dict[str, object] = {
        "protocol_version": 1,
        "stream_id": b"s" * 16,
        "epoch": 1,
        "consumer_server": CONSUMER_ID,
        "provider_server": PROVIDER_ID,
        "issued_at_ms": int(NOW.timestamp() * 1000),
        "signing_key_id": SERVER_A.key_id,
    }
    hpke_key = header.pop("hpke_key", PROVIDER_HPKE.public_key())
    signer = header.pop("signer", SERVER_A)
    fields.update(header)
    raw = exchange_pb2.EpochHeader(**fields).SerializeToString(deterministic=True)  # type: ignore[arg-type]
    info = streamseal.EPOCH_INFO + hashlib.sha256(raw).digest()
    sealed = crypto.hpke_seal(hpke_key, os.urandom(32), info)  # type: ignore[arg-type]
    signature = signer.sign(streamseal.epoch_signing_input(raw, sealed))  # type: ignore[attr-defined]
    return exchange_pb2.EpochStart(header=raw, sealed_secret=sealed, signature=signature)


def _accept(provider: streamseal.ProviderStream, start: exchange_pb2.EpochStart) -> int:
    return provider.accept_epoch(
        start, peer_server=CONSUMER_ID, consumer_signing_key=SERVER_A.public_key(), now=NOW
    )


BAD_STARTS: dict[str, tuple[Callable[[], exchange_pb2.EpochStart], type[errors.CdxError]]] = {
    "started_by_another_server": (
        lambda: _start(consumer_server=OTHER_CONSUMER_ID),
        errors.StreamEpochError,
    ),
    "addressed_to_another_provider": (
        lambda: _start(provider_server="VN:GOV:TAX:ss1"),
        errors.StreamEpochError,
    ),
    "signed_by_another_key": (lambda: _start(signer=SERVER_B), errors.SignatureError),
    "secret_for_another_hpke_key": (
        lambda: _start(hpke_key=OTHER_HPKE.public_key()),
        errors.DecryptionError,
    ),
    "not_epoch_one": (lambda: _start(epoch=2), errors.StreamEpochError),
    "stale": (
        lambda: _start(issued_at_ms=int((NOW - timedelta(minutes=5)).timestamp() * 1000)),
        errors.EnvelopeExpiredError,
    ),
    "from_the_future": (
        lambda: _start(issued_at_ms=int((NOW + timedelta(minutes=5)).timestamp() * 1000)),
        errors.EnvelopeFromFutureError,
    ),
    "downgraded_version": (lambda: _start(protocol_version=0), errors.ProtocolVersionError),
}


@pytest.mark.parametrize(("make", "error"), BAD_STARTS.values(), ids=BAD_STARTS.keys())
def test_epoch_start_is_bound_to_its_stream_servers_and_signer(
    make: Callable[[], exchange_pb2.EpochStart], error: type[errors.CdxError]
) -> None:
    provider = streamseal.ProviderStream(
        provider_server=PROVIDER_ID, hpke_private_key=PROVIDER_HPKE
    )
    with pytest.raises(error):
        _accept(provider, make())
    # Fail closed: a stream that saw a bad epoch start accepts nothing more.
    with pytest.raises(errors.StreamSequenceError):
        _accept(provider, _start())


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(lambda: _start(epoch=1), id="same_epoch_replayed"),
        pytest.param(lambda: _start(epoch=3), id="epoch_skipped"),
        pytest.param(lambda: _start(epoch=2, stream_id=b"t" * 16), id="epoch_of_another_stream"),
    ],
)
def test_epoch_starts_follow_one_stream_in_order(
    second: Callable[[], exchange_pb2.EpochStart],
) -> None:
    provider = streamseal.ProviderStream(
        provider_server=PROVIDER_ID, hpke_private_key=PROVIDER_HPKE
    )
    assert _accept(provider, _start()) == 1
    with pytest.raises(errors.StreamEpochError):
        _accept(provider, second())


def test_epoch_used_beyond_its_limits_is_refused() -> None:
    # A consumer that ignores the re-key policy (its own policy is laxer) is cut off.
    by_count = _stream(RekeyPolicy(max_items=10), RekeyPolicy(max_items=3))
    items = _requests(by_count, 4)
    for item in items[:3]:
        by_count.provider.receive_request(item.epoch, item.seq, NOW)
    with pytest.raises(errors.StreamEpochError):
        by_count.provider.receive_request(items[3].epoch, items[3].seq, NOW)

    policy = RekeyPolicy(max_age=timedelta(seconds=60), grace=timedelta(seconds=5))
    by_age = _stream(RekeyPolicy(max_age=timedelta(hours=1)), policy)
    late = NOW + timedelta(seconds=66)
    item = by_age.consumer.seal_request(b"h", b"b", late)
    with pytest.raises(errors.StreamEpochError):
        by_age.provider.receive_request(item.epoch, item.seq, late)


def test_requests_after_a_new_epoch_must_use_it() -> None:
    stream = _stream()
    old = stream.consumer.seal_request(b"h", b"b", NOW)
    stream.provider.accept_epoch(
        stream.consumer.start_epoch(NOW),
        peer_server=CONSUMER_ID,
        consumer_signing_key=SERVER_A.public_key(),
        now=NOW,
    )
    with pytest.raises(errors.StreamEpochError):
        stream.provider.receive_request(old.epoch, old.seq, NOW)


def test_responses_beyond_the_requests_or_under_an_unknown_epoch_are_refused() -> None:
    stream = _stream()
    (item,) = _requests(stream, 1)
    stream.provider.receive_request(item.epoch, item.seq, NOW)
    answer = stream.provider.seal_response(1, b"r", b"a")
    with pytest.raises(errors.StreamEpochError):  # the provider cannot answer twice
        stream.provider.seal_response(1, b"r", b"a")
    stream.consumer.receive_response(answer.epoch, answer.seq)
    with pytest.raises(errors.StreamSequenceError):  # nor can a second answer arrive
        stream.consumer.receive_response(1, 1)
    other = _stream()
    with pytest.raises(errors.StreamEpochError):
        other.consumer.receive_response(7, 0)
