from cdx.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignedGlobalConf(_message.Message):
    __slots__ = ("conf", "signature", "key_id")
    CONF_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    conf: bytes
    signature: bytes
    key_id: str
    def __init__(self, conf: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class GlobalConf(_message.Message):
    __slots__ = ("instance", "version", "issued_at_ms", "expires_at_ms", "members", "servers", "services", "agreements", "purposes", "anchors", "revoked_cert_fingerprints", "revoked_serials")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    AGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    PURPOSES_FIELD_NUMBER: _ClassVar[int]
    ANCHORS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_CERT_FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_SERIALS_FIELD_NUMBER: _ClassVar[int]
    instance: str
    version: int
    issued_at_ms: int
    expires_at_ms: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    servers: _containers.RepeatedCompositeFieldContainer[SecurityServer]
    services: _containers.RepeatedCompositeFieldContainer[Service]
    agreements: _containers.RepeatedCompositeFieldContainer[Agreement]
    purposes: _containers.RepeatedCompositeFieldContainer[Purpose]
    anchors: TrustAnchors
    revoked_cert_fingerprints: _containers.RepeatedScalarFieldContainer[str]
    revoked_serials: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instance: _Optional[str] = ..., version: _Optional[int] = ..., issued_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., servers: _Optional[_Iterable[_Union[SecurityServer, _Mapping]]] = ..., services: _Optional[_Iterable[_Union[Service, _Mapping]]] = ..., agreements: _Optional[_Iterable[_Union[Agreement, _Mapping]]] = ..., purposes: _Optional[_Iterable[_Union[Purpose, _Mapping]]] = ..., anchors: _Optional[_Union[TrustAnchors, _Mapping]] = ..., revoked_cert_fingerprints: _Optional[_Iterable[str]] = ..., revoked_serials: _Optional[_Iterable[str]] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "name", "subsystems")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBSYSTEMS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    subsystems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., subsystems: _Optional[_Iterable[str]] = ...) -> None: ...

class SecurityServer(_message.Message):
    __slots__ = ("id", "address", "auth_cert", "signing_cert", "hpke_public_key", "subsystems", "auth_cert_fingerprint", "signing_key_id", "witness_public_key")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AUTH_CERT_FIELD_NUMBER: _ClassVar[int]
    SIGNING_CERT_FIELD_NUMBER: _ClassVar[int]
    HPKE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SUBSYSTEMS_FIELD_NUMBER: _ClassVar[int]
    AUTH_CERT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    WITNESS_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    auth_cert: bytes
    signing_cert: bytes
    hpke_public_key: bytes
    subsystems: _containers.RepeatedScalarFieldContainer[str]
    auth_cert_fingerprint: str
    signing_key_id: str
    witness_public_key: bytes
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., auth_cert: _Optional[bytes] = ..., signing_cert: _Optional[bytes] = ..., hpke_public_key: _Optional[bytes] = ..., subsystems: _Optional[_Iterable[str]] = ..., auth_cert_fingerprint: _Optional[str] = ..., signing_key_id: _Optional[str] = ..., witness_public_key: _Optional[bytes] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("id", "description", "fields", "data_categories")
    ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    DATA_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    id: str
    description: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    data_categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., description: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., data_categories: _Optional[_Iterable[str]] = ...) -> None: ...

class Agreement(_message.Message):
    __slots__ = ("id", "client", "service", "purpose", "lawful_basis", "legal_reference", "fields", "rate_limit_per_minute", "retention_days", "visibility")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LAWFUL_BASIS_FIELD_NUMBER: _ClassVar[int]
    LEGAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    client: str
    service: str
    purpose: str
    lawful_basis: _common_pb2.LawfulBasis
    legal_reference: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    rate_limit_per_minute: int
    retention_days: int
    visibility: _common_pb2.Visibility
    def __init__(self, id: _Optional[str] = ..., client: _Optional[str] = ..., service: _Optional[str] = ..., purpose: _Optional[str] = ..., lawful_basis: _Optional[_Union[_common_pb2.LawfulBasis, str]] = ..., legal_reference: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., rate_limit_per_minute: _Optional[int] = ..., retention_days: _Optional[int] = ..., visibility: _Optional[_Union[_common_pb2.Visibility, str]] = ...) -> None: ...

