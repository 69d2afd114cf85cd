"""The consent data key: created at ``cdx consent init``, rotated with ``cdx consent
rotate-data-key``; the next start reseals every stored consent under the new key, after which
the retired key can be destroyed (the shred) and what it sealed no longer opens."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cdx import db, errors
from cdx.cli import main
from cdx.clock import utcnow
from cdx.consentpolicy import ConsentTerms
from cdx.ids import CitizenId
from consent import store
from consent.instance import ConsentInstance, ConsentPaths, open_consent
from consent.sealing import PREFIX, DataKeys, is_sealed, key_id
from consent.server import migrate_consent_db
from tests.integration.consent_0002 import CITIZENS, FIXTURE, load_rows, service_at_recording
from tests.integration.exchange_harness import ExchangeInstance, build_instance

ALICE = CitizenId("079090000001")
SOCIAL = "VN:GOV:VSS:benefits"
TAX_SERVICE = "VN:GOV:GDT:income/income/v1"
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"


@pytest.fixture
def migrated(db_url_factory: Any) -> Iterator[tuple[Engine, bytes]]:
    """The recorded ``consent_0002`` rows, migrated under a first data key."""
    url, schema = db_url_factory("consent_rotation")
    engine = db.create_engine(url, schema=schema)
    db.migrate(engine, "consent", revision="consent_0002")
    load_rows(engine)
    first = os.urandom(32)
    migrate_consent_db(engine, DataKeys(first))
    yield engine, first
    engine.dispose()


def _stored(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(store.consents.c.terms, store.consents.c.artefact)).all()
    return [(r.terms, r.artefact) for r in rows]


def test_reseal_moves_every_consent_to_the_current_key(migrated: tuple[Engine, bytes]) -> None:
    engine, first = migrated
    second = os.urandom(32)
    before = service_at_recording(engine, DataKeys(first))
    try:
        listed = {n: before.list_mine(CitizenId(c)) for n, c in CITIZENS.items()}
    finally:
        before.close()

    rotating = service_at_recording(engine, DataKeys(second, [first]))
    try:
        assert rotating.reseal(batch=2) == len(FIXTURE["tables"]["consents"])
        assert rotating.reseal(batch=2) == 0  # nothing left under the retired key
    finally:
        rotating.close()
    prefix = f"{PREFIX}.{key_id(second)}."
    for terms, artefact in _stored(engine):
        assert terms.startswith(prefix) and (artefact == "" or artefact.startswith(prefix))

    after = service_at_recording(engine, DataKeys(second))  # the first key is gone: shredded
    try:
        assert {n: after.list_mine(CitizenId(c)) for n, c in CITIZENS.items()} == listed
    finally:
        after.close()
    shredded = service_at_recording(engine, DataKeys(first))
    try:
        with pytest.raises(errors.KeyStoreError, match=key_id(second)):
            shredded.list_mine(CitizenId(CITIZENS["alice"]))
    finally:
        shredded.close()


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[ExchangeInstance]:
    built = build_instance(tmp_path, start=False)
    yield built
    built.close()


def _open(instance: ExchangeInstance) -> ConsentInstance:
    return open_consent(
        instance.root,
        instance.registry.paths.passphrase(),
        listen="127.0.0.1:0",
        public_listen="127.0.0.1:0",
    )


def test_rotated_key_reseals_at_the_next_start_and_the_old_one_can_be_destroyed(
    instance: ExchangeInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data", str(instance.root)]
    assert main(["consent", "init", *data, "--registry", instance.registry.address]) == 0
    paths = ConsentPaths(instance.root)
    passphrase = instance.registry.paths.passphrase()
    first = paths.data_keys(passphrase).current_id
    now = utcnow().replace(microsecond=0)
    terms = ConsentTerms(
        subject=ALICE,
        grantee=SOCIAL,
        services=(TAX_SERVICE,),
        purpose=PURPOSE,
        fields=frozenset({"annual_income"}),
        valid_from=now,
        valid_until=now + timedelta(days=30),
    )
    running = _open(instance)
    try:
        granted = running.running.service.grant(ALICE, terms)
    finally:
        running.stop()
    engine = db.create_engine(db.sqlite_url(paths.database))
    try:
        assert all(t.startswith(f"{PREFIX}.{first}.") for t, _ in _stored(engine))

        capsys.readouterr()
        assert main(["consent", "rotate-data-key", *data]) == 0
        out = capsys.readouterr().out
        second = paths.data_keys(passphrase).current_id
        assert second != first and second in out and str(paths.retired_data_key(first)) in out

        running = _open(instance)  # reseals before serving
        try:
            stored = _stored(engine)
            assert stored and all(
                t.startswith(f"{PREFIX}.{second}.") and a.startswith(f"{PREFIX}.{second}.")
                for t, a in stored
            )
        finally:
            running.stop()

        paths.retired_data_key(first).unlink()  # the shred
        running = _open(instance)
        try:
            mine = running.running.service.list_mine(ALICE)
            assert [(c.id, c.artefact) for c in mine] == [(granted.id, granted.artefact)]
            assert all(is_sealed(t) for t, _ in _stored(engine))
        finally:
            running.stop()
    finally:
        engine.dispose()
