"""Runs the consent service: the gRPC servers, the change hub and the expiry sweeper.

``start_consent_service`` wires a ``ConsentService`` to gRPC:

- the main port (mutual TLS, client certificate required) serves all four APIs: security
  servers (``ConsentCheck``, ``AgencyConsent``), information systems (``AgencyConsent``), the
  portal (``CitizenConsent`` with the citizen's bearer token), and ``Representation`` (the
  representation authority, citizens through the portal, the audit log);
- an optional background shipper (``audit_log=True``) that appends every consent lifecycle
  event to the audit log (``consent.auditlog``);
- an optional public port (server-authenticated TLS, no client certificate) serves only
  ``CitizenConsent``, ``CitizenRequests`` and the citizens' part of ``Representation``: for
  citizens' own tools, which hold a token but no certificate (the authority's and the audit
  log's calls need one);
- data-subject requests (ADR 0020) on the main port: ``CitizenRequests``, ``AgencyRequests``
  and ``InspectorRequests``, their steps shipped to the audit log like consent events
  (``consent.request_audit``), deadlines counted on ``calendar``.

Each ``WatchChanges`` stream holds one worker thread for its lifetime, so ``max_workers``
bounds the number of subscribed security servers plus concurrent calls.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health
from sqlalchemy.engine import Engine

from audit.client import AuditClient
from cdx import crypto, db, rpc
from cdx.clock import Clock, utcnow
from cdx.v1 import consent_pb2_grpc
from consent.auditlog import ConsentAuditShipper
from consent.model import ConsentEvent
from consent.representation_servicer import RepresentationServicer
from consent.request_audit import RequestAuditShipper
from consent.request_servicer import (
    AgencyRequestsServicer,
    CitizenRequestsServicer,
    InspectorRequestsServicer,
)
from consent.requests import SubjectRequestService
from consent.sealing import MIGRATION_ATTRIBUTE, DataKeys, derive_data_key
from consent.service import ConfSource, ConsentService, EventHook
from consent.servicer import (
    AgencyConsentServicer,
    CitizenConsentServicer,
    ConsentCheckServicer,
    FeedSettings,
)
from consent.workdays import WorkingCalendar

log = logging.getLogger(__name__)


@dataclass
class RunningConsent:
    """A running consent service; ``stop()`` shuts it down."""

    address: str
    service: ConsentService
    public_address: str | None = None
    _servers: list[grpc.Server] = field(default_factory=list, repr=False)
    _healths: list[health.HealthServicer] = field(default_factory=list, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _sweeper: threading.Thread | None = field(default=None, repr=False)
    audit_shipper: ConsentAuditShipper | None = None
    requests: SubjectRequestService | None = None
    request_shipper: RequestAuditShipper | None = None

    def stop(self, grace: float = 0.5) -> None:
        """Stop serving: end the change-feed streams, the sweeper and the servers."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for h in self._healths:
            rpc.mark_serving(h, False)
        self.service.close()
        waits = [s.stop(grace) for s in self._servers]
        for w in waits:
            w.wait(grace + 5)
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        if self.audit_shipper is not None:
            self.audit_shipper.stop()
        if self.request_shipper is not None:
            self.request_shipper.stop()


def _sweep(service: ConsentService, stopping: threading.Event, interval: float) -> None:
    while not stopping.wait(interval):
        try:
            service.expire_due()
        except Exception:  # keep sweeping: a failed round is retried at the next interval
            log.exception("consent expiry sweep failed")


def _both(first: EventHook | None, second: EventHook) -> EventHook:
    def hook(event: ConsentEvent) -> None:
        try:
            if first is not None:
                first(event)
        finally:
            second(event)

    return hook


def migrate_consent_db(engine: Engine, data_keys: DataKeys) -> None:
    """Bring the consent schema up to date; ``consent_0003`` seals stored rows with the keys."""
    db.migrate(engine, "consent", attributes={MIGRATION_ATTRIBUTE: data_keys})


