"""RFC 9162 Merkle tree hashing, proof building and proof verification; pure, no I/O.

The audit log (DESIGN §8) is an RFC 9162 (Certificate Transparency v2) Merkle tree over SHA-256:

- a leaf hashes as ``SHA-256(0x00 || data)`` and an inner node as ``SHA-256(0x01 || left || right)``
  (RFC 9162 §2.1.1); the root of the empty tree is ``SHA-256("")``;
- a tree of ``n > 1`` leaves splits at ``k``, the largest power of two smaller than ``n``.

All tree arithmetic of CDX lives here. A proof is a list of hashes of leaf ranges that occur in
the RFC 9162 recursion; ``inclusion_ranges`` / ``consistency_ranges`` say which ranges, and
``perfect_subtrees`` splits each into the perfect (aligned power-of-two) subtrees storage holds,
so a store can fetch everything a proof needs in one read (``proof_subtrees``) before the proof
is assembled. Proofs are built over any storage that implements ``NodeReader`` (leaf hashes by
range); storage that keeps a node table also implements ``SubtreeHashReader.subtree_hash`` so
that a proof costs O(log n) reads. ``InMemoryTree`` is such a storage. ``Accumulator`` keeps the
root of a growing prefix of leaves in O(log n) memory (a sequencer appending, a verifier
streaming every entry) and reports the perfect subtrees each leaf completes; ``Frontier`` is its
immutable, serialisable state. Tile arithmetic (C2SP tlog-tiles) builds on these in
``cdx.tiles``.

``verify_inclusion`` and ``verify_consistency`` follow RFC 9162 §2.1.3.2 and §2.1.4.2 and raise
``ProofError`` on any failure, including malformed arguments (they are fed untrusted input).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cdx.errors import InternalError, InvalidArgumentError, MalformedError, ProofError

HASH_SIZE = 32
#: A tree of 2**64 leaves needs at most 64 proof hashes; anything longer is rejected unread.
MAX_PROOF_HASHES = 64
#: Tree sizes are uint64 on the wire (RFC 9162 §4.10 ``tree_size``).
MAX_TREE_SIZE = 2**64 - 1
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Return the leaf hash ``SHA-256(0x00 || data)`` (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the inner-node hash ``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n > 1``), RFC 9162 §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_leaf_hash(h: bytes) -> None:
    if not isinstance(h, bytes) or len(h) != HASH_SIZE:
        raise InvalidArgumentError("a leaf hash must be 32 bytes")


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    """Combine perfect-subtree roots, largest (leftmost) first, into the tree root."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """Return MTH(D[n]) for the given leaf hashes (RFC 9162 §2.1.1), ``EMPTY_ROOT`` for none.

    Iterative: O(n) hashing, O(log n) memory.

    Raises:
        InvalidArgumentError: a leaf hash is not 32 bytes.
    """
    acc = Accumulator()
    for h in leaf_hashes:
        acc.add(h)
    return acc.root()


# --- storage protocol --------------------------------------------------------------------------


class NodeReader(Protocol):
    """Storage a proof can be built from: the minimum is leaf hashes by range."""

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        """Return the leaf hashes with indexes in ``[start, end)``, in order."""
        ...


@runtime_checkable
class SubtreeHashReader(NodeReader, Protocol):
    """Storage that can also return perfect-subtree hashes (e.g. from a node table)."""

    def subtree_hash(self, start: int, end: int) -> bytes:
        """Return MTH(D[start:end]); ``end - start`` is a power of two dividing ``start``."""
        ...


def _perfect_hash(reader: NodeReader, start: int, size: int) -> bytes:
    # An attribute test, not isinstance(): a runtime-checkable Protocol check costs ~15 µs a
    # call, more than the hashing it chooses between (bench/streamcrypto.py).
    subtree_hash = getattr(reader, "subtree_hash", None)
    if subtree_hash is not None:
        h = subtree_hash(start, start + size)
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise InternalError("storage returned a malformed subtree hash")
        return h
    leaves = reader.leaf_hashes(start, start + size)
    if len(leaves) != size:
        raise InternalError("storage returned the wrong number of leaf hashes")
    return root(leaves)


# --- which subtrees a proof needs ---------------------------------------------------------------


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Split a range ``[start, end)`` that occurs in the RFC 9162 recursion into perfect subtrees.

    Such a range starts at a multiple of the largest power of two not above its length, so it is
    the concatenation of perfect subtrees of decreasing size (the binary digits of its length),
    largest (leftmost) first; its hash is theirs folded from the right (``range_hash``).
    """
    parts: list[tuple[int, int]] = []
    pos = start
    length = end - start
    for bit in reversed(range(length.bit_length())):
        if length >> bit & 1:
            parts.append((pos, pos + (1 << bit)))
            pos += 1 << bit
    return parts


