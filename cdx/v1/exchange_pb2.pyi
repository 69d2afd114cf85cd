from cdx.v1 import common_pb2 as _common_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueryRequest(_message.Message):
    __slots__ = ("client", "service", "subject", "purpose", "fields", "consent_id", "parameters")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    client: str
    service: str
    subject: str
    purpose: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    consent_id: str
    parameters: _struct_pb2.Struct
    def __init__(self, client: _Optional[str] = ..., service: _Optional[str] = ..., subject: _Optional[str] = ..., purpose: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., consent_id: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("data", "released_fields", "message_id", "record_id", "provider_record_id", "lawful_basis", "legal_reference", "consent_id")
    DATA_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    LAWFUL_BASIS_FIELD_NUMBER: _ClassVar[int]
    LEGAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    data: _struct_pb2.Struct
    released_fields: _containers.RepeatedScalarFieldContainer[str]
    message_id: str
    record_id: str
    provider_record_id: str
    lawful_basis: _common_pb2.LawfulBasis
    legal_reference: str
    consent_id: str
    def __init__(self, data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., released_fields: _Optional[_Iterable[str]] = ..., message_id: _Optional[str] = ..., record_id: _Optional[str] = ..., provider_record_id: _Optional[str] = ..., lawful_basis: _Optional[_Union[_common_pb2.LawfulBasis, str]] = ..., legal_reference: _Optional[str] = ..., consent_id: _Optional[str] = ...) -> None: ...

class StreamItem(_message.Message):
    __slots__ = ("id", "envelope", "error_code", "error_message", "epoch", "seq")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    id: int
    envelope: SignedEnvelope
    error_code: str
    error_message: str
    epoch: int
    seq: int
    def __init__(self, id: _Optional[int] = ..., envelope: _Optional[_Union[SignedEnvelope, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., epoch: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class ExchangeBatch(_message.Message):
    __slots__ = ("items", "epoch_start")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_START_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StreamItem]
    epoch_start: EpochStart
    def __init__(self, items: _Optional[_Iterable[_Union[StreamItem, _Mapping]]] = ..., epoch_start: _Optional[_Union[EpochStart, _Mapping]] = ...) -> None: ...

class EpochStart(_message.Message):
    __slots__ = ("header", "sealed_secret", "signature")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SEALED_SECRET_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    header: bytes
    sealed_secret: bytes
    signature: bytes
    def __init__(self, header: _Optional[bytes] = ..., sealed_secret: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class EpochHeader(_message.Message):
    __slots__ = ("protocol_version", "stream_id", "epoch", "consumer_server", "provider_server", "issued_at_ms", "signing_key_id")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_SERVER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_SERVER_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    stream_id: bytes
    epoch: int
    consumer_server: str
    provider_server: str
    issued_at_ms: int
    signing_key_id: str
    def __init__(self, protocol_version: _Optional[int] = ..., stream_id: _Optional[bytes] = ..., epoch: _Optional[int] = ..., consumer_server: _Optional[str] = ..., provider_server: _Optional[str] = ..., issued_at_ms: _Optional[int] = ..., signing_key_id: _Optional[str] = ...) -> None: ...

class BatchProof(_message.Message):
    __slots__ = ("index", "size", "path", "root", "root_signature", "key_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    ROOT_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    size: int
    path: _containers.RepeatedScalarFieldContainer[bytes]
    root: bytes
    root_signature: bytes
    key_id: str
    def __init__(self, index: _Optional[int] = ..., size: _Optional[int] = ..., path: _Optional[_Iterable[bytes]] = ..., root: _Optional[bytes] = ..., root_signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class SignedEnvelope(_message.Message):
    __slots__ = ("header", "ciphertext", "signature", "batch_proof")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    BATCH_PROOF_FIELD_NUMBER: _ClassVar[int]
    header: bytes
    ciphertext: bytes
    signature: bytes
    batch_proof: BatchProof
    def __init__(self, header: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., batch_proof: _Optional[_Union[BatchProof, _Mapping]] = ...) -> None: ...

class TraceContext(_message.Message):
    __slots__ = ("traceparent", "tracestate")
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    traceparent: str
    tracestate: str
    def __init__(self, traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ...) -> None: ...

class EnvelopeHeader(_message.Message):
    __slots__ = ("protocol_version", "message_id", "client", "consumer_server", "service", "provider_server", "purpose", "lawful_basis", "consent_id", "legal_reference", "fields", "issued_at_ms", "deadline_ms", "trace", "signing_key_id")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_SERVER_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_SERVER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LAWFUL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEGAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    message_id: str
    client: str
    consumer_server: str
    service: str
    provider_server: str
    purpose: str
    lawful_basis: _common_pb2.LawfulBasis
    consent_id: str
    legal_reference: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    issued_at_ms: int
    deadline_ms: int
    trace: TraceContext
    signing_key_id: str
    def __init__(self, protocol_version: _Optional[int] = ..., message_id: _Optional[str] = ..., client: _Optional[str] = ..., consumer_server: _Optional[str] = ..., service: _Optional[str] = ..., provider_server: _Optional[str] = ..., purpose: _Optional[str] = ..., lawful_basis: _Optional[_Union[_common_pb2.LawfulBasis, str]] = ..., consent_id: _Optional[str] = ..., legal_reference: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., issued_at_ms: _Optional[int] = ..., deadline_ms: _Optional[int] = ..., trace: _Optional[_Union[TraceContext, _Mapping]] = ..., signing_key_id: _Optional[str] = ...) -> None: ...

class RequestBody(_message.Message):
    __slots__ = ("subject", "parameters", "response_key")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_KEY_FIELD_NUMBER: _ClassVar[int]
    subject: str
    parameters: _struct_pb2.Struct
    response_key: bytes
    def __init__(self, subject: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., response_key: _Optional[bytes] = ...) -> None: ...

class ResponseHeader(_message.Message):
    __slots__ = ("protocol_version", "message_id", "request_hash", "provider_server", "provider_record_id", "released_fields", "lawful_basis", "consent_id", "legal_reference", "issued_at_ms", "signing_key_id")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_SERVER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    LAWFUL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEGAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    message_id: str
    request_hash: bytes
    provider_server: str
    provider_record_id: str
    released_fields: _containers.RepeatedScalarFieldContainer[str]
    lawful_basis: _common_pb2.LawfulBasis
    consent_id: str
    legal_reference: str
    issued_at_ms: int
    signing_key_id: str
    def __init__(self, protocol_version: _Optional[int] = ..., message_id: _Optional[str] = ..., request_hash: _Optional[bytes] = ..., provider_server: _Optional[str] = ..., provider_record_id: _Optional[str] = ..., released_fields: _Optional[_Iterable[str]] = ..., lawful_basis: _Optional[_Union[_common_pb2.LawfulBasis, str]] = ..., consent_id: _Optional[str] = ..., legal_reference: _Optional[str] = ..., issued_at_ms: _Optional[int] = ..., signing_key_id: _Optional[str] = ...) -> None: ...

class ResponseBody(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _struct_pb2.Struct
    def __init__(self, data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("service", "subject", "fields", "purpose", "client", "parameters", "message_id")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    service: str
    subject: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    purpose: str
    client: str
    parameters: _struct_pb2.Struct
    message_id: str
    def __init__(self, service: _Optional[str] = ..., subject: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., purpose: _Optional[str] = ..., client: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., message_id: _Optional[str] = ...) -> None: ...

class FetchResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _struct_pb2.Struct
    def __init__(self, data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
