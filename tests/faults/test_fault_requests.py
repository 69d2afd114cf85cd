"""The audit log down while citizens file requests and agencies answer them: the request
service keeps working, every step waits in the consent database, and reaches the log once it
is back — each exactly once, each in the citizen's history under the consent service's key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cdx import crypto, records
from cdx.v1 import audit_pb2, consent_pb2
from consent.request_audit import RequestAuditShipper
from tests.e2e.portal_env import start_portal_env
from tests.integration.consent_env import SOCIAL, bearer, fresh_citizen
from tests.integration.requests_env import agency_act, file_request, my_request
from tests.waiting import eventually


def test_request_steps_wait_while_the_audit_log_is_down_and_arrive_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    penv = start_portal_env(tmp_path)  # its own: this test stops the audit log
    try:
        env = penv.consent_env
        shipper = env.consent.request_shipper
        assert isinstance(shipper, RequestAuditShipper)
        eventually(lambda: shipper.pending() == 0, what="earlier steps shipped")
        penv.audit.stop(0)

        citizen = fresh_citizen()
        with caplog.at_level(logging.WARNING, logger="consent.auditlog"):
            filed = file_request(env, citizen, details="Stop, please.")
            agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_ACKNOWLEDGE)
            agency_act(env, SOCIAL, filed.id, consent_pb2.REQUEST_COMPLETE, "Stopped.")

            def failed_attempts() -> int:
                return sum(
                    "request steps wait for the audit log" in r.getMessage() for r in caplog.records
                )

            eventually(lambda: failed_attempts() >= 2, what="shipping attempts failing")
        assert shipper.pending() == 3
        assert my_request(env, citizen, filed.id).state == consent_pb2.REQUEST_COMPLETED

        penv.start_audit()  # on the address global configuration names
        eventually(lambda: shipper.pending() == 0, what="the steps shipped")
        conf = env.conf_client.current()
        consent_key = crypto.as_signing_public_key(
            crypto.public_key_from_der(conf.consent_service_key_der)
        )

        def logged_steps() -> list[audit_pb2.AccessRecord]:
            history = env.instance.stack.citizen_audit().CitizenHistory(
                audit_pb2.CitizenHistoryRequest(limit=100),
                metadata=bearer(env.token(citizen)),
                timeout=10,
            )
            return [
                records.verify_access_record(e.entry.record, consent_key)
                for e in history.entries
                if audit_pb2.AccessRecord.FromString(e.entry.record.record).message_id == filed.id
            ]

        eventually(lambda: len(logged_steps()) == 3, what="the steps in the citizen's history")
        steps = logged_steps()
        assert sorted(r.reason_code for r in steps) == ["acknowledged", "completed", "received"]
        assert {r.kind for r in steps} == {records.KIND_SUBJECT_REQUEST}
        expected = {s.record_id for s in my_request(env, citizen, filed.id).steps}
        assert {r.record_id for r in steps} == expected  # each once, under its own id
    finally:
        penv.close()
