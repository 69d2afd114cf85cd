"""Creates a whole single-box instance on disk: registry, services, agencies, keys, configs.

``create_instance(data_dir, ports)`` leaves everything ``stack.runtime.start_instance`` needs:

```
DATA/instance.toml            addresses of every component (format cdx-instance/v1)
DATA/passphrase               key-store passphrase (0600)
DATA/registry/ ...            CA, registry key, anchor, registry.db, bootstrap admin cert
DATA/consent/                 consent.key (artefact signer), tls/, consent.db
DATA/audit/                   log, record and master keys, tls/, audit.db, tiles/ (published)
DATA/idp/                     development identity provider
DATA/portal/tls/, https/      the portal's mutual-TLS identity and its HTTPS certificate
DATA/notify/                  the notification service's keys, tls/, notify.db, mailbox/
DATA/servers/<BCA-ss1>/       security server keys, certificates, server.toml, ss.db
DATA/backends/<kind>.db       sample registers
DATA/clients/<agency>/        information-system client certificate and API token
DATA/inspector/               an inspector certificate for `cdx audit`
```

Every private key is stored encrypted with the passphrase, mode 0600.

A port left open in ``Ports`` is written as ``0``: the component binds a free port when the
instance first starts, and ``start_instance`` then records the address it got (here, in
``server.toml`` and in global configuration), so that nothing picks a port and binds it later.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cdx import crypto, errors, keyfiles, pki
from cdx.clock import utcnow
from cdx.files import make_private_dir, write_atomically
from consent.idp import init_dev_idp
from notify.instance import NotifyPaths, create_keys
from registry.bootstrap import init_instance, issue_identity, open_registry
from security_server import provisioning
from security_server.backends.sample import KINDS
from security_server.backends.server import seed_database
from security_server.config import SecurityServerConfig, dump_config, hash_token
from stack.topology import SAMPLE, Topology

ADMIN = "admin:bootstrap"
INSTANCE_FILE = "instance.toml"
AUDIT_ORIGIN = "cdx.vn/audit"
WITNESS_QUORUM = 2
LOCAL = ("localhost",), ("127.0.0.1",)
HOST = "127.0.0.1"

#: ``configure(agency_key, config) -> config``: adjust a security server's settings before its
#: ``server.toml`` is written (tests and benchmarks: databases, windows, limits, workers).
Configure = Callable[[str, SecurityServerConfig], SecurityServerConfig]


def is_unbound(address: str) -> bool:
    """Whether ``address`` still names port 0 (bound when the instance first starts)."""
    return address.rsplit(":", 1)[-1] == "0"


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
    #: The notification service (instances provisioned before it had one: bound at first start).
    notify: str = "127.0.0.1:0"
    agencies: dict[str, AgencyLayout] = field(default_factory=dict)
    #: Where the audit log's tiles (c2sp.org/tlog-tiles) are served; port 0 until first bound.
    audit_tiles: str = f"http://{HOST}:0"

    @property
    def consent_dir(self) -> Path:
        return self.data_dir / "consent"

    @property
    def audit_dir(self) -> Path:
        return self.data_dir / "audit"

    @property
    def inspector_dir(self) -> Path:
        return self.data_dir / "inspector"

    @property
    def portal_dir(self) -> Path:
        return self.data_dir / "portal"

    @property
    def notify_dir(self) -> Path:
        return self.data_dir / "notify"

    def client_dir(self, key: str) -> Path:
        """The information-system client certificate and token of agency ``key``."""
        return self.data_dir / "clients" / key

    def to_toml(self) -> str:
        lines = [
            'format = "cdx-instance/v1"',
            f'instance = "{self.instance}"',
            f'registry = "{self.registry}"',
            f'consent = "{self.consent}"',
            f'audit = "{self.audit}"',
            f'portal = "{self.portal}"',
            f'notify = "{self.notify}"',
            f'audit_tiles = "{self.audit_tiles}"',
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

    def save(self) -> None:
        """Write ``DATA/instance.toml``."""
        write_atomically(self.data_dir / INSTANCE_FILE, self.to_toml().encode())

    def bound(self, **addresses: str) -> InstanceLayout:
        """This layout with the given component addresses (``registry=...``, ``audit=...``)."""
        return replace(self, **addresses)  # type: ignore[arg-type]

    def agency_bound(self, key: str, **addresses: str) -> InstanceLayout:
        """This layout with agency ``key``'s addresses (``exchange=...``, ``backend=...``)."""
        agencies = dict(self.agencies)
        agencies[key] = replace(agencies[key], **addresses)  # type: ignore[arg-type]
        return replace(self, agencies=agencies)

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
            notify=raw.get("notify", f"{HOST}:0"),
            agencies=agencies,
            # Instances created before tiles were served get a port when they next start.
            audit_tiles=str(raw.get("audit_tiles") or f"http://{HOST}:0"),
        )


