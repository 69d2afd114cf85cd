"""Global configuration verification (cdx.globalconf) and the last-good-copy keeping of
cdx.confclient, without sockets or databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdx import crypto, errors, globalconf, pki
from cdx.confclient import ConfClient
from cdx.globalconf import Anchor, sign_global_conf, to_ms, verify_global_conf
from cdx.rpc import TlsIdentity
from cdx.v1 import common_pb2, registry_pb2

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SERVICE = "VN:GOV:BCA:population/person/v1"
CLIENT = "VN:GOV:VSS:benefits"


@pytest.fixture(scope="module")
def registry_signer() -> crypto.KeySigner:
    return crypto.KeySigner(crypto.generate_signing_key("ed25519"))


@pytest.fixture(scope="module")
def anchor(registry_signer: crypto.KeySigner) -> Anchor:
    return Anchor("VN", registry_signer.public_key())


@pytest.fixture(scope="module")
def server_cert() -> tuple[bytes, bytes, str]:
    """(auth DER, signing DER, auth fingerprint) of a server certified by a throwaway CA."""
    from cdx.ids import SecurityServerId

    ca_key, ca_cert = pki.create_ca("VN", NOW)
    sid = SecurityServerId.parse("VN:GOV:BCA:ss1")
    auth = pki.issue_auth_certificate(
        ca_key, ca_cert, pki.build_csr(crypto.generate_signing_key(), "ss1"), sid, NOW
    )
    signing = pki.issue_signing_certificate(
        ca_key, ca_cert, pki.build_csr(crypto.generate_signing_key(), "ss1"), sid, NOW
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return (
        auth.public_bytes(Encoding.DER),
        signing.public_bytes(Encoding.DER),
        pki.fingerprint(auth),
    )


def make_conf(
    version: int = 5,
    *,
    instance: str = "VN",
    issued: datetime = NOW,
    validity: timedelta = timedelta(minutes=10),
    server: tuple[bytes, bytes, str] | None = None,
) -> registry_pb2.GlobalConf:
    conf = registry_pb2.GlobalConf(
        instance=instance,
        version=version,
        issued_at_ms=to_ms(issued),
        expires_at_ms=to_ms(issued + validity),
    )
    conf.members.add(id="VN:GOV:BCA", name="Police", subsystems=["population"])
    conf.members.add(id="VN:GOV:VSS", name="Social insurance", subsystems=["benefits"])
    conf.services.add(id=SERVICE, fields=["full_name", "birth_date", "address"])
    conf.purposes.add(code="SOCIAL_BENEFIT", description="Benefit eligibility")
    conf.agreements.add(
        id="agr-1",
        client=CLIENT,
        service=SERVICE,
        purpose="SOCIAL_BENEFIT",
        lawful_basis=common_pb2.LEGAL_OBLIGATION,
        legal_reference="Law 41/2024",
        fields=["full_name", "birth_date"],
        rate_limit_per_minute=60,
        visibility=common_pb2.SEALED,
    )
    if server is not None:
        auth_der, signing_der, fp = server
        conf.servers.add(
            id="VN:GOV:BCA:ss1",
            address="127.0.0.1:5001",
            auth_cert=auth_der,
            signing_cert=signing_der,
            hpke_public_key=crypto.raw_x25519_public(crypto.generate_hpke_key().public_key()),
            subsystems=["VN:GOV:BCA:population"],
            auth_cert_fingerprint=fp,
        )
    conf.revoked_cert_fingerprints.append("ab" * 32)
    conf.revoked_serials.append("12345")
    return conf


def signed(conf: registry_pb2.GlobalConf, signer: crypto.Signer) -> bytes:
    return sign_global_conf(conf, signer)


# --- verification --------------------------------------------------------------------------------


def test_valid_conf_verifies_and_indexes_its_content(
    registry_signer: crypto.KeySigner, anchor: Anchor, server_cert: tuple[bytes, bytes, str]
) -> None:
    raw = signed(make_conf(server=server_cert), registry_signer)
    conf = verify_global_conf(raw, anchor, NOW + timedelta(minutes=1))
    assert (conf.instance, conf.version, conf.raw) == ("VN", 5, raw)
    assert conf.registry_key_id == anchor.key_id
    [agreement] = conf.agreements_for(CLIENT, SERVICE)
    assert agreement.lawful_basis == "LEGAL_OBLIGATION"
    assert agreement.fields == {"full_name", "birth_date"}
    assert agreement.sealed and agreement.rate_limit_per_minute == 60
    assert conf.agreements_for(SERVICE, CLIENT) == ()
    assert conf.services[SERVICE].subsystem == "VN:GOV:BCA:population"
    server = conf.server_for_subsystem("VN:GOV:BCA:population")
    assert server is not None and server.member == "VN:GOV:BCA"
    assert conf.server_by_fingerprint(server_cert[2]) is server
    assert crypto.key_id(server.signing_public_key)  # narrows the certificate key
    assert conf.is_revoked("ab" * 32) and conf.is_revoked("00", 12345)
    assert not conf.is_revoked(server_cert[2], 1)
    assert list(globalconf.subsystems_of(conf, "VN:GOV:VSS")) == [CLIENT]


def test_conf_signed_by_another_key_is_rejected(anchor: Anchor) -> None:
    other = crypto.KeySigner(crypto.generate_signing_key("ed25519"))
    with pytest.raises(errors.ConfSignatureError) as info:
        verify_global_conf(signed(make_conf(), other), anchor, NOW)
    assert info.value.code == "conf_invalid_signature"


def test_conf_signed_without_the_domain_prefix_is_rejected(
    registry_signer: crypto.KeySigner, anchor: Anchor
) -> None:
    body = make_conf().SerializeToString(deterministic=True)
    raw = registry_pb2.SignedGlobalConf(
        conf=body, signature=registry_signer.sign(body), key_id=registry_signer.key_id
    ).SerializeToString()
    with pytest.raises(errors.ConfSignatureError):
        verify_global_conf(raw, anchor, NOW)


def test_tampered_conf_is_rejected(registry_signer: crypto.KeySigner, anchor: Anchor) -> None:
    outer = registry_pb2.SignedGlobalConf.FromString(signed(make_conf(), registry_signer))
    conf = registry_pb2.GlobalConf.FromString(outer.conf)
    conf.agreements[0].fields.append("address")  # widen the agreement
    outer.conf = conf.SerializeToString()
    with pytest.raises(errors.ConfSignatureError):
        verify_global_conf(outer.SerializeToString(), anchor, NOW)


def test_expired_conf_is_rejected(registry_signer: crypto.KeySigner, anchor: Anchor) -> None:
    raw = signed(make_conf(), registry_signer)
    with pytest.raises(errors.ConfExpiredError) as info:
        verify_global_conf(raw, anchor, NOW + timedelta(minutes=10))
    assert info.value.code == "conf_expired"
    kept = verify_global_conf(raw, anchor, NOW + timedelta(hours=1), allow_expired=True)
    with pytest.raises(errors.ConfExpiredError):
        kept.check_fresh(NOW + timedelta(hours=1))


def test_rolled_back_version_is_rejected(registry_signer: crypto.KeySigner, anchor: Anchor) -> None:
    last = verify_global_conf(signed(make_conf(7), registry_signer), anchor, NOW)
    with pytest.raises(errors.ConfRollbackError) as info:
        verify_global_conf(signed(make_conf(6), registry_signer), anchor, NOW, last=last)
    assert info.value.code == "conf_rollback"


def test_same_version_with_other_content_is_rejected(
    registry_signer: crypto.KeySigner, anchor: Anchor
) -> None:
    last = verify_global_conf(signed(make_conf(7), registry_signer), anchor, NOW)
    assert verify_global_conf(last.raw, anchor, NOW, last=last).version == 7
    forked = make_conf(7)
    forked.agreements[0].fields.append("address")
    with pytest.raises(errors.ConfRollbackError):
        verify_global_conf(signed(forked, registry_signer), anchor, NOW, last=last)


def test_conf_of_another_instance_is_rejected(
    registry_signer: crypto.KeySigner, anchor: Anchor
) -> None:
    with pytest.raises(errors.ConfWrongInstanceError) as info:
        verify_global_conf(signed(make_conf(instance="EE"), registry_signer), anchor, NOW)
    assert info.value.code == "conf_wrong_instance"


def test_signature_is_checked_before_anything_else(anchor: Anchor) -> None:
    other = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
    bad = make_conf(1, instance="EE", issued=NOW - timedelta(days=1))
    with pytest.raises(errors.ConfSignatureError):
        verify_global_conf(signed(bad, other), anchor, NOW)


def test_rejections_have_distinct_codes() -> None:
    classes = [
        errors.ConfSignatureError,
        errors.ConfExpiredError,
        errors.ConfRollbackError,
        errors.ConfWrongInstanceError,
    ]
    assert len({c.code for c in classes}) == len(classes)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\xff\xff\xff", errors.MalformedError),
        (b"\x0a\x05abc", errors.MalformedError),  # truncated length-delimited field
        (b"", errors.ConfSignatureError),  # parses as an empty message: no valid signature
        (b"\x0a" + b"\x80" * 11, errors.MalformedError),
        (b"\x00" * (globalconf.MAX_CONF_BYTES + 1), errors.LimitExceededError),
    ],
)
def test_malformed_input_raises_a_domain_error(
    anchor: Anchor, raw: bytes, error: type[errors.CdxError]
) -> None:
    with pytest.raises(error):
        verify_global_conf(raw, anchor, NOW)


def test_signed_bytes_that_are_not_a_conf_are_malformed(
    registry_signer: crypto.KeySigner, anchor: Anchor
) -> None:
    body = b"\xff\xff\xff not a protobuf"
    raw = registry_pb2.SignedGlobalConf(
        conf=body, signature=registry_signer.sign(globalconf.SIGNING_CONTEXT + body)
    ).SerializeToString()
    with pytest.raises(errors.MalformedError):
        verify_global_conf(raw, anchor, NOW)


def test_p256_registry_key_works_too() -> None:
    signer = crypto.KeySigner(crypto.generate_signing_key("ecdsa-p256"))
    conf = verify_global_conf(signed(make_conf(), signer), Anchor("VN", signer.public_key()), NOW)
    assert conf.version == 5


# --- anchor file ---------------------------------------------------------------------------------


def test_anchor_round_trips(anchor: Anchor) -> None:
    again = Anchor.from_json(anchor.to_json())
    assert (again.instance, again.key_id) == (anchor.instance, anchor.key_id)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"format": "cdx-anchor/v1"}',
        b'{"format": "other", "instance": "VN", "registry_public_key": ""}',
        b'{"format": "cdx-anchor/v1", "instance": "", "registry_public_key": "x"}',
        b'{"format": "cdx-anchor/v1", "instance": 5, "registry_public_key": "x"}',
    ],
)
def test_malformed_anchor_files_are_rejected(data: bytes) -> None:
    with pytest.raises(errors.MalformedError):
        Anchor.from_json(data)


def test_anchor_with_a_non_signing_key_is_rejected(anchor: Anchor) -> None:
    import json

    obj = json.loads(anchor.to_json())
    hpke = crypto.generate_hpke_key().public_key()
    obj["registry_public_key"] = crypto.public_key_to_pem(hpke).decode()
    with pytest.raises(errors.MalformedError):
        Anchor.from_json(json.dumps(obj).encode())


def test_anchor_of_another_instance_name_rejects_the_conf(
    registry_signer: crypto.KeySigner,
) -> None:
    other = Anchor("EE", registry_signer.public_key())
    with pytest.raises(errors.ConfWrongInstanceError):
        verify_global_conf(signed(make_conf(), registry_signer), other, NOW)


# --- last good copy (cdx.confclient without the network) -----------------------------------------

_NO_IDENTITY = TlsIdentity(b"", b"", b"")  # never used: these tests make no calls


def _client(anchor: Anchor, path: Path, now: datetime = NOW) -> ConfClient:
    return ConfClient("127.0.0.1:9", _NO_IDENTITY, anchor, path, now_fn=lambda: now)


def test_accepted_conf_is_kept_on_disk_and_reloaded(
    tmp_path: Path, registry_signer: crypto.KeySigner, anchor: Anchor
) -> None:
    path = tmp_path / "globalconf.bin"
    client = _client(anchor, path)
    with pytest.raises(errors.UnavailableError):
        client.current()
    seen: list[int] = []
    client.on_update(lambda conf: seen.append(conf.version))
    raw = signed(make_conf(3), registry_signer)
    client.accept(raw)
    assert path.read_bytes() == raw and seen == [3]
    assert path.stat().st_mode & 0o022 == 0  # nobody else may rewrite it
    assert [p.name for p in tmp_path.iterdir()] == ["globalconf.bin"]  # no temp files left
    client.accept(raw)  # the same copy again is no update
    assert seen == [3]

    restarted = _client(anchor, path, NOW + timedelta(minutes=1))
    assert restarted.current().version == 3
    assert restarted.age() == timedelta(minutes=1)


def test_expired_copy_is_kept_but_refused(
    tmp_path: Path, registry_signer: crypto.KeySigner, anchor: Anchor
) -> None:
    path = tmp_path / "globalconf.bin"
    _client(anchor, path).accept(signed(make_conf(4), registry_signer))
    later = NOW + timedelta(minutes=30)
    restarted = _client(anchor, path, later)
    held = restarted.latest()
    assert held is not None and held.version == 4 and restarted.version == 4
    assert restarted.age() == timedelta(minutes=30)
    with pytest.raises(errors.ConfExpiredError):
        restarted.current()
    # The expired copy is still the version floor: an older copy is a rollback.
    with pytest.raises(errors.ConfRollbackError):
        restarted.accept(signed(make_conf(3, issued=later), registry_signer))
    assert restarted.accept(signed(make_conf(5, issued=later), registry_signer)).version == 5
    assert restarted.current().version == 5


@pytest.mark.parametrize(
    ("make_raw", "error"),
    [
        (
            lambda s: signed(make_conf(9), crypto.KeySigner(crypto.generate_signing_key())),
            errors.ConfSignatureError,
        ),
        (lambda s: signed(make_conf(9, instance="EE"), s), errors.ConfWrongInstanceError),
        (lambda s: signed(make_conf(1), s), errors.ConfRollbackError),
        (
            lambda s: signed(make_conf(9, issued=NOW - timedelta(hours=1)), s),
            errors.ConfExpiredError,
        ),
    ],
    ids=["other-key", "other-instance", "rollback", "expired"],
)
def test_refused_conf_leaves_the_last_good_copy_in_force(
    tmp_path: Path,
    registry_signer: crypto.KeySigner,
    anchor: Anchor,
    make_raw: object,
    error: type[errors.CdxError],
) -> None:
    path = tmp_path / "globalconf.bin"
    client = _client(anchor, path)
    good = signed(make_conf(2), registry_signer)
    client.accept(good)
    with pytest.raises(error):
        client.accept(make_raw(registry_signer))  # type: ignore[operator]
    assert client.current().raw == good
    assert path.read_bytes() == good


def test_stored_copy_that_no_longer_verifies_is_ignored(
    tmp_path: Path, registry_signer: crypto.KeySigner, anchor: Anchor
) -> None:
    path = tmp_path / "globalconf.bin"
    path.write_bytes(signed(make_conf(8), crypto.KeySigner(crypto.generate_signing_key())))
    client = _client(anchor, path)
    assert client.latest() is None and client.version == 0
    assert isinstance(client.last_error, errors.ConfSignatureError)
    # and the forged version 8 is no floor: a genuine version 2 is accepted
    assert client.accept(signed(make_conf(2), registry_signer)).version == 2


def test_failing_listener_does_not_block_updates(
    tmp_path: Path, registry_signer: crypto.KeySigner, anchor: Anchor
) -> None:
    client = _client(anchor, tmp_path / "globalconf.bin")
    seen: list[int] = []

    def broken(_conf: globalconf.VerifiedGlobalConf) -> None:
        raise RuntimeError("listener bug")

    client.on_update(broken)
    client.on_update(lambda conf: seen.append(conf.version))
    client.accept(signed(make_conf(2), registry_signer))
    assert seen == [2] and client.version == 2


def test_conf_that_cannot_be_stored_is_still_used(
    tmp_path: Path, registry_signer: crypto.KeySigner, anchor: Anchor
) -> None:
    (tmp_path / "not-a-directory").write_bytes(b"")
    client = _client(anchor, tmp_path / "not-a-directory" / "globalconf.bin")
    assert client.accept(signed(make_conf(2), registry_signer)).version == 2
    assert client.current().version == 2
