"""c2sp.org/tlog-witness: a client written from the specification (``tlog_client``) gets valid
cosignatures from CDX's witnesses and every refusal the specification names; the log collects
cosignatures from witnesses through the same protocol."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit.client import AuditClient
from audit.http import witness_app
from audit.server import RunningAudit
from audit.tlogwitness import FileWitnessState, MultiLogWitness, WitnessClient
from audit.witness import Witness
from cdx import db, errors, keydocs, note, webserver
from cdx.webserver import RunningWebServer
from tests.integration.audit_support import CITIZEN_A, PROVIDER, AuditWorld

from . import tlog_client as spec

pytestmark = pytest.mark.xdist_group("tlog-witness-client")


@dataclass
class Setup:
    world: AuditWorld
    audit: RunningAudit
    provider: AuditClient
    witness: Witness
    web: RunningWebServer

    def grow(self, count: int = 3) -> spec.Checkpoint:
        items = [self.world.item(PROVIDER, CITIZEN_A) for _ in range(count)]
        assert not any(r.error_code for r in self.provider.ship(items))
        self.audit.checkpointer.publish_once()
        return self.checkpoint()

    def checkpoint(self) -> spec.Checkpoint:
        """The newest checkpoint as the log signed it (what it sends to witnesses)."""
        conf = self.world.conf()
        latest = self.audit.store.latest_checkpoint()
        assert latest is not None
        key = spec.VerifierKey.parse(conf.audit_log_key)
        return spec.open_checkpoint(latest.note, key, conf.audit_log_origin)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    world = AuditWorld()
    audit = world.start(db.create_engine(db.sqlite_url(tmp_path / "a.db")), checkpoint_interval=5)
    provider = world.client(PROVIDER)
    witness = Witness(
        PROVIDER, world.servers[PROVIDER].witness_key, provider, world.conf, tmp_path / "w.json"
    )
    web = webserver.serve(witness_app(witness.add_checkpoint), "127.0.0.1:0", name="witness")
    try:
        yield Setup(world, audit, provider, witness, web)
    finally:
        web.stop()
        provider.close()
        audit.stop()


def _witness_key(world: AuditWorld, server_id: str) -> spec.VerifierKey:
    return spec.VerifierKey.parse(keydocs.witness_keys(world.conf())[server_id])


def _cosigned(status: int, body: str, cp: spec.Checkpoint, key: spec.VerifierKey) -> int:
    assert status == 200, body
    lines = body.splitlines()
    assert lines and all(line.startswith("\u2014 ") for line in lines)
    name, blob = lines[0][2:].split(" ")
    return spec.verify_cosignature(cp.body, name, base64.b64decode(blob), key)


def test_a_spec_client_gets_valid_cosignatures_and_every_refusal(setup: Setup) -> None:
    url = f"{setup.web.url}/add-checkpoint"
    key = _witness_key(setup.world, PROVIDER)
    first = setup.grow()
    status, _, body = spec.add_checkpoint(url, 0, [], first.note)
    assert _cosigned(status, body, first, key) > 0  # a fresh witness: old size 0, no proof
    second = setup.grow()
    # The client does not know the witness's size: 409 tells it, as text/x.tlog.size.
    status, content_type, body = spec.add_checkpoint(url, 0, [], second.note)
    assert (status, content_type, body) == (409, "text/x.tlog.size", f"{first.size}\n")
    proof = setup.provider.consistency_proof(first.size, second.size)
    status, _, body = spec.add_checkpoint(url, first.size, proof, second.note)
    _cosigned(status, body, second, key)
    assert setup.witness.accepted is not None and setup.witness.accepted.size == second.size
    third = setup.grow()
    bad = [bytes(32)] * len(setup.provider.consistency_proof(second.size, third.size))
    assert spec.add_checkpoint(url, second.size, bad, third.note)[0] == 422
    assert spec.add_checkpoint(url, third.size + 1, [], third.note)[0] == 400  # old > size
    assert spec.add_checkpoint(url, 0, [bytes(32)], third.note)[0] in (400, 409)
    # Signed by a key the witness does not trust for this origin: 403; another origin: 404.
    origin = setup.world.conf().audit_log_origin
    stranger = note.NoteSigner(origin, ed25519.Ed25519PrivateKey.generate())
    forged = stranger.sign(note.Checkpoint(origin, third.size, third.root).to_text())
    assert spec.add_checkpoint(url, second.size, [], forged)[0] == 403
    other = note.NoteSigner("other.example/log", ed25519.Ed25519PrivateKey.generate())
    elsewhere = other.sign(note.Checkpoint(other.name, 1, bytes(32)).to_text())
    assert spec.add_checkpoint(url, 0, [], elsewhere)[0] == 404
    for garbage in (b"", b"old 01\n\n" + third.note.encode(), b"old 1\nnot base64\n\nx", b"\xff"):
        assert spec.post(url, garbage)[0] == 400
    assert setup.witness.health() is None  # none of these is evidence against the log
    # A second checkpoint of the witnessed size with another root, signed by the log: a fork.
    fork = setup.world.keys.log_signer.sign(
        note.Checkpoint(third.origin, second.size, bytes(32)).to_text()
    )
    status, content_type, _ = spec.add_checkpoint(url, second.size, [], fork)
    assert status == 409 and content_type != "text/x.tlog.size"
    assert setup.witness.health() is not None  # alarmed, evidence kept


def test_the_log_collects_cosignatures_through_tlog_witness(tmp_path: Path) -> None:
    """An external-style witness (CDX's own multi-log witness, configured only with the log's
    origin and key) and a security server's witness served over HTTP: the log pushes every new
    checkpoint to both (``cdx audit serve --witness URL=VKEY``) and stores what they cosign."""
    world = AuditWorld()
    conf = world.conf()
    external = MultiLogWitness(
        note.CosignatureSigner("witness.example/w1", ed25519.Ed25519PrivateKey.generate()),
        {conf.audit_log_origin: [note.NoteVerifier.from_key_text(conf.audit_log_key)]},
        FileWitnessState(tmp_path / "external"),
        clock=lambda: 1_900_000_000,
    )
    provider = world.client(PROVIDER)  # reaches the log at whatever address it gets below
    own = Witness(
        PROVIDER, world.servers[PROVIDER].witness_key, provider, world.conf, tmp_path / "w.json"
    )
    with (
        webserver.serve(witness_app(external.add_checkpoint), "127.0.0.1:0", name="w1") as ext,
        webserver.serve(witness_app(own.add_checkpoint), "127.0.0.1:0", name="w2") as ss,
    ):
        clients = [
            WitnessClient(ext.url, note.CosignatureVerifier.from_key_text(external.verifier_key)),
            WitnessClient(
                ss.url,
                note.CosignatureVerifier.from_key_text(keydocs.witness_keys(conf)[PROVIDER]),
            ),
        ]
        engine = db.create_engine(db.sqlite_url(tmp_path / "a.db"))
        audit = world.start(engine, checkpoint_interval=5, witnesses=clients)
        try:
            ext_key = spec.VerifierKey.parse(external.verifier_key)
            for _ in range(2):  # the second round needs a consistency proof from the first
                items = [world.item(PROVIDER, CITIZEN_A) for _ in range(3)]
                assert not any(r.error_code for r in provider.ship(items))
                size = audit.checkpointer.publish_once()
                assert size is not None
                served = _wait_for_cosignatures(provider, size.size, 2)
                body, sigs = spec.parse_note(served.note)
                assert {"witness.example/w1", keydocs.witness_name(PROVIDER)} <= dict(sigs).keys()
                spec.verify_cosignature(body, ext_key.name, dict(sigs)[ext_key.name], ext_key)
            # The security server's cosignature counts towards the quorum; the external one is
            # served but does not (that witness is not registered in global configuration).
            assert provider.checkpoint(min_cosignatures=1).size == size.size
            with pytest.raises(errors.NotFoundError):
                provider.checkpoint(min_cosignatures=2)
        finally:
            audit.stop()
            provider.close()


def _wait_for_cosignatures(client: AuditClient, size: int, count: int) -> Any:
    deadline = time.monotonic() + 20
    while True:
        served = client.checkpoint()
        if served.size == size and served.cosignatures >= count:
            return served
        assert time.monotonic() < deadline, f"{served.cosignatures} cosignatures after 20 s"
        time.sleep(0.05)
