"""Creates a whole single-box instance on disk: registry, services, agencies, keys, configs.

``create_instance(data_dir, ports)`` leaves everything ``stack.runtime.start_instance`` needs:

```
DATA/instance.toml            addresses of every component (format cdx-instance/v1)
DATA/passphrase               key-store passphrase (0600)
DATA/registry/ ...            CA, registry key, anchor, registry.db, bootstrap admin cert
DATA/consent/                 consent.key (artefact signer), tls/, consent.db
DATA/audit/                   log, record and master keys, tls/, audit.db
DATA/idp/                     development identity provider
DATA/servers/<BCA-ss1>/       security server keys, certificates, server.toml, ss.db
DATA/backends/<kind>.db       sample registers
DATA/clients/<agency>/        information-system client certificate and API token
DATA/inspector/               an inspector certificate for `cdx audit`
```

Every private key is stored encrypted with the passphrase, mode 0600.
"""

from __future__ import annotations

import socket
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cdx import crypto, errors, keyfiles
from cdx.clock import utcnow
from cdx.files import write_atomically
from consent.idp import init_dev_idp
from registry.bootstrap import init_instance, issue_identity, open_registry
from security_server import provisioning
from security_server.backends.sample import KINDS
from security_server.backends.server import seed_database
from security_server.config import SecurityServerConfig, dump_config, hash_token
from stack.topology import AGREEMENTS, INSTANCE, PURPOSES, SPECS, AgencySpec

ADMIN = "admin:bootstrap"
INSTANCE_FILE = "instance.toml"
AUDIT_ORIGIN = "cdx.vn/audit"
WITNESS_QUORUM = 2
LOCAL = ("localhost",), ("127.0.0.1",)


