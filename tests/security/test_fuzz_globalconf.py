"""Fuzzing global-configuration verification: random and mutated bytes never verify and fail
with coded errors; even a registry-signed configuration full of garbage (a registry bug, or an
attacker holding its key) yields coded errors from every accessor a security server uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from cdx import crypto, globalconf
from cdx.errors import (
    CdxError,
    ConfExpiredError,
    ConfRollbackError,
    ConfSignatureError,
    ConfWrongInstanceError,
    LimitExceededError,
    MalformedError,
)
from cdx.v1 import common_pb2, registry_pb2

from .fuzzing import expect_error, fuzz_settings, mutated, outcome, protobuf_messages

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
REGISTRY = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
ANCHOR = globalconf.Anchor("VN", REGISTRY.public_key())
SIGNING = crypto.KeySigner(crypto.generate_signing_key("ed25519"))


def _conf(version: int = 7) -> registry_pb2.GlobalConf:
    return registry_pb2.GlobalConf(
        instance="VN",
        version=version,
        issued_at_ms=globalconf.to_ms(NOW),
        expires_at_ms=globalconf.to_ms(NOW + timedelta(minutes=10)),
        members=[registry_pb2.Member(id="VN:GOV:BCA", name="Police", subsystems=["population"])],
        servers=[
            registry_pb2.SecurityServer(
                id="VN:GOV:BCA:ss1",
                address="127.0.0.1:1",
                hpke_public_key=crypto.raw_x25519_public(crypto.generate_hpke_key().public_key()),
                subsystems=["VN:GOV:BCA:population"],
                auth_cert_fingerprint="ab" * 32,
                signing_key_id=SIGNING.key_id,
            )
        ],
        services=[registry_pb2.Service(id="VN:GOV:BCA:population/person/v1", fields=["a", "b"])],
        agreements=[
            registry_pb2.Agreement(
                id="ag1",
                client="VN:GOV:VSS:benefits",
                service="VN:GOV:BCA:population/person/v1",
                purpose="P",
                lawful_basis=common_pb2.CONSENT,
                fields=["a"],
            )
        ],
        revoked_serials=["12345"],
    )


VALID = globalconf.sign_global_conf(_conf(), REGISTRY)
LAST = globalconf.verify_global_conf(VALID, ANCHOR, NOW)
VERIFY_ERRORS = (
    LimitExceededError,
    MalformedError,
    ConfSignatureError,
    ConfWrongInstanceError,
    ConfRollbackError,
    ConfExpiredError,
)


@fuzz_settings()
@given(raw=st.one_of(st.binary(max_size=400), mutated(VALID)))
def test_fuzz_verify_global_conf_random_and_mutated(raw: bytes) -> None:
    result = outcome(globalconf.verify_global_conf, raw, ANCHOR, NOW)
    if isinstance(result, Exception):
        assert isinstance(result, VERIFY_ERRORS), result
        return
    # The key id outside the signature is a hint; the signed body must be the registry's.
    signed = registry_pb2.SignedGlobalConf.FromString(raw)
    assert signed.conf == registry_pb2.SignedGlobalConf.FromString(VALID).conf


def _exercise(conf: globalconf.VerifiedGlobalConf) -> None:
    """Touch every index and derived key a security server reads from a configuration."""
    for server in conf.servers.values():
        for attr in ("signing_public_key", "hpke_public_key", "witness_public_key"):
            outcome(getattr, server, attr)
        conf.server_for_subsystem(next(iter(server.subsystems), ""))
        conf.server_by_fingerprint(server.auth_fingerprint)
    for agreement in conf.agreements:
        conf.agreements_for(agreement.client, agreement.service)
    _ = conf.services, conf.members, conf.purposes, conf.identity_providers
    conf.is_revoked("00", 1)
    conf.age(NOW)
    list(globalconf.subsystems_of(conf, "VN:GOV:BCA"))


@fuzz_settings(scale=0.5)
@given(
    conf=protobuf_messages(registry_pb2.GlobalConf, depth=3),
    instance_matches=st.booleans(),
    fresh=st.booleans(),
)
def test_fuzz_registry_signed_garbage(
    conf: registry_pb2.GlobalConf, instance_matches: bool, fresh: bool
) -> None:
    if instance_matches:
        conf.instance = "VN"
    if fresh:
        conf.issued_at_ms = globalconf.to_ms(NOW)
        conf.expires_at_ms = globalconf.to_ms(NOW + timedelta(minutes=1))
    raw = globalconf.sign_global_conf(conf, REGISTRY)
    result = outcome(globalconf.verify_global_conf, raw, ANCHOR, NOW, last=LAST)
    if isinstance(result, CdxError):
        assert isinstance(result, VERIFY_ERRORS), result
        return
    _exercise(result)


@fuzz_settings()
@given(
    data=st.one_of(
        st.binary(max_size=300),
        mutated(ANCHOR.to_json()),
        st.recursive(st.none() | st.text(max_size=5), lambda x: st.lists(x, max_size=3)).map(
            lambda v: __import__("json").dumps(v).encode()
        ),
    )
)
def test_fuzz_anchor_file(data: bytes) -> None:
    result = outcome(globalconf.Anchor.from_json, data)
    if isinstance(result, Exception):
        assert isinstance(result, MalformedError)


def test_oversized_global_conf_is_refused_unread() -> None:
    expect_error(
        LimitExceededError,
        globalconf.verify_global_conf,
        b"\x00" * (globalconf.MAX_CONF_BYTES + 1),
        ANCHOR,
        NOW,
    )


def test_rolled_back_global_conf_is_refused() -> None:
    older = globalconf.sign_global_conf(_conf(version=6), REGISTRY)
    expect_error(ConfRollbackError, globalconf.verify_global_conf, older, ANCHOR, NOW, last=LAST)


def test_global_conf_from_another_instance_is_refused() -> None:
    other = globalconf.Anchor("EE", REGISTRY.public_key())
    expect_error(ConfWrongInstanceError, globalconf.verify_global_conf, VALID, other, NOW)


def test_global_conf_signed_by_another_key_is_refused() -> None:
    forged = globalconf.sign_global_conf(_conf(), crypto.KeySigner(crypto.generate_signing_key()))
    expect_error(ConfSignatureError, globalconf.verify_global_conf, forged, ANCHOR, NOW)


# --- regressions found by the fuzz tests above --------------------------------------------------


def test_timestamp_out_of_range_is_malformed_not_a_crash() -> None:
    conf = _conf()
    conf.issued_at_ms = -(2**63)
    raw = globalconf.sign_global_conf(conf, REGISTRY)
    expect_error(MalformedError, globalconf.verify_global_conf, raw, ANCHOR, NOW)
    conf.issued_at_ms, conf.expires_at_ms = globalconf.to_ms(NOW), 2**63 - 1
    raw = globalconf.sign_global_conf(conf, REGISTRY)
    expect_error(MalformedError, globalconf.verify_global_conf, raw, ANCHOR, NOW)


def test_non_ascii_digit_revoked_serial_is_ignored_not_a_crash() -> None:
    conf = _conf()
    conf.revoked_serials[:] = ["²", "٣", "1" * 5000, "42"]
    verified = globalconf.verify_global_conf(
        globalconf.sign_global_conf(conf, REGISTRY), ANCHOR, NOW
    )
    assert verified.revoked_serials == frozenset({42})


def test_garbage_registered_keys_are_malformed_not_a_crash() -> None:
    conf = _conf()
    conf.servers[0].signing_cert = b"\x30\x03\x02\x01"
    conf.servers[0].witness_public_key = b"\x01" * 7
    verified = globalconf.verify_global_conf(
        globalconf.sign_global_conf(conf, REGISTRY), ANCHOR, NOW
    )
    server = verified.servers["VN:GOV:BCA:ss1"]
    expect_error(MalformedError, getattr, server, "signing_public_key")
    expect_error(MalformedError, getattr, server, "witness_public_key")


def test_deeply_nested_anchor_file_is_malformed_not_a_crash() -> None:
    expect_error(MalformedError, globalconf.Anchor.from_json, b"[" * 100_000)
