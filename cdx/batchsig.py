"""Signs a batch of exchange items once and verifies each item on its own; pure, no I/O.

Items sent together in one ``ExchangeBatch`` share one signature over the RFC 9162 Merkle root
of their digests; each item carries a ``BatchProof`` (its inclusion path, the root, the root
signature and the signer's key id), so a third party holding only that item and the signer's
registered key can check who signed exactly what (docs/adr/0009)::

    item_digest    = SHA-256(the item's signing input)         e.g. cdx.envelope.signing_input
    leaf data      = "cdx/batch-item/v1\\n" || item_digest
    leaf hash      = SHA-256(0x00 || leaf data)                 RFC 9162 §2.1.1
    root           = MTH(leaf hashes, in batch order)           RFC 9162 §2.1.1
    signed         = "cdx/batch/v1\\n" || u64be(size) || root
    root_signature = Sign(signer key, signed)
    proof          = (index, size, PATH(index, D[size]), root, root_signature, key_id)

Tree arithmetic is ``cdx.merkle``'s. The algorithm comes from the public key the verifier looked
up (the signer's registered key), never from the proof; ``key_id`` is a hint for that look-up.
``BatchVerifier`` checks a root signature once and remembers it in a small bounded cache keyed by
(key id, size, root) that also holds the key and the signature bytes it verified: a hit needs the
same key *and* the same signature, so neither another server's key nor a forged signature next
to a known root ever rides on an earlier verification.
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence

from google.protobuf.message import DecodeError

from cdx import crypto, errors, merkle
from cdx.v1 import exchange_pb2

ITEM_CONTEXT = b"cdx/batch-item/v1\n"
BATCH_CONTEXT = b"cdx/batch/v1\n"
#: Most items one signed batch may hold (a stream message carries at most 64 today).
MAX_BATCH_ITEMS = 1024
#: The longest inclusion path a batch of ``MAX_BATCH_ITEMS`` needs (RFC 9162 §2.1.3.1).
MAX_PATH_HASHES = (MAX_BATCH_ITEMS - 1).bit_length()
MAX_SIGNATURE_BYTES = 512
MAX_KEY_ID_CHARS = 128
#: Largest serialized ``BatchProof`` accepted from storage or a peer (a full one is ~600 bytes).
MAX_PROOF_BYTES = 4096
DEFAULT_CACHE_ENTRIES = 1024


def item_leaf(item_digest: bytes) -> bytes:
    """The RFC 9162 leaf hash of one item: ``SHA-256(0x00 || ITEM_CONTEXT || item_digest)``.

    Raises:
        InvalidArgumentError: ``item_digest`` is not 32 bytes.
    """
    if not isinstance(item_digest, bytes) or len(item_digest) != 32:
        raise errors.InvalidArgumentError("an item digest is 32 bytes")
    return merkle.leaf_hash(ITEM_CONTEXT + item_digest)


def batch_signing_input(size: int, root: bytes) -> bytes:
    """The exact bytes a batch's root signature covers."""
    return BATCH_CONTEXT + struct.pack(">Q", size) + root


def sign_batch(
    item_digests: Sequence[bytes], signer: crypto.Signer
) -> list[exchange_pb2.BatchProof]:
    """Sign the batch of ``item_digests`` once; return each item's proof, in batch order.

    A single item is a batch of one (empty path, root = its leaf hash).

    Raises:
        InvalidArgumentError: no items, more than ``MAX_BATCH_ITEMS``, or a digest not 32 bytes.
    """
    size = len(item_digests)
    if not 1 <= size <= MAX_BATCH_ITEMS:
        raise errors.InvalidArgumentError(f"a batch holds 1 to {MAX_BATCH_ITEMS} items")
    leaves = [item_leaf(d) for d in item_digests]
    tree = merkle.InMemoryTree(leaves)
    root = merkle.root(leaves)  # O(n) hashes; cheaper here than the tree's storage-generic root
    signature = signer.sign(batch_signing_input(size, root))
    key_id = signer.key_id
    return [
        exchange_pb2.BatchProof(
            index=index,
            size=size,
            path=merkle.inclusion_proof(tree, index, size),
            root=root,
            root_signature=signature,
            key_id=key_id,
        )
        for index in range(size)
    ]


