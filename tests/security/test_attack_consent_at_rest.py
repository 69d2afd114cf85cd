"""Attack: read the consent database at rest (a stolen disk, a backup, a curious DBA) and look
for the citizens in it.

A realistic workload runs against real servers: the registry, three security servers whose
consent checkers follow the change feed, the consent service (SQLite, or PostgreSQL when
configured), a replica of it shipping every consent event to a real audit log. Citizens grant,
approve, reject, pause, resume, amend and revoke; agencies request and exchange data under
counted consents; one consent expires; receipts and histories are read. Then the database is
read the way its holder would: the SQLite files byte for byte, or PostgreSQL's relation files
(tables, indexes, TOAST) and every row of every table. No national id appears, in clear, as
an unkeyed SHA-256 or inside base64 (a JWS payload). And on disk the database is the
service's alone: ``consent.db`` (and its WAL and shared-memory files) 0600 in a 0700
directory.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from cdx import db, errors
from cdx.cli import main
from cdx.consentpolicy import ConsentAction, ConsentState
from cdx.ids import CitizenId
from cdx.v1 import consent_pb2
from consent import store
from consent.instance import ConsentPaths, open_consent
from consent.sealing import DataKeys
from consent.server import RunningConsent, migrate_consent_db
from tests.conftest import postgres_url
from tests.integration.consent_0002 import CITIZENS as RECORDED
from tests.integration.consent_0002 import IDS, load_rows, service_at_recording
from tests.integration.consent_env import (
    CONSENT_PURPOSE,
    SOCIAL,
    SOCIAL_SUBSYSTEM,
    TAX_SERVICE,
    ConsentEnv,
    bearer,
    start_consent_env,
    terms,
)
from tests.integration.exchange_harness import HARNESS, build_instance

from .at_rest import ids_found, postgres_file_bytes, sqlite_file_bytes, table_bytes

pytestmark = pytest.mark.xdist_group("attack-consent-at-rest")
T = TypeVar("T")

#: The citizens of the workload (the first two have tax records: their exchanges succeed).
CITIZENS = ("079090000001", "079090000002", "079090000003", "079090000004", "079090000005")
ALICE, BOB, CAROL, DAVE, ERIN = CITIZENS


def eventually(fn: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@dataclass
class Worked:
    env: ConsentEnv
    shipping: RunningConsent
    engine: sa.Engine
    schema: str | None
    database: Path

    def files(self) -> bytes:
        if self.schema is None:
            return sqlite_file_bytes(self.database)
        return postgres_file_bytes(self.engine, self.schema)


def _act(env: ConsentEnv, citizen: str, action: str, consent_id: str) -> consent_pb2.Consent:
    return getattr(env.citizen(), action)(  # type: ignore[no-any-return]
        consent_pb2.ConsentActionRequest(consent_id=consent_id),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def _grant(env: ConsentEnv, citizen: str, **kw: object) -> consent_pb2.Consent:
    return env.citizen().Grant(  # type: ignore[no-any-return]
        consent_pb2.GrantRequest(terms=terms(citizen, **kw)),  # type: ignore[arg-type]
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def _request(env: ConsentEnv, citizen: str, **kw: object) -> consent_pb2.Consent:
    return env.agency_api(env.server_identity(SOCIAL)).RequestConsent(  # type: ignore[no-any-return]
        consent_pb2.RequestConsentRequest(
            requester=SOCIAL_SUBSYSTEM,
            terms=terms(citizen, **kw),  # type: ignore[arg-type]
        ),
        timeout=10,
    )


def _workload(env: ConsentEnv) -> None:
    social = env.instance.agency(SOCIAL)
    citizen = env.citizen()

    def query(subject: str, consent_id: str) -> None:
        social.query(
            TAX_SERVICE, subject, CONSENT_PURPOSE, ("annual_income",), consent_id=consent_id
        )

    # Alice grants a counted consent and the agency spends two of its uses in exchanges.
    counted = _grant(env, ALICE, max_uses=3)
    query(ALICE, counted.id)
    query(ALICE, counted.id)
    # Bob is asked, approves, pauses, resumes, amends, and revokes the amended consent.
    asked = _request(env, BOB)
    _act(env, BOB, "Approve", asked.id)
    query(BOB, asked.id)
    _act(env, BOB, "Pause", asked.id)
    _act(env, BOB, "Resume", asked.id)
    amended = citizen.Amend(
        consent_pb2.AmendRequest(
            consent_id=asked.id, terms=terms(BOB, fields=("annual_income", "tax_year"))
        ),
        metadata=bearer(env.token(BOB)),
        timeout=10,
    )
    _act(env, BOB, "Revoke", amended.id)
    # Carol rejects a request; Dave's request stays pending; both read receipts and events.
    _act(env, CAROL, "Reject", _request(env, CAROL).id)
    pending = _request(env, DAVE)
    for who, consent_id in ((CAROL, None), (DAVE, pending.id)):
        mine = citizen.ListMyConsents(
            consent_pb2.ListMyConsentsRequest(), metadata=bearer(env.token(who)), timeout=10
        )
        for c in mine.consents:
            assert c.terms.subject == who  # the service still knows whose each consent is
            citizen.GetReceipt(
                consent_pb2.ConsentActionRequest(consent_id=c.id),
                metadata=bearer(env.token(who)),
                timeout=10,
            )
        assert consent_id is None or consent_id in {c.id for c in mine.consents}
    # Erin's short consent expires (the service's clock moves past it; the sweeper marks it).
    short = _grant(env, ERIN, valid_for=timedelta(hours=1))
    env.clock.offset = timedelta(hours=2)
    try:
        erin = CitizenId(ERIN)
        eventually(
            lambda: (
                True
                if env.consent.service.get_mine(erin, short.id).state is ConsentState.EXPIRED
                else None
            )
        )
    finally:
        env.clock.offset = timedelta(0)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def worked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worked]:
    url = postgres_url()
    if request.param == "postgres" and not url:
        pytest.skip("PostgreSQL not configured: set CDX_TEST_POSTGRES_URL to run this test on it")
    schema = f"t_at_rest_{uuid.uuid4().hex[:10]}" if request.param == "postgres" else None
    root = tmp_path_factory.mktemp("consent-at-rest")
    # A real audit log, anchored in global configuration, receives the consent events.
    env = start_consent_env(
        root,
        url if request.param == "postgres" else None,
        schema,
        start_servers=True,
        options=replace(HARNESS, audit=True, checkpoint_interval=0.3),
    )
    cleanup: list[Callable[[], object]] = [env.close]
    try:
        shipping = env.start_replica(audit_log=True, audit_interval=0.1, audit_max_backoff=0.3)

        _workload(env)
        shipper = shipping.audit_shipper
        assert shipper is not None
        shipper.poke()
        eventually(lambda: True if shipper.pending() == 0 else None)

        engine = db.create_engine(env.db_url, schema=schema)
        cleanup.append(engine.dispose)
        yield Worked(
            env, shipping, engine, schema, env.instance.stack.layout.consent_dir / "consent.db"
        )
    finally:
        for fn in reversed(cleanup):
            fn()
        if schema and url:
            db.drop_schema(url, schema)


def test_consent_database_files_hold_no_national_id(worked: Worked) -> None:
    files = worked.files()
    with worked.engine.connect() as conn:
        tags = conn.execute(sa.select(store.consents.c.subject_tag)).scalars().all()
    # The reader sees the consents table's bytes (each keyed tag is there, in clear) ...
    assert tags and all(tag.encode() in files for tag in tags)
    # ... and no citizen: not in clear, not hashed, not inside an artefact's base64.
    assert ids_found(files, CITIZENS) == []


def test_no_table_of_the_consent_database_holds_a_national_id(worked: Worked) -> None:
    assert ids_found(table_bytes(worked.engine), CITIZENS) == []
    # The workload reached every table: consents in every state, events, the audit cursor.
    with worked.engine.connect() as conn:
        states = set(conn.execute(sa.select(store.consents.c.state)).scalars())
        head, shipped = store.head_seq(conn), store.shipped_seq(conn)
    assert {"ACTIVE", "REVOKED", "REJECTED", "PENDING", "EXPIRED"} <= states
    assert head >= 15 and shipped == head


def test_consent_database_is_private_to_the_service(tmp_path: Path) -> None:
    instance = build_instance(tmp_path, start=False)
    old_umask = os.umask(0o022)  # what a default shell gives: files 0644, directories 0755
    try:
        root = instance.root
        code = main(
            ["consent", "init", "--data", str(root), "--registry", instance.registry.address]
        )
        assert code == 0
        running = open_consent(
            root,
            instance.registry.paths.passphrase(),
            listen="127.0.0.1:0",
            public_listen="127.0.0.1:0",
        )
        try:
            paths = ConsentPaths(root)
            with contextlib.closing(sqlite3.connect(paths.database)) as conn:
                conn.execute("SELECT count(*) FROM consents").fetchone()  # opens WAL and shm
                files = sorted(paths.dir.glob("consent.db*"))
                assert {f.name for f in files} == {"consent.db", "consent.db-wal", "consent.db-shm"}
                for f in files:
                    assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name
            assert stat.S_IMODE(paths.dir.stat().st_mode) == 0o700
            for key in (paths.data_key, paths.tag_key, paths.signing_key):
                assert stat.S_IMODE(key.stat().st_mode) == 0o600, key.name
        finally:
            running.stop()
    finally:
        os.umask(old_umask)
        instance.close()


def test_sealed_terms_moved_to_another_consent_do_not_open(db_url_factory: Any) -> None:
    """A DBA (or a restored backup) copies Alice's sealed terms into Bob's consent row, hoping
    the service reads them as Bob's, or shows Alice's terms to Bob: the value is bound to its
    consent id, so Bob's consent fails closed and nobody sees Alice's terms."""
    url, schema = db_url_factory("consent_swap")
    engine = db.create_engine(url, schema=schema)
    try:
        db.migrate(engine, "consent", revision="consent_0002")
        load_rows(engine)
        keys = DataKeys(os.urandom(32))
        migrate_consent_db(engine, keys)
        alices, bobs = IDS["counted"], IDS["resumed"]
        with engine.begin() as conn:
            stolen = store.get_consent(conn, alices)
            assert stolen is not None
            conn.execute(
                store.consents.update()
                .where(store.consents.c.id == bobs)
                .values(terms=stolen.terms, artefact=stolen.artefact)
            )
        service = service_at_recording(engine, keys)
        try:
            bob = CitizenId(RECORDED["bob"])
            with pytest.raises(errors.KeyStoreError, match="does not open"):
                service.list_mine(bob)
            with pytest.raises(errors.KeyStoreError):
                service.check(
                    subject=bob, client=SOCIAL_SUBSYSTEM, service=TAX_SERVICE,
                    purpose=CONSENT_PURPOSE, fields=["annual_income"], consent_id=bobs,
                )  # fmt: skip
            # Alice's own consent is untouched.
            alice = CitizenId(RECORDED["alice"])
            assert alices in {c.id for c in service.list_mine(alice)}
        finally:
            service.close()
    finally:
        engine.dispose()


def test_consent_events_never_take_a_person_as_actor(tmp_path: Path) -> None:
    """Events are append-only (never shreddable): an actor that is not ``citizen``,
    ``system`` or a subsystem id (a representative's national id, say) is refused before
    anything is written."""
    engine = db.create_engine(db.sqlite_url(tmp_path / "consent.db"))
    try:
        db.migrate(engine, "consent", revision="consent_0002")
        load_rows(engine)
        keys = DataKeys(os.urandom(32))
        migrate_consent_db(engine, keys)
        service = service_at_recording(engine, keys)
        try:
            bob = CitizenId(RECORDED["bob"])
            with engine.connect() as conn:
                head = store.head_seq(conn)
            for actor in (RECORDED["carol"], "Nguyen Van A", "citizen:079090000003"):
                with pytest.raises(errors.InvalidArgumentError):
                    service.act(bob, IDS["resumed"], ConsentAction.PAUSE, actor=actor)
            with engine.connect() as conn:
                assert store.head_seq(conn) == head
            paused = service.act(bob, IDS["resumed"], ConsentAction.PAUSE)
            assert paused.state is ConsentState.PAUSED
        finally:
            service.close()
    finally:
        engine.dispose()
