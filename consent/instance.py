"""A consent service instance on disk: creating its keys, registering it, and starting it.

Layout (every private key encrypted with ``DATA/passphrase``, mode 0600)::

    DATA/consent/consent.key consent.pub.pem   Ed25519 artefact key (published in global conf)
    DATA/consent/subject-tag.key               32 random bytes keying the subject tags (stored
                                               as an X25519 key: the key store's only format);
                                               without it (an instance provisioned by
                                               ``cdx up``) the tag key is derived from the
                                               artefact key (``derive_tag_key``)
    DATA/consent/data.key                      32 random bytes sealing stored terms and
                                               artefacts (``consent.sealing``); without it,
                                               derived from the tag key (``derive_data_key``)
    DATA/consent/data.retired.<key id>.key     data keys replaced by ``rotate_data_key``: kept
                                               until the service has resealed under the new
                                               one, then destroyed by the operator
    DATA/consent/tls/consent.pem consent.key   mTLS certificate (urn:cdx:service:consent)
    DATA/consent/ca.pem anchor.json            the instance CA and the registry anchor
    DATA/consent/globalconf.bin                last good global configuration
    DATA/consent/consent.json                  settings: registry, listen addresses, database,
                                               the time zone and public holidays deadlines of
                                               data-subject requests count working days in
                                               (optional: defaults apply without it)
    DATA/consent/consent.db                    SQLite database (unless a database URL is set),
                                               mode 0600 in the 0700 directory
    DATA/consent/address public_address        written by a running service (for the CLI)

``init_consent`` registers through the registry admin API when given a client (certificate
issued for ``urn:cdx:service:consent``, artefact key and address set as trust anchors);
otherwise it leaves a CSR and prints nothing itself (the CLI prints the commands to run).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from cdx import crypto, db, errors, keyfiles, pki
from cdx.confclient import ConfClient
from cdx.files import make_private_dir, read_file, write_atomically
from cdx.globalconf import Anchor
from cdx.rpc import TlsIdentity
from consent.sealing import DataKeys, derive_data_key, key_id
from consent.server import RunningConsent, start_consent_service
from consent.service import EventHook
from consent.workdays import DEFAULT_ZONE, WorkingCalendar

log = logging.getLogger(__name__)

SETTINGS_FORMAT = "cdx-consent/v1"
SERVICE_NAME = "consent"
DEFAULT_LISTEN = "127.0.0.1:4500"
DEFAULT_PUBLIC_LISTEN = "127.0.0.1:4501"


@dataclass(frozen=True)
class ConsentPaths:
    """Where the consent service's files live under a data directory."""

    data_dir: Path

    @property
    def dir(self) -> Path:
        return self.data_dir / "consent"

    @property
    def signing_key(self) -> Path:
        return self.dir / "consent.key"

    @property
    def signing_public(self) -> Path:
        return self.dir / "consent.pub.pem"

    @property
    def tag_key(self) -> Path:
        return self.dir / "subject-tag.key"

    @property
    def data_key(self) -> Path:
        return self.dir / "data.key"

    def retired_data_key(self, kid: str) -> Path:
        return self.dir / f"data.retired.{kid}.key"

    def retired_data_keys(self) -> list[Path]:
        return sorted(self.dir.glob("data.retired.*.key"))

    @property
    def tls_cert(self) -> Path:
        return self.dir / "tls" / "consent.pem"

    @property
    def tls_key(self) -> Path:
        return self.dir / "tls" / "consent.key"

    @property
    def tls_csr(self) -> Path:
        return self.dir / "tls" / "consent.csr"

    @property
    def ca_pem(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def anchor(self) -> Path:
        return self.dir / "anchor.json"

    @property
    def conf_cache(self) -> Path:
        return self.dir / "globalconf.bin"

    @property
    def settings(self) -> Path:
        return self.dir / "consent.json"

    @property
    def database(self) -> Path:
        return self.dir / "consent.db"

    @property
    def address_file(self) -> Path:
        return self.dir / "address"

    @property
    def public_address_file(self) -> Path:
        return self.dir / "public_address"

    def read_settings(self) -> dict[str, Any]:
        """``consent.json``, or defaults when only keys were provisioned (``cdx up``).

        Raises:
            NotFoundError: no consent service keys in this data directory.
            MalformedError: ``consent.json`` is damaged.
        """
        if not self.settings.exists():
            if not self.signing_key.exists():
                raise errors.NotFoundError(
                    f"no consent service in {self.data_dir} (run `cdx consent init`)"
                )
            registry = self.data_dir / "registry" / "address"
            return {
                "format": SETTINGS_FORMAT,
                "registry": registry.read_text().strip() if registry.exists() else "",
                "listen": DEFAULT_LISTEN,
                "public_listen": DEFAULT_PUBLIC_LISTEN,
            }
        try:
            obj = json.loads(self.settings.read_text())
        except FileNotFoundError as exc:
            raise errors.NotFoundError(f"no consent service in {self.data_dir}") from exc
        except ValueError as exc:
            raise errors.MalformedError("consent.json is not valid JSON") from exc
        if not isinstance(obj, dict) or obj.get("format") != SETTINGS_FORMAT:
            raise errors.MalformedError("consent.json is not a consent service settings file")
        return obj

    def identity(self, passphrase: bytes) -> TlsIdentity:
        """The service's mTLS identity (its key decrypted in memory only)."""
        key = keyfiles.load_signing_key(self.tls_key, passphrase)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),  # in memory only: gRPC core needs it in clear
        )
        ca = self.ca_pem if self.ca_pem.exists() else self.data_dir / "registry" / "ca.pem"
        return TlsIdentity(read_file(self.tls_cert), key_pem, read_file(ca))

    def signer(self, passphrase: bytes) -> crypto.KeySigner:
        key = keyfiles.load_signing_key(self.signing_key, passphrase)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise errors.KeyStoreError("the consent artefact key must be an Ed25519 key")
        return crypto.KeySigner(key)

    def tag_secret(self, passphrase: bytes) -> bytes:
        if not self.tag_key.exists():
            signing = keyfiles.load_signing_key(self.signing_key, passphrase)
            if not isinstance(signing, ed25519.Ed25519PrivateKey):
                raise errors.KeyStoreError("the consent artefact key must be an Ed25519 key")
            return derive_tag_key(signing)
        return _raw_key(self.tag_key, passphrase, "subject tag key")

    def data_secret(self, passphrase: bytes) -> bytes:
        """The current data key (``data.key``, or derived from the tag key without it)."""
        if not self.data_key.exists():
            return derive_data_key(self.tag_secret(passphrase))
        return _raw_key(self.data_key, passphrase, "data key")

    def data_keys(self, passphrase: bytes) -> DataKeys:
        """The current data key and the retired ones still on disk.

        Raises:
            KeyStoreError: a key file cannot be decrypted or is damaged.
        """
        retired = [_raw_key(p, passphrase, "retired data key") for p in self.retired_data_keys()]
        return DataKeys(self.data_secret(passphrase), retired)

    def anchor_json(self) -> bytes:
        path = self.anchor if self.anchor.exists() else self.data_dir / "registry" / "anchor.json"
        return read_file(path)


