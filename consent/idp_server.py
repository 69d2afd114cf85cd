"""The development identity provider as an OpenID provider over HTTP, so a single-box pilot and
the demo log in through exactly the code production uses (the portal's relying party,
``cdx.jwks``, ``cdx.tokens``): discovery, JWKS, an authorization endpoint whose login page lets
you choose a test citizen or inspector, a token endpoint (authorization code + PKCE S256) and
an end-session endpoint.

It is refused in production: every endpoint answers 403 once global configuration says the
instance is in production (and every relying party refuses development providers then, too).
It only knows the clients it was started with (client id + redirect URIs); codes are single-use,
bound to the client, redirect URI, PKCE challenge and nonce, and live 60 seconds.
"""

from __future__ import annotations

import hmac
import html
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cdx import errors
from cdx.clock import utcnow
from cdx.globalconf import IdentityProviderInfo, VerifiedGlobalConf
from cdx.ids import CitizenId
from cdx.webserver import RunningWebServer, serve
from consent.idp import DevIdentityProvider

CODE_TTL = timedelta(seconds=60)
ID_TOKEN_TTL = timedelta(minutes=30)
MAX_PENDING = 1000
ALGORITHM = "EdDSA"
PORTAL_CLIENT_ID = "cdx-portal"
#: Test people offered on the login page (national ids of the demo's citizens).
SAMPLE_PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("citizen", "079090000001", "Nguyễn Văn An"),
    ("citizen", "079090000002", "Trần Thị Bình"),
    ("inspector", "dpa-inspector-1", "Inspector (DPA)"),
)


@dataclass(frozen=True)
class DevClient:
    """A relying party the development provider serves (a public client: PKCE only)."""

    client_id: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()


@dataclass
class _Authorization:
    client_id: str
    redirect_uri: str
    state: str
    nonce: str
    challenge: str
    created: datetime


@dataclass
class _Code:
    authorization: _Authorization
    subject: str
    role: str
    name: str
    created: datetime


@dataclass
class DevOpenIdProvider:
    """The HTTP face of a ``DevIdentityProvider`` (issuer = the URL it is served at)."""

    idp: DevIdentityProvider
    issuer: str
    clients: dict[str, DevClient]
    conf: Callable[[], VerifiedGlobalConf]
    now: Callable[[], datetime] = utcnow
    _pending: dict[str, _Authorization] = field(default_factory=dict, repr=False)
    _codes: dict[str, _Code] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def registration(self) -> IdentityProviderInfo:
        """What the registry anchors for it (development; OpenID Connect by issuer URL)."""
        return IdentityProviderInfo(self.issuer, b"", True, PORTAL_CLIENT_ID, (ALGORITHM,))

    def _refused(self) -> Response | None:
        try:
            production = self.conf().production
        except errors.CdxError:
            production = True  # fail closed: without configuration, nobody logs in here
        if production:
            return Response(
                "the development identity provider is refused in production",
                status_code=403,
                media_type="text/plain",
            )
        return None

    def _expire(self) -> None:
        now = self.now()
        for table in (self._pending, self._codes):
            for key in [k for k, v in table.items() if now - v.created > CODE_TTL * 10]:
                del table[key]

    # --- endpoints ---------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        base = self.issuer
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
                "end_session_endpoint": f"{base}/end-session",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [ALGORITHM],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": ["openid", "profile"],
                "claims_supported": ["sub", "name", "role", "nonce"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(self.idp.key.public_key(), as_dict=True)
        jwk.update({"kid": self.idp.key_id, "use": "sig", "alg": ALGORITHM})
        return JSONResponse({"keys": [jwk]})

    async def authorize(self, request: Request) -> Response:
        refused = self._refused()
        if refused is not None:
            return refused
        q = request.query_params
        client = self.clients.get(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None or redirect_uri not in client.redirect_uris:
            # Never redirect to an unregistered URI (RFC 6749 §4.1.2.1).
            return Response("unknown client or redirect_uri", status_code=400)
        if (
            q.get("response_type") != "code"
            or "openid" not in q.get("scope", "").split()
            or q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
        ):
            return self._error(redirect_uri, q.get("state", ""), "invalid_request")
        ticket = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            if len(self._pending) >= MAX_PENDING:
                return Response("too many logins in progress", status_code=503)
            self._pending[ticket] = _Authorization(
                client.client_id,
                redirect_uri,
                q.get("state", ""),
                q.get("nonce", ""),
                q["code_challenge"],
                self.now(),
            )
        return HTMLResponse(_choose_page(ticket))

    def _error(self, redirect_uri: str, state: str, error: str) -> Response:
        query = urlencode({"error": error, "state": state, "iss": self.issuer})
        return RedirectResponse(f"{redirect_uri}?{query}", status_code=303)

    async def choose(self, request: Request) -> Response:
        refused = self._refused()
        if refused is not None:
            return refused
        form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
        with self._lock:
            pending = self._pending.pop(str(form.get("ticket", "")), None)
        if pending is None or self.now() - pending.created > CODE_TTL * 10:
            return Response("this login has expired: start again", status_code=400)
        role = "inspector" if form.get("role") == "inspector" else "citizen"
        subject = str(form.get("subject", "")).strip()[:64]
        if form.get("cancel"):
            return self._error(pending.redirect_uri, pending.state, "access_denied")
        if role == "citizen":
            try:
                CitizenId.parse(subject, self.idp.instance)
            except errors.InvalidCitizenIdError:
                return HTMLResponse(_choose_page(self._again(pending), bad=True), status_code=400)
        elif not subject:
            return HTMLResponse(_choose_page(self._again(pending), bad=True), status_code=400)
        name = next((n for _, s, n in SAMPLE_PEOPLE if s == subject), "")
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = _Code(pending, subject, role, name, self.now())
        query = urlencode({"code": code, "state": pending.state, "iss": self.issuer})
        return RedirectResponse(f"{pending.redirect_uri}?{query}", status_code=303)

    def _again(self, pending: _Authorization) -> str:
        ticket = secrets.token_urlsafe(24)
        with self._lock:
            self._pending[ticket] = pending
        return ticket

    async def token(self, request: Request) -> Response:
        refused = self._refused()
        if refused is not None:
            return refused
        form = await request.form(max_files=0, max_fields=10, max_part_size=4096)

        def fail(error: str) -> Response:
            return JSONResponse({"error": error}, status_code=400)

        if form.get("grant_type") != "authorization_code":
            return fail("unsupported_grant_type")
        with self._lock:
            found = self._codes.pop(str(form.get("code", "")), None)  # single use
        if found is None or self.now() - found.created > CODE_TTL:
            return fail("invalid_grant")
        auth = found.authorization
        verifier = str(form.get("code_verifier", ""))
        if (
            form.get("client_id") != auth.client_id
            or form.get("redirect_uri") != auth.redirect_uri
            or not 43 <= len(verifier) <= 128
            or not hmac.compare_digest(create_s256_code_challenge(verifier), auth.challenge)
        ):
            return fail("invalid_grant")
        try:
            id_token = self.idp.issue(
                found.subject,
                conf=self.conf(),
                now=self.now(),
                role=found.role,  # type: ignore[arg-type]
                name=found.name,
                ttl=ID_TOKEN_TTL,
                issuer=self.issuer,
                audience=auth.client_id,
                nonce=auth.nonce or None,
            )
        except errors.CdxError:
            return fail("invalid_grant")
        body: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": int(ID_TOKEN_TTL.total_seconds()),
            "id_token": id_token,
        }
        return JSONResponse(body, headers={"cache-control": "no-store"})

    async def end_session(self, request: Request) -> Response:
        q = request.query_params
        target = q.get("post_logout_redirect_uri", "")
        allowed = any(target in c.post_logout_redirect_uris for c in self.clients.values())
        if target and allowed:
            state = q.get("state")
            suffix = f"?{urlencode({'state': state})}" if state else ""
            return RedirectResponse(target + suffix, status_code=303)
        return HTMLResponse("<!doctype html><title>Logged out</title><p>You are logged out.</p>")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery, methods=["GET"]),
                Route("/jwks", self.jwks, methods=["GET"]),
                Route("/authorize", self.authorize, methods=["GET"]),
                Route("/authorize", self.choose, methods=["POST"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/end-session", self.end_session, methods=["GET"]),
            ]
        )


