"""A small trust world for the audit log's integration tests, without a running registry.

``AuditWorld`` holds an instance CA, two security servers (real auth and signing certificates,
witness keys), the audit service's, the portal's and an inspector's certificates, a development
identity provider, and a global configuration signed by a registry key and verified against
its anchor like any server would. ``start(engine)`` runs a real audit service (gRPC, mutual TLS)
on it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy.engine import Engine

from audit.client import AuditClient
from audit.server import AuditKeys, RunningAudit, start_audit_service
from cdx import crypto, pki, records, rpc, tokens
from cdx.clock import utcnow
from cdx.globalconf import (
    Anchor,
    VerifiedGlobalConf,
    sign_global_conf,
    to_ms,
    verify_global_conf,
)
from cdx.ids import SecurityServerId
from cdx.note import NoteSigner
from cdx.v1 import audit_pb2, common_pb2, registry_pb2
from security_server.records import Decision, build_record

ORIGIN = "cdx.test/audit"
ISSUER = "https://idp.test"
AUDIENCE = "urn:cdx:VN"  # cdx.tokens.citizen_audience("VN"), what the audit log expects
CONSUMER = "VN:GOV:VSS:ss1"
PROVIDER = "VN:GOV:BCA:ss1"
CITIZEN_A = "001085012345"
CITIZEN_B = "079190000777"


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Server:
    id: str
    tls: rpc.TlsIdentity = field(repr=False)
    signer: crypto.KeySigner
    signing_cert: bytes = field(repr=False)
    witness_key: ed25519.Ed25519PrivateKey = field(repr=False)


class AuditWorld:
    """CA, certificates, keys and a signed global configuration for the audit tests."""

    def __init__(self, *, quorum: int = 1, servers: tuple[str, ...] = (CONSUMER, PROVIDER)) -> None:
        now = utcnow()
        self.ca_key, self.ca_cert = pki.create_ca("VN", now)
        self.ca_pem = pki.cert_to_pem(self.ca_cert)
        self.registry = crypto.KeySigner(crypto.generate_signing_key())
        self.anchor = Anchor("VN", self.registry.public_key())
        self.servers = {sid: self._server(sid) for sid in servers}
        self.audit_tls = self._service_identity("audit", ip=True)
        self.portal_tls = self._service_identity("portal")
        self.inspector_tls = self._client_identity("urn:cdx:inspector:dpa-alice", "dpa-alice")
        self.stranger_tls = self._client_identity("urn:cdx:admin:bob", "bob")
        self.keys = AuditKeys(
            log_signer=NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate()),
            record_signer=crypto.KeySigner(crypto.generate_signing_key()),
            master_key=crypto.generate_hpke_key(),
        )
        self.idp_key = ed25519.Ed25519PrivateKey.generate()
        self.quorum = quorum
        self.audit_address = ""
        self.version = 0
        self._conf: VerifiedGlobalConf | None = None
        self.publish()

    # --- identities ----------------------------------------------------------------------------

    def _server(self, server_id: str) -> Server:
        sid = SecurityServerId.parse(server_id)
        now = utcnow()
        auth_key = crypto.generate_signing_key()
        auth = pki.issue_auth_certificate(
            self.ca_key,
            self.ca_cert,
            pki.build_csr(auth_key, "auth"),
            sid,
            now,
            ip_addresses=["127.0.0.1"],
        )
        signing_key = crypto.generate_signing_key()
        signing = pki.issue_signing_certificate(
            self.ca_key, self.ca_cert, pki.build_csr(signing_key, "signing"), sid, now
        )
        return Server(
            server_id,
            rpc.TlsIdentity(pki.cert_to_pem(auth), _pem(auth_key), self.ca_pem),  # type: ignore[arg-type]
            crypto.KeySigner(signing_key),
            signing.public_bytes(serialization.Encoding.DER),
            ed25519.Ed25519PrivateKey.generate(),
        )

    def _service_identity(self, name: str, *, ip: bool = False) -> rpc.TlsIdentity:
        key = crypto.generate_signing_key()
        cert = pki.issue_service_certificate(
            self.ca_key,
            self.ca_cert,
            pki.build_csr(key, name),
            name,
            utcnow(),
            ip_addresses=["127.0.0.1"] if ip else (),
        )
        return rpc.TlsIdentity(pki.cert_to_pem(cert), _pem(key), self.ca_pem)  # type: ignore[arg-type]

    def _client_identity(self, uri: str, name: str) -> rpc.TlsIdentity:
        key = crypto.generate_signing_key()
        cert = pki.issue_client_certificate(
            self.ca_key, self.ca_cert, pki.build_csr(key, name), name, uri, utcnow()
        )
        return rpc.TlsIdentity(pki.cert_to_pem(cert), _pem(key), self.ca_pem)  # type: ignore[arg-type]

    # --- global configuration -----------------------------------------------------------------

    def publish(self) -> VerifiedGlobalConf:
        """Sign a new version of the global configuration (valid for an hour)."""
        self.version += 1
        now = utcnow()
        conf = registry_pb2.GlobalConf(
            instance="VN",
            version=self.version,
            issued_at_ms=to_ms(now),
            expires_at_ms=to_ms(now + timedelta(hours=1)),
        )
        for s in self.servers.values():
            auth_cert = pki.cert_from_pem(s.tls.cert_pem)
            conf.servers.append(
                registry_pb2.SecurityServer(
                    id=s.id,
                    address="127.0.0.1:1",
                    auth_cert=auth_cert.public_bytes(serialization.Encoding.DER),
                    signing_cert=s.signing_cert,
                    hpke_public_key=crypto.raw_x25519_public(
                        crypto.generate_hpke_key().public_key()
                    ),
                    subsystems=[s.id.rsplit(":", 1)[0] + ":sub"],
                    auth_cert_fingerprint=pki.fingerprint(auth_cert),
                    signing_key_id=s.signer.key_id,
                    witness_public_key=s.witness_key.public_key().public_bytes_raw(),
                )
            )
        conf.anchors.CopyFrom(
            registry_pb2.TrustAnchors(
                ca_cert=self.ca_cert.public_bytes(serialization.Encoding.DER),
                audit_log_origin=self.keys.log_signer.name,
                audit_log_key=self.keys.log_verifier_key,
                audit_log_address=self.audit_address,
                audit_service_key=self.keys.record_public_der,
                witness_quorum=self.quorum,
                identity_providers=[
                    registry_pb2.IdentityProvider(
                        issuer=ISSUER,
                        public_key=crypto.public_key_to_der(self.idp_key.public_key()),
                        development=True,
                    )
                ],
            )
        )
        raw = sign_global_conf(conf, self.registry)
        self._conf = verify_global_conf(raw, self.anchor, now)
        return self._conf

    def conf(self) -> VerifiedGlobalConf:
        assert self._conf is not None
        return self._conf

    def add_server(self, server_id: str) -> Server:
        self.servers[server_id] = self._server(server_id)
        self.publish()
        return self.servers[server_id]

    # --- tokens and records -------------------------------------------------------------------

    def token(self, subject: str, role: str = "citizen") -> str:
        return tokens.issue_token(
            self.idp_key,
            ISSUER,
            subject,
            role,
            AUDIENCE,
            utcnow(),
            timedelta(minutes=10),  # type: ignore[arg-type]
        )

    def item(
        self,
        server_id: str,
        subject: str = CITIZEN_A,
        *,
        role: int | None = None,
        message_id: str | None = None,
        allowed: bool = True,
        sealed: bool = False,
        time_ms: int | None = None,
    ) -> audit_pb2.OutboxItem:
        """A signed access record with its opening, as a security server's outbox holds it."""
        decision = Decision(
            role=role or (common_pb2.PROVIDER if server_id == PROVIDER else common_pb2.CONSUMER),
            message_id=message_id or str(uuid.uuid4()),
            client="VN:GOV:VSS:benefits",
            service="VN:GOV:BCA:population/person/v1",
            purpose="SOCIAL_BENEFIT_ELIGIBILITY",
            subject=subject,
            request_value=b"request",
            response_value=b"response",
            released_fields=("full_name",),
            sealed=sealed,
            verified=True,
        )
        decision.set_lawful_basis("LEGAL_OBLIGATION")
        now = utcnow()
        record, opening = build_record(
            decision, recorder=server_id, allowed=allowed, reason_code="no_agreement", now=now
        )
        if time_ms is not None:
            record.time_ms = time_ms
        return audit_pb2.OutboxItem(
            record=records.sign_access_record(record, self.servers[server_id].signer),
            opening=opening,
        )

    def exchange(self, subject: str = CITIZEN_A, **kw: object) -> list[audit_pb2.OutboxItem]:
        """Both sides' items of one message."""
        mid = str(uuid.uuid4())
        return [
            self.item(CONSUMER, subject, message_id=mid, **kw),  # type: ignore[arg-type]
            self.item(PROVIDER, subject, message_id=mid, **kw),  # type: ignore[arg-type]
        ]

    # --- running ------------------------------------------------------------------------------

    def start(self, engine: object, **kw: object) -> RunningAudit:
        running = start_audit_service(
            engine,  # type: ignore[arg-type]
            self.audit_tls,
            log_signer=self.keys.log_signer,
            record_signer=self.keys.record_signer,
            master_key=self.keys.master_key,
            conf=self.conf,
            **kw,  # type: ignore[arg-type]
        )
        if running.address != self.audit_address:
            self.audit_address = running.address
            self.publish()
        return running

    def client(self, who: str | rpc.TlsIdentity) -> AuditClient:
        identity = self.servers[who].tls if isinstance(who, str) else who
        return AuditClient(lambda: self.audit_address, identity)


def bypass_triggers(engine: Engine, *tables: str) -> None:
    """What a DBA with full rights could do: switch the append-only triggers off."""
    with engine.begin() as conn:
        for table in tables:
            if engine.dialect.name == "sqlite":
                for (name,) in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name=?", (table,)
                ).all():
                    conn.exec_driver_sql(f"DROP TRIGGER {name}")
            else:
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
