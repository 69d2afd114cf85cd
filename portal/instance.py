"""Runs the portal of an instance from its data directory (``cdx portal serve``, ``cdx up``).

Files (DATA = the instance's data directory)::

    DATA/portal/tls/portal.pem, portal.key   mTLS identity urn:cdx:service:portal (key encrypted
                                              with DATA/passphrase); issued by the registry
    DATA/portal/globalconf.bin                last good global configuration
    DATA/registry/anchor.json, ca.pem         trust root (installed by ``cdx registry init``)
    DATA/idp/                                 development identity provider (optional)

When the portal has no certificate yet and the registry's bootstrap admin certificate is in
DATA, the portal asks the registry for one (its key never leaves DATA/portal).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cdx import crypto, errors, keyfiles, pki, rpc
from cdx.confclient import ConfClient
from cdx.files import write_atomically
from cdx.keyfiles import load_identity
from cdx.paths import InstancePaths
from consent.idp import DevIdentityProvider, load_dev_idp
from portal.config import PortalConfig, derive_session_key
from portal.grpc_clients import GrpcAuditClient, GrpcConsentClient
from portal.identity import RegisteredIdentity
from portal.server import RunningPortal, start_portal

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

    portal: RunningPortal
    conf: ConfClient = field(repr=False)
    consent: GrpcConsentClient = field(repr=False)
    audit: GrpcAuditClient = field(repr=False)

    @property
    def url(self) -> str:
        return self.portal.url

    def stop(self) -> None:
        self.portal.stop()
        self.consent.close()
        self.audit.close()
        self.conf.stop()


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
) -> PortalInstance:
    """Start the portal of the instance in ``data_dir``.

    Raises:
        NotFoundError: missing passphrase, anchor, registry address or certificate.
        UnavailableError / CdxError: no global configuration could be obtained.
    """
    data = Path(data_dir)
    passphrase = InstancePaths(data).passphrase()
    address = registry_address(data, registry)
    identity = ensure_identity(data, passphrase, address)
    conf = ConfClient(
        address, identity, InstancePaths(data).load_anchor(), PortalPaths(data).conf_cache
    )
    conf.refresh()
    conf.start()
    dev: DevIdentityProvider | None
    try:
        dev = load_dev_idp(data, passphrase)
    except errors.NotFoundError:
        dev = None
    consent = GrpcConsentClient(lambda: conf.current().consent_service_address, identity)
    audit = GrpcAuditClient(lambda: conf.current().audit_log_address, identity)
    config = PortalConfig(
        session_key=derive_session_key(passphrase),
        secure_cookies=not insecure_cookies,
        default_language=default_language,
    )
    try:
        running = start_portal(
            config,
            consent,
            audit,
            RegisteredIdentity(conf, dev),
            conf,
            listen=listen,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_key_password=passphrase.decode() if tls_key else None,
            log_level=log_level,
        )
    except BaseException:
        consent.close()
        audit.close()
        conf.stop()
        raise
    return PortalInstance(running, conf, consent, audit)
