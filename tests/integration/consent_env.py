"""A consent service wired into a test instance (registry + agencies of ``exchange_harness``).

``start_consent_env(root, db_url, schema)`` builds the three-agency instance (security servers
not started unless asked), then sets up the consent service the way an operator would: its
own keys, a TLS certificate issued by the registry (``urn:cdx:service:consent``), its artefact
key and a development identity provider registered as trust anchors, a ``ConfClient`` following
the registry, and ``start_consent_service`` on loopback. With ``start_servers`` every security
server gets a ``CachedConsentChecker`` (its own auth certificate) and is started.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import crypto, db, pki, rpc
from cdx.clock import utcnow
from cdx.confclient import ConfClient
from cdx.v1 import consent_pb2, consent_pb2_grpc
from consent.checker import CachedConsentChecker
from consent.idp import DevIdentityProvider, init_dev_idp
from consent.server import RunningConsent, start_consent_service
from security_server import keystore
from tests.integration.exchange_harness import ADMIN, ExchangeInstance, OffsetClock, build_instance

SOCIAL, TAX, POPULATION = "social", "tax", "population"
CONSENT_PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"
TAX_SERVICE = "VN:GOV:GDT:income/income/v1"
SOCIAL_SUBSYSTEM = "VN:GOV:VSS:benefits"
ALICE = "079090000001"  # has a tax record
BOB = "079090000002"  # has a tax record


@dataclass
class ConsentEnv:
    instance: ExchangeInstance
    consent: RunningConsent
    conf_client: ConfClient
    idp: DevIdentityProvider
    identity: rpc.TlsIdentity = field(repr=False)
    signing_key: ed25519.Ed25519PrivateKey = field(repr=False)
    clock: OffsetClock
    checkers: dict[str, CachedConsentChecker] = field(default_factory=dict)
    tag_key: bytes = field(default=b"", repr=False)
    db_url: str = ""
    db_schema: str | None = None
    _channels: list[grpc.Channel] = field(default_factory=list, repr=False)
    _replicas: list[RunningConsent] = field(default_factory=list, repr=False)

    def start_replica(self, address: str = "127.0.0.1:0", **kw: Any) -> RunningConsent:
        """Another consent service instance over the same database and keys (scale-out)."""
        replica = start_consent_service(
            engine=db.create_engine(self.db_url, schema=self.db_schema),
            identity=self.identity,
            signer=crypto.KeySigner(self.signing_key),
            tag_key=self.tag_key,
            conf=self.conf_client.current,
            address=address,
            clock=self.clock,
            heartbeat_interval=0.5,
            **kw,
        )
        self._replicas.append(replica)
        return replica

    # --- identities ----------------------------------------------------------------------------

    def server_identity(self, key: str) -> rpc.TlsIdentity:
        agency = self.instance.agency(key)
        passphrase = self.instance.registry.paths.passphrase()
        return keystore.load_keys(agency.data_dir, agency.server_id, passphrase).tls

    def client_identity(self, key: str) -> rpc.TlsIdentity:
        return self.instance.agency(key).client_identity

    def token(self, citizen: str, *, ttl: timedelta = timedelta(minutes=10), **kw: Any) -> str:
        conf = self.conf_client.current()
        return self.idp.issue(citizen, conf=conf, now=utcnow(), ttl=ttl, **kw)

    def refresh_conf(self) -> None:
        self.conf_client.refresh()
        self.instance.sync_conf()

    # --- stubs ---------------------------------------------------------------------------------

    def channel(self, identity: rpc.TlsIdentity | None, *, public: bool = False) -> grpc.Channel:
        if public:
            assert self.consent.public_address
            ch = rpc.secure_channel(self.consent.public_address, None, self.identity.ca_pem)
        else:
            ch = rpc.secure_channel(self.consent.address, identity)
        self._channels.append(ch)
        return ch

    def citizen(
        self, identity: rpc.TlsIdentity | None = None
    ) -> consent_pb2_grpc.CitizenConsentStub:
        """Citizen API through the portal's side (mTLS) or, by default, the public port."""
        if identity is None:
            return consent_pb2_grpc.CitizenConsentStub(self.channel(None, public=True))
        return consent_pb2_grpc.CitizenConsentStub(self.channel(identity))

    def agency_api(self, identity: rpc.TlsIdentity) -> consent_pb2_grpc.AgencyConsentStub:
        return consent_pb2_grpc.AgencyConsentStub(self.channel(identity))

    def check_api(self, identity: rpc.TlsIdentity) -> consent_pb2_grpc.ConsentCheckStub:
        return consent_pb2_grpc.ConsentCheckStub(self.channel(identity))

    def close(self) -> None:
        for ch in self._channels:
            ch.close()
        for checker in self.checkers.values():
            checker.close()
        for replica in self._replicas:
            replica.stop(0)
        self.consent.stop(0)
        self.conf_client.stop()
        self.instance.close()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def terms(
    subject: str,
    *,
    grantee: str = SOCIAL_SUBSYSTEM,
    services: Sequence[str] = (TAX_SERVICE,),
    purpose: str = CONSENT_PURPOSE,
    fields: Sequence[str] = ("annual_income",),
    valid_for: timedelta = timedelta(days=30),
    valid_until: datetime | None = None,
    max_uses: int = 0,
    retention_days: int = 30,
) -> consent_pb2.ConsentTerms:
    until = valid_until or (utcnow() + valid_for)
    return consent_pb2.ConsentTerms(
        subject=subject,
        grantee=grantee,
        services=list(services),
        purpose=purpose,
        fields=list(fields),
        valid_until_ms=int(until.timestamp() * 1000),
        max_uses=max_uses,
        retention_days=retention_days,
        data_from="2020-01-01",
    )