def free_port() -> int:
    """A currently free loopback port (for a fresh single-box instance)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class AgencyLayout:
    key: str
    server_dir: Path
    config_file: Path
    exchange: str
    gateway: str
    gateway_token: str
    backend: str
    client_dir: Path


@dataclass(frozen=True)
class InstanceLayout:
    """Where everything of a single-box instance lives and listens."""

    data_dir: Path
    instance: str
    registry: str
    consent: str
    audit: str
    portal: str
    agencies: dict[str, AgencyLayout] = field(default_factory=dict)

    @property
    def consent_dir(self) -> Path:
        return self.data_dir / "consent"

    @property
    def audit_dir(self) -> Path:
        return self.data_dir / "audit"

    @property
    def inspector_dir(self) -> Path:
        return self.data_dir / "inspector"

    def to_toml(self) -> str:
        lines = [
            'format = "cdx-instance/v1"',
            f'instance = "{self.instance}"',
            f'registry = "{self.registry}"',
            f'consent = "{self.consent}"',
            f'audit = "{self.audit}"',
            f'portal = "{self.portal}"',
            "",
        ]
        for a in self.agencies.values():
            lines += [
                "[[agency]]",
                f'key = "{a.key}"',
                f'server_dir = "{a.server_dir.relative_to(self.data_dir)}"',
                f'exchange = "{a.exchange}"',
                f'gateway = "{a.gateway}"',
                f'gateway_token = "{a.gateway_token}"',
                f'backend = "{a.backend}"',
                "",
            ]
        return "\n".join(lines)

    @classmethod
    def load(cls, data_dir: Path) -> InstanceLayout:
        """Read ``DATA/instance.toml``.

        Raises:
            NotFoundError: the data dir holds no instance.
            MalformedError: the file is not an instance description.
        """
        path = data_dir / INSTANCE_FILE
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise errors.NotFoundError(
                f"no CDX instance in {data_dir} (no {INSTANCE_FILE})"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise errors.MalformedError(f"{path} is not valid TOML") from exc
        if raw.get("format") != "cdx-instance/v1":
            raise errors.MalformedError(f"{path} is not a CDX instance description")
        agencies = {}
        for a in raw.get("agency", []):
            server_dir = data_dir / a["server_dir"]
            agencies[a["key"]] = AgencyLayout(
                key=a["key"],
                server_dir=server_dir,
                config_file=server_dir / "server.toml",
                exchange=a["exchange"],
                gateway=a["gateway"],
                gateway_token=a["gateway_token"],
                backend=a["backend"],
                client_dir=data_dir / "clients" / a["key"],
            )
        return cls(
            data_dir=data_dir,
            instance=raw["instance"],
            registry=raw["registry"],
            consent=raw["consent"],
            audit=raw["audit"],
            portal=raw["portal"],
            agencies=agencies,
        )


@dataclass(frozen=True)
class Ports:
    """Listening ports of a single-box instance; ``None`` picks a free one."""

    registry: int | None = None
    consent: int | None = None
    audit: int | None = None
    portal: int | None = None
    base: int | None = None  # agencies use base, base+1, ... (4 ports each) when given

    def pick(self, value: int | None) -> int:
        return value if value is not None else free_port()


def create_instance(
    data_dir: Path,
    ports: Ports = Ports(),
    *,
    now: datetime | None = None,
    specs: tuple[AgencySpec, ...] = SPECS,
) -> InstanceLayout:
    """Provision a whole instance under ``data_dir`` (which must not hold one yet).

    Raises:
        AlreadyExistsError: ``data_dir`` already holds an instance.
    """
    now = now or utcnow()
    if (data_dir / INSTANCE_FILE).exists():
        raise errors.AlreadyExistsError(f"{data_dir} already holds an instance")
    host = "127.0.0.1"
    layout = InstanceLayout(
        data_dir=data_dir,
        instance=INSTANCE,
        registry=f"{host}:{ports.pick(ports.registry)}",
        consent=f"{host}:{ports.pick(ports.consent)}",
        audit=f"{host}:{ports.pick(ports.audit)}",
        portal=f"{host}:{ports.pick(ports.portal)}",
    )
    paths = init_instance(data_dir, INSTANCE, now)
    passphrase = paths.passphrase()
    registry = open_registry(paths)
    anchor_json = paths.anchor.read_bytes()

    for code, (en, vi) in PURPOSES.items():
        registry.add_purpose(code, en, vi, ADMIN)
    for spec in specs:
        registry.add_member(spec.member, spec.name, ADMIN)
        registry.add_subsystem(spec.subsystem, ADMIN)
        kind = KINDS[spec.kind]
        registry.add_service(spec.service, list(kind.fields), ["personal"], kind.description, ADMIN)

    # Central services: consent (artefact key + TLS), audit (log keys + TLS), dev IdP, inspector.
    from audit.server import init_audit_keys

    consent_dir = layout.consent_dir
    consent_dir.mkdir(parents=True, exist_ok=True)
    consent_key = crypto.generate_signing_key("ed25519")
    keyfiles.save_private_key(consent_dir / "consent.key", consent_key, passphrase)
    issue_identity(
        registry,
        consent_dir / "tls",
        "consent",
        "service",
        passphrase,
        dns_names=LOCAL[0],
        ip_addresses=LOCAL[1],
        actor=ADMIN,
    )
    audit_keys = init_audit_keys(layout.audit_dir, passphrase, AUDIT_ORIGIN)
    issue_identity(
        registry,
        layout.audit_dir / "tls",
        "audit",
        "service",
        passphrase,
        dns_names=LOCAL[0],
        ip_addresses=LOCAL[1],
        actor=ADMIN,
    )
    issue_identity(
        registry,
        data_dir / "portal" / "tls",
        "portal",
        "service",
        passphrase,
        dns_names=LOCAL[0],
        ip_addresses=LOCAL[1],
        actor=ADMIN,
    )
    issue_identity(
        registry, layout.inspector_dir, "inspector", "inspector", passphrase, actor=ADMIN
    )
    idp = init_dev_idp(data_dir, INSTANCE, passphrase)
    registry.set_trust_anchors(
        consent_service_key_der=crypto.public_key_to_der(consent_key.public_key()),
        consent_service_address=layout.consent,
        audit_log_origin=AUDIT_ORIGIN,
        audit_log_key=audit_keys.log_verifier_key,
        audit_log_address=layout.audit,
        audit_service_key_der=audit_keys.record_public_der,
        identity_providers=[idp.registration()],
        witness_quorum=WITNESS_QUORUM,
        actor=ADMIN,
    )

    # Agencies: security server, sample backend, information-system client.
    base = ports.base
    for i, spec in enumerate(specs):
        p = (
            [base + 4 * i + j for j in range(4)]
            if base is not None
            else [free_port() for _ in range(4)]
        )
        server_dir = data_dir / "servers" / spec.server_dir_name
        a = AgencyLayout(
            key=spec.key,
            server_dir=server_dir,
            config_file=server_dir / "server.toml",
            exchange=f"{host}:{p[0]}",
            gateway=f"{host}:{p[1]}",
            gateway_token=f"{host}:{p[2]}",
            backend=f"{host}:{p[3]}",
            client_dir=data_dir / "clients" / spec.key,
        )
        layout.agencies[spec.key] = a
        provisioning.provision(
            server_dir,
            spec.server_id,
            a.exchange,
            [spec.subsystem],
            passphrase,
            anchor_json,
            provisioning.register_with_service(registry, ADMIN),
        )
        seed_database(spec.kind, data_dir / "backends" / f"{spec.kind}.db")
        issue_identity(
            registry,
            a.client_dir,
            spec.subsystem,
            "client",
            passphrase,
            cert_name="client",
            actor=ADMIN,
        )
        token = crypto.new_salt().hex()
        write_atomically(a.client_dir / "token", token.encode() + b"\n", 0o600)
        config = SecurityServerConfig(
            server_id=spec.server_id,
            data_dir=server_dir,
            exchange_address=a.exchange,
            gateway_address=a.gateway,
            gateway_token_address=a.gateway_token,
            registry_address=layout.registry,
            passphrase_file=paths.passphrase_file,
            backends={spec.subsystem: a.backend},
            gateway_tokens={hash_token(token): spec.subsystem},
            conf_poll_s=2.0,
        )
        write_atomically(a.config_file, dump_config(config).encode())

    for agreement in AGREEMENTS:
        client = next(s for s in specs if s.key == agreement.client)
        provider = next(s for s in specs if s.key == agreement.provider)
        registry.add_agreement(
            client.subsystem,
            provider.service,
            agreement.purpose,
            agreement.lawful_basis,
            agreement.legal_reference,
            list(agreement.fields),
            agreement.rate_limit_per_minute,
            agreement.retention_days,
            agreement.sealed,
            actor=ADMIN,
        )
    write_atomically(data_dir / INSTANCE_FILE, layout.to_toml().encode())
    return layout
