"""Attacks on the exchange against real security servers (mutual TLS, real keys, real stores).

Each attack must fail with its stable error code, be recorded as a denied access where it
reached a security server's application code, and release no data (the backend is never
called, no ALLOW record exists). Attacks refused by TLS itself never reach the application: for
those we check that nothing was recorded and nothing released.

The forged-signature, tampered-ciphertext, moved-ciphertext, stale, future, downgraded,
replayed, wrong-purpose and out-of-agreement cases are in
``tests/integration/test_exchange_denials.py`` (with the same denial and no-release checks);
this module adds what those leave out. ``docs/threat-model.md`` maps each threat to its test.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from google.protobuf import struct_pb2

from cdx import crypto, db, envelope, errors, keyfiles, pki, rpc
from cdx.clock import utcnow
from cdx.ids import SecurityServerId
from cdx.v1 import common_pb2, exchange_pb2, exchange_pb2_grpc
from security_server.backends.sample import CITIZENS
from tests.conftest import require_postgres
from tests.integration.exchange_harness import ExchangeInstance, Forger, build_instance
from tests.waiting import eventually

from .fuzzing import HOSTILE_STRINGS

pytestmark = pytest.mark.xdist_group("attack-exchange")
ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeInstance]:
    inst = build_instance(tmp_path_factory.mktemp("attack-exchange"))
    yield inst
    inst.close()


@pytest.fixture(scope="module")
def forger(instance: ExchangeInstance) -> Iterator[Forger]:
    f = instance.forger("social")
    yield f
    f.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_instance(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExchangeInstance]:
    """For attacks aimed at the stores: with ``postgres`` the consumer (social) and the
    provider (population) keep their outbox and replay cache in PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("instance")
        return
    url, tag = require_postgres(), uuid.uuid4().hex[:10]
    schemas = {"population": f"t_attack_pop_{tag}", "social": f"t_attack_soc_{tag}"}

    def configure(key: str, config):  # type: ignore[no-untyped-def]
        if key in schemas:
            return dataclasses.replace(config, database_url=url, database_schema=schemas[key])
        return config

    inst = build_instance(tmp_path_factory.mktemp("attack-exchange-pg"), configure=configure)
    yield inst
    inst.close()
    for schema in schemas.values():
        db.drop_schema(url, schema)


@pytest.fixture(scope="module")
def store_forger(store_instance: ExchangeInstance) -> Iterator[Forger]:
    f = store_instance.forger("social")
    yield f
    f.close()


class Watch:
    """Marks every agency's outbox and the provider backend before an attack."""

    def __init__(self, instance: ExchangeInstance) -> None:
        self.instance = instance
        self.marks = {k: a.mark() for k, a in instance.agencies.items()}
        self.backend_calls = {k: a.backend.servicer.calls for k, a in instance.agencies.items()}

    def records(self, key: str) -> list:  # type: ignore[type-arg]
        return self.instance.agency(key).records_since(self.marks[key])

    def assert_nothing_released(self) -> None:
        for key, agency in self.instance.agencies.items():
            assert agency.backend.servicer.calls == self.backend_calls[key], f"{key} backend called"
            for rec in self.records(key):
                assert rec.decision == common_pb2.DENY, f"{key} recorded an ALLOW"
                assert not rec.released_fields and not rec.response_commitment

    def assert_denied(self, key: str, code: str) -> None:
        """``key``'s server recorded exactly one denial with ``code``; nothing was released."""
        recs = self.records(key)
        assert [r.reason_code for r in recs] == [code], [r.reason_code for r in recs]
        assert recs[0].recorder == self.instance.agency(key).server_id
        self.assert_nothing_released()

    def assert_unrecorded(self) -> None:
        for key in self.instance.agencies:
            assert self.records(key) == [], f"{key} recorded a refused handshake"
        self.assert_nothing_released()


