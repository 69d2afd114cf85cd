"""The consent service in a test instance, and the consent tests' shared fixtures and helpers.

``start_consent_env(root, db_url, schema)`` runs the sample instance of ``stack`` (the exchange
harness's composition) with its consent service: the keys, TLS certificate, development
identity provider and global-configuration client the instance provisioned, over SQLite or
the given PostgreSQL database, on its own ``OffsetClock``. With ``start_servers`` every security
server gets a ``CachedConsentChecker`` (``env.checkers``) and is started.

For test modules: ``consent_env_fixture(name, ...)`` makes the module's ``env`` fixture (one
instance per database, SQLite and PostgreSQL); ``fresh_citizen()`` a national id no other test
uses; ``grant``, ``act``, ``request_consent`` and ``query`` call the services as a citizen, an
agency's security server and an agency's information system.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import db, keyfiles, rpc
from cdx.clock import utcnow
from cdx.confclient import ConfClient
from cdx.tokens import citizen_audience
from cdx.v1 import consent_pb2, consent_pb2_grpc, exchange_pb2
from consent.checker import CachedConsentChecker
from consent.idp import DevIdentityProvider
from consent.idp_server import PORTAL_CLIENT_ID
from consent.instance import derive_tag_key
from consent.server import RunningConsent
from tests.conftest import database
from tests.integration.exchange_harness import (
    HARNESS,
    ExchangeInstance,
    OffsetClock,
    build_instance,
)

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
    #: Every consent event the service committed (its ``on_event`` hook), in order.
    events: list[Any] = field(default_factory=list)
    db_url: str = ""
    db_schema: str | None = None
    _channels: list[grpc.Channel] = field(default_factory=list, repr=False)
    _replicas: list[RunningConsent] = field(default_factory=list, repr=False)

    def start_replica(self, address: str = "127.0.0.1:0", **kw: Any) -> RunningConsent:
        """Another consent service instance over the same database and keys (scale-out)."""
        replica: RunningConsent = self.instance.stack.start_consent_replica(
            address, heartbeat_interval=0.5, **kw
        )
        self._replicas.append(replica)
        return replica

    # --- identities ----------------------------------------------------------------------------

    def server_identity(self, key: str) -> rpc.TlsIdentity:
        """The auth-certificate identity of ``key``'s security server (as its checker uses)."""
        from security_server import keystore

        agency = self.instance.agency(key)
        passphrase = self.instance.registry.paths.passphrase()
        return keystore.load_keys(agency.data_dir, agency.server_id, passphrase).tls

    def client_identity(self, key: str) -> rpc.TlsIdentity:
        return self.instance.agency(key).client_identity

    @property
    def issuer(self) -> str:
        """The issuer the instance anchors: its served development OpenID provider."""
        login = self.instance.stack.login
        return login.dev.issuer if login is not None and login.dev is not None else self.idp.issuer

    @property
    def audience(self) -> str:
        """The audience of the ID tokens the portal relays (the portal's client id)."""
        login = self.instance.stack.login
        served = login is not None and login.dev is not None
        return PORTAL_CLIENT_ID if served else citizen_audience(self.instance.stack.layout.instance)

    def token(
        self,
        citizen: str,
        *,
        ttl: timedelta = timedelta(minutes=10),
        now: datetime | None = None,
        **kw: Any,
    ) -> str:
        """An ID token of the instance's development OpenID provider, as its token endpoint
        issues them to the portal."""
        conf = self.conf_client.current()
        kw.setdefault("issuer", self.issuer)
        kw.setdefault("audience", self.audience)
        return self.idp.issue(citizen, conf=conf, now=now or utcnow(), ttl=ttl, **kw)

    def refresh_conf(self) -> None:
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