TAG_KEY_CONTEXT = b"cdx/consent/subject-tag/v1"


def derive_tag_key(signing_key: ed25519.Ed25519PrivateKey) -> bytes:
    """The subject tag key of an instance without ``subject-tag.key``: HMAC-SHA256 keyed with
    the artefact key's PKCS#8 DER over ``TAG_KEY_CONTEXT`` (as ``cdx up`` provisions it).

    Rotating the artefact key of such an instance changes its tags: create
    ``subject-tag.key`` with the old derived value first (``cdx consent init`` writes an
    independent one from the start).
    """
    der = signing_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return hmac.new(der, TAG_KEY_CONTEXT, hashlib.sha256).digest()


def _raw_key(path: Path, passphrase: bytes, what: str) -> bytes:
    """32 secret bytes stored as an X25519 key (the key store's format for raw secrets)."""
    key = keyfiles.load_private_key(path, passphrase)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise errors.KeyStoreError(f"the {what} file {path} is damaged")
    return key.private_bytes_raw()


def _save_raw_key(path: Path, secret: bytes, passphrase: bytes) -> None:
    keyfiles.save_private_key(path, x25519.X25519PrivateKey.from_private_bytes(secret), passphrase)


def rotate_data_key(data_dir: str | Path, passphrase: bytes) -> tuple[str, str]:
    """Replace the data key with a new random one; returns ``(old key id, new key id)``.

    The old key is kept as ``data.retired.<id>.key``: the next start reseals every stored
    value under the new key (``ConsentService.reseal``); deleting the retired file after that
    is the shred. Stop every replica first and give each the new key before deleting.

    Raises:
        NotFoundError: no consent service in ``data_dir``.
        FailedPreconditionError: the service is run by ``cdx up`` (no ``consent.json``),
            which derives its data key and would not read a new one.
        KeyStoreError: the current key cannot be read, or a file cannot be written.
    """
    paths = ConsentPaths(Path(data_dir))
    if not paths.signing_key.exists():
        raise errors.NotFoundError(f"no consent service in {paths.data_dir}")
    if not paths.settings.exists():
        raise errors.FailedPreconditionError(
            f"the consent service in {paths.dir} is run by `cdx up`, which derives its data "
            "key: rotate the key of a service run by `cdx consent serve`"
        )
    old = paths.data_secret(passphrase)
    old_id = key_id(old)
    _save_raw_key(paths.retired_data_key(old_id), old, passphrase)
    new = os.urandom(32)
    _save_raw_key(paths.data_key, new, passphrase)
    return old_id, key_id(new)


