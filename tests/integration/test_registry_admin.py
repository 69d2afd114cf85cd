"""The registry admin API over real gRPC + mutual TLS, on SQLite and PostgreSQL: two agencies,
their servers, services and agreements; who may call; validation; revocation; history."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from cdx import crypto, db, errors, note, pki, rpc
from cdx.clock import utcnow
from cdx.confclient import ConfClient
from cdx.globalconf import IdentityProviderInfo, VerifiedGlobalConf
from cdx.paths import InstancePaths
from cdx.v1 import registry_pb2, registry_pb2_grpc
from registry.bootstrap import init_instance
from registry.client import RegistryAdminClient
from registry.server import RunningRegistry, start_registry
from registry.service import DEFAULT_SEALED_RATE_LIMIT
from registry.testing import ServerKeys, register_server
from tests.conftest import require_postgres

BCA, VSS = "VN:GOV:BCA", "VN:GOV:VSS"
POPULATION, BENEFITS = f"{BCA}:population", f"{VSS}:benefits"
ADMIN = "admin:test"
PERSON = f"{POPULATION}/person/v1"
CONTRIBUTIONS = f"{BENEFITS}/contributions/v1"

# Keep this module's tests on one worker: they share one registry per database.
pytestmark = pytest.mark.xdist_group("registry-admin")


@dataclass
class Instance:
    paths: InstancePaths
    running: RunningRegistry
    admin: RegistryAdminClient


@dataclass
class World:
    """Two agencies with one security server each, services and agreements."""

    bca_keys: ServerKeys
    bca_identity: rpc.TlsIdentity
    vss_keys: ServerKeys
    vss_identity: rpc.TlsIdentity
    vss_certs_auth_pem: bytes
    legal_agreement: str
    consent_agreement: str


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def instance(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instance]:
    backend = request.param
    url, schema = None, None
    if backend == "postgres":
        url = require_postgres()
        schema = f"t_registry_admin_{uuid.uuid4().hex[:8]}"
    data = tmp_path_factory.mktemp(f"registry-admin-{backend}")
    paths = init_instance(data, "VN", utcnow(), db_url=url, db_schema=schema)
    running = start_registry(paths)
    admin = RegistryAdminClient(running.address, paths.admin_identity())
    yield Instance(paths, running, admin)
    admin.close()
    running.stop()
    if url and schema:
        db.drop_schema(url, schema)


@pytest.fixture(scope="module")
def world(instance: Instance) -> World:
    a = instance.admin
    a.add_member(BCA, "Ministry of Public Security")
    a.add_member(VSS, "Vietnam Social Security")
    a.add_subsystem(POPULATION)
    a.add_subsystem(BENEFITS)
    bca_keys, bca_certs = register_server(a, f"{BCA}:ss1", "127.0.0.1:7001", [POPULATION])
    vss_keys, vss_certs = register_server(a, f"{VSS}:ss1", "127.0.0.1:7002", [BENEFITS])
    a.add_service(PERSON, ["full_name", "birth_date", "address"], ["identity"], "Person record")
    a.add_service(CONTRIBUTIONS, ["months_paid", "employer"], ["social_insurance"])
    a.add_purpose("SOCIAL_BENEFIT", "Social benefit eligibility", "Xét hưởng trợ cấp xã hội")
    a.add_purpose("LOAN_APPLICATION", "Loan application")
    legal = a.add_agreement(
        BENEFITS,
        PERSON,
        "SOCIAL_BENEFIT",
        "LEGAL_OBLIGATION",
        "Law 41/2024/QH15 art. 10",
        ["full_name", "birth_date"],
        rate_limit_per_minute=600,
        retention_days=365,
    )
    consent = a.add_agreement(
        POPULATION, CONTRIBUTIONS, "LOAN_APPLICATION", "CONSENT", "", ["months_paid"], sealed=True
    )
    return World(
        bca_keys,
        bca_keys.identity(bca_certs),
        vss_keys,
        vss_keys.identity(vss_certs),
        vss_certs.auth_cert_pem,
        legal,
        consent,
    )


def fetch_conf(instance: Instance, identity: rpc.TlsIdentity, tmp_path: Path) -> VerifiedGlobalConf:
    client = ConfClient(
        instance.running.address, identity, instance.paths.load_anchor(), tmp_path / "gc.bin"
    )
    try:
        client.refresh()
        return client.current()
    finally:
        client.stop()


def _key_pem(key: crypto.PrivateSigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issued_identity(instance: Instance, kind: str, name: str) -> tuple[rpc.TlsIdentity, str]:
    key = crypto.generate_signing_key()
    issued = instance.admin.issue_client_certificate(pki.build_csr(key, name[:64]), kind, name)
    fp = pki.fingerprint(pki.cert_from_pem(issued.cert_pem))
    return rpc.TlsIdentity(issued.cert_pem, _key_pem(key), issued.ca_pem), fp


# --- the happy path ------------------------------------------------------------------------------


def test_security_server_fetches_and_verifies_the_conf(
    instance: Instance, world: World, tmp_path: Path
) -> None:
    conf = fetch_conf(instance, world.vss_identity, tmp_path)
    assert conf.instance == "VN"
    assert set(conf.members) == {BCA, VSS}
    assert set(conf.servers) == {f"{BCA}:ss1", f"{VSS}:ss1"}
    provider = conf.server_for_subsystem(POPULATION)
    assert provider is not None and provider.address == "127.0.0.1:7001"
    assert provider.hpke_public_raw == world.bca_keys.hpke_public_raw
    assert provider.witness_public_raw == world.bca_keys.witness_public_raw
    assert provider.signing_key_id == crypto.key_id(world.bca_keys.signing_key.public_key())
    me = conf.server_by_fingerprint(pki.fingerprint(pki.cert_from_pem(world.vss_certs_auth_pem)))
    assert me is not None and me.id == f"{VSS}:ss1"
    assert conf.services[PERSON].fields == ("full_name", "birth_date", "address")
    [legal] = conf.agreements_for(BENEFITS, PERSON)
    assert (legal.id, legal.lawful_basis, legal.purpose) == (
        world.legal_agreement,
        "LEGAL_OBLIGATION",
        "SOCIAL_BENEFIT",
    )
    assert legal.fields == {"full_name", "birth_date"}
    assert (legal.rate_limit_per_minute, legal.retention_days, legal.sealed) == (600, 365, False)
    [consent] = conf.agreements_for(POPULATION, CONTRIBUTIONS)
    assert consent.lawful_basis == "CONSENT" and consent.sealed and consent.legal_reference == ""
    # Registered without a rate limit: a sealed agreement gets the default one.
    assert consent.rate_limit_per_minute == DEFAULT_SEALED_RATE_LIMIT
    assert conf.purposes["SOCIAL_BENEFIT"].description_vi == "Xét hưởng trợ cấp xã hội"
    assert conf.ca_cert_der == pki.cert_from_pem(instance.paths.load_ca_pem()).public_bytes(
        serialization.Encoding.DER
    )


def test_registered_certificates_name_the_server_and_its_member(
    instance: Instance, world: World
) -> None:
    ca = pki.cert_from_pem(instance.paths.load_ca_pem())
    auth = pki.cert_from_pem(world.bca_identity.cert_pem)
    pki.validate_certificate(auth, ca, utcnow(), usage="auth")
    assert str(pki.server_id_of(auth)) == f"{BCA}:ss1"
    conf_der = instance.running.service.trust_anchors().ca_cert
    assert conf_der == ca.public_bytes(serialization.Encoding.DER)


def test_conf_is_not_resent_when_unchanged(instance: Instance, world: World) -> None:
    channel = rpc.secure_channel(instance.running.address, world.bca_identity)
    stub = registry_pb2_grpc.GlobalConfServiceStub(channel)
    try:
        full = rpc.invoke(stub.GetGlobalConfiguration, registry_pb2.GetGlobalConfRequest())
        version = registry_pb2.GlobalConf.FromString(full.conf.conf).version
        again = rpc.invoke(
            stub.GetGlobalConfiguration,
            registry_pb2.GetGlobalConfRequest(if_newer_than_version=version),
        )
    finally:
        channel.close()
    assert not full.not_modified and again.not_modified and not again.HasField("conf")


def test_every_change_publishes_a_new_version(instance: Instance, world: World) -> None:
    before = instance.running.service.conf_version()
    instance.admin.add_purpose("CENSUS", "Population census")
    assert instance.running.service.conf_version() == before + 1


# --- who may call --------------------------------------------------------------------------------


def test_security_server_cannot_administer(instance: Instance, world: World) -> None:
    with RegistryAdminClient(instance.running.address, world.bca_identity) as intruder:
        with pytest.raises(errors.PermissionDeniedError) as info:
            intruder.add_member("VN:GOV:EVIL", "Intruder")
        with pytest.raises(errors.PermissionDeniedError):
            intruder.history()
    assert info.value.code == "permission_denied"
    assert instance.admin.history(1)[0].target != "VN:GOV:EVIL"


@pytest.mark.parametrize(("kind", "name"), [("client", BENEFITS), ("inspector", "dpa-1")])
def test_client_and_inspector_certificates_cannot_administer(
    instance: Instance, world: World, kind: str, name: str
) -> None:
    identity, _ = _issued_identity(instance, kind, name)
    with RegistryAdminClient(instance.running.address, identity) as caller:
        with pytest.raises(errors.PermissionDeniedError):
            caller.add_purpose("SNOOPING", "not allowed")
        # ... but any certificate of the instance may read the configuration.
        assert caller.get_global_conf(0) is not None


def test_caller_without_a_client_certificate_is_refused(instance: Instance, world: World) -> None:
    channel = rpc.secure_channel(
        instance.running.address, None, ca_pem=instance.paths.load_ca_pem()
    )
    try:
        stub = registry_pb2_grpc.RegistryAdminStub(channel)
        with pytest.raises(errors.UnavailableError):
            rpc.invoke(stub.AddMember, registry_pb2.AddMemberRequest(id="VN:GOV:ANON"), timeout=5)
        conf_stub = registry_pb2_grpc.GlobalConfServiceStub(channel)
        with pytest.raises(errors.UnavailableError):
            rpc.invoke(
                conf_stub.GetGlobalConfiguration, registry_pb2.GetGlobalConfRequest(), timeout=5
            )
    finally:
        channel.close()
    assert all(e.target != "VN:GOV:ANON" for e in instance.admin.history(20))


def test_admin_certificate_of_another_ca_is_refused(instance: Instance, world: World) -> None:
    ca_key, ca_cert = pki.create_ca("VN", utcnow())
    key = crypto.generate_signing_key()
    cert = pki.issue_client_certificate(
        ca_key, ca_cert, pki.build_csr(key, "mallory"), "mallory", "urn:cdx:admin:mallory", utcnow()
    )
    forged = rpc.TlsIdentity(pki.cert_to_pem(cert), _key_pem(key), instance.paths.load_ca_pem())
    with (
        RegistryAdminClient(instance.running.address, forged, timeout=5) as mallory,
        pytest.raises(errors.UnavailableError),
    ):
        mallory.add_member("VN:GOV:MAL", "Mallory")


def test_revoked_admin_certificate_is_refused(instance: Instance, world: World) -> None:
    identity, fingerprint = _issued_identity(instance, "admin", "temp-admin")
    with RegistryAdminClient(instance.running.address, identity) as temp:
        temp.add_purpose("TEMP_PURPOSE", "added by a temporary admin")
        assert instance.admin.history(1)[0].actor == "admin:temp-admin"
        instance.admin.revoke_certificate(fingerprint, "left the agency")
        with pytest.raises(errors.CertificateRevokedError):
            temp.add_purpose("TEMP_PURPOSE_2", "must be refused")


# --- validation ----------------------------------------------------------------------------------


def _cases(world: World) -> list[tuple[str, Callable[[RegistryAdminClient], object], type]]:
    keys = ServerKeys.generate(f"{BCA}:ss9")
    return [
        ("duplicate member", lambda a: a.add_member(BCA, "again"), errors.AlreadyExistsError),
        ("bad member id", lambda a: a.add_member("VN:GOV", "x"), errors.InvalidIdentifierError),
        ("other instance", lambda a: a.add_member("EE:GOV:X", "x"), errors.InvalidArgumentError),
        ("unknown member", lambda a: a.add_subsystem("VN:GOV:NOPE:x"), errors.NotFoundError),
        ("duplicate subsystem", lambda a: a.add_subsystem(POPULATION), errors.AlreadyExistsError),
        (
            "server hosting another member's subsystem",
            lambda a: a.register_server(
                f"{BCA}:ss9",
                "127.0.0.1:7009",
                keys.auth_csr(),
                keys.signing_csr(),
                keys.hpke_public_raw,
                [BENEFITS],
            ),
            errors.InvalidArgumentError,
        ),
        (
            "same key for auth and signing",
            lambda a: a.register_server(
                f"{BCA}:ss9",
                "127.0.0.1:7009",
                keys.auth_csr(),
                keys.auth_csr(),
                keys.hpke_public_raw,
                [],
            ),
            errors.InvalidArgumentError,
        ),
        (
            "garbage CSR",
            lambda a: a.register_server(
                f"{BCA}:ss9",
                "127.0.0.1:7009",
                b"junk",
                keys.signing_csr(),
                keys.hpke_public_raw,
                [],
            ),
            errors.MalformedError,
        ),
        (
            "short HPKE key",
            lambda a: a.register_server(
                f"{BCA}:ss9", "127.0.0.1:7009", keys.auth_csr(), keys.signing_csr(), b"x" * 31, []
            ),
            errors.MalformedError,
        ),
        (
            "bad address",
            lambda a: a.register_server(
                f"{BCA}:ss9",
                "no-port",
                keys.auth_csr(),
                keys.signing_csr(),
                keys.hpke_public_raw,
                [],
            ),
            errors.InvalidArgumentError,
        ),
        (
            "live server registered again",
            lambda a: a.register_server(
                f"{BCA}:ss1",
                "127.0.0.1:7001",
                keys.auth_csr(),
                keys.signing_csr(),
                keys.hpke_public_raw,
                [POPULATION],
            ),
            errors.AlreadyExistsError,
        ),
        (
            "service of unknown subsystem",
            lambda a: a.add_service("VN:GOV:BCA:nope/x/v1", ["a"]),
            errors.NotFoundError,
        ),
        (
            "service without fields",
            lambda a: a.add_service(f"{POPULATION}/empty", []),
            errors.InvalidArgumentError,
        ),
        (
            "bad field name",
            lambda a: a.add_service(f"{POPULATION}/bad", ["full name"]),
            errors.InvalidArgumentError,
        ),
        ("bad purpose code", lambda a: a.add_purpose("lower", "x"), errors.InvalidArgumentError),
        (
            "duplicate purpose",
            lambda a: a.add_purpose("SOCIAL_BENEFIT", "x"),
            errors.AlreadyExistsError,
        ),
        (
            "fields outside the service",
            lambda a: a.add_agreement(
                BENEFITS, PERSON, "LOAN_APPLICATION", "CONSENT", "", ["full_name", "salary"]
            ),
            errors.InvalidArgumentError,
        ),
        (
            "legal mandate without a legal reference",
            lambda a: a.add_agreement(
                BENEFITS, PERSON, "LOAN_APPLICATION", "PUBLIC_TASK", "", ["full_name"]
            ),
            errors.InvalidArgumentError,
        ),
        (
            "no lawful basis",
            lambda a: a.add_agreement(
                BENEFITS, PERSON, "LOAN_APPLICATION", "MAYBE", "x", ["full_name"]
            ),
            errors.InvalidArgumentError,
        ),
        (
            "unknown purpose",
            lambda a: a.add_agreement(BENEFITS, PERSON, "GOSSIP", "CONSENT", "", ["full_name"]),
            errors.NotFoundError,
        ),
        (
            "unknown client",
            lambda a: a.add_agreement(
                "VN:GOV:VSS:ghost", PERSON, "SOCIAL_BENEFIT", "CONSENT", "", ["full_name"]
            ),
            errors.NotFoundError,
        ),
        (
            "unknown service",
            lambda a: a.add_agreement(
                BENEFITS, f"{POPULATION}/ghost/v1", "SOCIAL_BENEFIT", "CONSENT", "", ["x"]
            ),
            errors.NotFoundError,
        ),
        (
            "duplicate agreement",
            lambda a: a.add_agreement(
                BENEFITS, PERSON, "SOCIAL_BENEFIT", "CONSENT", "", ["full_name"]
            ),
            errors.AlreadyExistsError,
        ),
        (
            "revoke without reason",
            lambda a: a.revoke_server(f"{BCA}:ss1", ""),
            errors.ReasonRequiredError,
        ),
        (
            "revoke unknown server",
            lambda a: a.revoke_server(f"{BCA}:ss8", "x"),
            errors.NotFoundError,
        ),
        (
            "remove unknown agreement",
            lambda a: a.remove_agreement("agr-none"),
            errors.NotFoundError,
        ),
        (
            "client certificate for unknown subsystem",
            lambda a: a.issue_client_certificate(
                pki.build_csr(crypto.generate_signing_key(), "x"), "client", "VN:GOV:BCA:ghost"
            ),
            errors.NotFoundError,
        ),
        (
            "unknown certificate kind",
            lambda a: a.issue_client_certificate(
                pki.build_csr(crypto.generate_signing_key(), "x"), "server", "x"
            ),
            errors.InvalidArgumentError,
        ),
    ]


def test_invalid_changes_are_refused_with_stable_codes_and_publish_nothing(
    instance: Instance, world: World
) -> None:
    version = instance.running.service.conf_version()
    history_head = instance.admin.history(1)[0].seq
    failures = []
    for name, change, expected in _cases(world):
        try:
            change(instance.admin)
        except errors.CdxError as exc:
            if type(exc) is not expected:
                failures.append(
                    f"{name}: {type(exc).__name__} ({exc.code}), want {expected.__name__}"
                )
        else:
            failures.append(f"{name}: accepted")
    assert failures == []
    assert instance.running.service.conf_version() == version
    assert instance.admin.history(1)[0].seq == history_head


# --- revocation, anchors, history ----------------------------------------------------------------


def test_revoked_server_leaves_the_conf_and_can_register_again(
    instance: Instance, world: World, tmp_path: Path
) -> None:
    a = instance.admin
    keys, certs = register_server(a, f"{BCA}:ss2", "127.0.0.1:7003", [POPULATION])
    identity = keys.identity(certs)
    old_fp = pki.fingerprint(pki.cert_from_pem(certs.auth_cert_pem))
    assert f"{BCA}:ss2" in fetch_conf(instance, identity, tmp_path / "a").servers

    a.revoke_server(f"{BCA}:ss2", "auth key compromised")
    conf = fetch_conf(instance, world.vss_identity, tmp_path / "b")
    assert f"{BCA}:ss2" not in conf.servers
    assert conf.is_revoked(old_fp)
    assert conf.server_by_fingerprint(old_fp) is None
    with pytest.raises(errors.CertificateRevokedError):
        fetch_conf(instance, identity, tmp_path / "c")
    with pytest.raises(errors.FailedPreconditionError):
        a.revoke_server(f"{BCA}:ss2", "again")

    _, new_certs = register_server(a, f"{BCA}:ss2", "127.0.0.1:7004", [POPULATION])
    conf = fetch_conf(instance, world.vss_identity, tmp_path / "d")
    assert conf.servers[f"{BCA}:ss2"].address == "127.0.0.1:7004"
    assert conf.is_revoked(old_fp)  # the old certificate stays revoked
    assert not conf.is_revoked(pki.fingerprint(pki.cert_from_pem(new_certs.auth_cert_pem)))


def test_removed_agreement_leaves_the_conf(
    instance: Instance, world: World, tmp_path: Path
) -> None:
    a = instance.admin
    a.add_purpose("HOUSING_STATISTICS", "Housing statistics")
    agreement = a.add_agreement(
        POPULATION, PERSON, "HOUSING_STATISTICS", "PUBLIC_TASK", "Statistics law", ["address"]
    )
    assert fetch_conf(instance, world.bca_identity, tmp_path / "a").agreements_for(
        POPULATION, PERSON
    )
    a.remove_agreement(agreement)
    assert (
        fetch_conf(instance, world.bca_identity, tmp_path / "b").agreements_for(POPULATION, PERSON)
        == ()
    )


def test_trust_anchors_are_published(instance: Instance, world: World, tmp_path: Path) -> None:
    consent_key = crypto.generate_signing_key("ed25519").public_key()
    idp_key = crypto.generate_signing_key("ecdsa-p256").public_key()
    log_signer = note.NoteSigner("audit.cdx.example", crypto.generate_signing_key("ed25519"))
    a = instance.admin
    a.set_trust_anchors(
        consent_service_key_der=crypto.public_key_to_der(consent_key),
        consent_service_address="127.0.0.1:7100",
        audit_log_origin="audit.cdx.example/log",
        audit_log_key=log_signer.verifier_key(),
        identity_providers=[
            IdentityProviderInfo(
                "https://idp.dev.local", crypto.public_key_to_der(idp_key), True, "cdx"
            )
        ],
        witness_quorum=2,
    )
    a.set_trust_anchors(audit_log_address="127.0.0.1:7200")  # others keep their value
    conf = fetch_conf(instance, world.bca_identity, tmp_path)
    assert conf.consent_service_key_der == crypto.public_key_to_der(consent_key)
    assert conf.consent_service_address == "127.0.0.1:7100"
    assert (conf.audit_log_origin, conf.audit_log_address) == (
        "audit.cdx.example/log",
        "127.0.0.1:7200",
    )
    assert conf.audit_log_key == log_signer.verifier_key()
    assert conf.witness_quorum == 2 and not conf.production
    [idp] = conf.identity_providers
    assert (idp.issuer, idp.development, idp.audience) == ("https://idp.dev.local", True, "cdx")

    with pytest.raises(errors.InvalidArgumentError):
        a.set_trust_anchors(production=True)  # a development IdP is still trusted
    with pytest.raises(errors.NoteFormatError):
        a.set_trust_anchors(audit_log_key="not a key")
    with pytest.raises(errors.InvalidArgumentError):
        a.set_trust_anchors(consent_service_key_der=b"\x30\x03junk")


def test_history_records_who_changed_what(instance: Instance, world: World) -> None:
    entries = instance.admin.history(1000)
    actions = [(e.actor, e.action, e.target) for e in reversed(entries)]
    assert actions[0] == ("system:init", "instance.init", "VN")
    assert ("admin:bootstrap", "member.add", BCA) in actions
    assert ("admin:bootstrap", "server.register", f"{VSS}:ss1") in actions
    assert ("admin:bootstrap", "agreement.add", world.legal_agreement) in actions
    seqs = [e.seq for e in entries]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert all(e.at.tzinfo is not None for e in entries)


def test_history_is_append_only_in_the_database(instance: Instance, world: World) -> None:
    engine = instance.running.service.engine
    for statement in (
        "UPDATE registry_history SET actor = 'someone-else'",
        "DELETE FROM registry_history",
    ):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert instance.admin.history(1000)[-1].action == "instance.init"


def test_a_server_registered_before_it_listens_gets_the_address_it_bound(
    instance: Instance, world: World, tmp_path: Path
) -> None:
    """A server that binds a free port when it starts (a single-box instance) registers with
    port 0, then the address it bound; nothing else may register or move to port 0."""
    service = instance.running.service
    keys = ServerKeys.generate(f"{BCA}:ss5")
    request = (
        f"{BCA}:ss5", "127.0.0.1:0", keys.auth_csr(), keys.signing_csr(),
        keys.hpke_public_raw, [POPULATION], ADMIN,
    )  # fmt: skip
    with pytest.raises(errors.InvalidArgumentError):
        service.register_server(*request)  # port 0 only when asked for
    certs = service.register_server(*request, unbound=True)
    conf = fetch_conf(instance, keys.identity(certs), tmp_path / "a")
    assert conf.servers[f"{BCA}:ss5"].address == "127.0.0.1:0"

    service.set_server_address(f"{BCA}:ss5", "127.0.0.1:40123", ADMIN)
    conf = fetch_conf(instance, world.vss_identity, tmp_path / "b")
    assert conf.servers[f"{BCA}:ss5"].address == "127.0.0.1:40123"
    assert service.history(1)[0].action == "server.address"
    with pytest.raises(errors.InvalidArgumentError):
        service.set_server_address(f"{BCA}:ss5", "127.0.0.1:0", ADMIN)
    with pytest.raises(errors.NotFoundError):
        service.set_server_address(f"{BCA}:ss9", "127.0.0.1:40124", ADMIN)
    instance.admin.revoke_server(f"{BCA}:ss5", "decommissioned")
    with pytest.raises(errors.FailedPreconditionError):
        service.set_server_address(f"{BCA}:ss5", "127.0.0.1:40125", ADMIN)
