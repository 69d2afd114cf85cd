"""A sample ``DataProvider`` backend: one register in a SQLite file, served over gRPC.

``start_backend("population", db_path)`` seeds the file on first use (``sample.rows``) and
serves ``DataProvider.Fetch`` on ``address`` (plaintext on loopback by default: the backend is
called only by its own security server). ``Fetch`` returns the subject's whole row as a
``Struct`` (like many legacy registers: the security server does the minimising) and raises
``NotFoundError`` for an unknown subject. ``minimise=True`` makes it honour ``fields``.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health

from cdx import errors, rpc
from cdx.ids import ServiceId
from cdx.v1 import exchange_pb2, exchange_pb2_grpc
from security_server.backends import sample


def seed_database(kind: str, db_path: Path) -> None:
    """Create register ``kind`` in ``db_path`` with the sample rows (idempotent).

    Raises:
        InvalidArgumentError: unknown kind.
    """
    if kind not in sample.KINDS:
        raise errors.InvalidArgumentError(f"unknown backend kind {kind!r}")
    info = sample.KINDS[kind]
    columns = ["subject", *info.fields, info.internal_field]
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {kind} ("
            + ", ".join(f"{c} {'TEXT PRIMARY KEY' if c == 'subject' else ''}" for c in columns)
            + ")"
        )
        placeholders = ", ".join("?" for _ in columns)
        conn.executemany(
            f"INSERT OR IGNORE INTO {kind} ({', '.join(columns)}) VALUES ({placeholders})",  # noqa: S608
            [tuple(row[c] for c in columns) for row in sample.rows(kind)],
        )


class SampleBackend(exchange_pb2_grpc.DataProviderServicer):  # type: ignore[misc]
    """``DataProvider.Fetch`` over one SQLite register."""

    def __init__(self, kind: str, db_path: Path, *, minimise: bool = False) -> None:
        self.kind = sample.KINDS[kind]
        self._db_path = db_path
        self._minimise = minimise
        self._local = threading.local()
        self.calls = 0

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self._db_path}?mode=ro", uri=True)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def Fetch(
        self, request: exchange_pb2.FetchRequest, context: grpc.ServicerContext
    ) -> exchange_pb2.FetchResponse:
        self.calls += 1
        try:
            code = ServiceId.parse(request.service).code
        except errors.InvalidIdentifierError as exc:
            raise errors.UnknownServiceError() from exc
        if code != self.kind.service_code:
            raise errors.UnknownServiceError("this backend does not serve that service")
        row = (
            self._conn()
            .execute(
                f"SELECT * FROM {self.kind.name} WHERE subject = ?",  # noqa: S608 - fixed table
                (request.subject,),
            )
            .fetchone()
        )
        if row is None:
            raise errors.NotFoundError("no record for this subject")
        wanted = set(request.fields) if self._minimise and request.fields else None
        response = exchange_pb2.FetchResponse()
        for key in row.keys():  # noqa: SIM118 - sqlite3.Row has no items()
            if key == "subject" or (wanted is not None and key not in wanted):
                continue
            response.data.fields[key].MergeFrom(_value(row[key]))
        return response


def _value(value: object) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, int | float):
        out.number_value = float(value)
    else:
        out.string_value = str(value)
    return out


@dataclass
class RunningBackend:
    kind: str
    address: str
    db_path: Path
    servicer: SampleBackend
    server: grpc.Server
    health: health.HealthServicer

    def stop(self, grace: float | None = 0.2) -> None:
        self.server.stop(grace).wait()

    def __enter__(self) -> RunningBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_backend(
    kind: str,
    db_path: str | Path,
    address: str = "127.0.0.1:0",
    *,
    minimise: bool = False,
    identity: rpc.TlsIdentity | None = None,
) -> RunningBackend:
    """Seed (if needed) and serve register ``kind`` from ``db_path`` on ``address``.

    Raises:
        InvalidArgumentError: unknown kind.
        UnavailableError: the address cannot be bound.
    """
    path = Path(db_path)
    seed_database(kind, path)
    servicer = SampleBackend(kind, path, minimise=minimise)
    server, health_servicer = rpc.create_server(identity, max_workers=16)
    exchange_pb2_grpc.add_DataProviderServicer_to_server(servicer, server)
    port = rpc.add_port(server, address, identity)
    server.start()
    rpc.mark_serving(health_servicer)
    host = address.rsplit(":", 1)[0]
    return RunningBackend(kind, f"{host}:{port}", path, servicer, server, health_servicer)