def init_consent(
    data_dir: str | Path,
    passphrase: bytes,
    *,
    registrar: Any | None,
    registry_address: str,
    anchor_json: bytes,
    listen: str = DEFAULT_LISTEN,
    public_listen: str | None = DEFAULT_PUBLIC_LISTEN,
    advertise: str | None = None,
    db_url: str | None = None,
    db_schema: str | None = None,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
) -> ConsentPaths:
    """Create the consent service's keys and settings; register it when ``registrar`` (a
    ``registry.client.RegistryAdminClient`` or compatible) is given. An address naming port 0
    is not registered: the service binds a free port when it starts (``DATA/consent/address``
    says which) and an administrator registers that.

    Raises:
        AlreadyExistsError: a consent service already exists in ``data_dir``.
        MalformedError: ``anchor_json`` is not an anchor file.
        CdxError: the registry refused the registration.
    """
    paths = ConsentPaths(Path(data_dir))
    if paths.settings.exists():
        raise errors.AlreadyExistsError(f"a consent service already exists in {paths.dir}")
    Anchor.from_json(anchor_json)  # MalformedError before anything is written
    make_private_dir(paths.dir)
    paths.dir.chmod(0o700)  # the service's own directory, even if something created it before
    signing = ed25519.Ed25519PrivateKey.generate()
    keyfiles.save_private_key(paths.signing_key, signing, passphrase)
    write_atomically(paths.signing_public, crypto.public_key_to_pem(signing.public_key()))
    keyfiles.save_private_key(paths.tag_key, x25519.X25519PrivateKey.generate(), passphrase)
    _save_raw_key(paths.data_key, os.urandom(32), passphrase)
    tls_key = crypto.generate_signing_key("ecdsa-p256")
    (paths.dir / "tls").mkdir(exist_ok=True, mode=0o700)
    keyfiles.save_private_key(paths.tls_key, tls_key, passphrase)
    csr = pki.build_csr(
        tls_key,
        SERVICE_NAME,
        uri=f"urn:cdx:service:{SERVICE_NAME}",
        dns_names=dns_names,
        ip_addresses=ip_addresses,
    )
    write_atomically(paths.tls_csr, csr)
    write_atomically(paths.anchor, anchor_json)
    address = advertise or listen
    if registrar is not None:
        issued = registrar.issue_client_certificate(
            csr, "service", SERVICE_NAME, dns_names=dns_names, ip_addresses=ip_addresses
        )
        write_atomically(paths.tls_cert, issued.cert_pem)
        write_atomically(paths.ca_pem, issued.ca_pem)
        registrar.set_trust_anchors(
            consent_service_key_der=crypto.public_key_to_der(signing.public_key()),
            consent_service_address=None if address.endswith(":0") else address,
        )
    settings: dict[str, Any] = {
        "format": SETTINGS_FORMAT,
        "registry": registry_address,
        "listen": listen,
        "public_listen": public_listen,
        "advertise": address,
        "db_url": db_url,
        "db_schema": db_schema,
        # Data-subject request deadlines skip weekends and these dates (YYYY-MM-DD).
        "time_zone": DEFAULT_ZONE,
        "public_holidays": [],
    }
    write_atomically(paths.settings, json.dumps(settings, indent=2).encode() + b"\n")
    return paths