def start_consent_env(
    root: Path,
    db_url: str | None = None,
    db_schema: str | None = None,
    *,
    start_servers: bool = False,
    checker_ttl: timedelta = timedelta(seconds=30),
    on_event: Any = None,
    options: Any = HARNESS,
    witness_quorum: int = 0,
    one_clock: bool = False,
) -> ConsentEnv:
    """The instance with its consent service running (``options`` may start more of it).

    ``one_clock``: the registry, the audit log, the identity provider and the portal run on the
    consent service's clock too (``env.clock``), so a test can move the whole instance across
    a date (a majority date) and still log in; the security servers keep their own."""
    clock = OffsetClock()
    if one_clock:
        options = replace(options, clock=clock)
    events: list[Any] = []

    def record(event: Any) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    settings: dict[str, Any] = {
        "public_address": "127.0.0.1:0",
        "expiry_interval": 0.3,
        "heartbeat_interval": 0.5,
        "on_event": record,
    }
    instance = build_instance(
        root,
        start=False,
        options=replace(
            options,
            consent=True,
            consent_database=(db_url, db_schema) if db_url else None,
            consent_clock=clock,
            consent_settings=settings,
            consent_checker_ttl=checker_ttl,
        ),
        witness_quorum=witness_quorum,
    )
    try:
        stack = instance.stack
        assert stack.consent is not None
        key = keyfiles.load_signing_key(stack.layout.consent_dir / "consent.key", stack.passphrase)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        env = ConsentEnv(
            instance,
            stack.consent,
            stack.component_confs["consent"],
            stack.idp,
            stack.service_identity("consent"),
            key,
            clock,
            tag_key=derive_tag_key(key),
            events=events,
            db_url=db_url or db.sqlite_url(stack.layout.consent_dir / "consent.db"),
            db_schema=db_schema,
        )
        if start_servers:
            for agency_key, agency in instance.agencies.items():
                checker = CachedConsentChecker(
                    stack.consent.address, env.server_identity(agency_key), ttl=checker_ttl
                )
                env.checkers[agency_key] = checker
                agency.consent_checker = checker
                agency.start()
            for checker in env.checkers.values():
                assert checker.wait_connected(5), "consent change feed did not connect"
        return env
    except BaseException:
        instance.close()
        raise


# --- fixtures and helpers for test modules --------------------------------------------------------


def consent_env_fixture(name: str, **kw: Any) -> Any:
    """A module-scoped ``env`` fixture: ``start_consent_env(**kw)`` once on SQLite and once on
    PostgreSQL (``tests.conftest.database``), closed (and its schema dropped) afterwards.

    Usage in a test module: ``env = consent_env_fixture("consent-checker", start_servers=True)``.
    """

    @pytest.fixture(scope="module", params=["sqlite", "postgres"])
    def env(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[ConsentEnv]:
        with database(request.param, f"t_{name.replace('-', '_')}") as (url, schema):
            root = tmp_path_factory.mktemp(f"{name}-{request.param}")
            built = start_consent_env(root, url, schema, **kw)
            try:
                yield built
            finally:
                built.close()

    return env


_citizens = itertools.count(1)


def fresh_citizen() -> str:
    """A valid national id that no other test (in this process or another) has used."""
    # 12 digits: a per-process prefix, then a counter. Ids of the sample registers (0790...)
    # are never produced, so the backends know none of these citizens.
    return f"08{os.getpid() % 10_000:04d}{next(_citizens):06d}"


def grant(env: ConsentEnv, citizen: str, **kw: Any) -> consent_pb2.Consent:
    """The citizen grants a consent directly (``terms(citizen, **kw)``)."""
    return env.citizen().Grant(  # type: ignore[no-any-return]
        consent_pb2.GrantRequest(terms=terms(citizen, **kw)),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def act(env: ConsentEnv, citizen: str, action: str, consent_id: str) -> consent_pb2.Consent:
    """The citizen calls ``action`` (``Approve``, ``Pause``, ``Revoke``, ...) on a consent."""
    method = getattr(env.citizen(), action)
    return method(  # type: ignore[no-any-return]
        consent_pb2.ConsentActionRequest(consent_id=consent_id),
        metadata=bearer(env.token(citizen)),
        timeout=10,
    )


def request_consent(env: ConsentEnv, citizen: str, **kw: Any) -> consent_pb2.Consent:
    """The social insurance agency's security server asks the citizen for consent."""
    api = env.agency_api(env.server_identity(SOCIAL))
    return api.RequestConsent(  # type: ignore[no-any-return]
        consent_pb2.RequestConsentRequest(requester=SOCIAL_SUBSYSTEM, terms=terms(citizen, **kw)),
        timeout=10,
    )


def query(
    env: ConsentEnv, citizen: str, fields: tuple[str, ...] = (), consent_id: str = ""
) -> exchange_pb2.QueryResponse:
    """The social insurance agency asks the tax department for ``citizen``'s income."""
    social = env.instance.agency(SOCIAL)
    return social.query(TAX_SERVICE, citizen, CONSENT_PURPOSE, fields, consent_id=consent_id)


__all__ = [
    "ALICE",
    "BOB",
    "CONSENT_PURPOSE",
    "POPULATION",
    "SOCIAL",
    "SOCIAL_SUBSYSTEM",
    "TAX",
    "TAX_SERVICE",
    "ConsentEnv",
    "act",
    "bearer",
    "consent_env_fixture",
    "fresh_citizen",
    "grant",
    "query",
    "request_consent",
    "start_consent_env",
    "terms",
]