def subtree_coordinates(start: int, end: int) -> tuple[int, int]:
    """``(level, index)`` of the perfect subtree ``[start, end)``: leaves
    ``[index * 2**level, (index + 1) * 2**level)``.

    Raises:
        InvalidArgumentError: the range is not an aligned power-of-two range.
    """
    width = end - start
    if start < 0 or width <= 0 or width & (width - 1) or start % width:
        raise InvalidArgumentError("not a perfect subtree")
    level = width.bit_length() - 1
    return level, start >> level


def range_hash(perfect_hash: Callable[[int, int], bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) of a range from the RFC 9162 recursion, from the hashes of its perfect
    subtrees (``perfect_hash(a, b)`` returns MTH(D[a:b]) of a perfect subtree)."""
    return _fold_right([perfect_hash(a, b) for a, b in perfect_subtrees(start, end)])


def _range_hash(reader: NodeReader, start: int, end: int) -> bytes:
    return range_hash(lambda a, b: _perfect_hash(reader, a, b - a), start, end)


def _check_size(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TREE_SIZE:
        raise InvalidArgumentError(f"{name} must be an integer in [0, 2**64)")


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf side
    first.

    Raises:
        InvalidArgumentError: ``index`` is not in ``[0, size)``.
    """
    _check_size("index", index)
    _check_size("size", size)
    if index >= size:
        raise InvalidArgumentError("index must be smaller than the tree size")
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split_point(hi - lo)
        if index < lo + k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            siblings.append((lo + k, hi))
            hi = lo + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            siblings.append((lo, lo + k))
            lo += k
    siblings.reverse()
    return siblings


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1), in proof
    order; empty when ``size1`` is 0 or ``size2``.

    Raises:
        InvalidArgumentError: not ``0 <= size1 <= size2``.
    """
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size1 > size2:
        raise InvalidArgumentError("size1 must not exceed size2")
    if size1 in (0, size2):
        return []
    nodes: list[tuple[int, int]] = []
    lo, hi, complete = 0, size2, True  # SUBPROOF(m, D[lo:hi], b) with m = size1 - lo
    while size1 != hi:
        k = _split_point(hi - lo)
        if size1 - lo <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            nodes.append((lo + k, hi))
            hi = lo + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            nodes.append((lo, lo + k))
            lo += k
            complete = False
    if not complete:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        nodes.append((lo, hi))
    nodes.reverse()
    return nodes


def proof_subtrees(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every perfect subtree the given proof ranges are made of, once each, in order: what a
    store must read to answer the proofs (``root_ranges(size)`` for a root)."""
    return sorted({p for a, b in ranges for p in perfect_subtrees(a, b)})


def root_ranges(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees whose hashes, folded from the right, give MTH(D[size]).

    Raises:
        InvalidArgumentError: ``size`` is out of range.
    """
    _check_size("size", size)
    return perfect_subtrees(0, size)


def inclusion_proof(reader: NodeReader, index: int, size: int) -> list[bytes]:
    """Return the audit path PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf side first.

    Raises:
        InvalidArgumentError: ``index`` is not in ``[0, size)``.
    """
    return [_range_hash(reader, a, b) for a, b in inclusion_ranges(index, size)]


def consistency_proof(reader: NodeReader, size1: int, size2: int) -> list[bytes]:
    """Return PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1); empty when size1 is 0 or size2.

    Raises:
        InvalidArgumentError: not ``0 <= size1 <= size2``.
    """
    return [_range_hash(reader, a, b) for a, b in consistency_ranges(size1, size2)]


class SubtreeHashes:
    """A ``SubtreeHashReader`` over perfect-subtree hashes fetched beforehand (e.g. in one
    query for the subtrees ``proof_subtrees`` named), keyed by ``(start, end)``."""

    def __init__(self, hashes: Mapping[tuple[int, int], bytes]) -> None:
        self._hashes = hashes

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        """Leaf hashes ``[start, end)``.

        Raises:
            InternalError: one was not fetched.
        """
        return [self.subtree_hash(i, i + 1) for i in range(start, end)]

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) of a fetched perfect subtree.

        Raises:
            InternalError: it was not fetched (storage lost a node).
        """
        try:
            return self._hashes[(start, end)]
        except KeyError as exc:
            raise InternalError("a tree node is missing from storage") from exc


# --- in-memory tree, accumulator and frontier -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """A perfect-subtree hash: leaves ``[index * 2**level, (index + 1) * 2**level)``."""

    level: int
    index: int
    hash: bytes


