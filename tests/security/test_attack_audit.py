"""Attacks on the audit log over gRPC with mutual TLS (SQLite, or PostgreSQL when configured).

Already in ``tests/integration/test_audit_service.py``: registered servers append only their own
records, a citizen sees only their own history, history needs a citizen token relayed by the
portal, a subject search needs a reason, sealed entries stay hidden. This module adds: every
non-inspector caller at every inspector API, forged / expired / foreign tokens at the citizen
history, blank reasons, hostile strings in every search field and in records a (compromised)
security server appends, and absurd proof and range requests. After each, the whole log still
verifies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit.client import AuditClient
from audit.server import RunningAudit
from audit.verify import Trust, verify_log
from cdx import db, errors, records, rpc, tokens
from cdx.clock import utcnow
from cdx.v1 import audit_pb2
from tests.conftest import require_postgres
from tests.integration.audit_support import (
    AUDIENCE,
    CITIZEN_A,
    CITIZEN_B,
    CONSUMER,
    ISSUER,
    PROVIDER,
    AuditWorld,
)
from tests.waiting import eventually

from .fuzzing import HOSTILE_STRINGS

pytestmark = pytest.mark.xdist_group("attack-audit")

MAX_U64 = 2**64 - 1


class Log:
    def __init__(self, world: AuditWorld, audit: RunningAudit) -> None:
        self.world, self.audit = world, audit
        self.consumer = world.client(CONSUMER)
        self.provider = world.client(PROVIDER)
        self.inspector = world.client(world.inspector_tls)
        self.portal = world.client(world.portal_tls)
        self.stranger = world.client(world.stranger_tls)

    def clients(self) -> list[AuditClient]:
        return [self.consumer, self.provider, self.inspector, self.portal, self.stranger]

    def size(self) -> int:
        return self.audit.store.tree_state().size

    def verifies(self) -> None:
        self.audit.checkpointer.publish_once()
        report = verify_log(self.inspector, Trust.from_conf(self.world.conf()))
        assert report.ok, [str(f) for f in report.errors]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    schema = None
    if request.param == "sqlite":
        engine = db.create_engine(
            db.sqlite_url(Path(tmp_path_factory.mktemp("attack-audit")) / "a.db")
        )
    else:
        schema = f"t_attack_audit_{uuid.uuid4().hex[:10]}"
        engine = db.create_engine(require_postgres(), schema=schema)
    world = AuditWorld()
    audit = world.start(engine, checkpoint_interval=5.0)
    the_log = Log(world, audit)
    for subject in (CITIZEN_A, CITIZEN_B):
        items = world.exchange(subject)
        the_log.consumer.ship(items[:1])
        the_log.provider.ship(items[1:])
    # One inspector query in the log too: a record without client, service or purpose.
    size = the_log.size()
    the_log.inspector.search(audit_pb2.SearchRequest(client="VN:GOV", reason="set-up"))
    eventually(lambda: the_log.size() > size, timeout=10, what="the search logged")
    try:
        yield the_log
    finally:
        for c in the_log.clients():
            c.close()
        audit.stop()
        if schema:
            db.drop_schema(require_postgres(), schema)


# --- who may call what -------------------------------------------------------------------------


def _non_inspectors(log: Log) -> list[tuple[str, AuditClient, str | None]]:
    return [
        ("security server", log.consumer, None),
        ("portal without a token", log.portal, None),
        ("portal relaying a citizen token", log.portal, log.world.token(CITIZEN_A)),
        ("admin certificate", log.stranger, None),
        (
            "security server with an inspector token",
            log.consumer,
            log.world.token("dpa-x", "inspector"),
        ),
    ]


def test_non_inspectors_cannot_call_inspector_apis(log: Log) -> None:
    sealed = log.world.item(PROVIDER, CITIZEN_A, sealed=True)
    (result,) = log.provider.ship([sealed])
    size = log.size()
    for who, client, token in _non_inspectors(log):
        with pytest.raises((errors.PermissionDeniedError, errors.UnauthenticatedError)) as caught:
            client.search(audit_pb2.SearchRequest(subject=CITIZEN_A, reason="curious"), token=token)
        assert caught.value.code in ("permission_denied", "unauthenticated"), who
        with pytest.raises((errors.PermissionDeniedError, errors.UnauthenticatedError)):
            client.unseal(result.record_id, "curious", token=token)
    assert log.size() == size  # nothing searched, nothing unsealed, nothing logged
    shown = {
        e.record.record_id for e in log.portal.citizen_history(log.world.token(CITIZEN_A)).entries
    }
    assert result.record_id not in shown


def _token(
    key: ed25519.Ed25519PrivateKey,
    subject: str,
    *,
    audience: str = AUDIENCE,
    issuer: str = ISSUER,
    role: str = "citizen",
    age: timedelta = timedelta(0),
) -> str:
    return tokens.issue_token(
        key,
        issuer,
        subject,
        role,
        audience,
        utcnow() - age,
        timedelta(minutes=5),  # type: ignore[arg-type]
    )


def test_citizen_history_refuses_forged_expired_and_foreign_tokens(log: Log) -> None:
    idp = log.world.idp_key
    cases = {
        "forged": (
            _token(ed25519.Ed25519PrivateKey.generate(), CITIZEN_A),
            "token_signature_invalid",
        ),
        "expired": (_token(idp, CITIZEN_A, age=timedelta(hours=1)), "token_expired"),
        "other audience": (
            _token(idp, CITIZEN_A, audience="urn:cdx:elsewhere"),
            "token_wrong_audience",
        ),
        "unknown issuer": (_token(idp, CITIZEN_A, issuer="https://evil.test"), "invalid_token"),
        "garbage": ("a.b.c", "invalid_token"),
    }
    for name, (token, code) in cases.items():
        with pytest.raises(errors.CdxError) as caught:
            log.portal.citizen_history(token)
        assert caught.value.code == code, name
        assert CITIZEN_A not in str(caught.value)


def test_a_citizen_token_cannot_be_stretched_to_another_citizen(log: Log) -> None:
    """The subject comes from the verified token only: Alice sees none of Bob's entries."""
    log.audit.checkpointer.publish_once()
    alice = {
        e.record.record_id for e in log.portal.citizen_history(log.world.token(CITIZEN_A)).entries
    }
    bob = {
        e.record.record_id for e in log.portal.citizen_history(log.world.token(CITIZEN_B)).entries
    }
    assert alice and bob and not alice & bob


