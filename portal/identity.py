"""The portal as an OpenID Connect relying party: authorization code flow with PKCE (S256),
``state`` and ``nonce``, against the identity providers the registry anchors (OIDC Core §3.1).

The protocol messages are Authlib's (``OAuth2Client``: the authorization URL with its PKCE
challenge, the token request with client authentication); discovery and keys come from
``cdx.jwks`` and the ID token is checked by ``cdx.tokens`` — the very checks the consent service
and the audit log run on the token the portal then relays to them. The development identity
provider is one more anchored provider (``development``), reached through the same code.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from urllib.parse import urlencode, urlsplit

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError

from cdx import crypto, errors
from cdx.globalconf import IdentityProviderInfo, VerifiedGlobalConf
from cdx.jwks import ProviderMetadata, TokenVerifier
from portal.backends import ConfSource, Login, LoginOption, LoginRequest, Principal

log = logging.getLogger("portal")
SCOPES = "openid profile"
TIMEOUT_S = 10.0


class OidcIdentity:
    """Logs users in through the anchored OpenID providers.

    ``client_secrets`` maps an issuer to the portal's client secret there (client_secret_basic);
    a provider without one is used as a public client (PKCE only), as the development one is.
    ``scopes`` maps an issuer to extra scopes (e.g. the one that releases the national id).
    """

    def __init__(
        self,
        conf_source: ConfSource,
        verifier: TokenVerifier,
        *,
        client_secrets: Mapping[str, crypto.Secret[str]] | None = None,
        scopes: Mapping[str, str] | None = None,
        transport: Callable[[], httpx2.BaseTransport] | None = None,
    ) -> None:
        self._conf = conf_source
        self._verifier = verifier
        self._secrets = dict(client_secrets or {})
        self._scopes = dict(scopes or {})
        self._transport = transport

    # --- which providers ------------------------------------------------------------------------

    def options(self) -> Sequence[LoginOption]:
        """The anchored OpenID providers this instance lets users log in with."""
        try:
            conf = self._conf.current()
        except errors.CdxError:
            return []
        return [
            LoginOption(p.issuer, p.development, urlsplit(p.issuer).netloc)
            for p in conf.identity_providers
            if not p.static_key and not (conf.production and p.development)
        ]

    def _provider(self, issuer: str) -> tuple[VerifiedGlobalConf, IdentityProviderInfo]:
        conf = self._conf.current()
        for p in conf.identity_providers:
            if p.issuer == issuer and not p.static_key:
                if conf.production and p.development:
                    break
                return conf, p
        raise errors.NotFoundError("no such identity provider")

    def _metadata(self, conf: VerifiedGlobalConf, p: IdentityProviderInfo) -> ProviderMetadata:
        return self._verifier.cache.metadata(p, production=conf.production)

    def _client(self, p: IdentityProviderInfo, redirect_uri: str) -> OAuth2Client:
        secret = self._secrets.get(p.issuer)
        options: dict[str, object] = {"timeout": TIMEOUT_S, "follow_redirects": False}
        if self._transport is not None:
            options["transport"] = self._transport()
        return OAuth2Client(
            client_id=p.audience,
            client_secret=secret.reveal() if secret is not None else None,
            scope=" ".join(dict.fromkeys(f"{SCOPES} {self._scopes.get(p.issuer, '')}".split())),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            **options,
        )

    # --- the flow -------------------------------------------------------------------------------

    def begin(self, issuer: str, redirect_uri: str, *, language: str = "") -> LoginRequest:
        """Where to send the browser, and what to remember until it comes back.

        Raises:
            NotFoundError: ``issuer`` is not an anchored provider usable here.
            IdentityProviderUnavailableError: its discovery document cannot be had.
        """
        conf, p = self._provider(issuer)
        metadata = self._metadata(conf, p)
        state, nonce = generate_token(32), generate_token(32)
        verifier = generate_token(64)  # RFC 7636 §4.1: 43..128 characters
        extra = {"ui_locales": language} if language else {}
        with self._client(p, redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata.authorization_endpoint,
                state=state,
                nonce=nonce,
                code_verifier=verifier,
                **extra,
            )
        return LoginRequest(url, issuer, state, nonce, verifier)

    def complete(
        self,
        pending: LoginRequest,
        *,
        code: str,
        returned_issuer: str | None,
        redirect_uri: str,
        now: datetime,
    ) -> Login:
        """Exchange the authorization code and check the ID token.

        Raises:
            LoginFailedError: the token endpoint refused the code, or sent no ID token.
            IdentityProviderUnavailableError: the provider cannot be reached.
            TokenError (and subclasses): the ID token is not valid (see ``cdx.tokens``).
        """
        conf, p = self._provider(pending.issuer)
        # RFC 9207: an authorization response naming another issuer is a mix-up attack.
        if returned_issuer is not None and not hmac.compare_digest(
            returned_issuer.encode(), p.issuer.encode()
        ):
            raise errors.LoginFailedError("the answer came from another identity provider")
        metadata = self._metadata(conf, p)
        try:
            with self._client(p, redirect_uri) as client:
                token = client.fetch_token(
                    metadata.token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=pending.code_verifier,
                )
        except OAuthError as exc:
            log.info("the identity provider refused the code: %s", exc.error)
            raise errors.LoginFailedError("the identity provider refused the login") from exc
        except (httpx2.HTTPError, ValueError) as exc:
            raise errors.IdentityProviderUnavailableError(
                "the identity provider's token endpoint cannot be reached"
            ) from exc
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str):
            raise errors.LoginFailedError("the identity provider sent no ID token")
        claims = self._verifier.verify(
            id_token, conf, now=now, client_id=p.audience, nonce=pending.nonce
        )
        assert claims.expires_at is not None  # exp is required by cdx.tokens
        subject = claims.subject.value if claims.subject is not None else claims.principal
        acting_for = claims.acting_for.value if claims.acting_for is not None else None
        principal = Principal(subject, claims.role, claims.name, claims.expires_at, acting_for)
        return Login(principal, id_token, p.issuer)

    def logout_url(self, issuer: str, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2): where to send the
        browser so the provider ends its session too; ``None`` when it offers no such endpoint."""
        try:
            conf, p = self._provider(issuer)
            endpoint = self._metadata(conf, p).end_session_endpoint
        except errors.CdxError:
            return None
        if not endpoint:
            return None
        query = urlencode(
            {
                "id_token_hint": id_token,
                "post_logout_redirect_uri": post_logout_redirect_uri,
                "client_id": p.audience,
                "state": generate_token(16),
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
