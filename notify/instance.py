"""A notification service on disk: its keys and settings, registering it, and starting it.

Layout (every private key encrypted with the service's passphrase, mode 0600)::

    DATA/notify/tag.key                 32 random bytes keying citizens' tags and idempotency
                                        keys (stored as an X25519 key: the key store's format)
    DATA/notify/data.key                32 random bytes sealing preferences and queued messages
    DATA/notify/webhook.key             the webhook signing secret shared with the national app
    DATA/notify/tls/notify.pem .key     mTLS certificate (urn:cdx:service:notify)
    DATA/notify/ca.pem anchor.json      the instance CA and the registry anchor
    DATA/notify/globalconf.bin          last good global configuration
    DATA/notify/notify.json             settings: registry, listen address, database, portal
                                        URL, SMTP relay, webhook URL
    DATA/notify/notify.db               SQLite database (unless a database URL is set)
    DATA/notify/address                 written by a running service (for the portal and CLI)

``init_notify`` registers through the registry admin API when given a client (a service
certificate for ``urn:cdx:service:notify``); otherwise it leaves a CSR.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from cdx import crypto, db, errors, keyfiles, pki
from cdx.confclient import ConfClient
from cdx.files import make_private_dir, read_file, write_atomically
from cdx.globalconf import Anchor
from cdx.rpc import TlsIdentity
from notify.addresses import check_email
from notify.channels import (
    Sender,
    SmtpSender,
    SmtpSettings,
    WebhookSender,
    WebhookSettings,
)
from notify.model import Channel
from notify.sealing import Sealer
from notify.server import RunningNotify, start_notify_service
from notify.service import DEFAULT_RETRY, RetryPolicy

SETTINGS_FORMAT = "cdx-notify/v1"
SERVICE_NAME = "notify"
DEFAULT_LISTEN = "127.0.0.1:4700"


@dataclass(frozen=True)
class NotifyPaths:
    """Where the notification service's files live under a data directory."""

    data_dir: Path

    @property
    def dir(self) -> Path:
        return self.data_dir / "notify"

    @property
    def tag_key(self) -> Path:
        return self.dir / "tag.key"

    @property
    def data_key(self) -> Path:
        return self.dir / "data.key"

    @property
    def webhook_key(self) -> Path:
        return self.dir / "webhook.key"

    @property
    def tls_cert(self) -> Path:
        return self.dir / "tls" / "notify.pem"

    @property
    def tls_key(self) -> Path:
        return self.dir / "tls" / "notify.key"

    @property
    def tls_csr(self) -> Path:
        return self.dir / "tls" / "notify.csr"

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
        return self.dir / "notify.json"

    @property
    def database(self) -> Path:
        return self.dir / "notify.db"

    @property
    def address_file(self) -> Path:
        return self.dir / "address"

    def exists(self) -> bool:
        return self.tag_key.exists()

    def read_settings(self) -> dict[str, Any]:
        """``notify.json``, or defaults when only keys were provisioned (``cdx up``, which
        passes the rest when it starts the service).

        Raises:
            NotFoundError: no notification service here.
            MalformedError: the file is damaged.
        """
        if not self.settings.exists() and self.exists():
            return {"format": SETTINGS_FORMAT, "listen": DEFAULT_LISTEN, "portal_url": ""}
        try:
            obj = json.loads(self.settings.read_text())
        except FileNotFoundError as exc:
            raise errors.NotFoundError(
                f"no notification service in {self.data_dir} (run `cdx notify init`)"
            ) from exc
        except ValueError as exc:
            raise errors.MalformedError("notify.json is not valid JSON") from exc
        if not isinstance(obj, dict) or obj.get("format") != SETTINGS_FORMAT:
            raise errors.MalformedError("notify.json is not a notification service settings file")
        return obj

    def write_settings(self, settings: dict[str, Any]) -> None:
        write_atomically(self.settings, json.dumps(settings, indent=2).encode() + b"\n")

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

    def sealer(self, passphrase: bytes) -> Sealer:
        """Raises: KeyStoreError: a key file cannot be read."""
        return Sealer(
            _raw_key(self.data_key, passphrase, "data key"),
            _raw_key(self.tag_key, passphrase, "tag key"),
        )

    def webhook_secret(self, passphrase: bytes) -> bytes:
        return _raw_key(self.webhook_key, passphrase, "webhook key")

    def anchor_json(self) -> bytes:
        path = self.anchor if self.anchor.exists() else self.data_dir / "registry" / "anchor.json"
        return read_file(path)


def _raw_key(path: Path, passphrase: bytes, what: str) -> bytes:
    key = keyfiles.load_private_key(path, passphrase)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise errors.KeyStoreError(f"the notification {what} file {path} is damaged")
    return key.private_bytes_raw()


def _save_raw_key(path: Path, passphrase: bytes) -> None:
    secret = x25519.X25519PrivateKey.from_private_bytes(os.urandom(32))
    keyfiles.save_private_key(path, secret, passphrase)


def create_keys(paths: NotifyPaths, passphrase: bytes) -> crypto.PrivateSigningKey:
    """Write the service's secret keys and its TLS key; returns the TLS key (for its CSR).

    Raises:
        AlreadyExistsError: keys exist already.
    """
    if paths.exists():
        raise errors.AlreadyExistsError(f"a notification service already exists in {paths.dir}")
    make_private_dir(paths.dir)
    paths.dir.chmod(0o700)
    for path in (paths.tag_key, paths.data_key, paths.webhook_key):
        _save_raw_key(path, passphrase)
    tls_key = crypto.generate_signing_key("ecdsa-p256")
    make_private_dir(paths.tls_key.parent)
    keyfiles.save_private_key(paths.tls_key, tls_key, passphrase)
    return tls_key