class Purpose(_message.Message):
    __slots__ = ("code", "description", "description_vi")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_VI_FIELD_NUMBER: _ClassVar[int]
    code: str
    description: str
    description_vi: str
    def __init__(self, code: _Optional[str] = ..., description: _Optional[str] = ..., description_vi: _Optional[str] = ...) -> None: ...

class TrustAnchors(_message.Message):
    __slots__ = ("ca_cert", "consent_service_key", "consent_service_address", "audit_log_origin", "audit_log_key", "audit_log_address", "identity_providers", "witness_quorum", "production", "audit_service_key", "representation_authority", "audit_tiles_url")
    CA_CERT_FIELD_NUMBER: _ClassVar[int]
    CONSENT_SERVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    CONSENT_SERVICE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_LOG_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    AUDIT_LOG_KEY_FIELD_NUMBER: _ClassVar[int]
    AUDIT_LOG_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    WITNESS_QUORUM_FIELD_NUMBER: _ClassVar[int]
    PRODUCTION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_SERVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    REPRESENTATION_AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    AUDIT_TILES_URL_FIELD_NUMBER: _ClassVar[int]
    ca_cert: bytes
    consent_service_key: bytes
    consent_service_address: str
    audit_log_origin: str
    audit_log_key: str
    audit_log_address: str
    identity_providers: _containers.RepeatedCompositeFieldContainer[IdentityProvider]
    witness_quorum: int
    production: bool
    audit_service_key: bytes
    representation_authority: str
    audit_tiles_url: str
    def __init__(self, ca_cert: _Optional[bytes] = ..., consent_service_key: _Optional[bytes] = ..., consent_service_address: _Optional[str] = ..., audit_log_origin: _Optional[str] = ..., audit_log_key: _Optional[str] = ..., audit_log_address: _Optional[str] = ..., identity_providers: _Optional[_Iterable[_Union[IdentityProvider, _Mapping]]] = ..., witness_quorum: _Optional[int] = ..., production: _Optional[bool] = ..., audit_service_key: _Optional[bytes] = ..., representation_authority: _Optional[str] = ..., audit_tiles_url: _Optional[str] = ...) -> None: ...

class IdentityProvider(_message.Message):
    __slots__ = ("issuer", "public_key", "development", "audience", "algorithms", "national_id_claim", "inspector_claim", "inspector_value", "cli_client_id")
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    DEVELOPMENT_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    NATIONAL_ID_CLAIM_FIELD_NUMBER: _ClassVar[int]
    INSPECTOR_CLAIM_FIELD_NUMBER: _ClassVar[int]
    INSPECTOR_VALUE_FIELD_NUMBER: _ClassVar[int]
    CLI_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    issuer: str
    public_key: bytes
    development: bool
    audience: str
    algorithms: _containers.RepeatedScalarFieldContainer[str]
    national_id_claim: str
    inspector_claim: str
    inspector_value: str
    cli_client_id: str
    def __init__(self, issuer: _Optional[str] = ..., public_key: _Optional[bytes] = ..., development: _Optional[bool] = ..., audience: _Optional[str] = ..., algorithms: _Optional[_Iterable[str]] = ..., national_id_claim: _Optional[str] = ..., inspector_claim: _Optional[str] = ..., inspector_value: _Optional[str] = ..., cli_client_id: _Optional[str] = ...) -> None: ...

class GetGlobalConfRequest(_message.Message):
    __slots__ = ("if_newer_than_version",)
    IF_NEWER_THAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    if_newer_than_version: int
    def __init__(self, if_newer_than_version: _Optional[int] = ...) -> None: ...

