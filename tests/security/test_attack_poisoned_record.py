"""One poisoned record must not stop an agency (issue: a request whose subject is no citizen id).

A registered peer sends one correctly signed request whose encrypted subject is not a national
id (``"abc"``). The provider used to record the denial with that subject in the record's
opening; the audit log refused the record for good (``verification_failed``), the outbox
retried it forever, and once the backlog window passed the provider refused every exchange,
as provider and as consumer.

Two defences, each tested here against real servers and a real audit log:

1. a record never holds a value that did not validate: the denial carries no subject, the log
   takes it, and traffic flows past the window;
2. should a record the log refuses for good exist anyway (a defect, or one made before this
   fix), the outbox moves it to the dead letters, raises the alarm (``/healthz`` degraded,
   ``cdx_outbox_depth{queue="dead_letter"}``, ``cdx security-server outbox dead-letters``) and
   keeps shipping the rest; an operator can re-queue it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from cdx import crypto, errors, health, telemetry
from cdx.cli import main
from cdx.globalconf import to_ms
from cdx.v1 import audit_pb2, common_pb2
from security_server.backends.sample import CITIZENS
from security_server.config import dump_config
from security_server.records import new_id, sign_item
from tests.faults.audit_log import AuditLog, attach_audit_log
from tests.integration.exchange_harness import Agency, ExchangeInstance, build_instance

pytestmark = pytest.mark.xdist_group("attack-poisoned-record")

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"
IDENTITY = "IDENTITY_VERIFICATION"
WINDOW_S = 2.0
#: Not a national id, and no substring of a UUID (so a listing cannot show it by chance).
NOT_A_CITIZEN = "NOT-A-CITIZEN-ID"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ExchangeInstance, AuditLog]]:
    """Three agencies shipping to a real audit log, with a ``WINDOW_S`` backlog window."""
    instance = build_instance(
        tmp_path,
        start=False,
        configure=lambda key, config: dataclasses.replace(
            config, outbox_window_s=WINDOW_S, dependency_probe_s=0.5
        ),
    )
    log = attach_audit_log(instance, tmp_path)
    try:
        log.start()
        for agency in instance.agencies.values():
            agency.start()
        yield instance, log
    finally:
        instance.close()
        log.close()


def _past_the_window(instance: ExchangeInstance) -> None:
    """Every server's clock moves on by three windows (the same amount, so messages between
    them stay fresh): anything the log never took is now older than the window."""
    for agency in instance.agencies.values():
        agency.clock.offset += timedelta(seconds=3 * WINDOW_S)


def _traffic_flows(instance: ExchangeInstance) -> None:
    """The attacked agency still answers as provider, and still asks as consumer."""
    social, population = instance.agency("social"), instance.agency("population")
    answer = social.query(population.service, ANNE.id, BENEFIT)
    assert set(answer.released_fields) == {"full_name", "birth_date", "gender"}
    asked = population.query(social.service, ANNE.id, IDENTITY)
    assert list(asked.released_fields) == ["status"]


def _wait(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_request_naming_no_citizen_cannot_stop_the_agency(
    world: tuple[ExchangeInstance, AuditLog],
) -> None:
    instance, log = world
    population = instance.agency("population")
    forger = instance.forger("social")
    try:
        mark = population.mark()
        sealed = forger.build("population", subject="abc")
        with pytest.raises(errors.InvalidCitizenIdError):
            forger.send("population", sealed.envelope)
    finally:
        forger.close()
    (denial,) = population.records_since(mark)
    assert (denial.decision, denial.reason_code) == (common_pb2.DENY, "invalid_citizen_id")
    # The record holds no commitment to (and its opening no copy of) the non-id subject.
    assert not denial.subject_commitment and not denial.request_commitment
    log.wait_logged([denial.record_id])  # the log took it: nothing is stuck
    assert population.running.outbox.dead_letter_count() == 0

    _past_the_window(instance)
    _traffic_flows(instance)
    assert population.running.health_problem is None


def _poison(agency: Agency) -> str:
    """Store a denial whose opening names a subject that is no national id, signed by the
    agency's own key — what the provider made before this fix; the log refuses it for good."""
    running = agency.running
    salt = crypto.new_salt()
    rid = new_id()
    record = audit_pb2.AccessRecord(
        record_id=rid,
        message_id=new_id(),
        time_ms=to_ms(agency.clock()),
        recorder=agency.server_id,
        role=common_pb2.PROVIDER,
        client="VN:GOV:VSS:benefits",
        service=agency.service,
        purpose=BENEFIT,
        decision=common_pb2.DENY,
        reason_code="invalid_citizen_id",
        subject_commitment=crypto.commitment(salt, NOT_A_CITIZEN.encode()),
        kind="access",
    )
    opening = audit_pb2.RecordOpening(record_id=rid, subject=NOT_A_CITIZEN, subject_salt=salt)
    running.outbox.record(sign_item(record, opening, running.keys.signer), agency.clock())
    return rid


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def test_a_record_the_log_refuses_for_good_is_a_visible_dead_letter_and_traffic_flows(
    world: tuple[ExchangeInstance, AuditLog],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance, log = world
    population = instance.agency("population")
    outbox = population.running.outbox
    rid = _poison(population)
    _wait(lambda: outbox.dead_letter_count() == 1, "the dead letter")
    (dead,) = outbox.dead_letters()
    assert (dead.record_id, dead.code, dead.released) == (rid, "verification_failed", False)

    _past_the_window(instance)
    _traffic_flows(instance)
    _wait(lambda: outbox.depth() == 0, "the rest of the outbox to ship")
    assert population.running.health_problem is None

    # The operator sees it: the CLI (record id, code, decision; never the subject) ...
    config_file = tmp_path / "population.toml"
    config_file.write_text(dump_config(population.config))
    capsys.readouterr()
    assert main(["security-server", "outbox", "dead-letters", "--config", str(config_file)]) == 0
    listing = capsys.readouterr().out
    (line,) = [row for row in listing.splitlines() if rid in row]
    assert "verification_failed" in line and "deny" in line
    assert NOT_A_CITIZEN not in listing

    # ... /healthz (degraded, still ready) and the metric.
    telemetry.configure(component="security-server", prometheus=True)
    remove = population.running.health.observe()
    endpoint = health.HealthEndpoint(
        "127.0.0.1:0", population.running.health.checks(), clock=population.clock
    )
    try:
        status, body = _get(endpoint.url + "/healthz")
        report = json.loads(body)
        assert (status, report["status"]) == (200, "degraded"), report
        assert report["checks"][f"{population.server_id} outbox dead letters"] == "dead_letters"
        assert report["checks"][f"{population.server_id} outbox"] == "ok"
        metrics = _get(endpoint.url + "/metrics")[1].decode()
        wanted = f'cdx_outbox_depth{{queue="dead_letter",server="{population.server_id}"}} 1.0'
        assert wanted in metrics, [m for m in metrics.splitlines() if "outbox_depth" in m]
    finally:
        endpoint.stop()
        remove()
        telemetry.reset()

    # Re-queued, the log refuses it again: a dead letter again, the history keeps both.
    assert main(["security-server", "outbox", "requeue", rid, "--config", str(config_file)]) == 0
    _wait(lambda: len(outbox.dead_letters(include_requeued=True)) == 2, "the second refusal")
    assert [d.record_id for d in outbox.dead_letters()] == [rid]
    assert rid not in log.logged_record_ids()
