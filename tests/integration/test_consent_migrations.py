"""Migration ``consent_0003`` seals a consent database written by the previous schema, in
place, on SQLite and PostgreSQL, with nothing lost.

The rows are the ones the ``consent_0002`` service wrote (``consent_0002``: recorded rows and
keys): after the migration no national id is readable in any table (nor, on SQLite,
anywhere in the database files), and every consent still lists, checks, verifies and revokes;
the audit items of the events not yet shipped are byte for byte the ones the old service would
have sent, so the audit log sees a retry, never a second entry.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from cdx import crypto, db, errors
from cdx.consentpolicy import ConsentAction, ConsentState
from cdx.ids import CitizenId
from consent import store
from consent.artefact import verify_artefact
from consent.auditlog import event_item
from consent.model import terms_from_json, terms_of_row
from consent.sealing import MIGRATION_ATTRIBUTE, DataKeys, is_sealed
from consent.server import migrate_consent_db
from tests.integration.consent_0002 import (
    ARTEFACT_KEY,
    CITIZENS,
    FIXTURE,
    IDS,
    TAG_KEY,
    load_rows,
    old_row,
    service_at_recording,
)
from tests.security.at_rest import (
    ids_found,
    postgres_file_bytes,
    sqlite_file_bytes,
    table_bytes,
    table_rows,
)

GRANTEE = "VN:GOV:VSS:benefits"
TAX_SERVICE = "VN:GOV:GDT:income/income/v1"
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"
#: The newest consent schema (``consent_0005`` added the legal representation tables).
CONSENT_HEAD = "consent_0005"


T = TypeVar("T")


def eventually(fn: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def found_personal_data(blob: bytes) -> list[str]:
    """The citizens of the fixture whose national id some form of ``blob`` gives away."""
    found = ids_found(blob, CITIZENS.values())
    return sorted(name for name, national_id in CITIZENS.items() if national_id in found)


def dump(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    return table_rows(engine)


@dataclass
class Legacy:
    engine: Engine
    schema: str | None

    def files(self) -> bytes:
        """What the database keeps on disk (SQLite files, or PostgreSQL relation files)."""
        if self.schema is None:
            return sqlite_file_bytes(Path(str(self.engine.url.database)))
        return postgres_file_bytes(self.engine, self.schema)


@pytest.fixture
def old_db(db_url_factory: Any) -> Iterator[Legacy]:
    """A database at ``consent_0002`` holding the rows the previous service wrote."""
    url, schema = db_url_factory("consent_migrations")
    engine = db.create_engine(url, schema=schema)
    db.migrate(engine, "consent", revision="consent_0002")
    load_rows(engine)
    yield Legacy(engine, schema)
    engine.dispose()


@pytest.fixture
def legacy(old_db: Legacy) -> Engine:
    return old_db.engine


def _head() -> str:
    """The newest revision of the consent schema (later migrations come after ``consent_0003``)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "consent:migrations")
    return str(ScriptDirectory.from_config(cfg).get_current_head())


HEAD = _head()


def _version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(sa.text("SELECT version_num FROM alembic_version_consent")).scalar()
        )


def test_migration_seals_every_stored_value_and_changes_nothing_else(legacy: Engine) -> None:
    before = dump(legacy)
    assert found_personal_data(table_bytes(legacy)) == sorted(CITIZENS)  # the test can see them
    migrate_consent_db(legacy, DataKeys(os.urandom(32)))
    after = dump(legacy)

    assert _version(legacy) == CONSENT_HEAD
    assert found_personal_data(table_bytes(legacy)) == []
    for row in after["consents"]:
        assert is_sealed(row["terms"])
        assert is_sealed(row["artefact"]) or (row["artefact"] == "" and row["state"] != "ACTIVE")
    unsealed = ("terms", "artefact")

    def rest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            ({k: v for k, v in r.items() if k not in unsealed} for r in rows),
            key=lambda r: str(r["id"]),
        )

    assert rest(after["consents"]) == rest(before["consents"])
    for table in ("consent_events", "consent_feed", "consent_audit_cursor"):
        assert after[table] == before[table]
    migrate_consent_db(legacy, DataKeys(os.urandom(32)))  # again: nothing left to do
    assert dump(legacy)["consents"] == after["consents"]