@dataclass
class ConsentInstance:
    """A running consent service with the configuration client that feeds it."""

    running: RunningConsent
    conf_client: ConfClient
    paths: ConsentPaths

    def stop(self) -> None:
        self.running.stop(1.0)
        self.conf_client.stop()
        for path in (self.paths.address_file, self.paths.public_address_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def open_consent(
    data_dir: str | Path,
    passphrase: bytes,
    *,
    listen: str | None = None,
    public_listen: str | None = None,
    registry_address: str | None = None,
    on_event: EventHook | None = None,
    conf_poll: timedelta = timedelta(seconds=10),
    audit_log: bool | None = None,
) -> ConsentInstance:
    """Start the consent service of ``data_dir`` (keys, settings and certificate in place).

    ``audit_log`` ships consent events to the audit log; ``None``: when global configuration
    names an audit log address.

    Raises:
        NotFoundError: not initialised, or the certificate is missing (offline init).
        InvalidArgumentError: an unknown time zone or a malformed public holiday.
        KeyStoreError: a key cannot be decrypted.
        UnavailableError / ConfExpiredError: no current global configuration.
    """
    paths = ConsentPaths(Path(data_dir))
    settings = paths.read_settings()
    calendar = WorkingCalendar.from_settings(
        str(settings.get("time_zone") or DEFAULT_ZONE), settings.get("public_holidays") or ()
    )
    identity = paths.identity(passphrase)
    anchor = Anchor.from_json(paths.anchor_json())
    conf_client = ConfClient(
        registry_address or settings["registry"],
        identity,
        anchor,
        paths.conf_cache,
        poll_interval=conf_poll,
    )
    try:
        with contextlib.suppress(errors.CdxError):
            conf_client.refresh()
        current = conf_client.current()  # fail now, clearly, when there is no usable one
        conf_client.start()
        url = settings.get("db_url")
        if not url:
            url = db.sqlite_url(paths.database)
        engine = db.create_engine(url, schema=settings.get("db_schema"))
        running = start_consent_service(
            engine=engine,
            identity=identity,
            signer=paths.signer(passphrase),
            tag_key=paths.tag_secret(passphrase),
            data_keys=paths.data_keys(passphrase),
            conf=conf_client.current,
            address=listen or settings["listen"],
            public_address=public_listen or settings.get("public_listen"),
            on_event=on_event,
            audit_log=bool(current.audit_log_address) if audit_log is None else audit_log,
            calendar=calendar,
        )
    except BaseException:
        conf_client.stop()
        raise
    write_atomically(paths.address_file, running.address.encode() + b"\n")
    if running.public_address:
        write_atomically(paths.public_address_file, running.public_address.encode() + b"\n")
    return ConsentInstance(running, conf_client, paths)