def _still_serving(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    assert set(social.query(population.service, ANNE.id, BENEFIT).data.fields) == {
        "full_name",
        "birth_date",
        "gender",
    }


def _pem_key(key: crypto.PrivateSigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca(instance: ExchangeInstance):  # type: ignore[no-untyped-def]
    paths = instance.registry.paths
    ca_key = keyfiles.load_private_key(paths.ca_key, paths.passphrase())
    return ca_key, pki.cert_from_pem(paths.load_ca_pem())


def _server_identity(
    instance: ExchangeInstance,
    server_id: str,
    *,
    ca: tuple | None = None,  # type: ignore[type-arg]
    issued_at: timedelta = timedelta(0),
    validity: timedelta = timedelta(days=1),
) -> tuple[rpc.TlsIdentity, object]:
    """A TLS identity naming ``server_id``, issued by ``ca`` (default: the instance CA)."""
    ca_key, ca_cert = ca or _ca(instance)
    key = crypto.generate_signing_key()
    cert = pki.issue_auth_certificate(
        ca_key,
        ca_cert,
        pki.build_csr(key, "attacker"),
        SecurityServerId.parse(server_id),
        utcnow() + issued_at,
        validity=validity,
        ip_addresses=["127.0.0.1"],
    )
    trusted_ca = instance.registry.paths.load_ca_pem()
    return rpc.TlsIdentity(pki.cert_to_pem(cert), _pem_key(key), trusted_ca), cert


def _self_signed_identity(instance: ExchangeInstance, server_id: str) -> rpc.TlsIdentity:
    key, cert = pki.create_ca("VN", utcnow())  # a CA certificate that is its own issuer
    return rpc.TlsIdentity(
        pki.cert_to_pem(cert), _pem_key(key), instance.registry.paths.load_ca_pem()
    )


# --- who is calling: certificates --------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda inst: _self_signed_identity(inst, "VN:GOV:VSS:ss1"), id="self_signed"),
        pytest.param(
            lambda inst: _server_identity(inst, "VN:GOV:VSS:ss1", ca=pki.create_ca("VN", utcnow()))[
                0
            ],
            id="other_instance_ca_same_server_name",
        ),
        pytest.param(
            lambda inst: _server_identity(
                inst, "VN:GOV:VSS:ss1", issued_at=timedelta(days=-400), validity=timedelta(days=1)
            )[0],
            id="expired_instance_certificate",
        ),
        pytest.param(
            lambda inst: _server_identity(
                inst, "VN:GOV:VSS:ss1", issued_at=timedelta(days=30), validity=timedelta(days=1)
            )[0],
            id="not_yet_valid_instance_certificate",
        ),
    ],
)
def test_impersonating_certificate_is_refused_by_tls(
    instance: ExchangeInstance, forger: Forger, make
) -> None:  # type: ignore[no-untyped-def]
    """Self-signed, other-instance and expired certificates never get past the handshake."""
    identity = make(instance)
    env = forger.build("population").envelope
    watch = Watch(instance)
    with pytest.raises(errors.UnavailableError) as caught:
        forger.send("population", env, identity=identity, timeout=5)
    assert caught.value.code == "unavailable"
    watch.assert_unrecorded()
    _still_serving(instance)


def test_impersonating_certificate_cannot_use_the_gateway(instance: ExchangeInstance) -> None:
    population = instance.agency("population")
    identity = _self_signed_identity(instance, "VN:GOV:VSS:ss1")
    watch = Watch(instance)
    channel = rpc.secure_channel(population.running.gateway_address, identity)
    try:
        with pytest.raises(errors.UnavailableError):
            rpc.invoke(
                exchange_pb2_grpc.GatewayStub(channel).Query,
                exchange_pb2.QueryRequest(
                    client=population.subsystem,
                    service=instance.agency("social").service,
                    subject=ANNE.id,
                    purpose="IDENTITY_VERIFICATION",
                ),
                timeout=5,
            )
    finally:
        channel.close()
    watch.assert_unrecorded()


def test_revoked_client_certificate_is_refused_and_recorded(instance: ExchangeInstance) -> None:
    """An information-system certificate the registry issued to social, then revoked.

    (A revoked security server at the exchange endpoint: ``test_exchange_denials.py::
    test_revoked_consumer_server_is_refused``.)"""
    social, population = instance.agency("social"), instance.agency("population")
    key = crypto.generate_signing_key()
    issued = instance.registry_service.issue_client_certificate(
        pki.build_csr(key, "information system"), "client", social.subsystem, "admin:test"
    )
    identity = rpc.TlsIdentity(issued.cert_pem, _pem_key(key), issued.ca_pem)
    fingerprint = pki.fingerprint(pki.cert_from_pem(issued.cert_pem))
    instance.registry_service.revoke_certificate(fingerprint, "laptop stolen", "admin:test")
    instance.sync_conf()
    request = exchange_pb2.QueryRequest(
        client=social.subsystem, service=population.service, subject=ANNE.id, purpose=BENEFIT
    )
    watch = Watch(instance)
    channel = rpc.secure_channel(social.running.gateway_address, identity)
    try:
        with pytest.raises(errors.CertificateRevokedError):
            rpc.invoke(exchange_pb2_grpc.GatewayStub(channel).Query, request, timeout=10)
    finally:
        channel.close()
    watch.assert_denied("social", "certificate_revoked")
    assert watch.records("population") == []
    _still_serving(instance)