class GetGlobalConfResponse(_message.Message):
    __slots__ = ("not_modified", "conf")
    NOT_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    CONF_FIELD_NUMBER: _ClassVar[int]
    not_modified: bool
    conf: SignedGlobalConf
    def __init__(self, not_modified: _Optional[bool] = ..., conf: _Optional[_Union[SignedGlobalConf, _Mapping]] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class AddSubsystemRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RegisterServerRequest(_message.Message):
    __slots__ = ("id", "address", "auth_csr", "signing_csr", "hpke_public_key", "subsystems", "dns_names", "ip_addresses", "witness_public_key")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    AUTH_CSR_FIELD_NUMBER: _ClassVar[int]
    SIGNING_CSR_FIELD_NUMBER: _ClassVar[int]
    HPKE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SUBSYSTEMS_FIELD_NUMBER: _ClassVar[int]
    DNS_NAMES_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    WITNESS_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    auth_csr: bytes
    signing_csr: bytes
    hpke_public_key: bytes
    subsystems: _containers.RepeatedScalarFieldContainer[str]
    dns_names: _containers.RepeatedScalarFieldContainer[str]
    ip_addresses: _containers.RepeatedScalarFieldContainer[str]
    witness_public_key: bytes
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., auth_csr: _Optional[bytes] = ..., signing_csr: _Optional[bytes] = ..., hpke_public_key: _Optional[bytes] = ..., subsystems: _Optional[_Iterable[str]] = ..., dns_names: _Optional[_Iterable[str]] = ..., ip_addresses: _Optional[_Iterable[str]] = ..., witness_public_key: _Optional[bytes] = ...) -> None: ...

class RegisterServerResponse(_message.Message):
    __slots__ = ("auth_cert", "signing_cert", "ca_cert")
    AUTH_CERT_FIELD_NUMBER: _ClassVar[int]
    SIGNING_CERT_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_FIELD_NUMBER: _ClassVar[int]
    auth_cert: bytes
    signing_cert: bytes
    ca_cert: bytes
    def __init__(self, auth_cert: _Optional[bytes] = ..., signing_cert: _Optional[bytes] = ..., ca_cert: _Optional[bytes] = ...) -> None: ...

class RevokeServerRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RemoveAgreementRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SetTrustAnchorsRequest(_message.Message):
    __slots__ = ("anchors", "set_fields")
    ANCHORS_FIELD_NUMBER: _ClassVar[int]
    SET_FIELDS_FIELD_NUMBER: _ClassVar[int]
    anchors: TrustAnchors
    set_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, anchors: _Optional[_Union[TrustAnchors, _Mapping]] = ..., set_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueClientCertificateRequest(_message.Message):
    __slots__ = ("csr", "kind", "name", "dns_names", "ip_addresses")
    CSR_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DNS_NAMES_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    kind: str
    name: str
    dns_names: _containers.RepeatedScalarFieldContainer[str]
    ip_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, csr: _Optional[bytes] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., dns_names: _Optional[_Iterable[str]] = ..., ip_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueClientCertificateResponse(_message.Message):
    __slots__ = ("cert", "ca_cert")
    CERT_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_FIELD_NUMBER: _ClassVar[int]
    cert: bytes
    ca_cert: bytes
    def __init__(self, cert: _Optional[bytes] = ..., ca_cert: _Optional[bytes] = ...) -> None: ...

class ListHistoryRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("seq", "at_ms", "actor", "action", "target", "detail")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at_ms: int
    actor: str
    action: str
    target: str
    detail: str
    def __init__(self, seq: _Optional[int] = ..., at_ms: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListHistoryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class RevokeCertificateRequest(_message.Message):
    __slots__ = ("fingerprint", "reason")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    reason: str
    def __init__(self, fingerprint: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
