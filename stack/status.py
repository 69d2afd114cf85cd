"""`cdx status`: asks each component of an instance how it is (from another shell).

Three ways to name the components, which may be combined:

- ``--data-dir DIR``: a single-box instance (``cdx up``): addresses from ``DIR/instance.toml``,
  asked with the instance's inspector certificate;
- ``--security-server FILE`` (repeatable): a multi-process deployment, from each security
  server's own ``server.toml``: the server (its registered address in global configuration),
  its registry, the audit log and consent service its verified global-configuration copy
  names, its backends; asked with that server's own auth certificate (so run it where the
  server runs, as the user it runs as). The outbox lag and dead letters come from the server's
  database;
- ``--health URL`` (repeatable): the ``/healthz`` of any process run with ``--health-listen``:
  its status, and what fails (checks and dependencies).

Health comes from each peer's standard gRPC health service (``cdx.dependencies.Prober``):
``serving``, ``not serving``, ``down`` (unreachable) or the error code. ``healthy`` is true only
if every component serves and nothing is stale (expired configuration, a backlog older than
the window, dead letters, a degraded health endpoint).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdx import db, errors, keyfiles, rpc
from cdx.clock import utcnow
from cdx.dependencies import NOT_SERVING, Dependency, Prober, channels
from cdx.globalconf import Anchor, VerifiedGlobalConf, verify_global_conf
from cdx.keyfiles import load_identity
from cdx.paths import InstancePaths
from cdx.v1 import audit_pb2, audit_pb2_grpc
from notify import store as notify_store
from notify.instance import NotifyPaths
from security_server import keystore
from security_server.config import SecurityServerConfig, load_config
from security_server.outbox import summary
from stack.provision import InstanceLayout, is_unbound

#: Backlog window assumed for a single-box instance's servers (their default).
DEFAULT_WINDOW = timedelta(minutes=5)


@dataclass
class _Report:
    """Rows of ``cdx status`` in the order they were added (one per component and address)."""

    healthy: bool = True
    rows: list[dict[str, str]] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, name: str, address: str, health: str, details: str = "") -> None:
        if (name, address) in self._seen:
            return
        self._seen.add((name, address))
        self.healthy = self.healthy and health == "serving"
        self.rows.append({"name": name, "address": address, "health": health, "details": details})

    def stale(self) -> None:
        self.healthy = False


def _probe(targets: Sequence[tuple[str, str, rpc.TlsIdentity | None]]) -> dict[str, str]:
    """Ask each ``(name, address, identity)`` for its gRPC health once; health by name."""
    prober = Prober(timeout=3.0)
    deps: dict[str, Dependency] = {}
    for name, address, identity in targets:
        deps[name] = Dependency(name, address)
        prober.add(deps[name], channels(identity))
    try:
        prober.probe_once()
    finally:
        prober.stop()
    out: dict[str, str] = {}
    for name, dep in deps.items():
        state = dep.state()
        if state.up:
            out[name] = "serving"
        elif state.last_error is None:
            out[name] = "no address"
        elif state.last_error.code == NOT_SERVING:
            out[name] = "not serving"
        elif state.last_error.code == errors.UnavailableError.code:
            out[name] = "down"
        else:
            out[name] = state.last_error.code
    return out


def _log_details(address: str, identity: rpc.TlsIdentity, now: datetime) -> str:
    channel = rpc.secure_channel(address, identity)
    try:
        cp = rpc.invoke(
            audit_pb2_grpc.AuditLogStub(channel).GetCheckpoint,
            audit_pb2.GetCheckpointRequest(),
            timeout=3,
        )
        age = now.timestamp() - cp.published_at_ms / 1000
        return f"log size {cp.size}, checkpoint {age:.0f}s old"
    except errors.CdxError as exc:
        return f"checkpoint unavailable ({exc.code})"
    finally:
        channel.close()


def _conf_copy(path: Path, anchor: Anchor, now: datetime) -> tuple[VerifiedGlobalConf | None, str]:
    """A server's last good global configuration, verified (expired copies included)."""
    try:
        conf = verify_global_conf(path.read_bytes(), anchor, now, allow_expired=True)
    except FileNotFoundError:
        return None, "no conf copy"
    except errors.CdxError as exc:
        return None, f"conf invalid ({exc.code})"
    text = f"conf v{conf.version} age {(now - conf.issued_at).total_seconds():.0f}s"
    return conf, text + (", CONF EXPIRED" if conf.expired(now) else "")