class InMemoryTree:
    """An append-only tree caching every perfect-subtree hash; proofs and roots are O(log n)."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> list[Node]:
        """Append one leaf hash; return the perfect-subtree nodes this completed (leaf first).

        Raises:
            InvalidArgumentError: the hash is not 32 bytes.
        """
        _check_leaf_hash(leaf_hash)
        created = [Node(0, self.size, leaf_hash)]
        self._levels[0].append(leaf_hash)
        level = 0
        while len(self._levels[level]) % 2 == 0:
            row = self._levels[level]
            parent = node_hash(row[-2], row[-1])
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._levels[level + 1].append(parent)
            level += 1
            created.append(Node(level, len(self._levels[level]) - 1, parent))
        return created

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        """Return the leaf hashes ``[start, end)``.

        Raises:
            InvalidArgumentError: the range is not within the tree.
        """
        if not 0 <= start <= end <= self.size:
            raise InvalidArgumentError("leaf range is outside the tree")
        return self._levels[0][start:end]

    def subtree_hash(self, start: int, end: int) -> bytes:
        """Return the cached hash of the perfect subtree ``[start, end)``.

        Raises:
            InvalidArgumentError: the range is not an aligned power-of-two range in the tree.
        """
        width = end - start
        if width <= 0 or width & (width - 1) or start % width or end > self.size or start < 0:
            raise InvalidArgumentError("not a perfect subtree of this tree")
        level = width.bit_length() - 1
        return self._levels[level][start >> level]

    def root(self, size: int | None = None) -> bytes:
        """Return the root of the first ``size`` leaves (default: all).

        Raises:
            InvalidArgumentError: ``size`` exceeds the tree.
        """
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise InvalidArgumentError("size exceeds the tree")
        return _range_hash(self, 0, n)


class Accumulator:
    """The right edge of a growing tree, in O(log n) memory: append leaf hashes one by one (or
    many), read the root of everything appended so far, and optionally collect the perfect
    subtrees each append completes (what a node table or a tile stores).

    Mutable and unvalidated beyond hash lengths, for hot paths (a sequencer appending a batch, a
    verifier streaming a million entries); ``frontier()`` is its immutable, serialisable state.
    """

    __slots__ = ("_stack", "size")

    def __init__(self, frontier: Frontier | None = None) -> None:
        self._stack: list[bytes] = list(frontier.hashes) if frontier is not None else []
        self.size = frontier.size if frontier is not None else 0

    def add(self, leaf_hash: bytes, created: list[tuple[int, int, bytes]] | None = None) -> None:
        """Append one leaf hash; ``created`` (if given) receives the ``(level, index, hash)`` of
        every perfect subtree of level >= 1 it completed, smallest first.

        Raises:
            InvalidArgumentError: the hash is not 32 bytes, or the tree is full.
        """
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
            raise InvalidArgumentError("a leaf hash must be 32 bytes")
        if self.size >= MAX_TREE_SIZE:
            raise InvalidArgumentError("the tree is full")
        stack = self._stack
        stack.append(leaf_hash)
        self.size += 1
        size, level, count = self.size, 0, self.size
        while count & 1 == 0:  # each trailing zero bit of the new size merges two equal subtrees
            right = stack.pop()
            stack[-1] = node_hash(stack[-1], right)
            level += 1
            count >>= 1
            if created is not None:
                created.append((level, (size >> level) - 1, stack[-1]))

    def extend(
        self, leaf_hashes: Iterable[bytes], created: list[tuple[int, int, bytes]] | None = None
    ) -> None:
        """``add`` each of ``leaf_hashes`` in order.

        Raises:
            InvalidArgumentError: a hash is not 32 bytes, or the tree is full.
        """
        for h in leaf_hashes:
            self.add(h, created)

    def root(self) -> bytes:
        """MTH(D[size]) of everything appended (RFC 9162 §2.1.1)."""
        return _fold_right(self._stack)

    def frontier(self) -> Frontier:
        """The immutable state of this accumulator."""
        return Frontier(self.size, tuple(self._stack))


@dataclass(frozen=True, slots=True)
class Frontier:
    """The right edge of a tree: roots of the perfect subtrees of ``[0, size)``, largest first.

    ``len(hashes) == popcount(size)``. Enough to append leaves and compute roots in O(log n)
    without reading old leaves; serialises to ``uint64 size || hashes`` (big-endian).
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check_size("size", self.size)
        if len(self.hashes) != self.size.bit_count():
            raise InvalidArgumentError("a frontier holds one hash per set bit of its size")
        for h in self.hashes:
            _check_leaf_hash(h)

    @classmethod
    def from_reader(cls, reader: NodeReader, size: int) -> Frontier:
        """Build the frontier of the first ``size`` leaves of a stored tree.

        Raises:
            InvalidArgumentError: ``size`` is out of range.
        """
        return cls(size, tuple(_perfect_hash(reader, a, b - a) for a, b in root_ranges(size)))

    def append(self, leaf_hash: bytes) -> tuple[Frontier, list[Node]]:
        """Return the frontier after one more leaf, and the perfect-subtree nodes it completed.

        Raises:
            InvalidArgumentError: the hash is not 32 bytes or the tree is full.
        """
        return self.extend((leaf_hash,))

    def extend(self, leaf_hashes: Iterable[bytes]) -> tuple[Frontier, list[Node]]:
        """Append many leaves; return the new frontier and every node completed on the way
        (each leaf, then the subtrees it completed).

        Raises:
            InvalidArgumentError: a hash is not 32 bytes or the tree is full.
        """
        acc = Accumulator(self)
        created: list[Node] = []
        completed: list[tuple[int, int, bytes]] = []
        for h in leaf_hashes:
            index = acc.size
            acc.add(h, completed)
            created.append(Node(0, index, h))
            created.extend(Node(level, idx, hash_) for level, idx, hash_ in completed)
            completed.clear()
        return acc.frontier(), created

    def root(self) -> bytes:
        """The tree root MTH(D[size]) (RFC 9162 §2.1.1)."""
        return _fold_right(self.hashes)

    def to_bytes(self) -> bytes:
        """Serialise as ``uint64 size || hash...`` (big-endian)."""
        return self.size.to_bytes(8, "big") + b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> Frontier:
        """Parse the ``to_bytes`` form.

        Raises:
            MalformedError: wrong length for the encoded size.
        """
        if len(data) < 8:
            raise MalformedError("frontier state is too short")
        size = int.from_bytes(data[:8], "big")
        body = data[8:]
        if len(body) != HASH_SIZE * size.bit_count():
            raise MalformedError("frontier state length does not match its size")
        return cls(size, tuple(body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)))


