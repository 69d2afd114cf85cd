"""Who users of a single-box instance log in with: an external OpenID provider (``cdx up``'s
``[oidc]`` table: a national IdP, or any standard one) or, by default, the development
OpenID provider, started on loopback and anchored by its URL. Either way the portal and the
services reach it through the same OpenID Connect code as in production.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cdx import errors
from cdx.clock import Clock, utcnow
from cdx.confclient import ConfClient
from cdx.files import write_atomically
from cdx.globalconf import IdentityProviderInfo, VerifiedGlobalConf
from cdx.paths import InstancePaths
from cdx.webserver import RunningWebServer
from consent.idp import idp_dir, load_dev_idp
from consent.idp_server import (
    PORTAL_CLIENT_ID,
    DevOpenIdProvider,
    portal_client,
    serve_dev_provider,
)
from registry.server import RunningRegistry

ACTOR = "admin:bootstrap"
#: Keys of ``cdx up``'s ``[oidc]`` table.
OIDC_KEYS = (
    "issuer",
    "client_id",
    "algorithms",
    "national_id_claim",
    "inspector_claim",
    "inspector_value",
    "cli_client_id",
    "client_secret_file",
    "scope",
)
LISTEN_FILE = "listen"


@dataclass
class IdentityProviders:
    """What ``start_identity_providers`` started (nothing for an external provider)."""

    dev: DevOpenIdProvider | None = None
    _running: RunningWebServer | None = field(default=None, repr=False)
    _conf: ConfClient | None = field(default=None, repr=False)
    clock: Clock = utcnow

    def token(
        self,
        subject: str,
        role: Literal["citizen", "inspector"],
        *,
        conf: VerifiedGlobalConf,
        ttl: timedelta = timedelta(minutes=30),
    ) -> str:
        """An ID token of the development provider, as its token endpoint would issue it to
        the portal (for the demo's scripted calls).

        Raises:
            FailedPreconditionError: an external provider is in use (no key here).
        """
        if self.dev is None:
            raise errors.FailedPreconditionError("an external identity provider is in use")
        return self.dev.idp.issue(
            subject,
            conf=conf,
            now=self.clock(),
            role=role,
            ttl=ttl,
            issuer=self.dev.issuer,
            audience=PORTAL_CLIENT_ID,
        )

    @property
    def conf(self) -> ConfClient | None:
        """The development provider's global-configuration client (``None``: external)."""
        return self._conf

    def portal_at(self, url: str) -> None:
        """The portal now listens at ``url`` (it binds after the provider starts, possibly on
        a port it was given only then): its redirect URIs follow it."""
        if self.dev is not None:
            self.dev.clients[PORTAL_CLIENT_ID] = portal_client(url)

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()
        if self._conf is not None:
            self._conf.stop()


def external_provider(settings: Mapping[str, Any]) -> IdentityProviderInfo:
    """The anchor for ``[oidc]`` settings.

    Raises:
        InvalidArgumentError: unknown keys, or no issuer or client id.
    """
    unknown = set(settings) - set(OIDC_KEYS)
    if unknown:
        raise errors.InvalidArgumentError(f"unknown [oidc] keys: {', '.join(sorted(unknown))}")
    if not settings.get("issuer") or not settings.get("client_id"):
        raise errors.InvalidArgumentError("[oidc] needs issuer and client_id")
    algorithms = settings.get("algorithms", ["RS256"])
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise errors.InvalidArgumentError("[oidc] algorithms is a list of names")
    return IdentityProviderInfo(
        str(settings["issuer"]),
        b"",
        False,
        str(settings["client_id"]),
        tuple(algorithms),
        str(settings.get("national_id_claim", "")),
        str(settings.get("inspector_claim", "")),
        str(settings.get("inspector_value", "")),
        str(settings.get("cli_client_id", "")),
    )


def _portal_client_file(
    data_dir: Path, issuer: str, settings: Mapping[str, Any], base: Path
) -> None:
    """Write the portal's client secret and scope for ``issuer`` (DATA/portal, mode 0600)."""
    entry: dict[str, str] = {}
    secret_file = settings.get("client_secret_file")
    if secret_file:
        path = Path(str(secret_file))
        path = path if path.is_absolute() else base / path
        try:
            entry["client_secret"] = path.read_text().strip()
        except FileNotFoundError as exc:
            raise errors.NotFoundError(f"no client secret file {path}") from exc
    if settings.get("scope"):
        entry["scope"] = str(settings["scope"])
    target = data_dir / "portal" / "oidc-clients.json"
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(target, json.dumps({issuer: entry}, indent=2).encode(), mode=0o600)


def _listen(data_dir: Path) -> str:
    """Where the development provider listens: the address it had before (a stable issuer),
    else port 0 (it records the port it gets, ``_remember``)."""
    with contextlib.suppress(FileNotFoundError):
        listen = (idp_dir(data_dir) / LISTEN_FILE).read_text().strip()
        if listen:
            return listen
    return "127.0.0.1:0"


def _remember(data_dir: Path, url: str) -> None:
    parts = urlsplit(url)
    write_atomically(idp_dir(data_dir) / LISTEN_FILE, f"{parts.hostname}:{parts.port}\n".encode())


def start_identity_providers(
    data_dir: Path,
    passphrase: bytes,
    registry: RunningRegistry,
    portal_url: str,
    *,
    external: Mapping[str, Any] | None = None,
    config_dir: Path | None = None,
    clock: Clock = utcnow,
) -> IdentityProviders:
    """Anchor the instance's identity provider, starting the development one if no external
    one is configured; the development one issues its tokens at ``clock``.

    Raises:
        InvalidArgumentError: bad ``[oidc]`` settings, or an issuer URL CDX may not use.
        NotFoundError: no development identity provider in ``data_dir``, or a missing secret.
        UnavailableError: the development provider cannot listen.
    """
    if external is not None:
        anchor = external_provider(external)
        _portal_client_file(data_dir, anchor.issuer, external, config_dir or Path.cwd())
        registry.service.set_trust_anchors(identity_providers=[anchor], actor=ACTOR)
        return IdentityProviders()
    idp = load_dev_idp(data_dir, passphrase)
    paths = InstancePaths(data_dir)
    conf = ConfClient(
        registry.address,
        paths.admin_identity(),
        paths.load_anchor(),
        idp_dir(data_dir) / "globalconf.bin",
        poll_interval=timedelta(seconds=2),
        now_fn=clock,
    )
    conf.refresh()
    conf.start()
    try:
        provider, running = serve_dev_provider(
            idp, conf.current, [portal_client(portal_url)], listen=_listen(data_dir), now=clock
        )
    except BaseException:
        conf.stop()
        raise
    try:
        _remember(data_dir, running.url)
        registry.service.set_trust_anchors(
            identity_providers=[provider.registration()], actor=ACTOR
        )
        conf.refresh()
    except BaseException:
        running.stop()
        conf.stop()
        raise
    write_atomically(idp_dir(data_dir) / "issuer", (provider.issuer + "\n").encode())
    return IdentityProviders(provider, running, conf, clock)