def _check_shape(proof: exchange_pb2.BatchProof) -> None:
    if not isinstance(proof, exchange_pb2.BatchProof):
        raise errors.BatchProofError("not a batch proof")
    if not 1 <= proof.size <= MAX_BATCH_ITEMS:
        raise errors.BatchProofError("batch size out of range")
    if proof.index >= proof.size:
        raise errors.BatchProofError("index is not smaller than the batch size")
    if len(proof.path) > MAX_PATH_HASHES:
        raise errors.BatchProofError("inclusion path too long")
    if len(proof.root) != merkle.HASH_SIZE:
        raise errors.BatchProofError("root is not 32 bytes")
    if not proof.root_signature or len(proof.root_signature) > MAX_SIGNATURE_BYTES:
        raise errors.BatchProofError("root signature missing or too large")
    if len(proof.key_id) > MAX_KEY_ID_CHARS:
        raise errors.BatchProofError("key id too long")


def _check_inclusion(item_digest: bytes, proof: exchange_pb2.BatchProof) -> None:
    try:
        merkle.verify_inclusion(
            item_leaf(item_digest), proof.index, proof.size, list(proof.path), bytes(proof.root)
        )
    except errors.ProofError as exc:
        raise errors.BatchProofError("the item is not in the signed batch") from exc


def verify_batch_item(
    item_digest: bytes, proof: exchange_pb2.BatchProof, public_key: crypto.PublicSigningKey
) -> None:
    """Check, with no cache, that ``proof`` shows ``public_key``'s holder signed the item.

    What a third party runs on one stored item (``item_digest``) and its stored proof.

    Raises:
        InvalidArgumentError: ``item_digest`` is not 32 bytes.
        BatchProofError: the proof is malformed or does not include the item.
        SignatureError: the root signature does not verify under ``public_key``.
        UnknownKeyError: ``public_key`` is not a supported signing key.
    """
    _check_shape(proof)
    _check_inclusion(item_digest, proof)
    crypto.verify(
        public_key, bytes(proof.root_signature), batch_signing_input(proof.size, bytes(proof.root))
    )


def check_batch_layout(proofs: Sequence[exchange_pb2.BatchProof]) -> None:
    """Check that ``proofs`` are one whole signed batch, each item in its signed place.

    The receiver of an ``ExchangeBatch`` runs this over the proofs of its envelopes, in order:
    they must all name the same signed root, their indexes must be 0, 1, ..., size - 1, and
    there must be exactly ``size`` of them. An item moved in from another batch, reordered,
    duplicated, or a batch cut off fails here even when every item's own proof is genuine.

    Raises:
        BatchProofError: the batch is empty, mixed, out of order, cut off or padded.
    """
    if not proofs:
        raise errors.BatchProofError("empty batch")
    first = proofs[0]
    _check_shape(first)  # before comparing sizes: a size of 0 or 2**64 - 1 is malformed
    if first.size > len(proofs):
        raise errors.BatchProofError("the batch is cut off")
    if first.size < len(proofs):
        raise errors.BatchProofError("the batch holds more items than were signed")
    for position, proof in enumerate(proofs):
        if position:
            _check_shape(proof)
        if (
            proof.size != first.size
            or proof.root != first.root
            or proof.root_signature != first.root_signature
            or proof.key_id != first.key_id
        ):
            raise errors.BatchProofError("the batch mixes items of different signed batches")
        if proof.index != position:
            raise errors.BatchProofError("an item is out of its signed place")


