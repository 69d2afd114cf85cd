"""transparency-dev/merkle proof-verification vectors (RFC 6962 / RFC 9162), read in place.

The vectors live in ``../shared/conformance/merkle`` next to the project (see its README.md);
``CDX_CONFORMANCE_DIR`` may point at another ``conformance`` folder. Every ``wantErr: false`` case
must verify and every ``wantErr: true`` case must raise ``ProofError``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cdx import tiles
from cdx.errors import ProofError
from cdx.merkle import (
    Accumulator,
    InMemoryTree,
    SubtreeHashes,
    consistency_proof,
    consistency_ranges,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    proof_subtrees,
    verify_consistency,
    verify_inclusion,
)
from tests.conftest import missing_mark, skip_missing

#: How many vectors the shared folder held when this test was written; fewer found means the
#: folder was truncated or the loader skipped files, and the suite must say so.
EXPECTED_VECTORS = 196


def _vector_dir() -> Path:
    """``CDX_CONFORMANCE_DIR``, else ``../shared/conformance`` next to the project, else next to
    the checkout this one was cloned from (a fresh clone elsewhere still finds the vectors)."""
    override = os.environ.get("CDX_CONFORMANCE_DIR")
    if override:
        return Path(override) / "merkle"
    project = Path(__file__).resolve().parents[2]
    beside = project.parent / "shared" / "conformance" / "merkle"
    if beside.is_dir():
        return beside
    origin = _origin_checkout(project)
    if origin is not None and (origin.parent / "shared" / "conformance" / "merkle").is_dir():
        return origin.parent / "shared" / "conformance" / "merkle"
    return beside


def _origin_checkout(project: Path) -> Path | None:
    """The local checkout ``project`` was cloned from, if its origin is a local path."""
    try:
        url = subprocess.run(
            ["git", "-C", str(project), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    url = url.removeprefix("file://")
    if not url or "://" in url or ":" in url.split("/", 1)[0]:
        return None
    path = (project / url).resolve()
    return path if path.is_dir() else None


VECTOR_DIR = _vector_dir()
VECTORS = sorted(VECTOR_DIR.rglob("*.json")) if VECTOR_DIR.is_dir() else []
MISSING_WHAT = f"the Merkle conformance vectors at {VECTOR_DIR}"
MISSING_HOW = "put ../shared/conformance next to the project or set CDX_CONFORMANCE_DIR"


def _b64(value: str) -> bytes:
    # Vectors deliberately include malformed hashes (e.g. 12-byte "don't care" roots); they
    # decode fine and must be rejected by the verifier, not by this loader.
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:  # pragma: no cover - the published vectors are valid base64
        raise AssertionError(f"vector holds invalid base64: {value!r}") from exc


def _run(kind: str, case: dict[str, Any]) -> None:
    proof = [_b64(p) for p in case["proof"] or []]
    if kind == "inclusion":
        verify_inclusion(
            _b64(case["leafHash"]), case["leafIdx"], case["treeSize"], proof, _b64(case["root"])
        )
    else:
        verify_consistency(
            case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"])
        )


def _kind(path: Path) -> str:
    kind = path.relative_to(VECTOR_DIR).parts[0]
    assert kind in ("inclusion", "consistency"), f"unexpected vector folder {kind}"
    return kind


def test_all_vectors_are_found() -> None:
    if not VECTOR_DIR.is_dir():
        skip_missing(MISSING_WHAT, MISSING_HOW)  # a failure under CI=true
    # Counted independently of the glob that feeds the parametrisation.
    on_disk = sum(
        name.lower().endswith(".json") for _, _, names in os.walk(VECTOR_DIR) for name in names
    )
    assert len(VECTORS) == on_disk, "some vector files were not collected"
    assert len(VECTORS) >= EXPECTED_VECTORS, (
        f"found {len(VECTORS)} vectors in {VECTOR_DIR}, expected at least {EXPECTED_VECTORS}"
    )


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=str(p.relative_to(VECTOR_DIR))) for p in VECTORS]
    or [pytest.param(None, id="none-found", marks=missing_mark(MISSING_WHAT, MISSING_HOW))],
)
def test_vector(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    kind = _kind(path)
    if case["wantErr"]:
        with pytest.raises(ProofError):
            _run(kind, case)
    else:
        _run(kind, case)


# --- building proofs: the vectors' valid cases come from RFC 6962's reference tree ------------

#: The leaves of the reference tree the vectors were computed over (RFC 6962 test data, as
#: transparency-dev/merkle uses it); ``test_reference_leaves_are_the_vectors_leaves`` checks it.
REFERENCE_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
VALID = [p for p in VECTORS if not json.loads(p.read_text(encoding="utf-8"))["wantErr"]]


def _reference_tree(case: dict[str, Any]) -> list[bytes]:
    hashes = [leaf_hash(x) for x in REFERENCE_LEAVES]
    if "leafIdx" in case and _b64(case["leafHash"]) != hashes[case["leafIdx"]]:
        return [_b64(case["leafHash"])]  # a vector of its own one-leaf tree
    return hashes


def test_reference_leaves_are_the_vectors_leaves() -> None:
    if not VALID:
        skip_missing(MISSING_WHAT, MISSING_HOW)
    hashes = [leaf_hash(x) for x in REFERENCE_LEAVES]
    seen = 0
    for path in VALID:
        case = json.loads(path.read_text(encoding="utf-8"))
        if "leafIdx" in case and _b64(case["leafHash"]) == hashes[case["leafIdx"]]:
            assert _b64(case["root"]) == _root(hashes[: case["treeSize"]])
            seen += 1
    assert seen >= 5


def _root(hashes: list[bytes]) -> bytes:
    acc = Accumulator()
    acc.extend(hashes)
    return acc.root()


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=str(p.relative_to(VECTOR_DIR))) for p in VALID]
    or [pytest.param(None, id="none-found", marks=missing_mark(MISSING_WHAT, MISSING_HOW))],
)
def test_proof_builders_reproduce_the_vectors(path: Path) -> None:
    """The store's way (subtrees read once, proof assembled by ``cdx.merkle``), the tile way
    (``cdx.tiles`` over tlog-tiles), and the accumulator all give the vector's proof and roots."""
    case = json.loads(path.read_text(encoding="utf-8"))
    hashes = _reference_tree(case)
    tree = InMemoryTree(hashes)
    want = [_b64(p) for p in case["proof"] or []]
    if _kind(path) == "inclusion":
        index, size = case["leafIdx"], case["treeSize"]
        stored = SubtreeHashes(
            {r: tree.subtree_hash(*r) for r in proof_subtrees(inclusion_ranges(index, size))}
        )
        assert inclusion_proof(stored, index, size) == want
        served = {t: _tile(tree, t) for t in tiles.inclusion_tiles(index, size)}
        assert tiles.inclusion_proof(served, index, size) == (hashes[index], want)
        assert _root(hashes[:size]) == _b64(case["root"])
        return
    size1, size2 = case["size1"], case["size2"]
    stored = SubtreeHashes(
        {r: tree.subtree_hash(*r) for r in proof_subtrees(consistency_ranges(size1, size2))}
    )
    assert consistency_proof(stored, size1, size2) == want
    served = {t: _tile(tree, t) for t in tiles.consistency_tiles(size1, size2)}
    assert tiles.consistency_proof(served, size1, size2) == want
    if size1 and len(_b64(case["root1"])) == 32:
        assert _root(hashes[:size1]) == _b64(case["root1"])
        assert _root(hashes[:size2]) == _b64(case["root2"])


def _tile(tree: InMemoryTree, tile: tiles.Tile) -> bytes:
    span = 1 << (8 * tile.level)
    start = tile.first * span
    return b"".join(
        tree.subtree_hash(start + i * span, start + (i + 1) * span) for i in range(tile.width)
    )
