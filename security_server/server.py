"""Runs one security server: Exchange (peers), Gateway (local systems), outbox, conf polling.

``start_security_server(config)`` loads the keys from ``config.data_dir``, migrates the
database, obtains a current global configuration (refusing to start without one, or with
expired certificates), starts the outbox shipper and the configuration poller, and listens:

- ``exchange_address``: ``Exchange.Forward`` over mutual TLS (peers' auth certificates);
- ``gateway_address``: ``Gateway.Query`` over mutual TLS (information-system certificates);
- ``gateway_token_address`` (optional): ``Gateway.Query`` over server-authenticated TLS with an
  ``authorization: Bearer <token>`` API token (gRPC cannot ask for a client certificate and
  also accept callers without one on the same port).

A maintenance thread keeps the gRPC health status current from ``ServerHealth``
(``security_server.health``: NOT_SERVING while a critical check fails; a backend's services
NOT_SERVING under their own names while it fails) and purges expired replay-cache rows. A
prober thread asks each dependency (registry, audit log, consent service, backends) for its
health every ``dependency_probe_s`` seconds (``cdx.dependencies``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType

import grpc
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2
from sqlalchemy.engine import Engine

from cdx import crypto, db, errors, keyfiles, pki, rpc
from cdx.clock import Clock, utcnow
from cdx.confclient import ConfClient
from cdx.dependencies import Dependencies, Dependency, Prober, channels, conf_address
from cdx.globalconf import VerifiedGlobalConf
from cdx.lawful import ConsentChecker, DenyAllConsentChecker
from cdx.v1 import exchange_pb2_grpc
from security_server import keystore
from security_server.config import SecurityServerConfig
from security_server.consumer import Consumer
from security_server.groupcommit import GroupCommitter
from security_server.health import ServerHealth, WitnessSource
from security_server.outbox import AuditShipper, Outbox
from security_server.peers import BackendPool, PeerPool
from security_server.provider import Provider
from security_server.ratelimit import RateLimiter
from security_server.records import Recorder
from security_server.replay import ReplayGuard
from security_server.servicer import ExchangeServicer, GatewayServicer

log = logging.getLogger(__name__)

_PURGE_EVERY = timedelta(seconds=30)


@dataclass(frozen=True)
class PluginContext:
    """What a consent-checker or audit-shipper factory gets to build its client with."""

    server_id: str
    config: SecurityServerConfig
    tls: rpc.TlsIdentity = field(repr=False)
    conf_client: ConfClient
    keys: keystore.ServerKeys = field(repr=False)
    now_fn: Clock


#: A factory may return ``None``: not configured in global configuration (consent-based
#: requests are then denied; records stay in the outbox).
ConsentCheckerFactory = Callable[[PluginContext], ConsentChecker | None]
AuditShipperFactory = Callable[[PluginContext], AuditShipper | None]


@dataclass
class RunningSecurityServer:
    """A started security server and its parts (for tests, the CLI and other components)."""

    config: SecurityServerConfig
    keys: keystore.ServerKeys
    server_id: str
    exchange_address: str
    gateway_address: str
    gateway_token_address: str | None
    outbox: Outbox
    conf_client: ConfClient
    consumer: Consumer
    provider: Provider
    replay: ReplayGuard
    engine: Engine
    health: ServerHealth
    dependencies: Dependencies
    _committer: GroupCommitter = field(repr=False)
    _servers: list[grpc.Server] = field(repr=False)
    _now: Clock = field(repr=False)
    _healths: list[grpc_health.HealthServicer] = field(repr=False)
    _peers: PeerPool = field(repr=False)
    _backends: BackendPool = field(repr=False)
    _stream_workers: ThreadPoolExecutor | None = field(default=None, repr=False)
    _stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _maintenance: threading.Thread | None = field(default=None, repr=False)
    _prober: Prober | None = field(default=None, repr=False)
    _closables: list[object] = field(default_factory=list, repr=False)
    #: The failing critical check's code while the server is NOT_SERVING, else ``None``.
    health_problem: str | None = None

    def stats(self) -> dict[str, object]:
        """Counters for operators and metrics (no personal data)."""
        now = self._now()
        age = self.outbox.oldest_unshipped_age(now)
        conf = self.conf_client.latest()
        return {
            "server_id": self.server_id,
            "consumer_decisions": self.consumer.decisions.snapshot(),
            "provider_decisions": self.provider.decisions.snapshot(),
            "outbox_depth": self.outbox.depth(),
            "outbox_oldest_unshipped_s": age.total_seconds() if age is not None else None,
            "outbox_shipped_total": self.outbox.shipped_total,
            "outbox_ship_failures": self.outbox.ship_failures,
            "outbox_dead_letters": self.outbox.dead_letter_count(),
            "conf_version": conf.version if conf is not None else 0,
            "conf_age_s": conf.age(now).total_seconds() if conf is not None else None,
            "replay_cache_size": len(self.replay),
            "commit_batches": self._committer.batches,
            "commit_jobs": self._committer.jobs,
            "health_problem": self.health_problem,
            "dependencies": self.dependencies.report(),
        }

    def probe_dependencies(self) -> None:
        """Ask every dependency for its health now (the prober does so every
        ``dependency_probe_s`` seconds)."""
        if self._prober is not None:
            self._prober.probe_once()

    @property
    def signer(self) -> crypto.KeySigner:
        """This server's signing ``Signer`` (for other records it must sign, e.g. cosigning)."""
        return self.keys.signer

    def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving, then the threads; the outbox keeps unshipped records for next start."""
        if self._stop_event.is_set():
            return
        self._stop_event.set()
        for h in self._healths:
            rpc.mark_serving(h, False)
        events = [s.stop(grace) for s in self._servers]
        for event in events:
            event.wait()
        if self._stream_workers is not None:
            self._stream_workers.shutdown(wait=True, cancel_futures=False)
        if self._maintenance is not None:
            self._maintenance.join(timeout=5)
        if self._prober is not None:
            self._prober.stop()
        self.outbox.stop()
        for item in self._closables:
            close = getattr(item, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # closing a plug-in must not block the shutdown
                    log.exception("closing %s failed", type(item).__name__)
        self.conf_client.stop()
        self._peers.close()
        self._backends.close()
        self._committer.close()
        self.engine.dispose()

    def wait(self) -> None:
        """Block until stopped (for ``cdx security-server serve``)."""
        self._servers[0].wait_for_termination()

    def __enter__(self) -> RunningSecurityServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _check_certificates(keys: keystore.ServerKeys, now: datetime) -> None:
    for cert, usage in ((keys.auth_cert, "auth"), (keys.signing_cert, "signing")):
        pki.validate_certificate(cert, keys.ca_cert, now, usage=usage)  # type: ignore[arg-type]


def _first_conf(conf_client: ConfClient, now: datetime) -> VerifiedGlobalConf:
    try:
        conf_client.refresh()
    except errors.CdxError as exc:
        log.warning("could not refresh global configuration at start: %s", exc.code)
    return conf_client.current(now)


def start_security_server(
    config: SecurityServerConfig,
    *,
    consent_checker: ConsentChecker | None = None,
    audit_shipper: AuditShipper | None = None,
    now_fn: Clock = utcnow,
    witness: WitnessSource | None = None,
    consent_checker_factory: ConsentCheckerFactory | None = None,
    audit_shipper_factory: AuditShipperFactory | None = None,
) -> RunningSecurityServer:
    """Start a security server from ``config`` (keys and certificates in ``config.data_dir``).

    ``consent_checker``/``audit_shipper`` plug in the consent and audit components; without a
    checker every consent-based request is denied, without a shipper records stay in the
    outbox (and the backlog window still applies). The ``*_factory`` variants build them once
    the server's identity and configuration are loaded (used by ``cdx security-server serve``).
    ``witness()`` returns the server's audit-log witness once it runs (its alarm stops the
    server serving).

    Raises:
        NotFoundError / KeyStoreError: keys or certificates missing or unreadable.
        CertificateError / CertificateExpiredError: the certificates are not valid now.
        ConfExpiredError / UnavailableError: no current global configuration can be obtained.
        UnavailableError: an address cannot be bound.
    """
    passphrase = keyfiles.read_passphrase(config.passphrase_path)
    keys = keystore.load_keys(config.data_dir, config.server_id, passphrase)
    _check_certificates(keys, now_fn())
    conf_client = ConfClient(
        config.registry_address,
        keys.tls,
        keys.anchor,
        config.data_dir / keystore.GLOBAL_CONF,
        now_fn=now_fn,
        poll_interval=timedelta(seconds=config.conf_poll_s),
    )
    engine = db.create_engine(config.db_url, schema=config.database_schema)
    committer: GroupCommitter | None = None
    started: list[grpc.Server] = []
    outbox: Outbox | None = None
    stream_workers: ThreadPoolExecutor | None = None
    owned: list[object] = []  # plug-ins built here, closed on stop
    try:
        conf = _first_conf(conf_client, now_fn())
        if config.server_id not in conf.servers:
            raise errors.FailedPreconditionError("this server is not registered (or revoked)")
        if conf.production and config.outbox_window_s <= 0:
            raise errors.FailedPreconditionError("a production instance needs an outbox window")
        context = PluginContext(config.server_id, config, keys.tls, conf_client, keys, now_fn)
        if consent_checker is None and consent_checker_factory is not None:
            consent_checker = consent_checker_factory(context)
            owned.append(consent_checker)
        if audit_shipper is None and audit_shipper_factory is not None:
            audit_shipper = audit_shipper_factory(context)
            owned.append(audit_shipper)
        db.migrate(engine, "security_server")
        dependencies, backend_deps = _dependencies(
            config, conf_client, now_fn, audit=audit_shipper, consent=consent_checker
        )
        committer = GroupCommitter(engine, name="cdx-ss-writer")
        outbox = Outbox(
            engine,
            committer,
            opening_key=keys.outbox_key(),
            window=config.outbox_window,
            shipper=audit_shipper,
            batch_size=config.outbox_batch,
            clock=now_fn,
            dependency=dependencies.get(AUDIT_LOG),
        )
        replay = ReplayGuard(engine, committer, now_fn())
        recorder = Recorder(config.server_id, keys.signer, outbox)
        peers = PeerPool(keys.tls, stream=config.exchange_stream)
        backends = BackendPool(dependencies={dep.peer: dep for dep in backend_deps.values()})
        provider = Provider(
            server_id=config.server_id,
            conf=conf_client.current,
            signer=keys.signer,
            hpke_key=keys.hpke_key,
            recorder=recorder,
            outbox=outbox,
            replay=replay,
            consent_checker=(
                consent_checker if consent_checker is not None else DenyAllConsentChecker()
            ),  # an empty cache is falsy (len 0): test identity, not truth
            rate_limiter=RateLimiter(),
            backends=backends,
            backend_for=config.backend_for,
            limits=config.limits,
            now_fn=now_fn,
        )
        consumer = Consumer(
            server_id=config.server_id,
            conf=conf_client.current,
            signer=keys.signer,
            recorder=recorder,
            peers=peers,
            limits=config.limits,
            now_fn=now_fn,
        )

        exchange_server, exchange_health = rpc.create_server(keys.tls, max_workers=config.workers)
        stream_workers = ThreadPoolExecutor(
            max_workers=config.workers, thread_name_prefix="cdx-ss-stream"
        )
        exchange_pb2_grpc.add_ExchangeServicer_to_server(
            ExchangeServicer(provider, stream_workers), exchange_server
        )
        exchange_port = rpc.add_port(exchange_server, config.exchange_address, keys.tls)

        gateway_server, gateway_health = rpc.create_server(keys.tls, max_workers=config.workers)
        gateway = GatewayServicer(consumer, config)
        exchange_pb2_grpc.add_GatewayServicer_to_server(gateway, gateway_server)
        gateway_port = rpc.add_port(gateway_server, config.gateway_address, keys.tls)
        token_port = None
        if config.gateway_token_address:
            token_port = rpc.add_port(
                gateway_server, config.gateway_token_address, keys.tls, require_client_auth=False
            )
        for server in (exchange_server, gateway_server):
            server.start()
            started.append(server)
        outbox.start()
        conf_client.start()
        prober = _prober(config, dependencies, backend_deps, keys.tls).start()
    except BaseException:
        for server in started:
            server.stop(None)
        if outbox is not None:
            outbox.stop()
        if stream_workers is not None:
            stream_workers.shutdown(wait=False)
        if committer is not None:
            committer.close()
        for item in owned:
            close = getattr(item, "close", None)
            if callable(close):
                close()
        conf_client.stop()
        engine.dispose()
        raise

    def _address(configured: str, port: int) -> str:
        return f"{configured.rsplit(':', 1)[0]}:{port}"

    server_health = ServerHealth(
        config.server_id,
        conf=conf_client.current,
        latest_conf=conf_client.latest,
        certificates=lambda: (
            ("auth", keys.auth_cert),
            ("signing", keys.signing_cert),
            ("ca", keys.ca_cert),
        ),
        outbox=outbox,
        dependencies=dependencies,
        backends=backend_deps,
        clock=now_fn,
        witness=witness,
    )
    running = RunningSecurityServer(
        config=config,
        keys=keys,
        server_id=config.server_id,
        exchange_address=_address(config.exchange_address, exchange_port),
        gateway_address=_address(config.gateway_address, gateway_port),
        gateway_token_address=(
            _address(config.gateway_token_address, token_port) if token_port else None
        ),
        outbox=outbox,
        conf_client=conf_client,
        consumer=consumer,
        provider=provider,
        replay=replay,
        engine=engine,
        health=server_health,
        dependencies=dependencies,
        _committer=committer,
        _servers=[exchange_server, gateway_server],
        _now=now_fn,
        _closables=owned,
        _healths=[exchange_health, gateway_health],
        _peers=peers,
        _backends=backends,
        _stream_workers=stream_workers,
        _prober=prober,
    )
    _update_health(running, now_fn)
    running._maintenance = threading.Thread(
        target=_maintain,
        args=(running, now_fn),
        name="cdx-ss-maintenance",
        daemon=True,
    )
    running._maintenance.start()
    log.info(
        "security server %s: exchange %s, gateway %s",
        config.server_id,
        running.exchange_address,
        running.gateway_address,
    )
    return running


#: Name of the audit log among a server's dependencies.
AUDIT_LOG = "audit log"


def _dependencies(
    config: SecurityServerConfig,
    conf_client: ConfClient,
    clock: Clock,
    *,
    audit: object | None,
    consent: object | None,
) -> tuple[Dependencies, dict[str, Dependency]]:
    """The peers this server depends on, and each backend key's dependency. The audit log and
    the consent service count only when plugged in; their addresses follow global conf."""

    deps = Dependencies(config.server_id, clock=clock)
    if config.registry_address:
        deps.add("registry", config.registry_address)
    if audit is not None:
        deps.add(AUDIT_LOG, conf_address(conf_client.latest, "audit_log_address"))
    if consent is not None:
        deps.add("consent service", conf_address(conf_client.latest, "consent_service_address"))
    by_address: dict[str, list[str]] = {}
    for key, address in sorted(config.backends.items()):
        by_address.setdefault(address, []).append(key)
    backends: dict[str, Dependency] = {}
    for address, keys in by_address.items():
        dep = deps.add(f"backend {', '.join(keys)}", address)
        backends.update(dict.fromkeys(keys, dep))
    return deps, backends


def _prober(
    config: SecurityServerConfig,
    deps: Dependencies,
    backends: Mapping[str, Dependency],
    tls: rpc.TlsIdentity,
) -> Prober:
    prober = Prober(interval=config.dependency_probe_s, name="cdx-ss-probe")
    backend_deps = {id(dep) for dep in backends.values()}
    for dep in deps:
        # Backends are reached as the backend pool reaches them (plaintext on loopback);
        # every CDX peer over mutual TLS with this server's auth certificate.
        prober.add(dep, channels(None if id(dep) in backend_deps else tls))
    return prober


def _update_health(running: RunningSecurityServer, now_fn: Clock) -> None:
    problem = running.health.problem(now_fn())
    if problem != running.health_problem:
        if problem:
            log.warning("security server %s not serving: %s", running.server_id, problem)
        else:
            log.info("security server %s serving", running.server_id)
    running.health_problem = problem
    for h in running._healths:
        rpc.mark_serving(h, problem is None)
    _mark_services(running._healths[0], running.health.services())


def _mark_services(servicer: grpc_health.HealthServicer, services: Mapping[str, bool]) -> None:
    """Per-service gRPC health on the exchange endpoint: a backend's services NOT_SERVING while
    it fails (the server itself keeps serving)."""
    for name, serving in services.items():
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        servicer.set(name, status)


def _maintain(running: RunningSecurityServer, now_fn: Clock) -> None:
    last_purge = now_fn()
    while not running._stop_event.wait(1.0):
        try:
            _update_health(running, now_fn)
            now = now_fn()
            if now - last_purge >= _PURGE_EVERY:
                last_purge = now
                running.replay.purge(now)
        except errors.CdxError as exc:
            log.warning("maintenance failed: %s", exc.code)
        except Exception:
            log.exception("maintenance failed")
