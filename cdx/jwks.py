"""Fetches and caches what OpenID providers publish (discovery document, JWKS), and verifies
tokens with it: the I/O half of ``cdx.tokens``, shared by the portal and the gRPC services.

- Only issuers the registry anchors are ever contacted (a token's unverified ``iss`` never
  picks a URL on its own), and only over ``https`` (``http`` on loopback outside production).
- Discovery (OIDC Discovery 1.0 §4): ``<issuer>/.well-known/openid-configuration``; its
  ``issuer`` must equal the anchored one exactly (§4.3).
- Keys are cached per issuer for ``ttl``. A token naming an unknown ``kid`` (the provider
  rotated its key) triggers one refetch, at most once per ``min_refresh`` per issuer, so a
  stream of made-up key ids cannot turn CDX into a load generator against the provider. A
  provider that cannot be reached keeps its last keys for ``max_stale``.
- Responses are size-limited, redirects are not followed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2

from cdx import errors, tokens
from cdx.globalconf import IdentityProviderInfo, VerifiedGlobalConf

DISCOVERY_PATH = "/.well-known/openid-configuration"
MAX_DOCUMENT_BYTES = 256 * 1024
DEFAULT_TTL_S = 600.0
DEFAULT_MIN_REFRESH_S = 30.0
DEFAULT_MAX_STALE_S = 24 * 3600.0
DEFAULT_TIMEOUT_S = 5.0

#: ``get(url) -> body``: raises ``IdentityProviderUnavailableError`` when it cannot.
Fetch = Callable[[str], bytes]


def http_get(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
    """GET ``url`` (no redirects, at most ``MAX_DOCUMENT_BYTES``).

    Raises:
        IdentityProviderUnavailableError: no answer, an error status, or too large a body.
    """
    try:
        with (
            httpx2.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream("GET", url, headers={"accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise errors.IdentityProviderUnavailableError(
                    f"the identity provider answered HTTP {response.status_code}"
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise errors.IdentityProviderUnavailableError(
                        "the identity provider's document is too large"
                    )
            return bytes(body)
    except httpx2.HTTPError as exc:
        raise errors.IdentityProviderUnavailableError(
            "the identity provider cannot be reached"
        ) from exc


@dataclass(frozen=True)
class ProviderMetadata:
    """The endpoints of an OpenID provider, from its discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str = ""
    device_authorization_endpoint: str = ""


def parse_discovery(raw: bytes, issuer: str, *, production: bool) -> ProviderMetadata:
    """Parse and check a discovery document for the anchored ``issuer``.

    Raises:
        MalformedError: not JSON, another issuer, or a missing or unusable endpoint URL.
    """
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise errors.MalformedError("the discovery document is not JSON") from exc
    if not isinstance(doc, dict):
        raise errors.MalformedError("the discovery document is not a JSON object")
    if doc.get("issuer") != issuer:  # OIDC Discovery §4.3: exactly the issuer asked for
        raise errors.MalformedError("the discovery document names another issuer")

    def url(name: str, *, required: bool) -> str:
        value = doc.get(name, "")
        if not value and not required:
            return ""
        if not isinstance(value, str):
            raise errors.MalformedError(f"the discovery document's {name} is not a URL")
        try:
            tokens.check_provider_url(value, production=production, what=name)
        except errors.InvalidArgumentError as exc:
            raise errors.MalformedError(str(exc)) from exc
        return value

    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=url("authorization_endpoint", required=True),
        token_endpoint=url("token_endpoint", required=True),
        jwks_uri=url("jwks_uri", required=True),
        end_session_endpoint=url("end_session_endpoint", required=False),
        device_authorization_endpoint=url("device_authorization_endpoint", required=False),
    )


@dataclass
class _Entry:
    metadata: ProviderMetadata
    keys: tokens.KeySet
    fetched_at: float
    attempted_at: float


