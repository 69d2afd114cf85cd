"""C2SP tlog-tiles: tile coordinates and paths, which tiles a tree or a proof needs, hashes and
proofs computed from tiles, entry bundles; pure, no I/O.

A tiled log (c2sp.org/tlog-tiles) serves its Merkle tree as *tiles*: tile ``N`` at level ``L``
holds the 256 consecutive hashes ``MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L])``,
``i = 0..255`` (level 0: leaf hashes). The rightmost tile of each level is *partial* for most tree
sizes (``floor(size / 256**L) mod 256`` hashes) and is served at ``tile/L/N.p/W``. Any perfect
subtree of the tree lies inside one tile, so every proof of ``cdx.merkle`` can be computed from a
few tiles (``TileHashes`` is a ``cdx.merkle.SubtreeHashReader`` over fetched tiles); the tree
arithmetic itself stays in ``cdx.merkle``.

Entry bundles (``tile/entries/N[.p/W]``) hold the leaves of the level-0 tile of the same index as
big-endian uint16 length-prefixed byte strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cdx import merkle
from cdx.errors import InvalidArgumentError, LimitExceededError, MalformedError, ProofError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_TILE_LEVEL = 63
#: An entry in a bundle is length-prefixed with a uint16.
MAX_ENTRY_BYTES = 0xFFFF
_HASH = merkle.HASH_SIZE
_PATH = re.compile(r"tile/(?:(0|[1-9][0-9]?)|(entries))/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([0-9]+))?")


@dataclass(frozen=True, slots=True, order=True)
class Tile:
    """Tile ``index`` of ``level`` holding ``width`` hashes (256 = full, fewer = partial)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_TILE_LEVEL:
            raise InvalidArgumentError("a tile level is 0..63")
        if self.index < 0 or self.index > merkle.MAX_TREE_SIZE:
            raise InvalidArgumentError("a tile index is a non-negative integer")
        if not 1 <= self.width <= TILE_WIDTH:
            raise InvalidArgumentError("a tile holds 1..256 hashes")

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def first(self) -> int:
        """Index of the tile's first hash among the hashes of tree level ``8 * level``."""
        return self.index * TILE_WIDTH

    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]``."""
        return f"tile/{self.level}/{_index_path(self.index)}{self._suffix()}"

    def bundle_path(self) -> str:
        """``tile/entries/<N>[.p/<W>]``, the entry bundle of a level-0 tile.

        Raises:
            InvalidArgumentError: the tile is not at level 0.
        """
        if self.level != 0:
            raise InvalidArgumentError("entry bundles exist for level-0 tiles only")
        return f"tile/entries/{_index_path(self.index)}{self._suffix()}"

    def _suffix(self) -> str:
        return f".p/{self.width}" if self.partial else ""


def _index_path(n: int) -> str:
    """``N`` as zero-padded 3-digit path elements, all but the last prefixed with ``x``
    (``1234067`` -> ``x001/x234/067``)."""
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def parse_path(path: str) -> tuple[Tile, bool]:
    """Parse a tile or entry-bundle path; returns the tile and whether it names entries.

    Raises:
        MalformedError: not a canonical tlog-tiles path (leading zeroes, a width outside
            1..255 after ``.p/``, ...).
    """
    match = _PATH.fullmatch(path)
    if match is None:
        raise MalformedError("not a tile path")
    level_text, entries, index_text, width_text = match.groups()
    elements = index_text.split("/")
    index = 0
    for element in elements:
        index = index * 1000 + int(element.lstrip("x"))
    width = TILE_WIDTH
    if width_text is not None:
        if width_text.startswith("0") or not 1 <= int(width_text) < TILE_WIDTH:
            raise MalformedError("a partial tile width is 1..255 without leading zeroes")
        width = int(width_text)
    level = 0 if entries else int(level_text)
    try:
        tile = Tile(level, index, width)
    except InvalidArgumentError as exc:
        raise MalformedError("tile coordinates out of range") from exc
    if tile.path() != path and (not entries or tile.bundle_path() != path):
        raise MalformedError("not a canonical tile path")
    return tile, entries is not None


def _hashes_at(level: int, size: int) -> int:
    """How many hashes tree level ``8 * level`` has in a tree of ``size`` leaves (full subtrees)."""
    return size >> (TILE_HEIGHT * level)


def tree_tiles(size: int) -> list[Tile]:
    """Every tile of a tree of ``size`` leaves: the full ones and the partial ones.

    Raises:
        InvalidArgumentError: ``size`` is out of range.
    """
    return new_tiles(0, size)


def new_tiles(old_size: int, new_size: int) -> list[Tile]:
    """The tiles a tree of ``new_size`` leaves has that one of ``old_size`` has not: every full
    tile completed since, and the partial tiles of ``new_size`` (what a log publishes when it
    grows), level by level.

    Raises:
        InvalidArgumentError: not ``0 <= old_size <= new_size <= 2**64 - 1``.
    """
    if not 0 <= old_size <= new_size <= merkle.MAX_TREE_SIZE:
        raise InvalidArgumentError("tree sizes must satisfy 0 <= old <= new < 2**64")
    out: list[Tile] = []
    for level in range(MAX_TILE_LEVEL + 1):
        old_n, new_n = _hashes_at(level, old_size), _hashes_at(level, new_size)
        if new_n == 0:
            break
        out.extend(Tile(level, i) for i in range(old_n // TILE_WIDTH, new_n // TILE_WIDTH))
        rest = new_n % TILE_WIDTH
        if rest and new_n != old_n:
            out.append(Tile(level, new_n // TILE_WIDTH, rest))
    return out


def tile_of(start: int, end: int, size: int) -> tuple[Tile, int, int]:
    """The tile of a tree of ``size`` leaves that holds the perfect subtree ``[start, end)``, and
    the ``(offset, count)`` of the hashes in it whose subtree that is.

    Raises:
        InvalidArgumentError: not a perfect subtree inside the tree.
    """
    level, _ = merkle.subtree_coordinates(start, end)
    if end > size:
        raise InvalidArgumentError("the subtree is not inside the tree")
    tile_level = level // TILE_HEIGHT
    first = start >> (TILE_HEIGHT * tile_level)
    count = 1 << (level % TILE_HEIGHT)
    index, offset = divmod(first, TILE_WIDTH)
    available = _hashes_at(tile_level, size) - index * TILE_WIDTH
    return Tile(tile_level, index, min(TILE_WIDTH, available)), offset, count


def tiles_for(subtrees: Iterable[tuple[int, int]], size: int) -> list[Tile]:
    """The tiles holding the given perfect subtrees of a tree of ``size`` leaves, once each.

    Raises:
        InvalidArgumentError: a range is not a perfect subtree inside the tree.
    """
    return sorted({tile_of(a, b, size)[0] for a, b in subtrees})


def inclusion_tiles(index: int, size: int) -> list[Tile]:
    """The tiles a client fetches to compute (and check) the inclusion proof of leaf ``index``
    in the tree of ``size`` leaves, including the tile holding the leaf hash itself.

    Raises:
        InvalidArgumentError: ``index`` is not in ``[0, size)``.
    """
    ranges = merkle.inclusion_ranges(index, size)
    return tiles_for([*merkle.proof_subtrees(ranges), (index, index + 1)], size)


def consistency_tiles(size1: int, size2: int) -> list[Tile]:
    """The tiles a client fetches to compute the consistency proof from ``size1`` to ``size2``.

    Raises:
        InvalidArgumentError: not ``0 <= size1 <= size2``.
    """
    return tiles_for(merkle.proof_subtrees(merkle.consistency_ranges(size1, size2)), size2)


def root_tiles(size: int) -> list[Tile]:
    """The tiles from which the root of a tree of ``size`` leaves is computed."""
    return tiles_for(merkle.root_ranges(size), size)


def check_tile(tile: Tile, data: bytes) -> None:
    """Check that ``data`` has the length ``tile`` needs (its width times 32 bytes).

    Raises:
        MalformedError: it has not.
    """
    if len(data) != tile.width * _HASH:
        raise MalformedError(f"tile {tile.path()} must be {tile.width * _HASH} bytes")


class TileHashes:
    """A ``cdx.merkle.SubtreeHashReader`` over fetched tiles of a tree of ``size`` leaves: the
    hash of any perfect subtree is its tile's hashes, folded (RFC 9162 §2.1.1)."""

    def __init__(self, tiles: Mapping[Tile, bytes], size: int) -> None:
        self._tiles = tiles
        self._size = size

    def leaf_hashes(self, start: int, end: int) -> Sequence[bytes]:
        """Leaf hashes ``[start, end)`` from level-0 tiles.

        Raises:
            ProofError: a tile is missing or malformed.
        """
        return [self.subtree_hash(i, i + 1) for i in range(start, end)]

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) of a perfect subtree.

        Raises:
            ProofError: the tile holding it was not fetched, or is malformed.
        """
        try:
            tile, offset, count = tile_of(start, end, self._size)
        except InvalidArgumentError as exc:
            raise ProofError("the subtree is not inside the tree") from exc
        data = self._tiles.get(tile)
        if data is None or len(data) != tile.width * _HASH:
            raise ProofError(f"tile {tile.path()} is missing or malformed")
        chunk = data[offset * _HASH : (offset + count) * _HASH]
        return merkle.root(chunk[i : i + _HASH] for i in range(0, len(chunk), _HASH))


def inclusion_proof(
    tiles: Mapping[Tile, bytes], index: int, size: int
) -> tuple[bytes, list[bytes]]:
    """``(leaf hash, proof)`` of leaf ``index`` in the tree of ``size`` leaves, from the tiles
    ``inclusion_tiles`` named. Verify the result against a signed root
    (``cdx.merkle.verify_inclusion``): tiles are untrusted.

    Raises:
        InvalidArgumentError: ``index`` is not in ``[0, size)``.
        ProofError: a tile is missing or malformed.
    """
    reader = TileHashes(tiles, size)
    return reader.subtree_hash(index, index + 1), merkle.inclusion_proof(reader, index, size)


def consistency_proof(tiles: Mapping[Tile, bytes], size1: int, size2: int) -> list[bytes]:
    """The consistency proof from ``size1`` to ``size2``, from the tiles ``consistency_tiles``
    named (check it with ``cdx.merkle.verify_consistency``).

    Raises:
        InvalidArgumentError: not ``0 <= size1 <= size2``.
        ProofError: a tile is missing or malformed.
    """
    return merkle.consistency_proof(TileHashes(tiles, size2), size1, size2)


def root(tiles: Mapping[Tile, bytes], size: int) -> bytes:
    """MTH(D[size]) from the tiles ``root_tiles`` named.

    Raises:
        ProofError: a tile is missing or malformed.
    """
    reader = TileHashes(tiles, size)
    return merkle.range_hash(reader.subtree_hash, 0, size) if size else merkle.EMPTY_ROOT


# --- entry bundles -------------------------------------------------------------------------------


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Serialise up to 256 entries as a bundle (each a big-endian uint16 length, then the bytes).

    Raises:
        LimitExceededError: more than 256 entries, or an entry longer than 65,535 bytes.
    """
    if len(entries) > TILE_WIDTH:
        raise LimitExceededError("an entry bundle holds at most 256 entries")
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise LimitExceededError("an entry in a bundle is at most 65,535 bytes")
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def parse_entry_bundle(data: bytes, width: int) -> list[bytes]:
    """Parse a bundle that must hold exactly ``width`` entries.

    Raises:
        MalformedError: truncated, trailing bytes, or another number of entries.
    """
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise MalformedError("an entry bundle is truncated")
        length = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + length > len(data):
            raise MalformedError("an entry bundle is truncated")
        entries.append(bytes(data[pos : pos + length]))
        pos += length
        if len(entries) > width:
            break
    if len(entries) != width:
        raise MalformedError(f"an entry bundle must hold {width} entries")
    return entries
