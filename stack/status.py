"""`cdx status`: asks each component of a single-box instance how it is (from another shell).

Health comes from the standard gRPC health service of each server (mutual TLS with the
instance's inspector certificate); the global-configuration age from each server's last good
copy (verified against the anchor); the outbox lag from each security server's database; the
log size from the audit log's latest checkpoint.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdx import db, errors, rpc
from cdx.clock import utcnow
from cdx.globalconf import verify_global_conf
from cdx.keyfiles import load_identity
from cdx.paths import InstancePaths
from cdx.v1 import audit_pb2, audit_pb2_grpc
from security_server.config import load_config
from security_server.keystore import GLOBAL_CONF
from stack.provision import InstanceLayout


def _health(address: str, identity: rpc.TlsIdentity) -> str:
    channel = rpc.secure_channel(address, identity)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=3
        )
        return (
            "serving" if reply.status == health_pb2.HealthCheckResponse.SERVING else "not serving"
        )
    except grpc.RpcError as exc:
        return "down" if exc.code() == grpc.StatusCode.UNAVAILABLE else exc.code().name.lower()
    finally:
        channel.close()


def _outbox(config_file: Path) -> tuple[int, float | None]:
    from security_server.store import outbox

    config = load_config(config_file)
    engine = db.create_engine(config.db_url, schema=config.database_schema)
    try:
        with engine.connect() as conn:
            count, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(outbox.c.created_ms)).where(
                    outbox.c.shipped_ms.is_(None)
                )
            ).one()
    finally:
        engine.dispose()
    now_ms = int(utcnow().timestamp() * 1000)
    return int(count), (now_ms - oldest) / 1000 if oldest is not None else None


def collect_status(data_dir: Path) -> dict[str, Any]:
    """Status of every component; ``healthy`` is true only if all serve and nothing is stale.

    Raises:
        NotFoundError: ``data_dir`` holds no instance.
    """
    layout = InstanceLayout.load(data_dir)
    paths = InstancePaths(data_dir)
    passphrase = InstancePaths(data_dir).passphrase()
    d = layout.inspector_dir
    identity = load_identity(d / "inspector.pem", d / "inspector.key", paths.ca_pem, passphrase)
    anchor = paths.load_anchor()
    now = utcnow()
    rows: list[dict[str, str]] = []
    healthy = True

    def add(name: str, address: str, health: str, details: str = "") -> None:
        nonlocal healthy
        healthy = healthy and health == "serving"
        rows.append({"name": name, "address": address, "health": health, "details": details})

    add("registry", layout.registry, _health(layout.registry, identity))
    add("consent service", layout.consent, _health(layout.consent, identity))
    audit_health = _health(layout.audit, identity)
    details = ""
    if audit_health == "serving":
        channel = rpc.secure_channel(layout.audit, identity)
        try:
            cp = rpc.invoke(
                audit_pb2_grpc.AuditLogStub(channel).GetCheckpoint,
                audit_pb2.GetCheckpointRequest(),
                timeout=3,
            )
            age = now.timestamp() - cp.published_at_ms / 1000
            details = f"log size {cp.size}, checkpoint {age:.0f}s old"
        except errors.CdxError as exc:
            details = f"checkpoint unavailable ({exc.code})"
        finally:
            channel.close()
    add("audit log", layout.audit, audit_health, details)
    for key, a in layout.agencies.items():
        health = _health(a.exchange, identity)
        parts = []
        try:
            raw = (a.server_dir / GLOBAL_CONF).read_bytes()
            conf = verify_global_conf(raw, anchor, now, allow_expired=True)
            parts.append(f"conf v{conf.version} age {(now - conf.issued_at).total_seconds():.0f}s")
            if conf.expired(now):
                parts.append("CONF EXPIRED")
                healthy = False
        except FileNotFoundError:
            parts.append("no conf copy")
        except errors.CdxError as exc:
            parts.append(f"conf invalid ({exc.code})")
            healthy = False
        try:
            depth, lag = _outbox(a.config_file)
            parts.append(f"outbox {depth} unshipped" + (f", oldest {lag:.0f}s" if lag else ""))
            if lag is not None and lag > timedelta(minutes=5).total_seconds():
                healthy = False
        except (sa.exc.SQLAlchemyError, errors.CdxError):
            parts.append("outbox unreadable")
        add(f"{key} security server", a.exchange, health, ", ".join(parts))
        add(f"{key} backend", a.backend, "serving" if _tcp_open(a.backend) else "down")
    return {"healthy": healthy, "components": rows, "data_dir": str(data_dir)}


def _tcp_open(address: str) -> bool:
    import socket

    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False