class ProviderCache:
    """Discovery documents and key sets of the anchored OpenID providers, per issuer.

    Thread-safe: readers use the cached entry; one fetch per issuer runs at a time, and after a
    failed fetch nobody tries again for ``failure_backoff`` (a provider that does not answer
    must not hold every request for its timeout).
    """

    def __init__(
        self,
        *,
        fetch: Fetch = http_get,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = DEFAULT_TTL_S,
        min_refresh: float = DEFAULT_MIN_REFRESH_S,
        max_stale: float = DEFAULT_MAX_STALE_S,
        failure_backoff: float = 5.0,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._max_stale = max_stale
        self._failure_backoff = failure_backoff
        self._entries: dict[str, _Entry] = {}
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}

    def _issuer_lock(self, issuer: str) -> threading.Lock:
        with self._lock:
            return self._fetching.setdefault(issuer, threading.Lock())

    def _load(self, issuer: str, production: bool) -> _Entry:
        try:
            metadata = parse_discovery(
                self._fetch(issuer.rstrip("/") + DISCOVERY_PATH), issuer, production=production
            )
            try:
                document: Any = json.loads(self._fetch(metadata.jwks_uri))
            except ValueError as exc:
                raise errors.MalformedError("the JWKS is not JSON") from exc
            keys = tokens.parse_jwks(document)
        except errors.MalformedError as exc:
            raise errors.IdentityProviderUnavailableError(
                f"the identity provider published an unusable document: {exc.message}"
            ) from exc
        now = self._clock()
        return _Entry(metadata, keys, now, now)

    def _usable(self, entry: _Entry | None, issuer: str, now: float) -> _Entry:
        if entry is not None and now - entry.fetched_at < self._max_stale:
            return entry
        raise errors.IdentityProviderUnavailableError(
            "the identity provider's keys cannot be fetched"
        )

    def _current(self, provider: IdentityProviderInfo, production: bool, *, force: bool) -> _Entry:
        issuer = provider.issuer
        tokens.check_provider_url(issuer, production=production)
        entry = self._entries.get(issuer)
        now = self._clock()
        if entry is not None:
            if not force and now - entry.fetched_at < self._ttl:
                return entry
            # Rate limit: one refetch per min_refresh, be it for a rotation or an expired TTL.
            if now - entry.attempted_at < self._min_refresh:
                return self._usable(entry, issuer, now)
        elif now - self._failed_at.get(issuer, -self._failure_backoff) < self._failure_backoff:
            raise errors.IdentityProviderUnavailableError(
                "the identity provider's keys cannot be fetched"
            )
        with self._issuer_lock(issuer):
            latest = self._entries.get(issuer)
            if latest is not None and latest is not entry:
                return latest  # another thread fetched while this one waited
            if entry is not None:
                entry.attempted_at = now
            try:
                fresh = self._load(issuer, production)
            except errors.IdentityProviderUnavailableError:
                self._failed_at[issuer] = now
                if entry is None:
                    raise
                return self._usable(entry, issuer, now)
            self._entries[issuer] = fresh
            return fresh

    def metadata(self, provider: IdentityProviderInfo, *, production: bool) -> ProviderMetadata:
        """The provider's endpoints (cached).

        Raises:
            IdentityProviderUnavailableError: never fetched and cannot be fetched now.
            InvalidArgumentError: the issuer is no URL CDX may contact.
        """
        return self._current(provider, production, force=False).metadata

    def keys(
        self, provider: IdentityProviderInfo, *, production: bool, refresh: bool = False
    ) -> tokens.KeySet:
        """The provider's signing keys; ``refresh`` asks for a (rate-limited) refetch."""
        return self._current(provider, production, force=refresh).keys


class TokenVerifier:
    """Verifies tokens against the current global configuration, fetching OIDC keys as needed.

    The consent service, the audit log and the portal each hold one (it carries the cache).
    """

    def __init__(self, cache: ProviderCache | None = None) -> None:
        self.cache = cache or ProviderCache()

    def verify(
        self,
        token: str,
        conf: VerifiedGlobalConf,
        *,
        now: datetime,
        audience: str = "",
        client_id: str | None = None,
        nonce: str | None = None,
    ) -> tokens.TokenClaims:
        """``cdx.tokens.verify_token`` with the issuer's keys; an unknown ``kid`` refetches
        the JWKS once (rate-limited) before the token is refused.

        Raises:
            TokenError (and subclasses): see ``cdx.tokens.verify_token``.
            IdentityProviderUnavailableError: the issuer's keys cannot be had.
        """
        hint = tokens.read_unverified(token)
        providers = tokens.providers_for(
            conf.identity_providers, hint.issuer, production=conf.production
        )
        oidc = next((p for p in providers if not p.static_key), None)

        def attempt(key_set: tokens.KeySet | None) -> tokens.TokenClaims:
            return tokens.verify_token(
                token,
                conf.identity_providers,
                now=now,
                production=conf.production,
                audience=audience or tokens.citizen_audience(conf.instance),
                instance=conf.instance,
                key_sets={hint.issuer: key_set} if key_set is not None else None,
                client_id=client_id,
                nonce=nonce,
            )

        if oidc is None:
            return attempt(None)
        try:
            key_set = self.cache.keys(oidc, production=conf.production)
        except errors.InvalidArgumentError as exc:
            raise errors.TokenError("the token's issuer cannot be contacted") from exc
        try:
            return attempt(key_set)
        except errors.TokenKeyUnknownError:
            # The provider may have rotated its key since the keys were cached.
            refreshed = self.cache.keys(oidc, production=conf.production, refresh=True)
            if refreshed is key_set:
                raise
            return attempt(refreshed)
