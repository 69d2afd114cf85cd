"""The stream's amortized crypto end to end, as docs/adr/0009 tells the security server to wire
it: the consumer starts an epoch, seals request bodies per item, signs the batch once; the
provider checks sequence on arrival, the batch signature once, opens each body; answers in any
order under the request's epoch, signed once per batch; the consumer opens them. A third party
then verifies one stored item with nothing but that item and the signer's registered key.
Everything travels as the real protobuf wire messages."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta

import pytest

from cdx import batchsig, crypto, envelope, errors, streamseal
from cdx.v1 import common_pb2, exchange_pb2

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONSUMER_ID = "VN:GOV:VSS:ss1"
PROVIDER_ID = "VN:GOV:BCA:ss1"
CONSUMER_KEY = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
PROVIDER_KEY = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
PROVIDER_HPKE = crypto.generate_hpke_key()
SUBJECTS = ["079090000001", "079090000002", "079090000003"]


def _request_header(n: int) -> bytes:
    return exchange_pb2.EnvelopeHeader(
        protocol_version=envelope.PROTOCOL_VERSION,
        message_id=f"0193a000-0000-7000-8000-00000000000{n}",
        client="VN:GOV:VSS:benefits",
        consumer_server=CONSUMER_ID,
        service="VN:GOV:BCA:population/person/v1",
        provider_server=PROVIDER_ID,
        purpose="SOCIAL_BENEFIT_ELIGIBILITY",
        lawful_basis=common_pb2.LEGAL_OBLIGATION,
        fields=["full_name"],
        issued_at_ms=int(NOW.timestamp() * 1000),
        deadline_ms=int((NOW + timedelta(seconds=10)).timestamp() * 1000),
        signing_key_id=CONSUMER_KEY.key_id,
    ).SerializeToString(deterministic=True)


def _item_digest(env: exchange_pb2.SignedEnvelope) -> bytes:
    return hashlib.sha256(envelope.signing_input(env.header, env.ciphertext)).digest()


def _sign(items: list[exchange_pb2.StreamItem], signer: crypto.Signer) -> None:
    """At flush: one signature over the batch's envelopes, a proof into each."""
    proofs = batchsig.sign_batch([_item_digest(i.envelope) for i in items], signer)
    for item, proof in zip(items, proofs):
        item.envelope.batch_proof.CopyFrom(proof)


def _verify(
    batch: exchange_pb2.ExchangeBatch,
    verifier: batchsig.BatchVerifier,
    key: crypto.PublicSigningKey,
) -> list[bytes]:
    envelopes = [i.envelope for i in batch.items if not i.error_code]
    digests = [_item_digest(e) for e in envelopes]
    verifier.verify_batch(digests, [e.batch_proof for e in envelopes], key)
    return digests


