"""Verifies the signed global configuration against the installed anchor; does no I/O.

The registry signs ``"cdx/globalconf/v1\\n" || conf`` with its key (DESIGN §5). A security
server holds an **anchor** (instance id + registry public key, installed out of band) and
accepts a configuration only if, in this order: the signature verifies under the anchor key
(verify first, parse second), the instance matches, the version does not roll back, and it has
not expired. The result is a ``VerifiedGlobalConf`` with the indexes the exchange needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from google.protobuf.message import DecodeError

from cdx import crypto, errors
from cdx.v1 import common_pb2, registry_pb2

__all__ = [
    "DEFAULT_VALIDITY",
    "LAWFUL_BASIS_NAMES",
    "MAX_CONF_BYTES",
    "SIGNING_CONTEXT",
    "AgreementInfo",
    "Anchor",
    "IdentityProviderInfo",
    "ServerInfo",
    "ServiceInfo",
    "VerifiedGlobalConf",
    "identity_provider_info",
    "identity_provider_to_proto",
    "sign_global_conf",
    "subsystems_of",
    "to_ms",
    "verify_global_conf",
]

SIGNING_CONTEXT = b"cdx/globalconf/v1\n"
DEFAULT_VALIDITY = timedelta(minutes=10)
MAX_CONF_BYTES = 64 * 1024 * 1024

LAWFUL_BASIS_NAMES = {
    common_pb2.CONSENT: "CONSENT",
    common_pb2.LEGAL_OBLIGATION: "LEGAL_OBLIGATION",
    common_pb2.PUBLIC_TASK: "PUBLIC_TASK",
    common_pb2.VITAL_INTEREST: "VITAL_INTEREST",
}


def _ms_to_dt(ms: int) -> datetime:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError) as exc:  # int64 ms beyond datetime's years
        raise errors.MalformedError("global configuration timestamp out of range") from exc


def to_ms(when: datetime) -> int:
    """Unix milliseconds of an aware datetime."""
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class Anchor:
    """The trust root a server installs out of band: instance id + registry public key."""

    instance: str
    public_key: crypto.PublicSigningKey

    @property
    def key_id(self) -> str:
        return crypto.key_id(self.public_key)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": "cdx-anchor/v1",
                "instance": self.instance,
                "registry_public_key": crypto.public_key_to_pem(self.public_key).decode(),
                "key_id": self.key_id,
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Anchor:
        """Parse an anchor file.

        Raises:
            MalformedError: not a CDX anchor file.
        """
        try:
            obj = json.loads(data)
            if obj.get("format") != "cdx-anchor/v1":
                raise errors.MalformedError("not a CDX anchor file")
            key = crypto.as_signing_public_key(
                crypto.public_key_from_pem(obj["registry_public_key"].encode())
            )
            instance = obj["instance"]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise errors.MalformedError("not a CDX anchor file") from exc
        except errors.UnknownKeyError as exc:
            raise errors.MalformedError("the anchor key is not a signing key") from exc
        if not isinstance(instance, str) or not instance:
            raise errors.MalformedError("anchor has no instance")
        return cls(instance, key)


@dataclass(frozen=True)
class ServerInfo:
    id: str
    member: str
    address: str
    auth_fingerprint: str
    signing_key_id: str
    subsystems: frozenset[str]
    auth_cert_der: bytes = field(repr=False)
    signing_cert_der: bytes = field(repr=False)
    hpke_public_raw: bytes = field(repr=False)
    witness_public_raw: bytes = field(repr=False)

    @cached_property
    def signing_public_key(self) -> crypto.PublicSigningKey:
        """The key of the registered signing certificate.

        Raises:
            MalformedError: the registered certificate does not parse.
            UnknownKeyError: its key is not a supported signing key.
        """
        try:
            key = x509.load_der_x509_certificate(self.signing_cert_der).public_key()
        except UnsupportedAlgorithm as exc:
            raise errors.UnknownKeyError("unsupported signing certificate key") from exc
        except ValueError as exc:
            raise errors.MalformedError("registered signing certificate does not parse") from exc
        return crypto.as_signing_public_key(key)

    @cached_property
    def hpke_public_key(self) -> x25519.X25519PublicKey:
        return crypto.x25519_public_from_raw(self.hpke_public_raw)

    @cached_property
    def witness_public_key(self) -> ed25519.Ed25519PublicKey | None:
        if not self.witness_public_raw:
            return None
        try:
            return ed25519.Ed25519PublicKey.from_public_bytes(self.witness_public_raw)
        except ValueError as exc:
            raise errors.MalformedError("registered witness key is not an Ed25519 key") from exc


@dataclass(frozen=True)
class ServiceInfo:
    id: str
    subsystem: str
    fields: tuple[str, ...]
    data_categories: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class AgreementInfo:
    id: str
    client: str
    service: str
    purpose: str
    lawful_basis: str  # one of LAWFUL_BASIS_NAMES' values
    legal_reference: str
    fields: frozenset[str]
    rate_limit_per_minute: int
    retention_days: int
    sealed: bool


_K = TypeVar("_K")
_V = TypeVar("_V")


class _LazyMap(Mapping[_K, _V]):
    """A read-only mapping that builds each value from its raw entry on first access.

    A national configuration holds tens of thousands of services and agreements; a server
    consults a handful of them, so converting all of them up front would dominate the time
    to load a new version (see bench/globalconf.py).
    """

    __slots__ = ("_convert", "_done", "_raw")

    def __init__(self, raw: dict[_K, Any], convert: Callable[[Any], _V]) -> None:
        self._raw = raw
        self._convert = convert
        self._done: dict[_K, _V] = {}

    def __getitem__(self, key: _K) -> _V:
        try:
            return self._done[key]
        except KeyError:
            pass
        value = self._convert(self._raw[key])  # KeyError for an unknown key
        self._done[key] = value  # a race converts twice, to equal values: harmless
        return value

    def __iter__(self) -> Iterator[_K]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _service_info(s: registry_pb2.Service) -> ServiceInfo:
    return ServiceInfo(
        s.id, s.id.split("/", 1)[0], tuple(s.fields), tuple(s.data_categories), s.description
    )


def _agreement_infos(group: list[registry_pb2.Agreement]) -> tuple[AgreementInfo, ...]:
    return tuple(
        AgreementInfo(
            id=a.id,
            client=a.client,
            service=a.service,
            purpose=a.purpose,
            lawful_basis=LAWFUL_BASIS_NAMES.get(a.lawful_basis, "UNSPECIFIED"),
            legal_reference=a.legal_reference,
            fields=frozenset(a.fields),
            rate_limit_per_minute=a.rate_limit_per_minute,
            retention_days=a.retention_days,
            sealed=a.visibility == common_pb2.SEALED,
        )
        for a in group
    )


@dataclass(frozen=True)
class IdentityProviderInfo:
    """An identity provider the registry anchors (``cdx.tokens`` verifies its tokens).

    OpenID Connect when ``public_key_der`` is empty: ``issuer`` is the issuer URL, ``audience``
    the portal's client id, ``algorithms`` the pinned ID-token algorithms. Static-key mode (a
    fixed key, offline tests only) otherwise.
    """

    issuer: str
    public_key_der: bytes = field(repr=False)
    development: bool
    audience: str
    algorithms: tuple[str, ...] = ()
    national_id_claim: str = ""
    inspector_claim: str = ""
    inspector_value: str = ""
    cli_client_id: str = ""

    @property
    def static_key(self) -> bool:
        """Whether this provider is anchored by a fixed key instead of its JWKS."""
        return bool(self.public_key_der)


def identity_provider_info(p: registry_pb2.IdentityProvider) -> IdentityProviderInfo:
    """The domain form of an ``IdentityProvider`` anchor."""
    return IdentityProviderInfo(
        p.issuer,
        p.public_key,
        p.development,
        p.audience,
        tuple(p.algorithms),
        p.national_id_claim,
        p.inspector_claim,
        p.inspector_value,
        p.cli_client_id,
    )


def identity_provider_to_proto(p: IdentityProviderInfo) -> registry_pb2.IdentityProvider:
    """The wire form of an identity provider anchor."""
    return registry_pb2.IdentityProvider(
        issuer=p.issuer,
        public_key=p.public_key_der,
        development=p.development,
        audience=p.audience,
        algorithms=list(p.algorithms),
        national_id_claim=p.national_id_claim,
        inspector_claim=p.inspector_claim,
        inspector_value=p.inspector_value,
        cli_client_id=p.cli_client_id,
    )


class VerifiedGlobalConf:
    """A global configuration whose signature, instance, version and expiry were checked."""

    def __init__(self, conf: registry_pb2.GlobalConf, raw: bytes, key_id: str) -> None:
        self._conf = conf
        self.raw = raw  # the SignedGlobalConf bytes as received (kept as the last good copy)
        self.registry_key_id = key_id
        self.instance = conf.instance
        self.version = conf.version
        self.issued_at = _ms_to_dt(conf.issued_at_ms)
        self.expires_at = _ms_to_dt(conf.expires_at_ms)
        a = conf.anchors
        self.ca_cert_der = a.ca_cert
        self.consent_service_key_der = a.consent_service_key
        self.consent_service_address = a.consent_service_address
        self.audit_log_origin = a.audit_log_origin
        self.audit_log_key = a.audit_log_key
        self.audit_log_address = a.audit_log_address
        self.audit_service_key_der = a.audit_service_key
        #: Where the log's C2SP tlog-tiles are served ("" when not published over HTTP).
        self.audit_tiles_url = a.audit_tiles_url
        self.witness_quorum = a.witness_quorum
        self.production = a.production
        #: The subsystem that registers legal representatives ("": nobody may).
        self.representation_authority = a.representation_authority
        self.identity_providers = tuple(identity_provider_info(p) for p in a.identity_providers)
        self.revoked_fingerprints = frozenset(conf.revoked_cert_fingerprints)
        # ASCII digits only: str.isdigit() also accepts e.g. "²", which int() refuses; RFC 5280
        # serials are at most 20 octets (49 decimal digits).
        self.revoked_serials = frozenset(
            int(s) for s in conf.revoked_serials if s.isascii() and s.isdigit() and len(s) <= 49
        )

    # Indexes are built on first use: a server that only checks expiry pays nothing.

    @cached_property
    def members(self) -> Mapping[str, registry_pb2.Member]:
        return {m.id: m for m in self._conf.members}

    @cached_property
    def servers(self) -> Mapping[str, ServerInfo]:
        out: dict[str, ServerInfo] = {}
        for s in self._conf.servers:
            out[s.id] = ServerInfo(
                id=s.id,
                member=s.id.rsplit(":", 1)[0],
                address=s.address,
                auth_fingerprint=s.auth_cert_fingerprint,
                signing_key_id=s.signing_key_id,
                subsystems=frozenset(s.subsystems),
                auth_cert_der=s.auth_cert,
                signing_cert_der=s.signing_cert,
                hpke_public_raw=s.hpke_public_key,
                witness_public_raw=s.witness_public_key,
            )
        return out

    @cached_property
    def _servers_by_fingerprint(self) -> Mapping[str, ServerInfo]:
        return {s.auth_fingerprint: s for s in self.servers.values()}

    @cached_property
    def _servers_by_subsystem(self) -> Mapping[str, ServerInfo]:
        out: dict[str, ServerInfo] = {}
        for s in self.servers.values():
            for sub in sorted(s.subsystems):
                out.setdefault(sub, s)
        return out

    @cached_property
    def services(self) -> Mapping[str, ServiceInfo]:
        return _LazyMap({s.id: s for s in self._conf.services}, _service_info)

    @cached_property
    def _agreements(self) -> Mapping[tuple[str, str], tuple[AgreementInfo, ...]]:
        groups: dict[tuple[str, str], list[registry_pb2.Agreement]] = {}
        for a in self._conf.agreements:
            key = (a.client, a.service)
            group = groups.get(key)
            if group is None:
                groups[key] = [a]
            else:
                group.append(a)
        return _LazyMap(groups, _agreement_infos)

    @cached_property
    def purposes(self) -> Mapping[str, registry_pb2.Purpose]:
        return {p.code: p for p in self._conf.purposes}

    @cached_property
    def agreements(self) -> tuple[AgreementInfo, ...]:
        return tuple(a for group in self._agreements.values() for a in group)

    def agreements_for(self, client: str, service: str) -> tuple[AgreementInfo, ...]:
        """Agreements that let ``client`` call ``service`` (any purpose)."""
        return self._agreements.get((client, service), ())

    def server_for_subsystem(self, subsystem: str) -> ServerInfo | None:
        """The security server hosting ``subsystem`` (first by id when several do)."""
        return self._servers_by_subsystem.get(subsystem)

    def server_by_fingerprint(self, fingerprint: str) -> ServerInfo | None:
        return self._servers_by_fingerprint.get(fingerprint)

    def is_revoked(self, fingerprint: str, serial: int | None = None) -> bool:
        return fingerprint in self.revoked_fingerprints or (
            serial is not None and serial in self.revoked_serials
        )

    def age(self, now: datetime) -> timedelta:
        return now - self.issued_at

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def check_fresh(self, now: datetime) -> None:
        """Raise ``ConfExpiredError`` once the configuration has expired (fail closed)."""
        if self.expired(now):
            raise errors.ConfExpiredError()

    @property
    def proto(self) -> registry_pb2.GlobalConf:
        """The verified message (for mappers and display; treat as read-only)."""
        return self._conf


def sign_global_conf(conf: registry_pb2.GlobalConf, signer: crypto.Signer) -> bytes:
    """Serialize and sign a configuration; returns the ``SignedGlobalConf`` bytes."""
    body = conf.SerializeToString(deterministic=True)
    signed = registry_pb2.SignedGlobalConf(
        conf=body, signature=signer.sign(SIGNING_CONTEXT + body), key_id=signer.key_id
    )
    out: bytes = signed.SerializeToString()
    return out


def verify_global_conf(
    raw: bytes,
    anchor: Anchor,
    now: datetime,
    *,
    last: VerifiedGlobalConf | None = None,
    allow_expired: bool = False,
) -> VerifiedGlobalConf:
    """Verify signed configuration bytes against ``anchor`` at time ``now``.

    ``last`` is the configuration accepted before, if any: a lower version is a rollback, and
    the same version with other content is refused too. ``allow_expired`` skips only the
    expiry check: a server reloading its last good copy from disk keeps an expired copy (to
    know the version floor and to report its age) but must not serve from it.

    Raises:
        LimitExceededError: the bytes exceed ``MAX_CONF_BYTES``.
        MalformedError: the bytes are not a signed configuration.
        ConfSignatureError: not signed by the anchor's registry key.
        ConfWrongInstanceError: the configuration belongs to another instance.
        ConfRollbackError: older than (or conflicting with) ``last``.
        ConfExpiredError: expired at ``now``.
    """
    if len(raw) > MAX_CONF_BYTES:
        raise errors.LimitExceededError("global configuration too large")
    try:
        signed = registry_pb2.SignedGlobalConf.FromString(raw)
    except DecodeError as exc:
        raise errors.MalformedError("not a signed global configuration") from exc
    try:
        crypto.verify(anchor.public_key, signed.signature, SIGNING_CONTEXT + signed.conf)
    except errors.SignatureError as exc:
        raise errors.ConfSignatureError() from exc
    try:
        conf = registry_pb2.GlobalConf.FromString(signed.conf)
    except DecodeError as exc:
        raise errors.MalformedError("signed global configuration does not parse") from exc
    if conf.instance != anchor.instance:
        raise errors.ConfWrongInstanceError()
    if last is not None:
        if conf.version < last.version:
            raise errors.ConfRollbackError()
        if conf.version == last.version and raw != last.raw:
            raise errors.ConfRollbackError("same version with different content")
    verified = VerifiedGlobalConf(conf, raw, anchor.key_id)
    if not allow_expired:
        verified.check_fresh(now)
    return verified


def subsystems_of(conf: VerifiedGlobalConf, member: str) -> Iterable[str]:
    """Subsystem ids registered for ``member``."""
    m = conf.members.get(member)
    return [f"{member}:{code}" for code in m.subsystems] if m else []
