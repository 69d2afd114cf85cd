"""``cdx requests`` (an agency works its queue), ``cdx audit requests`` (the inspectors' overdue
list and complaints) and ``cdx audit bundle verify`` (a citizen's access bundle, offline, with
the keys the log publishes) against a whole instance on its data directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cdx import crypto, keydocs, note
from cdx.clock import utcnow
from cdx.v1 import consent_pb2
from tests.cdx_command import run_cdx
from tests.e2e.portal_env import CITIZEN_A, PortalEnv, play_demo_scenario, start_portal_env
from tests.integration.consent_env import SOCIAL_SUBSYSTEM, bearer, fresh_citizen
from tests.integration.requests_env import (
    TAX_SUBSYSTEM,
    access_evidence,
    citizen_requests,
    file_request,
    my_request,
)
from tests.waiting import eventually


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalEnv]:
    penv = start_portal_env(tmp_path_factory.mktemp("requests-cli"))
    try:
        play_demo_scenario(penv)
        yield penv
    finally:
        penv.close()


def data_of(penv: PortalEnv) -> list[str]:
    return ["--data", str(penv.consent_env.instance.root)]


def test_an_agency_answers_an_objection_from_the_command_line(world: PortalEnv) -> None:
    env = world.consent_env
    citizen = fresh_citizen()
    filed = file_request(env, citizen, details="Please stop.")
    agency = ["--agency", SOCIAL_SUBSYSTEM, *data_of(world)]

    listed = run_cdx(["requests", "list", *agency, "--json"])
    assert listed.rc == 0, listed.err
    (queued,) = [r for r in json.loads(listed.out) if r["id"] == filed.id]
    assert queued["subject"] == citizen and queued["kind"] == "objection"
    assert queued["state"] == "RECEIVED" and queued["steps"][0]["text"] == "Please stop."

    assert run_cdx(["requests", "acknowledge", filed.id, *agency]).rc == 0
    missing = run_cdx(["requests", "complete", filed.id, *agency])
    assert missing.rc == 2 and "--answer" in missing.err
    done = run_cdx(["requests", "complete", filed.id, "--answer", "Stopped today.", *agency])
    assert done.rc == 0 and "COMPLETED" in done.out
    shown = run_cdx(["requests", "show", filed.id, *agency])
    assert shown.rc == 0 and "Stopped today." in shown.out and "completed" in shown.out

    seen = my_request(env, citizen, filed.id)
    assert seen.state == consent_pb2.REQUEST_COMPLETED and seen.closed_at_ms < seen.complete_by_ms
    assert seen.steps[-1].text == "Stopped today."

    # Another agency's subsystem certificate gets nothing.
    other = run_cdx(["requests", "show", filed.id, "--agency", TAX_SUBSYSTEM, *data_of(world)])
    assert other.rc == 2 and "not_found" in other.err


def test_an_inspector_lists_overdue_requests_and_answers_a_complaint(world: PortalEnv) -> None:
    env = world.consent_env
    citizen = fresh_citizen()
    week_ago = timedelta(days=-7)
    env.clock.offset = week_ago  # the consent service's injected clock
    try:
        late = file_request(env, citizen, token=env.token(citizen, now=utcnow() + week_ago))
    finally:
        env.clock.offset = timedelta(0)
    complaint = file_request(
        env,
        citizen,
        consent_pb2.REQUEST_COMPLAINT,
        addressee="",
        purpose="",
        details="The agency ignored my objection.",
    )
    overdue = run_cdx(["audit", "requests", "overdue", "--json", *data_of(world)])
    assert overdue.rc == 0, overdue.err
    (row,) = [r for r in json.loads(overdue.out) if r["id"] == late.id]
    assert row["overdue"] == "acknowledgement" and row["subject"] is None
    assert row["addressee"] == SOCIAL_SUBSYSTEM
    table = run_cdx(["audit", "requests", "overdue", *data_of(world)])
    assert late.id in table.out and citizen not in table.out

    listed = run_cdx(["audit", "requests", "complaints", "--json", *data_of(world)])
    assert complaint.id in {r["id"] for r in json.loads(listed.out)}
    shown = run_cdx(["audit", "requests", "show", complaint.id, *data_of(world)])
    assert "The agency ignored my objection." in shown.out and citizen in shown.out
    assert run_cdx(["audit", "requests", "acknowledge", complaint.id, *data_of(world)]).rc == 0
    done = run_cdx(
        ["audit", "requests", "complete", complaint.id, "--answer", "We wrote to the agency.",
         *data_of(world)]
    )  # fmt: skip
    assert done.rc == 0 and "COMPLETED" in done.out
    assert my_request(env, citizen, complaint.id).steps[-1].actor == "inspector:inspector"


def _bundle(penv: PortalEnv) -> bytes:
    env = penv.consent_env
    eventually(
        lambda: len(access_evidence(env, CITIZEN_A, "-").entries) >= 4,
        timeout=60,
        what="the scenario's accesses in a cosigned checkpoint",
    )
    access = file_request(env, CITIZEN_A, consent_pb2.REQUEST_ACCESS, addressee="", purpose="")
    response = citizen_requests(env).CompleteAccess(
        access_evidence(env, CITIZEN_A, access.id),
        metadata=bearer(env.token(CITIZEN_A)),
        timeout=30,
    )
    return bytes(response.bundle)


def test_the_access_bundle_verifies_offline_and_a_tampered_one_fails(
    world: PortalEnv, tmp_path: Path
) -> None:
    conf = world.consent_env.conf_client.current()
    for path, (body, _) in keydocs.documents(conf).items():
        (tmp_path / Path(path).name).write_bytes(body)
    (tmp_path / "consent.pem").write_bytes(
        crypto.public_key_to_pem(crypto.public_key_from_der(conf.consent_service_key_der))
    )
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(_bundle(world))
    keys = [
        "--log-key", f"@{tmp_path / 'log.vkey'}",
        "--witness-keys", str(tmp_path / "witnesses.vkeys"),
        "--quorum", "2",
    ]  # fmt: skip

    ok = run_cdx(
        [
            "audit",
            "bundle",
            "verify",
            str(bundle),
            *keys,
            "--jwks",
            str(tmp_path / "jwks.json"),
            "--list",
        ]
    )
    assert ok.rc == 0, ok.err
    assert ok.out.startswith("VALID: access bundle of request")
    assert "access" in ok.out and "consent_event" in ok.out and "cosigned by" in ok.out
    pem = run_cdx(
        [
            "audit",
            "bundle",
            "verify",
            str(bundle),
            *keys,
            "--consent-key",
            str(tmp_path / "consent.pem"),
        ]
    )
    assert pem.rc == 0, pem.err

    document = json.loads(bundle.read_bytes())
    document["bundle"]["entries"].pop()  # hide one entry, keep the signature
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    bad = run_cdx(
        ["audit", "bundle", "verify", str(tampered), *keys, "--jwks", str(tmp_path / "jwks.json")]
    )
    assert bad.rc == 1 and bad.err.startswith("INVALID: invalid_signature")

    stricter = [*keys[:-1], "4"]
    quorum = run_cdx(
        ["audit", "bundle", "verify", str(bundle), *stricter, "--jwks", str(tmp_path / "jwks.json")]
    )
    assert quorum.rc == 1 and "cosignatures" in quorum.err
    # A log key of the same name that is not the log's: the checkpoint does not verify.
    impostor = note.NoteSigner(conf.audit_log_origin, Ed25519PrivateKey.generate())
    other_log = run_cdx(
        ["audit", "bundle", "verify", str(bundle), "--log-key", impostor.verifier().key_text(),
         "--jwks", str(tmp_path / "jwks.json")]
    )  # fmt: skip
    assert other_log.rc == 1 and other_log.err.startswith("INVALID: invalid_note_signature")