def test_migrated_database_files_keep_no_national_id(old_db: Legacy) -> None:
    assert found_personal_data(old_db.files()) == sorted(CITIZENS)  # the reader sees them
    # Another process keeps the database open (a replica, a backup tool): SQLite then does not
    # fold the write-ahead log back into the file when the migration's connection closes.
    with old_db.engine.connect() as bystander:
        bystander.execute(sa.text("SELECT count(*) FROM consents")).scalar()
        bystander.commit()
        migrate_consent_db(old_db.engine, DataKeys(os.urandom(32)))
        # Rewritten rows leave old versions behind (PostgreSQL's dead tuples, SQLite's old
        # pages and write-ahead log): none may keep an old value.
        assert found_personal_data(old_db.files()) == []


def test_old_rows_a_running_transaction_still_sees_do_not_survive(old_db: Legacy) -> None:
    """A transaction that began before the rewrite may still read the old rows, so the
    database keeps them (PostgreSQL's horizon, SQLite's WAL snapshot): the scrub waits for it
    to end rather than leave them in the files."""
    engine = old_db.engine
    failures: list[BaseException] = []

    def migrate() -> None:
        try:
            migrate_consent_db(engine, DataKeys(os.urandom(32)))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    def rewritten() -> bool | None:
        with engine.connect() as conn:
            terms = conn.execute(sa.select(store.consents.c.terms)).scalars().all()
        return True if all(is_sealed(t) for t in terms) else None

    with engine.connect() as older:
        if old_db.schema is None:
            older.execute(sa.text("SELECT count(*) FROM consents")).scalar()  # a read snapshot
        else:  # a running transaction elsewhere in the database (it locks no consent row)
            older.execute(sa.text("SELECT txid_current()"))
        worker = threading.Thread(target=migrate, name="consent-0003")
        worker.start()
        eventually(rewritten, timeout=60)
        older.commit()
    worker.join(timeout=120)
    assert not worker.is_alive() and not failures
    assert found_personal_data(old_db.files()) == []


def test_a_database_with_rows_to_seal_does_not_migrate_without_the_key(legacy: Engine) -> None:
    before = dump(legacy)
    with pytest.raises(RuntimeError, match="needs the consent data key"):
        db.migrate(legacy, "consent")
    assert dump(legacy) == before and _version(legacy) == "consent_0002"


def test_a_fresh_database_migrates_without_the_key(db_url_factory: Any) -> None:
    url, schema = db_url_factory("consent_fresh")
    engine = db.create_engine(url, schema=schema)
    try:
        db.migrate(engine, "consent")
        assert _version(engine) == CONSENT_HEAD
    finally:
        engine.dispose()


def test_downgrade_opens_the_sealed_values_again(legacy: Engine) -> None:
    keys = DataKeys(os.urandom(32))
    migrate_consent_db(legacy, keys)
    cfg = Config()
    cfg.set_main_option("script_location", "consent:migrations")
    cfg.attributes.update(
        {MIGRATION_ATTRIBUTE: keys, "engine": legacy, "version_table": "alembic_version_consent"}
    )
    command.downgrade(cfg, "consent_0002")
    assert _version(legacy) == "consent_0002"
    with legacy.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(store.consents)).all()}
    for old in FIXTURE["tables"]["consents"]:
        assert (rows[old["id"]].terms, rows[old["id"]].artefact) == (old["terms"], old["artefact"])


