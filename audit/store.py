"""The audit log's tables (SQLAlchemy Core) and the queries over them; no policy here.

Layout (DESIGN §8):

- ``audit_leaves``: one row per log entry, ``idx`` = leaf index; ``leaf`` is the serialized
  ``SignedAccessRecord`` exactly as hashed; the other columns are copies of record fields for
  search (never a national id or a payload value: the record holds salted commitments only);
- ``audit_nodes``: every perfect-subtree hash of level >= 1 (level 0 is ``leaves.leaf_hash``),
  so an inclusion or consistency proof is one indexed read of O(log n) rows;
- ``audit_tree_state``: the single compare-and-swap row (size, root, frontier, version);
- ``audit_checkpoints`` / ``audit_cosignatures``: signed checkpoints and witness cosignatures;
- ``audit_openings``: commitment openings, AES-256-GCM under the key of their epoch;
- ``audit_keys``: epoch keys and the subject-index key, each HPKE-wrapped to the log's master
  key; shredding an epoch erases its wrapped key (the row stays, marked destroyed);
- ``audit_subject_index``: HMAC-SHA256(index key, subject) -> entry index (never the id);
- ``audit_unseals``: sealed records an inspector has made visible to the citizen;
- ``audit_refused``: every append the log refused for good (recorder, record id, code, time;
  never the record itself), so inspectors can see what an outbox holds as a dead letter.

The migrations make leaves, nodes, checkpoints, cosignatures, openings, unseals and refusals
append-only
(triggers reject UPDATE/DELETE on SQLite and PostgreSQL) and forbids shrinking the tree state.
Times are Unix milliseconds.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from cdx import db, errors, merkle
from cdx.v1 import common_pb2

metadata = sa.MetaData()

_IDX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_HASH = sa.LargeBinary(32)

leaves = sa.Table(
    "audit_leaves",
    metadata,
    sa.Column("idx", _IDX, primary_key=True, autoincrement=False),
    sa.Column("record_id", sa.String(64), nullable=False, unique=True),
    sa.Column("leaf", sa.LargeBinary, nullable=False),
    sa.Column("leaf_hash", _HASH, nullable=False),
    sa.Column("recorder", sa.String(300), nullable=False),
    sa.Column("role", sa.SmallInteger, nullable=False),
    sa.Column("client", sa.String(300), nullable=False),
    sa.Column("service", sa.String(400), nullable=False),
    sa.Column("purpose", sa.String(100), nullable=False),
    sa.Column("decision", sa.SmallInteger, nullable=False),
    sa.Column("reason", sa.String(100), nullable=False),
    sa.Column("time_ms", sa.BigInteger, nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False),
    sa.Column("visibility", sa.SmallInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("integrated_at_ms", sa.BigInteger, nullable=False),
)
sa.Index("ix_audit_leaves_client_time", leaves.c.client, leaves.c.time_ms)
sa.Index("ix_audit_leaves_service_time", leaves.c.service, leaves.c.time_ms)
sa.Index("ix_audit_leaves_time", leaves.c.time_ms)
sa.Index("ix_audit_leaves_message", leaves.c.message_id)

nodes = sa.Table(
    "audit_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", _HASH, nullable=False),
    sqlite_with_rowid=False,
)

tree_state = sa.Table(
    "audit_tree_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", _HASH, nullable=False),
    sa.Column("frontier", sa.LargeBinary, nullable=False),  # merkle.Frontier.to_bytes()
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", _HASH, nullable=False),
    sa.Column("note", sa.Text, nullable=False),  # the log-signed note, without cosignatures
    sa.Column("published_at_ms", sa.BigInteger, nullable=False),
)

cosignatures = sa.Table(
    "audit_cosignatures",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("witness", sa.String(300), primary_key=True),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
)

openings = sa.Table(
    "audit_openings",
    metadata,
    sa.Column("idx", _IDX, primary_key=True, autoincrement=False),
    sa.Column("epoch", sa.String(16), nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
)

keys = sa.Table(
    "audit_keys",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),  # "index" or "epoch:YYYY-MM"
    sa.Column("wrapped", sa.LargeBinary, nullable=True),  # NULL once destroyed
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("destroyed_at_ms", sa.BigInteger, nullable=True),
)

subject_index = sa.Table(
    "audit_subject_index",
    metadata,
    sa.Column("subject_mac", _HASH, primary_key=True),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("epoch", sa.String(16), nullable=False),
    sqlite_with_rowid=False,
)
sa.Index("ix_audit_subject_index_epoch", subject_index.c.epoch)

unseals = sa.Table(
    "audit_unseals",
    metadata,
    sa.Column("record_id", sa.String(64), primary_key=True),
    sa.Column("unseal_idx", sa.BigInteger, nullable=False),
    sa.Column("unsealed_at_ms", sa.BigInteger, nullable=False),
)

refused = sa.Table(
    "audit_refused",
    metadata,
    sa.Column("id", _IDX, primary_key=True, autoincrement=True),
    sa.Column("recorder", sa.String(300), nullable=False),
    sa.Column("record_id", sa.String(64), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("refused_at_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("recorder", "record_id", "code", name="uq_audit_refused_item"),
)

#: Tables whose rows are never updated or deleted (the migrations install the triggers).
APPEND_ONLY_TABLES = (
    "audit_leaves",
    "audit_nodes",
    "audit_checkpoints",
    "audit_cosignatures",
    "audit_openings",
    "audit_unseals",
    "audit_refused",
)

#: Largest number of bound values per IN list (SQLite's default limit is 32,766).
_CHUNK = 500


# --- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeState:
    """The committed tree: size, root, the frontier to extend it, and the CAS version."""

    size: int
    root: bytes
    frontier: merkle.Frontier
    version: int


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One stored log entry (the leaf and its search columns)."""

    idx: int
    record_id: str
    leaf: bytes
    leaf_hash: bytes
    recorder: str
    role: int
    client: str
    service: str
    purpose: str
    decision: int
    reason: str
    time_ms: int
    message_id: str
    visibility: int
    kind: str
    integrated_at_ms: int


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A published checkpoint and the cosignature lines received for it."""

    size: int
    root: bytes
    note: str
    published_at_ms: int
    cosignature_lines: tuple[str, ...] = ()

    @property
    def note_with_cosignatures(self) -> str:
        """The log-signed note followed by every cosignature line (a valid signed note)."""
        return self.note + "".join(self.cosignature_lines)


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """An append the log refused for good."""

    id: int
    recorder: str
    record_id: str
    code: str
    refused_at_ms: int


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Inspector search criteria; empty/None fields do not filter."""

    client: str = ""
    service: str = ""
    purpose: str = ""
    decision: int = 0
    from_ms: int = 0
    until_ms: int = 0
    subject_mac: bytes | None = None
    recorder: str = ""
    message_id: str = ""
    kind: str = ""
    one_sided_only: bool = False
    after_index: int = -1
    limit: int = 100


