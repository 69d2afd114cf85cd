"""Builds the portal's ASGI app (Starlette): routes, templates, static files, sessions, CSRF,
security headers and error pages. The backends come in through the small interfaces of
``portal.backends``: gRPC clients in production, fakes in unit tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from cdx import errors
from cdx.clock import utcnow
from portal import citizen, inspector, notifications, request_views, session_views
from portal.backends import AuditBackend, ConfSource, ConsentBackend, IdentityProvider
from portal.config import PortalConfig
from portal.i18n import Catalogue
from portal.monitor import LogMonitor
from portal.notifications import NotifyBackend
from portal.requests_backend import RequestsBackend
from portal.security import CsrfRefusedError, SecurityHeadersMiddleware
from portal.sessions import ServerSessionMiddleware, SessionStore
from portal.tileproofs import TileEndpoint, TileEndpoints
from portal.web import (
    InternalErrorMiddleware,
    PageError,
    Portal,
    on_error,
    on_http_error,
)

HERE = Path(__file__).resolve().parent
MAX_BODY_BYTES = 64 * 1024


def _templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return Jinja2Templates(env=env)


def create_app(
    config: PortalConfig,
    consent_client: ConsentBackend,
    audit_client: AuditBackend,
    idp: IdentityProvider,
    conf_source: ConfSource,
    now_fn: Callable[[], datetime] = utcnow,
    *,
    sessions: SessionStore,
    notify_client: NotifyBackend | None = None,
    requests: RequestsBackend | None = None,
    tiles: TileEndpoint | None = None,
) -> Starlette:
    """The portal app. ``now_fn`` is the clock (sessions, token checks, report dates);
    ``sessions`` where sessions live (``portal.sessions.SqlSessionStore``); ``requests`` the
    data-subject request APIs (``portal.grpc_requests.GrpcRequestsClient``); ``tiles`` gives
    the log's tile endpoint that global configuration names (default: ``TileEndpoints`` with
    the system's certificate authorities), from which proofs are computed."""
    portal = Portal(
        config=config,
        consent=consent_client,
        audit=audit_client,
        idp=idp,
        conf_source=conf_source,
        now=now_fn,
        catalogue=Catalogue(config.timezone),
        templates=_templates(),
        monitor=LogMonitor(audit_client, now_fn),
        notify=notify_client,
        requests=requests,
        tile_endpoint=tiles if tiles is not None else TileEndpoints(),
    )
    app = Starlette(
        routes=[
            *session_views.routes,
            *citizen.routes,
            *notifications.routes,
            *inspector.routes,
            *request_views.routes,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeadersMiddleware, hsts=config.secure_cookies),
            Middleware(
                ServerSessionMiddleware,
                store=sessions,
                key=config.session_key.reveal(),
                secure=config.secure_cookies,
                now_fn=now_fn,
                idle=timedelta(minutes=config.session_idle_minutes),
                lifetime=timedelta(hours=config.session_lifetime_hours),
            ),
            Middleware(InternalErrorMiddleware),
        ],
        exception_handlers={
            errors.CdxError: on_error,
            PageError: on_error,
            CsrfRefusedError: on_error,
            HTTPException: on_http_error,
        },
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.portal = portal
    return app
