"""Client of the registry admin API over mutual TLS (used by ``cdx registry`` and by
``cdx security-server init`` to register a server). Failed calls raise the registry's
``CdxError`` (same class and code as raised on the server)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType

from cdx import rpc
from cdx.globalconf import IdentityProviderInfo, identity_provider_to_proto
from cdx.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from registry.model import HistoryEntry, IssuedCertificate, MemberInfo, ServerCertificates


class RegistryAdminClient:
    """Admin calls to a registry at ``address`` with an admin mTLS ``identity``."""

    def __init__(
        self,
        address: str,
        identity: rpc.TlsIdentity,
        *,
        timeout: float = 10.0,
        server_name: str | None = None,
    ) -> None:
        self._channel = rpc.secure_channel(address, identity, server_name=server_name)
        self._admin = registry_pb2_grpc.RegistryAdminStub(self._channel)
        self._conf = registry_pb2_grpc.GlobalConfServiceStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> RegistryAdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: object, request: object) -> object:
        return rpc.invoke(method, request, timeout=self._timeout)  # type: ignore[arg-type]

    # --- members and servers -------------------------------------------------------------------

    def add_member(self, member_id: str, name: str) -> MemberInfo:
        m = self._call(
            self._admin.AddMember, registry_pb2.AddMemberRequest(id=member_id, name=name)
        )
        return _member(m)

    def add_subsystem(self, subsystem_id: str) -> MemberInfo:
        m = self._call(self._admin.AddSubsystem, registry_pb2.AddSubsystemRequest(id=subsystem_id))
        return _member(m)

    def register_server(
        self,
        server_id: str,
        address: str,
        auth_csr_pem: bytes,
        signing_csr_pem: bytes,
        hpke_public_raw: bytes,
        subsystems: Sequence[str],
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        witness_public_raw: bytes = b"",
    ) -> ServerCertificates:
        """Register a security server; returns its certificates (PEM) and the CA (PEM)."""
        response = self._call(
            self._admin.RegisterServer,
            registry_pb2.RegisterServerRequest(
                id=server_id,
                address=address,
                auth_csr=auth_csr_pem,
                signing_csr=signing_csr_pem,
                hpke_public_key=hpke_public_raw,
                subsystems=list(subsystems),
                dns_names=list(dns_names),
                ip_addresses=list(ip_addresses),
                witness_public_key=witness_public_raw,
            ),
        )
        assert isinstance(response, registry_pb2.RegisterServerResponse)
        return ServerCertificates(response.auth_cert, response.signing_cert, response.ca_cert)

    def revoke_server(self, server_id: str, reason: str) -> None:
        self._call(
            self._admin.RevokeServer, registry_pb2.RevokeServerRequest(id=server_id, reason=reason)
        )

    def revoke_certificate(self, fingerprint: str, reason: str) -> None:
        self._call(
            self._admin.RevokeCertificate,
            registry_pb2.RevokeCertificateRequest(fingerprint=fingerprint, reason=reason),
        )

    # --- services, purposes, agreements --------------------------------------------------------

    def add_service(
        self,
        service_id: str,
        fields: Sequence[str],
        data_categories: Sequence[str] = (),
        description: str = "",
    ) -> None:
        self._call(
            self._admin.AddService,
            registry_pb2.Service(
                id=service_id,
                fields=list(fields),
                data_categories=list(data_categories),
                description=description,
            ),
        )

    def add_purpose(self, code: str, description: str, description_vi: str = "") -> None:
        self._call(
            self._admin.AddPurpose,
            registry_pb2.Purpose(code=code, description=description, description_vi=description_vi),
        )

    def add_agreement(
        self,
        client: str,
        service: str,
        purpose: str,
        lawful_basis: str,
        legal_reference: str,
        fields: Sequence[str],
        rate_limit_per_minute: int = 0,
        retention_days: int = 0,
        sealed: bool = False,
    ) -> str:
        """Add an exchange agreement; returns its id."""
        try:
            basis = common_pb2.LawfulBasis.Value(lawful_basis)
        except ValueError:
            basis = common_pb2.LAWFUL_BASIS_UNSPECIFIED
        response = self._call(
            self._admin.AddAgreement,
            registry_pb2.Agreement(
                client=client,
                service=service,
                purpose=purpose,
                lawful_basis=basis,
                legal_reference=legal_reference,
                fields=list(fields),
                rate_limit_per_minute=rate_limit_per_minute,
                retention_days=retention_days,
                visibility=common_pb2.SEALED if sealed else common_pb2.NORMAL,
            ),
        )
        assert isinstance(response, registry_pb2.Agreement)
        return response.id

    def remove_agreement(self, agreement_id: str) -> None:
        self._call(
            self._admin.RemoveAgreement, registry_pb2.RemoveAgreementRequest(id=agreement_id)
        )

    # --- anchors and certificates --------------------------------------------------------------

    def set_trust_anchors(
        self,
        *,
        consent_service_key_der: bytes | None = None,
        consent_service_address: str | None = None,
        audit_log_origin: str | None = None,
        audit_log_key: str | None = None,
        audit_log_address: str | None = None,
        audit_service_key_der: bytes | None = None,
        identity_providers: Sequence[IdentityProviderInfo] | None = None,
        witness_quorum: int | None = None,
        production: bool | None = None,
        representation_authority: str | None = None,
        audit_tiles_url: str | None = None,
    ) -> registry_pb2.TrustAnchors:
        """Set the given trust anchors (``None`` keeps the current value)."""
        anchors = registry_pb2.TrustAnchors()
        fields: list[str] = []
        for name, value in (
            ("consent_service_key", consent_service_key_der),
            ("consent_service_address", consent_service_address),
            ("audit_log_origin", audit_log_origin),
            ("audit_log_key", audit_log_key),
            ("audit_log_address", audit_log_address),
            ("audit_service_key", audit_service_key_der),
            ("witness_quorum", witness_quorum),
            ("production", production),
            ("representation_authority", representation_authority),
            ("audit_tiles_url", audit_tiles_url),
        ):
            if value is not None:
                setattr(anchors, name, value)
                fields.append(name)
        if identity_providers is not None:
            fields.append("identity_providers")
            anchors.identity_providers.extend(
                identity_provider_to_proto(p) for p in identity_providers
            )
        response = self._call(
            self._admin.SetTrustAnchors,
            registry_pb2.SetTrustAnchorsRequest(anchors=anchors, set_fields=fields),
        )
        assert isinstance(response, registry_pb2.TrustAnchors)
        return response

    def issue_client_certificate(
        self,
        csr_pem: bytes,
        kind: str,
        name: str,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> IssuedCertificate:
        """Have the CA certify ``csr_pem`` as ``urn:cdx:<kind>:<name>``."""
        response = self._call(
            self._admin.IssueClientCertificate,
            registry_pb2.IssueClientCertificateRequest(
                csr=csr_pem,
                kind=kind,
                name=name,
                dns_names=list(dns_names),
                ip_addresses=list(ip_addresses),
            ),
        )
        assert isinstance(response, registry_pb2.IssueClientCertificateResponse)
        return IssuedCertificate(response.cert, response.ca_cert)

    # --- reading -------------------------------------------------------------------------------

    def history(self, limit: int = 50) -> list[HistoryEntry]:
        response = self._call(self._admin.ListHistory, registry_pb2.ListHistoryRequest(limit=limit))
        assert isinstance(response, registry_pb2.ListHistoryResponse)
        return [
            HistoryEntry(
                e.seq,
                datetime.fromtimestamp(e.at_ms / 1000, tz=UTC),
                e.actor,
                e.action,
                e.target,
                e.detail,
            )
            for e in response.entries
        ]

    def get_global_conf(self, if_newer_than_version: int = 0) -> bytes | None:
        """The signed configuration bytes (unverified!), or ``None`` when not newer."""
        response = self._call(
            self._conf.GetGlobalConfiguration,
            registry_pb2.GetGlobalConfRequest(if_newer_than_version=if_newer_than_version),
        )
        assert isinstance(response, registry_pb2.GetGlobalConfResponse)
        if response.not_modified:
            return None
        return bytes(response.conf.SerializeToString())


def _member(m: object) -> MemberInfo:
    assert isinstance(m, registry_pb2.Member)
    return MemberInfo(m.id, m.name, tuple(m.subsystems))
