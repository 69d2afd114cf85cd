"""Runs the notification service: its gRPC server, the entry-feed follower and the deliverer.

``start_notify_service`` migrates the database, then starts

- the ``CitizenNotifications`` API (mutual TLS; the portal relays citizens' ID tokens);
- the follower of the audit log's entry feed (``notify.feed``), over the service's own
  ``urn:cdx:service:notify`` identity, to the audit log global configuration names;
- the deliverer (``notify.deliverer``) with the configured channels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health
from sqlalchemy.engine import Engine

from cdx import db, rpc
from cdx.clock import Clock, utcnow
from cdx.globalconf import VerifiedGlobalConf
from cdx.jwks import TokenVerifier
from cdx.v1 import notify_pb2_grpc
from notify.channels import Delivery, Sender
from notify.deliverer import Deliverer
from notify.feed import EntryFeedFollower
from notify.messages import DEFAULT_TIMEZONE
from notify.sealing import Sealer
from notify.service import DEFAULT_RETRY, NotifyService, RetryPolicy
from notify.servicer import CitizenNotificationsServicer

log = logging.getLogger(__name__)


@dataclass
class RunningNotify:
    """A running notification service; ``stop()`` shuts it down."""

    address: str
    service: NotifyService
    deliverer: Deliverer
    follower: EntryFeedFollower | None
    engine: Engine
    _server: grpc.Server = field(repr=False)
    _health: health.HealthServicer = field(repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self, grace: float = 0.5) -> None:
        if self._stopped:
            return
        self._stopped = True
        rpc.mark_serving(self._health, False)
        if self.follower is not None:
            self.follower.stop()
        self.deliverer.stop()
        self._server.stop(grace).wait(grace + 5)
        for close in self._closers:
            close()
        self.engine.dispose()


def migrate_notify_db(engine: Engine) -> None:
    db.migrate(engine, "notify")


def start_notify_service(
    *,
    engine: Engine,
    identity: rpc.TlsIdentity,
    sealer: Sealer,
    conf: Callable[[], VerifiedGlobalConf],
    portal_url: str,
    senders: Mapping[str, Sender],
    address: str = "127.0.0.1:0",
    clock: Clock = utcnow,
    retry: RetryPolicy = DEFAULT_RETRY,
    timezone: str = DEFAULT_TIMEZONE,
    follow_audit_log: bool = True,
    migrate: bool = True,
    workers: int = 4,
    max_backoff: float = 5.0,
    token_verifier: TokenVerifier | None = None,
    on_sent: Callable[[Delivery], None] | None = None,
    closers: list[Callable[[], None]] | None = None,
) -> RunningNotify:
    """Migrate the schema, start the server, the follower and the deliverer.

    ``senders`` maps a channel (``email``, ``webhook``) to its sender; a message for a channel
    without one becomes a dead letter. ``portal_url`` is where the links in messages point.
    ``closers`` run at stop (e.g. the senders' connections).

    Raises:
        UnavailableError: the address cannot be bound.
    """
    if migrate:
        migrate_notify_db(engine)
    service = NotifyService(
        engine, sealer, conf, portal_url=portal_url, clock=clock, retry=retry, timezone=timezone
    )
    deliverer = Deliverer(service, senders, workers=workers, on_sent=on_sent)
    service.on_queued = deliverer.poke
    server, health_servicer = rpc.create_server(identity, max_workers=16)
    notify_pb2_grpc.add_CitizenNotificationsServicer_to_server(
        CitizenNotificationsServicer(service, conf, clock, token_verifier=token_verifier), server
    )
    try:
        port = rpc.add_port(server, address, identity)
    except BaseException:
        server.stop(0)
        raise
    server.start()
    rpc.mark_serving(health_servicer)
    deliverer.start()
    follower = None
    if follow_audit_log:
        follower = EntryFeedFollower(
            service, lambda: conf().audit_log_address, identity, max_backoff=max_backoff
        ).start()
    bound = f"{address.rsplit(':', 1)[0]}:{port}"
    log.info("notification service listening on %s", bound)
    return RunningNotify(
        address=bound,
        service=service,
        deliverer=deliverer,
        follower=follower,
        engine=engine,
        _server=server,
        _health=health_servicer,
        _closers=list(closers or ()),
    )