def test_every_consent_lists_checks_verifies_and_revokes_after_migration(legacy: Engine) -> None:
    keys = DataKeys(os.urandom(32))
    migrate_consent_db(legacy, keys)
    service = service_at_recording(legacy, keys)
    public = ARTEFACT_KEY.public_key()
    try:
        # Lists: each citizen sees exactly their consents, with the terms and artefacts the
        # previous service stored (the artefacts byte for byte, still verifying).
        for name, national_id in CITIZENS.items():
            subject = CitizenId(national_id)
            mine = service.list_mine(subject)
            expected = [
                r["id"]
                for r in sorted(
                    FIXTURE["tables"]["consents"], key=lambda r: (r["created_at_ms"], r["id"])
                )
                if json.loads(r["terms"])["sub"] == national_id
            ]
            assert [r.id for r in mine] == expected, name
            for record in mine:
                old = old_row(record.id)
                assert record.terms == terms_from_json(json.loads(old["terms"]))
                assert record.artefact == old["artefact"]
                assert record.state.value == old["state"] and record.uses == old["uses"]
                if record.artefact:
                    claims = verify_artefact(record.artefact, public)
                    assert claims["sub"] == national_id and claims["consent_id"] == record.id
        granted = service.list_granted(GRANTEE, subject=CitizenId(CITIZENS["bob"]))
        assert {r.id for r in granted} == {IDS["pending"], IDS["revoked"], IDS["resumed"]}

        # Checks: the counted consent spends its third use; the others decide as before.
        alice, bob = CitizenId(CITIZENS["alice"]), CitizenId(CITIZENS["bob"])

        def check(subject: CitizenId, consent_id: str, fields: list[str]) -> str:
            allow, _ = service.check(
                subject=subject, client=GRANTEE, service=TAX_SERVICE, purpose=PURPOSE,
                fields=fields, consent_id=consent_id, record_use=True,
            )  # fmt: skip
            return allow.consent_id

        assert check(alice, IDS["counted"], ["annual_income"]) == IDS["counted"]
        assert service.get_mine(alice, IDS["counted"]).uses == 3
        assert check(alice, IDS["amended"], ["annual_income", "tax_year"]) == IDS["amended"]
        assert check(bob, IDS["resumed"], ["annual_income"]) == IDS["resumed"]
        with pytest.raises(errors.ConsentPausedError):
            check(alice, IDS["paused"], ["annual_income"])
        with pytest.raises(errors.ConsentRevokedError):
            check(bob, IDS["revoked"], ["annual_income"])
        with pytest.raises(errors.ConsentDeniedError):
            check(CitizenId(CITIZENS["dave"]), IDS["expired"], ["annual_income"])

        # Changes: the pending request is approved (a new artefact, sealed), everything still
        # open is revoked; the event history of each consent grows by exactly those events.
        approved = service.act(bob, IDS["pending"], ConsentAction.APPROVE)
        assert verify_artefact(approved.artefact, public)["sub"] == CITIZENS["bob"]
        for name, key in (
            ("alice", "counted"), ("alice", "amended"), ("alice", "paused"),
            ("bob", "resumed"), ("bob", "pending"),
        ):  # fmt: skip
            subject = CitizenId(CITIZENS[name])
            revoked = service.act(subject, IDS[key], ConsentAction.REVOKE)
            assert revoked.state is ConsentState.REVOKED
            actions = [e.action for e in service.events(subject, IDS[key])]
            assert actions[-1] == "revoked"
        with legacy.connect() as conn:
            stored = store.get_consent(conn, IDS["pending"])
        assert stored is not None and is_sealed(stored.artefact)
        assert found_personal_data(table_bytes(legacy)) == []
    finally:
        service.close()


def test_unshipped_events_reach_the_audit_log_as_the_same_records(legacy: Engine) -> None:
    keys = DataKeys(os.urandom(32))
    migrate_consent_db(legacy, keys)
    signer = crypto.KeySigner(ARTEFACT_KEY)
    with legacy.connect() as conn:
        events = store.events_after(conn, store.shipped_seq(conn), 100)
        rows = store.consents_by_id(conn, [e.consent_id for e in events])
    items = {
        str(e.seq): base64.b64encode(
            event_item(
                e, terms_of_row(rows[e.consent_id], keys), signer, TAG_KEY
            ).SerializeToString(deterministic=True)
        ).decode()
        for e in events
        if e.action != "used"
    }
    assert items == FIXTURE["unshipped_items"] and len(items) == 4


def test_the_fixture_was_recorded_before_sealing() -> None:
    # Guards the other tests: they prove a conversion only if the rows are the old format.
    for row in FIXTURE["tables"]["consents"]:
        assert not is_sealed(row["terms"]) and json.loads(row["terms"])["sub"]
    assert FIXTURE["alembic_version_consent"] == "consent_0002"