def test_unregistered_certificate_of_the_right_ca_is_refused_and_recorded(
    instance: ExchangeInstance, forger: Forger
) -> None:
    """A valid instance certificate naming the social server, but not the registered one."""
    identity, _ = _server_identity(instance, "VN:GOV:VSS:ss1")
    env = forger.build("population").envelope
    watch = Watch(instance)
    with pytest.raises(errors.PeerNotRegisteredError):
        forger.send("population", env, identity=identity)
    watch.assert_denied("population", "peer_not_registered")


def test_agency_a_cannot_send_as_agency_b(instance: ExchangeInstance, forger: Forger) -> None:
    """Social's own certificate and key, a header claiming the tax server and its subsystem."""
    tax = instance.agency("tax")
    sealed = forger.build(
        "population",
        client=tax.subsystem,
        consumer_server=tax.server_id,
        purpose="TAX_ASSESSMENT",
    )
    watch = Watch(instance)
    with pytest.raises(errors.PeerNotRegisteredError):
        forger.send("population", sealed.envelope)
    watch.assert_denied("population", "peer_not_registered")


def test_stolen_tls_certificate_without_the_signing_key_is_refused(
    instance: ExchangeInstance, forger: Forger
) -> None:
    """The tax server's TLS identity, a tax header, but signed with social's signing key."""
    tax = instance.agency("tax")
    sealed = forger.build(
        "population", client=tax.subsystem, consumer_server=tax.server_id, purpose="TAX_ASSESSMENT"
    )
    watch = Watch(instance)
    with pytest.raises(errors.SignatureError):
        forger.send("population", sealed.envelope, identity=tax.exchange_identity())
    watch.assert_denied("population", "invalid_signature")


# --- signatures ---------------------------------------------------------------------------------


