"""Reading what a database keeps at rest, the way someone holding its files would, and looking
for national ids in it: in clear, as an unkeyed SHA-256 (12-digit ids are enumerable, so a
plain hash is as good as the id), or inside base64 text such as a JWS payload."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def personal_forms(national_id: str) -> list[bytes]:
    """The byte strings that give a national id away."""
    value = national_id.encode()
    digest = hashlib.sha256(value).digest()
    forms = [value, digest, digest.hex().encode(), digest.hex().upper().encode()]
    for offset in range(3):  # base64 text of the id at each of the three byte alignments
        start = -(-offset * 8 // 6)  # the first character made only of the id's bits
        end = (offset + len(value)) * 8 // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.append(encode(b"\x00" * offset + value)[start:end])
    return forms


def ids_found(blob: bytes, national_ids: Iterable[str]) -> list[str]:
    """The national ids some form of which occurs in ``blob``."""
    return sorted(n for n in national_ids if any(f in blob for f in personal_forms(n)))


def table_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table the engine sees (its schema), as SQL returns them."""
    tables: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for name in sorted(sa.inspect(conn).get_table_names()):
            rows = conn.execute(sa.text(f'SELECT * FROM "{name}"')).mappings().all()
            tables[name] = sorted((dict(r) for r in rows), key=lambda r: json.dumps(r, default=str))
    return tables


def table_bytes(engine: Engine) -> bytes:
    """``table_rows`` as one blob (bytes values as their ``repr``)."""
    return json.dumps(table_rows(engine), default=repr, ensure_ascii=False).encode()


def sqlite_file_bytes(path: Path) -> bytes:
    """The database file and its write-ahead log and shared-memory files, as on disk."""
    return b"".join(
        p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")) if p.is_file()
    )


def postgres_file_bytes(engine: Engine, schema: str) -> bytes:
    """The on-disk files of every table, index and TOAST relation of ``schema``, read by the
    server itself (``pg_read_binary_file``, superuser) after a ``CHECKPOINT`` has written
    every dirty page out."""
    with engine.connect() as conn:
        conn.execute(sa.text("CHECKPOINT"))
        paths = conn.execute(
            sa.text(
                """
                WITH own AS (
                    SELECT c.oid, c.reltoastrelid FROM pg_class c
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = :schema AND c.relkind IN ('r', 'i', 'm')
                ), toast AS (
                    SELECT reltoastrelid AS oid FROM own WHERE reltoastrelid <> 0
                    UNION SELECT i.indexrelid FROM pg_index i
                    JOIN own o ON i.indrelid = o.reltoastrelid
                )
                SELECT pg_relation_filepath(oid) FROM (
                    SELECT oid FROM own UNION SELECT oid FROM toast
                ) r
                """
            ),
            {"schema": schema},
        ).scalars()
        blobs = [
            conn.execute(sa.text("SELECT pg_read_binary_file(:p)"), {"p": p}).scalar_one()
            for p in paths
            if p
        ]
        conn.commit()
    return b"".join(bytes(b) for b in blobs)
