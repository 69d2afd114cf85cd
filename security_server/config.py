"""Settings of one security server (a dataclass) and its TOML file format.

Example ``server.toml`` (paths relative to the file's directory)::

    server_id = "VN:GOV:BCA:ss1"
    data_dir = "."                      # keys, certificates, anchor.json, ss.db
    exchange_address = "0.0.0.0:5500"   # Exchange endpoint (mutual TLS, peers)
    gateway_address = "127.0.0.1:5501"  # Gateway for local information systems (mutual TLS)
    gateway_token_address = ""          # optional Gateway accepting API tokens (server TLS)
    registry_address = "127.0.0.1:5400"
    passphrase_file = "../../passphrase"
    database_url = ""                   # default: SQLite file <data_dir>/ss.db
    outbox_window_s = 300
    exchange_stream = true              # exchanges to peers over one stream (false: unary)
    dependency_probe_s = 5              # ask registry, audit log, consent, backends this often

    [backends]                          # service id or subsystem id -> DataProvider address
    "VN:GOV:BCA:population" = "127.0.0.1:6001"

    [gateway_tokens]                    # SHA-256 (hex) of an API token -> subsystem id
    "9f86d0...0a08" = "VN:GOV:BCA:population"

    [limits]
    max_fields = 64

Only SHA-256 hashes of API tokens are stored; ``cdx security-server token`` prints a new token
and the line to add.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from cdx import db, errors
from cdx.ids import SecurityServerId, ServiceId, SubsystemId


@dataclass(frozen=True)
class Limits:
    """Bounds on untrusted sizes and on time (DESIGN §9)."""

    max_fields: int = 64
    max_field_name_chars: int = 128
    max_query_bytes: int = 256 * 1024
    max_parameters_bytes: int = 64 * 1024
    max_response_bytes: int = 1024 * 1024
    max_response_fields: int = 256
    max_subject_chars: int = 64
    freshness_s: float = 60.0
    max_skew_s: float = 5.0
    forward_timeout_s: float = 10.0
    backend_timeout_s: float = 5.0

    @property
    def freshness(self) -> timedelta:
        return timedelta(seconds=self.freshness_s)

    @property
    def max_skew(self) -> timedelta:
        return timedelta(seconds=self.max_skew_s)


@dataclass(frozen=True)
class SecurityServerConfig:
    """Everything ``start_security_server`` needs besides its keys (read from ``data_dir``)."""

    server_id: str
    data_dir: Path
    exchange_address: str = "127.0.0.1:0"
    gateway_address: str = "127.0.0.1:0"
    gateway_token_address: str = ""
    registry_address: str = ""
    passphrase_file: Path | None = None
    database_url: str = ""
    database_schema: str | None = None
    backends: Mapping[str, str] = field(default_factory=dict)
    #: SHA-256 hex digest of an API token -> subsystem id (tokens themselves are never stored).
    gateway_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    outbox_window_s: float = 300.0
    outbox_batch: int = 500
    workers: int = 32
    conf_poll_s: float = 5.0
    #: Send exchanges to peers over one long-lived ``Exchange.Stream`` (unary when false).
    exchange_stream: bool = True
    #: Seconds between two health probes of each dependency (``cdx.dependencies.Prober``).
    dependency_probe_s: float = 5.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        SecurityServerId.parse(self.server_id)
        if not self.dependency_probe_s > 0:
            raise errors.InvalidArgumentError("dependency_probe_s must be positive")
        for key in self.backends:
            _parse_backend_key(key)
        for digest, subsystem in self.gateway_tokens.items():
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise errors.InvalidArgumentError("gateway token keys are SHA-256 hex digests")
            SubsystemId.parse(subsystem)

    @property
    def db_url(self) -> str:
        return self.database_url or db.sqlite_url(self.data_dir / "ss.db")

    @property
    def passphrase_path(self) -> Path:
        return self.passphrase_file or self.data_dir / "passphrase"

    @property
    def outbox_window(self) -> timedelta:
        return timedelta(seconds=self.outbox_window_s)

    def backend_for(self, service: str) -> str | None:
        """The DataProvider address serving ``service`` (by service id, else by subsystem)."""
        address = self.backends.get(service)
        if address is None:
            address = self.backends.get(service.split("/", 1)[0])
        return address

    def subsystem_for_token(self, token: str) -> str | None:
        """The subsystem an API token stands for, compared in constant time per entry."""
        digest = hashlib.sha256(token.encode()).hexdigest().encode()
        found: str | None = None
        for known, subsystem in self.gateway_tokens.items():
            if hmac.compare_digest(digest, known.encode()):
                found = subsystem
        return found

    def with_changes(self, **changes: Any) -> SecurityServerConfig:
        return replace(self, **changes)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a gateway API token is configured."""
    return hashlib.sha256(token.encode()).hexdigest()


