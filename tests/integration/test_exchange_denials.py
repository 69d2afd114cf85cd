"""Every rejection of the exchange has its own code and is recorded as a denied access.

Two vantage points: through the consumer's gateway (the consumer refuses early and records a
CONSUMER denial; or relays the provider's code), and straight at the provider's exchange
endpoint with envelopes built from the consumer server's real keys and then broken
(``Forger``), where the provider must refuse and record a PROVIDER denial.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from cdx import crypto, errors
from cdx.v1 import audit_pb2, common_pb2, exchange_pb2
from security_server.backends.sample import CITIZENS
from tests.integration.exchange_harness import Agency, ExchangeInstance, Forger, build_instance

ANNE = CITIZENS[0]
BENEFIT = "SOCIAL_BENEFIT_ELIGIBILITY"


@contextlib.contextmanager
def own_instance(root: Path) -> Iterator[ExchangeInstance]:
    inst = build_instance(root)
    try:
        yield inst
    finally:
        inst.close()


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeInstance]:
    """Shared by the module: a test that changes an instance builds its own (``own_instance``)."""
    with own_instance(tmp_path_factory.mktemp("exchange-denials")) as inst:
        yield inst


@pytest.fixture(scope="module")
def forger(instance: ExchangeInstance) -> Iterator[Forger]:
    f = instance.forger("social")
    yield f
    f.close()


def _only_denial(agency: Agency, mark: int, code: str) -> audit_pb2.AccessRecord:
    recs = agency.records_since(mark)
    assert len(recs) == 1, [r.reason_code for r in recs]
    rec = recs[0]
    assert rec.decision == common_pb2.DENY
    assert rec.reason_code == code
    assert rec.recorder == agency.server_id
    assert not rec.released_fields and not rec.response_commitment
    return rec


def _still_serving(instance: ExchangeInstance) -> None:
    social, population = instance.agency("social"), instance.agency("population")
    assert social.query(population.service, ANNE.id, BENEFIT).data.fields


# --- through the gateway: refused by the consumer, recorded by the consumer ---------------------

GATEWAY_CASES = [
    # (id, consumer, provider service, purpose, fields, error, code)
    ("unknown_service", "social", "VN:GOV:BCA:population/nosuch/v1", BENEFIT, (),
     errors.UnknownServiceError, "unknown_service"),
    ("no_agreement", "population", "tax", BENEFIT, (), errors.NoAgreementError, "no_agreement"),
    ("wrong_purpose", "social", "population", "TAX_ASSESSMENT", (),
     errors.PurposeNotAllowedError, "purpose_not_allowed"),
    ("field_outside_agreement", "social", "population", BENEFIT, ("full_name", "address"),
     errors.FieldNotAllowedError, "field_not_allowed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("consumer", "service", "purpose", "fields", "error", "code"),
    [case[1:] for case in GATEWAY_CASES],
    ids=[case[0] for case in GATEWAY_CASES],
)
def test_gateway_refusal_is_coded_and_recorded(
    instance: ExchangeInstance,
    consumer: str,
    service: str,
    purpose: str,
    fields: tuple[str, ...],
    error: type[errors.CdxError],
    code: str,
) -> None:
    client = instance.agency(consumer)
    target = service if ":" in service else instance.agency(service).service
    provider_marks = {k: a.mark() for k, a in instance.agencies.items()}
    mark = client.mark()
    with pytest.raises(error) as caught:
        client.query(target, ANNE.id, purpose, fields)
    assert caught.value.code == code
    rec = _only_denial(client, mark, code)
    assert rec.role == common_pb2.CONSUMER and rec.client == client.subsystem
    assert rec.service == target and rec.purpose == purpose
    assert len(rec.subject_commitment) == 32  # the citizen will see the attempt
    # The subject never left the agency: no provider recorded anything.
    for key, agency in instance.agencies.items():
        if key != consumer:
            assert agency.records_since(provider_marks[key]) == []
    _still_serving(instance)


# --- straight at the provider: refused and recorded by the provider ----------------------------


def _tamper(data: bytes, index: int = -1) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


Build = Callable[[ExchangeInstance, Forger], tuple[exchange_pb2.SignedEnvelope, dict[str, object]]]


def _plain(**kwargs: object) -> Build:
    def build(inst: ExchangeInstance, forger: Forger) -> tuple[exchange_pb2.SignedEnvelope, dict]:
        return forger.build("population", **kwargs).envelope, {}  # type: ignore[arg-type]

    return build


def _forged_signature(inst: ExchangeInstance, forger: Forger) -> tuple:
    env = forger.build("population").envelope
    env.signature = _tamper(env.signature, 10)
    return env, {}


def _signed_by_another_key(inst: ExchangeInstance, forger: Forger) -> tuple:
    stranger = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
    return forger.build("population", signer=stranger).envelope, {}


def _tampered_ciphertext_unsigned(inst: ExchangeInstance, forger: Forger) -> tuple:
    env = forger.build("population").envelope
    env.ciphertext = _tamper(env.ciphertext)
    return env, {}


def _tampered_ciphertext_resigned(inst: ExchangeInstance, forger: Forger) -> tuple:
    env = forger.build("population").envelope
    env.ciphertext = _tamper(env.ciphertext)
    return forger.resign(env), {}


def _ciphertext_moved(inst: ExchangeInstance, forger: Forger) -> tuple:
    first = forger.build("population").envelope
    second = forger.build("population").envelope
    second.ciphertext = first.ciphertext
    return forger.resign(second), {}


def _tampered_header(inst: ExchangeInstance, forger: Forger) -> tuple:
    env = forger.build("population").envelope
    header = exchange_pb2.EnvelopeHeader.FromString(env.header)
    header.fields.append("address")
    env.header = header.SerializeToString()
    return env, {}


def _unregistered_cert(inst: ExchangeInstance, forger: Forger) -> tuple:
    # A valid CA-issued server certificate, but of the tax server: not the social member's.
    env = forger.build("population").envelope
    return env, {"identity": inst.agency("tax").exchange_identity()}


def _information_system_cert(inst: ExchangeInstance, forger: Forger) -> tuple:
    env = forger.build("population").envelope
    return env, {"identity": inst.agency("social").client_identity}


def _other_members_client(inst: ExchangeInstance, forger: Forger) -> tuple:
    # Our own registered server, but claiming to act for a subsystem of another member.
    env = forger.build("population", client="VN:GOV:GDT:income").envelope
    return env, {}


def _malformed(inst: ExchangeInstance, forger: Forger) -> tuple:
    return exchange_pb2.SignedEnvelope(header=b"\xff\xff\xff", ciphertext=b"x", signature=b"s"), {}


PROVIDER_CASES = [
    ("unknown_service", _plain(service="VN:GOV:BCA:population/nosuch/v1"),
     errors.UnknownServiceError, "unknown_service", True),
    ("wrong_purpose", _plain(purpose="TAX_ASSESSMENT"), errors.PurposeNotAllowedError,
     "purpose_not_allowed", True),
    ("field_outside_agreement", _plain(fields=("address",)), errors.FieldNotAllowedError,
     "field_not_allowed", True),
    ("unregistered_client_certificate", _unregistered_cert, errors.PeerNotRegisteredError,
     "peer_not_registered", False),
    ("information_system_certificate", _information_system_cert,
     errors.PeerNotRegisteredError, "peer_not_registered", False),
    ("client_of_another_member", _other_members_client, errors.PeerNotRegisteredError,
     "peer_not_registered", False),
    ("forged_signature", _forged_signature, errors.SignatureError, "invalid_signature", False),
    ("signed_by_unregistered_key", _signed_by_another_key, errors.SignatureError,
     "invalid_signature", False),
    ("tampered_header", _tampered_header, errors.SignatureError, "invalid_signature", False),
    ("tampered_ciphertext", _tampered_ciphertext_unsigned, errors.SignatureError,
     "invalid_signature", False),
    ("tampered_ciphertext_resigned", _tampered_ciphertext_resigned, errors.DecryptionError,
     "decryption_failed", True),
    ("ciphertext_moved_to_another_envelope", _ciphertext_moved, errors.DecryptionError,
     "decryption_failed", True),
    ("stale_message", _plain(issued_at_delta=timedelta(minutes=-5)), errors.EnvelopeExpiredError,
     "message_expired", True),
    ("message_from_the_future", _plain(issued_at_delta=timedelta(minutes=2)),
     errors.EnvelopeFromFutureError, "message_from_future", True),
    ("downgraded_protocol_version", _plain(protocol_version=0), errors.ProtocolVersionError,
     "unsupported_protocol_version", True),
    ("addressed_to_another_server", _plain(provider_server="VN:GOV:GDT:ss1"),
     errors.PermissionDeniedError, "permission_denied", True),
    ("declared_lawful_basis_differs", _plain(lawful_basis=common_pb2.CONSENT),
     errors.PermissionDeniedError, "permission_denied", True),
    ("malformed_envelope", _malformed, errors.MalformedError, "malformed", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "error", "code", "verified"),
    [case[1:] for case in PROVIDER_CASES],
    ids=[case[0] for case in PROVIDER_CASES],
)
def test_provider_refusal_is_coded_and_recorded(
    instance: ExchangeInstance,
    forger: Forger,
    build: Build,
    error: type[errors.CdxError],
    code: str,
    verified: bool,
) -> None:
    population = instance.agency("population")
    backend_calls = population.backend.servicer.calls
    env, send_kwargs = build(instance, forger)
    mark = population.mark()
    with pytest.raises(error) as caught:
        forger.send("population", env, **send_kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code
    rec = _only_denial(population, mark, code)
    assert rec.role == common_pb2.PROVIDER
    # Whether the header's claims were verified is visible to inspectors.
    assert (rec.note == "") is verified
    # Nothing was decrypted for these refusals: no subject commitment, no backend call.
    if code not in ("decryption_failed",):
        assert rec.subject_commitment == b""
    assert population.backend.servicer.calls == backend_calls
    _still_serving(instance)


def test_no_agreement_at_the_provider(instance: ExchangeInstance) -> None:
    # population's server asks tax for income: no agreement covers population -> tax.
    forger = instance.forger("population")
    try:
        env = forger.build("tax").envelope
        tax = instance.agency("tax")
        mark = tax.mark()
        with pytest.raises(errors.NoAgreementError):
            forger.send("tax", env)
        rec = _only_denial(tax, mark, "no_agreement")
        assert rec.client == "VN:GOV:BCA:population" and rec.note == ""
    finally:
        forger.close()


def test_replayed_message_is_rejected(instance: ExchangeInstance, forger: Forger) -> None:
    population = instance.agency("population")
    sealed = forger.build("population")
    answer = forger.send("population", sealed.envelope)
    assert set(forger.open("population", sealed, answer).body.data.fields) == {
        "full_name",
        "birth_date",
        "gender",
    }
    mark = population.mark()
    with pytest.raises(errors.ReplayError):
        forger.send("population", sealed.envelope)
    rec = _only_denial(population, mark, "replayed_message")
    assert (
        rec.message_id == exchange_pb2.EnvelopeHeader.FromString(sealed.envelope.header).message_id
    )


def test_replay_is_rejected_after_a_provider_restart(tmp_path: Path) -> None:
    with own_instance(tmp_path) as instance:  # its provider restarts
        population = instance.agency("population")
        forger = instance.forger("social")
        sealed = forger.build("population")
        forger.send("population", sealed.envelope)
        population.restart()
        forger.close()  # the old channels point at the stopped server
        with pytest.raises(errors.ReplayError):
            forger.send("population", sealed.envelope)
        forger.close()


def test_response_is_bound_to_its_request(instance: ExchangeInstance, forger: Forger) -> None:
    first, second = forger.build("population"), forger.build("population")
    answer_to_first = forger.send("population", first.envelope)
    with pytest.raises(errors.RequestHashMismatchError):
        forger.open("population", second, answer_to_first)


def test_expired_global_conf_at_the_provider(tmp_path: Path) -> None:
    with own_instance(tmp_path) as instance:  # the provider's clock moves
        social, population = instance.agency("social"), instance.agency("population")
        consumer_mark, provider_mark = social.mark(), population.mark()
        population.clock.offset = timedelta(minutes=11)  # its copy (valid 10 min) has expired
        with pytest.raises(errors.ConfExpiredError):
            social.query(population.service, ANNE.id, BENEFIT)
        population.clock.offset = timedelta(0)
        _only_denial(population, provider_mark, "conf_expired")
        # The consumer records the provider's code as its own denial.
        rec = _only_denial(social, consumer_mark, "conf_expired")
        assert rec.role == common_pb2.CONSUMER and len(rec.subject_commitment) == 32
        _still_serving(instance)


def test_expired_global_conf_at_the_consumer(tmp_path: Path) -> None:
    with own_instance(tmp_path) as instance:  # the consumer's clock moves
        social, population = instance.agency("social"), instance.agency("population")
        consumer_mark, provider_mark = social.mark(), population.mark()
        social.clock.offset = timedelta(minutes=11)
        with pytest.raises(errors.ConfExpiredError):
            social.query(population.service, ANNE.id, BENEFIT)
        _only_denial(social, consumer_mark, "conf_expired")
        assert population.records_since(provider_mark) == []


def test_revoked_consumer_server_is_refused(tmp_path: Path) -> None:
    inst = build_instance(tmp_path)
    try:
        social, population = inst.agency("social"), inst.agency("population")
        forger = inst.forger("social")
        env = forger.build("population").envelope
        inst.registry_service.revoke_server(social.server_id, "key compromise", "admin:test")
        population.running.conf_client.refresh()
        mark = population.mark()
        with pytest.raises((errors.CertificateRevokedError, errors.PeerNotRegisteredError)):
            forger.send("population", env)
        rec = population.records_since(mark)[0]
        assert rec.decision == common_pb2.DENY
        assert rec.reason_code in ("certificate_revoked", "peer_not_registered")
        forger.close()
    finally:
        inst.close()
