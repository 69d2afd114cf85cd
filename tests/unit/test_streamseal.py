"""Unit tests for cdx.streamseal: one HPKE per stream epoch, AES-GCM per item, strict sequence."""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from cdx import crypto, errors, streamseal
from cdx.streamseal import RekeyPolicy
from cdx.v1 import exchange_pb2

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONSUMER_ID = "VN:GOV:VSS:ss1"
PROVIDER_ID = "VN:GOV:BCA:ss1"
CONSUMER_KEY = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
PROVIDER_HPKE = crypto.generate_hpke_key()


@dataclass
class Pair:
    consumer: streamseal.ConsumerStream
    provider: streamseal.ProviderStream

    def start(self, now: datetime = NOW) -> int:
        return self.provider.accept_epoch(
            self.consumer.start_epoch(now),
            peer_server=CONSUMER_ID,
            consumer_signing_key=CONSUMER_KEY.public_key(),
            now=now,
        )

    def request(self, body: bytes, now: datetime = NOW, header: bytes = b"hdr") -> bytes:
        sealed = self.consumer.seal_request(header, body, now)
        received = self.provider.receive_request(sealed.epoch, sealed.seq, now)
        return received.open(header, sealed.ciphertext)

    def respond(self, epoch: int, body: bytes, header: bytes = b"resp") -> bytes:
        sealed = self.provider.seal_response(epoch, header, body)
        return self.consumer.receive_response(sealed.epoch, sealed.seq).open(
            header, sealed.ciphertext
        )


def _pair(policy: RekeyPolicy | None = None) -> Pair:
    return Pair(
        streamseal.ConsumerStream(
            stream_id=os.urandom(16),
            consumer_server=CONSUMER_ID,
            provider_server=PROVIDER_ID,
            provider_hpke_key=PROVIDER_HPKE.public_key(),
            signer=CONSUMER_KEY,
            policy=policy,
        ),
        streamseal.ProviderStream(
            provider_server=PROVIDER_ID, hpke_private_key=PROVIDER_HPKE, policy=policy
        ),
    )


def test_requests_and_responses_round_trip_under_one_epoch() -> None:
    pair = _pair()
    assert pair.consumer.needs_epoch(NOW)
    assert pair.start() == 1
    assert not pair.consumer.needs_epoch(NOW)
    for i in range(5):
        assert pair.request(b"request %d" % i) == b"request %d" % i
    # Answers in any order of the requests: responses are numbered when sent.
    for i in (3, 0, 4, 1, 2):
        assert pair.respond(1, b"answer %d" % i) == b"answer %d" % i


def test_the_byte_layout_is_the_documented_one() -> None:
    """Recompute an item from the epoch secret by the ADR's formulas, with the library only."""
    pair = _pair()
    start = pair.consumer.start_epoch(NOW)
    header = bytes(start.header)
    info = b"cdx/epoch-secret/v1" + hashlib.sha256(header).digest()
    secret = crypto.hpke_open(PROVIDER_HPKE, bytes(start.sealed_secret), info)
    signed = (
        b"cdx/epoch/v1\n"
        + struct.pack(">I", len(header))
        + header
        + hashlib.sha256(start.sealed_secret).digest()
    )
    crypto.verify(CONSUMER_KEY.public_key(), bytes(start.signature), signed)
    transcript = hashlib.sha256(signed).digest()

    def hkdf(label: bytes, length: int) -> bytes:
        return HKDF(hashes.SHA256(), length, salt=transcript, info=label).derive(secret)

    key = hkdf(b"cdx/stream/v1 request key", 32)
    base = hkdf(b"cdx/stream/v1 request nonce", 12)
    item = pair.consumer.seal_request(b"the header", b"the body", NOW)
    seq = struct.pack(">Q", item.seq)
    nonce = bytes(a ^ b for a, b in zip(base, b"\x00" * 4 + seq))
    aad = (
        b"cdx/stream-item/v1\n"
        + struct.pack(">BI", 1, item.epoch)
        + seq
        + hashlib.sha256(b"the header").digest()
    )
    assert AESGCM(key).decrypt(nonce, item.ciphertext, aad) == b"the body"
    parsed = exchange_pb2.EpochHeader.FromString(header)
    assert (parsed.epoch, parsed.consumer_server, parsed.provider_server) == (
        1,
        CONSUMER_ID,
        PROVIDER_ID,
    )
    assert parsed.stream_id == pair.consumer.stream_id
    assert parsed.signing_key_id == CONSUMER_KEY.key_id


def test_sealing_before_the_first_epoch_is_refused() -> None:
    pair = _pair()
    with pytest.raises(errors.StreamEpochError):
        pair.consumer.seal_request(b"h", b"b", NOW)


def test_rekey_after_max_items() -> None:
    pair = _pair(RekeyPolicy(max_items=3))
    pair.start()
    for _ in range(3):
        pair.request(b"x")
    assert pair.consumer.needs_epoch(NOW)
    with pytest.raises(errors.StreamEpochError):
        pair.consumer.seal_request(b"h", b"b", NOW)
    assert pair.start() == 2
    assert pair.consumer.current_epoch == pair.provider.current_epoch == 2
    assert pair.request(b"after rekey") == b"after rekey"


