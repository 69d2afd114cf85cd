"""C2SP tlog-tiles arithmetic: paths, which tiles a tree and a proof need, proofs from tiles."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdx import merkle, tiles
from cdx.errors import InvalidArgumentError, LimitExceededError, MalformedError, ProofError
from cdx.tiles import Tile


@cache
def _tree(size: int) -> merkle.InMemoryTree:
    return merkle.InMemoryTree(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size))


def _tile_bytes(tree: merkle.InMemoryTree, tile: Tile) -> bytes:
    """A tile's contents straight from the definition: MTH of 256**L leaves per hash."""
    span = 1 << (8 * tile.level)
    first = tile.first * span
    return b"".join(
        tree.subtree_hash(first + i * span, first + (i + 1) * span) for i in range(tile.width)
    )


def _serve(tree: merkle.InMemoryTree, wanted: list[Tile]) -> dict[Tile, bytes]:
    return {t: _tile_bytes(tree, t) for t in wanted}


def test_paths_follow_the_spec_examples() -> None:
    assert Tile(0, 1234067).path() == "tile/0/x001/x234/067"
    assert Tile(0, 1234067).bundle_path() == "tile/entries/x001/x234/067"
    assert Tile(2, 5, 17).path() == "tile/2/005.p/17"
    assert Tile(0, 0).path() == "tile/0/000"
    assert Tile(1, 1000).path() == "tile/1/x001/000"
    for tile in (Tile(0, 1234067), Tile(2, 5, 17), Tile(63, 0, 1), Tile(0, 999)):
        assert tiles.parse_path(tile.path()) == (tile, False)
    assert tiles.parse_path("tile/entries/x001/x234/067.p/9") == (Tile(0, 1234067, 9), True)


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",  # not three digits
        "tile/0/0001",
        "tile/00/000",  # leading zero in the level
        "tile/64/000",  # level above 63
        "tile/0/x000/001",  # a leading zero element
        "tile/0/001.p/256",  # a full width as partial
        "tile/0/001.p/0",
        "tile/0/001.p/07",
        "tile/0/001/",
        "tile/entries/001.p/",
        "tile/-1/000",
        "/tile/0/000",
        "tile/0/x1/000",
        "tile/0/x001/x002",
        "tile/../000",
        "tile/0/000\n",
        "tile/0/٠٠١",  # non-ASCII digits
    ],
)
def test_malformed_tile_paths_are_refused(path: str) -> None:
    with pytest.raises(MalformedError):
        tiles.parse_path(path)


def test_a_tree_of_70000_has_the_tiles_the_spec_lists() -> None:
    found = tiles.tree_tiles(70_000)
    assert [t for t in found if t.level == 0 and not t.partial] == [Tile(0, n) for n in range(273)]
    assert [t for t in found if t.partial] == [Tile(0, 273, 112), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert Tile(1, 0) in found and len(found) == 273 + 1 + 1 + 1 + 1
    assert tiles.tree_tiles(256) == [Tile(0, 0), Tile(1, 0, 1)]
    assert tiles.tree_tiles(0) == []


@settings(max_examples=200, deadline=None)
@given(old=st.integers(0, 140_000), grown=st.integers(0, 140_000))
def test_new_tiles_complete_the_tiles_of_the_older_tree(old: int, grown: int) -> None:
    new = old + grown
    added = tiles.new_tiles(old, new)
    kept = [t for t in tiles.tree_tiles(old) if not t.partial]
    partial_now = {(t.level, t.index): t for t in tiles.tree_tiles(new) if t.partial}
    unchanged = [
        t for t in tiles.tree_tiles(old) if t.partial and partial_now.get((t.level, t.index)) == t
    ]
    assert sorted({*kept, *added, *unchanged}) == sorted(tiles.tree_tiles(new))
    assert not set(added) & set(kept)


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 1500), data=st.data())
def test_proofs_from_tiles_equal_the_proofs_of_the_tree(size: int, data: st.DataObject) -> None:
    tree = _tree(1500)
    index = data.draw(st.integers(0, size - 1))
    size1 = data.draw(st.integers(0, size))
    fetched = _serve(tree, tiles.inclusion_tiles(index, size))
    leaf, proof = tiles.inclusion_proof(fetched, index, size)
    assert leaf == tree.leaf_hashes(index, index + 1)[0]
    assert proof == merkle.inclusion_proof(tree, index, size)
    merkle.verify_inclusion(leaf, index, size, proof, tree.root(size))
    fetched = _serve(tree, tiles.consistency_tiles(size1, size))
    assert tiles.consistency_proof(fetched, size1, size) == merkle.consistency_proof(
        tree, size1, size
    )
    assert tiles.root(_serve(tree, tiles.root_tiles(size)), size) == tree.root(size)


@pytest.mark.parametrize("size", [65_536, 65_537, 70_000])
def test_proofs_across_tile_levels(size: int) -> None:
    tree = _tree(70_000)
    for index in (0, 255, 256, 65_535, size - 1):
        fetched = _serve(tree, tiles.inclusion_tiles(index, size))
        assert len({t.level for t in fetched}) >= 2  # hashes from more than one tile level
        _, proof = tiles.inclusion_proof(fetched, index, size)
        assert proof == merkle.inclusion_proof(tree, index, size)
    for size1 in (1, 256, 65_535, 65_536):
        fetched = _serve(tree, tiles.consistency_tiles(size1, size))
        proof = tiles.consistency_proof(fetched, size1, size)
        merkle.verify_consistency(size1, size, proof, tree.root(size1), tree.root(size))


def test_a_missing_or_malformed_tile_is_a_proof_error() -> None:
    tree = _tree(600)
    fetched = _serve(tree, tiles.inclusion_tiles(300, 600))
    some = next(iter(fetched))
    for broken in (
        {t: d for t, d in fetched.items() if t != some},
        {**fetched, some: fetched[some][:-1]},
    ):
        with pytest.raises(ProofError):
            tiles.inclusion_proof(broken, 300, 600)


def test_tiles_outside_the_tree_are_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        tiles.tile_of(0, 8, 7)
    with pytest.raises(InvalidArgumentError):
        tiles.inclusion_tiles(7, 7)
    for bad in ((64, 0, 1), (0, -1, 1), (0, 0, 0), (0, 0, 257)):
        with pytest.raises(InvalidArgumentError):
            Tile(*bad)
    with pytest.raises(InvalidArgumentError):
        Tile(1, 0).bundle_path()
    with pytest.raises(MalformedError):
        tiles.check_tile(Tile(0, 0, 3), bytes(95))


def test_entry_bundles_round_trip_and_refuse_malformed_bytes() -> None:
    entries = [b"", b"a", bytes(300), bytes(tiles.MAX_ENTRY_BYTES)]
    bundle = tiles.entry_bundle(entries)
    assert tiles.parse_entry_bundle(bundle, 4) == entries
    assert bundle[:2] == b"\x00\x00" and bundle[2:5] == b"\x00\x01a"
    for data, width in ((bundle, 3), (bundle, 5), (bundle[:-1], 4), (bundle + b"\x00", 4)):
        with pytest.raises(MalformedError):
            tiles.parse_entry_bundle(data, width)
    with pytest.raises(LimitExceededError):
        tiles.entry_bundle([bytes(tiles.MAX_ENTRY_BYTES + 1)])
    with pytest.raises(LimitExceededError):
        tiles.entry_bundle([b""] * 257)