def proof_from_bytes(data: bytes) -> exchange_pb2.BatchProof:
    """Parse a stored or received serialized ``BatchProof`` (shape checked, not verified).

    Raises:
        BatchProofError: too large, does not parse, or malformed.
    """
    if not isinstance(data, bytes) or not data or len(data) > MAX_PROOF_BYTES:
        raise errors.BatchProofError("batch proof empty or too large")
    try:
        proof: exchange_pb2.BatchProof = exchange_pb2.BatchProof.FromString(data)
    except DecodeError as exc:
        raise errors.BatchProofError("batch proof does not parse") from exc
    _check_shape(proof)
    return proof


class BatchVerifier:
    """Verifies batch items, checking each signed root once (bounded LRU cache; thread-safe).

    One per process is enough; the cache only saves work, it never decides: an entry is added
    after a root signature verified, and used only for the same key and signature bytes.
    """

    def __init__(self, max_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        """Create a verifier remembering at most ``max_entries`` verified roots.

        Raises:
            InvalidArgumentError: ``max_entries`` is not positive.
        """
        if max_entries < 1:
            raise errors.InvalidArgumentError("the verified-root cache needs at least one entry")
        self._max = max_entries
        self._lock = threading.Lock()
        self._roots: OrderedDict[tuple[str, int, bytes], tuple[crypto.PublicSigningKey, bytes]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._roots)

    def _known(
        self, entry: tuple[str, int, bytes], public_key: crypto.PublicSigningKey, signature: bytes
    ) -> bool:
        with self._lock:
            hit = self._roots.get(entry)
            if hit is None or hit[1] != signature or hit[0] != public_key:
                return False
            self._roots.move_to_end(entry)
            return True

    def _remember(
        self, entry: tuple[str, int, bytes], public_key: crypto.PublicSigningKey, signature: bytes
    ) -> None:
        with self._lock:
            self._roots[entry] = (public_key, signature)
            self._roots.move_to_end(entry)
            while len(self._roots) > self._max:
                self._roots.popitem(last=False)

    def verify_item(
        self,
        item_digest: bytes,
        proof: exchange_pb2.BatchProof,
        public_key: crypto.PublicSigningKey,
    ) -> None:
        """As ``verify_batch_item``, verifying the root signature only if not seen before.

        Raises:
            InvalidArgumentError: ``item_digest`` is not 32 bytes.
            BatchProofError: the proof is malformed or does not include the item.
            SignatureError: the root signature does not verify under ``public_key``.
            UnknownKeyError: ``public_key`` is not a supported signing key.
        """
        _check_shape(proof)
        self._verify_shaped(item_digest, proof, public_key)

    def _verify_shaped(
        self,
        item_digest: bytes,
        proof: exchange_pb2.BatchProof,
        public_key: crypto.PublicSigningKey,
    ) -> None:
        _check_inclusion(item_digest, proof)
        root, signature = bytes(proof.root), bytes(proof.root_signature)
        entry = (proof.key_id, proof.size, root)
        if self._known(entry, public_key, signature):
            return
        crypto.verify(public_key, signature, batch_signing_input(proof.size, root))
        self._remember(entry, public_key, signature)

    def verify_batch(
        self,
        item_digests: Sequence[bytes],
        proofs: Sequence[exchange_pb2.BatchProof],
        public_key: crypto.PublicSigningKey,
    ) -> None:
        """Verify a whole received batch: its layout, then every item (one signature check).

        Raises:
            InvalidArgumentError: a digest is not 32 bytes, or digests and proofs differ in number.
            BatchProofError: see ``check_batch_layout`` and ``verify_item``.
            SignatureError: the root signature does not verify under ``public_key``.
            UnknownKeyError: ``public_key`` is not a supported signing key.
        """
        if len(item_digests) != len(proofs):
            raise errors.InvalidArgumentError("one digest per proof")
        check_batch_layout(proofs)  # also checks every proof's shape
        for digest, proof in zip(item_digests, proofs, strict=True):
            self._verify_shaped(digest, proof, public_key)
