"""Where an instance's files live under its data directory, and loading the shared ones.

One layout for every component and every ``cdx`` command, so that a command run on a data
directory finds the instance's passphrase, trust root, certificates and the addresses running
services wrote, without flags::

    DATA/passphrase                     key-store passphrase (0600)
    DATA/instance.toml                  a single-box instance: every component's address
    DATA/registry/                      CA, registry key, anchor.json, registry.db, tls/, admin/,
                                        address (written by a running registry)
    DATA/consent/                       consent service: keys, tls/, consent.db, address files
    DATA/audit/                         audit log: keys, tls/, audit.db, address
    DATA/portal/tls/                    the portal's mTLS identity
    DATA/idp/                           development identity provider
    DATA/servers/<server>/              a security server's keys, certificates, server.toml
    DATA/clients/<agency>/              an information system's client certificate and token
    DATA/inspectors/<name>.pem, .key    inspector certificates (``cdx registry cert issue``);
                                        a single-box instance keeps its one in DATA/inspector/
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cdx import globalconf, keyfiles
from cdx.files import read_file
from cdx.rpc import TlsIdentity

__all__ = ["BOOTSTRAP_ADMIN", "INSTANCE_FILE", "InstancePaths", "as_paths"]

BOOTSTRAP_ADMIN = "bootstrap"
#: A single-box instance's description (``stack.provision`` writes it).
INSTANCE_FILE = "instance.toml"


@dataclass(frozen=True)
class InstancePaths:
    """Where an instance's files live under a data directory."""

    data_dir: Path

    @property
    def passphrase_file(self) -> Path:
        return self.data_dir / "passphrase"

    @property
    def instance_file(self) -> Path:
        return self.data_dir / INSTANCE_FILE

    # --- registry -------------------------------------------------------------------------------

    @property
    def registry_dir(self) -> Path:
        return self.data_dir / "registry"

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

    # --- the other components -------------------------------------------------------------------

    @property
    def consent_dir(self) -> Path:
        return self.data_dir / "consent"

    @property
    def audit_dir(self) -> Path:
        return self.data_dir / "audit"

    @property
    def portal_dir(self) -> Path:
        return self.data_dir / "portal"

    @property
    def servers_dir(self) -> Path:
        return self.data_dir / "servers"

    @property
    def clients_dir(self) -> Path:
        return self.data_dir / "clients"

    @property
    def inspectors_dir(self) -> Path:
        return self.data_dir / "inspectors"

    def inspector_files(self, name: str) -> tuple[Path, Path]:
        """Certificate and key of inspector ``name``: ``DATA/inspectors/NAME.pem``/``.key``, or
        the single-box instance's ``DATA/inspector/NAME.*`` when only that exists."""
        cert = self.inspectors_dir / f"{name}.pem"
        single_box = self.data_dir / "inspector" / f"{name}.pem"
        if not cert.exists() and single_box.exists():
            cert = single_box
        return cert, cert.with_suffix(".key")

    # --- loaders --------------------------------------------------------------------------------

    def passphrase(self) -> bytes:
        """The instance's key-store passphrase (``DATA/passphrase``).

        Raises:
            NotFoundError: the file does not exist.
            KeyStoreError: the file is readable by group or others, or empty.
        """
        return keyfiles.read_passphrase(self.passphrase_file)

    def load_anchor(self) -> globalconf.Anchor:
        """The installed trust root (``DATA/registry/anchor.json``).

        Raises:
            NotFoundError: the file does not exist.
            MalformedError: it is not an anchor.
        """
        return globalconf.Anchor.from_json(read_file(self.anchor, "anchor file"))

    def load_ca_pem(self) -> bytes:
        return read_file(self.ca_pem, "CA certificate")

    def admin_identity(self, name: str = BOOTSTRAP_ADMIN) -> TlsIdentity:
        """The mTLS identity of an admin whose certificate lives in ``registry/admin/``."""
        return keyfiles.load_identity(
            self.admin_cert(name), self.admin_key(name), self.ca_pem, self.passphrase()
        )

    def registry_identity(self) -> TlsIdentity:
        """The registry's own mTLS server identity."""
        return keyfiles.load_identity(self.tls_cert, self.tls_key, self.ca_pem, self.passphrase())


def as_paths(paths_or_data_dir: InstancePaths | str | os.PathLike[str]) -> InstancePaths:
    if isinstance(paths_or_data_dir, InstancePaths):
        return paths_or_data_dir
    return InstancePaths(Path(paths_or_data_dir))
