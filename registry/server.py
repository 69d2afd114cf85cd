"""Runs a registry: a gRPC server with mutual TLS plus a thread that keeps the configuration fresh.

``start_registry`` opens the instance (keys, database), listens (``127.0.0.1:0`` picks a free
port) and returns a ``RunningRegistry``; ``stop()`` shuts both down. The refresh thread
publishes a new configuration version whenever the latest is older than half its validity, so
security servers never see a copy with less than half its lifetime left.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType

import grpc
from grpc_health.v1 import health

from cdx import errors, rpc
from cdx.clock import Clock, utcnow
from cdx.paths import InstancePaths, as_paths
from registry import servicer
from registry.bootstrap import open_registry
from registry.service import DEFAULT_CONF_VALIDITY, RegistryService

log = logging.getLogger(__name__)


@dataclass
class RunningRegistry:
    """A started registry server. ``address`` is ``host:port`` as bound."""

    paths: InstancePaths
    service: RegistryService
    server: grpc.Server
    health: health.HealthServicer
    host: str
    port: int
    ca_pem: bytes
    _stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _refresher: threading.Thread | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving and refreshing; idempotent."""
        self._stop_event.set()
        rpc.mark_serving(self.health, False)
        self.server.stop(grace).wait()
        if self._refresher is not None:
            self._refresher.join(timeout=5)
        self.service.engine.dispose()

    def wait(self) -> None:
        """Block until the server stops (for ``cdx registry serve``)."""
        self.server.wait_for_termination()

    def __enter__(self) -> RunningRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _refresh_loop(service: RegistryService, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        try:
            service.refresh_conf()
        except errors.CdxError as exc:
            log.warning("global configuration refresh failed: %s", exc.code)
        except Exception:  # keep refreshing; the next round may succeed
            log.exception("global configuration refresh failed")


def start_registry(
    paths_or_data_dir: InstancePaths | str | os.PathLike[str],
    address: str = "127.0.0.1:0",
    *,
    db_url: str | None = None,
    db_schema: str | None = None,
    now_fn: Clock = utcnow,
    conf_validity: timedelta = DEFAULT_CONF_VALIDITY,
    refresh_interval: timedelta | None = None,
    max_workers: int = 16,
) -> RunningRegistry:
    """Open the instance under ``paths_or_data_dir`` and serve it on ``address`` with mTLS.

    ``refresh_interval`` (default: a tenth of ``conf_validity``, between 0.1 s and 30 s) is
    how often the refresh thread checks the configuration's age.

    Raises:
        NotFoundError / KeyStoreError / FailedPreconditionError: as ``open_registry``.
        UnavailableError: the address cannot be bound.
    """
    paths = as_paths(paths_or_data_dir)
    service = open_registry(
        paths, now_fn=now_fn, db_url=db_url, db_schema=db_schema, conf_validity=conf_validity
    )
    try:
        service.refresh_conf()
        identity = paths.registry_identity()
        server, health_servicer = rpc.create_server(identity, max_workers=max_workers)
        servicer.add_to_server(server, service)
        port = rpc.add_port(server, address, identity)
        server.start()
    except BaseException:
        service.engine.dispose()
        raise
    rpc.mark_serving(health_servicer)
    host = address.rsplit(":", 1)[0]
    running = RunningRegistry(paths, service, server, health_servicer, host, port, identity.ca_pem)
    seconds = (refresh_interval or conf_validity / 10).total_seconds()
    interval = min(max(seconds, 0.1), 30.0)
    running._refresher = threading.Thread(
        target=_refresh_loop,
        args=(service, running._stop_event, interval),
        name="cdx-registry-refresh",
        daemon=True,
    )
    running._refresher.start()
    log.info("registry of %s listening on %s", service.instance, running.address)
    return running
