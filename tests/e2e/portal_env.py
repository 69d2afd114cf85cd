"""A whole instance with the portal in front, for the browser tests.

Built from the integration harnesses: ``consent_env.start_consent_env`` (registry, three agencies
with security servers and sample backends, consent service, development IdP), plus what it does
not start: the audit log (keys anchored in global configuration, witness quorum 2 of 3), every
security server shipping its records to it and witnessing its checkpoints, and the portal itself
(HTTPS with a registry-issued certificate, Secure cookies, real gRPC clients with its own
``urn:cdx:service:portal`` identity and its own global-configuration client).

``play_demo_scenario`` is the demo's story: the social insurance agency asks a citizen for consent
to read her income from the tax department, she approves, and the agency queries the tax service
(on her consent) and the population register (on a legal obligation).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from audit.client import AuditClient
from audit.server import RunningAudit, init_audit_keys, start_audit_service
from audit.witness import Witness
from cdx import crypto, db, pki, rpc
from cdx.confclient import ConfClient
from cdx.jwks import TokenVerifier
from cdx.tokens import citizen_audience
from cdx.v1 import consent_pb2, exchange_pb2
from consent.checker import CachedConsentChecker
from consent.idp_server import portal_client, serve_dev_provider
from portal.config import PortalConfig, derive_session_key
from portal.grpc_clients import GrpcAuditClient, GrpcConsentClient
from portal.identity import OidcIdentity
from portal.server import RunningPortal, start_portal
from portal.sessions import SqlSessionStore
from security_server import keystore
from tests.integration.consent_env import (
    CONSENT_PURPOSE,
    SOCIAL,
    SOCIAL_SUBSYSTEM,
    TAX_SERVICE,
    ConsentEnv,
    bearer,
    start_consent_env,
    terms,
)
from tests.integration.exchange_harness import ADMIN

ORIGIN = "vn.cdx.test/audit"
POPULATION_SERVICE = "VN:GOV:BCA:population/person/v1"
CITIZEN_A = "079090000001"  # Nguyễn Văn An: tax and population records
CITIZEN_B = "079090000002"  # Trần Thị Bình: never accessed in the scenario


def _pem(key: crypto.PrivateSigningKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _service_identity(
    env: ConsentEnv, name: str
) -> tuple[rpc.TlsIdentity, crypto.PrivateSigningKey]:
    key = crypto.generate_signing_key("ecdsa-p256")
    issued = env.instance.registry.service.issue_client_certificate(
        pki.build_csr(key, name),
        "service",
        name,
        ADMIN,
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
    )
    return rpc.TlsIdentity(issued.cert_pem, _pem(key), issued.ca_pem), key


@dataclass
class PortalEnv:
    consent_env: ConsentEnv
    audit: RunningAudit
    portal: RunningPortal
    ca_pem: bytes = field(repr=False)
    _cleanup: list[Callable[[], Any]] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        return self.portal.url

    def token(self, citizen: str) -> str:
        return self.consent_env.token(citizen)

    def query(
        self,
        agency: str,
        service: str,
        subject: str,
        fields: list[str],
        *,
        purpose: str = CONSENT_PURPOSE,
        consent_id: str = "",
    ) -> exchange_pb2.QueryResponse:
        """``Gateway.Query`` as an agency's information system; raises its ``CdxError``."""
        return self.consent_env.instance.agency(agency).query(
            service, subject, purpose, fields, consent_id=consent_id
        )

    def close(self) -> None:
        for fn in reversed(self._cleanup):
            with contextlib.suppress(Exception):
                fn()


