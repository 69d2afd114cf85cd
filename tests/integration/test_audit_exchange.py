"""Real exchanges between security servers, shipped by their outboxes to a real audit log.

A whole instance on loopback (registry, three agencies, backends) plus the audit service, all
with registry-issued certificates and one signed global configuration. The security servers'
outboxes ship through ``AuditClient`` (their ``AuditShipper``), each server witnesses the log.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.engine import Engine

from audit import notes
from audit.client import AuditClient
from audit.server import AuditKeys, RunningAudit, start_audit_service
from audit.verify import Trust, verify_log
from audit.witness import Witness, witness_for_security_server
from cdx import crypto, db, merkle, pki, rpc, tokens
from cdx.clock import utcnow
from cdx.confclient import ConfClient
from cdx.globalconf import IdentityProviderInfo
from cdx.note import NoteSigner
from cdx.v1 import audit_pb2
from security_server import keystore
from security_server.backends.sample import CITIZENS
from tests.conftest import postgres_url
from tests.integration.exchange_harness import ADMIN, ExchangeInstance, build_instance, free_port

ANNE, BINH = CITIZENS[0], CITIZENS[1]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"
ORIGIN = "cdx.test/audit"
ISSUER = "https://idp.test"


def _identity(instance: ExchangeInstance, kind: str, name: str, **kw: object) -> rpc.TlsIdentity:
    key = crypto.generate_signing_key()
    issued = instance.registry_service.issue_client_certificate(
        pki.build_csr(key, name), kind, name, ADMIN, **kw
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return rpc.TlsIdentity(issued.cert_pem, pem, instance.agency("social").client_identity.ca_pem)


@dataclass
class Env:
    instance: ExchangeInstance
    keys: AuditKeys
    tls: rpc.TlsIdentity
    conf_client: ConfClient
    address: str
    make_engine: Callable[[], Engine]
    idp_key: ed25519.Ed25519PrivateKey
    inspector: AuditClient
    portal: AuditClient
    audit: RunningAudit | None = None
    witnesses: dict[str, Witness] = field(default_factory=dict)

    def start_audit(self) -> RunningAudit:
        self.audit = start_audit_service(
            self.make_engine(),
            self.tls,
            log_signer=self.keys.log_signer,
            record_signer=self.keys.record_signer,
            master_key=self.keys.master_key,
            conf=self.conf_client.current,
            address=self.address,
            checkpoint_interval=1.0,
        )
        return self.audit

    def wait_logged(self, record_ids: list[str], timeout: float = 15.0) -> None:
        assert self.audit is not None
        deadline = time.monotonic() + timeout
        missing = list(record_ids)
        while missing:
            missing = [r for r in missing if self.audit.store.find_record(r) is None]
            if missing:
                assert time.monotonic() < deadline, (
                    f"{len(missing)} record(s) never reached the log"
                )
                time.sleep(0.05)

    def checkpoint_covering(self, size: int, timeout: float = 10.0) -> audit_pb2.Checkpoint:
        deadline = time.monotonic() + timeout
        while True:
            served = self.inspector.checkpoint()
            if served.size >= size:
                return served
            assert time.monotonic() < deadline, "no checkpoint covers the logged entries"
            time.sleep(0.1)

    def trust(self) -> Trust:
        return Trust.from_conf(self.conf_client.current())

    def token(self, subject: str, role: str = "citizen") -> str:
        return tokens.issue_token(
            self.idp_key,
            ISSUER,
            subject,
            role,
            tokens.citizen_audience("VN"),
            utcnow(),
            timedelta(minutes=10),  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if request.param == "postgres" and not postgres_url():
        pytest.skip("PostgreSQL not configured: set CDX_TEST_POSTGRES_URL")
    root: Path = tmp_path_factory.mktemp("audit-exchange")
    instance = build_instance(root, start=False)
    service = instance.registry_service
    keys = AuditKeys(
        log_signer=NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate()),
        record_signer=crypto.KeySigner(crypto.generate_signing_key()),
        master_key=crypto.generate_hpke_key(),
    )
    idp_key = ed25519.Ed25519PrivateKey.generate()
    address = f"127.0.0.1:{free_port()}"
    service.set_trust_anchors(
        audit_log_origin=ORIGIN,
        audit_log_key=keys.log_verifier_key,
        audit_log_address=address,
        audit_service_key_der=keys.record_public_der,
        identity_providers=[
            IdentityProviderInfo(ISSUER, crypto.public_key_to_der(idp_key.public_key()), True, "")
        ],
        witness_quorum=2,
        actor=ADMIN,
    )
    tls = _identity(instance, "service", "audit", ip_addresses=["127.0.0.1"])
    anchor = keystore.load_keys(
        instance.agency("social").data_dir,
        instance.agency("social").server_id,
        (root / "passphrase").read_bytes().strip(),
    ).anchor
    conf_client = ConfClient(
        instance.registry.address,
        tls,
        anchor,
        root / "audit-globalconf.bin",
        poll_interval=timedelta(seconds=1),
    )
    conf_client.refresh()
    conf_client.start()
    schema = None
    if request.param == "sqlite":
        url = db.sqlite_url(root / "audit.db")
    else:
        url, schema = str(postgres_url()), f"t_audit_ex_{uuid.uuid4().hex[:10]}"
    migrated: list[bool] = []

    def make_engine() -> Engine:
        engine = db.create_engine(url, schema=schema)
        migrated.append(True)
        return engine

    passphrase = (root / "passphrase").read_bytes().strip()
    server_keys = {
        a.key: keystore.load_keys(a.data_dir, a.server_id, passphrase)
        for a in instance.agencies.values()
    }
    for agency in instance.agencies.values():
        # The shipper cli.serve builds: the audit address from global configuration.
        agency.audit_shipper = AuditClient(
            lambda: conf_client.current().audit_log_address, server_keys[agency.key].tls
        )
    e = Env(
        instance,
        keys,
        tls,
        conf_client,
        address,
        make_engine,
        idp_key,
        AuditClient(address, _identity(instance, "inspector", "dpa-alice")),
        AuditClient(address, _identity(instance, "service", "portal")),
    )
    e.start_audit()
    for agency in instance.agencies.values():
        agency.start()
        running = agency.running
        e.witnesses[agency.key] = witness_for_security_server(
            SimpleNamespace(
                server_id=agency.server_id,
                keys=running.keys,
                tls=running.keys.tls,
                conf_client=running.conf_client,
                config=running.config,
                now_fn=agency.clock,
            )
        )
    try:
        yield e
    finally:
        e.inspector.close()
        e.portal.close()
        if e.audit is not None:
            e.audit.stop()
        instance.close()
        conf_client.stop()
        if schema:
            db.drop_schema(str(postgres_url()), schema)


def test_records_of_a_real_exchange_reach_the_log_and_verify(env: Env) -> None:
    social, population = env.instance.agency("social"), env.instance.agency("population")
    response = social.query(population.service, ANNE.id, BENEFIT)
    env.wait_logged([response.record_id, response.provider_record_id])
    size = env.audit.store.tree_state().size  # type: ignore[union-attr]
    env.checkpoint_covering(size)
    found = env.inspector.search(audit_pb2.SearchRequest(message_id=response.message_id))
    roles = sorted((h.record.recorder, h.record.role) for h in found.hits)
    assert roles == sorted([(social.server_id, 1), (population.server_id, 2)])
    assert social.running.outbox.depth() == 0 and population.running.outbox.depth() == 0
    report = verify_log(env.inspector, env.trust())
    assert report.ok, [str(f) for f in report.errors]
    assert report.messages_paired >= 1


def test_denied_requests_are_logged_too(env: Env) -> None:
    population, tax = env.instance.agency("population"), env.instance.agency("tax")
    mark = population.mark()
    with pytest.raises(Exception):
        population.query(tax.service, ANNE.id, "TAX_ASSESSMENT")
    (record,) = population.records_since(mark)
    env.wait_logged([record.record_id])
    assert env.audit.store.find_record(record.record_id).decision == 2  # type: ignore[union-attr]


def test_a_citizen_sees_the_exchange_with_proofs_and_nobody_elses(env: Env) -> None:
    social, population = env.instance.agency("social"), env.instance.agency("population")
    anne = social.query(population.service, ANNE.id, BENEFIT)
    binh = social.query(population.service, BINH.id, BENEFIT)
    env.wait_logged(
        [anne.record_id, anne.provider_record_id, binh.record_id, binh.provider_record_id]
    )
    env.checkpoint_covering(env.audit.store.tree_state().size)  # type: ignore[union-attr]
    history = env.portal.citizen_history(env.token(ANNE.id))
    conf = env.conf_client.current()
    opened = notes.open_log_checkpoint(
        history.checkpoint.note, notes.log_verifier(conf.audit_log_key), conf.audit_log_origin
    )
    ids = {e.record.record_id for e in history.entries}
    assert {anne.record_id, anne.provider_record_id} <= ids
    assert not {binh.record_id, binh.provider_record_id} & ids
    for e in history.entries:
        leaf = merkle.leaf_hash(e.entry.record.SerializeToString(deterministic=True))
        merkle.verify_inclusion(leaf, e.entry.index, opened.size, list(e.proof.hashes), opened.root)
        assert e.opening.subject == ANNE.id
        assert (
            crypto.commitment(e.opening.subject_salt, ANNE.id.encode())
            == e.record.subject_commitment
        )


def test_sealed_queries_reach_the_log_hidden_from_the_citizen(env: Env) -> None:
    population, social = env.instance.agency("population"), env.instance.agency("social")
    response = population.query(
        social.service, ANNE.id, "IDENTITY_VERIFICATION"
    )  # sealed agreement
    env.wait_logged([response.record_id, response.provider_record_id])
    env.checkpoint_covering(env.audit.store.tree_state().size)  # type: ignore[union-attr]
    ids = {e.record.record_id for e in env.portal.citizen_history(env.token(ANNE.id), 500).entries}
    assert response.record_id not in ids and response.provider_record_id not in ids
    env.inspector.unseal(response.provider_record_id, "covert check reviewed")
    env.checkpoint_covering(env.audit.store.tree_state().size)  # type: ignore[union-attr]
    ids = {e.record.record_id for e in env.portal.citizen_history(env.token(ANNE.id), 500).entries}
    assert response.provider_record_id in ids


def test_every_security_server_witnesses_the_log(env: Env) -> None:
    social, population = env.instance.agency("social"), env.instance.agency("population")
    social.query(population.service, ANNE.id, BENEFIT)
    for witness in env.witnesses.values():
        witness.poll_once()
        assert witness.health() is None
    served = env.inspector.checkpoint(min_cosignatures=3)
    assert served.cosignatures == 3
    report = verify_log(env.inspector, env.trust(), require_quorum=True)
    assert report.ok and len(report.cosigned_by) == 3


def test_the_audit_log_down_for_a_while_loses_no_record(env: Env) -> None:
    social, population = env.instance.agency("social"), env.instance.agency("population")
    tax = env.instance.agency("tax")
    assert env.audit is not None
    env.audit.stop()
    answered = [social.query(population.service, c.id, BENEFIT) for c in CITIZENS[:3]]
    answered.append(tax.query(population.service, ANNE.id, "TAX_ASSESSMENT"))
    time.sleep(0.5)  # the outboxes try, fail, and keep their records
    assert social.running.outbox.depth() >= 3
    assert population.running.outbox.depth() >= 4
    env.start_audit()
    ids = [r for a in answered for r in (a.record_id, a.provider_record_id)]
    env.wait_logged(ids, timeout=30)
    deadline = time.monotonic() + 15
    while any(a.running.outbox.depth() for a in (social, population, tax)):
        assert time.monotonic() < deadline, "an outbox did not drain"
        time.sleep(0.1)
    env.checkpoint_covering(env.audit.store.tree_state().size)  # type: ignore[union-attr]
    report = verify_log(env.inspector, env.trust())
    assert report.ok, [str(f) for f in report.errors]
