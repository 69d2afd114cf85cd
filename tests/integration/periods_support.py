"""Two periods of the audit log (temporal sharding) for the tests: the old log ran, its last
checkpoint was anchored as the first entry of the new one (``audit.server.anchor_new_period``),
global configuration now names the new log, and the old log's tiles stay served."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.engine import Engine

from audit.http import tiles_app
from audit.server import AuditKeys, RunningAudit, anchor_new_period
from audit.store import AuditStore
from audit.tileclient import TileClient, TileLogSource
from audit.tilestore import DirectoryTileStore
from cdx import db, note, webserver
from cdx.v1 import audit_pb2
from tests.integration.audit_support import CONSUMER, PROVIDER, AuditWorld

NEW_ORIGIN = "cdx.test/audit/2027"


@dataclass
class Periods:
    world: AuditWorld
    old_engine: Engine
    old_keys: AuditKeys
    new: RunningAudit
    old_tiles_url: str
    anchored_size: int
    boundary_message: str  # its consumer record is in the old log, its provider record in the new

    def old_source(self) -> TileLogSource:
        return TileLogSource(TileClient(self.old_tiles_url))

    def old_store(self) -> AuditStore:
        return AuditStore(self.old_engine)


def ship(world: AuditWorld, items: list[audit_pb2.OutboxItem]) -> None:
    by_server: dict[str, list[audit_pb2.OutboxItem]] = {}
    for item in items:
        recorder = audit_pb2.AccessRecord.FromString(item.record.record).recorder
        by_server.setdefault(recorder, []).append(item)
    for server, batch in by_server.items():
        with world.client(server) as client:
            assert not any(r.error_code for r in client.ship(batch))


@contextmanager
def two_periods(
    root: Path, *, before_switch: object = None, anchor: bool = True
) -> Iterator[Periods]:
    """Run an old log, anchor a new one in it, switch global configuration to the new log.

    ``before_switch(world, old)`` runs after the anchor while the old log still runs (what an
    attacker or a careless operator could do to it then, or a witness polling it);
    ``anchor=False`` switches to a new log that anchors nothing (an attack).
    """
    world = AuditWorld()
    old_engine = db.create_engine(db.sqlite_url(root / "old.db"))
    old_tiles = DirectoryTileStore(root / "old-tiles")
    old = world.start(old_engine, checkpoint_interval=5, tiles=old_tiles)
    boundary = world.exchange()
    try:
        ship(world, [*world.exchange(), *world.exchange(), boundary[0]])
        old.checkpointer.publish_once()
        old_keys = world.keys
        new_keys = AuditKeys(
            log_signer=note.NoteSigner(NEW_ORIGIN, ed25519.Ed25519PrivateKey.generate()),
            record_signer=old_keys.record_signer,  # the audit service key stays
            master_key=old_keys.master_key,
        )
        new_engine = db.create_engine(db.sqlite_url(root / "new.db"))
        size = 0
        if anchor:
            size = anchor_new_period(
                AuditStore(old_engine),
                old_keys.log_signer.verifier(),
                old_keys.log_signer.name,
                new_engine,
                new_keys,
            )
        if callable(before_switch):
            before_switch(world, old)
        assert old.publisher is not None
        old.publisher.publish_once()
    finally:
        old.stop()
    world.keys = new_keys
    world.publish()  # global configuration names the new log (origin, key)
    new = world.start(new_engine, checkpoint_interval=5)
    try:
        ship(world, [boundary[1], *world.exchange()])
        new.checkpointer.publish_once()
        with webserver.serve(tiles_app(old_tiles), "127.0.0.1:0", name="old-tiles") as web:
            message_id = audit_pb2.AccessRecord.FromString(boundary[0].record.record).message_id
            yield Periods(world, old_engine, old_keys, new, web.url, size, message_id)
    finally:
        new.stop()
        old_engine.dispose()
        new_engine.dispose()


__all__ = ["CONSUMER", "NEW_ORIGIN", "PROVIDER", "Periods", "ship", "two_periods"]