def start_portal_env(root: Path, *, quorum: int = 2) -> PortalEnv:
    env = start_consent_env(root)
    cleanup: list[Callable[[], Any]] = [env.close]
    try:
        instance = env.instance
        registry = instance.registry.service
        passphrase = instance.registry.paths.passphrase()

        # The audit log, anchored in global configuration.
        keys = init_audit_keys(root / "audit", passphrase, ORIGIN)
        audit_identity, _ = _service_identity(env, "audit")
        registry.set_trust_anchors(
            audit_log_origin=ORIGIN,
            audit_log_key=keys.log_verifier_key,
            audit_service_key_der=keys.record_public_der,
            witness_quorum=quorum,
            actor=ADMIN,
        )
        env.refresh_conf()
        audit = start_audit_service(
            db.create_engine(db.sqlite_url(root / "audit" / "audit.db")),
            audit_identity,
            log_signer=keys.log_signer,
            record_signer=keys.record_signer,
            master_key=keys.master_key,
            conf=env.conf_client.current,
            checkpoint_interval=0.3,
            # The audit service's default audience ("cdx") differs from the one the development
            # IdP issues and the consent service expects; align it explicitly.
            token_audience=citizen_audience("VN"),
        )
        cleanup.append(lambda: audit.stop(0))
        registry.set_trust_anchors(audit_log_address=audit.address, actor=ADMIN)
        env.refresh_conf()

        # Security servers: consent from the consent service, records to the log; witnesses.
        for key, agency in instance.agencies.items():
            server_keys = keystore.load_keys(agency.data_dir, agency.server_id, passphrase)
            checker = CachedConsentChecker(env.consent.address, server_keys.tls)
            env.checkers[key] = checker
            agency.consent_checker = checker
            shipper = AuditClient(audit.address, server_keys.tls)
            agency.audit_shipper = shipper
            cleanup.append(shipper.close)
            agency.start()
            witness = Witness(
                agency.server_id,
                server_keys.witness_key,
                AuditClient(audit.address, server_keys.tls),
                env.conf_client.current,
                root / "witness" / f"{key}.json",
                interval=0.2,
            )
            (root / "witness").mkdir(exist_ok=True)
            witness.start()
            cleanup.append(witness.stop)
        for checker in env.checkers.values():
            assert checker.wait_connected(5), "consent change feed did not connect"

        # The portal: its own identity and configuration client, HTTPS, Secure cookies.
        portal_identity, _ = _service_identity(env, "portal")
        conf = ConfClient(
            instance.registry.address,
            portal_identity,
            instance.registry.paths.load_anchor(),
            root / "portal" / "globalconf.bin",
            poll_interval=timedelta(seconds=1),
        )
        conf.refresh()
        conf.start()
        cleanup.append(conf.stop)
        consent_client = GrpcConsentClient(
            lambda: conf.current().consent_service_address, portal_identity
        )
        audit_client = GrpcAuditClient(lambda: conf.current().audit_log_address, portal_identity)
        cleanup += [consent_client.close, audit_client.close]
        web_key = crypto.generate_signing_key("ecdsa-p256")
        issued = registry.issue_client_certificate(
            pki.build_csr(web_key, "portal-web"),
            "service",
            "portal-web",
            ADMIN,
            dns_names=["localhost"],
            ip_addresses=["127.0.0.1"],
        )
        (root / "portal").mkdir(exist_ok=True)
        cert_file, key_file = root / "portal" / "https.pem", root / "portal" / "https.key"
        cert_file.write_bytes(issued.cert_pem)
        key_file.write_bytes(_pem(web_key, passphrase))
        os.chmod(key_file, 0o600)
        sessions = SqlSessionStore.open(db.sqlite_url(root / "portal" / "portal.db"))
        cleanup.append(sessions.close)
        portal = start_portal(
            PortalConfig(session_key=derive_session_key(passphrase), default_language="en"),
            consent_client,
            audit_client,
            OidcIdentity(conf, TokenVerifier()),
            conf,
            tls_cert=str(cert_file),
            tls_key=str(key_file),
            tls_key_password=passphrase.decode(),
            sessions=sessions,
        )
        cleanup.append(portal.stop)
        # Users log in through the development OpenID provider, anchored by its URL (the static
        # key stays anchored for the scripted scenario's tokens).
        provider, provider_web = serve_dev_provider(
            env.idp, conf.current, [portal_client(portal.url)]
        )
        cleanup.append(provider_web.stop)
        registry.set_trust_anchors(
            identity_providers=[env.idp.registration(), provider.registration()], actor=ADMIN
        )
        env.refresh_conf()
        conf.refresh()
        return PortalEnv(env, audit, portal, issued.ca_pem, cleanup)
    except BaseException:
        for fn in reversed(cleanup):
            with contextlib.suppress(Exception):
                fn()
        raise


@dataclass(frozen=True)
class Scenario:
    consent_id: str
    pending_id: str
    record_ids: tuple[str, ...]  # both sides of both exchanges


def play_demo_scenario(penv: PortalEnv, citizen: str = CITIZEN_A) -> Scenario:
    """The social insurance agency checks a citizen's eligibility for a benefit."""
    env = penv.consent_env
    agency_api = env.agency_api(env.server_identity(SOCIAL))
    requested = agency_api.RequestConsent(
        consent_pb2.RequestConsentRequest(
            requester=SOCIAL_SUBSYSTEM,
            terms=terms(citizen, fields=("annual_income", "tax_year")),
        ),
        timeout=10,
    )
    approved = env.citizen().Approve(
        consent_pb2.ConsentActionRequest(consent_id=requested.id),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )
    assert approved.state == consent_pb2.ACTIVE
    pending = agency_api.RequestConsent(  # a second request, left for the citizen to answer
        consent_pb2.RequestConsentRequest(
            requester=SOCIAL_SUBSYSTEM,
            terms=terms(citizen, fields=("annual_income",), valid_for=timedelta(days=90)),
        ),
        timeout=10,
    )
    income = penv.query(
        SOCIAL, TAX_SERVICE, citizen, ["annual_income", "tax_year"], consent_id=approved.id
    )
    person = penv.query(SOCIAL, POPULATION_SERVICE, citizen, ["full_name", "birth_date"])
    records = (
        income.record_id,
        income.provider_record_id,
        person.record_id,
        person.provider_record_id,
    )
    return Scenario(approved.id, pending.id, records)