def _pem(key: crypto.PrivateSigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def start_consent_env(
    root: Path,
    db_url: str | None = None,
    db_schema: str | None = None,
    *,
    start_servers: bool = False,
    checker_ttl: timedelta = timedelta(seconds=30),
    on_event: Any = None,
) -> ConsentEnv:
    instance = build_instance(root, start=False)
    registry = instance.registry
    service = registry.service
    cleanup: list[Any] = [instance.close]
    try:
        paths = registry.paths
        passphrase = paths.passphrase()
        idp = init_dev_idp(root, "VN", passphrase)
        signing_key = ed25519.Ed25519PrivateKey.generate()
        tls_key = crypto.generate_signing_key("ecdsa-p256")
        issued = service.issue_client_certificate(
            pki.build_csr(tls_key, "consent"),
            "service",
            "consent",
            ADMIN,
            dns_names=["localhost"],
            ip_addresses=["127.0.0.1"],
        )
        identity = rpc.TlsIdentity(issued.cert_pem, _pem(tls_key), issued.ca_pem)
        service.set_trust_anchors(
            consent_service_key_der=crypto.public_key_to_der(signing_key.public_key()),
            identity_providers=[idp.registration()],
            actor=ADMIN,
        )
        conf_client = ConfClient(
            registry.address,
            identity,
            paths.load_anchor(),
            root / "consent" / "globalconf.bin",
            poll_interval=timedelta(seconds=1),
        )
        conf_client.refresh()
        conf_client.start()
        cleanup.append(conf_client.stop)
        url = db_url or db.sqlite_url(root / "consent" / "consent.db")
        engine = db.create_engine(url, schema=db_schema)
        clock = OffsetClock()
        tag_key = os.urandom(32)
        running = start_consent_service(
            engine=engine,
            identity=identity,
            signer=crypto.KeySigner(signing_key),
            tag_key=tag_key,
            conf=conf_client.current,
            public_address="127.0.0.1:0",
            clock=clock,
            on_event=on_event,
            expiry_interval=0.3,
            heartbeat_interval=0.5,
        )
        cleanup.append(lambda: running.stop(0))
        service.set_trust_anchors(consent_service_address=running.address, actor=ADMIN)
        conf_client.refresh()
        env = ConsentEnv(
            instance,
            running,
            conf_client,
            idp,
            identity,
            signing_key,
            clock,
            tag_key=tag_key,
            db_url=url,
            db_schema=db_schema,
        )
        if start_servers:
            for key, agency in instance.agencies.items():
                checker = CachedConsentChecker(
                    running.address, env.server_identity(key), ttl=checker_ttl
                )
                env.checkers[key] = checker
                agency.consent_checker = checker
                agency.start()
            for checker in env.checkers.values():
                assert checker.wait_connected(5), "consent change feed did not connect"
        return env
    except BaseException:
        for fn in reversed(cleanup):
            with contextlib.suppress(Exception):
                fn()
        raise
