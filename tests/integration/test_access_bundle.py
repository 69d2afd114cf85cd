"""Access requests over a whole instance: the citizen's history (accesses, consent events, the
steps of their requests), proven by the cosigned log, goes into a bundle the consent service
signs; ``audit.bundles.verify_bundle`` checks it with nothing but the keys, and refuses every
kind of tampering — also when the tampered body is signed again with the consent key itself.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit import bundles
from cdx import crypto, errors
from cdx.v1 import audit_pb2, consent_pb2
from tests.e2e.portal_env import (
    CITIZEN_A,
    CITIZEN_B,
    PortalEnv,
    Scenario,
    play_demo_scenario,
    start_portal_env,
)
from tests.integration.consent_env import SOCIAL, bearer
from tests.integration.requests_env import (
    access_evidence,
    agency_act,
    citizen_requests,
    file_request,
    my_request,
)
from tests.waiting import eventually


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PortalEnv, Scenario]]:
    penv = start_portal_env(tmp_path_factory.mktemp("access-bundle"))
    try:
        yield penv, play_demo_scenario(penv)
    finally:
        penv.close()


def proven_kinds(penv: PortalEnv, citizen: str) -> dict[str, int]:
    evidence = access_evidence(penv.consent_env, citizen, "-")
    kinds: dict[str, int] = {}
    for e in evidence.entries:
        signed = audit_pb2.SignedAccessRecord.FromString(e.leaf)
        kind = audit_pb2.AccessRecord.FromString(signed.record).kind or "access"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


@pytest.fixture(scope="module")
def bundle(world: tuple[PortalEnv, Scenario]) -> bytes:
    """CITIZEN_A's bundle, once the scenario's accesses and consent events and the steps of an
    objection are all in a cosigned checkpoint."""
    penv, _ = world
    env = penv.consent_env
    objection = file_request(env, CITIZEN_A, details="Không dùng dữ liệu thu nhập của tôi.")
    agency_act(env, SOCIAL, objection.id, consent_pb2.REQUEST_ACKNOWLEDGE)

    def all_proven() -> bool:
        kinds = proven_kinds(penv, CITIZEN_A)
        return (
            kinds.get("access", 0) >= 4
            and kinds.get("consent_event", 0) >= 3
            and kinds.get("subject_request", 0) >= 2
        )

    eventually(all_proven, timeout=60, what="the citizen's entries in a cosigned checkpoint")
    access = file_request(
        env, CITIZEN_A, consent_pb2.REQUEST_ACCESS, addressee="", purpose="", details=""
    )
    response = citizen_requests(env).CompleteAccess(
        access_evidence(env, CITIZEN_A, access.id),
        metadata=bearer(env.token(CITIZEN_A)),
        timeout=30,
    )
    assert response.request_id == access.id
    return bytes(response.bundle)


def trust_and_key(penv: PortalEnv) -> tuple[Any, crypto.PublicSigningKey]:
    conf = penv.consent_env.conf_client.current()
    key = crypto.as_signing_public_key(crypto.public_key_from_der(conf.consent_service_key_der))
    return bundles.trust_of(conf), key


def test_the_bundle_proves_the_citizens_history_and_completes_the_request(
    world: tuple[PortalEnv, Scenario], bundle: bytes
) -> None:
    penv, _ = world
    env = penv.consent_env
    trust, key = trust_and_key(penv)
    assert trust.quorum == 2
    found = bundles.verify_bundle(bundle, trust, key)
    assert found.subject == CITIZEN_A
    assert found.entries_by_kind["access"] >= 4
    assert found.entries_by_kind["consent_event"] >= 3
    assert found.entries_by_kind["subject_request"] >= 2
    assert len(found.cosigned_by) >= 2
    assert found.consents == 2  # the approved consent and the pending request
    assert found.requests == 2 and found.steps_in_log >= 2

    # The request is completed by the consent service, with the bundle's digest as its answer.
    body = json.loads(bundle)["bundle"]
    done = my_request(env, CITIZEN_A, found.request_id)
    assert done.state == consent_pb2.REQUEST_COMPLETED
    assert [s.action for s in done.steps] == ["received", "acknowledged", "completed"]
    digest = hashlib.sha256(bundles.canonical_json(body)).hexdigest()
    assert done.steps[-1].text == f"access bundle sha256:{digest}" and done.bundle_ready
    again = citizen_requests(env).GetAccessBundle(
        consent_pb2.SubjectRequestId(request_id=found.request_id),
        metadata=bearer(env.token(CITIZEN_A)),
        timeout=10,
    )
    assert again.bundle == bundle

    # What is in it: the citizen's words of the objection, the signed artefacts, no one else.
    texts = [s["text"] for r in body["requests"] for s in r["events"]]
    assert "Không dùng dữ liệu thu nhập của tôi." in texts
    assert all(c["terms"]["sub"] == CITIZEN_A for c in body["consents"])
    assert CITIZEN_B not in bundle.decode()


def _resigned(
    penv: PortalEnv, change: Callable[[dict[str, Any]], None]
) -> Callable[[bytes], bytes]:
    def tamper(bundle: bytes) -> bytes:
        body = copy.deepcopy(json.loads(bundle)["bundle"])
        change(body)
        return bundles.signed_file(body, crypto.KeySigner(penv.consent_env.signing_key))

    return tamper


def _first_step_with_text(body: dict[str, Any]) -> dict[str, Any]:
    return next(s for r in body["requests"] for s in r["events"] if s["text"])


def _flip_receipt_index(body: dict[str, Any]) -> None:
    entry = body["entries"][0]
    head, _, rest = entry["receipt"].partition("\nindex ")
    number, _, tail = rest.partition("\n")
    entry["receipt"] = f"{head}\nindex {int(number) + 1}\n{tail}"


def _swap_subject_salts(body: dict[str, Any]) -> None:
    a, b = body["entries"][0], body["entries"][1]
    a["subject_salt"], b["subject_salt"] = b["subject_salt"], a["subject_salt"]


def _grow_checkpoint(body: dict[str, Any]) -> None:
    lines = body["log"]["checkpoint"].split("\n")
    lines[1] = str(int(lines[1]) + 1)
    body["log"]["checkpoint"] = "\n".join(lines)


def _unsigned(change: Callable[[dict[str, Any]], None]) -> Callable[[PortalEnv], Any]:
    def make(_: PortalEnv) -> Callable[[bytes], bytes]:
        def tamper(bundle: bytes) -> bytes:
            document = json.loads(bundle)
            change(document["bundle"])
            return json.dumps(document).encode()

        return tamper

    return make


def _other_key(penv: PortalEnv) -> Callable[[bytes], bytes]:
    def tamper(bundle: bytes) -> bytes:
        body = json.loads(bundle)["bundle"]
        return bundles.signed_file(body, crypto.KeySigner(ed25519.Ed25519PrivateKey.generate()))

    return tamper


TAMPERING: dict[str, tuple[Callable[[PortalEnv], Callable[[bytes], bytes]], type]] = {
    "an access dropped, signature kept": (
        _unsigned(lambda b: b["entries"].pop(0)),
        errors.SignatureError,
    ),
    "another subject, signature kept": (
        _unsigned(lambda b: b.update(subject=CITIZEN_B)),
        errors.SignatureError,
    ),
    "signed by another key": (_other_key, errors.UnknownKeyError),
    "re-signed for another subject": (
        lambda p: _resigned(p, lambda b: b.update(subject=CITIZEN_B)),
        errors.VerificationError,
    ),
    "re-signed with a step's text changed": (
        lambda p: _resigned(p, lambda b: _first_step_with_text(b).update(text="I agree.")),
        errors.VerificationError,
    ),
    "re-signed with a consent's fields widened": (
        lambda p: _resigned(p, lambda b: b["consents"][0]["terms"]["fields"].append("address")),
        errors.VerificationError,
    ),
    "re-signed with an entry moved to another index": (
        lambda p: _resigned(p, _flip_receipt_index),
        errors.VerificationError,
    ),
    "re-signed with openings swapped": (
        lambda p: _resigned(p, _swap_subject_salts),
        errors.VerificationError,
    ),
    "re-signed with the checkpoint's tree size changed": (
        lambda p: _resigned(p, _grow_checkpoint),
        errors.VerificationError,
    ),
    "not JSON": (lambda p: lambda data: data[: len(data) // 2], errors.MalformedError),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_bundle_fails(
    world: tuple[PortalEnv, Scenario], bundle: bytes, case: str
) -> None:
    penv, _ = world
    make, error = TAMPERING[case]
    trust, key = trust_and_key(penv)
    with pytest.raises(error):
        bundles.verify_bundle(make(penv)(bundle), trust, key)


def test_a_bundle_needs_the_witness_quorum_it_is_checked_against(
    world: tuple[PortalEnv, Scenario], bundle: bytes
) -> None:
    penv, _ = world
    trust, key = trust_and_key(penv)
    stricter = type(trust)(trust.log_key, trust.origin, trust.witnesses, len(trust.witnesses) + 1)
    with pytest.raises(errors.VerificationError, match="cosignatures"):
        bundles.verify_bundle(bundle, stricter, key)


def test_salts_are_base64_of_thirty_two_bytes(bundle: bytes) -> None:
    body = json.loads(bundle)["bundle"]
    assert all(len(base64.b64decode(e["subject_salt"])) == 32 for e in body["entries"])
