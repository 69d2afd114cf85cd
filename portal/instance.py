"""Runs the portal of an instance from its data directory (``cdx portal serve``, ``cdx up``).

Files (DATA = the instance's data directory)::

    DATA/portal/tls/portal.pem, portal.key   mTLS identity urn:cdx:service:portal (key encrypted
                                              with DATA/passphrase); issued by the registry
    DATA/portal/globalconf.bin                last good global configuration
    DATA/portal/portal.db                     server-side sessions (SQLite; --db-url for
                                              PostgreSQL)
    DATA/portal/oidc-clients.json             the portal's client secret and extra scopes per
                                              identity provider (optional, mode 0600)
    DATA/registry/anchor.json, ca.pem         trust root (installed by ``cdx registry init``)

When the portal has no certificate yet and the registry's bootstrap admin certificate is in
DATA, the portal asks the registry for one (its key never leaves DATA/portal).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cdx import crypto, db, errors, keyfiles, pki, rpc, webserver
from cdx.clock import Clock, utcnow
from cdx.confclient import ConfClient
from cdx.files import write_atomically
from cdx.jwks import TokenVerifier
from cdx.keyfiles import load_identity
from cdx.paths import InstancePaths
from portal.app import create_app
from portal.config import PortalConfig, derive_session_key
from portal.grpc_clients import GrpcAuditClient, GrpcConsentClient
from portal.grpc_requests import GrpcRequestsClient
from portal.identity import OidcIdentity
from portal.notifications import GrpcNotifyClient
from portal.sessions import SqlSessionStore
from portal.tileproofs import TileEndpoints

log = logging.getLogger(__name__)
SERVICE_NAME = "portal"


@dataclass(frozen=True)
class PortalPaths:
    data_dir: Path

    @property
    def directory(self) -> Path:
        return self.data_dir / "portal"

    @property
    def tls_cert(self) -> Path:
        return self.directory / "tls" / "portal.pem"

    @property
    def tls_key(self) -> Path:
        return self.directory / "tls" / "portal.key"

    @property
    def conf_cache(self) -> Path:
        return self.directory / "globalconf.bin"

    @property
    def database(self) -> Path:
        return self.directory / "portal.db"

    @property
    def oidc_clients(self) -> Path:
        return self.directory / "oidc-clients.json"


@dataclass(frozen=True)
class OidcClients:
    """The portal's registration at each identity provider beyond what global configuration
    says: its client secret (confidential client) and extra scopes (e.g. the one that releases
    the national id claim)."""

    secrets: dict[str, crypto.Secret[str]] = field(default_factory=dict, repr=False)
    scopes: dict[str, str] = field(default_factory=dict)


def load_oidc_clients(path: Path) -> OidcClients:
    """Read ``{"<issuer>": {"client_secret": "...", "scope": "..."}}`` (missing file: none).

    Raises:
        MalformedError: not that shape.
        KeyStoreError: the file is readable by others.
    """
    if not path.exists():
        return OidcClients()
    if path.stat().st_mode & 0o077:
        raise errors.KeyStoreError(f"{path.name} holds client secrets: make it mode 0600")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise errors.MalformedError(f"{path.name} is not JSON") from exc
    if not isinstance(data, dict):
        raise errors.MalformedError(f"{path.name} must map issuers to settings")
    clients = OidcClients()
    for issuer, entry in data.items():
        if not isinstance(entry, dict):
            raise errors.MalformedError(f"{path.name}: settings of an issuer must be an object")
        secret, scope = entry.get("client_secret", ""), entry.get("scope", "")
        if not isinstance(secret, str) or not isinstance(scope, str):
            raise errors.MalformedError(f"{path.name}: client_secret and scope are strings")
        if secret:
            clients.secrets[str(issuer)] = crypto.Secret(secret)
        if scope:
            clients.scopes[str(issuer)] = scope
    return clients


def registry_address(data_dir: Path, given: str | None = None) -> str:
    """The registry's address: given, or the one a running registry wrote to DATA.

    Raises:
        NotFoundError: neither.
    """
    if given:
        return given
    path = InstancePaths(data_dir).address_file
    try:
        return path.read_text().strip()
    except FileNotFoundError as exc:
        raise errors.NotFoundError(
            "no registry address: start the registry or pass --registry HOST:PORT"
        ) from exc


def ensure_identity(data_dir: Path, passphrase: bytes, registry: str) -> rpc.TlsIdentity:
    """The portal's mTLS identity; requested from the registry when missing.

    Raises:
        NotFoundError: no certificate and no bootstrap admin certificate to request one with.
        KeyStoreError: the key cannot be decrypted.
    """
    paths, instance = PortalPaths(data_dir), InstancePaths(data_dir)
    if not paths.tls_cert.exists():
        from registry.client import RegistryAdminClient

        if not instance.admin_cert().exists():
            raise errors.NotFoundError(
                f"no portal certificate in {paths.tls_cert.parent} and no admin certificate "
                "to request one"
            )
        key = crypto.generate_signing_key("ecdsa-p256")
        csr = pki.build_csr(key, SERVICE_NAME)
        with RegistryAdminClient(registry, instance.admin_identity()) as admin:
            issued = admin.issue_client_certificate(csr, "service", SERVICE_NAME)
        paths.tls_cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        keyfiles.save_private_key(paths.tls_key, key, passphrase)
        write_atomically(paths.tls_cert, issued.cert_pem)
        log.info("portal certificate issued by the registry")
    return load_identity(paths.tls_cert, paths.tls_key, instance.ca_pem, passphrase)


@dataclass
class PortalInstance:
    """A running portal with the clients it owns; ``stop()`` ends all of them."""

    portal: webserver.RunningWebServer
    conf: ConfClient = field(repr=False)
    consent: GrpcConsentClient = field(repr=False)
    audit: GrpcAuditClient = field(repr=False)
    sessions: SqlSessionStore = field(repr=False)
    requests: GrpcRequestsClient = field(repr=False)
    notify: GrpcNotifyClient | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.portal.url

    def stop(self) -> None:
        self.portal.stop()
        self.consent.close()
        self.audit.close()
        if self.notify is not None:
            self.notify.close()
        self.requests.close()
        self.conf.stop()
        self.sessions.close()


def notify_address_file(data_dir: Path) -> Callable[[], str]:
    """The address a running notification service wrote in ``DATA/notify/address``."""
    path = data_dir / "notify" / "address"

    def read() -> str:
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            return ""

    return read


def serve_instance(
    data_dir: str | Path,
    *,
    listen: str = "127.0.0.1:8080",
    insecure_cookies: bool = False,
    registry: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    log_level: str = "warning",
    default_language: str = "vi",
    public_url: str = "",
    db_url: str | None = None,
    db_schema: str | None = None,
    oidc_clients: str | Path | None = None,
    token_verifier: TokenVerifier | None = None,
    notify: str | Callable[[], str] | None = None,
    now_fn: Clock = utcnow,
) -> PortalInstance:
    """Start the portal of the instance in ``data_dir``.

    ``public_url`` is the address browsers use (default: the one it listens on); sessions go
    to ``db_url`` (default: SQLite ``DATA/portal/portal.db``). ``notify`` is the notification
    service's address (default: the one a running service wrote in ``DATA/notify/address``).

    Raises:
        NotFoundError: missing passphrase, anchor, registry address or certificate.
        UnavailableError / CdxError: no global configuration could be obtained.
    """
    data = Path(data_dir)
    passphrase = InstancePaths(data).passphrase()
    address = registry_address(data, registry)
    identity = ensure_identity(data, passphrase, address)
    conf = ConfClient(
        address,
        identity,
        InstancePaths(data).load_anchor(),
        PortalPaths(data).conf_cache,
        now_fn=now_fn,
    )
    conf.refresh()
    conf.start()
    consent = GrpcConsentClient(lambda: conf.current().consent_service_address, identity)
    audit = GrpcAuditClient(lambda: conf.current().audit_log_address, identity)
    notify_client = GrpcNotifyClient(notify or notify_address_file(data), identity)
    requests = GrpcRequestsClient(lambda: conf.current().consent_service_address, identity)
    paths = PortalPaths(data)
    paths.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    clients = load_oidc_clients(Path(oidc_clients) if oidc_clients else paths.oidc_clients)
    host, port = webserver.split_listen(listen)
    scheme = "https" if tls_cert else "http"
    config = PortalConfig(
        session_key=derive_session_key(passphrase),
        secure_cookies=not insecure_cookies,
        default_language=default_language,
        public_url=public_url or (f"{scheme}://{host}:{port}" if port else ""),
    )
    try:
        sessions = SqlSessionStore.open(db_url or db.sqlite_url(paths.database), schema=db_schema)
    except BaseException:
        consent.close()
        audit.close()
        requests.close()
        conf.stop()
        raise
    try:
        identity_provider = OidcIdentity(
            conf,
            token_verifier or TokenVerifier(),
            client_secrets=clients.secrets,
            scopes=clients.scopes,
        )
        app = create_app(
            config,
            consent,
            audit,
            identity_provider,
            conf,
            now_fn,
            sessions=sessions,
            notify_client=notify_client,
            requests=requests,
            # Proofs from the log's tiles; HTTPS tile servers may use the instance's CA too.
            tiles=TileEndpoints(ca_pem=identity.ca_pem, timeout=config.rpc_timeout_s),
        )
        running = webserver.serve(
            app,
            listen,
            name="cdx-portal",
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_key_password=passphrase.decode() if tls_key else None,
            log_level=log_level,
        )
    except BaseException:
        consent.close()
        audit.close()
        requests.close()
        conf.stop()
        sessions.close()
        raise
    return PortalInstance(running, conf, consent, audit, sessions, requests, notify_client)