def _parse_backend_key(key: str) -> None:
    if "/" in key:
        ServiceId.parse(key)
    else:
        SubsystemId.parse(key)


_SIMPLE = {
    "server_id": str,
    "exchange_address": str,
    "gateway_address": str,
    "gateway_token_address": str,
    "registry_address": str,
    "database_url": str,
    "database_schema": str,
    "outbox_window_s": float,
    "outbox_batch": int,
    "workers": int,
    "conf_poll_s": float,
    "exchange_stream": bool,
    "dependency_probe_s": float,
}


def load_config(path: str | Path) -> SecurityServerConfig:
    """Read a ``server.toml``; relative paths are taken from the file's directory.

    Raises:
        InvalidArgumentError: the file is missing, not TOML, or holds unknown or invalid keys.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.InvalidArgumentError(f"cannot read {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise errors.InvalidArgumentError(f"{path} is not valid TOML: {exc}") from exc
    return config_from_mapping(data, base=path.parent)


def config_from_mapping(data: Mapping[str, Any], *, base: Path) -> SecurityServerConfig:
    """Build a config from parsed TOML (see ``load_config``)."""
    known = set(_SIMPLE) | {"data_dir", "passphrase_file", "backends", "gateway_tokens", "limits"}
    unknown = set(data) - known
    if unknown:
        raise errors.InvalidArgumentError(f"unknown settings: {', '.join(sorted(unknown))}")
    if "server_id" not in data or "data_dir" not in data:
        raise errors.InvalidArgumentError("server_id and data_dir are required")
    kwargs: dict[str, Any] = {}
    try:
        for key, kind in _SIMPLE.items():
            if key in data:
                if kind is bool and not isinstance(data[key], bool):
                    raise errors.InvalidArgumentError(f"{key} must be true or false")
                kwargs[key] = kind(data[key])
        kwargs["data_dir"] = (base / str(data["data_dir"])).resolve()
        if data.get("passphrase_file"):
            kwargs["passphrase_file"] = (base / str(data["passphrase_file"])).resolve()
        kwargs["backends"] = {str(k): str(v) for k, v in dict(data.get("backends", {})).items()}
        kwargs["gateway_tokens"] = {
            str(k).lower(): str(v) for k, v in dict(data.get("gateway_tokens", {})).items()
        }
        limit_names = {f.name: f.type for f in fields(Limits)}
        raw_limits = dict(data.get("limits", {}))
        bad = set(raw_limits) - set(limit_names)
        if bad:
            raise errors.InvalidArgumentError(f"unknown limits: {', '.join(sorted(bad))}")
        defaults = Limits()
        kwargs["limits"] = Limits(
            **{k: type(getattr(defaults, k))(v) for k, v in raw_limits.items()}
        )
    except (TypeError, ValueError) as exc:
        raise errors.InvalidArgumentError(f"invalid setting: {exc}") from exc
    if not kwargs.get("database_schema"):
        kwargs["database_schema"] = None
    return SecurityServerConfig(**kwargs)


def dump_config(config: SecurityServerConfig, *, base: Path | None = None) -> str:
    """Render ``config`` as TOML (paths relative to ``base`` when given)."""

    def path_text(p: Path) -> str:
        if base is not None:
            try:
                return str(p.resolve().relative_to(base.resolve())) or "."
            except ValueError:
                pass
        return str(p)

    def q(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = [
        f"server_id = {q(config.server_id)}",
        f"data_dir = {q(path_text(config.data_dir))}",
        f"exchange_address = {q(config.exchange_address)}",
        f"gateway_address = {q(config.gateway_address)}",
        f"gateway_token_address = {q(config.gateway_token_address)}",
        f"registry_address = {q(config.registry_address)}",
        f"database_url = {q(config.database_url)}",
        f"outbox_window_s = {config.outbox_window_s}",
        f"outbox_batch = {config.outbox_batch}",
        f"workers = {config.workers}",
        f"conf_poll_s = {config.conf_poll_s}",
        f"exchange_stream = {'true' if config.exchange_stream else 'false'}",
        f"dependency_probe_s = {config.dependency_probe_s}",
    ]
    if config.passphrase_file is not None:
        lines.append(f"passphrase_file = {q(path_text(config.passphrase_file))}")
    if config.database_schema:
        lines.append(f"database_schema = {q(config.database_schema)}")
    lines += ["", "[backends]"]
    lines += [f"{q(k)} = {q(v)}" for k, v in sorted(config.backends.items())]
    lines += ["", "[gateway_tokens]"]
    lines += [f"{q(k)} = {q(v)}" for k, v in sorted(config.gateway_tokens.items())]
    lines += ["", "[limits]"]
    for f in fields(Limits):
        lines.append(f"{f.name} = {getattr(config.limits, f.name)}")
    return "\n".join(lines) + "\n"