def smtp_settings(raw: dict[str, Any], base: Path) -> SmtpSettings:
    """``[smtp]`` of the settings: host, port, sender, starttls, username, password_file.

    Raises:
        MalformedError: a missing or mistyped value.
        InvalidAddressError: the sender is not a plain address.
    """
    try:
        host, port, sender = str(raw["host"]), int(raw["port"]), str(raw["sender"])
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.MalformedError("smtp needs host, port and sender") from exc
    password = None
    if raw.get("password_file"):
        file = Path(str(raw["password_file"]))
        file = file if file.is_absolute() else base / file
        password = crypto.Secret(read_file(file, "SMTP password file").decode().strip())
    return SmtpSettings(
        host=host,
        port=port,
        sender=check_email(sender),
        starttls=bool(raw.get("starttls", False)),
        username=str(raw.get("username", "")),
        password=password,
        timeout=float(raw.get("timeout", 10.0)),
    )


def build_senders(
    settings: dict[str, Any], paths: NotifyPaths, passphrase: bytes
) -> tuple[dict[str, Sender], list[Callable[[], None]]]:
    """The channels the settings configure, and what closes them."""
    senders: dict[str, Sender] = {}
    closers: list[Callable[[], None]] = []
    if settings.get("smtp"):
        senders[Channel.EMAIL.value] = SmtpSender(smtp_settings(settings["smtp"], paths.dir))
    hook = settings.get("webhook") or {}
    if hook.get("url"):
        sender = WebhookSender(WebhookSettings(str(hook["url"]), paths.webhook_secret(passphrase)))
        senders[Channel.WEBHOOK.value] = sender
        closers.append(sender.close)
    return senders, closers


def init_notify(
    data_dir: str | Path,
    passphrase: bytes,
    *,
    registrar: Any | None,
    registry_address: str,
    anchor_json: bytes,
    portal_url: str,
    listen: str = DEFAULT_LISTEN,
    smtp: dict[str, Any] | None = None,
    webhook_url: str = "",
    db_url: str | None = None,
    db_schema: str | None = None,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
) -> NotifyPaths:
    """Create the notification service's keys and settings; with ``registrar`` (a
    ``registry.client.RegistryAdminClient`` or compatible), have its certificate issued.

    Raises:
        AlreadyExistsError: a notification service already exists in ``data_dir``.
        MalformedError: ``anchor_json`` is not an anchor file, or bad SMTP settings.
    """
    paths = NotifyPaths(Path(data_dir))
    Anchor.from_json(anchor_json)  # MalformedError before anything is written
    if smtp:
        smtp_settings(smtp, paths.dir)
    tls_key = create_keys(paths, passphrase)
    csr = pki.build_csr(
        tls_key,
        SERVICE_NAME,
        uri=f"urn:cdx:service:{SERVICE_NAME}",
        dns_names=dns_names,
        ip_addresses=ip_addresses,
    )
    write_atomically(paths.tls_csr, csr)
    write_atomically(paths.anchor, anchor_json)
    if registrar is not None:
        issued = registrar.issue_client_certificate(
            csr, "service", SERVICE_NAME, dns_names=dns_names, ip_addresses=ip_addresses
        )
        write_atomically(paths.tls_cert, issued.cert_pem)
        write_atomically(paths.ca_pem, issued.ca_pem)
    paths.write_settings(
        {
            "format": SETTINGS_FORMAT,
            "registry": registry_address,
            "listen": listen,
            "db_url": db_url,
            "db_schema": db_schema,
            "portal_url": portal_url,
            "smtp": smtp or None,
            "webhook": {"url": webhook_url} if webhook_url else None,
        }
    )
    return paths


@dataclass
class NotifyInstance:
    """A running notification service with the configuration client that feeds it."""

    running: RunningNotify
    conf_client: ConfClient
    paths: NotifyPaths

    def stop(self) -> None:
        self.running.stop(1.0)
        self.conf_client.stop()
        with contextlib.suppress(FileNotFoundError):
            self.paths.address_file.unlink()


def open_notify(
    data_dir: str | Path,
    passphrase: bytes,
    *,
    listen: str | None = None,
    registry_address: str | None = None,
    conf_poll: timedelta = timedelta(seconds=10),
    retry: RetryPolicy = DEFAULT_RETRY,
) -> NotifyInstance:
    """Start the notification service of ``data_dir``.

    Raises:
        NotFoundError: not initialised, or the certificate is missing (offline init).
        KeyStoreError: a key cannot be decrypted.
        UnavailableError / ConfExpiredError: no current global configuration.
    """
    paths = NotifyPaths(Path(data_dir))
    settings = paths.read_settings()
    identity = paths.identity(passphrase)
    conf_client = ConfClient(
        registry_address or settings["registry"],
        identity,
        Anchor.from_json(paths.anchor_json()),
        paths.conf_cache,
        poll_interval=conf_poll,
    )
    try:
        with contextlib.suppress(errors.CdxError):
            conf_client.refresh()
        conf_client.current()  # fail now, clearly, when there is no usable one
        conf_client.start()
        url = settings.get("db_url") or db.sqlite_url(paths.database)
        senders, closers = build_senders(settings, paths, passphrase)
        running = start_notify_service(
            engine=db.create_engine(url, schema=settings.get("db_schema")),
            identity=identity,
            sealer=paths.sealer(passphrase),
            conf=conf_client.current,
            portal_url=str(settings.get("portal_url", "")),
            senders=senders,
            address=listen or settings["listen"],
            timezone=str(settings.get("timezone") or "Asia/Ho_Chi_Minh"),
            retry=retry,
            closers=closers,
        )
    except BaseException:
        conf_client.stop()
        raise
    write_atomically(paths.address_file, running.address.encode() + b"\n")
    return NotifyInstance(running, conf_client, paths)
