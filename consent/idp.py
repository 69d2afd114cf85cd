"""The development identity provider: its key, and minting citizen and inspector tokens.

Real citizens authenticate with the national identity provider (an OpenID provider the
registry anchors by issuer URL); for a pilot on one box CDX ships this development IdP
instead. Its key is an Ed25519 key in ``DATA/idp/idp.key`` (encrypted with the instance
passphrase). It is used two ways:

- as an OpenID provider over HTTP (``consent.idp_server``, ``cdx idp serve``; ``cdx up`` and
  the demo start it and anchor it by its URL): the portal logs users in through it with the
  same code as through a national IdP;
- as a static key (``registration()``), for offline tests that need tokens without HTTP.

It refuses to mint when global configuration says the instance is in production, and every
relying party refuses its tokens then as well (``cdx.tokens``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import crypto, errors, keyfiles
from cdx.globalconf import IdentityProviderInfo, VerifiedGlobalConf
from cdx.ids import CitizenId
from cdx.tokens import Role, citizen_audience, issue_token

IDP_DIR = "idp"
KEY_FILE = "idp.key"
PUBLIC_FILE = "idp.pub.pem"
SETTINGS_FILE = "idp.json"
SETTINGS_FORMAT = "cdx-dev-idp/v1"
DEFAULT_TTL = timedelta(minutes=30)


def dev_issuer(instance: str) -> str:
    """The issuer name of an instance's development identity provider."""
    return f"urn:cdx:{instance}:dev-idp"


@dataclass(frozen=True)
class DevIdentityProvider:
    """A development IdP: an issuer name and its Ed25519 key."""

    issuer: str
    instance: str
    key: ed25519.Ed25519PrivateKey = field(repr=False)

    @property
    def public_key_der(self) -> bytes:
        return crypto.public_key_to_der(self.key.public_key())

    @property
    def key_id(self) -> str:
        return crypto.key_id(self.key.public_key())

    def registration(self) -> IdentityProviderInfo:
        """What the registry publishes for it (``development`` is always set)."""
        return IdentityProviderInfo(self.issuer, self.public_key_der, True, "")

    def is_registered(self, conf: VerifiedGlobalConf) -> bool:
        """Whether ``conf`` trusts this IdP's current key."""
        return any(
            p.issuer == self.issuer and p.public_key_der == self.public_key_der
            for p in conf.identity_providers
        )

    def issue(
        self,
        subject: str,
        *,
        conf: VerifiedGlobalConf,
        now: datetime,
        role: Role = "citizen",
        name: str = "",
        ttl: timedelta = DEFAULT_TTL,
        issuer: str | None = None,
        audience: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """Mint a token for ``subject`` (a national id for citizens).

        By default a static-key token (offline tests); ``issuer``/``audience``/``nonce`` make
        it the ID token of the OpenID endpoints (``consent.idp_server``).

        Raises:
            FailedPreconditionError: the instance is in production.
            InvalidCitizenIdError: a citizen token for something that is not a national id.
            InvalidArgumentError: bad role or lifetime.
        """
        if conf.production:
            raise errors.FailedPreconditionError(
                "the development identity provider is disabled in production"
            )
        if role == "citizen":
            CitizenId.parse(subject, self.instance)
        return issue_token(
            self.key,
            issuer or self.issuer,
            subject,
            role,
            audience or citizen_audience(self.instance),
            now,
            ttl,
            name=name,
            nonce=nonce,
        )


def idp_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / IDP_DIR


def init_dev_idp(data_dir: str | Path, instance: str, passphrase: bytes) -> DevIdentityProvider:
    """Create the development IdP in ``DATA/idp`` (or load it if it exists).

    Raises:
        KeyStoreError: an existing key cannot be loaded with ``passphrase``.
        InvalidArgumentError: an existing IdP belongs to another instance.
    """
    directory = idp_dir(data_dir)
    if (directory / KEY_FILE).exists():
        idp = load_dev_idp(data_dir, passphrase)
        if idp.instance != instance:
            raise errors.InvalidArgumentError("the development IdP belongs to another instance")
        return idp
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ed25519.Ed25519PrivateKey.generate()
    keyfiles.save_private_key(directory / KEY_FILE, key, passphrase)
    (directory / PUBLIC_FILE).write_bytes(crypto.public_key_to_pem(key.public_key()))
    idp = DevIdentityProvider(dev_issuer(instance), instance, key)
    settings = {
        "format": SETTINGS_FORMAT,
        "issuer": idp.issuer,
        "instance": instance,
        "key_id": idp.key_id,
    }
    (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    return idp


def load_dev_idp(data_dir: str | Path, passphrase: bytes) -> DevIdentityProvider:
    """Load the development IdP from ``DATA/idp``.

    Raises:
        NotFoundError: there is none (run ``cdx idp init``).
        MalformedError: its settings file is damaged.
        KeyStoreError: the key cannot be loaded.
    """
    directory = idp_dir(data_dir)
    try:
        settings = json.loads((directory / SETTINGS_FILE).read_text())
    except FileNotFoundError as exc:
        raise errors.NotFoundError("no development identity provider (run `cdx idp init`)") from exc
    except ValueError as exc:
        raise errors.MalformedError("idp.json is not valid JSON") from exc
    if not isinstance(settings, dict) or settings.get("format") != SETTINGS_FORMAT:
        raise errors.MalformedError("idp.json is not a development IdP settings file")
    key = keyfiles.load_private_key(directory / KEY_FILE, passphrase)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise errors.KeyStoreError("the development IdP key must be an Ed25519 key")
    return DevIdentityProvider(str(settings["issuer"]), str(settings["instance"]), key)


def mint_portal_token(
    data_dir: str | Path,
    passphrase: bytes,
    citizen_id: str,
    *,
    conf: VerifiedGlobalConf,
    now: datetime,
    role: Role = "citizen",
    name: str = "",
    ttl: timedelta = DEFAULT_TTL,
) -> str:
    """A static-key token for ``citizen_id`` (or an inspector) from the development IdP in
    ``data_dir``, once it is registered (offline tests and scripts).

    Raises:
        FailedPreconditionError: the instance is in production, or the IdP is not registered.
        NotFoundError / KeyStoreError: no development IdP in ``data_dir``.
        InvalidCitizenIdError: ``citizen_id`` is not a national id (citizen role).
    """
    idp = load_dev_idp(data_dir, passphrase)
    if not conf.production and not idp.is_registered(conf):
        raise errors.FailedPreconditionError(
            "the development identity provider is not registered in global configuration"
        )
    return idp.issue(citizen_id, conf=conf, now=now, role=role, name=name, ttl=ttl)
