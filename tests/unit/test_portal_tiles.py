"""The portal computes its proofs from the audit log's tiles (c2sp.org/tlog-tiles) when global
configuration names a tile endpoint, checks them like any other proof, and says on the page
where they came from; where no endpoint is configured it uses the log's API and says so."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from cdx import merkle
from cdx.tiles import Tile
from portal import backends as b
from tests.unit.portal_fakes import (
    ALICE,
    GDT,
    INSPECTOR,
    NOW,
    VSS,
    FakeTiles,
    Harness,
    harness,
)

FROM_TILES = "computed here from the log&#39;s public tiles at https://tiles.portal.test/audit"
FROM_API = "No tile endpoint is configured for this log"


@pytest.fixture
def h() -> Harness:
    h = harness()
    h.tiles = FakeTiles(h.world)
    h.world.record(ALICE, client=VSS, at=NOW - timedelta(days=2))
    h.world.record(ALICE, client=GDT, purpose="TAX_ASSESSMENT", at=NOW - timedelta(hours=1))
    h.world.publish()
    return h


def _api_proofs_are_garbage(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log's API answers with proofs that verify nothing: only tiles can prove."""

    def bogus(index: int, size: int) -> b.InclusionProof:
        return b.InclusionProof(index, size, (bytes(32),) * 3)

    monkeypatch.setattr(h.audit, "_proof", bogus)
    monkeypatch.setattr(h.audit, "consistency_proof", lambda s1, s2: (bytes(32),))


def _client(h: Harness, subject: str = ALICE, role: str = "citizen") -> object:
    client = h.client()
    h.login(client, subject, role)
    return client


def _get(client: object, path: str) -> str:
    return str(client.get(path).text)  # type: ignore[attr-defined]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def test_history_entries_are_verified_with_proofs_computed_from_tiles(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _api_proofs_are_garbage(h, monkeypatch)
    client = _client(h)
    html = _get(client, "/me/access")
    assert html.count("mark-verified") == 2 and "mark-failed" not in html
    assert FROM_TILES in html
    assert Tile(0, 0, h.world.tree.size) in h.tiles.fetched  # type: ignore[union-attr]
    rid = h.world.records_of(ALICE)[0].record.record_id
    detail = _get(client, f"/me/access/{rid}")
    assert "mark-verified" in detail and FROM_TILES in detail
    report = json.loads(client.get("/me/report.json").content)  # type: ignore[attr-defined]
    assert report["log"]["proof_source"] == "tiles"
    assert report["log"]["tiles_url"] == FakeTiles.prefix
    assert {a["status"] for a in report["accesses"]} == {"verified"}


def test_without_a_tile_endpoint_the_api_proofs_are_used_and_the_page_says_so(
    h: Harness,
) -> None:
    h.tiles = None
    html = _get(_client(h), "/me/access")
    assert html.count("mark-verified") == 2 and FROM_API in html and FROM_TILES not in html


def test_a_tampered_tile_is_refused(h: Harness) -> None:
    size = h.world.tree.size
    tile = Tile(0, 0, size)
    assert h.tiles is not None
    honest = h.tiles.fetch([tile])[tile]
    h.tiles.tampered[tile.path()] = _flip(honest, 32 * 1)  # the hash of entry 1
    html = _get(_client(h), "/me/access")
    assert "mark-verified" not in html and "mark-failed" in html


def test_a_malformed_tile_fails_and_an_unserved_one_leaves_entries_pending(h: Harness) -> None:
    tile = Tile(0, 0, h.world.tree.size)
    assert h.tiles is not None
    h.tiles.tampered[tile.path()] = b"\x00" * 31
    client = _client(h)
    html = _get(client, "/me/access")
    assert "mark-verified" not in html and html.count("mark-failed") == 2
    assert "the log&#39;s tiles are malformed" in html
    h.tiles.tampered.clear()
    h.tiles.down = True
    html = _get(client, "/me/access")
    assert "mark-verified" not in html and html.count("mark-pending") == 2
    assert "tiles are not available yet" in html


def test_inspector_record_view_proves_from_tiles_and_refuses_a_tampered_tile(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _api_proofs_are_garbage(h, monkeypatch)
    client = _client(h, INSPECTOR, "inspector")
    rid = h.world.leaves[2].record.record_id
    html = _get(client, f"/inspect/records/{rid}")
    assert "mark-verified" in html and FROM_TILES in html
    tile = Tile(0, 0, h.world.tree.size)
    assert h.tiles is not None
    h.tiles.tampered[tile.path()] = _flip(h.tiles.fetch([tile])[tile], 32 * 3)
    html = _get(client, f"/inspect/records/{rid}")
    assert "mark-verified" not in html and "mark-failed" in html


def test_health_proves_consistency_from_tiles_and_tells_bad_tiles_from_a_rewritten_log(
    h: Harness,
) -> None:
    client = _client(h, INSPECTOR, "inspector")
    assert "first checkpoint seen by this portal" in _get(client, "/inspect/health")
    h.world.record(ALICE)
    h.world.publish()
    size = h.world.tree.size
    html = _get(client, "/inspect/health")
    assert "proven to extend the checkpoint of 4 entries" in html and FROM_TILES in html
    assert any(t.width == size for t in h.tiles.fetched)  # type: ignore[union-attr]
    # Tiles altered on the way: an alarm about the tiles, not about the log.
    h.world.record(ALICE)
    h.world.publish()
    tile = Tile(0, 0, h.world.tree.size)
    assert h.tiles is not None
    h.tiles.tampered[tile.path()] = _flip(h.tiles.fetch([tile])[tile], 0)
    html = _get(client, "/inspect/health")
    assert "the log&#39;s tiles are malformed" in html
    assert "may have been rewritten" not in html


def test_a_rewritten_log_is_still_called_rewritten_when_its_tiles_agree(h: Harness) -> None:
    client = _client(h, INSPECTOR, "inspector")
    _get(client, "/inspect/health")
    # The log rewrites entry 0 and signs a bigger tree; its tiles and API both follow it.
    h.world.leaves[0].data = h.world.leaves[1].data
    rebuilt = [leaf.data for leaf in h.world.leaves]
    h.world.tree = merkle.InMemoryTree(merkle.leaf_hash(d) for d in rebuilt)
    h.world.record(ALICE)
    h.world.publish()
    html = _get(client, "/inspect/health")
    assert "may have been rewritten" in html