def _outbox_details(config: SecurityServerConfig, window: timedelta) -> tuple[str, bool]:
    """``(details, fine)`` of a server's outbox read from its database."""
    engine = db.create_engine(config.db_url, schema=config.database_schema)
    try:
        found = summary(engine)
    except errors.CdxError:
        return "outbox unreadable", False
    finally:
        engine.dispose()
    now_ms = int(utcnow().timestamp() * 1000)
    lag = (now_ms - found.oldest_queued_ms) / 1000 if found.oldest_queued_ms else None
    text = f"outbox {found.queued} unshipped" + (f", oldest {lag:.0f}s" if lag else "")
    if found.dead_letters:
        text += f", {found.dead_letters} DEAD LETTERS"
    late = lag is not None and window > timedelta(0) and lag > window.total_seconds()
    return text, not late and not found.dead_letters


# --- single box ----------------------------------------------------------------------------------


def _notify_details(paths: NotifyPaths) -> str:
    """Its outbox: messages waiting, sent and dead letters (``cdx notify dead-letters``)."""
    try:
        settings = paths.read_settings()
        url = settings.get("db_url") or db.sqlite_url(paths.database)
        engine = db.create_engine(url, schema=settings.get("db_schema"))
        try:
            with engine.connect() as conn:
                counts = notify_store.counts(conn)
        finally:
            engine.dispose()
    except (errors.CdxError, sa.exc.SQLAlchemyError):
        return "outbox unreadable"
    return (
        f"{counts['pending']} messages waiting, {counts['sent']} sent, "
        f"{counts['dead']} dead letters"
    )


def _single_box(data_dir: Path, report: _Report) -> None:
    layout = InstanceLayout.load(data_dir)
    paths = InstancePaths(data_dir)
    passphrase = InstancePaths(data_dir).passphrase()
    d = layout.inspector_dir
    identity = load_identity(d / "inspector.pem", d / "inspector.key", paths.ca_pem, passphrase)
    anchor = paths.load_anchor()
    now = utcnow()
    targets: list[tuple[str, str, rpc.TlsIdentity | None]] = [
        ("registry", layout.registry, identity),
        ("consent service", layout.consent, identity),
        ("audit log", layout.audit, identity),
    ]
    notify = not is_unbound(layout.notify) and NotifyPaths(data_dir).exists()
    if notify:
        targets.append(("notification service", layout.notify, identity))
    for key, a in layout.agencies.items():
        targets += [
            (f"{key} security server", a.exchange, identity),
            (f"{key} backend", a.backend, None),
        ]
    health = _probe(targets)
    report.add("registry", layout.registry, health["registry"])
    report.add("consent service", layout.consent, health["consent service"])
    audit = health["audit log"]
    details = _log_details(layout.audit, identity, now) if audit == "serving" else ""
    report.add("audit log", layout.audit, audit, details)
    if notify:
        report.add(
            "notification service",
            layout.notify,
            health["notification service"],
            _notify_details(NotifyPaths(data_dir)),
        )
    for key, a in layout.agencies.items():
        conf, conf_text = _conf_copy(a.server_dir / keystore.GLOBAL_CONF, anchor, now)
        if conf is None or conf.expired(now):
            report.stale()
        try:
            outbox_text, fine = _outbox_details(load_config(a.config_file), DEFAULT_WINDOW)
        except errors.CdxError:
            outbox_text, fine = "outbox unreadable", True
        if not fine:
            report.stale()
        name = f"{key} security server"
        report.add(name, a.exchange, health[name], f"{conf_text}, {outbox_text}")
        report.add(f"{key} backend", a.backend, health[f"{key} backend"])