@pytest.mark.parametrize("reason", ["", " ", "\t\n"])
def test_subject_search_with_a_blank_reason_is_refused(log: Log, reason: str) -> None:
    size = log.size()
    with pytest.raises(errors.ReasonRequiredError):
        log.inspector.search(audit_pb2.SearchRequest(subject=CITIZEN_A, reason=reason))
    assert log.size() == size


# --- hostile input -----------------------------------------------------------------------------

SEARCH_FIELDS = (
    "client",
    "service",
    "purpose",
    "recorder",
    "message_id",
    "kind",
    "subject",
    "reason",
)


@pytest.mark.parametrize("field", SEARCH_FIELDS)
def test_hostile_strings_in_every_search_field(log: Log, field: str) -> None:
    """SQL, LIKE wildcards and path strings are data: a coded refusal, or hits that match."""
    for hostile in HOSTILE_STRINGS:
        search = audit_pb2.SearchRequest(reason="complaint 2025/99", limit=50)
        setattr(search, field, hostile)
        try:
            response = log.inspector.search(search)
        except errors.CdxError as exc:
            assert exc.code not in ("internal", "unavailable", "error"), (hostile, exc.code)
            continue
        if field in ("client", "service", "purpose", "recorder", "message_id"):
            for hit in response.hits:  # a wildcard must not widen the search
                assert hostile in getattr(hit.record, field), hostile
    log.verifies()


RECORD_FIELDS = (
    "message_id",
    "client",
    "service",
    "purpose",
    "consent_id",
    "legal_reference",
    "reason_code",
    "released_fields",
    "note",
)


