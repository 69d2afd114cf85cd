"""Helpers for the data-subject request tests: the three request APIs of a running consent
service (``consent_env``), as a citizen, an agency and an inspector.

``citizen_requests(env)`` goes to the public port with a citizen's token; ``agency_requests(env,
key)`` uses the information-system client certificate of agency ``key`` (its subsystem
certificate); ``inspector_requests(env)`` the instance's inspector certificate.
"""

from __future__ import annotations

from typing import Any

from cdx.keyfiles import load_identity
from cdx.paths import InstancePaths
from cdx.v1 import audit_pb2, consent_pb2, consent_pb2_grpc
from tests.integration.consent_env import CONSENT_PURPOSE, SOCIAL_SUBSYSTEM, ConsentEnv, bearer

TAX_SUBSYSTEM = "VN:GOV:GDT:income"
POPULATION_SUBSYSTEM = "VN:GOV:BCA:population"


def citizen_requests(env: ConsentEnv) -> consent_pb2_grpc.CitizenRequestsStub:
    return consent_pb2_grpc.CitizenRequestsStub(env.channel(None, public=True))


def agency_requests(env: ConsentEnv, key: str) -> consent_pb2_grpc.AgencyRequestsStub:
    return consent_pb2_grpc.AgencyRequestsStub(env.channel(env.client_identity(key)))


def inspector_requests(env: ConsentEnv) -> consent_pb2_grpc.InspectorRequestsStub:
    stack = env.instance.stack
    folder = stack.layout.inspector_dir
    ca = InstancePaths(stack.layout.data_dir).ca_pem
    identity = load_identity(
        folder / "inspector.pem", folder / "inspector.key", ca, stack.passphrase
    )
    return consent_pb2_grpc.InspectorRequestsStub(env.channel(identity))


def file_request(
    env: ConsentEnv,
    citizen: str,
    kind: int = consent_pb2.REQUEST_OBJECTION,
    *,
    addressee: str = SOCIAL_SUBSYSTEM,
    purpose: str = CONSENT_PURPOSE,
    details: str = "I object to my data being used for this purpose.",
    token: str | None = None,
    **kw: Any,
) -> consent_pb2.SubjectRequest:
    """``citizen`` files a request (an objection to the social insurance agency by default)."""
    return citizen_requests(env).FileRequest(  # type: ignore[no-any-return]
        consent_pb2.FileRequestRequest(
            kind=kind, addressee=addressee, purpose=purpose, details=details, **kw
        ),
        metadata=bearer(token or env.token(citizen)),
        timeout=10,
    )


def my_request(env: ConsentEnv, citizen: str, request_id: str) -> consent_pb2.SubjectRequest:
    return citizen_requests(env).GetMyRequest(  # type: ignore[no-any-return]
        consent_pb2.SubjectRequestId(request_id=request_id),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def agency_act(
    env: ConsentEnv, key: str, request_id: str, action: int, text: str = ""
) -> consent_pb2.SubjectRequest:
    """Agency ``key`` takes a step on a request addressed to it."""
    return agency_requests(env, key).Act(  # type: ignore[no-any-return]
        consent_pb2.ActOnRequestRequest(request_id=request_id, action=action, text=text),
        timeout=10,
    )


def queue_of(env: ConsentEnv, key: str, addressee: str, **kw: Any) -> list[Any]:
    response = agency_requests(env, key).ListQueue(
        consent_pb2.ListQueueRequest(addressee=addressee, **kw), timeout=10
    )
    return list(response.requests)


def access_evidence(
    env: ConsentEnv, citizen: str, request_id: str, *, limit: int = 500
) -> consent_pb2.CompleteAccessRequest:
    """The citizen's history as the portal relays it, as evidence for an access request: every
    entry the page's cosigned checkpoint covers, with its proof and its opening's salts."""
    history = env.instance.stack.citizen_audit().CitizenHistory(
        audit_pb2.CitizenHistoryRequest(limit=limit),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )
    entries = []
    omitted = 0
    for item in history.entries:
        if not item.HasField("proof") or not item.HasField("opening"):
            omitted += 1
            continue
        entries.append(
            consent_pb2.AccessEvidenceEntry(
                index=item.entry.index,
                leaf=item.entry.record.SerializeToString(),
                proof=list(item.proof.hashes),
                subject_salt=item.opening.subject_salt,
                request_salt=item.opening.request_salt,
            )
        )
    return consent_pb2.CompleteAccessRequest(
        request_id=request_id,
        checkpoint_note=history.checkpoint.note,
        entries=entries,
        omitted=omitted,
    )