_ENTRY_COLUMNS = (
    leaves.c.idx,
    leaves.c.record_id,
    leaves.c.leaf,
    leaves.c.leaf_hash,
    leaves.c.recorder,
    leaves.c.role,
    leaves.c.client,
    leaves.c.service,
    leaves.c.purpose,
    leaves.c.decision,
    leaves.c.reason,
    leaves.c.time_ms,
    leaves.c.message_id,
    leaves.c.visibility,
    leaves.c.kind,
    leaves.c.integrated_at_ms,
)


def _entry(row: Any) -> EntryRow:
    return EntryRow(
        idx=int(row.idx),
        record_id=row.record_id,
        leaf=bytes(row.leaf),
        leaf_hash=bytes(row.leaf_hash),
        recorder=row.recorder,
        role=int(row.role),
        client=row.client,
        service=row.service,
        purpose=row.purpose,
        decision=int(row.decision),
        reason=row.reason,
        time_ms=int(row.time_ms),
        message_id=row.message_id,
        visibility=int(row.visibility),
        kind=row.kind,
        integrated_at_ms=int(row.integrated_at_ms),
    )


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table) -> Any:
    """An INSERT that skips rows whose primary key exists (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


# --- tree state --------------------------------------------------------------------------------


def initial_tree_state_row(now_ms: int) -> dict[str, Any]:
    """The row of the empty tree (inserted by the migration)."""
    return {
        "id": 1,
        "size": 0,
        "root": merkle.EMPTY_ROOT,
        "frontier": merkle.Frontier().to_bytes(),
        "version": 0,
        "updated_at_ms": now_ms,
    }


def read_tree_state(conn: sa.Connection) -> TreeState:
    """Read the committed tree state.

    Raises:
        InternalError: the row is missing or its frontier does not match its size and root.
    """
    row = conn.execute(sa.select(tree_state).where(tree_state.c.id == 1)).one_or_none()
    if row is None:
        raise errors.InternalError("the audit tree state is missing (run the migrations)")
    try:
        frontier = merkle.Frontier.from_bytes(bytes(row.frontier))
    except errors.CdxError as exc:
        raise errors.InternalError("the audit tree state is corrupt") from exc
    if frontier.size != row.size or frontier.root() != bytes(row.root):
        raise errors.InternalError("the audit tree state is inconsistent")
    return TreeState(int(row.size), bytes(row.root), frontier, int(row.version))


def swap_tree_state(
    conn: sa.Connection, old: TreeState, frontier: merkle.Frontier, now_ms: int
) -> TreeState | None:
    """Compare-and-swap the tree state from ``old`` to ``frontier``; ``None`` if another
    writer moved it first (the caller rolls back and re-reads)."""
    new_root = frontier.root()
    result = conn.execute(
        tree_state.update()
        .where(
            tree_state.c.id == 1,
            tree_state.c.size == old.size,
            tree_state.c.version == old.version,
        )
        .values(
            size=frontier.size,
            root=new_root,
            frontier=frontier.to_bytes(),
            version=old.version + 1,
            updated_at_ms=now_ms,
        )
    )
    if result.rowcount != 1:
        return None
    return TreeState(frontier.size, new_root, frontier, old.version + 1)


# --- proofs ------------------------------------------------------------------------------------


def fetch_subtree_hashes(
    conn: sa.Connection, ranges: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Fetch the hashes of perfect subtrees ``[start, end)`` (level 0 from the leaves).

    One round trip: proofs are O(log n) rows and their latency is mostly per-query overhead.
    """
    by_level: dict[int, list[int]] = {}
    for start, end in set(ranges):
        level, index = merkle.subtree_coordinates(start, end)
        by_level.setdefault(level, []).append(index)
    out: dict[tuple[int, int], bytes] = {}
    if not by_level:
        return out
    params: dict[str, int] = {}
    parts: list[str] = []
    node_conds: list[str] = []
    for n, (level, idxs) in enumerate(sorted(by_level.items())):
        names = []
        for m, idx in enumerate(idxs):
            params[f"i{n}_{m}"] = int(idx)
            names.append(f":i{n}_{m}")
        if level == 0:
            in_list = ", ".join(names)
            parts.append(
                "SELECT 0 AS level, idx, leaf_hash AS hash "  # noqa: S608 - placeholders only
                f"FROM audit_leaves WHERE idx IN ({in_list})"
            )
        else:
            params[f"l{n}"] = int(level)
            # One IN list per level, OR-ed: SQLite uses the primary key for this form (a
            # "multi-index OR") but not for a row-value IN list.
            node_conds.append(f"(level = :l{n} AND idx IN ({', '.join(names)}))")
    if node_conds:
        where = " OR ".join(node_conds)
        parts.append(f"SELECT level, idx, hash FROM audit_nodes WHERE {where}")  # noqa: S608
    # Only placeholders are formatted into the statement; every value is a bound parameter.
    rows = conn.execute(sa.text(" UNION ALL ".join(parts)), params)
    for level, idx, h in rows:
        start = int(idx) << int(level)
        out[(start, start + (1 << int(level)))] = bytes(h)
    return out


