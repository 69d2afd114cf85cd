"""Starts (and stops) the components of a provisioned instance in one process.

Each component is a real gRPC server on its own loopback port with mutual TLS, exactly as when
run separately (`cdx registry serve`, `cdx security-server serve`, ...); running them in one
process makes a pilot or the demo one command and a clean Ctrl-C. ``StackOptions`` says which
components start and how: the demo and `cdx up` take the defaults, tests and benchmarks
parametrise the same composition (a registry and agencies only, another database, faster
checkpoints, their own plug-ins).

An address that names port 0 (``stack.provision``) is bound by the component itself, then
recorded where others look for it: global configuration (the consent service's and the audit
log's addresses, each security server's), ``instance.toml`` and ``server.toml``. Later starts
bind the recorded ports again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit import monitoring as audit_monitoring
from audit.client import AuditClient
from audit.server import RunningAudit, load_audit_keys, start_audit_service
from audit.tilestore import DirectoryTileStore
from cdx import crypto, db, errors, health, keyfiles, rpc
from cdx.clock import Clock, utcnow
from cdx.confclient import ConfClient
from cdx.keyfiles import load_identity
from cdx.paths import InstancePaths
from cdx.v1 import (
    audit_pb2_grpc,
    consent_pb2_grpc,
    exchange_pb2,
    exchange_pb2_grpc,
    notify_pb2_grpc,
)
from consent.checker import CachedConsentChecker
from consent.idp import DevIdentityProvider, load_dev_idp
from consent.instance import derive_tag_key
from consent.server import RunningConsent, start_consent_service
from notify.channels import Sender, SmtpSender, SmtpSettings, WebhookSender, WebhookSettings
from notify.instance import NotifyPaths
from notify.server import RunningNotify, start_notify_service
from notify.service import DEFAULT_RETRY, RetryPolicy
from registry.server import RunningRegistry, start_registry
from security_server.server import AuditShipperFactory, ConsentCheckerFactory, PluginContext
from stack.agency import RunningAgency
from stack.identity import IdentityProviders, start_identity_providers
from stack.mailsink import MailSink
from stack.provision import ADMIN, InstanceLayout, is_unbound, provision_notify
from stack.topology import SAMPLE, Topology

log = logging.getLogger(__name__)

#: A database: SQLAlchemy URL and (PostgreSQL) schema.
Database = tuple[str, str | None]

#: Builds an agency's runtime (``RunningAgency`` or a subclass); called with the arguments of
#: ``RunningAgency``.
AgencyFactory = Callable[..., RunningAgency]


@dataclass(frozen=True)
class StackOptions:
    """Which components ``start_instance`` starts, and how."""

    consent: bool = True
    audit: bool = True
    #: Start every agency's register and security server (else the caller starts them, e.g.
    #: as separate processes, through ``RunningInstance.agencies``).
    agencies: bool = True
    witnesses: bool = True
    portal: bool = True
    #: Serve the portal over HTTPS with its registry-issued certificate (``DATA/portal/https``).
    portal_https: bool = False
    insecure_cookies: bool = False
    #: Publish the audit log's tiles (``DATA/audit/tiles``) and serve them over HTTP at the
    #: layout's ``audit_tiles`` address, named in global configuration for clients.
    tiles: bool = True
    checkpoint_interval: float = 1.0
    witness_interval: float = 1.0
    conf_poll: timedelta = timedelta(seconds=2)
    consent_checker_ttl: timedelta = timedelta(seconds=30)
    #: Default: SQLite files in ``DATA/consent`` and ``DATA/audit``.
    consent_database: Database | None = None
    audit_database: Database | None = None
    consent_clock: Clock = utcnow
    #: The clock of the registry, the audit log, the development identity provider, the portal
    #: and their configuration clients (tests move it to cross a date, e.g. a majority date;
    #: the consent service has ``consent_clock``, the security servers their own).
    clock: Clock = utcnow
    #: More keyword arguments of ``start_consent_service`` / ``start_audit_service``.
    consent_settings: Mapping[str, Any] = field(default_factory=dict)
    audit_settings: Mapping[str, Any] = field(default_factory=dict)
    #: ``cdx up``'s ``[oidc]`` table: log in through this external OpenID provider instead of
    #: the development one (``stack.identity``); relative paths in it are under ``config_dir``.
    oidc: Mapping[str, Any] | None = None
    config_dir: Path | None = None
    #: Start the notification service (docs/adr/0019).
    notify: bool = True
    #: Its mail relay; ``None``: a local mail sink (``stack.mailsink``) started with it, which
    #: keeps what it receives in ``DATA/notify/mailbox``.
    notify_smtp: SmtpSettings | None = None
    #: The national app's webhook (none by default).
    notify_webhook: WebhookSettings | None = None
    notify_retry: RetryPolicy = DEFAULT_RETRY
    #: Default: SQLite ``DATA/notify/notify.db``.
    notify_database: Database | None = None


@dataclass
class RunningInstance:
    """Handles on every running component; ``stop()`` shuts them down in reverse order."""

    layout: InstanceLayout
    passphrase: bytes = field(repr=False)
    options: StackOptions
    registry: RunningRegistry
    idp: DevIdentityProvider
    #: The instance's own configuration client (the portal's identity).
    conf: ConfClient
    consent: RunningConsent | None = None
    audit: RunningAudit | None = None
    agencies: dict[str, RunningAgency] = field(default_factory=dict)
    portal: Any = None
    #: The identity provider users log in with (``stack.identity``).
    login: IdentityProviders | None = None
    notify: RunningNotify | None = None
    #: The local mail sink the notification service delivers to (unless a relay is set).
    mail_sink: MailSink | None = None
    #: Global-conf clients of the consent service and the audit log (health and gauges).
    component_confs: dict[str, ConfClient] = field(default_factory=dict, repr=False)
    _cleanup: list[Callable[[], Any]] = field(default_factory=list, repr=False)
    _channels: dict[str, grpc.Channel] = field(default_factory=dict, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.layout.data_dir

    @property
    def paths(self) -> InstancePaths:
        return InstancePaths(self.layout.data_dir)

    @property
    def servers(self) -> dict[str, Any]:
        """Running security servers by agency key."""
        return {k: a.server for k, a in self.agencies.items() if a.server is not None}

    @property
    def backends(self) -> dict[str, Any]:
        return {k: a.backend for k, a in self.agencies.items() if a.backend is not None}

    @property
    def witnesses(self) -> dict[str, Any]:
        return {k: a.witness for k, a in self.agencies.items() if a.witness is not None}

    # --- identities and channels -------------------------------------------------------------

    def identity(self, cert: Path, key: Path) -> rpc.TlsIdentity:
        """A registry-issued identity stored in the instance (key encrypted at rest)."""
        return load_identity(cert, key, self.paths.ca_pem, self.passphrase)

    def client_identity(self, agency: str) -> rpc.TlsIdentity:
        """The information-system client certificate of ``agency``."""
        d = self.layout.client_dir(agency)
        return self.identity(d / "client.pem", d / "client.key")

    def service_identity(
        self, name: Literal["consent", "audit", "portal", "notify"]
    ) -> rpc.TlsIdentity:
        """The mutual-TLS identity of a central service (``urn:cdx:service:<name>``)."""
        d = self.data_dir / name / "tls"
        return self.identity(d / f"{name}.pem", d / f"{name}.key")

    def _channel(self, name: str, address: str, identity: rpc.TlsIdentity) -> grpc.Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = rpc.secure_channel(address, identity)
            self._channels[name] = channel
        return channel

    def gateway(self, agency: str) -> exchange_pb2_grpc.GatewayStub:
        """``Gateway`` of ``agency``'s security server, as its information system."""
        a = self.layout.agencies[agency]
        return exchange_pb2_grpc.GatewayStub(
            self._channel(f"gw:{agency}", a.gateway, self.client_identity(agency))
        )

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
        request = exchange_pb2.QueryRequest(
            client=self.agencies[agency].subsystem,
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
        channel = self._channel(
            f"consent:{agency}", self.layout.consent, self.agencies[agency].running.keys.tls
        )
        return consent_pb2_grpc.AgencyConsentStub(channel)

    def citizen_consent(self) -> consent_pb2_grpc.CitizenConsentStub:
        """The consent service's citizen API (call it with a citizen's bearer token)."""
        return consent_pb2_grpc.CitizenConsentStub(self._portal_channel(self.layout.consent))

    def representation(self, agency: str) -> consent_pb2_grpc.RepresentationStub:
        """The consent service's ``Representation`` API as ``agency``'s information system (the
        representation authority registers relations this way)."""
        channel = self._channel(
            f"representation:{agency}", self.layout.consent, self.client_identity(agency)
        )
        return consent_pb2_grpc.RepresentationStub(channel)

    def citizen_audit(self) -> audit_pb2_grpc.AuditLogStub:
        """The audit log as the portal relays it (call it with a citizen's bearer token)."""
        return audit_pb2_grpc.AuditLogStub(self._portal_channel(self.layout.audit))

    def citizen_notify(self) -> notify_pb2_grpc.CitizenNotificationsStub:
        """The notification service's citizen API (call it with a citizen's bearer token)."""
        assert self.notify is not None
        return notify_pb2_grpc.CitizenNotificationsStub(self._portal_channel(self.notify.address))

    def inspector_audit(self) -> audit_pb2_grpc.AuditLogStub:
        """The audit log as an inspector with a registry-issued inspector certificate."""
        d = self.layout.inspector_dir
        identity = self.identity(d / "inspector.pem", d / "inspector.key")
        return audit_pb2_grpc.AuditLogStub(self._channel("inspector", self.layout.audit, identity))

    def _portal_channel(self, address: str) -> grpc.Channel:
        return self._channel(f"portal:{address}", address, self.service_identity("portal"))

    def token(
        self,
        subject: str,
        role: Literal["citizen", "inspector"] = "citizen",
        ttl: timedelta = timedelta(minutes=30),
    ) -> str:
        """A development-IdP ID token for a citizen (or an inspector with ``role="inspector"``)."""
        assert self.login is not None
        return self.login.token(subject, role, conf=self.conf.current(), ttl=ttl)

    # --- more of a component -------------------------------------------------------------------

    def start_consent_replica(self, address: str = "127.0.0.1:0", **settings: Any) -> Any:
        """Another consent service over the same database and keys (the scale-out shape);
        the caller stops it."""
        consent_conf = self.component_confs["consent"]
        return _start_consent(
            self.layout,
            self.passphrase,
            self.options,
            consent_conf,
            address=address,
            **{"audit_log": False, **settings},
        )

    def start_audit(self) -> RunningAudit:
        """Start the audit log (again, after ``audit.stop()``) on its recorded address."""
        a_dir = self.layout.audit_dir
        keys = load_audit_keys(a_dir, self.passphrase)
        url, schema = _database(self.options.audit_database, a_dir / "audit.db")
        tiles: dict[str, Any] = {}
        if self.options.tiles:
            tiles = {
                # Served by this process: private like every file of the data directory.
                "tiles": DirectoryTileStore(a_dir / "tiles", file_mode=0o600),
                "tiles_listen": _bound_address(self.layout.audit_tiles),
            }
        self.audit = start_audit_service(
            db.create_engine(url, schema=schema),
            self.service_identity("audit"),
            log_signer=keys.log_signer,
            record_signer=keys.record_signer,
            master_key=keys.master_key,
            conf=self.component_confs["audit"].current,
            address=self.layout.audit,
            checkpoint_interval=self.options.checkpoint_interval,
            **{"clock": self.options.clock, **tiles, **self.options.audit_settings},
        )
        before = self.layout
        address = tiles_url = None
        if is_unbound(self.layout.audit):
            self.layout = self.layout.bound(audit=self.audit.address)
            address = self.audit.address
        served = self.audit.tiles_url
        if served and served != self.layout.audit_tiles:
            self.layout = self.layout.bound(audit_tiles=served)
        if served and self.registry.service.trust_anchors().audit_tiles_url != served:
            tiles_url = served  # where portals and `cdx audit` find them
        if self.layout != before:
            self.layout.save()
        if address or tiles_url:
            self.registry.service.set_trust_anchors(
                audit_log_address=address, audit_tiles_url=tiles_url, actor=ADMIN
            )
            self.sync_conf()
        return self.audit

    def sync_conf(self) -> None:
        """Make every running component fetch the registry's latest configuration now."""
        clients = [self.conf, *self.component_confs.values()]
        clients += [a.server.conf_client for a in self.agencies.values() if a.server is not None]
        if self.portal is not None:
            clients.append(self.portal.conf)
        if self.login is not None and self.login.conf is not None:
            clients.append(self.login.conf)
        for client in clients:
            with contextlib.suppress(errors.CdxError):
                client.refresh()

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
        if self.audit is not None:
            audit_conf = self.component_confs.get("audit", self.conf)
            checks += audit_monitoring.health_checks(self.audit, audit_conf.current)
        for agency in self.agencies.values():
            if agency.server is not None:
                checks += agency.server.health.checks()
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


def _database(given: Database | None, default: Path) -> Database:
    return given if given is not None else (db.sqlite_url(default), None)


def _start_consent(
    layout: InstanceLayout,
    passphrase: bytes,
    options: StackOptions,
    conf: ConfClient,
    *,
    address: str,
    **settings: Any,
) -> RunningConsent:
    c_dir = layout.consent_dir
    identity = load_identity(
        c_dir / "tls" / "consent.pem",
        c_dir / "tls" / "consent.key",
        InstancePaths(layout.data_dir).ca_pem,
        passphrase,
    )
    consent_key = keyfiles.load_signing_key(c_dir / "consent.key", passphrase)
    if not isinstance(consent_key, ed25519.Ed25519PrivateKey):
        raise errors.KeyStoreError("the consent artefact key must be an Ed25519 key")
    url, schema = _database(options.consent_database, c_dir / "consent.db")
    return start_consent_service(
        engine=db.create_engine(url, schema=schema),
        identity=identity,
        signer=crypto.KeySigner(consent_key),
        tag_key=derive_tag_key(consent_key),
        conf=conf.current,
        address=address,
        clock=options.consent_clock,
        **settings,
    )


def _bound_address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def start_instance(
    data_dir: Path,
    options: StackOptions = StackOptions(),
    *,
    topology: Topology = SAMPLE,
    agency_factory: AgencyFactory = RunningAgency,
) -> RunningInstance:
    """Start the components of the instance provisioned in ``data_dir`` (``topology`` is the
    one it was provisioned with) that ``options`` asks for.

    Raises:
        NotFoundError: ``data_dir`` holds no instance.
        CdxError: a component could not start (the ones already started are stopped).
    """
    layout = InstanceLayout.load(data_dir)
    passphrase = InstancePaths(data_dir).passphrase()
    paths = InstancePaths(data_dir)
    cleanup: list[Callable[[], Any]] = []
    try:
        registry = start_registry(paths, layout.registry, now_fn=options.clock)
        cleanup.append(registry.stop)
        if registry.address != layout.registry:
            layout = layout.bound(registry=registry.address)
            layout.save()
        identity = start_identity_providers(
            data_dir,
            passphrase,
            registry,
            f"http://{layout.portal}",
            external=options.oidc,
            config_dir=options.config_dir,
            clock=options.clock,
        )
        cleanup.append(identity.stop)
        anchor = paths.load_anchor()

        def conf_client(identity: rpc.TlsIdentity, path: Path) -> ConfClient:
            client = ConfClient(
                registry.address,
                identity,
                anchor,
                path,
                poll_interval=options.conf_poll,
                now_fn=options.clock,
            )
            client.refresh()
            client.start()
            cleanup.append(client.stop)
            return client

        portal_identity = load_identity(
            layout.portal_dir / "tls" / "portal.pem",
            layout.portal_dir / "tls" / "portal.key",
            paths.ca_pem,
            passphrase,
        )
        instance = RunningInstance(
            layout=layout,
            passphrase=passphrase,
            options=options,
            registry=registry,
            idp=load_dev_idp(data_dir, passphrase),
            conf=conf_client(portal_identity, layout.portal_dir / "stack-globalconf.bin"),
            login=identity,
            _cleanup=cleanup,
        )

        if options.consent:
            consent_conf = conf_client(
                instance.service_identity("consent"), layout.consent_dir / "globalconf.bin"
            )
            instance.component_confs["consent"] = consent_conf
            settings: dict[str, Any] = {
                # Consent events reach the audit log (started next; the shipper retries).
                "audit_log": options.audit,
                "audit_interval": 1.0,
                "audit_max_backoff": 5.0,
                **options.consent_settings,
            }
            consent = _start_consent(
                layout, passphrase, options, consent_conf, address=layout.consent, **settings
            )
            cleanup.append(lambda: consent.stop(0.5))
            instance.consent = consent
            if is_unbound(instance.layout.consent):  # record the address it bound
                instance.layout = instance.layout.bound(consent=consent.address)
                instance.layout.save()
                registry.service.set_trust_anchors(
                    consent_service_address=consent.address, actor=ADMIN
                )
                instance.sync_conf()

        if options.audit:
            audit_identity = instance.service_identity("audit")
            instance.component_confs["audit"] = conf_client(
                audit_identity, layout.audit_dir / "globalconf.bin"
            )
            audit = instance.start_audit()
            cleanup.append(lambda: instance.audit.stop(0.5) if instance.audit else None)
            # Gauges for /metrics (read only when telemetry collects them).
            cleanup.append(audit_monitoring.observe(audit, identity=audit_identity))

        for spec in topology.serving:
            agency = agency_factory(
                spec,
                layout.agencies[spec.key].config_file,
                registry,
                instance_dir=data_dir,
                consent_checker_factory=_checker_factory(instance),
                audit_shipper_factory=_shipper_factory(instance),
                witness_interval=(
                    options.witness_interval if options.audit and options.witnesses else None
                ),
                on_bound=lambda a: _agency_bound(instance, a),
            )
            instance.agencies[spec.key] = agency
            cleanup.append(agency.close)
            if options.agencies:
                agency.start()
                cleanup.append(agency.running.health.observe())

        if options.notify:
            _start_notify(instance, registry, conf_client, cleanup)

        for name, component_conf in instance.component_confs.items():
            for remove in health.observe_conf({"server": name}, component_conf.latest):
                cleanup.append(remove)
        if options.portal:
            from portal.instance import serve_instance

            https = layout.portal_dir / "https"
            running_portal = serve_instance(
                data_dir,
                listen=layout.portal,
                insecure_cookies=options.insecure_cookies,
                registry=registry.address,
                default_language="en",
                tls_cert=str(https / "portal-web.pem") if options.portal_https else None,
                tls_key=str(https / "portal-web.key") if options.portal_https else None,
                notify=(lambda: instance.notify.address if instance.notify else ""),
                now_fn=options.clock,
            )
            cleanup.append(running_portal.stop)
            instance.portal = running_portal
            if is_unbound(instance.layout.portal):
                instance.layout = instance.layout.bound(portal=_bound_address(running_portal.url))
                instance.layout.save()
            identity.portal_at(running_portal.url)
            if instance.notify is not None:
                instance.notify.service.portal_url = running_portal.url
        return instance
    except BaseException:
        for fn in reversed(cleanup):
            with contextlib.suppress(Exception):
                fn()
        raise


NOTIFY_SENDER = "no-reply@cdx.vn"


def _start_notify(
    instance: RunningInstance,
    registry: RunningRegistry,
    conf_client: Callable[[rpc.TlsIdentity, Path], ConfClient],
    cleanup: list[Callable[[], Any]],
) -> None:
    """Start the notification service (provisioning it first in an instance created before it
    existed), with a local mail sink unless a relay is configured."""
    options, layout, passphrase = instance.options, instance.layout, instance.passphrase
    paths = NotifyPaths(layout.data_dir)
    if not paths.exists():
        provision_notify(layout.data_dir, registry.service, passphrase)
    notify_identity = instance.service_identity("notify")
    notify_conf = conf_client(notify_identity, paths.conf_cache)
    instance.component_confs["notify"] = notify_conf
    smtp = options.notify_smtp
    if smtp is None:
        sink = MailSink(folder=paths.dir / "mailbox").start()
        cleanup.append(sink.stop)
        instance.mail_sink = sink
        smtp = SmtpSettings(sink.host, sink.port, NOTIFY_SENDER)
    senders: dict[str, Sender] = {"email": SmtpSender(smtp)}
    closers: list[Callable[[], None]] = []
    if options.notify_webhook is not None:
        webhook = WebhookSender(options.notify_webhook)
        senders["webhook"] = webhook
        closers.append(webhook.close)
    url, schema = _database(options.notify_database, paths.database)
    running = start_notify_service(
        engine=db.create_engine(url, schema=schema),
        identity=notify_identity,
        sealer=paths.sealer(passphrase),
        conf=notify_conf.current,
        portal_url=f"http://{layout.portal}",
        senders=senders,
        address=layout.notify,
        retry=options.notify_retry,
        closers=closers,
    )
    cleanup.append(lambda: running.stop(0.5))
    instance.notify = running
    if is_unbound(instance.layout.notify):
        instance.layout = instance.layout.bound(notify=running.address)
        instance.layout.save()


def _checker_factory(instance: RunningInstance) -> ConsentCheckerFactory | None:
    if instance.consent is None:
        return None
    address, ttl = instance.consent.address, instance.options.consent_checker_ttl

    def build(ctx: PluginContext) -> CachedConsentChecker:
        return CachedConsentChecker(address, ctx.tls, ttl=ttl)

    return build


def _shipper_factory(instance: RunningInstance) -> AuditShipperFactory | None:
    if instance.audit is None:
        return None
    address = instance.audit.address

    def build(ctx: PluginContext) -> AuditClient:
        return AuditClient(address, ctx.tls)

    return build


def _agency_bound(instance: RunningInstance, agency: RunningAgency) -> None:
    """An agency bound new addresses: record them in instance.toml; peers refresh conf."""
    config = agency.config
    instance.layout = instance.layout.agency_bound(
        agency.key,
        exchange=config.exchange_address,
        gateway=config.gateway_address,
        gateway_token=config.gateway_token_address,
        backend=config.backends[agency.subsystem],
    )
    instance.layout.save()
    instance.sync_conf()