@dataclass(frozen=True)
class Ports:
    """Listening ports of a single-box instance; ``None``: a free one, bound at first start."""

    registry: int | None = None
    consent: int | None = None
    audit: int | None = None
    portal: int | None = None
    notify: int | None = None
    tiles: int | None = None  # the audit log's tiles over HTTP
    base: int | None = None  # agencies use base, base+1, ... (4 ports each) when given

    def address(self, value: int | None) -> str:
        return f"{HOST}:{value if value is not None else 0}"

    def agency(self, index: int) -> list[str]:
        """Exchange, gateway, token gateway and backend addresses of the ``index``-th agency."""
        if self.base is None:
            return [f"{HOST}:0"] * 4
        return [f"{HOST}:{self.base + 4 * index + j}" for j in range(4)]


def provision_notify(data_dir: Path, registry: Any, passphrase: bytes) -> None:
    """Create the notification service's keys in ``DATA/notify`` and have ``registry`` (a
    ``RegistryService``) issue its certificate (``urn:cdx:service:notify``). Its settings come
    from ``stack.runtime`` at start (the portal's address, the mail relay)."""
    paths = NotifyPaths(data_dir)
    tls_key = create_keys(paths, passphrase)
    csr = pki.build_csr(tls_key, "notify", dns_names=LOCAL[0], ip_addresses=LOCAL[1])
    issued = registry.issue_client_certificate(
        csr, "service", "notify", ADMIN, dns_names=LOCAL[0], ip_addresses=LOCAL[1]
    )
    write_atomically(paths.tls_cert, issued.cert_pem)


