"""SQL-injection, path and format strings in every identifier field of the registry's admin API
(real registry, mutual TLS as an admin). Each is refused with a stable code and publishes
nothing; whatever the registry does accept it stores as plain data, and the signed global
configuration still verifies.

Non-admin callers at the admin API: ``tests/integration/test_registry_admin.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import grpc
import pytest

from cdx import crypto, errors, pki, rpc
from cdx.clock import utcnow
from cdx.globalconf import verify_global_conf
from cdx.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from tests.integration.exchange_harness import ExchangeInstance, build_instance

from .fuzzing import HOSTILE_STRINGS

pytestmark = pytest.mark.xdist_group("attack-registry")

SERVICE = "VN:GOV:BCA:population/person/v1"
SAFE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
CLIENT = "VN:GOV:VSS:benefits"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeInstance]:
    inst = build_instance(tmp_path_factory.mktemp("attack-registry"), start=False)
    yield inst
    inst.close()


@pytest.fixture(scope="module")
def admin(instance: ExchangeInstance) -> Iterator[registry_pb2_grpc.RegistryAdminStub]:
    channel = rpc.secure_channel(instance.registry.address, instance.admin_identity)
    yield registry_pb2_grpc.RegistryAdminStub(channel)
    channel.close()


def _csr() -> bytes:
    return pki.build_csr(crypto.generate_signing_key(), "x")


Call = Callable[[registry_pb2_grpc.RegistryAdminStub, str], object]

#: (name, call putting the hostile string in one identifier field)
CALLS: list[tuple[str, Call]] = [
    ("AddMember.id", lambda s, h: s.AddMember(registry_pb2.AddMemberRequest(id=h, name="x"))),
    ("AddSubsystem.id", lambda s, h: s.AddSubsystem(registry_pb2.AddSubsystemRequest(id=h))),
    ("AddService.id", lambda s, h: s.AddService(registry_pb2.Service(id=h, fields=["a"]))),
    ("AddService.fields", lambda s, h: s.AddService(registry_pb2.Service(id=SERVICE + "2", fields=[h]))),
    (
        "AddAgreement.client",
        lambda s, h: s.AddAgreement(
            registry_pb2.Agreement(client=h, service=SERVICE, purpose="TAX_ASSESSMENT",
                                   lawful_basis=common_pb2.LEGAL_OBLIGATION, legal_reference="L",
                                   fields=["full_name"])
        ),
    ),
    (
        "AddAgreement.service",
        lambda s, h: s.AddAgreement(
            registry_pb2.Agreement(client=CLIENT, service=h, purpose="TAX_ASSESSMENT",
                                   lawful_basis=common_pb2.LEGAL_OBLIGATION, legal_reference="L",
                                   fields=["full_name"])
        ),
    ),
    (
        "AddAgreement.purpose",
        lambda s, h: s.AddAgreement(
            registry_pb2.Agreement(client=CLIENT, service=SERVICE, purpose=h,
                                   lawful_basis=common_pb2.LEGAL_OBLIGATION, legal_reference="L",
                                   fields=["full_name"])
        ),
    ),
    (
        "AddAgreement.fields",
        lambda s, h: s.AddAgreement(
            registry_pb2.Agreement(client=CLIENT, service=SERVICE, purpose="TAX_ASSESSMENT",
                                   lawful_basis=common_pb2.LEGAL_OBLIGATION, legal_reference="L",
                                   fields=[h])
        ),
    ),
    ("RemoveAgreement.id", lambda s, h: s.RemoveAgreement(registry_pb2.RemoveAgreementRequest(id=h))),
    ("RevokeServer.id", lambda s, h: s.RevokeServer(registry_pb2.RevokeServerRequest(id=h, reason="r"))),
    (
        "RevokeCertificate.fingerprint",
        lambda s, h: s.RevokeCertificate(registry_pb2.RevokeCertificateRequest(fingerprint=h, reason="r")),
    ),
    (
        "IssueClientCertificate.kind",
        lambda s, h: s.IssueClientCertificate(
            registry_pb2.IssueClientCertificateRequest(csr=_csr(), kind=h, name="x")
        ),
    ),
    (
        "IssueClientCertificate.name",
        lambda s, h: s.IssueClientCertificate(
            registry_pb2.IssueClientCertificateRequest(csr=_csr(), kind="client", name=h)
        ),
    ),
    (
        "RegisterServer.id",
        lambda s, h: s.RegisterServer(
            registry_pb2.RegisterServerRequest(id=h, address="127.0.0.1:1", auth_csr=_csr(),
                                               signing_csr=_csr(), hpke_public_key=b"\x01" * 32)
        ),
    ),
    (
        "RegisterServer.subsystems",
        lambda s, h: s.RegisterServer(
            registry_pb2.RegisterServerRequest(id="VN:GOV:VSS:ss9", address="127.0.0.1:1",
                                               auth_csr=_csr(), signing_csr=_csr(),
                                               hpke_public_key=b"\x01" * 32, subsystems=[h])
        ),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_hostile_strings_in_every_registry_identifier_field(
    instance: ExchangeInstance, admin: registry_pb2_grpc.RegistryAdminStub, name: str, call: Call
) -> None:
    service = instance.registry_service
    for hostile in HOSTILE_STRINGS:
        version = service.conf_version()
        try:
            call(admin, hostile)
        except grpc.RpcError as exc:
            error = rpc.error_from_rpc(exc)
        else:
            # Accepted only because it is a well-formed name (e.g. "_" is a valid field name).
            assert SAFE_NAME.fullmatch(hostile), f"{name}={hostile!r} was accepted"
            continue
        assert error.code not in ("internal", "unavailable", "error"), (name, hostile, error.code)
        assert isinstance(
            error, errors.InvalidArgumentError | errors.NotFoundError | errors.PermissionDeniedError
        ), (name, hostile, error.code)
        assert service.conf_version() == version, f"{name}={hostile!r} published a change"
    # The configuration the registry signs still verifies and names nothing hostile.
    conf = verify_global_conf(
        service.current_conf(), instance.registry.paths.load_anchor(), utcnow()
    )
    raw = conf.proto.SerializeToString()
    for hostile in HOSTILE_STRINGS:
        if not SAFE_NAME.fullmatch(hostile) and len(hostile) > 3:
            assert hostile.encode() not in raw, (name, hostile)
