"""Creates a registry instance on disk (CA, registry key, anchor, database) and opens it again.

Layout (every private key encrypted with ``DATA/passphrase``, mode 0600)::

    DATA/passphrase
    DATA/registry/ca.pem ca.key registry.key anchor.json registry.db registry.json
    DATA/registry/tls/registry.pem registry.key       the registry's own mTLS server certificate
    DATA/registry/admin/bootstrap.pem bootstrap.key   the first admin's client certificate

``init_instance`` builds everything in a temporary directory and renames it into place at the
end, so a failed init leaves no half-made registry behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from cdx import crypto, db, errors, globalconf, keyfiles, pki
from cdx.clock import Clock, utcnow
from cdx.files import make_private_dir, read_file, write_atomically
from cdx.ids import MemberId
from cdx.paths import BOOTSTRAP_ADMIN, InstancePaths, as_paths
from registry.service import DEFAULT_CONF_VALIDITY, RegistryService

__all__ = [
    "SETTINGS_FORMAT",
    "init_instance",
    "issue_identity",
    "open_registry",
    "read_settings",
]

REGISTRY_SERVICE_NAME = "registry"
SETTINGS_FORMAT = "cdx-registry/v1"


def read_settings(paths: InstancePaths) -> dict[str, str]:
    """``registry.json``: the instance name and, when not the default SQLite, the database.

    Raises:
        NotFoundError: the data directory holds no registry.
        MalformedError: the file is not a registry settings file.
    """
    try:
        obj = json.loads(paths.settings.read_bytes())
    except FileNotFoundError as exc:
        raise errors.NotFoundError(f"no registry instance in {paths.data_dir}") from exc
    except ValueError as exc:
        raise errors.MalformedError(f"{paths.settings} is not valid JSON") from exc
    if not isinstance(obj, dict) or obj.get("format") != SETTINGS_FORMAT:
        raise errors.MalformedError(f"{paths.settings} is not a CDX registry settings file")
    return {k: str(v) for k, v in obj.items() if v is not None}


def issue_identity(
    service: RegistryService,
    directory: Path,
    name: str,
    kind: str,
    passphrase: bytes,
    *,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    cert_name: str | None = None,
    actor: str = "system:init",
) -> None:
    """Generate a key in ``directory``, have the registry certify it, and store both.

    Writes ``<stem>.key`` (encrypted with ``passphrase``, mode 0600) and ``<stem>.pem``.
    """
    make_private_dir(directory)
    key = crypto.generate_signing_key("ecdsa-p256")
    csr = pki.build_csr(key, name)
    issued = service.issue_client_certificate(
        csr, kind, name, actor, dns_names=dns_names, ip_addresses=ip_addresses
    )
    stem = cert_name or name
    keyfiles.save_private_key(directory / f"{stem}.key", key, passphrase)
    write_atomically(directory / f"{stem}.pem", issued.cert_pem)


def init_instance(
    data_dir: Path,
    instance: str,
    now: datetime,
    *,
    db_url: str | None = None,
    db_schema: str | None = None,
    passphrase: bytes | None = None,
    key_algorithm: crypto.SigningAlgorithm = "ed25519",
    dns_names: tuple[str, ...] = ("localhost",),
    ip_addresses: tuple[str, ...] = ("127.0.0.1",),
) -> InstancePaths:
    """Create a registry instance under ``data_dir``.

    Creates the passphrase (random unless given), the instance CA, the registry signing key
    (encrypted), ``anchor.json`` (instance id + registry public key, for security servers to
    install), the database schema with the instance row and configuration version 1, a
    bootstrap admin certificate and the registry's own TLS server certificate.

    Raises:
        AlreadyExistsError: a registry already exists here (or in the database).
        InvalidArgumentError: bad instance name, or a passphrase differing from the installed one.
    """
    data_dir = Path(data_dir)
    paths = InstancePaths(data_dir)
    if paths.registry_dir.exists():
        raise errors.AlreadyExistsError(f"a registry already exists in {paths.registry_dir}")
    if not isinstance(instance, str) or not instance or len(instance) > 40:
        raise errors.InvalidArgumentError("instance must be 1..40 characters")
    # The instance is the first part of every identifier: InvalidIdentifierError otherwise.
    MemberId(instance, "X", "X")
    make_private_dir(data_dir)
    secret = keyfiles.ensure_passphrase(paths.passphrase_file, passphrase)

    staging = data_dir / f".registry.init-{secrets.token_hex(4)}"
    tmp = _StagedPaths(data_dir, staging)
    try:
        make_private_dir(staging / "tls")
        make_private_dir(staging / "admin")
        ca_key, ca_cert = pki.create_ca(instance, now)
        keyfiles.save_private_key(tmp.ca_key, ca_key, secret)
        write_atomically(tmp.ca_pem, pki.cert_to_pem(ca_cert))
        registry_key = crypto.generate_signing_key(key_algorithm)
        keyfiles.save_private_key(tmp.registry_key, registry_key, secret)
        signer = crypto.KeySigner(registry_key)
        anchor = globalconf.Anchor(instance, registry_key.public_key())
        write_atomically(tmp.anchor, anchor.to_json())
        settings: dict[str, str | None] = {
            "format": SETTINGS_FORMAT,
            "instance": instance,
            "db_url": db_url,
            "db_schema": db_schema,
        }
        write_atomically(tmp.settings, json.dumps(settings, indent=2).encode())

        url = db_url or db.sqlite_url(tmp.database)
        engine = db.create_engine(url, schema=db_schema)
        try:
            db.migrate(engine, "registry")
            service = RegistryService(
                engine,
                instance=instance,
                signer=signer,
                ca_key=ca_key,
                ca_cert=ca_cert,
                now_fn=lambda: now,
            )
            service.initialise("system:init")
            issue_identity(service, tmp.admin_dir, BOOTSTRAP_ADMIN, "admin", secret)
            issue_identity(
                service,
                tmp.tls_dir,
                REGISTRY_SERVICE_NAME,
                "service",
                secret,
                dns_names=dns_names,
                ip_addresses=ip_addresses,
            )
        finally:
            engine.dispose()
        os.rename(staging, paths.registry_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return paths


@dataclass(frozen=True)
class _StagedPaths:
    data_dir: Path
    root: Path

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def ca_pem(self) -> Path:
        return self.root / "ca.pem"

    @property
    def registry_key(self) -> Path:
        return self.root / "registry.key"

    @property
    def anchor(self) -> Path:
        return self.root / "anchor.json"

    @property
    def settings(self) -> Path:
        return self.root / "registry.json"

    @property
    def database(self) -> Path:
        return self.root / "registry.db"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def admin_dir(self) -> Path:
        return self.root / "admin"


def open_registry(
    paths_or_data_dir: InstancePaths | str | os.PathLike[str],
    *,
    now_fn: Clock = utcnow,
    db_url: str | None = None,
    db_schema: str | None = None,
    conf_validity: timedelta = DEFAULT_CONF_VALIDITY,
    migrate: bool = True,
) -> RegistryService:
    """Open an initialised registry: load its keys, connect to (and migrate) its database.

    ``db_url``/``db_schema`` default to those recorded at init (SQLite in the data dir).

    Raises:
        NotFoundError: no registry in this data directory.
        KeyStoreError: a key cannot be decrypted.
        FailedPreconditionError: the database belongs to another instance or key.
    """
    paths = as_paths(paths_or_data_dir)
    settings = read_settings(paths)
    instance = settings["instance"]
    secret = paths.passphrase()
    ca_key = keyfiles.load_signing_key(paths.ca_key, secret)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise errors.KeyStoreError("the CA key must be an ECDSA P-256 key")
    ca_cert = x509.load_pem_x509_certificate(read_file(paths.ca_pem))
    signer = crypto.KeySigner(keyfiles.load_signing_key(paths.registry_key, secret))
    if signer.key_id != paths.load_anchor().key_id:
        raise errors.KeyStoreError("the registry key does not match anchor.json")
    url = db_url or settings.get("db_url") or db.sqlite_url(paths.database)
    schema = db_schema if db_schema is not None else settings.get("db_schema")
    engine = db.create_engine(url, schema=schema)
    if migrate:
        db.migrate(engine, "registry")
    service = RegistryService(
        engine,
        instance=instance,
        signer=signer,
        ca_key=ca_key,
        ca_cert=ca_cert,
        now_fn=now_fn,
        conf_validity=conf_validity,
    )
    service.check_instance()
    return service