def create_instance(
    data_dir: Path,
    ports: Ports = Ports(),
    *,
    now: datetime | None = None,
    topology: Topology = SAMPLE,
    configure: Configure | None = None,
    witness_quorum: int = WITNESS_QUORUM,
) -> InstanceLayout:
    """Provision a whole instance under ``data_dir`` (which must not hold one yet).

    Raises:
        AlreadyExistsError: ``data_dir`` already holds an instance.
    """
    now = now or utcnow()
    if (data_dir / INSTANCE_FILE).exists():
        raise errors.AlreadyExistsError(f"{data_dir} already holds an instance")
    layout = InstanceLayout(
        data_dir=data_dir,
        instance=topology.instance,
        registry=ports.address(ports.registry),
        consent=ports.address(ports.consent),
        audit=ports.address(ports.audit),
        portal=ports.address(ports.portal),
        notify=ports.address(ports.notify),
        audit_tiles=f"http://{ports.address(ports.tiles)}",
    )
    paths = init_instance(data_dir, topology.instance, now)
    passphrase = paths.passphrase()
    registry = open_registry(paths)
    try:
        anchor_json = paths.anchor.read_bytes()

        for code, en, vi in topology.purposes:
            registry.add_purpose(code, en, vi, ADMIN)
        for spec in topology.agencies:
            registry.add_member(spec.member, spec.name, ADMIN)
            registry.add_subsystem(spec.subsystem, ADMIN)
            if spec.kind is not None:
                kind = KINDS[spec.kind]
                registry.add_service(
                    spec.service, list(kind.fields), ["personal"], kind.description, ADMIN
                )

        # Central services: consent (artefact key + TLS), audit (log keys + TLS), dev IdP,
        # inspector, the portal (mutual-TLS identity and HTTPS certificate).
        from audit.server import init_audit_keys

        consent_dir = layout.consent_dir
        make_private_dir(consent_dir)
        consent_key = crypto.generate_signing_key("ed25519")
        keyfiles.save_private_key(consent_dir / "consent.key", consent_key, passphrase)
        audit_keys = init_audit_keys(layout.audit_dir, passphrase, AUDIT_ORIGIN)
        for directory, name, cert_kind, names in (
            (consent_dir / "tls", "consent", "service", LOCAL),
            (layout.audit_dir / "tls", "audit", "service", LOCAL),
            (layout.portal_dir / "tls", "portal", "service", LOCAL),
            (layout.portal_dir / "https", "portal-web", "service", LOCAL),
            (layout.inspector_dir, "inspector", "inspector", ((), ())),
        ):
            issue_identity(
                registry,
                directory,
                name,
                cert_kind,
                passphrase,
                dns_names=names[0],
                ip_addresses=names[1],
                actor=ADMIN,
            )
        provision_notify(data_dir, registry, passphrase)
        idp = init_dev_idp(data_dir, topology.instance, passphrase)
        authority = topology.representation_authority
        registry.set_trust_anchors(
            consent_service_key_der=crypto.public_key_to_der(consent_key.public_key()),
            consent_service_address="" if is_unbound(layout.consent) else layout.consent,
            audit_log_origin=AUDIT_ORIGIN,
            audit_log_key=audit_keys.log_verifier_key,
            audit_log_address="" if is_unbound(layout.audit) else layout.audit,
            audit_service_key_der=audit_keys.record_public_der,
            identity_providers=[idp.registration()],
            witness_quorum=witness_quorum,
            representation_authority=(
                topology.agency(authority).subsystem
                if authority and any(a.key == authority for a in topology.agencies)
                else None
            ),
            audit_tiles_url="" if is_unbound(layout.audit_tiles) else layout.audit_tiles,
            actor=ADMIN,
        )

        # Agencies: security server, sample backend, information-system client.
        for i, spec in enumerate(topology.serving):
            exchange, gateway, gateway_token, backend = ports.agency(i)
            server_dir = data_dir / "servers" / spec.server_dir_name
            a = AgencyLayout(
                key=spec.key,
                server_dir=server_dir,
                config_file=server_dir / "server.toml",
                exchange=exchange,
                gateway=gateway,
                gateway_token=gateway_token,
                backend=backend,
                client_dir=layout.client_dir(spec.key),
            )
            layout.agencies[spec.key] = a
            provisioning.provision(
                server_dir,
                spec.server_id,
                a.exchange,
                [spec.subsystem],
                passphrase,
                anchor_json,
                provisioning.register_with_service(registry, ADMIN, unbound=True),
            )
            assert spec.kind is not None
            seed_database(spec.kind, data_dir / "backends" / f"{spec.kind}.db")
        tokens: dict[str, str] = {}
        for spec in topology.agencies:
            client_dir = layout.client_dir(spec.key)
            issue_identity(
                registry,
                client_dir,
                spec.subsystem,
                "client",
                passphrase,
                cert_name="client",
                actor=ADMIN,
            )
            tokens[spec.key] = crypto.new_salt().hex()
            write_atomically(client_dir / "token", tokens[spec.key].encode() + b"\n", 0o600)
        for spec in topology.serving:
            a = layout.agencies[spec.key]
            config = SecurityServerConfig(
                server_id=spec.server_id,
                data_dir=a.server_dir,
                exchange_address=a.exchange,
                gateway_address=a.gateway,
                gateway_token_address=a.gateway_token,
                registry_address=layout.registry,
                passphrase_file=paths.passphrase_file,
                backends={spec.subsystem: a.backend},
                gateway_tokens={hash_token(tokens[spec.key]): spec.subsystem},
                conf_poll_s=2.0,
            )
            if configure is not None:
                config = configure(spec.key, config)
            write_atomically(a.config_file, dump_config(config).encode())

        for agreement in topology.agreements:
            client = topology.agency(agreement.client)
            provider = topology.agency(agreement.provider)
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
    finally:
        registry.engine.dispose()
    layout.save()
    return layout
