"""The registry's domain logic: validates admin changes, issues certificates, keeps the history,
and publishes a new signed global configuration after every change.

No gRPC here: the servicer maps requests and responses. Protobuf does appear, as the encoding of
what the registry signs and stores: the global configuration (built by ``confbuilder``) and its
trust anchors, which ``trust_anchors`` and ``set_trust_anchors`` return as the stored
``registry_pb2.TrustAnchors`` message.

Every change runs in one writer transaction that (1) locks the instance row, (2) validates and
applies the change, (3) appends a history entry (who, what, when) and (4) signs and stores the
next configuration version. So a configuration never reflects a change that did not commit,
versions are strictly increasing even with several registry replicas on one PostgreSQL
database, and no change escapes the history.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from cdx import crypto, db, errors, globalconf, note, pki, tokens
from cdx.clock import Clock, utcnow
from cdx.globalconf import IdentityProviderInfo, to_ms
from cdx.ids import MemberId, SecurityServerId, ServiceId, SubsystemId
from cdx.v1 import registry_pb2
from registry import store
from registry.confbuilder import build_conf
from registry.model import HistoryEntry, IssuedCertificate, MemberInfo, ServerCertificates

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CONF_VALIDITY = globalconf.DEFAULT_VALIDITY
DEFAULT_CERT_VALIDITY = pki.DEFAULT_LEAF_VALIDITY
LAWFUL_BASES = ("CONSENT", "LEGAL_OBLIGATION", "PUBLIC_TASK", "VITAL_INTEREST")
#: Queries per minute of a SEALED agreement registered without an explicit rate limit.
DEFAULT_SEALED_RATE_LIMIT = 60
CERTIFICATE_KINDS = ("admin", "client", "inspector", "service")

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_CATEGORY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PURPOSE = re.compile(r"[A-Z][A-Z0-9_]{1,63}")
_NAME = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_ADDRESS = re.compile(r"(?:[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})")
MAX_FIELDS = 256
MAX_TEXT = 2000
MAX_HISTORY = 1000


# --- validation helpers --------------------------------------------------------------------------


def _text(value: str, what: str, *, required: bool = True, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise errors.InvalidArgumentError(f"{what} must be 1..{limit} characters")
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise errors.InvalidArgumentError(f"{what} must not contain control characters")
    return value.strip()


def _names(
    values: Iterable[str], what: str, pattern: re.Pattern[str], *, required: bool
) -> list[str]:
    out = list(values)
    if required and not out:
        raise errors.InvalidArgumentError(f"at least one {what} is required")
    if len(out) > MAX_FIELDS:
        raise errors.LimitExceededError(f"too many {what}s (limit {MAX_FIELDS})")
    for v in out:
        if not isinstance(v, str) or not pattern.fullmatch(v):
            raise errors.InvalidArgumentError(f"invalid {what} name: {v!r}"[:120])
    if len(set(out)) != len(out):
        raise errors.InvalidArgumentError(f"duplicate {what} names")
    return out


def _address(address: str, *, unbound: bool = False) -> str:
    """``host:port``; with ``unbound``, port 0 too (a server that binds a free port when it
    starts and registers it then, see ``RegistryService.set_server_address``)."""
    m = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    lowest = 0 if unbound else 1
    if m is None or not lowest <= int(m.group(1)) <= 65535:
        raise errors.InvalidArgumentError("address must be host:port")
    return address


def _tiles_url(url: str) -> str:
    """An ``http(s)://host[:port][/path]`` prefix the log's tiles are served under."""
    parts = urlsplit(url) if isinstance(url, str) and len(url) <= MAX_TEXT else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or any(ord(c) <= 32 for c in url)
    ):
        raise errors.InvalidArgumentError("the tiles URL must be http(s)://HOST[:PORT][/PATH]")
    return url.rstrip("/")


def _actor(actor: str) -> str:
    if not isinstance(actor, str) or not actor or len(actor) > 200:
        raise errors.InvalidArgumentError("every change needs an actor (who made it)")
    return actor


def _public_key_der(data: bytes, what: str) -> bytes:
    try:
        key = crypto.as_signing_public_key(crypto.public_key_from_der(data))
    except errors.CdxError as exc:
        raise errors.InvalidArgumentError(f"{what} is not an ECDSA P-256 or Ed25519 key") from exc
    return crypto.public_key_to_der(key)


_CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def _identity_provider(p: IdentityProviderInfo) -> registry_pb2.IdentityProvider:
    """Validate an identity provider anchor: OpenID Connect (issuer URL, client id, pinned
    algorithms, claim mappings) or, for offline tests, a static key.

    Raises:
        InvalidArgumentError: a malformed issuer, key, client id, algorithm or claim name.
    """
    issuer = _text(p.issuer, "identity provider issuer", limit=300)
    audience = _text(p.audience, "client id (audience)", required=False, limit=300)
    algorithms = list(dict.fromkeys(p.algorithms))
    if p.public_key_der:
        key = _public_key_der(p.public_key_der, "identity provider key")
        if algorithms:
            raise errors.InvalidArgumentError("a static key decides its algorithm itself")
    else:
        key = b""
        tokens.check_provider_url(issuer, production=False)  # production: checked on apply
        if issuer != p.issuer:
            raise errors.InvalidArgumentError("the issuer URL must not carry spaces")
        if not audience:
            raise errors.InvalidArgumentError(
                "an OpenID Connect identity provider needs the portal's client id"
            )
        if not algorithms or any(a not in tokens.ALGORITHMS for a in algorithms):
            raise errors.InvalidArgumentError(
                "give the ID-token algorithms to accept, from "
                + ", ".join(sorted(tokens.ALGORITHMS))
            )
    for what, claim in (
        ("national id claim", p.national_id_claim),
        ("inspector claim", p.inspector_claim),
    ):
        if claim and not _CLAIM_NAME.fullmatch(claim):
            raise errors.InvalidArgumentError(f"the {what} is not a claim name")
    return globalconf.identity_provider_to_proto(
        IdentityProviderInfo(
            issuer,
            key,
            bool(p.development),
            audience,
            tuple(algorithms),
            p.national_id_claim,
            p.inspector_claim,
            _text(p.inspector_value, "inspector value", required=False, limit=200),
            _text(p.cli_client_id, "CLI client id", required=False, limit=300),
        )
    )


def _cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _ms(when: datetime) -> int:
    return to_ms(when)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# --- the service ---------------------------------------------------------------------------------


