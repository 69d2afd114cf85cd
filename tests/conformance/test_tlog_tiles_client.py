"""A client written against the C2SP specifications only (``tlog_client``, no CDX code) reads the
running audit log's tiles over HTTP and verifies an inclusion and a consistency proof."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.client import AuditClient
from audit.server import RunningAudit
from audit.tilestore import DirectoryTileStore
from cdx import db
from tests.integration.audit_support import CITIZEN_A, PROVIDER, AuditWorld

from . import tlog_client as spec

pytestmark = pytest.mark.xdist_group("tlog-tiles-client")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[AuditWorld, RunningAudit, AuditClient]]:
    world = AuditWorld()
    engine = db.create_engine(db.sqlite_url(tmp_path / "audit.db"))
    audit = world.start(
        engine,
        checkpoint_interval=5.0,
        tiles=DirectoryTileStore(tmp_path / "tiles"),
        tiles_listen="127.0.0.1:0",
    )
    provider = world.client(PROVIDER)
    try:
        yield world, audit, provider
    finally:
        provider.close()
        audit.stop()


def _grow(audit: RunningAudit, world: AuditWorld, provider: AuditClient, count: int) -> None:
    items = [world.item(PROVIDER, CITIZEN_A) for _ in range(count)]
    for start in range(0, count, 500):
        assert not any(r.error_code for r in provider.ship(items[start : start + 500]))
    audit.checkpointer.publish_once()
    assert audit.publisher is not None
    audit.publisher.publish_once()


def _get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), {k.lower(): v for k, v in response.headers.items()}


def test_a_spec_only_client_verifies_inclusion_and_consistency_from_tiles(
    served: tuple[AuditWorld, RunningAudit, AuditClient],
) -> None:
    world, audit, provider = served
    prefix = audit.tiles_url
    conf = world.conf()
    # Trust comes out of band (here: global configuration); the log also publishes its key.
    log_key = spec.VerifierKey.parse(conf.audit_log_key)
    published, _ = _get(f"{prefix}/.well-known/cdx/log.vkey")
    assert published.decode().strip() == conf.audit_log_key

    _grow(audit, world, provider, 300)  # one full level-0 tile and a partial one
    text, headers = _get(f"{prefix}/checkpoint")
    assert (
        headers["content-type"].startswith("text/plain") and "no-cache" in headers["cache-control"]
    )
    old = spec.open_checkpoint(text.decode(), log_key, conf.audit_log_origin)
    assert old.size == 300

    _grow(audit, world, provider, 478)  # three full level-0 tiles, partial ones at levels 0, 1
    text, _ = _get(f"{prefix}/checkpoint")
    new = spec.open_checkpoint(text.decode(), log_key, conf.audit_log_origin)
    assert new.size == 778

    view = spec.TiledLog(prefix, new)
    for index in (0, 255, 256, 299, 300, 767, 768, new.size - 1):
        entry = view.entry(index)  # from its bundle, checked against the level-0 tile
        proof = view.inclusion_proof(index)
        spec.verify_inclusion(spec.leaf_hash(entry), index, new.size, proof, new.root)
        (served_entry,) = provider.entries(index, index + 1)
        assert served_entry.record.SerializeToString() == entry  # the same bytes as GetEntries
    consistency = view.consistency_proof(old.size)
    spec.verify_consistency(old.size, new.size, consistency, old.root, new.root)
    assert view.mth(0, new.size) == new.root
    assert "tile/1/000.p/3" in view.fetched and "tile/0/003.p/10" in view.fetched
    with pytest.raises(spec.SpecError):  # and the client does catch a wrong answer
        spec.verify_consistency(old.size, new.size, consistency, new.root, old.root)

    # Tiles are immutable and cacheable; a partial tile is served under its width.
    tile, headers = _get(f"{prefix}/tile/0/001.p/44")
    assert len(tile) == 44 * 32 and "immutable" in headers["cache-control"]
    _, headers = _get(f"{prefix}/tile/0/000")
    assert "max-age=31536000" in headers["cache-control"]


@pytest.mark.parametrize(
    "path",
    ["tile/0/1", "tile/0/000.p/256", "tile/9/000", "tile/../checkpoint", "tile/0/x000/001", "x"],
)
def test_missing_and_malformed_tile_paths_are_not_found(
    served: tuple[AuditWorld, RunningAudit, AuditClient], path: str
) -> None:
    world, audit, provider = served
    _grow(audit, world, provider, 3)
    with pytest.raises(urllib.error.HTTPError) as caught:
        _get(f"{audit.tiles_url}/{path}")
    assert caught.value.code == 404