def start_consent_service(
    *,
    engine: Engine,
    identity: rpc.TlsIdentity,
    signer: crypto.Signer,
    tag_key: bytes,
    conf: ConfSource,
    data_keys: DataKeys | None = None,
    address: str = "127.0.0.1:0",
    public_address: str | None = None,
    clock: Clock = utcnow,
    on_event: EventHook | None = None,
    migrate: bool = True,
    expiry_interval: float = 5.0,
    heartbeat_interval: float = 2.0,
    poll_interval: float = 0.2,
    max_workers: int = 64,
    issuer: str | None = None,
    audit_log: bool = False,
    audit_interval: float = 2.0,
    audit_max_backoff: float = 30.0,
    calendar: WorkingCalendar | None = None,
) -> RunningConsent:
    """Migrate the schema, start the servers and return the running service.

    ``signer`` must hold the Ed25519 key published as ``consent_service_key`` in global
    configuration; ``tag_key`` (32+ random bytes) keys the subject tags; ``data_keys`` seal
    the stored terms and artefacts (``None``: one key derived from ``tag_key``, for instances
    provisioned without ``data.key``); with retired keys, every value they sealed is resealed
    under the current key before serving (a rotation); ``conf`` returns the current verified
    configuration; ``on_event`` is called after every committed consent event
    (e.g. to log it); ``audit_log`` ships every lifecycle event to the audit log named by
    global configuration (``audit_log_address``), over ``identity``, from the database, so
    events wait while the log is down (and so every step of a data-subject request);
    ``calendar`` counts the requests' working days (default: weekends only, in Vietnam's time
    zone).

    Raises:
        UnavailableError: a port cannot be bound.
    """
    keys = data_keys or DataKeys(derive_data_key(tag_key))
    if migrate:
        migrate_consent_db(engine, keys)
    shipper: ConsentAuditShipper | None = None
    request_shipper: RequestAuditShipper | None = None
    hook = on_event
    if audit_log:
        client = AuditClient(lambda: conf().audit_log_address, identity)
        shipper = ConsentAuditShipper(
            engine,
            client,
            signer,
            tag_key,
            keys,
            interval=audit_interval,
            max_backoff=audit_max_backoff,
            on_close=client.close,
        )
        hook = _both(on_event, shipper.poke)
        request_client = AuditClient(lambda: conf().audit_log_address, identity)
        request_shipper = RequestAuditShipper(
            engine,
            request_client,
            signer,
            tag_key,
            keys,
            interval=audit_interval,
            max_backoff=audit_max_backoff,
            on_close=request_client.close,
        )
    requests = SubjectRequestService(
        engine,
        signer=signer,
        tag_key=tag_key,
        data_keys=keys,
        conf=conf,
        calendar=calendar or WorkingCalendar(),
        clock=clock,
        on_event=request_shipper.poke if request_shipper is not None else None,
        issuer=issuer,
    )
    service = ConsentService(
        engine,
        signer=signer,
        tag_key=tag_key,
        data_keys=keys,
        conf=conf,
        clock=clock,
        on_event=hook,
        issuer=issuer,
        poll_interval=poll_interval,
    )
    try:
        registered = conf().consent_service_key_der
        if registered and crypto.key_id(crypto.public_key_from_der(registered)) != signer.key_id:
            log.warning("the consent signing key is not the one registered in global configuration")
    except Exception:  # a missing configuration is reported by every call anyway
        log.warning("global configuration is not available yet", exc_info=True)
    if keys.retired_ids:
        try:
            resealed = service.reseal() + requests.reseal()
        except BaseException:
            service.close()
            raise
        log.info(
            "resealed %d consents and requests under data key %s; retired keys %s can be "
            "destroyed once every replica holds the new key",
            resealed,
            keys.current_id,
            ", ".join(keys.retired_ids),
        )
    running = RunningConsent(
        address="",
        service=service,
        audit_shipper=shipper,
        requests=requests,
        request_shipper=request_shipper,
    )
    feed = FeedSettings(heartbeat_interval=heartbeat_interval)
    try:
        server, health_servicer = rpc.create_server(identity, max_workers=max_workers)
        consent_pb2_grpc.add_CitizenConsentServicer_to_server(
            CitizenConsentServicer(service, clock), server
        )
        consent_pb2_grpc.add_AgencyConsentServicer_to_server(
            AgencyConsentServicer(service, clock), server
        )
        consent_pb2_grpc.add_ConsentCheckServicer_to_server(
            ConsentCheckServicer(service, clock, feed, running._stopping), server
        )
        consent_pb2_grpc.add_CitizenRequestsServicer_to_server(
            CitizenRequestsServicer(requests, clock), server
        )
        consent_pb2_grpc.add_AgencyRequestsServicer_to_server(
            AgencyRequestsServicer(requests, clock), server
        )
        consent_pb2_grpc.add_InspectorRequestsServicer_to_server(
            InspectorRequestsServicer(requests, clock, tag_key), server
        )
        consent_pb2_grpc.add_RepresentationServicer_to_server(
            RepresentationServicer(service, clock), server
        )
        port = rpc.add_port(server, address, identity)
        running._servers.append(server)
        running._healths.append(health_servicer)
        running.address = f"{address.rsplit(':', 1)[0]}:{port}"
        if public_address is not None:
            public, public_health = rpc.create_server(identity, max_workers=16)
            consent_pb2_grpc.add_CitizenConsentServicer_to_server(
                CitizenConsentServicer(service, clock), public
            )
            consent_pb2_grpc.add_CitizenRequestsServicer_to_server(
                CitizenRequestsServicer(requests, clock), public
            )
            consent_pb2_grpc.add_RepresentationServicer_to_server(
                RepresentationServicer(service, clock), public
            )
            public_port = rpc.add_port(public, public_address, identity, require_client_auth=False)
            running._servers.append(public)
            running._healths.append(public_health)
            running.public_address = f"{public_address.rsplit(':', 1)[0]}:{public_port}"
        for s in running._servers:
            s.start()
        for h in running._healths:
            rpc.mark_serving(h)
    except BaseException:
        running.stop(0)
        raise
    running._sweeper = threading.Thread(
        target=_sweep,
        args=(service, running._stopping, expiry_interval),
        name="consent-expiry",
        daemon=True,
    )
    running._sweeper.start()
    if shipper is not None:
        shipper.start()
    if request_shipper is not None:
        request_shipper.start()
    log.info("consent service listening on %s", running.address)
    return running
