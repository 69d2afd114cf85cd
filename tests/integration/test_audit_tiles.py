"""The tile publisher: an S3-compatible store (a local S3 server), restarts, refusals, the
checkpoint rewritten as cosignatures arrive, and the key documents."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.http import tiles_app
from audit.publisher import CHECKPOINT_PATH, TilePublisher
from audit.server import RunningAudit
from audit.tileclient import TileClient
from audit.tilestore import IMMUTABLE, MUTABLE, DirectoryTileStore, S3TileStore, open_tile_store
from audit.witness import Witness
from cdx import crypto, db, errors, keydocs, merkle, note, webserver
from tests.conformance import tlog_client as spec
from tests.integration.audit_support import CITIZEN_A, CONSUMER, PROVIDER, AuditWorld

pytestmark = pytest.mark.xdist_group("audit-tiles")


@pytest.fixture
def log(tmp_path: Path) -> Iterator[tuple[AuditWorld, RunningAudit]]:
    world = AuditWorld()
    audit = world.start(db.create_engine(db.sqlite_url(tmp_path / "a.db")), checkpoint_interval=5)
    try:
        yield world, audit
    finally:
        audit.stop()


def _grow(world: AuditWorld, audit: RunningAudit, count: int) -> None:
    with world.client(PROVIDER) as client:
        items = [world.item(PROVIDER, CITIZEN_A) for _ in range(count)]
        assert not any(r.error_code for r in client.ship(items))
    audit.checkpointer.publish_once()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _s3(endpoint: str, bucket: str) -> S3TileStore:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket=bucket)
    return S3TileStore(bucket, "logs/cdx", client=client)


def test_tiles_in_an_s3_compatible_store_serve_a_spec_only_client(
    log: tuple[AuditWorld, RunningAudit], s3_endpoint: str
) -> None:
    world, audit = log
    store = _s3(s3_endpoint, "tiles-serve")
    publisher = TilePublisher(audit.store, store, conf=world.conf)
    _grow(world, audit, 270)
    assert publisher.publish_once() == 270
    head = store._client.head_object(Bucket="tiles-serve", Key="logs/cdx/tile/0/000")
    assert head["CacheControl"] == IMMUTABLE and head["ContentType"] == "application/octet-stream"
    head = store._client.head_object(Bucket="tiles-serve", Key=f"logs/cdx/{CHECKPOINT_PATH}")
    assert head["CacheControl"] == MUTABLE
    with webserver.serve(tiles_app(store), "127.0.0.1:0", name="test-tiles") as web:
        conf = world.conf()
        text, _ = _fetch(f"{web.url}/checkpoint")
        cp = spec.open_checkpoint(
            text.decode(), spec.VerifierKey.parse(conf.audit_log_key), conf.audit_log_origin
        )
        view = spec.TiledLog(web.url, cp)
        entry = view.entry(263)
        spec.verify_inclusion(spec.leaf_hash(entry), 263, 270, view.inclusion_proof(263), cp.root)


def _fetch(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), {k.lower(): v for k, v in response.headers.items()}


def test_a_restarted_publisher_continues_and_a_shrunk_log_is_refused(
    log: tuple[AuditWorld, RunningAudit], tmp_path: Path
) -> None:
    world, audit = log
    store = DirectoryTileStore(tmp_path / "tiles")
    _grow(world, audit, 5)
    TilePublisher(audit.store, store).publish_once()
    _grow(world, audit, 300)
    again = TilePublisher(audit.store, store)  # a new process: reads back what was published
    assert again.published_size == 5
    assert again.publish_once() == 305
    assert (tmp_path / "tiles/tile/0/000").stat().st_size == 256 * 32
    assert (tmp_path / "tiles/tile/0/000.p/5").exists()  # earlier partial tiles stay
    # A store whose checkpoint is ahead of the database (restored from an old backup):
    other = DirectoryTileStore(tmp_path / "ahead")
    big = note.Checkpoint(world.conf().audit_log_origin, 10_000, bytes(32)).to_text()
    other.put(
        CHECKPOINT_PATH, world.keys.log_signer.sign(big).encode(), content_type="", immutable=False
    )
    refusing = TilePublisher(audit.store, other)
    with pytest.raises(errors.CheckpointInconsistentError):
        refusing.publish_once()
    assert refusing.health() is not None
    assert other.get(CHECKPOINT_PATH) == world.keys.log_signer.sign(big).encode()


def test_the_checkpoint_is_republished_as_cosignatures_arrive(
    log: tuple[AuditWorld, RunningAudit], tmp_path: Path
) -> None:
    world, audit = log
    store = DirectoryTileStore(tmp_path / "tiles")
    publisher = TilePublisher(audit.store, store)
    _grow(world, audit, 2)
    publisher.publish_once()
    assert (store.get(CHECKPOINT_PATH) or b"").decode().count("\u2014") == 1  # the log only
    with world.client(CONSUMER) as client:
        Witness(
            CONSUMER, world.servers[CONSUMER].witness_key, client, world.conf, tmp_path / "w.json"
        ).poll_once()
    publisher.publish_once()
    assert (store.get(CHECKPOINT_PATH) or b"").decode().count("\u2014") == 2


def test_key_documents_are_published_in_standard_forms(
    log: tuple[AuditWorld, RunningAudit], tmp_path: Path
) -> None:
    world, audit = log
    store = open_tile_store(str(tmp_path / "tiles"))
    TilePublisher(audit.store, store, conf=world.conf).publish_once()
    conf = world.conf()
    assert (store.get(keydocs.LOG_KEY_PATH) or b"").decode().strip() == conf.audit_log_key
    vkeys = (store.get(keydocs.WITNESS_KEYS_PATH) or b"").decode().split()
    assert len(vkeys) == 2
    for vkey in vkeys:  # each parses as a cosignature/v1 verifier key, named as it signs
        parsed = spec.VerifierKey.parse(vkey)
        assert parsed.sig_type == 0x04 and parsed.name in {
            keydocs.witness_name(CONSUMER),
            keydocs.witness_name(PROVIDER),
        }
    jwks = json.loads(store.get(keydocs.JWKS_PATH) or b"")
    (jwk,) = jwks["keys"]
    assert jwk["kid"] == world.keys.record_signer.key_id and jwk["cdx:use"] == "audit-records"
    import jwt

    # The JWK is the very key: any JOSE library verifies the service's signatures with it.
    from_jwk = jwt.PyJWK(jwk).key
    assert crypto.public_key_to_der(from_jwk) == world.keys.record_public_der


def test_proofs_from_tiles_work_against_every_recent_checkpoint(
    log: tuple[AuditWorld, RunningAudit], tmp_path: Path
) -> None:
    """Regression: only the newest checkpoint of a round had its partial tiles, so a client
    checking against an older one (the newest with the witness quorum) found no tiles."""
    world, audit = log
    store = DirectoryTileStore(tmp_path / "tiles")
    publisher = TilePublisher(audit.store, store)
    _grow(world, audit, 3)
    publisher.publish_once()
    _grow(world, audit, 4)  # checkpoint 7, never the newest when the publisher looked
    _grow(world, audit, 300)
    assert publisher.publish_once() == 307
    assert (tmp_path / "tiles/tile/0/000.p/7").exists()
    assert not (tmp_path / "tiles/tile/entries/000.p/7").exists()  # hash tiles only
    seven = audit.store.checkpoint_at(7)
    assert seven is not None
    with webserver.serve(tiles_app(store), "127.0.0.1:0", name="test-tiles") as web:
        client = TileClient(web.url)
        leaf_hash, proof = client.inclusion_proof(5, 7)
        merkle.verify_inclusion(leaf_hash, 5, 7, proof, seven.root)
        merkle.verify_consistency(3, 7, client.consistency_proof(3, 7), _root(audit, 3), seven.root)
        # A partial tile that was never written comes from the prefix of the full tile.
        (tmp_path / "tiles/tile/0/000.p/7").unlink()
        leaf_hash, proof = TileClient(web.url).inclusion_proof(6, 7)
        merkle.verify_inclusion(leaf_hash, 6, 7, proof, seven.root)


def _root(audit: RunningAudit, size: int) -> bytes:
    row = audit.store.checkpoint_at(size)
    assert row is not None
    return row.root