@pytest.mark.parametrize("field", RECORD_FIELDS)
def test_hostile_strings_in_records_of_a_registered_server(log: Log, field: str) -> None:
    """A registered (maybe compromised) server appends records full of hostile strings: each is
    stored as data or refused with a per-item code, never an internal error, never blocking its
    batch neighbours, and the log still verifies."""
    items = []
    for hostile in HOSTILE_STRINGS:
        item = log.world.item(PROVIDER, CITIZEN_A, allowed=False)
        record = audit_pb2.AccessRecord.FromString(item.record.record)
        if field == "released_fields":
            record.released_fields.append(hostile)
        else:
            setattr(record, field, hostile)
        item.record.CopyFrom(records.sign_access_record(record, log.world.servers[PROVIDER].signer))
        items.append(item)
    good = log.world.item(PROVIDER, CITIZEN_A)
    results = log.provider.ship([*items, good])
    assert len(results) == len(items) + 1
    for result, hostile in zip(results, HOSTILE_STRINGS, strict=False):
        assert result.error_code not in ("internal", "unavailable"), (
            field,
            hostile,
            result.error_code,
        )
    assert not results[-1].error_code, "a well-formed neighbour was refused"
    log.verifies()


@pytest.mark.parametrize(
    "request_",
    [
        audit_pb2.InclusionProofRequest(index=MAX_U64, tree_size=MAX_U64),
        audit_pb2.InclusionProofRequest(index=0, tree_size=MAX_U64),
        audit_pb2.InclusionProofRequest(index=MAX_U64, tree_size=0),
        audit_pb2.InclusionProofRequest(record_id="' OR '1'='1"),
        audit_pb2.InclusionProofRequest(record_id="\x00"),
        audit_pb2.InclusionProofRequest(record_id="x" * 100_000),
    ],
    ids=[
        "huge_index_and_size",
        "huge_size",
        "huge_index",
        "sql_record_id",
        "nul_record_id",
        "long_record_id",
    ],
)
def test_absurd_inclusion_proof_requests_are_refused(log: Log, request_) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.CdxError) as caught:
        _call(log.inspector, "GetInclusionProof", request_)
    assert caught.value.code in ("invalid_argument", "not_found", "limit_exceeded", "malformed"), (
        caught.value.code
    )


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("GetConsistencyProof", audit_pb2.ConsistencyProofRequest(size1=5, size2=2)),
        ("GetConsistencyProof", audit_pb2.ConsistencyProofRequest(size1=1, size2=MAX_U64)),
        ("GetConsistencyProof", audit_pb2.ConsistencyProofRequest(size1=MAX_U64, size2=MAX_U64)),
        ("GetEntries", audit_pb2.GetEntriesRequest(start=5, end=1)),
    ],
    ids=["size1_over_size2", "huge_size2", "huge_both", "reversed_range"],
)
def test_absurd_proof_and_range_requests_are_refused(log: Log, method: str, request_) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.CdxError) as caught:
        _call(log.inspector, method, request_)
    assert caught.value.code in (
        "invalid_argument",
        "not_found",
        "limit_exceeded",
        "failed_precondition",
    ), caught.value.code


def test_huge_ranges_are_capped_not_served_whole(log: Log) -> None:
    """Regression: a uint64 start or size beyond SQL's signed BIGINT raised OverflowError."""
    entries = _call(log.inspector, "GetEntries", audit_pb2.GetEntriesRequest(start=0, end=MAX_U64))
    assert 0 < len(entries.entries) <= log.size()
    beyond = _call(
        log.inspector, "GetEntries", audit_pb2.GetEntriesRequest(start=MAX_U64, end=MAX_U64)
    )
    assert list(beyond.entries) == []
    after = audit_pb2.ListCheckpointsRequest(after_size=MAX_U64)
    assert list(_call(log.inspector, "ListCheckpoints", after).checkpoints) == []
    paged = audit_pb2.SearchRequest(reason="paging", after_index=MAX_U64)
    assert list(log.inspector.search(paged).hits) == []
    listed = _call(
        log.inspector, "ListCheckpoints", audit_pb2.ListCheckpointsRequest(limit=2**32 - 1)
    )
    assert len(listed.checkpoints) >= 1
    log.audit.checkpointer.publish_once()  # the fixture's entries are in a checkpoint
    history = log.portal.citizen_history(log.world.token(CITIZEN_A), limit=2**32 - 1)
    assert history.entries