class RegistryService:
    """The registry of one instance over one database.

    ``signer`` signs global configurations (its public key is the anchor); ``ca_key`` and
    ``ca_cert`` issue every certificate; ``now_fn`` is the only clock.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        instance: str,
        signer: crypto.Signer,
        ca_key: ec.EllipticCurvePrivateKey,
        ca_cert: x509.Certificate,
        now_fn: Clock = utcnow,
        conf_validity: timedelta = DEFAULT_CONF_VALIDITY,
        cert_validity: timedelta = DEFAULT_CERT_VALIDITY,
    ) -> None:
        if conf_validity <= timedelta(0):
            raise errors.InvalidArgumentError("conf validity must be positive")
        self._engine = engine
        self._writer = db.writer(engine)
        self.instance = instance
        self._signer = signer
        self._ca_key = ca_key
        self._ca_cert = ca_cert
        self.ca_pem = pki.cert_to_pem(ca_cert)
        self._ca_der = _cert_der(ca_cert)
        self._now = now_fn
        self.conf_validity = conf_validity
        self.cert_validity = cert_validity

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def registry_key_id(self) -> str:
        return self._signer.key_id

    # --- transactions ------------------------------------------------------------------------

    def _change(
        self,
        actor: str,
        action: str,
        target: str,
        detail: dict[str, Any],
        apply: Callable[[Connection, datetime], T],
    ) -> T:
        """Apply one admin change, record it and publish the next configuration, atomically."""
        _actor(actor)
        now = self._now()
        try:
            with self._writer.begin() as conn:
                if store.lock_instance(conn) is None:
                    raise errors.FailedPreconditionError("the registry is not initialised")
                result = apply(conn, now)
                store.append_history(
                    conn,
                    at_ms=_ms(now),
                    actor=actor,
                    action=action,
                    target=target,
                    detail=json.dumps(detail, sort_keys=True, separators=(",", ":")),
                )
                self._publish(conn, now)
        except sa.exc.IntegrityError as exc:
            raise errors.AlreadyExistsError("conflicting change (object already exists)") from exc
        except sa.exc.OperationalError as exc:
            raise errors.UnavailableError("the registry database is unavailable") from exc
        log.info("registry change %s on %s by %s", action, target, actor)
        return result

    def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self._engine.connect() as conn:
                return fn(conn)
        except sa.exc.OperationalError as exc:
            raise errors.UnavailableError("the registry database is unavailable") from exc

    # --- instance ----------------------------------------------------------------------------

    def initialise(self, actor: str) -> int:
        """Create the instance row, record it and publish configuration version 1.

        Raises:
            AlreadyExistsError: this database already holds an instance.
        """
        _actor(actor)
        now = self._now()
        with self._writer.begin() as conn:
            if store.get_instance(conn) is not None:
                raise errors.AlreadyExistsError("this database already holds a registry instance")
            store.insert_instance(conn, self.instance, self._signer.key_id, _ms(now))
            store.append_history(
                conn,
                at_ms=_ms(now),
                actor=actor,
                action="instance.init",
                target=self.instance,
                detail=json.dumps({"registry_key_id": self._signer.key_id}, separators=(",", ":")),
            )
            return self._publish(conn, now).version

    def check_instance(self) -> None:
        """Refuse to run over a database of another instance or registry key.

        Raises:
            FailedPreconditionError: not initialised, or initialised for another instance/key.
        """
        row = self._read(store.get_instance)
        if row is None:
            raise errors.FailedPreconditionError("the registry database is not initialised")
        if row.instance != self.instance or row.registry_key_id != self._signer.key_id:
            raise errors.FailedPreconditionError(
                "the registry database belongs to another instance or registry key"
            )

    # --- members and subsystems ----------------------------------------------------------------

    def _member(self, member_id: str) -> MemberId:
        member = MemberId.parse(member_id)
        if member.instance != self.instance:
            raise errors.InvalidArgumentError(f"identifier is not of instance {self.instance}")
        return member

    def add_member(self, member_id: str, name: str, actor: str) -> None:
        """Register a member organisation (``INSTANCE:CLASS:MEMBER``).

        Raises:
            InvalidIdentifierError / InvalidArgumentError: bad id or name.
            AlreadyExistsError: the member is already registered.
        """
        member = self._member(member_id)
        name = _text(name, "member name", limit=200)

        def apply(conn: Connection, now: datetime) -> None:
            if store.exists(conn, store.members, "id", str(member)):
                raise errors.AlreadyExistsError(f"member {member} already exists")
            conn.execute(
                store.members.insert().values(id=str(member), name=name, created_at_ms=_ms(now))
            )

        self._change(actor, "member.add", str(member), {"name": name}, apply)

    def add_subsystem(self, subsystem_id: str, actor: str) -> None:
        """Register a subsystem (an information system) of an existing member.

        Raises:
            InvalidIdentifierError: bad id.
            NotFoundError: the member is not registered.
            AlreadyExistsError: the subsystem is already registered.
        """
        sub = SubsystemId.parse(subsystem_id)
        self._member(str(sub.member))

        def apply(conn: Connection, now: datetime) -> None:
            if not store.exists(conn, store.members, "id", str(sub.member)):
                raise errors.NotFoundError(f"member {sub.member} is not registered")
            if store.exists(conn, store.subsystems, "id", str(sub)):
                raise errors.AlreadyExistsError(f"subsystem {sub} already exists")
            conn.execute(
                store.subsystems.insert().values(
                    id=str(sub), member_id=str(sub.member), code=sub.code, created_at_ms=_ms(now)
                )
            )

        self._change(actor, "subsystem.add", str(sub), {}, apply)

    def get_member(self, member_id: str) -> MemberInfo:
        """A registered member with its subsystem codes.

        Raises:
            NotFoundError: the member is not registered.
        """
        member = str(self._member(member_id))

        def read(conn: Connection) -> MemberInfo:
            row = conn.execute(sa.select(store.members).where(store.members.c.id == member)).first()
            if row is None:
                raise errors.NotFoundError(f"member {member} is not registered")
            codes = conn.execute(
                sa.select(store.subsystems.c.code)
                .where(store.subsystems.c.member_id == member)
                .order_by(store.subsystems.c.code)
            ).scalars()
            return MemberInfo(row.id, row.name, tuple(codes))

        return self._read(read)

    # --- security servers ----------------------------------------------------------------------

    def register_server(
        self,
        server_id: str,
        address: str,
        auth_csr_pem: bytes,
        signing_csr_pem: bytes,
        hpke_public_raw: bytes,
        subsystems: Sequence[str],
        actor: str,
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        witness_public_raw: bytes = b"",
        *,
        unbound: bool = False,
    ) -> ServerCertificates:
        """Register a security server from its CSRs; returns its auth and signing certificates.

        The CA decides every name in the certificates: of each CSR only the self-signed public
        key is used. A revoked server may register again (with new keys); a live one may not.
        With ``unbound`` the address may name port 0: the server binds a free port when it
        starts and its operator registers that with ``set_server_address`` (peers cannot reach
        it until then).

        Raises:
            InvalidIdentifierError / InvalidArgumentError: bad id, address, keys or names.
            MalformedError / SignatureError / UnknownKeyError: a bad CSR.
            NotFoundError: the member or a subsystem is not registered.
            AlreadyExistsError: the server is registered and not revoked.
        """
        sid = SecurityServerId.parse(server_id)
        self._member(str(sid.member))
        address = _address(address, unbound=unbound)
        crypto.x25519_public_from_raw(hpke_public_raw)  # MalformedError unless 32 bytes
        if witness_public_raw:
            try:
                ed25519.Ed25519PublicKey.from_public_bytes(witness_public_raw)
            except ValueError as exc:
                raise errors.MalformedError("the witness key is not a raw Ed25519 key") from exc
        subs = sorted({str(SubsystemId.parse(s)) for s in subsystems})
        for s in subs:
            if SubsystemId.parse(s).member != sid.member:
                raise errors.InvalidArgumentError(f"subsystem {s} is not of member {sid.member}")
        auth_key = pki.load_csr(auth_csr_pem).public_key()
        signing_key = pki.load_csr(signing_csr_pem).public_key()
        auth_key_id = crypto.key_id(crypto.as_signing_public_key(auth_key))
        signing_key_id = crypto.key_id(crypto.as_signing_public_key(signing_key))
        if auth_key_id == signing_key_id:
            raise errors.InvalidArgumentError("the auth and signing keys must differ")

        def apply(conn: Connection, now: datetime) -> ServerCertificates:
            if not store.exists(conn, store.members, "id", str(sid.member)):
                raise errors.NotFoundError(f"member {sid.member} is not registered")
            for s in subs:
                if not store.exists(conn, store.subsystems, "id", s):
                    raise errors.NotFoundError(f"subsystem {s} is not registered")
            existing = store.get_server(conn, str(sid))
            if existing is not None and not existing.revoked:
                raise errors.AlreadyExistsError(f"server {sid} is already registered")
            auth = pki.issue_auth_certificate(
                self._ca_key,
                self._ca_cert,
                auth_csr_pem,
                sid,
                now,
                validity=self.cert_validity,
                dns_names=dns_names,
                ip_addresses=ip_addresses,
            )
            signing = pki.issue_signing_certificate(
                self._ca_key, self._ca_cert, signing_csr_pem, sid, now, validity=self.cert_validity
            )
            for cert, kind in ((auth, "auth"), (signing, "signing")):
                store.record_certificate(
                    conn,
                    fingerprint=pki.fingerprint(cert),
                    serial=cert.serial_number,
                    kind=kind,
                    subject=str(sid),
                    not_after_ms=_ms(cert.not_valid_after_utc),
                    issued_at_ms=_ms(now),
                )
            values = {
                "member_id": str(sid.member),
                "address": address,
                "auth_cert": _cert_der(auth),
                "signing_cert": _cert_der(signing),
                "auth_fingerprint": pki.fingerprint(auth),
                "signing_key_id": signing_key_id,
                "hpke_public_key": hpke_public_raw,
                "witness_public_key": witness_public_raw,
                "subsystems": store.dumps(subs),
                "revoked": False,
                "registered_at_ms": _ms(now),
            }
            if existing is None:
                conn.execute(store.servers.insert().values(id=str(sid), **values))
            else:
                conn.execute(
                    store.servers.update().where(store.servers.c.id == str(sid)).values(**values)
                )
            return ServerCertificates(pki.cert_to_pem(auth), pki.cert_to_pem(signing), self.ca_pem)

        detail = {"address": address, "subsystems": subs, "signing_key_id": signing_key_id}
        return self._change(actor, "server.register", str(sid), detail, apply)

    def set_server_address(self, server_id: str, address: str, actor: str) -> None:
        """Register where a live security server now listens (it moved, or it bound a port
        of its own choosing when it started).

        Raises:
            InvalidArgumentError: ``address`` is not ``host:port``.
            NotFoundError: the server is not registered.
            FailedPreconditionError: it is revoked.
        """
        sid = SecurityServerId.parse(server_id)
        address = _address(address)

        def apply(conn: Connection, now: datetime) -> None:
            row = store.get_server(conn, str(sid))
            if row is None:
                raise errors.NotFoundError(f"server {sid} is not registered")
            if row.revoked:
                raise errors.FailedPreconditionError(f"server {sid} is revoked")
            conn.execute(
                store.servers.update().where(store.servers.c.id == str(sid)).values(address=address)
            )

        self._change(actor, "server.address", str(sid), {"address": address}, apply)

    def revoke_server(self, server_id: str, reason: str, actor: str) -> None:
        """Revoke a server's auth and signing certificates and drop it from the configuration.

        Raises:
            ReasonRequiredError: no reason given.
            NotFoundError: the server is not registered.
            FailedPreconditionError: it is already revoked.
        """
        sid = SecurityServerId.parse(server_id)
        if not isinstance(reason, str) or not reason.strip():
            raise errors.ReasonRequiredError("revoking a server needs a reason")
        reason = _text(reason, "reason", limit=500)

        def apply(conn: Connection, now: datetime) -> None:
            row = store.get_server(conn, str(sid))
            if row is None:
                raise errors.NotFoundError(f"server {sid} is not registered")
            if row.revoked:
                raise errors.FailedPreconditionError(f"server {sid} is already revoked")
            signing_fp = pki.fingerprint(x509.load_der_x509_certificate(bytes(row.signing_cert)))
            store.revoke_certificates(conn, [row.auth_fingerprint, signing_fp], reason, _ms(now))
            conn.execute(
                store.servers.update().where(store.servers.c.id == str(sid)).values(revoked=True)
            )

        self._change(actor, "server.revoke", str(sid), {"reason": reason}, apply)

    def revoke_certificate(self, fingerprint: str, reason: str, actor: str) -> None:
        """Revoke any certificate this registry issued (e.g. a lost admin certificate).

        Raises:
            ReasonRequiredError: no reason given.
            NotFoundError: no certificate with this fingerprint was issued here.
        """
        fp = fingerprint.lower() if isinstance(fingerprint, str) else ""
        if not re.fullmatch(r"[0-9a-f]{64}", fp):
            raise errors.InvalidArgumentError("a fingerprint is 64 hex characters")
        if not isinstance(reason, str) or not reason.strip():
            raise errors.ReasonRequiredError("revoking a certificate needs a reason")
        reason = _text(reason, "reason", limit=500)

        def apply(conn: Connection, now: datetime) -> None:
            if not store.exists(conn, store.certificates, "fingerprint", fp):
                raise errors.NotFoundError("no certificate with this fingerprint was issued")
            store.revoke_certificates(conn, [fp], reason, _ms(now))

        self._change(actor, "certificate.revoke", fp, {"reason": reason}, apply)

    def is_certificate_revoked(self, fingerprint: str) -> bool:
        return bool(self._read(lambda conn: store.is_revoked(conn, fingerprint)))

    # --- services, purposes, agreements --------------------------------------------------------

    def add_service(
        self,
        service_id: str,
        fields: Sequence[str],
        data_categories: Sequence[str],
        description: str,
        actor: str,
    ) -> None:
        """Publish a service of an existing subsystem with its field list and data categories.

        Raises:
            InvalidIdentifierError / InvalidArgumentError: bad id, fields or categories.
            NotFoundError: the subsystem is not registered.
            AlreadyExistsError: the service is already published.
        """
        svc = ServiceId.parse(service_id)
        self._member(str(svc.subsystem.member))
        field_list = _names(fields, "field", _FIELD, required=True)
        categories = _names(data_categories, "data category", _CATEGORY, required=False)
        description = _text(description, "description", required=False)

        def apply(conn: Connection, now: datetime) -> None:
            if not store.exists(conn, store.subsystems, "id", str(svc.subsystem)):
                raise errors.NotFoundError(f"subsystem {svc.subsystem} is not registered")
            if store.exists(conn, store.services, "id", str(svc)):
                raise errors.AlreadyExistsError(f"service {svc} already exists")
            conn.execute(
                store.services.insert().values(
                    id=str(svc),
                    subsystem_id=str(svc.subsystem),
                    description=description,
                    fields=store.dumps(field_list),
                    data_categories=store.dumps(categories),
                    created_at_ms=_ms(now),
                )
            )

        detail = {"fields": field_list, "data_categories": categories}
        self._change(actor, "service.add", str(svc), detail, apply)

    def add_purpose(self, code: str, description: str, description_vi: str, actor: str) -> None:
        """Add a purpose to the catalogue (e.g. ``SOCIAL_BENEFIT_ELIGIBILITY``).

        Raises:
            InvalidArgumentError: bad code or missing description.
            AlreadyExistsError: the code is already in the catalogue.
        """
        if not isinstance(code, str) or not _PURPOSE.fullmatch(code):
            raise errors.InvalidArgumentError(
                "a purpose code is 2..64 of A-Z 0-9 _ (e.g. TAX_AUDIT)"
            )
        description = _text(description, "description")
        description_vi = _text(description_vi, "Vietnamese description", required=False)

        def apply(conn: Connection, now: datetime) -> None:
            if store.exists(conn, store.purposes, "code", code):
                raise errors.AlreadyExistsError(f"purpose {code} already exists")
            conn.execute(
                store.purposes.insert().values(
                    code=code,
                    description=description,
                    description_vi=description_vi,
                    created_at_ms=_ms(now),
                )
            )

        self._change(actor, "purpose.add", code, {}, apply)

    def add_agreement(
        self,
        client: str,
        service: str,
        purpose: str,
        lawful_basis: str,
        legal_reference: str,
        fields: Sequence[str],
        rate_limit_per_minute: int = 0,
        retention_days: int = 0,
        sealed: bool = False,
        *,
        actor: str,
    ) -> str:
        """Add an exchange agreement (client subsystem x service x purpose); returns its id.

        A SEALED agreement registered without a rate limit gets ``DEFAULT_SEALED_RATE_LIMIT``.

        Raises:
            InvalidArgumentError: unknown lawful basis, a legal mandate without a legal
                reference, fields outside the service's fields, bad limits.
            NotFoundError: the client subsystem, service or purpose does not exist.
            AlreadyExistsError: an agreement for this client, service and purpose exists.
        """
        client_id = str(SubsystemId.parse(client))
        service_id = str(ServiceId.parse(service))
        if lawful_basis not in LAWFUL_BASES:
            raise errors.InvalidArgumentError(
                f"lawful basis must be one of {', '.join(LAWFUL_BASES)}"
            )
        legal_reference = _text(legal_reference, "legal reference", required=False, limit=500)
        if lawful_basis != "CONSENT" and not legal_reference:
            raise errors.InvalidArgumentError(
                f"a {lawful_basis} agreement needs a legal reference (the law that mandates it)"
            )
        field_list = _names(fields, "field", _FIELD, required=True)
        if sealed and rate_limit_per_minute == 0:
            # Covert queries are hidden from the citizen: unbounded, they could also bury a
            # citizen's visible history and hide a fishing expedition in volume.
            rate_limit_per_minute = DEFAULT_SEALED_RATE_LIMIT
        for value, what, top in (
            (rate_limit_per_minute, "rate limit", 10_000_000),
            (retention_days, "retention days", 36_500),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise errors.InvalidArgumentError(f"{what} must be 0..{top}")
        agreement_id = "agr-" + uuid.uuid4().hex[:16]

        def apply(conn: Connection, now: datetime) -> str:
            if not store.exists(conn, store.subsystems, "id", client_id):
                raise errors.NotFoundError(f"client subsystem {client_id} is not registered")
            svc = conn.execute(
                sa.select(store.services.c.fields).where(store.services.c.id == service_id)
            ).first()
            if svc is None:
                raise errors.NotFoundError(f"service {service_id} is not published")
            if not store.exists(conn, store.purposes, "code", purpose):
                raise errors.NotFoundError(f"purpose {purpose!r} is not in the catalogue"[:120])
            outside = sorted(set(field_list) - set(store.loads(svc.fields)))
            if outside:
                raise errors.InvalidArgumentError(
                    f"fields not offered by the service: {', '.join(outside)}"
                )
            duplicate = conn.execute(
                sa.select(store.agreements.c.id).where(
                    store.agreements.c.client == client_id,
                    store.agreements.c.service == service_id,
                    store.agreements.c.purpose == purpose,
                )
            ).first()
            if duplicate is not None:
                raise errors.AlreadyExistsError(
                    f"agreement {duplicate.id} already covers this client, service and purpose"
                )
            conn.execute(
                store.agreements.insert().values(
                    id=agreement_id,
                    client=client_id,
                    service=service_id,
                    purpose=purpose,
                    lawful_basis=lawful_basis,
                    legal_reference=legal_reference,
                    fields=store.dumps(field_list),
                    rate_limit_per_minute=rate_limit_per_minute,
                    retention_days=retention_days,
                    sealed=bool(sealed),
                    created_at_ms=_ms(now),
                )
            )
            return agreement_id

        detail = {
            "client": client_id,
            "service": service_id,
            "purpose": purpose,
            "lawful_basis": lawful_basis,
            "legal_reference": legal_reference,
            "fields": field_list,
            "rate_limit_per_minute": rate_limit_per_minute,
            "retention_days": retention_days,
            "sealed": bool(sealed),
        }
        return self._change(actor, "agreement.add", agreement_id, detail, apply)

    def remove_agreement(self, agreement_id: str, actor: str) -> None:
        """Withdraw an agreement; the next configuration no longer carries it.

        Raises:
            NotFoundError: no such agreement.
        """
        if not isinstance(agreement_id, str) or not 1 <= len(agreement_id) <= 64:
            raise errors.InvalidArgumentError("invalid agreement id")

        def apply(conn: Connection, now: datetime) -> None:
            deleted = conn.execute(
                store.agreements.delete().where(store.agreements.c.id == agreement_id)
            )
            if deleted.rowcount == 0:
                raise errors.NotFoundError(f"agreement {agreement_id} does not exist")

        self._change(actor, "agreement.remove", agreement_id, {}, apply)

    # --- trust anchors -------------------------------------------------------------------------

    def trust_anchors(self) -> registry_pb2.TrustAnchors:
        """The current trust anchors (with the CA certificate filled in)."""
        data = self._read(store.get_trust_anchors)
        anchors = (
            registry_pb2.TrustAnchors.FromString(data) if data else registry_pb2.TrustAnchors()
        )
        anchors.ca_cert = self._ca_der
        return anchors

    def set_trust_anchors(
        self,
        *,
        consent_service_key_der: bytes | None = None,
        consent_service_address: str | None = None,
        audit_log_origin: str | None = None,
        audit_log_key: str | None = None,
        audit_log_address: str | None = None,
        audit_service_key_der: bytes | None = None,
        identity_providers: Sequence[IdentityProviderInfo] | None = None,
        witness_quorum: int | None = None,
        production: bool | None = None,
        representation_authority: str | None = None,
        audit_tiles_url: str | None = None,
        actor: str,
    ) -> registry_pb2.TrustAnchors:
        """Set trust anchors; arguments left ``None`` keep their current value.

        Raises:
            InvalidArgumentError: a key that does not parse, a bad address or quorum, or a
                development identity provider in a production instance.
            NoteFormatError: ``audit_log_key`` is not a signed-note verifier key.
        """
        changes: dict[str, Any] = {}
        if consent_service_key_der is not None:
            changes["consent_service_key"] = _public_key_der(
                consent_service_key_der, "consent service key"
            )
        if audit_service_key_der is not None:
            changes["audit_service_key"] = _public_key_der(
                audit_service_key_der, "audit service key"
            )
        for name, value in (
            ("consent_service_address", consent_service_address),
            ("audit_log_address", audit_log_address),
        ):
            if value is not None:
                changes[name] = _address(value) if value else ""
        if audit_tiles_url is not None:
            changes["audit_tiles_url"] = _tiles_url(audit_tiles_url) if audit_tiles_url else ""
        if audit_log_origin is not None:
            changes["audit_log_origin"] = _text(audit_log_origin, "audit log origin", limit=200)
        if audit_log_key is not None:
            note.NoteVerifier.from_key_text(audit_log_key)  # NoteFormatError if malformed
            changes["audit_log_key"] = audit_log_key
        if witness_quorum is not None:
            if not isinstance(witness_quorum, int) or not 0 <= witness_quorum <= 100:
                raise errors.InvalidArgumentError("witness quorum must be 0..100")
            changes["witness_quorum"] = witness_quorum
        if production is not None:
            changes["production"] = bool(production)
        if representation_authority:
            # The subsystem that registers legal representatives (docs/adr/0018).
            changes["representation_authority"] = str(SubsystemId.parse(representation_authority))
        elif representation_authority is not None:
            changes["representation_authority"] = ""
        idps: list[registry_pb2.IdentityProvider] | None = None
        if identity_providers is not None:
            idps = [_identity_provider(p) for p in identity_providers]
            if len({p.issuer for p in idps}) != len(idps):
                raise errors.InvalidArgumentError("identity provider issuers must be unique")

        def apply(conn: Connection, now: datetime) -> registry_pb2.TrustAnchors:
            data = store.get_trust_anchors(conn)
            anchors = (
                registry_pb2.TrustAnchors.FromString(data) if data else registry_pb2.TrustAnchors()
            )
            for name, value in changes.items():
                setattr(anchors, name, value)
            if idps is not None:
                del anchors.identity_providers[:]
                anchors.identity_providers.extend(idps)
            if anchors.production and any(p.development for p in anchors.identity_providers):
                raise errors.InvalidArgumentError(
                    "a production instance must not trust a development identity provider"
                )
            if anchors.production and any(p.public_key for p in anchors.identity_providers):
                raise errors.InvalidArgumentError(
                    "a production instance trusts identity providers by issuer URL (OpenID "
                    "Connect), not by a static key"
                )
            for p in anchors.identity_providers:
                if not p.public_key:
                    tokens.check_provider_url(p.issuer, production=anchors.production)
            authority = changes.get("representation_authority")
            if authority and not store.exists(conn, store.subsystems, "id", authority):
                raise errors.NotFoundError(
                    "the representation authority is not a registered subsystem"
                )
            anchors.ClearField("ca_cert")
            store.put_trust_anchors(conn, anchors.SerializeToString(deterministic=True), _ms(now))
            anchors.ca_cert = self._ca_der
            return anchors

        detail: dict[str, Any] = {k: v for k, v in changes.items() if isinstance(v, str | int)}
        detail.update({k: crypto_id(v) for k, v in changes.items() if isinstance(v, bytes)})
        if idps is not None:
            detail["identity_providers"] = [p.issuer for p in idps]
        return self._change(actor, "anchors.set", self.instance, detail, apply)

    # --- certificates for admins, information systems, inspectors, components ----------------

    def issue_client_certificate(
        self,
        csr_pem: bytes,
        kind: str,
        name: str,
        actor: str,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> IssuedCertificate:
        """Issue a TLS certificate naming ``urn:cdx:<kind>:<name>``.

        ``admin``: a registry administrator; ``client``: an information system (``name`` is a
        registered subsystem id) calling its security server; ``inspector``: a data protection
        inspector; ``service``: a central component (consent, audit, portal) that both serves
        (DNS/IP SANs allowed) and calls.

        Raises:
            InvalidArgumentError: unknown kind, bad name, or DNS/IP names for a client kind.
            NotFoundError: ``client`` names an unregistered subsystem.
            MalformedError / SignatureError / UnknownKeyError: a bad CSR.
        """
        if kind not in CERTIFICATE_KINDS:
            raise errors.InvalidArgumentError(f"kind must be one of {', '.join(CERTIFICATE_KINDS)}")
        if kind == "client":
            name = str(SubsystemId.parse(name))
            self._member(str(SubsystemId.parse(name).member))
        elif not isinstance(name, str) or not _NAME.fullmatch(name):
            raise errors.InvalidArgumentError("a name is 1..64 of A-Z a-z 0-9 . _ -")
        if kind != "service" and (dns_names or ip_addresses):
            raise errors.InvalidArgumentError("only service certificates carry DNS or IP names")
        pki.load_csr(csr_pem)

        def apply(conn: Connection, now: datetime) -> IssuedCertificate:
            if kind == "client" and not store.exists(conn, store.subsystems, "id", name):
                raise errors.NotFoundError(f"subsystem {name} is not registered")
            if kind == "service":
                cert = pki.issue_service_certificate(
                    self._ca_key,
                    self._ca_cert,
                    csr_pem,
                    name,
                    now,
                    validity=self.cert_validity,
                    dns_names=dns_names,
                    ip_addresses=ip_addresses,
                )
            else:
                cert = pki.issue_client_certificate(
                    self._ca_key,
                    self._ca_cert,
                    csr_pem,
                    name[:64],
                    f"urn:cdx:{kind}:{name}",
                    now,
                    validity=self.cert_validity,
                )
            store.record_certificate(
                conn,
                fingerprint=pki.fingerprint(cert),
                serial=cert.serial_number,
                kind=kind,
                subject=name,
                not_after_ms=_ms(cert.not_valid_after_utc),
                issued_at_ms=_ms(now),
            )
            return IssuedCertificate(pki.cert_to_pem(cert), self.ca_pem)

        detail = {"kind": kind, "dns_names": list(dns_names), "ip_addresses": list(ip_addresses)}
        return self._change(actor, "certificate.issue", f"{kind}:{name}", detail, apply)

    # --- global configuration ------------------------------------------------------------------

    def _publish(self, conn: Connection, now: datetime) -> store.StoredConf:
        version = store.latest_conf_version(conn) + 1
        conf = build_conf(
            conn,
            instance=self.instance,
            version=version,
            issued_at=now,
            expires_at=now + self.conf_validity,
            ca_cert_der=self._ca_der,
        )
        raw = globalconf.sign_global_conf(conf, self._signer)
        stored = store.StoredConf(version, conf.issued_at_ms, conf.expires_at_ms, raw)
        store.insert_conf(conn, stored)
        return stored

    def refresh_conf(self) -> bool:
        """Publish a new version when the latest is older than half its validity.

        Returns whether a new version was published. Servers then always find a copy with at
        least half its validity left, so a missed poll or two never makes them fail closed.
        """
        now = self._now()
        latest = self._read(store.latest_conf)
        if latest is not None and not self._stale(latest, now):
            return False
        try:
            with self._writer.begin() as conn:
                if store.lock_instance(conn) is None:
                    raise errors.FailedPreconditionError("the registry is not initialised")
                latest = store.latest_conf(conn)  # another replica may have refreshed already
                if latest is not None and not self._stale(latest, now):
                    return False
                stored = self._publish(conn, now)
        except sa.exc.IntegrityError:
            return False  # a concurrent replica published this version first
        except sa.exc.OperationalError as exc:
            raise errors.UnavailableError("the registry database is unavailable") from exc
        log.info("published global configuration version %d (periodic)", stored.version)
        return True

    def _stale(self, latest: store.StoredConf, now: datetime) -> bool:
        age_ms = _ms(now) - latest.issued_at_ms
        return age_ms >= _ms_of(self.conf_validity) // 2 or age_ms < 0

    def _latest(self) -> store.StoredConf:
        self.refresh_conf()
        latest = self._read(store.latest_conf)
        if latest is None:  # pragma: no cover - refresh_conf always leaves one
            raise errors.UnavailableError("no global configuration published yet")
        return latest

    def current_conf(self) -> bytes:
        """The latest ``SignedGlobalConf`` bytes (refreshed first when it is getting old)."""
        return self._latest().data

    def conf_if_newer(self, version: int) -> bytes | None:
        """The latest configuration if its version is above ``version``, else ``None``."""
        latest = self._latest()
        return latest.data if latest.version > version else None

    def conf_version(self) -> int:
        return int(self._read(store.latest_conf_version))

    # --- history -------------------------------------------------------------------------------

    def history(self, limit: int = 100) -> list[HistoryEntry]:
        """The latest ``limit`` admin changes, newest first."""
        if not isinstance(limit, int) or limit <= 0:
            limit = 100
        limit = min(limit, MAX_HISTORY)
        rows = self._read(lambda conn: store.recent_history(conn, limit))
        return [
            HistoryEntry(r.seq, _dt(r.at_ms), r.actor, r.action, r.target, r.detail) for r in rows
        ]


def _ms_of(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def crypto_id(der: bytes) -> str:
    """Key id of a public key given as SPKI DER (for history details: never the key itself)."""
    return crypto.key_id(crypto.public_key_from_der(der))
