"""Stream crypto benchmark: what batch signatures and epoch sealing save per item.

Pure computation in this process (no servers), CPU time per item (``time.process_time``, so a
busy machine slows the figures less than wall time would), medians over the runs:

- **signatures**: today each envelope is signed and verified on its own (ECDSA P-256, the
  registered algorithm); with ``cdx.batchsig`` a batch of 1, 8, 32 or 128 envelopes is signed
  once (item digests, RFC 9162 tree, inclusion proofs) and verified once per batch plus one
  inclusion proof per item (``BatchVerifier``). Baseline in the same run: one signature per
  item. Also the wire cost: a serialized proof per item against a bare signature.
- **sealing**: today each request is HPKE-sealed and opened (one X25519 KEM per message);
  with ``cdx.streamseal`` an epoch costs one HPKE, one signature and its verification, after
  which each item is AES-256-GCM under a key derived for its direction, with the sequence
  checks. Baseline in the same run: HPKE per message. 1 KiB bodies.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench.common import Report, log
from cdx import batchsig, crypto, envelope, streamseal

BATCH_SIZES = (1, 8, 32, 128)
BODY = os.urandom(1024)
HEADER = os.urandom(320)  # the size of a serialized EnvelopeHeader with a few fields
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _per_item_us(work: Callable[[], int], seconds: float) -> float:
    """CPU µs per item: repeat ``work`` (which returns how many items it handled) for a while."""
    items = 0
    start = time.process_time()
    while True:
        items += work()
        used = time.process_time() - start
        if used >= seconds:
            return used / items * 1e6


def _signing_inputs(n: int) -> list[bytes]:
    return [envelope.signing_input(HEADER + i.to_bytes(4, "big"), BODY) for i in range(n)]


def _one_signature_each(signer: crypto.KeySigner, n: int) -> tuple[Callable[[], int], ...]:
    inputs = _signing_inputs(n)
    key = signer.public_key()
    signatures = [signer.sign(s) for s in inputs]

    def sign() -> int:
        for s in inputs:
            signer.sign(s)
        return n

    def verify() -> int:
        for s, sig in zip(inputs, signatures):
            crypto.verify(key, sig, s)
        return n

    return sign, verify


def _one_signature_per_batch(signer: crypto.KeySigner, n: int) -> tuple[Callable[[], int], ...]:
    inputs = _signing_inputs(n)
    key = signer.public_key()
    proofs = batchsig.sign_batch([hashlib.sha256(s).digest() for s in inputs], signer)

    def sign() -> int:
        batchsig.sign_batch([hashlib.sha256(s).digest() for s in inputs], signer)
        return n

    def verify() -> int:
        # A fresh verifier: every batch on a real stream is a new root, never a cache hit.
        digests = [hashlib.sha256(s).digest() for s in inputs]
        batchsig.BatchVerifier().verify_batch(digests, proofs, key)
        return n

    return sign, verify


def _hpke_per_message() -> Callable[[], int]:
    private = crypto.generate_hpke_key()
    public = private.public_key()
    info = envelope.REQUEST_INFO + hashlib.sha256(HEADER).digest()

    def work() -> int:
        crypto.hpke_open(private, crypto.hpke_seal(public, BODY, info), info)
        return 1

    return work


def _streams(
    signer: crypto.KeySigner,
) -> tuple[streamseal.ConsumerStream, streamseal.ProviderStream]:
    private = crypto.generate_hpke_key()
    consumer = streamseal.ConsumerStream(
        stream_id=os.urandom(16),
        consumer_server="VN:GOV:VSS:ss1",
        provider_server="VN:GOV:BCA:ss1",
        provider_hpke_key=private.public_key(),
        signer=signer,
        policy=streamseal.RekeyPolicy(max_items=2**32),
    )
    provider = streamseal.ProviderStream(
        provider_server="VN:GOV:BCA:ss1",
        hpke_private_key=private,
        policy=streamseal.RekeyPolicy(max_items=2**32),
    )
    return consumer, provider


def _epoch_item(signer: crypto.KeySigner) -> Callable[[], int]:
    consumer, provider = _streams(signer)
    provider.accept_epoch(
        consumer.start_epoch(NOW),
        peer_server="VN:GOV:VSS:ss1",
        consumer_signing_key=signer.public_key(),
        now=NOW,
    )

    def work() -> int:
        sealed = consumer.seal_request(HEADER, BODY, NOW)
        provider.receive_request(sealed.epoch, sealed.seq, NOW).open(HEADER, sealed.ciphertext)
        return 1

    return work


def _epoch_start(signer: crypto.KeySigner) -> Callable[[], int]:
    def work() -> int:
        consumer, provider = _streams(signer)
        provider.accept_epoch(
            consumer.start_epoch(NOW),
            peer_server="VN:GOV:VSS:ss1",
            consumer_signing_key=signer.public_key(),
            now=NOW,
        )
        return 1

    return work


def run(*, quick: bool = False, runs: int = 3) -> Report:
    """Run the stream crypto benchmark."""
    runs = 1 if quick else max(runs, 3)
    seconds = 0.1 if quick else 0.6
    signer = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
    report = Report(
        "streamcrypto",
        params={
            "runs": runs,
            "cpu_seconds_per_measurement": seconds,
            "algorithm": signer.algorithm,
            "body_bytes": len(BODY),
            "batch_sizes": list(BATCH_SIZES),
            "default_epoch_items": streamseal.RekeyPolicy().max_items,
        },
    )
    single_sign, single_verify = [], []
    batch_sign: dict[int, list[float]] = {n: [] for n in BATCH_SIZES}
    batch_verify: dict[int, list[float]] = {n: [] for n in BATCH_SIZES}
    hpke, epoch_item, epoch_start = [], [], []
    for run_index in range(runs):
        log(f"streamcrypto: run {run_index + 1}/{runs}")
        sign, verify = _one_signature_each(signer, 32)
        single_sign.append(_per_item_us(sign, seconds))
        single_verify.append(_per_item_us(verify, seconds))
        for n in BATCH_SIZES:
            sign, verify = _one_signature_per_batch(signer, n)
            batch_sign[n].append(_per_item_us(sign, seconds))
            batch_verify[n].append(_per_item_us(verify, seconds))
        hpke.append(_per_item_us(_hpke_per_message(), seconds))
        epoch_item.append(_per_item_us(_epoch_item(signer), seconds))
        epoch_start.append(_per_item_us(_epoch_start(signer), seconds))

    single = [s + v for s, v in zip(single_sign, single_verify)]
    report.add("sign + verify per item, one signature each (today)", single, "µs")
    batch_total: dict[int, list[float]] = {}
    for n in BATCH_SIZES:
        batch_total[n] = [s + v for s, v in zip(batch_sign[n], batch_verify[n])]
        report.add(f"sign + verify per item, batch of {n}", batch_total[n], "µs")
    for n in BATCH_SIZES:
        report.add(
            f"one signature each / batch of {n}",
            [a / b for a, b in zip(single, batch_total[n])],
            "x",
        )
    report.add("signer per item, one signature each (today)", single_sign, "µs")
    report.add("signer per item, batch of 128", batch_sign[128], "µs")
    report.add("verifier per item, one signature each (today)", single_verify, "µs")
    report.add("verifier per item, batch of 128", batch_verify[128], "µs")

    (proof,) = batchsig.sign_batch([bytes(32)], signer)
    proofs_128 = batchsig.sign_batch([bytes([i % 256]) * 32 for i in range(128)], signer)
    report.add("wire per item: signature (today)", [len(proof.root_signature)], "bytes")
    report.add("wire per item: proof, batch of 1", [proof.ByteSize()], "bytes")
    report.add("wire per item: proof, batch of 128", [proofs_128[77].ByteSize()], "bytes")

    report.add("HPKE seal + open per message, 1 KiB (today)", hpke, "µs")
    report.add("epoch AEAD seal + open per item, 1 KiB", epoch_item, "µs")
    report.add("epoch start + accept (once per epoch)", epoch_start, "µs")
    report.add(
        "HPKE per message / epoch AEAD per item", [a / b for a, b in zip(hpke, epoch_item)], "x"
    )
    per_epoch = streamseal.RekeyPolicy().max_items
    report.add(
        f"epoch AEAD per item incl. epoch start amortized over {per_epoch:,}",
        [i + s / per_epoch for i, s in zip(epoch_item, epoch_start)],
        "µs",
    )
    report.add(
        "epoch AEAD per item incl. epoch start amortized over 64",
        [i + s / 64 for i, s in zip(epoch_item, epoch_start)],
        "µs",
    )
    return report
