"""The outbox's table of audit-log refusals: which codes are for good (dead letter) and which
are retried (the backlog window applies)."""

from __future__ import annotations

import pytest

from cdx import errors
from security_server.refusals import REFUSALS, permanent

EXPECTED = [
    # A record whose opening does not open it (a subject that is no national id): never fixed
    # by retrying, so it must not hold the queue (the poisoned-record attack).
    ("verification_failed", True),
    ("malformed", True),
    ("limit_exceeded", True),
    ("invalid_argument", True),
    ("permission_denied", True),
    ("already_exists", True),
    # The log's view of global configuration may lag a registration or key rotation.
    ("unknown_key", False),
    ("invalid_signature", False),
    ("conf_expired", False),
    ("unavailable", False),
    ("internal", False),
    ("mismatched_result", False),
    # Nobody classified it: retry and fail closed after the window.
    ("a_code_from_a_newer_log", False),
    ("", False),
]


@pytest.mark.parametrize(("code", "for_good"), EXPECTED)
def test_refusal_codes_are_permanent_or_transient(code: str, for_good: bool) -> None:
    assert permanent(code) is for_good


def test_every_classified_code_is_a_real_error_code() -> None:
    known = {c.code for c in errors.GRPC_STATUS} | {"mismatched_result"}
    assert set(REFUSALS) <= known


def test_the_table_is_the_one_tested_here() -> None:
    assert {code for code, _ in EXPECTED} >= set(REFUSALS)
