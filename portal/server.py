"""Runs the portal (``cdx.asgi``: uvicorn in a background thread on a socket bound before
start), so tests, ``cdx up`` and ``cdx portal serve`` share one way to start it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cdx.asgi import RunningWeb, serve_asgi, split_listen
from cdx.clock import utcnow
from portal.app import create_app
from portal.backends import AuditBackend, ConfSource, ConsentBackend, IdentityProvider
from portal.config import PortalConfig
from portal.notifications import NotifyBackend
from portal.requests_backend import RequestsBackend
from portal.sessions import SessionStore

__all__ = ["RunningPortal", "split_listen", "start_portal"]

#: A started portal: ``url`` to browse, ``stop()`` to end it.
RunningPortal = RunningWeb


def start_portal(
    config: PortalConfig,
    consent: ConsentBackend,
    audit: AuditBackend,
    idp: IdentityProvider,
    conf_source: ConfSource,
    *,
    listen: str = "127.0.0.1:0",
    now_fn: Callable[[], datetime] = utcnow,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_key_password: str | None = None,
    log_level: str = "warning",
    sessions: SessionStore,
    notify: NotifyBackend | None = None,
    requests: RequestsBackend | None = None,
) -> RunningPortal:
    """Start the portal and wait until it accepts connections.

    Serves HTTPS when ``tls_cert``/``tls_key`` are given (else plain HTTP, e.g. behind a
    TLS-terminating proxy, or on loopback for a demo).

    Raises:
        InvalidArgumentError: a malformed ``listen`` address.
        UnavailableError: the address cannot be bound or the server did not start.
    """
    split_listen(listen)  # a malformed address fails before anything is built
    app = create_app(
        config,
        consent,
        audit,
        idp,
        conf_source,
        now_fn,
        sessions=sessions,
        notify_client=notify,
        requests=requests,
    )
    return serve_asgi(
        app,
        listen=listen,
        name="cdx-portal",
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_key_password=tls_key_password,
        log_level=log_level,
    )
