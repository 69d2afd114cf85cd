"""The consent database the ``consent_0002`` service wrote (``data/consent_0002.json``, see the
README there): its rows, its keys, and a ``ConsentService`` over them at the recording time."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.engine import Engine

from cdx import crypto
from cdx.globalconf import VerifiedGlobalConf
from consent import store
from consent.model import from_ms
from consent.sealing import DataKeys
from consent.service import ConsentService

FIXTURE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "consent_0002.json").read_text()
)
CITIZENS: dict[str, str] = FIXTURE["citizens"]
IDS: dict[str, str] = FIXTURE["consents"]
TAG_KEY = bytes.fromhex(FIXTURE["keys"]["tag_key_hex"])
ARTEFACT_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(
    bytes.fromhex(FIXTURE["keys"]["artefact_key_hex"])
)
#: One minute after the recording: every consent is as it was left.
NOW = from_ms(FIXTURE["recorded_at_ms"]) + timedelta(minutes=1)
ISSUER = "urn:cdx:VN:consent"


def load_rows(engine: Engine) -> None:
    """Write the recorded rows into a database migrated to ``consent_0002``."""
    tables = FIXTURE["tables"]
    with engine.begin() as conn:
        conn.execute(store.consents.insert(), tables["consents"])
        conn.execute(store.consent_events.insert(), tables["consent_events"])
        conn.execute(
            store.consent_feed.update()
            .where(store.consent_feed.c.id == 1)
            .values(last_seq=tables["consent_feed"][0]["last_seq"])
        )
        conn.execute(store.consent_audit_cursor.insert(), tables["consent_audit_cursor"])


def old_row(consent_id: str) -> dict[str, Any]:
    return next(r for r in FIXTURE["tables"]["consents"] if r["id"] == consent_id)


def _no_conf() -> VerifiedGlobalConf:
    raise AssertionError("listing, checking and changing state need no global configuration")


def service_at_recording(engine: Engine, keys: DataKeys) -> ConsentService:
    """The consent service over ``engine`` with the recorded keys (close it after use)."""
    return ConsentService(
        engine,
        signer=crypto.KeySigner(ARTEFACT_KEY),
        tag_key=TAG_KEY,
        data_keys=keys,
        conf=_no_conf,
        clock=lambda: NOW,
        issuer=ISSUER,
    )