def read_subtrees(conn: sa.Connection, subtrees: Iterable[tuple[int, int]]) -> merkle.SubtreeHashes:
    """The stored hashes of the given perfect subtrees, read in one query, as a reader that
    ``cdx.merkle`` builds proofs and roots from."""
    return merkle.SubtreeHashes(fetch_subtree_hashes(conn, subtrees))


def consistency_proof(conn: sa.Connection, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 consistency proof between two stored tree sizes.

    Raises:
        InvalidArgumentError: ``size1 > size2``.
        InternalError: a stored node is missing.
    """
    ranges = merkle.consistency_ranges(size1, size2)
    return merkle.consistency_proof(
        read_subtrees(conn, merkle.proof_subtrees(ranges)), size1, size2
    )


def stored_root(conn: sa.Connection, size: int) -> bytes:
    """Recompute the root of the first ``size`` leaves from the stored perfect subtrees."""
    return merkle.Frontier.from_reader(read_subtrees(conn, merkle.root_ranges(size)), size).root()


# --- the store ---------------------------------------------------------------------------------


class AuditStore:
    """Reads and small writes over the audit tables (the sequencer writes leaves itself)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.writer = db.writer(engine)
        self._committed = 0
        self._local = threading.local()
        self._readers: list[sa.Connection] = []
        self._readers_lock = threading.Lock()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A read transaction on this thread's own long-lived connection.

        Opening a connection per request (SQLite runs without a pool here) cost more than a
        proof; each read still gets its own short transaction, so no snapshot is held.
        """
        conn: sa.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        try:
            with conn.begin():
                yield conn
        except sa.exc.DBAPIError:
            self._local.conn = None
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.invalidate()
            raise

    def close(self) -> None:
        """Close the per-thread read connections."""
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.close()

    # tree and entries

    def tree_state(self) -> TreeState:
        """The committed tree state."""
        with self._read() as conn:
            state = read_tree_state(conn)
        self.note_committed(state.size)
        return state

    def note_committed(self, size: int) -> None:
        """Remember that ``size`` leaves are committed (saves a read per proof)."""
        if size > self._committed:
            self._committed = size

    def _check_committed(self, conn: sa.Connection, size: int) -> None:
        if size > self._committed:
            self.note_committed(read_tree_state(conn).size)
            if size > self._committed:
                raise errors.InvalidArgumentError("tree size is beyond the committed tree")

    def inclusion_proof(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """``(leaf hash, proof)`` for leaf ``index`` in the tree of ``size`` leaves.

        Raises:
            InvalidArgumentError: ``index >= size`` or ``size`` beyond the committed tree.
        """
        wanted = merkle.proof_subtrees(merkle.inclusion_ranges(index, size))  # validates
        with self._read() as conn:
            self._check_committed(conn, size)
            fetched = read_subtrees(conn, [*wanted, (index, index + 1)])
        return fetched.subtree_hash(index, index + 1), merkle.inclusion_proof(fetched, index, size)

    def inclusion_proofs(
        self, indexes: Sequence[int], size: int
    ) -> dict[int, tuple[bytes, list[bytes]]]:
        """``idx -> (leaf hash, proof)`` for many leaves of one tree size, in few queries.

        Raises:
            InvalidArgumentError: an index not below ``size``, or ``size`` beyond the tree.
        """
        out: dict[int, tuple[bytes, list[bytes]]] = {}
        with self._read() as conn:
            self._check_committed(conn, size)
            for chunk in _chunks(list(indexes), 200):
                wanted: set[tuple[int, int]] = set()
                for index in chunk:
                    wanted.update(merkle.proof_subtrees(merkle.inclusion_ranges(index, size)))
                    wanted.add((index, index + 1))
                fetched = read_subtrees(conn, wanted)
                for index in chunk:
                    out[index] = (
                        fetched.subtree_hash(index, index + 1),
                        merkle.inclusion_proof(fetched, index, size),
                    )
        return out

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """Consistency proof between two committed sizes.

        Raises:
            InvalidArgumentError: ``size1 > size2`` or ``size2`` beyond the committed tree.
        """
        wanted = merkle.proof_subtrees(merkle.consistency_ranges(size1, size2))  # validates
        with self._read() as conn:
            self._check_committed(conn, size2)
            fetched = read_subtrees(conn, wanted)
        return merkle.consistency_proof(fetched, size1, size2)

    def root_at(self, size: int) -> bytes:
        """The root of the first ``size`` committed leaves, from the stored nodes."""
        with self._read() as conn:
            self._check_committed(conn, size)
            return stored_root(conn, size)

    def entries(self, start: int, end: int) -> list[EntryRow]:
        """Entries with ``start <= idx < end``, in order."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(*_ENTRY_COLUMNS)
                .where(leaves.c.idx >= start, leaves.c.idx < end)
                .order_by(leaves.c.idx)
            )
            return [_entry(r) for r in rows]

    def leaves_between(self, start: int, end: int) -> list[bytes]:
        """The leaves (exact signed bytes) with ``start <= idx < end``, in order."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(leaves.c.leaf)
                .where(leaves.c.idx >= start, leaves.c.idx < end)
                .order_by(leaves.c.idx)
            )
            return [bytes(r.leaf) for r in rows]

    def hashes_at(self, level: int, first: int, count: int) -> bytes:
        """The hashes of ``count`` consecutive perfect subtrees of tree level ``level`` (leaf
        hashes at 0), starting at index ``first``, concatenated (the contents of a tile).

        Raises:
            InternalError: the store lacks one of them.
        """
        if level == 0:
            query = (
                sa.select(leaves.c.leaf_hash.label("hash"))
                .where(leaves.c.idx >= first, leaves.c.idx < first + count)
                .order_by(leaves.c.idx)
            )
        else:
            query = (
                sa.select(nodes.c.hash)
                .where(nodes.c.level == level, nodes.c.idx >= first, nodes.c.idx < first + count)
                .order_by(nodes.c.idx)
            )
        with self._read() as conn:
            found = [bytes(r.hash) for r in conn.execute(query)]
        if len(found) != count:
            raise errors.InternalError("tree nodes are missing from the audit store")
        return b"".join(found)

    def entries_by_index(self, indexes: Sequence[int]) -> dict[int, EntryRow]:
        """Entries with the given indexes."""
        out: dict[int, EntryRow] = {}
        with self._read() as conn:
            for chunk in _chunks(list(indexes)):
                for r in conn.execute(sa.select(*_ENTRY_COLUMNS).where(leaves.c.idx.in_(chunk))):
                    out[int(r.idx)] = _entry(r)
        return out

    def find_record(self, record_id: str) -> EntryRow | None:
        """The entry holding ``record_id``, if sequenced."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(*_ENTRY_COLUMNS).where(leaves.c.record_id == record_id)
            ).one_or_none()
        return _entry(row) if row is not None else None

    def search(self, f: SearchFilter) -> list[EntryRow]:
        """Entries matching ``f``, by index, at most ``f.limit``."""
        query = sa.select(*_ENTRY_COLUMNS)
        conds: list[Any] = []
        if f.client:
            conds.append(
                sa.or_(
                    leaves.c.client == f.client,
                    leaves.c.client.startswith(f.client + ":", autoescape=True),
                )
            )
        if f.service:
            conds.append(
                sa.or_(
                    leaves.c.service == f.service,
                    leaves.c.service.startswith(f.service + "/", autoescape=True),
                )
            )
        if f.purpose:
            conds.append(leaves.c.purpose == f.purpose)
        if f.decision:
            conds.append(leaves.c.decision == f.decision)
        if f.from_ms:
            conds.append(leaves.c.time_ms >= f.from_ms)
        if f.until_ms:
            conds.append(leaves.c.time_ms < f.until_ms)
        if f.recorder:
            conds.append(leaves.c.recorder == f.recorder)
        if f.message_id:
            conds.append(leaves.c.message_id == f.message_id)
        if f.kind:
            conds.append(leaves.c.kind == f.kind)
        if f.after_index >= 0:
            conds.append(leaves.c.idx > f.after_index)
        if f.subject_mac is not None:
            conds.append(
                leaves.c.idx.in_(
                    sa.select(subject_index.c.idx).where(
                        subject_index.c.subject_mac == f.subject_mac
                    )
                )
            )
        if f.one_sided_only:
            other = leaves.alias("other")
            conds.append(leaves.c.kind == "access")
            conds.append(
                ~sa.exists().where(
                    other.c.message_id == leaves.c.message_id,
                    other.c.role != leaves.c.role,
                    other.c.kind == "access",
                )
            )
        query = query.where(*conds).order_by(leaves.c.idx).limit(f.limit)
        with self._read() as conn:
            return [_entry(r) for r in conn.execute(query)]

    def subject_history(self, subject_mac: bytes, below: int, limit: int) -> list[EntryRow]:
        """A subject's entries with an index below ``below``, newest first, at most ``limit``;
        SEALED entries only once unsealed (filtered here, so sealed entries cannot crowd the
        visible ones out of a page)."""
        visible = sa.or_(
            leaves.c.visibility != common_pb2.SEALED,
            sa.exists().where(unseals.c.record_id == leaves.c.record_id),
        )
        query = (
            sa.select(*_ENTRY_COLUMNS)
            .join(subject_index, subject_index.c.idx == leaves.c.idx)
            .where(subject_index.c.subject_mac == subject_mac, leaves.c.idx < below, visible)
            .order_by(leaves.c.idx.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [_entry(r) for r in conn.execute(query)]

    def subject_macs_of(self, idx: int) -> list[tuple[bytes, str]]:
        """The subject-index keys (and epochs) of one entry."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(subject_index.c.subject_mac, subject_index.c.epoch).where(
                    subject_index.c.idx == idx
                )
            )
            return [(bytes(r.subject_mac), r.epoch) for r in rows]

    def sealed_openings(self, indexes: Sequence[int]) -> dict[int, tuple[str, bytes]]:
        """``idx -> (epoch, sealed opening)`` for the given entries."""
        out: dict[int, tuple[str, bytes]] = {}
        with self._read() as conn:
            for chunk in _chunks(list(indexes)):
                rows = conn.execute(
                    sa.select(openings.c.idx, openings.c.epoch, openings.c.sealed).where(
                        openings.c.idx.in_(chunk)
                    )
                )
                for r in rows:
                    out[int(r.idx)] = (r.epoch, bytes(r.sealed))
        return out

    def unsealed(self, record_ids: Sequence[str]) -> set[str]:
        """Which of ``record_ids`` an inspector has unsealed."""
        out: set[str] = set()
        with self._read() as conn:
            for chunk in _chunks(list(record_ids)):
                rows = conn.execute(
                    sa.select(unseals.c.record_id).where(unseals.c.record_id.in_(chunk))
                )
                out.update(r.record_id for r in rows)
        return out

    # checkpoints and cosignatures

    def _with_cosignatures(
        self, conn: sa.Connection, rows: Sequence[sa.Row[Any]]
    ) -> list[CheckpointRow]:
        sizes = [int(r.size) for r in rows]
        lines: dict[int, list[str]] = {s: [] for s in sizes}
        for chunk in _chunks(sizes):
            for c in conn.execute(
                sa.select(cosignatures.c.size, cosignatures.c.line)
                .where(cosignatures.c.size.in_(chunk))
                .order_by(cosignatures.c.size, cosignatures.c.witness)
            ):
                lines[int(c.size)].append(c.line)
        return [
            CheckpointRow(
                int(r.size),
                bytes(r.root),
                r.note,
                int(r.published_at_ms),
                tuple(lines[int(r.size)]),
            )
            for r in rows
        ]

    def latest_checkpoint(
        self, min_cosignatures: int = 0, witnesses: Collection[str] | None = None
    ) -> CheckpointRow | None:
        """The newest checkpoint (with at least ``min_cosignatures`` cosignatures, by the given
        ``witnesses`` only when named)."""
        query = sa.select(checkpoints)
        if min_cosignatures > 0:
            counted = sa.select(cosignatures.c.size)
            if witnesses is not None:
                counted = counted.where(cosignatures.c.witness.in_(sorted(witnesses)))
            counted = counted.group_by(cosignatures.c.size).having(
                sa.func.count() >= min_cosignatures
            )
            query = query.where(checkpoints.c.size.in_(counted))
        query = query.order_by(checkpoints.c.size.desc()).limit(1)
        with self._read() as conn:
            rows = conn.execute(query).all()
            found = self._with_cosignatures(conn, rows)
        return found[0] if found else None

    def checkpoint_at(self, size: int) -> CheckpointRow | None:
        """The checkpoint of tree size ``size``, if one was published."""
        with self._read() as conn:
            rows = conn.execute(sa.select(checkpoints).where(checkpoints.c.size == size)).all()
            found = self._with_cosignatures(conn, rows)
        return found[0] if found else None

    def checkpoint_sizes_between(self, after_size: int, before_size: int, newest: int) -> list[int]:
        """The sizes of the (at most ``newest``) most recent checkpoints with
        ``after_size < size < before_size``, smallest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(checkpoints.c.size)
                .where(checkpoints.c.size > after_size, checkpoints.c.size < before_size)
                .order_by(checkpoints.c.size.desc())
                .limit(newest)
            ).all()
        return sorted(int(r.size) for r in rows)

    def list_checkpoints(self, after_size: int, limit: int) -> list[CheckpointRow]:
        """Checkpoints with ``size > after_size`` (all when ``after_size < 0``), oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(checkpoints)
                .where(checkpoints.c.size > after_size)
                .order_by(checkpoints.c.size)
                .limit(limit)
            ).all()
            return self._with_cosignatures(conn, rows)

    def insert_checkpoint(self, size: int, root: bytes, note: str, now_ms: int) -> bool:
        """Store a checkpoint; ``False`` if one of this size exists (another process won)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                insert_ignoring_duplicates(conn, checkpoints).values(
                    size=size, root=root, note=note, published_at_ms=now_ms
                )
            )
            return bool(result.rowcount)

    def insert_cosignature(
        self, size: int, witness: str, line: str, timestamp: int, now_ms: int
    ) -> bool:
        """Store a witness's cosignature of checkpoint ``size``; ``False`` if already held."""
        with self.engine.begin() as conn:
            result = conn.execute(
                insert_ignoring_duplicates(conn, cosignatures).values(
                    size=size,
                    witness=witness,
                    line=line,
                    timestamp=timestamp,
                    received_at_ms=now_ms,
                )
            )
            return bool(result.rowcount)

    # refused appends

    def insert_refused(self, rows: Sequence[tuple[str, str, str]], now_ms: int) -> None:
        """Keep ``(recorder, record id, code)`` refusals; one that was kept before is not again
        (an outbox retrying a refused record adds nothing)."""
        if not rows:
            return
        values = [
            {"recorder": r, "record_id": rid, "code": code, "refused_at_ms": now_ms}
            for r, rid, code in dict.fromkeys(rows)
        ]
        with self.engine.begin() as conn:
            conn.execute(insert_ignoring_duplicates(conn, refused), values)

    def list_refused(self, after_id: int, limit: int, recorder: str = "") -> list[RefusedRow]:
        """Refusals with an id above ``after_id``, oldest first (optionally of one recorder)."""
        query = sa.select(refused).where(refused.c.id > after_id)
        if recorder:
            query = query.where(refused.c.recorder == recorder)
        with self._read() as conn:
            rows = conn.execute(query.order_by(refused.c.id).limit(limit))
            return [
                RefusedRow(int(r.id), r.recorder, r.record_id, r.code, int(r.refused_at_ms))
                for r in rows
            ]

    # keys

    def wrapped_keys(self, names: Sequence[str]) -> dict[str, bytes | None]:
        """``name -> wrapped key`` (``None`` when destroyed); absent names are not returned."""
        out: dict[str, bytes | None] = {}
        with self._read() as conn:
            for chunk in _chunks(list(names)):
                for r in conn.execute(
                    sa.select(keys.c.name, keys.c.wrapped).where(keys.c.name.in_(chunk))
                ):
                    out[r.name] = bytes(r.wrapped) if r.wrapped is not None else None
        return out

    def insert_key(self, name: str, wrapped: bytes, now_ms: int) -> None:
        """Store a wrapped key unless one of that name exists (then the stored one wins)."""
        with self.engine.begin() as conn:
            conn.execute(
                insert_ignoring_duplicates(conn, keys).values(
                    name=name, wrapped=wrapped, created_at_ms=now_ms, destroyed_at_ms=None
                )
            )

    def key_names(self, prefix: str) -> list[tuple[str, bool]]:
        """``(name, destroyed)`` of every key whose name starts with ``prefix``."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(keys.c.name, keys.c.wrapped)
                .where(keys.c.name.startswith(prefix, autoescape=True))
                .order_by(keys.c.name)
            )
            return [(r.name, r.wrapped is None) for r in rows]

    def destroy_keys(self, names: Sequence[str], epochs: Sequence[str], now_ms: int) -> int:
        """Erase wrapped keys and the subject-index rows of their epochs; returns keys erased."""
        erased = 0
        with self.writer.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            for chunk in _chunks(list(names)):
                erased += conn.execute(
                    keys.update()
                    .where(keys.c.name.in_(chunk), keys.c.wrapped.is_not(None))
                    .values(wrapped=None, destroyed_at_ms=now_ms)
                ).rowcount
            for chunk in _chunks(list(epochs)):
                conn.execute(subject_index.delete().where(subject_index.c.epoch.in_(chunk)))
        self._purge_dead_rows()
        return erased

    def _purge_dead_rows(self) -> None:
        """Make erased key bytes unrecoverable from the database files (best effort)."""
        if self.engine.dialect.name == "sqlite":
            with self._read() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM audit_keys")
            conn.exec_driver_sql("VACUUM audit_subject_index")
