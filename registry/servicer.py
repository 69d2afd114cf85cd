"""gRPC servicers of the registry: thin mappers between protobuf and ``RegistryService``.

Who the caller is comes only from its verified TLS client certificate (the server requires
one from the instance CA). The admin API accepts exactly one kind of caller: a certificate
naming ``urn:cdx:admin:<name>`` that has not been revoked; the history records ``admin:<name>``
as the actor. ``GetGlobalConfiguration`` is open to every mTLS peer whose certificate is not
revoked (security servers poll it; the configuration holds public keys and rules, no secrets).
"""

from __future__ import annotations

import grpc
from cryptography import x509

from cdx import errors, pki, rpc
from cdx.globalconf import identity_provider_info
from cdx.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from registry.service import RegistryService

ADMIN_URI_PREFIX = "urn:cdx:admin:"
_ANCHOR_FIELDS = (
    "consent_service_key",
    "consent_service_address",
    "audit_log_origin",
    "audit_log_key",
    "audit_log_address",
    "audit_service_key",
    "identity_providers",
    "witness_quorum",
    "production",
    "representation_authority",
    "audit_tiles_url",
)


def _peer(context: grpc.ServicerContext) -> x509.Certificate:
    cert = rpc.peer_certificate(context)
    if cert is None:
        raise errors.UnauthenticatedError("a client certificate is required")
    return cert


def _not_revoked(service: RegistryService, cert: x509.Certificate) -> None:
    if service.is_certificate_revoked(pki.fingerprint(cert)):
        raise errors.CertificateRevokedError()


def admin_actor(service: RegistryService, context: grpc.ServicerContext) -> str:
    """The actor name of an admin caller (``admin:<name>``).

    Raises:
        UnauthenticatedError: no client certificate.
        PermissionDeniedError: the certificate names no admin.
        CertificateRevokedError: the admin certificate was revoked.
    """
    cert = _peer(context)
    admins = [u for u in pki.certificate_uris(cert) if u.startswith(ADMIN_URI_PREFIX)]
    if len(admins) != 1 or len(admins[0]) == len(ADMIN_URI_PREFIX):
        raise errors.PermissionDeniedError("the registry admin API needs an admin certificate")
    _not_revoked(service, cert)
    return "admin:" + admins[0][len(ADMIN_URI_PREFIX) :]