def test_rekey_after_max_age_with_the_clock_passed_in() -> None:
    pair = _pair(RekeyPolicy(max_age=timedelta(seconds=10)))
    pair.start()
    assert not pair.consumer.needs_epoch(NOW + timedelta(seconds=9))
    assert pair.consumer.needs_epoch(NOW + timedelta(seconds=10))
    later = NOW + timedelta(seconds=11)
    assert pair.start(later) == 2
    assert pair.request(b"fresh", later) == b"fresh"


def test_late_responses_open_under_their_requests_epoch_after_a_rekey() -> None:
    pair = _pair(RekeyPolicy(max_items=2))
    pair.start()
    pair.request(b"a")
    pair.request(b"b")
    pair.start()
    pair.request(b"c")
    assert pair.respond(2, b"answer c") == b"answer c"
    assert pair.respond(1, b"answer a") == b"answer a"
    assert pair.respond(1, b"answer b") == b"answer b"


def test_a_retired_epoch_refuses_its_late_items() -> None:
    pair = _pair()
    pair.start()
    pair.request(b"a")
    pair.provider.retire(1)
    with pytest.raises(errors.StreamEpochError):
        pair.provider.seal_response(1, b"h", b"late")
    pair.consumer.retire(1)
    assert pair.consumer.needs_epoch(NOW)


def test_at_most_max_live_epochs_stay_open() -> None:
    pair = _pair()
    for _ in range(streamseal.MAX_LIVE_EPOCHS + 2):
        pair.start()
        pair.request(b"x")
    assert pair.provider.live_epochs == tuple(range(3, streamseal.MAX_LIVE_EPOCHS + 3))
    assert pair.consumer.live_epochs == pair.provider.live_epochs
    with pytest.raises(errors.StreamEpochError):
        pair.provider.seal_response(1, b"h", b"too late")


def test_directions_have_distinct_keys() -> None:
    pair = _pair()
    pair.start()
    sealed = pair.consumer.seal_request(b"h", b"same body", NOW)
    pair.provider.receive_request(sealed.epoch, sealed.seq, NOW)
    # The same place in the response direction does not open a request's ciphertext.
    response_place = pair.consumer.receive_response(1, 0)
    with pytest.raises(errors.DecryptionError):
        response_place.open(b"h", sealed.ciphertext)


def test_nonces_never_repeat_within_a_direction() -> None:
    pair = _pair()
    pair.start()
    ciphertexts = {pair.consumer.seal_request(b"h", b"same", NOW).ciphertext for _ in range(50)}
    assert len(ciphertexts) == 50


@pytest.mark.parametrize(
    "policy",
    [
        {"max_items": 0},
        {"max_items": 2**32 + 1},
        {"max_age": timedelta(0)},
        {"grace": timedelta(seconds=-1)},
    ],
)
def test_rekey_policy_refuses_unsafe_limits(policy: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        RekeyPolicy(**policy)  # type: ignore[arg-type]


def test_streams_refuse_wrong_key_types_and_stream_ids() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        streamseal.ConsumerStream(
            stream_id=b"short",
            consumer_server=CONSUMER_ID,
            provider_server=PROVIDER_ID,
            provider_hpke_key=PROVIDER_HPKE.public_key(),
            signer=CONSUMER_KEY,
        )
    with pytest.raises(errors.UnknownKeyError):
        streamseal.ConsumerStream(
            stream_id=os.urandom(16),
            consumer_server=CONSUMER_ID,
            provider_server=PROVIDER_ID,
            provider_hpke_key=CONSUMER_KEY.public_key(),  # type: ignore[arg-type]
            signer=CONSUMER_KEY,
        )
    with pytest.raises(errors.UnknownKeyError):
        streamseal.ProviderStream(
            provider_server=PROVIDER_ID,
            hpke_private_key=crypto.generate_signing_key("ed25519"),  # type: ignore[arg-type]
        )


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), data=st.data())
def test_property_arrival_is_accepted_only_in_send_order(n: int, data: st.DataObject) -> None:
    """Any arrival order: exactly the in-order prefix opens; the first item out of place is
    refused and every later arrival too (the stream is broken)."""
    pair = _pair()
    pair.start()
    sealed = [pair.consumer.seal_request(b"h%d" % i, b"body %d" % i, NOW) for i in range(n)]
    arrivals = data.draw(
        st.lists(st.integers(0, n - 1), min_size=1, max_size=n + 3)  # drops, repeats, reorders
    )
    broken = False
    for position, index in enumerate(arrivals):
        item = sealed[index]
        if broken or index != position:
            with pytest.raises(errors.StreamSequenceError):
                pair.provider.receive_request(item.epoch, item.seq, NOW)
            broken = True
        else:
            opened = pair.provider.receive_request(item.epoch, item.seq, NOW)
            assert opened.open(b"h%d" % index, item.ciphertext) == b"body %d" % index


@settings(max_examples=40, deadline=None)
@given(bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=10), data=st.data())
def test_property_responses_in_any_completion_order_open(
    bodies: list[bytes], data: st.DataObject
) -> None:
    pair = _pair()
    pair.start()
    for body in bodies:
        pair.request(body)
    for index in data.draw(st.permutations(range(len(bodies)))):
        assert pair.respond(1, bodies[index], b"header %d" % index) == bodies[index]