def _truncated(env: exchange_pb2.SignedEnvelope) -> exchange_pb2.SignedEnvelope:
    env.signature = env.signature[: len(env.signature) // 2]
    return env


def _empty_signature(env: exchange_pb2.SignedEnvelope) -> exchange_pb2.SignedEnvelope:
    env.signature = b""
    return env


@pytest.mark.parametrize(
    ("breaker", "error", "code"),
    [
        (_truncated, errors.SignatureError, "invalid_signature"),
        (_empty_signature, errors.MalformedError, "malformed"),
    ],
    ids=["truncated", "empty"],
)
def test_broken_signature_is_refused_and_recorded(
    instance: ExchangeInstance, forger: Forger, breaker, error, code
) -> None:  # type: ignore[no-untyped-def]
    env = breaker(forger.build("population").envelope)
    watch = Watch(instance)
    with pytest.raises(error):
        forger.send("population", env)
    watch.assert_denied("population", code)


def test_reused_signature_on_a_new_message_is_refused(
    instance: ExchangeInstance, forger: Forger
) -> None:
    """The signature of an earlier (answered) request attached to a new header."""
    earlier = forger.build("population").envelope
    forger.send("population", earlier)
    fresh = forger.build("population", fields=("full_name",)).envelope
    fresh.signature = earlier.signature
    watch = Watch(instance)
    with pytest.raises(errors.SignatureError):
        forger.send("population", fresh)
    watch.assert_denied("population", "invalid_signature")


# --- sizes and shapes ---------------------------------------------------------------------------


def test_huge_field_list_is_refused_at_the_gateway_and_recorded(
    instance: ExchangeInstance,
) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    watch = Watch(instance)
    with pytest.raises(errors.LimitExceededError):
        social.query(population.service, ANNE.id, BENEFIT, [f"f{i}" for i in range(100_000)])
    watch.assert_denied("social", "limit_exceeded")
    assert watch.records("population") == []


def test_huge_field_list_is_refused_by_the_provider_and_recorded(
    instance: ExchangeInstance, forger: Forger
) -> None:
    fields = tuple(f"f{i}" for i in range(envelope.MAX_FIELDS + 1))
    env = forger.build("population", fields=fields).envelope
    watch = Watch(instance)
    with pytest.raises(errors.LimitExceededError):
        forger.send("population", env)
    watch.assert_denied("population", "limit_exceeded")


def test_overlong_message_id_is_refused_before_the_replay_cache(
    store_instance: ExchangeInstance, store_forger: Forger
) -> None:
    """Regression: a 5000-character message id used to reach the replay table, whose column
    holds 64, and on PostgreSQL turned into an uncoded store failure."""
    instance, forger = store_instance, store_forger
    env = forger.build("population", message_id="x" * 5000).envelope
    watch = Watch(instance)
    with pytest.raises(errors.LimitExceededError):
        forger.send("population", env)
    watch.assert_denied("population", "limit_exceeded")
    _still_serving(instance)


def test_oversized_message_is_refused(instance: ExchangeInstance, forger: Forger) -> None:
    """Over the 4 MiB gRPC limit the transport refuses; under it the envelope limit does."""
    social, population = instance.agency("social"), instance.agency("population")
    huge = exchange_pb2.QueryRequest(
        client=social.subsystem, service=population.service, subject=ANNE.id, purpose=BENEFIT
    )
    huge.parameters.fields["blob"].string_value = "x" * (rpc.MAX_MESSAGE_BYTES + 1024)
    watch = Watch(instance)
    with pytest.raises(errors.LimitExceededError):
        rpc.invoke(social.gateway().Query, huge, timeout=10)
    watch.assert_unrecorded()

    sealed = forger.build("population")
    sealed.envelope.ciphertext = b"\x00" * (envelope.MAX_CIPHERTEXT_BYTES + 1)
    env = forger.resign(sealed.envelope)
    watch = Watch(instance)
    with pytest.raises(errors.LimitExceededError):
        forger.send("population", env)
    watch.assert_denied("population", "limit_exceeded")

    big = exchange_pb2.QueryRequest()
    big.CopyFrom(huge)
    big.parameters.fields["blob"].string_value = "x" * (1024 * 1024)
    watch = Watch(instance)
    with pytest.raises(errors.LimitExceededError):
        rpc.invoke(social.gateway().Query, big, timeout=10)
    watch.assert_denied("social", "limit_exceeded")


def _nested(depth: int) -> struct_pb2.Struct:
    root = struct_pb2.Struct()
    node = root
    for _ in range(depth):
        node = node.fields["a"].struct_value
    return root


@pytest.mark.parametrize("depth", [60, 500])
def test_deeply_nested_parameters_are_malformed_not_uncoded(
    instance: ExchangeInstance, depth: int
) -> None:
    """Regression: parameters nested past protobuf's recursion limit used to fail inside gRPC
    with an uncoded INTERNAL "Exception deserializing request!"."""
    social, population = instance.agency("social"), instance.agency("population")
    request = exchange_pb2.QueryRequest(
        client=social.subsystem, service=population.service, subject=ANNE.id, purpose=BENEFIT
    )
    request.parameters.CopyFrom(_nested(depth))
    watch = Watch(instance)
    with pytest.raises(errors.MalformedError) as caught:
        rpc.invoke(social.gateway().Query, request, timeout=10)
    assert caught.value.code == "malformed"
    watch.assert_unrecorded()  # nothing is known about the request: no client, no subject
    _still_serving(instance)


def test_deeply_nested_parameters_inside_the_ciphertext_are_malformed(
    instance: ExchangeInstance, forger: Forger
) -> None:
    population = instance.agency("population")
    conf = instance.agency("social").running.conf_client.current()
    sealed = forger.build("population")
    header = exchange_pb2.EnvelopeHeader.FromString(sealed.envelope.header)
    body = exchange_pb2.RequestBody(subject=ANNE.id, response_key=sealed.response_key)
    body.parameters.CopyFrom(_nested(80))
    resealed = envelope.seal_request(
        header,
        body,
        conf.servers[population.server_id].hpke_public_key,
        instance.agency("social").running.keys.signer,
    )
    watch = Watch(instance)
    with pytest.raises(errors.MalformedError):
        forger.send("population", resealed.envelope)
    watch.assert_denied("population", "malformed")


# --- hostile strings in every field ------------------------------------------------------------

GATEWAY_FIELDS = ("client", "service", "purpose", "subject", "fields", "consent_id")
HOSTILE = [s for s in HOSTILE_STRINGS if len(s) < 1000]


@pytest.mark.parametrize("field", GATEWAY_FIELDS)
def test_hostile_strings_in_every_gateway_field(
    store_instance: ExchangeInstance, field: str
) -> None:
    """SQL, path and format strings are refused with a code, recorded, and harm nothing."""
    instance = store_instance
    social, population = instance.agency("social"), instance.agency("population")
    for hostile in HOSTILE:
        request = exchange_pb2.QueryRequest(
            client=social.subsystem, service=population.service, subject=ANNE.id, purpose=BENEFIT
        )
        if field == "fields":
            request.fields.append(hostile)
        else:
            setattr(request, field, hostile)
        watch = Watch(instance)
        try:
            response = rpc.invoke(social.gateway().Query, request, timeout=10)
        except errors.CdxError as exc:
            assert exc.code not in ("internal", "error", "unavailable"), (hostile, exc.code)
            watch.assert_denied("social", exc.code)
            assert watch.records("population") == []
            continue
        # Only the consent id may be anything on a legal-mandate agreement: it is ignored.
        assert field == "consent_id", (field, hostile)
        assert set(response.data.fields) <= {"full_name", "birth_date", "gender"}
    _still_serving(instance)


ENVELOPE_FIELDS = (
    "message_id",
    "client",
    "consumer_server",
    "service",
    "provider_server",
    "purpose",
    "consent_id",
    "legal_reference",
    "fields",
    "trace",
)


@pytest.mark.parametrize("field", ENVELOPE_FIELDS)
def test_hostile_strings_in_every_signed_envelope_field(
    store_instance: ExchangeInstance, store_forger: Forger, field: str
) -> None:
    """A registered server signs headers full of hostile strings; the provider's stores, on
    SQLite and PostgreSQL, take them as data: coded refusals, or an answer within the
    agreement."""
    instance, forger = store_instance, store_forger
    population = instance.agency("population")
    for hostile in HOSTILE:
        sealed = forger.build("population")
        header = exchange_pb2.EnvelopeHeader.FromString(sealed.envelope.header)
        if field == "fields":
            header.fields.append(hostile)
        elif field == "trace":
            header.trace.traceparent = hostile
            header.trace.tracestate = hostile
        elif field == "message_id":
            header.message_id = hostile + uuid.uuid4().hex[:8]
        else:
            setattr(header, field, hostile)
        sealed.envelope.header = header.SerializeToString()
        env = forger.resign(sealed.envelope)
        watch = Watch(instance)
        try:
            answer = forger.send("population", env)
        except errors.CdxError as exc:
            assert exc.code not in ("internal", "error", "unavailable"), (field, hostile, exc.code)
            watch.assert_denied("population", exc.code)
            continue
        assert field in ("message_id", "consent_id", "legal_reference", "trace"), (field, hostile)
        opened = forger.open("population", sealed, answer)
        assert set(opened.body.data.fields) <= {"full_name", "birth_date", "gender"}
        (rec,) = watch.records("population")
        assert rec.decision == common_pb2.ALLOW
    _still_serving(instance)
    assert population.running.outbox.count() > 0  # the outbox table is still there


def test_hostile_header_cannot_stall_the_providers_audit_trail(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Any holder of an instance TLS certificate can make a provider record a denial carrying
    the (unverified) header's strings. On a PostgreSQL audit log such a record must not become a
    poison pill that blocks the provider's outbox until its backlog window stops all release.

    Regression: a NUL in the header's purpose failed the log's whole batch on PostgreSQL, and
    the provider's outbox retried it forever."""
    url = require_postgres()
    from tests.faults.audit_log import attach_audit_log

    root = tmp_path_factory.mktemp("attack-poison")
    schema = f"t_attack_poison_{uuid.uuid4().hex[:10]}"
    inst = build_instance(
        root,
        start=False,
        configure=lambda key, config: dataclasses.replace(config, outbox_window_s=3.0),
    )
    log = attach_audit_log(inst, root, db_url=url, schema=schema)
    forger = None
    try:
        log.start()
        for agency in inst.agencies.values():
            agency.start()
        forger = inst.forger("social")
        population = inst.agency("population")
        sealed = forger.build("population")
        header = exchange_pb2.EnvelopeHeader.FromString(sealed.envelope.header)
        header.purpose = "BENEFIT\x00"
        sealed.envelope.header = header.SerializeToString()
        with pytest.raises(errors.CdxError):
            forger.send("population", forger.resign(sealed.envelope))
        eventually(
            lambda: population.running.outbox.depth() == 0,
            timeout=10,
            what="the provider's outbox drained (not stuck)",
        )
        _still_serving(inst)
    finally:
        if forger is not None:
            forger.close()
        inst.close()
        log.close()
        db.drop_schema(url, schema)