# --- multi-process: from each security server's configuration -----------------------------------


def _local(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "::", "[::]", "") else address  # noqa: S104


def _security_server(config_file: Path, report: _Report) -> None:
    config = load_config(config_file)
    passphrase = keyfiles.read_passphrase(config.passphrase_path)
    keys = keystore.load_keys(config.data_dir, config.server_id, passphrase)
    now = utcnow()
    conf, conf_text = _conf_copy(config.data_dir / keystore.GLOBAL_CONF, keys.anchor, now)
    if conf is None or conf.expired(now):
        report.stale()
    registered = conf.servers.get(config.server_id) if conf is not None else None
    address = registered.address if registered is not None else _local(config.exchange_address)
    audit = conf.audit_log_address if conf is not None else ""
    consent = conf.consent_service_address if conf is not None else ""
    targets: list[tuple[str, str, rpc.TlsIdentity | None]] = [
        (config.server_id, address, keys.tls),
        ("registry", config.registry_address, keys.tls),
        ("audit log", audit, keys.tls),
        ("consent service", consent, keys.tls),
    ]
    backends = sorted(set(config.backends.values()))
    targets += [(f"backend {b}", b, None) for b in backends]
    health = _probe([t for t in targets if t[1]])
    outbox_text, fine = _outbox_details(config, config.outbox_window)
    if not fine:
        report.stale()
    report.add(
        f"{config.server_id} security server",
        address,
        health[config.server_id],
        f"{conf_text}, {outbox_text}",
    )
    if config.registry_address:
        report.add("registry", config.registry_address, health["registry"])
    if audit:
        details = _log_details(audit, keys.tls, now) if health["audit log"] == "serving" else ""
        report.add("audit log", audit, health["audit log"], details)
    if consent:
        report.add("consent service", consent, health["consent service"])
    keys_by_backend: dict[str, list[str]] = {}
    for key, backend in sorted(config.backends.items()):
        keys_by_backend.setdefault(backend, []).append(key)
    for backend in backends:
        name = f"{config.server_id} backend {', '.join(keys_by_backend[backend])}"
        report.add(name, backend, health[f"backend {backend}"])


# --- health endpoints ----------------------------------------------------------------------------


def _health_endpoint(url: str, report: _Report) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise errors.InvalidArgumentError(f"--health takes an http(s) URL, not {url!r}")
    target = url
    if parsed.path in ("", "/"):
        target = urllib.parse.urlunsplit(parsed._replace(path="/healthz"))
    try:
        with urllib.request.urlopen(target, timeout=3) as reply:  # noqa: S310 - scheme checked
            body = reply.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError:
        report.add("health endpoint", url, "down")
        return
    try:
        found: dict[str, Any] = json.loads(body)
        status = str(found["status"])
        checks = dict(found.get("checks", {}))
    except (ValueError, KeyError, TypeError):
        report.add("health endpoint", url, "malformed")
        return
    failing = [f"{name}: {code}" for name, code in sorted(checks.items()) if code != "ok"]
    health = {"ok": "serving", "degraded": "degraded"}.get(status, "not serving")
    report.add(f"{found.get('component') or 'process'} health", url, health, "; ".join(failing))


def collect_status(
    data_dir: Path | None = None,
    *,
    security_servers: Iterable[Path] = (),
    health_urls: Iterable[str] = (),
) -> dict[str, Any]:
    """Status of every named component; ``healthy`` is true only if all serve and nothing is
    stale.

    Raises:
        NotFoundError: ``data_dir`` holds no instance, or a server's keys are missing.
        InvalidArgumentError: a configuration file or URL is not usable.
        KeyStoreError: a key cannot be decrypted.
    """
    report = _Report()
    if data_dir is not None:
        _single_box(data_dir, report)
    for config_file in security_servers:
        _security_server(Path(config_file), report)
    for url in health_urls:
        _health_endpoint(url, report)
    return {
        "healthy": report.healthy,
        "components": report.rows,
        "data_dir": str(data_dir) if data_dir is not None else None,
    }