def test_a_batch_travels_sealed_per_epoch_and_signed_once() -> None:
    consumer = streamseal.ConsumerStream(
        stream_id=os.urandom(16),
        consumer_server=CONSUMER_ID,
        provider_server=PROVIDER_ID,
        provider_hpke_key=PROVIDER_HPKE.public_key(),
        signer=CONSUMER_KEY,
    )
    provider = streamseal.ProviderStream(
        provider_server=PROVIDER_ID, hpke_private_key=PROVIDER_HPKE
    )
    verifier = batchsig.BatchVerifier()

    # Consumer, at flush: epoch first if needed, then seal in send order, then sign once.
    out = exchange_pb2.ExchangeBatch()
    if consumer.needs_epoch(NOW):
        out.epoch_start.CopyFrom(consumer.start_epoch(NOW))
    for n, subject in enumerate(SUBJECTS):
        header = _request_header(n)
        body = exchange_pb2.RequestBody(subject=subject).SerializeToString(deterministic=True)
        sealed = consumer.seal_request(header, body, NOW)
        out.items.add(
            id=100 + n,
            envelope=exchange_pb2.SignedEnvelope(header=header, ciphertext=sealed.ciphertext),
            epoch=sealed.epoch,
            seq=sealed.seq,
        )
    _sign(list(out.items), CONSUMER_KEY)
    wire = out.SerializeToString()
    assert all(s.encode() not in wire for s in SUBJECTS)

    # Provider: epoch start, sequence on arrival, the batch signature once, then each body.
    received = exchange_pb2.ExchangeBatch.FromString(wire)
    provider.accept_epoch(
        received.epoch_start,
        peer_server=CONSUMER_ID,
        consumer_signing_key=CONSUMER_KEY.public_key(),
        now=NOW,
    )
    places = [provider.receive_request(i.epoch, i.seq, NOW) for i in received.items]
    request_hashes = _verify(received, verifier, CONSUMER_KEY.public_key())
    opened = [
        exchange_pb2.RequestBody.FromString(p.open(i.envelope.header, i.envelope.ciphertext))
        for p, i in zip(places, received.items)
    ]
    assert [b.subject for b in opened] == SUBJECTS
    assert all(not b.response_key for b in opened)

    # Provider answers in another order, under each request's epoch, one signature per flush.
    answers = exchange_pb2.ExchangeBatch()
    for index in (2, 0, 1):
        item = received.items[index]
        header = exchange_pb2.ResponseHeader(
            protocol_version=envelope.PROTOCOL_VERSION,
            request_hash=request_hashes[index],
            provider_server=PROVIDER_ID,
            released_fields=["full_name"],
            signing_key_id=PROVIDER_KEY.key_id,
        ).SerializeToString(deterministic=True)
        body = exchange_pb2.ResponseBody()
        body.data.update({"full_name": f"Citizen {index}"})
        sealed = provider.seal_response(item.epoch, header, body.SerializeToString())
        answers.items.add(
            id=item.id,
            envelope=exchange_pb2.SignedEnvelope(header=header, ciphertext=sealed.ciphertext),
            epoch=sealed.epoch,
            seq=sealed.seq,
        )
    answers.items.add(id=999, error_code=errors.NoAgreementError.code)  # unsigned, as today
    _sign([i for i in answers.items if not i.error_code], PROVIDER_KEY)

    # Consumer: sequence on arrival, signature once, request hash, then each body.
    back = exchange_pb2.ExchangeBatch.FromString(answers.SerializeToString())
    signed_items = [i for i in back.items if not i.error_code]
    places = [consumer.receive_response(i.epoch, i.seq) for i in signed_items]
    _verify(back, verifier, PROVIDER_KEY.public_key())
    by_id = {100 + n: h for n, h in enumerate(request_hashes)}
    for place, item in zip(places, signed_items):
        header = exchange_pb2.ResponseHeader.FromString(item.envelope.header)
        assert header.request_hash == by_id[item.id]
        body = exchange_pb2.ResponseBody.FromString(
            place.open(item.envelope.header, item.envelope.ciphertext)
        )
        assert body.data["full_name"] == f"Citizen {item.id - 100}"

    # What an access record keeps of the peer's item: its digest and the proof bytes. A third
    # party with only those (and the header bytes to read the claims) and the registered key:
    stored_hash = request_hashes[1]
    stored_proof = received.items[1].envelope.batch_proof.SerializeToString()
    batchsig.verify_batch_item(
        stored_hash, batchsig.proof_from_bytes(stored_proof), CONSUMER_KEY.public_key()
    )
    with pytest.raises(errors.BatchProofError):  # not a proof for another request
        batchsig.verify_batch_item(
            request_hashes[0], batchsig.proof_from_bytes(stored_proof), CONSUMER_KEY.public_key()
        )
    with pytest.raises(errors.SignatureError):  # nor a proof that the provider sent it
        batchsig.verify_batch_item(
            stored_hash, batchsig.proof_from_bytes(stored_proof), PROVIDER_KEY.public_key()
        )


def test_unary_forward_still_requires_its_own_signature() -> None:
    """A batch-proofed envelope is not a Forward envelope: Forward's meaning is unchanged."""
    header = _request_header(0)
    env = exchange_pb2.SignedEnvelope(header=header, ciphertext=b"\x00" * 64)
    env.batch_proof.CopyFrom(batchsig.sign_batch([_item_digest(env)], CONSUMER_KEY)[0])
    with pytest.raises(errors.MalformedError):
        envelope.verify_request(env, CONSUMER_KEY.public_key(), NOW)
