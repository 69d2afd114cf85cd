"""Attacks on the log's standard interfaces: the tiles served over HTTP, the tlog-witness
endpoint (which authenticates nobody: only the checkpoint's signature counts), and what the
public tiles reveal."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.client import AuditClient
from audit.http import witness_app
from audit.server import RunningAudit
from audit.tilestore import DirectoryTileStore
from audit.witness import Witness
from cdx import db, note, webserver
from cdx.webserver import RunningWebServer
from tests.conformance import tlog_client as spec
from tests.integration.audit_support import CITIZEN_A, CITIZEN_B, PROVIDER, AuditWorld

from .fuzzing import FUZZ_EXAMPLES

pytestmark = pytest.mark.xdist_group("attack-tlog")


@dataclass
class Setup:
    world: AuditWorld
    audit: RunningAudit
    provider: AuditClient
    witness: Witness
    web: RunningWebServer
    tiles: Path

    def grow(self, count: int = 3, **kw: object) -> None:
        items = [self.world.item(PROVIDER, CITIZEN_A, **kw) for _ in range(count)]  # type: ignore[arg-type]
        assert not any(r.error_code for r in self.provider.ship(items))
        self.audit.checkpointer.publish_once()
        assert self.audit.publisher is not None
        self.audit.publisher.publish_once()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("attack-tlog")
    world = AuditWorld()
    audit = world.start(
        db.create_engine(db.sqlite_url(root / "a.db")),
        checkpoint_interval=5,
        tiles=DirectoryTileStore(root / "tiles"),
        tiles_listen="127.0.0.1:0",
    )
    provider = world.client(PROVIDER)
    witness = Witness(
        PROVIDER, world.servers[PROVIDER].witness_key, provider, world.conf, root / "w.json"
    )
    web = webserver.serve(witness_app(witness.add_checkpoint), "127.0.0.1:0", name="witness")
    s = Setup(world, audit, provider, witness, web, root / "tiles")
    s.grow()
    latest = audit.store.latest_checkpoint()
    assert latest is not None
    assert spec.add_checkpoint(f"{web.url}/add-checkpoint", 0, [], latest.note)[0] == 200
    try:
        yield s
    finally:
        web.stop()
        provider.close()
        audit.stop()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize(
    "path",
    [
        "tile/../../a.db",
        "tile/%2e%2e/%2e%2e/a.db",
        "tile/0/..%2f..%2fa.db",
        "tile/entries/../../w.json",
        "tile/0/000/../../../a.db",
        ".well-known/cdx/../../a.db",
        ".well-known/cdx/%2e%2e%2fa.db",
        "checkpoint/../a.db",
        "tile//0/000",
    ],
)
def test_tile_paths_cannot_reach_outside_the_published_files(setup: Setup, path: str) -> None:
    assert _status(f"{setup.audit.tiles_url}/{path}") == 404


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.one_of(st.binary(max_size=600), st.text(max_size=600).map(str.encode)))
def test_hostile_add_checkpoint_bodies_get_a_refusal_never_a_cosignature_or_a_crash(
    setup: Setup, body: bytes
) -> None:
    accepted = setup.witness.accepted
    status, _, _ = spec.post(f"{setup.web.url}/add-checkpoint", body)
    assert 400 <= status < 500
    assert setup.witness.accepted == accepted and setup.witness.health() is None


def test_nobody_can_roll_a_witness_back_with_an_older_signed_checkpoint(setup: Setup) -> None:
    """The endpoint authenticates nobody, so a replayed (validly signed) older checkpoint must
    not move the witness backwards: the old size has to match what it cosigned last."""
    older = setup.audit.store.latest_checkpoint()
    assert older is not None
    setup.grow()
    newer = setup.audit.store.latest_checkpoint()
    assert newer is not None and setup.witness.accepted is not None
    known = setup.witness.accepted.size
    proof = setup.provider.consistency_proof(known, newer.size)
    url = f"{setup.web.url}/add-checkpoint"
    assert spec.add_checkpoint(url, known, proof, newer.note)[0] == 200
    for old_size in (0, known, older.size):
        status, _, _ = spec.add_checkpoint(url, old_size, [], older.note)
        assert status in (400, 409)
    assert setup.witness.accepted.size == newer.size and setup.witness.health() is None
    oversized = spec.post(url, b"old 0\n" + b"A" * (256 * 1024) + b"\n\n" + newer.note.encode())
    assert oversized[0] in (400, 413)


def test_public_tiles_reveal_no_subject_even_of_sealed_entries(setup: Setup) -> None:
    """Entry bundles hold the signed records exactly as GetEntries returns them: salted
    commitments, never a national id, never an opening, sealed or not."""
    setup.grow(2, sealed=True)
    items = [setup.world.item(PROVIDER, CITIZEN_B) for _ in range(2)]
    assert not any(r.error_code for r in setup.provider.ship(items))
    setup.audit.checkpointer.publish_once()
    assert setup.audit.publisher is not None
    setup.audit.publisher.publish_once()
    published = b"".join(p.read_bytes() for p in setup.tiles.rglob("*") if p.is_file())
    assert published
    for secret in (CITIZEN_A.encode(), CITIZEN_B.encode()):
        assert secret not in published
    assert note.parse_note((setup.tiles / "checkpoint").read_text()).text  # a real note