def _call(client: AuditClient, method: str, request):  # type: ignore[no-untyped-def]
    return rpc.invoke(getattr(client.stub(), method), request, timeout=10)


# --- hardening II: flooding, unsafe names, invisible reasons, refusals (T130-T133) -------------


@pytest.fixture(params=["sqlite", "postgres"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    """A log of its own (these tests append hundreds of records)."""
    url = require_postgres() if request.param == "postgres" else None
    schema = None
    if request.param == "sqlite":
        engine = db.create_engine(db.sqlite_url(tmp_path / "fresh.db"))
    else:
        schema = f"t_attack_fresh_{uuid.uuid4().hex[:10]}"
        engine = db.create_engine(str(url), schema=schema)
    world = AuditWorld()
    audit = world.start(engine, checkpoint_interval=5.0)
    the_log = Log(world, audit)
    try:
        yield the_log
    finally:
        for c in the_log.clients():
            c.close()
        audit.stop()
        if schema and url:
            db.drop_schema(str(url), schema)


def _history_ids(log: Log, subject: str, limit: int, before: int = 0) -> tuple[list[str], int]:
    page = log.portal.citizen_history(log.world.token(subject), limit, before)
    return [e.record.record_id for e in page.entries], page.next_before_index


def test_sealed_queries_cannot_flood_a_citizens_history_empty(fresh: Log) -> None:
    """Regression: 520 sealed queries about one citizen made their history show 0 entries (the
    log read the newest rows and dropped sealed ones afterwards). Sealed entries are filtered in
    the query, and every visible entry is reachable page by page."""
    visible = [r.record_id for r in fresh.provider.ship(fresh.world.exchange(CITIZEN_B)[1:])]
    flood = [fresh.world.item(PROVIDER, CITIZEN_B, sealed=True) for _ in range(520)]
    for start in range(0, len(flood), 260):
        assert not any(r.error_code for r in fresh.provider.ship(flood[start : start + 260]))
    visible += [r.record_id for r in fresh.provider.ship(fresh.world.exchange(CITIZEN_B)[1:])]
    fresh.audit.checkpointer.publish_once()
    shown, _ = _history_ids(fresh, CITIZEN_B, 100)
    assert set(shown) == set(visible)
    # Page by page, one entry at a time: the cursor walks past the sealed ones in the query.
    paged: list[str] = []
    ids, cursor = _history_ids(fresh, CITIZEN_B, 1)
    paged += ids
    while cursor:
        ids, cursor = _history_ids(fresh, CITIZEN_B, 1, cursor)
        paged += ids
    assert paged == list(reversed(visible))  # newest first, nothing twice, nothing sealed
    assert not {records.parse_unverified_record(f.record).record_id for f in flood} & set(paged)


UNSAFE_NAMES = {
    "terminal escape in client": (
        "client",
        "VN:GOV:VSS:benefits\x1b[2J\x1b[HALL RECORDS VERIFIED OK",
    ),
    "bidi override in service": ("service", "VN:GOV:BCA:population/\u202eperson/v1"),
    "zero-width in purpose": ("purpose", "SOCIAL\u200b_BENEFIT"),
    "C1 control in reason code": ("reason_code", "no_agreement\x9b"),
    "line separator in message id": ("message_id", "m-1\u2028forged"),
    "bidi isolate in a released field": ("released_fields", "full_name\u2066"),
    "hangul filler in consent id": ("consent_id", "c-\u3164"),
}


@pytest.mark.parametrize("case", list(UNSAFE_NAMES), ids=list(UNSAFE_NAMES))
def test_control_and_bidi_characters_in_names_are_refused_and_kept_as_refusals(
    fresh: Log, case: str
) -> None:
    """A (compromised) server's record whose names would rewrite an inspector's terminal or
    read as another agency is refused with ``unsafe_characters``; its batch neighbours are
    appended, the refusal is listed for inspectors, nothing of the record is stored."""
    field, value = UNSAFE_NAMES[case]
    item = fresh.world.item(PROVIDER, CITIZEN_A, allowed=False)
    record = audit_pb2.AccessRecord.FromString(item.record.record)
    if field == "released_fields":
        record.released_fields.append(value)
    else:
        setattr(record, field, value)
    item.record.CopyFrom(records.sign_access_record(record, fresh.world.servers[PROVIDER].signer))
    size = fresh.size()
    refused, neighbour = fresh.provider.ship([item, fresh.world.item(PROVIDER, CITIZEN_A)])
    assert refused.error_code == "unsafe_characters" and not neighbour.error_code
    assert fresh.size() == size + 1 and fresh.audit.store.find_record(record.record_id) is None
    listed = fresh.inspector.list_refused(recorder=PROVIDER)
    assert [(r.record_id, r.code) for r in listed] == [(record.record_id, "unsafe_characters")]
    fresh.provider.ship([item])  # the outbox retries: kept once
    assert len(fresh.inspector.list_refused(recorder=PROVIDER)) == 1
    fresh.verifies()


@pytest.mark.parametrize(
    "reason",
    [
        "\u200b",
        "\u3164",
        "\u3164" * 40,
        "\u200b\u200c\u200d\u2060" * 10,
        "too short",
        "\u2800" * 20,
    ],
    ids=["zero_width", "hangul_filler", "many_fillers", "format_chars", "short", "braille_blank"],
)
def test_invisible_or_too_short_reasons_are_refused(
    fresh: Log, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a subject search with the reason "\\u200b" or "\\u3164" was accepted. A reason
    needs ten visible characters; the refusal is logged and nothing is searched."""
    size = fresh.size()
    with pytest.raises(errors.ReasonRequiredError):
        fresh.inspector.search(audit_pb2.SearchRequest(subject=CITIZEN_A, reason=reason))
    sealed = fresh.provider.ship([fresh.world.item(PROVIDER, CITIZEN_A, sealed=True)])[0]
    with pytest.raises(errors.ReasonRequiredError):
        fresh.inspector.unseal(sealed.record_id, reason)
    assert fresh.size() == size + 1  # only the sealed record: no query, no unseal logged
    assert "no readable reason" in caplog.text and CITIZEN_A not in caplog.text
    fresh.inspector.search(audit_pb2.SearchRequest(subject=CITIZEN_A, reason="complaint 2025/99"))


def test_refusals_are_for_inspectors_and_keep_no_claimed_content(fresh: Log) -> None:
    """Only inspectors list refusals (and the listing is logged); a refused item's claimed
    record id is kept only when it is a record id (a UUID), never arbitrary text."""
    item = fresh.world.item(PROVIDER, CITIZEN_A)
    record = audit_pb2.AccessRecord.FromString(item.record.record)
    record.record_id = CITIZEN_A  # a compromised server smuggling a national id
    item.record.CopyFrom(records.sign_access_record(record, fresh.world.servers[CONSUMER].signer))
    (result,) = fresh.provider.ship([item])
    assert result.error_code  # signed by another server's key: refused
    for client, token in (
        (fresh.provider, None),
        (fresh.portal, fresh.world.token(CITIZEN_A)),
        (fresh.stranger, None),
    ):
        with pytest.raises((errors.PermissionDeniedError, errors.UnauthenticatedError)):
            client.list_refused(token=token)
    size = fresh.size()
    listed = fresh.inspector.list_refused()
    assert [(r.recorder, r.record_id) for r in listed] == [(PROVIDER, "-")]
    assert fresh.size() == size + 1  # the listing is itself an entry
    with pytest.raises(errors.CdxError) as caught:
        fresh.inspector.list_refused(recorder="\x00")
    assert caught.value.code not in ("internal", "unavailable")