# --- verification ------------------------------------------------------------------------------


def _check_proof_args(
    sizes: Sequence[int], hashes: Sequence[bytes], proof: Sequence[bytes]
) -> None:
    for value in sizes:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TREE_SIZE:
            raise ProofError("tree size or index out of range")
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError("proof is too long")
    for h in (*hashes, *proof):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ProofError("a hash is not 32 bytes")


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree ``(size, root)``.

    RFC 9162 §2.1.3.2.

    Raises:
        ProofError: the proof does not verify, or any argument is malformed (negative or
            out-of-range index or size, a hash not 32 bytes, more than 64 proof hashes).
    """
    _check_proof_args((index, size), (leaf_hash, root), proof)
    if index >= size:  # step 1
        raise ProofError("index is not smaller than the tree size")
    fn, sn, r = index, size - 1, leaf_hash  # steps 2-3
    for p in proof:  # step 4
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 5
        raise ProofError("proof is too short")
    if not _equal(r, root):
        raise ProofError("computed root does not match")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree ``(size2, root2)`` extends the tree ``(size1, root1)``.

    RFC 9162 §2.1.4.2, plus the trivial cases the RFC leaves out (as transparency-dev does):
    equal sizes need an empty proof and equal roots; ``size1 == 0`` needs an empty proof and
    ``root1 == EMPTY_ROOT`` (any tree extends the empty tree).

    Raises:
        ProofError: the proof does not verify, or any argument is malformed (``size1 > size2``,
            a hash not 32 bytes, more than 64 proof hashes).
    """
    if size1 == size2 and isinstance(root1, bytes) and isinstance(root2, bytes):
        # Same size: the same tree or a fork. Hash lengths are not checked here: the
        # transparency-dev vector "sizes are equal (one) and proof is empty" uses 12-byte roots.
        _check_proof_args((size1, size2), (), proof)
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if not _equal(root1, root2) or (size1 == 0 and not _equal(root1, EMPTY_ROOT)):
            raise ProofError("roots differ for equal tree sizes")
        return
    _check_proof_args((size1, size2), (root1, root2), proof)
    if size1 > size2:
        raise ProofError("size1 is larger than size2")
    if size1 == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        if not _equal(root1, EMPTY_ROOT):
            raise ProofError("root1 is not the empty-tree root")
        return
    if not proof:  # step 1
        raise ProofError("empty consistency proof")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # step 2: size1 is a power of two
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 7
        raise ProofError("proof is too short")
    if not (_equal(fr, root1) & _equal(sr, root2)):
        raise ProofError("computed roots do not match")
