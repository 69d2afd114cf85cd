"""Logs a citizen in from a terminal with the OAuth 2.0 device authorization grant (RFC 8628)
at the identity provider the registry anchors: the CLI shows a code and an address, the citizen
confirms on their phone or browser, and the CLI receives the same kind of ID token the portal
relays to the services (its audience is the provider's registered CLI client).

The protocol messages are Authlib's (``OAuth2Client``); waiting uses the provider's ``interval``
and honours ``slow_down`` (RFC 8628 §3.5), with an injectable ``sleep`` and clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx2
from authlib.integrations.httpx_client import OAuth2Client, OAuthError

from cdx import errors
from cdx.globalconf import IdentityProviderInfo, VerifiedGlobalConf
from cdx.jwks import TokenVerifier
from cdx.tokens import TokenClaims

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPES = "openid profile"
TIMEOUT_S = 10.0
MAX_WAIT_S = 900.0


@dataclass(frozen=True)
class DeviceAuthorization:
    """What the citizen must do (RFC 8628 §3.2)."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str = ""
    interval: float = 5.0
    expires_in: float = 600.0
    device_code: str = field(default="", repr=False)


def cli_provider(conf: VerifiedGlobalConf, issuer: str | None = None) -> IdentityProviderInfo:
    """The anchored OpenID provider the CLI logs in with (it must name a CLI client).

    Raises:
        NotFoundError: none (or not ``issuer``) is anchored with a CLI client id.
    """
    for p in conf.identity_providers:
        if p.static_key or not p.cli_client_id or (issuer and p.issuer != issuer):
            continue
        if conf.production and p.development:
            continue
        return p
    raise errors.NotFoundError(
        "no identity provider is anchored with a CLI client id "
        "(cdx registry anchors set --oidc ... --idp-cli-client-id ...)"
    )


class DeviceLogin:
    """One device-grant login at ``provider``."""

    def __init__(
        self,
        conf: VerifiedGlobalConf,
        provider: IdentityProviderInfo,
        verifier: TokenVerifier,
        *,
        scope: str = "",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conf = conf
        self._provider = provider
        self._verifier = verifier
        self._scope = " ".join(dict.fromkeys(f"{SCOPES} {scope}".split()))
        self._sleep = sleep
        self._clock = clock

    def _client(self) -> OAuth2Client:
        return OAuth2Client(
            client_id=self._provider.cli_client_id,
            scope=self._scope,
            timeout=TIMEOUT_S,
            follow_redirects=False,
        )

    def start(self) -> DeviceAuthorization:
        """Ask the provider for a user code.

        Raises:
            FailedPreconditionError: the provider offers no device authorization endpoint.
            IdentityProviderUnavailableError: it cannot be reached or refused the request.
        """
        metadata = self._verifier.cache.metadata(self._provider, production=self._conf.production)
        if not metadata.device_authorization_endpoint:
            raise errors.FailedPreconditionError(
                "the identity provider offers no device authorization: paste a token instead"
            )
        try:
            with self._client() as client:
                response = client.request(
                    "POST",
                    metadata.device_authorization_endpoint,
                    data={"client_id": self._provider.cli_client_id, "scope": self._scope},
                    withhold_token=True,  # no access token yet: this request obtains one
                )
                body = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise errors.IdentityProviderUnavailableError(
                "the identity provider's device authorization failed"
            ) from exc
        if response.status_code != 200 or not isinstance(body, dict):
            raise errors.IdentityProviderUnavailableError(
                "the identity provider refused the device authorization"
            )
        try:
            return DeviceAuthorization(
                user_code=str(body["user_code"]),
                verification_uri=str(body["verification_uri"]),
                verification_uri_complete=str(body.get("verification_uri_complete", "")),
                interval=float(body.get("interval", 5)),
                expires_in=min(float(body.get("expires_in", 600)), MAX_WAIT_S),
                device_code=str(body["device_code"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.IdentityProviderUnavailableError(
                "the identity provider's device authorization answer is malformed"
            ) from exc

    def wait(
        self, authorization: DeviceAuthorization, *, now: Callable[[], datetime]
    ) -> tuple[str, TokenClaims]:
        """Poll until the citizen confirmed; returns the verified ID token and its claims.

        Raises:
            LoginFailedError: refused, or the code expired.
            IdentityProviderUnavailableError: the provider cannot be reached.
            TokenError (and subclasses): the ID token is not valid.
        """
        metadata = self._verifier.cache.metadata(self._provider, production=self._conf.production)
        deadline = self._clock() + authorization.expires_in
        interval = max(authorization.interval, 1.0)
        with self._client() as client:
            while True:
                self._sleep(interval)
                if self._clock() > deadline:
                    raise errors.LoginFailedError("the code expired before it was confirmed")
                try:
                    token = client.fetch_token(
                        metadata.token_endpoint,
                        grant_type=DEVICE_GRANT,
                        device_code=authorization.device_code,
                    )
                except OAuthError as exc:
                    if exc.error == "authorization_pending":
                        continue
                    if exc.error == "slow_down":  # RFC 8628 §3.5: five seconds more
                        interval += 5
                        continue
                    raise errors.LoginFailedError(
                        "the identity provider refused the login"
                    ) from exc
                except (httpx2.HTTPError, ValueError) as exc:
                    raise errors.IdentityProviderUnavailableError(
                        "the identity provider's token endpoint cannot be reached"
                    ) from exc
                id_token = token.get("id_token") if isinstance(token, dict) else None
                if not isinstance(id_token, str):
                    raise errors.LoginFailedError("the identity provider sent no ID token")
                claims = self._verifier.verify(
                    id_token, self._conf, now=now(), client_id=self._provider.cli_client_id
                )
                return id_token, claims
