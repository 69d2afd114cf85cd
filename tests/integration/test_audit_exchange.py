"""Real exchanges between security servers, shipped by their outboxes to a real audit log.

A whole instance on loopback (registry, three agencies, backends) plus the audit service, all
with registry-issued certificates and one signed global configuration. The security servers'
outboxes ship through ``AuditClient`` (their ``AuditShipper``), each server witnesses the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from audit import notes
from audit.client import AuditClient
from audit.server import RunningAudit
from audit.verify import Trust, verify_log
from audit.witness import Witness, witness_for_security_server
from cdx import crypto, errors, merkle
from cdx.confclient import ConfClient
from cdx.v1 import audit_pb2
from security_server.backends.sample import CITIZENS
from security_server.server import PluginContext
from tests.conftest import database
from tests.integration.exchange_harness import HARNESS, ExchangeInstance, build_instance
from tests.waiting import eventually

ANNE, BINH = CITIZENS[0], CITIZENS[1]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"


@dataclass
class Env:
    instance: ExchangeInstance
    inspector: AuditClient
    portal: AuditClient
    witnesses: dict[str, Witness] = field(default_factory=dict)

    @property
    def audit(self) -> RunningAudit:
        audit = self.instance.stack.audit
        assert audit is not None
        return audit

    @property
    def conf_client(self) -> ConfClient:
        """The audit log's global-configuration client."""
        return self.instance.stack.component_confs["audit"]

    def start_audit(self) -> RunningAudit:
        return self.instance.stack.start_audit()

    def wait_logged(self, record_ids: list[str], timeout: float = 15.0) -> None:
        eventually(
            lambda: all(self.audit.store.find_record(r) is not None for r in record_ids),
            timeout=timeout,
            what=f"{len(record_ids)} record(s) in the log",
        )

    def checkpoint_covering(self, size: int, timeout: float = 10.0) -> audit_pb2.Checkpoint:
        def served() -> audit_pb2.Checkpoint | None:
            checkpoint = self.inspector.checkpoint()
            return checkpoint if checkpoint.size >= size else None

        return eventually(served, timeout=timeout, what="a checkpoint covering the entries")

    def trust(self) -> Trust:
        return Trust.from_conf(self.conf_client.current())

    def token(self, subject: str) -> str:
        return self.instance.stack.token(subject)


@contextlib.contextmanager
def audit_exchange_env(root: Path, backend: str) -> Iterator[Env]:
    """The instance with its audit log (witness quorum 2) on ``backend``; the security servers
    ship to it (the shipper ``cdx security-server serve`` builds) and each has a witness, polled
    by the tests."""
    with database(backend, "t_audit_ex") as (url, schema):
        instance = build_instance(
            root,
            start=False,
            options=replace(HARNESS, audit=True, audit_database=(url, schema) if url else None),
            witness_quorum=2,
        )
        stack = instance.stack
        inspector_dir = stack.layout.inspector_dir
        env = Env(
            instance,
            AuditClient(
                lambda: stack.layout.audit,
                stack.identity(inspector_dir / "inspector.pem", inspector_dir / "inspector.key"),
            ),
            AuditClient(lambda: stack.layout.audit, stack.service_identity("portal")),
        )
        try:
            for agency in instance.agencies.values():
                running = agency.start()
                env.witnesses[agency.key] = witness_for_security_server(
                    PluginContext(
                        agency.server_id,
                        running.config,
                        running.keys.tls,
                        running.conf_client,
                        running.keys,
                        agency.clock,
                    )
                )
            yield env
        finally:
            env.inspector.close()
            env.portal.close()
            instance.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with audit_exchange_env(tmp_path_factory.mktemp("audit-exchange"), request.param) as e:
        yield e


def test_records_of_a_real_exchange_reach_the_log_and_verify(env: Env) -> None:
    social, population = env.instance.agency("social"), env.instance.agency("population")
    response = social.query(population.service, ANNE.id, BENEFIT)
    env.wait_logged([response.record_id, response.provider_record_id])
    size = env.audit.store.tree_state().size
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
    assert env.audit.store.find_record(record.record_id).decision == 2


def test_a_citizen_sees_the_exchange_with_proofs_and_nobody_elses(env: Env) -> None:
    social, population = env.instance.agency("social"), env.instance.agency("population")
    anne = social.query(population.service, ANNE.id, BENEFIT)
    binh = social.query(population.service, BINH.id, BENEFIT)
    env.wait_logged(
        [anne.record_id, anne.provider_record_id, binh.record_id, binh.provider_record_id]
    )
    env.checkpoint_covering(env.audit.store.tree_state().size)
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
    env.checkpoint_covering(env.audit.store.tree_state().size)
    ids = {e.record.record_id for e in env.portal.citizen_history(env.token(ANNE.id), 500).entries}
    assert response.record_id not in ids and response.provider_record_id not in ids
    env.inspector.unseal(response.provider_record_id, "covert check reviewed")
    env.checkpoint_covering(env.audit.store.tree_state().size)
    ids = {e.record.record_id for e in env.portal.citizen_history(env.token(ANNE.id), 500).entries}
    assert response.provider_record_id in ids


def test_every_security_server_witnesses_the_log(env: Env) -> None:
    social, population = env.instance.agency("social"), env.instance.agency("population")
    social.query(population.service, ANNE.id, BENEFIT)
    # The checkpointer publishes on its interval (later on a loaded machine).
    eventually(env.inspector.checkpoint, retry_on=(errors.NotFoundError,), what="a checkpoint")
    for witness in env.witnesses.values():
        witness.poll_once()
        assert witness.health() is None
    served = env.inspector.checkpoint(min_cosignatures=3)
    assert served.cosignatures == 3
    report = verify_log(env.inspector, env.trust(), require_quorum=True)
    assert report.ok and len(report.cosigned_by) == 3


def test_the_audit_log_down_for_a_while_loses_no_record(tmp_path: Path, db_backend: str) -> None:
    with audit_exchange_env(tmp_path, db_backend) as env:  # its own: the log goes down
        social, population = env.instance.agency("social"), env.instance.agency("population")
        tax = env.instance.agency("tax")
        env.audit.stop()
        failures = {a.key: a.running.outbox.ship_failures for a in (social, population)}
        answered = [social.query(population.service, c.id, BENEFIT) for c in CITIZENS[:3]]
        answered.append(tax.query(population.service, ANNE.id, "TAX_ASSESSMENT"))
        # The outboxes try, fail, and keep their records.
        eventually(
            lambda: all(
                a.running.outbox.ship_failures > failures[a.key] for a in (social, population)
            ),
            what="a failed shipment at both servers",
        )
        assert social.running.outbox.depth() >= 3
        assert population.running.outbox.depth() >= 4
        env.start_audit()
        ids = [r for a in answered for r in (a.record_id, a.provider_record_id)]
        env.wait_logged(ids, timeout=30)
        eventually(
            lambda: not any(a.running.outbox.depth() for a in (social, population, tax)),
            what="every outbox drained",
        )
        env.checkpoint_covering(env.audit.store.tree_state().size)
        report = verify_log(env.inspector, env.trust())
        assert report.ok, [str(f) for f in report.errors]
