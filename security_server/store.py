"""Tables of a security server: the access-record outbox, its dead letters, the replay cache.

Both live in the database (not in memory) so that replicas of one server share them (DESIGN §9)
and a restart loses nothing. Hot paths use SQLAlchemy Core through ``GroupCommitter``.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: One row per access record this server made. ``sealed_opening`` (the salts and the subject id,
#: AES-256-GCM encrypted at rest) is cleared once the audit log has accepted the record.
outbox = sa.Table(
    "ss_outbox",
    metadata,
    sa.Column("seq", _BIGINT_PK, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(36), nullable=False, unique=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("signed_record", sa.LargeBinary, nullable=False),
    sa.Column("sealed_opening", sa.LargeBinary, nullable=True),
    sa.Column("shipped_ms", sa.BigInteger, nullable=True),
    sa.Column("log_index", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(64), nullable=True),
)
sa.Index("ix_ss_outbox_pending", outbox.c.shipped_ms, outbox.c.seq)

#: Outbox records the audit log refused for good (``security_server.refusals``): a row here
#: takes its record out of the shipping queue; the record itself stays in ``ss_outbox``, signed
#: and with its opening, so nothing is copied or lost. ``requeued_ms`` is set when an operator
#: puts it back in the queue; rows are never deleted, so the history of refusals stays.
#: ``released`` marks a record of released data (ALLOW): it still counts against the backlog
#: window, since the log must hold every release.
dead_letters = sa.Table(
    "ss_dead_letters",
    metadata,
    sa.Column("id", _BIGINT_PK, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(36), nullable=False),
    sa.Column("dead_ms", sa.BigInteger, nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("released", sa.Boolean, nullable=False),
    sa.Column("requeued_ms", sa.BigInteger, nullable=True),
)
sa.Index("ix_ss_dead_letters_record", dead_letters.c.record_id, dead_letters.c.requeued_ms)

#: Message ids seen within the freshness window; the primary key makes a replay fail.
replay = sa.Table(
    "ss_replay",
    metadata,
    sa.Column("consumer_server", sa.String(300), primary_key=True),
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
)
sa.Index("ix_ss_replay_expires", replay.c.expires_ms)


_INSERT_SQL: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}


def fast_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, object]]) -> None:
    """Insert ``rows`` through the driver's own ``executemany``, inside ``conn``'s transaction.

    The outbox and replay inserts are the hot path of every exchange; SQLAlchemy's statement
    execution costs several times the driver call for these fixed, trusted statements. Values
    are still bound parameters (never interpolated). Every row must have the same keys.
    """
    if not rows:
        return
    columns = tuple(rows[0])
    key = (f"{table.name}:{','.join(columns)}", conn.dialect.paramstyle)
    cached = _INSERT_SQL.get(key)
    if cached is None:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608 - fixed identifiers
            f"VALUES ({', '.join(mark for _ in columns)})"
        )
        cached = _INSERT_SQL[key] = (sql, columns)
    sql, names = cached
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, [tuple(row[c] for c in names) for row in rows])
    finally:
        cursor.close()
