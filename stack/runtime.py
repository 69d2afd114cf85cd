"""Starts (and stops) every component of a provisioned single-box instance in one process.

Each component is a real gRPC server on its own loopback port with mutual TLS, exactly as when
run separately (`cdx registry serve`, `cdx security-server serve`, ...); running them in one
process makes a pilot or the demo one command and a clean Ctrl-C.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit import monitoring as audit_monitoring
from audit.client import AuditClient
from audit.server import RunningAudit, load_audit_keys, start_audit_service
from audit.witness import Witness
from cdx import crypto, db, errors, health, rpc
from cdx.confclient import ConfClient
from cdx.v1 import audit_pb2_grpc, consent_pb2_grpc, exchange_pb2, exchange_pb2_grpc
from consent.checker import CachedConsentChecker
from consent.idp import DevIdentityProvider, load_dev_idp
from consent.instance import derive_tag_key
from consent.server import RunningConsent, start_consent_service
from registry.paths import InstancePaths, load_identity, read_passphrase
from registry.server import RunningRegistry, start_registry
from security_server import monitoring as ss_monitoring
from security_server.backends.server import RunningBackend, start_backend
from security_server.config import load_config
from security_server.server import RunningSecurityServer, start_security_server
from stack.identity import IdentityProviders, start_identity_providers
from stack.provision import InstanceLayout
from stack.topology import SPECS

log = logging.getLogger(__name__)


@dataclass
class RunningInstance:
    """Handles on every running component; ``stop()`` shuts them down in reverse order."""

    layout: InstanceLayout
    passphrase: bytes = field(repr=False)
    registry: RunningRegistry
    consent: RunningConsent
    audit: RunningAudit
    backends: dict[str, RunningBackend]
    servers: dict[str, RunningSecurityServer]
    witnesses: dict[str, Witness]
    idp: DevIdentityProvider
    conf: ConfClient
    portal: Any = None
    #: The identity provider users log in with (``stack.identity``).
    identity: IdentityProviders | None = None
    #: Global-conf clients of the consent service and the audit log (health and gauges).
    component_confs: dict[str, ConfClient] = field(default_factory=dict, repr=False)
    _cleanup: list[Callable[[], Any]] = field(default_factory=list, repr=False)
    _channels: dict[str, grpc.Channel] = field(default_factory=dict, repr=False)

    # --- identities and channels -------------------------------------------------------------

    def _identity(self, cert: Path, key: Path) -> rpc.TlsIdentity:
        return load_identity(cert, key, InstancePaths(self.layout.data_dir).ca_pem, self.passphrase)

    def _channel(self, name: str, address: str, identity: rpc.TlsIdentity) -> grpc.Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = rpc.secure_channel(address, identity)
            self._channels[name] = channel
        return channel

    def gateway(self, agency: str) -> exchange_pb2_grpc.GatewayStub:
        """``Gateway`` of ``agency``'s security server, as its information system."""
        a = self.layout.agencies[agency]
        identity = self._identity(a.client_dir / "client.pem", a.client_dir / "client.key")
        return exchange_pb2_grpc.GatewayStub(self._channel(f"gw:{agency}", a.gateway, identity))

    def query(
        self,
        agency: str,
        service: str,
        subject: str,
        purpose: str,
        fields: tuple[str, ...] = (),
        *,
        consent_id: str = "",
        timeout: float = 10.0,
    ) -> exchange_pb2.QueryResponse:
        """``Gateway.Query`` as ``agency``'s information system; raises the refusal's error."""
        client = next(s.subsystem for s in SPECS if s.key == agency)
        request = exchange_pb2.QueryRequest(
            client=client,
            service=service,
            subject=subject,
            purpose=purpose,
            fields=list(fields),
            consent_id=consent_id,
        )
        result: exchange_pb2.QueryResponse = rpc.invoke(
            self.gateway(agency).Query, request, timeout=timeout
        )
        return result

    def agency_consent(self, agency: str) -> consent_pb2_grpc.AgencyConsentStub:
        """The consent service's agency API, as ``agency``'s security server."""
        server = self.servers[agency]
        channel = self._channel(f"consent:{agency}", self.consent.address, server.keys.tls)
        return consent_pb2_grpc.AgencyConsentStub(channel)

    def citizen_consent(self) -> consent_pb2_grpc.CitizenConsentStub:
        """The consent service's citizen API (call it with a citizen's bearer token)."""
        return consent_pb2_grpc.CitizenConsentStub(self._portal_channel(self.consent.address))

    def citizen_audit(self) -> audit_pb2_grpc.AuditLogStub:
        """The audit log as the portal relays it (call it with a citizen's bearer token)."""
        return audit_pb2_grpc.AuditLogStub(self._portal_channel(self.audit.address))

    def inspector_audit(self) -> audit_pb2_grpc.AuditLogStub:
        """The audit log as an inspector with a registry-issued inspector certificate."""
        d = self.layout.inspector_dir
        identity = self._identity(d / "inspector.pem", d / "inspector.key")
        return audit_pb2_grpc.AuditLogStub(self._channel("inspector", self.audit.address, identity))

    def _portal_channel(self, address: str) -> grpc.Channel:
        tls = self.layout.data_dir / "portal" / "tls"
        identity = self._identity(tls / "portal.pem", tls / "portal.key")
        return self._channel(f"portal:{address}", address, identity)

    def token(
        self,
        subject: str,
        role: Literal["citizen", "inspector"] = "citizen",
        ttl: timedelta = timedelta(minutes=30),
    ) -> str:
        """A development-IdP ID token for a citizen (or an inspector with ``role="inspector"``)."""
        assert self.identity is not None
        return self.identity.token(subject, role, conf=self.conf.current(), ttl=ttl)

    # --- lifecycle ------------------------------------------------------------------------------

    def health_checks(self) -> list[health.Check]:
        """The ``/healthz`` checks of every component: global conf and certificates current,
        outboxes within their window, audit checkpoints consistent, no witness alarm."""
        registry_cert = x509.load_pem_x509_certificate(self.registry.paths.tls_cert.read_bytes())
        checks = [
            health.conf_check("instance globalconf", self.conf.current),
            health.certificate_check("registry certificate", lambda: (registry_cert,)),
        ]
        consent_conf = self.component_confs.get("consent")
        if consent_conf is not None:
            checks.append(health.conf_check("consent globalconf", consent_conf.current))
        audit_conf = self.component_confs.get("audit", self.conf)
        checks += audit_monitoring.health_checks(self.audit, audit_conf.current)
        for key, server in self.servers.items():
            checks += ss_monitoring.health_checks(
                server, functools.partial(self.witnesses.get, key)
            )
        return checks

    def stop(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for fn in reversed(self._cleanup):
            try:
                fn()
            except Exception:  # keep stopping the rest
                log.exception("error while stopping a component")
        self._cleanup.clear()

    def __enter__(self) -> RunningInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_instance(
    data_dir: Path,
    *,
    portal: bool = True,
    insecure_cookies: bool = False,
    checkpoint_interval: float = 1.0,
    witness_interval: float = 1.0,
    oidc: Mapping[str, Any] | None = None,
    config_dir: Path | None = None,
) -> RunningInstance:
    """Start every component of the instance provisioned in ``data_dir``.

    Raises:
        NotFoundError: ``data_dir`` holds no instance.
        CdxError: a component could not start (the ones already started are stopped).
    """
    layout = InstanceLayout.load(data_dir)
    passphrase = read_passphrase(data_dir)
    paths = InstancePaths(data_dir)
    cleanup: list[Callable[[], Any]] = []
    try:
        registry = start_registry(paths, layout.registry)
        cleanup.append(registry.stop)
        identity = start_identity_providers(
            data_dir,
            passphrase,
            registry,
            f"http://{layout.portal}",
            external=oidc,
            config_dir=config_dir,
        )
        cleanup.append(identity.stop)
        anchor = paths.load_anchor()

        def conf_client(identity: rpc.TlsIdentity, path: Path) -> ConfClient:
            client = ConfClient(
                layout.registry, identity, anchor, path, poll_interval=timedelta(seconds=2)
            )
            client.refresh()
            client.start()
            cleanup.append(client.stop)
            return client

        # Consent service.
        c_dir = layout.consent_dir
        consent_identity = load_identity(
            c_dir / "tls" / "consent.pem", c_dir / "tls" / "consent.key", paths.ca_pem, passphrase
        )
        consent_conf = conf_client(consent_identity, c_dir / "globalconf.bin")
        consent_key = crypto.load_signing_key(c_dir / "consent.key", passphrase)
        if not isinstance(consent_key, ed25519.Ed25519PrivateKey):
            raise errors.KeyStoreError("the consent artefact key must be an Ed25519 key")
        tag_key = derive_tag_key(consent_key)
        consent = start_consent_service(
            engine=db.create_engine(db.sqlite_url(c_dir / "consent.db")),
            identity=consent_identity,
            signer=crypto.KeySigner(consent_key),
            tag_key=tag_key,
            conf=consent_conf.current,
            address=layout.consent,
            # Consent events reach the audit log (started next; the shipper retries until then).
            audit_log=bool(consent_conf.current().audit_log_address),
            audit_interval=1.0,
            audit_max_backoff=5.0,
        )
        cleanup.append(lambda: consent.stop(0.5))

        # Audit log.
        a_dir = layout.audit_dir
        audit_identity = load_identity(
            a_dir / "tls" / "audit.pem", a_dir / "tls" / "audit.key", paths.ca_pem, passphrase
        )
        audit_conf = conf_client(audit_identity, a_dir / "globalconf.bin")
        keys = load_audit_keys(a_dir, passphrase)
        audit = start_audit_service(
            db.create_engine(db.sqlite_url(a_dir / "audit.db")),
            audit_identity,
            log_signer=keys.log_signer,
            record_signer=keys.record_signer,
            master_key=keys.master_key,
            conf=audit_conf.current,
            address=layout.audit,
            checkpoint_interval=checkpoint_interval,
        )
        cleanup.append(lambda: audit.stop(0.5))

        # Agencies: backend, security server (consent checks, records to the log), witness.
        backends: dict[str, RunningBackend] = {}
        servers: dict[str, RunningSecurityServer] = {}
        witnesses: dict[str, Witness] = {}
        for spec in SPECS:
            a = layout.agencies[spec.key]
            backend = start_backend(spec.kind, data_dir / "backends" / f"{spec.kind}.db", a.backend)
            cleanup.append(backend.stop)
            backends[spec.key] = backend
            config = load_config(a.config_file)
            server = start_security_server(
                config,
                consent_checker_factory=lambda ctx: CachedConsentChecker(layout.consent, ctx.tls),
                audit_shipper_factory=lambda ctx: AuditClient(layout.audit, ctx.tls),
            )
            cleanup.append(functools.partial(server.stop, 0.5))
            servers[spec.key] = server
            witness = Witness(
                server.server_id,
                server.keys.witness_key,
                AuditClient(layout.audit, server.keys.tls),
                server.conf_client.current,
                a.server_dir / "witness.json",
                interval=witness_interval,
            )
            witness.start()
            cleanup.append(witness.stop)
            witnesses[spec.key] = witness

        portal_identity = load_identity(
            data_dir / "portal" / "tls" / "portal.pem",
            data_dir / "portal" / "tls" / "portal.key",
            paths.ca_pem,
            passphrase,
        )
        own_conf = conf_client(portal_identity, data_dir / "portal" / "stack-globalconf.bin")
        instance = RunningInstance(
            layout=layout,
            passphrase=passphrase,
            registry=registry,
            consent=consent,
            audit=audit,
            backends=backends,
            servers=servers,
            witnesses=witnesses,
            idp=load_dev_idp(data_dir, passphrase),
            conf=own_conf,
            component_confs={"consent": consent_conf, "audit": audit_conf},
            identity=identity,
            _cleanup=cleanup,
        )
        # Gauges for /metrics (read only when telemetry collects them).
        cleanup.append(audit_monitoring.observe(audit, identity=audit_identity))
        for name, component_conf in instance.component_confs.items():
            for remove in health.observe_conf({"server": name}, component_conf.latest):
                cleanup.append(remove)
        for key, server in servers.items():
            cleanup.append(
                ss_monitoring.observe(server, functools.partial(instance.witnesses.get, key))
            )
        if portal:
            from portal.instance import serve_instance

            running_portal = serve_instance(
                data_dir,
                listen=layout.portal,
                insecure_cookies=insecure_cookies,
                registry=layout.registry,
                default_language="en",
            )
            cleanup.append(running_portal.stop)
            instance.portal = running_portal
        return instance
    except BaseException:
        for fn in reversed(cleanup):
            with contextlib.suppress(Exception):
                fn()
        raise
