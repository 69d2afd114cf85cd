"""Attacks on the proofs the portal computes from the audit log's tiles (c2sp.org/tlog-tiles):
whoever serves the tiles (the log's own tile server, a CDN, an object store, or someone who
took over the URL) must not be able to make an entry look proven that the signed checkpoint
does not hold. A real audit log publishes its tiles to a directory served over HTTP; the
portal's checks (``portal.tileproofs``, ``portal.reports.check_history``) read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from audit.server import RunningAudit
from audit.tileclient import TileClient
from audit.tilestore import DirectoryTileStore
from audit.witness import Witness
from cdx import db, records, tiles, webserver
from cdx.v1 import audit_pb2
from portal.backends import TileFetcher
from portal.grpc_clients import GrpcAuditClient
from portal.reports import CheckedHistory, check_history
from portal.tileproofs import with_tile_proofs
from portal.verify import LogTrust, Status
from tests.integration.audit_support import CITIZEN_A, CONSUMER, PROVIDER, AuditWorld

pytestmark = pytest.mark.xdist_group("audit-tiles")


@dataclass
class Log:
    world: AuditWorld
    audit: RunningAudit
    tiles_dir: Path
    portal: GrpcAuditClient

    def history(self, fetcher: TileFetcher) -> CheckedHistory:
        served = self.portal.citizen_history(self.world.token(CITIZEN_A), 100)
        trust = LogTrust.from_conf(self.world.conf())
        return check_history(with_tile_proofs(served, fetcher), trust, CITIZEN_A)


def _provided(world: AuditWorld) -> audit_pb2.OutboxItem:
    """A provider's record of a service it hosts, so that every check of the portal applies."""
    item = world.item(PROVIDER, CITIZEN_A)
    record = audit_pb2.AccessRecord.FromString(item.record.record)
    record.service = "VN:GOV:BCA:sub/person/v1"
    item.record.CopyFrom(records.sign_access_record(record, world.servers[PROVIDER].signer))
    return item


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    world = AuditWorld(quorum=1)
    audit = world.start(
        db.create_engine(db.sqlite_url(tmp_path / "audit.db")),
        checkpoint_interval=5,
        tiles=DirectoryTileStore(tmp_path / "tiles"),
        tiles_listen="127.0.0.1:0",
    )
    portal = GrpcAuditClient(lambda: world.audit_address, world.portal_tls)
    try:
        with world.client(PROVIDER) as provider:
            shipped = provider.ship([_provided(world) for _ in range(3)])
            assert not any(r.error_code for r in shipped)
        audit.checkpointer.publish_once()
        with world.client(CONSUMER) as consumer:
            Witness(
                CONSUMER, world.servers[CONSUMER].witness_key, consumer, world.conf,
                tmp_path / "witness.json",
            ).poll_once()  # fmt: skip
        assert audit.publisher is not None
        assert audit.publisher.publish_once() == 3
        yield Log(world, audit, tmp_path / "tiles", portal)
    finally:
        portal.close()
        audit.stop()


def _statuses(checked: CheckedHistory) -> list[tuple[Status, str]]:
    return [(r.status, r.problem) for row in checked.rows for r in row.records]


def test_entries_proven_from_the_served_tiles_verify(log: Log) -> None:
    checked = log.history(TileClient(log.audit.tiles_url))
    assert checked.proof_source == "tiles" and checked.tiles_url == log.audit.tiles_url
    assert _statuses(checked) == [(Status.VERIFIED, "")] * 3


def test_a_tile_altered_where_it_is_served_is_refused(log: Log) -> None:
    tile = log.tiles_dir / tiles.Tile(0, 0, 3).path()
    honest = tile.read_bytes()
    tile.write_bytes(honest[:40] + bytes([honest[40] ^ 0x80]) + honest[41:])  # entry 1's hash
    checked = log.history(TileClient(log.audit.tiles_url))
    assert Status.VERIFIED not in {status for status, _ in _statuses(checked)}
    assert {problem for _, problem in _statuses(checked)} <= {
        "invalid_proof",
        "leaf_hash_mismatch",
    }


def test_a_tile_server_that_serves_another_tree_is_refused(log: Log) -> None:
    """Someone who took over the tile URL serves well-formed tiles of a tree they made."""

    async def forged(request: Request) -> Response:
        tile, _ = tiles.parse_path(f"tile/{request.path_params['rest']}")
        return Response(b"\x5a" * (32 * tile.width), media_type="application/octet-stream")

    app = Starlette(routes=[Route("/tile/{rest:path}", forged)])
    with webserver.serve(app, "127.0.0.1:0", name="forged-tiles") as web:
        checked = log.history(TileClient(web.url))
    assert [status for status, _ in _statuses(checked)] == [Status.FAILED] * 3


def test_a_truncated_tile_fails_and_a_missing_one_proves_nothing(log: Log) -> None:
    tile = log.tiles_dir / tiles.Tile(0, 0, 3).path()
    honest = tile.read_bytes()
    tile.write_bytes(honest[:-1])
    assert (
        _statuses(log.history(TileClient(log.audit.tiles_url)))
        == [(Status.FAILED, "invalid_tiles")] * 3
    )
    tile.unlink()  # nor can the full tile stand in: there is none yet
    assert (
        _statuses(log.history(TileClient(log.audit.tiles_url)))
        == [(Status.PENDING, "tiles_unavailable")] * 3
    )