class GlobalConfServicer(registry_pb2_grpc.GlobalConfServiceServicer):  # type: ignore[misc]
    def __init__(self, service: RegistryService) -> None:
        self._service = service

    def GetGlobalConfiguration(
        self, request: registry_pb2.GetGlobalConfRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetGlobalConfResponse:
        _not_revoked(self._service, _peer(context))
        raw = self._service.conf_if_newer(request.if_newer_than_version)
        if raw is None:
            return registry_pb2.GetGlobalConfResponse(not_modified=True)
        return registry_pb2.GetGlobalConfResponse(
            conf=registry_pb2.SignedGlobalConf.FromString(raw)
        )


def _member(info: tuple[str, str, tuple[str, ...]]) -> registry_pb2.Member:
    return registry_pb2.Member(id=info[0], name=info[1], subsystems=list(info[2]))


class RegistryAdminServicer(registry_pb2_grpc.RegistryAdminServicer):  # type: ignore[misc]
    def __init__(self, service: RegistryService) -> None:
        self._service = service

    def _actor(self, context: grpc.ServicerContext) -> str:
        return admin_actor(self._service, context)

    def AddMember(
        self, request: registry_pb2.AddMemberRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Member:
        actor = self._actor(context)
        self._service.add_member(request.id, request.name, actor)
        return _member(self._service.get_member(request.id))

    def AddSubsystem(
        self, request: registry_pb2.AddSubsystemRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Member:
        actor = self._actor(context)
        self._service.add_subsystem(request.id, actor)
        return _member(self._service.get_member(request.id.rsplit(":", 1)[0]))

    def RegisterServer(
        self, request: registry_pb2.RegisterServerRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RegisterServerResponse:
        actor = self._actor(context)
        certs = self._service.register_server(
            request.id,
            request.address,
            request.auth_csr,
            request.signing_csr,
            request.hpke_public_key,
            list(request.subsystems),
            actor,
            dns_names=list(request.dns_names),
            ip_addresses=list(request.ip_addresses),
            witness_public_raw=request.witness_public_key,
        )
        return registry_pb2.RegisterServerResponse(
            auth_cert=certs.auth_cert_pem, signing_cert=certs.signing_cert_pem, ca_cert=certs.ca_pem
        )

    def RevokeServer(
        self, request: registry_pb2.RevokeServerRequest, context: grpc.ServicerContext
    ) -> common_pb2.Empty:
        actor = self._actor(context)
        self._service.revoke_server(request.id, request.reason, actor)
        return common_pb2.Empty()

    def RevokeCertificate(
        self, request: registry_pb2.RevokeCertificateRequest, context: grpc.ServicerContext
    ) -> common_pb2.Empty:
        actor = self._actor(context)
        self._service.revoke_certificate(request.fingerprint, request.reason, actor)
        return common_pb2.Empty()

    def AddService(
        self, request: registry_pb2.Service, context: grpc.ServicerContext
    ) -> registry_pb2.Service:
        actor = self._actor(context)
        self._service.add_service(
            request.id,
            list(request.fields),
            list(request.data_categories),
            request.description,
            actor,
        )
        return request

    def AddPurpose(
        self, request: registry_pb2.Purpose, context: grpc.ServicerContext
    ) -> registry_pb2.Purpose:
        actor = self._actor(context)
        self._service.add_purpose(request.code, request.description, request.description_vi, actor)
        return request

    def AddAgreement(
        self, request: registry_pb2.Agreement, context: grpc.ServicerContext
    ) -> registry_pb2.Agreement:
        actor = self._actor(context)
        if request.lawful_basis == common_pb2.LAWFUL_BASIS_UNSPECIFIED:
            raise errors.InvalidArgumentError("an agreement needs a lawful basis")
        try:
            basis = common_pb2.LawfulBasis.Name(request.lawful_basis)
        except ValueError as exc:
            raise errors.InvalidArgumentError("unknown lawful basis") from exc
        agreement_id = self._service.add_agreement(
            request.client,
            request.service,
            request.purpose,
            basis,
            request.legal_reference,
            list(request.fields),
            request.rate_limit_per_minute,
            request.retention_days,
            request.visibility == common_pb2.SEALED,
            actor=actor,
        )
        response = registry_pb2.Agreement()
        response.CopyFrom(request)
        response.id = agreement_id
        if response.visibility == common_pb2.VISIBILITY_UNSPECIFIED:
            response.visibility = common_pb2.NORMAL
        return response

    def RemoveAgreement(
        self, request: registry_pb2.RemoveAgreementRequest, context: grpc.ServicerContext
    ) -> common_pb2.Empty:
        actor = self._actor(context)
        self._service.remove_agreement(request.id, actor)
        return common_pb2.Empty()

    def SetTrustAnchors(
        self, request: registry_pb2.SetTrustAnchorsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.TrustAnchors:
        actor = self._actor(context)
        a = request.anchors
        unknown = set(request.set_fields) - set(_ANCHOR_FIELDS)
        if unknown:
            raise errors.InvalidArgumentError(
                f"unknown trust anchor fields: {sorted(unknown)}"[:200]
            )

        def wanted(name: str) -> bool:
            if request.set_fields:
                return name in request.set_fields
            if name == "identity_providers":
                return len(a.identity_providers) > 0
            return bool(getattr(a, name))

        idps = [identity_provider_info(p) for p in a.identity_providers]
        return self._service.set_trust_anchors(
            consent_service_key_der=a.consent_service_key
            if wanted("consent_service_key")
            else None,
            consent_service_address=(
                a.consent_service_address if wanted("consent_service_address") else None
            ),
            audit_log_origin=a.audit_log_origin if wanted("audit_log_origin") else None,
            audit_log_key=a.audit_log_key if wanted("audit_log_key") else None,
            audit_log_address=a.audit_log_address if wanted("audit_log_address") else None,
            audit_service_key_der=a.audit_service_key if wanted("audit_service_key") else None,
            identity_providers=idps if wanted("identity_providers") else None,
            witness_quorum=a.witness_quorum if wanted("witness_quorum") else None,
            production=a.production if wanted("production") else None,
            representation_authority=(
                a.representation_authority if wanted("representation_authority") else None
            ),
            audit_tiles_url=a.audit_tiles_url if wanted("audit_tiles_url") else None,
            actor=actor,
        )

    def IssueClientCertificate(
        self, request: registry_pb2.IssueClientCertificateRequest, context: grpc.ServicerContext
    ) -> registry_pb2.IssueClientCertificateResponse:
        actor = self._actor(context)
        issued = self._service.issue_client_certificate(
            request.csr,
            request.kind,
            request.name,
            actor,
            dns_names=list(request.dns_names),
            ip_addresses=list(request.ip_addresses),
        )
        return registry_pb2.IssueClientCertificateResponse(
            cert=issued.cert_pem, ca_cert=issued.ca_pem
        )

    def ListHistory(
        self, request: registry_pb2.ListHistoryRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListHistoryResponse:
        self._actor(context)
        entries = self._service.history(request.limit or 100)
        return registry_pb2.ListHistoryResponse(
            entries=[
                registry_pb2.HistoryEntry(
                    seq=e.seq,
                    at_ms=int(e.at.timestamp() * 1000),
                    actor=e.actor,
                    action=e.action,
                    target=e.target,
                    detail=e.detail,
                )
                for e in entries
            ]
        )


def add_to_server(server: grpc.Server, service: RegistryService) -> None:
    registry_pb2_grpc.add_GlobalConfServiceServicer_to_server(GlobalConfServicer(service), server)
    registry_pb2_grpc.add_RegistryAdminServicer_to_server(RegistryAdminServicer(service), server)
