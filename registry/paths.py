"""Where a registry instance's files live, and loading its passphrase and mTLS identities.

Light on imports on purpose: the ``cdx registry`` admin commands need these and nothing heavier.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from cdx import crypto, errors, files, globalconf
from cdx.files import read_file, write_atomically
from cdx.rpc import TlsIdentity

BOOTSTRAP_ADMIN = "bootstrap"
SETTINGS_FORMAT = "cdx-registry/v1"


@dataclass(frozen=True)
class InstancePaths:
    """Where an instance's registry files live under a data directory."""

    data_dir: Path

    @property
    def registry_dir(self) -> Path:
        return self.data_dir / "registry"

    @property
    def passphrase_file(self) -> Path:
        return self.data_dir / "passphrase"

    @property
    def ca_pem(self) -> Path:
        return self.registry_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.registry_dir / "ca.key"

    @property
    def registry_key(self) -> Path:
        return self.registry_dir / "registry.key"

    @property
    def anchor(self) -> Path:
        return self.registry_dir / "anchor.json"

    @property
    def database(self) -> Path:
        return self.registry_dir / "registry.db"

    @property
    def settings(self) -> Path:
        """``registry.json``: instance name, database URL/schema when not the default SQLite."""
        return self.registry_dir / "registry.json"

    @property
    def address_file(self) -> Path:
        """Written by a running registry: the address it listens on (for the CLI)."""
        return self.registry_dir / "address"

    @property
    def tls_cert(self) -> Path:
        return self.registry_dir / "tls" / "registry.pem"

    @property
    def tls_key(self) -> Path:
        return self.registry_dir / "tls" / "registry.key"

    @property
    def admin_dir(self) -> Path:
        return self.registry_dir / "admin"

    def admin_cert(self, name: str = BOOTSTRAP_ADMIN) -> Path:
        return self.admin_dir / f"{name}.pem"

    def admin_key(self, name: str = BOOTSTRAP_ADMIN) -> Path:
        return self.admin_dir / f"{name}.key"

    # --- loaders -------------------------------------------------------------------------------

    def passphrase(self) -> bytes:
        return read_passphrase(self.data_dir)

    def read_settings(self) -> dict[str, str]:
        try:
            obj = json.loads(self.settings.read_bytes())
        except FileNotFoundError as exc:
            raise errors.NotFoundError(f"no registry instance in {self.data_dir}") from exc
        except ValueError as exc:
            raise errors.MalformedError("registry.json is not valid JSON") from exc
        if not isinstance(obj, dict) or obj.get("format") != SETTINGS_FORMAT:
            raise errors.MalformedError("registry.json is not a CDX registry settings file")
        return {k: str(v) for k, v in obj.items() if v is not None}

    def load_anchor(self) -> globalconf.Anchor:
        return globalconf.Anchor.from_json(read_file(self.anchor))

    def load_ca_pem(self) -> bytes:
        return read_file(self.ca_pem)

    def admin_identity(self, name: str = BOOTSTRAP_ADMIN) -> TlsIdentity:
        """The mTLS identity of an admin whose certificate lives in ``registry/admin/``."""
        return load_identity(
            self.admin_cert(name), self.admin_key(name), self.ca_pem, self.passphrase()
        )

    def registry_identity(self) -> TlsIdentity:
        """The registry's own mTLS server identity."""
        return load_identity(self.tls_cert, self.tls_key, self.ca_pem, self.passphrase())


def as_paths(paths_or_data_dir: InstancePaths | str | os.PathLike[str]) -> InstancePaths:
    if isinstance(paths_or_data_dir, InstancePaths):
        return paths_or_data_dir
    return InstancePaths(Path(paths_or_data_dir))


def read_passphrase(data_dir: Path) -> bytes:
    """The instance's key-store passphrase (``DATA/passphrase``, trailing newline stripped).

    Raises:
        NotFoundError: the file does not exist.
        KeyStoreError: the file is readable by group or others, or empty.
    """
    return files.read_passphrase(Path(data_dir) / "passphrase")


def ensure_passphrase(data_dir: Path, passphrase: bytes | None = None) -> bytes:
    """Return the instance passphrase, creating ``DATA/passphrase`` (0600) when missing.

    Raises:
        InvalidArgumentError: ``passphrase`` differs from the one already on disk.
    """
    path = Path(data_dir) / "passphrase"
    if path.exists():
        existing = read_passphrase(Path(data_dir))
        if passphrase is not None and not crypto.constant_time_equal(existing, passphrase):
            raise errors.InvalidArgumentError("a different passphrase is already installed")
        return existing
    value = passphrase if passphrase is not None else secrets.token_urlsafe(32).encode()
    write_atomically(path, value + b"\n", 0o600)
    return value


def load_identity(cert: Path, key: Path, ca: Path, passphrase: bytes) -> TlsIdentity:
    """Load an mTLS identity whose key is stored encrypted; the key is decrypted in memory only.

    Raises:
        NotFoundError: a file is missing.
        KeyStoreError: the key cannot be decrypted or has an unsafe mode.
    """
    private = crypto.load_signing_key(key, passphrase)
    key_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # in memory only: gRPC core needs the key in clear
    )
    return TlsIdentity(cert_pem=read_file(cert), key_pem=key_pem, ca_pem=read_file(ca))