def _choose_page(ticket: str, *, bad: bool = False) -> str:
    """The development login page: choose (or type) a test citizen or inspector."""
    t = html.escape(ticket)
    people = "".join(
        f'<li><form method="post" action="/authorize">'
        f'<input type="hidden" name="ticket" value="{t}">'
        f'<input type="hidden" name="role" value="{role}">'
        f'<input type="hidden" name="subject" value="{html.escape(subject)}">'
        f'<button type="submit">{html.escape(name)} ({role})</button></form></li>'
        for role, subject, name in SAMPLE_PEOPLE
    )
    error = '<p role="alert" id="error">Enter a valid national id (citizen) or a name.</p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Development identity provider</title></head><body>"
        "<h1>Development identity provider</h1>"
        "<p>For local testing only: choose who you are. Refused in production.</p>"
        f"{error if bad else ''}<ul>{people}</ul>"
        '<form method="post" action="/authorize">'
        f'<input type="hidden" name="ticket" value="{t}">'
        '<p><label><input type="radio" id="role-citizen" name="role" value="citizen" checked>'
        " Citizen</label> "
        '<label><input type="radio" id="role-inspector" name="role" value="inspector">'
        " Inspector</label></p>"
        '<p><label for="subject">National id or inspector name</label> '
        '<input id="subject" name="subject" autocomplete="off" maxlength="64"></p>'
        '<button type="submit" id="continue">Continue</button> '
        '<button type="submit" name="cancel" value="1">Cancel</button></form>'
        "</body></html>"
    )


def portal_client(portal_url: str) -> DevClient:
    """The portal at ``portal_url`` as a client of the development provider."""
    base = portal_url.rstrip("/")
    return DevClient(PORTAL_CLIENT_ID, (f"{base}/auth/callback",), (f"{base}/logged-out",))


def serve_dev_provider(
    idp: DevIdentityProvider,
    conf: Callable[[], VerifiedGlobalConf],
    clients: list[DevClient],
    *,
    listen: str = "127.0.0.1:0",
    now: Callable[[], datetime] = utcnow,
) -> tuple[DevOpenIdProvider, RunningWebServer]:
    """Start the development provider on ``listen`` (loopback HTTP); its issuer is its URL.

    Raises:
        UnavailableError: the address cannot be bound.
        InvalidArgumentError: ``listen`` is not a loopback address.
    """
    host = listen.rpartition(":")[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise errors.InvalidArgumentError("the development identity provider serves loopback only")
    provider = DevOpenIdProvider(idp, "", {c.client_id: c for c in clients}, conf, now)
    running = serve(provider.app(), listen, name="cdx-dev-idp")
    provider.issuer = running.url  # no request reaches it before this returns
    return provider, running
