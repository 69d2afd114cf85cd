from cdx.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccessRecord(_message.Message):
    __slots__ = ("record_id", "message_id", "time_ms", "recorder", "role", "client", "service", "purpose", "lawful_basis", "consent_id", "legal_reference", "decision", "reason_code", "released_fields", "subject_commitment", "request_commitment", "response_commitment", "visibility", "kind", "note", "target_record_id", "actor", "previous_log_key")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RECORDER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LAWFUL_BASIS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEGAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TARGET_RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_LOG_KEY_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    message_id: str
    time_ms: int
    recorder: str
    role: _common_pb2.Role
    client: str
    service: str
    purpose: str
    lawful_basis: _common_pb2.LawfulBasis
    consent_id: str
    legal_reference: str
    decision: _common_pb2.Decision
    reason_code: str
    released_fields: _containers.RepeatedScalarFieldContainer[str]
    subject_commitment: bytes
    request_commitment: bytes
    response_commitment: bytes
    visibility: _common_pb2.Visibility
    kind: str
    note: str
    target_record_id: str
    actor: str
    previous_log_key: str
    def __init__(self, record_id: _Optional[str] = ..., message_id: _Optional[str] = ..., time_ms: _Optional[int] = ..., recorder: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.Role, str]] = ..., client: _Optional[str] = ..., service: _Optional[str] = ..., purpose: _Optional[str] = ..., lawful_basis: _Optional[_Union[_common_pb2.LawfulBasis, str]] = ..., consent_id: _Optional[str] = ..., legal_reference: _Optional[str] = ..., decision: _Optional[_Union[_common_pb2.Decision, str]] = ..., reason_code: _Optional[str] = ..., released_fields: _Optional[_Iterable[str]] = ..., subject_commitment: _Optional[bytes] = ..., request_commitment: _Optional[bytes] = ..., response_commitment: _Optional[bytes] = ..., visibility: _Optional[_Union[_common_pb2.Visibility, str]] = ..., kind: _Optional[str] = ..., note: _Optional[str] = ..., target_record_id: _Optional[str] = ..., actor: _Optional[str] = ..., previous_log_key: _Optional[str] = ...) -> None: ...

class SignedAccessRecord(_message.Message):
    __slots__ = ("record", "signature", "key_id")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    record: bytes
    signature: bytes
    key_id: str
    def __init__(self, record: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class RecordOpening(_message.Message):
    __slots__ = ("record_id", "subject", "subject_salt", "request_salt", "response_salt")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_SALT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SALT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_SALT_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    subject: str
    subject_salt: bytes
    request_salt: bytes
    response_salt: bytes
    def __init__(self, record_id: _Optional[str] = ..., subject: _Optional[str] = ..., subject_salt: _Optional[bytes] = ..., request_salt: _Optional[bytes] = ..., response_salt: _Optional[bytes] = ...) -> None: ...

class OutboxItem(_message.Message):
    __slots__ = ("record", "opening")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    OPENING_FIELD_NUMBER: _ClassVar[int]
    record: SignedAccessRecord
    opening: RecordOpening
    def __init__(self, record: _Optional[_Union[SignedAccessRecord, _Mapping]] = ..., opening: _Optional[_Union[RecordOpening, _Mapping]] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("note", "size", "root_hash", "published_at_ms", "cosignatures")
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    note: str
    size: int
    root_hash: bytes
    published_at_ms: int
    cosignatures: int
    def __init__(self, note: _Optional[str] = ..., size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., published_at_ms: _Optional[int] = ..., cosignatures: _Optional[int] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("index", "record", "integrated_at_ms")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    INTEGRATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    index: int
    record: SignedAccessRecord
    integrated_at_ms: int
    def __init__(self, index: _Optional[int] = ..., record: _Optional[_Union[SignedAccessRecord, _Mapping]] = ..., integrated_at_ms: _Optional[int] = ...) -> None: ...

class AppendBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[OutboxItem]
    def __init__(self, items: _Optional[_Iterable[_Union[OutboxItem, _Mapping]]] = ...) -> None: ...

class AppendResult(_message.Message):
    __slots__ = ("record_id", "index", "duplicate", "error_code")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    index: int
    duplicate: bool
    error_code: str
    def __init__(self, record_id: _Optional[str] = ..., index: _Optional[int] = ..., duplicate: _Optional[bool] = ..., error_code: _Optional[str] = ...) -> None: ...

class AppendBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AppendResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AppendResult, _Mapping]]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("min_cosignatures",)
    MIN_COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    min_cosignatures: int
    def __init__(self, min_cosignatures: _Optional[int] = ...) -> None: ...

class InclusionProofRequest(_message.Message):
    __slots__ = ("index", "tree_size", "record_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    record_id: str
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ..., record_id: _Optional[str] = ...) -> None: ...

class InclusionProof(_message.Message):
    __slots__ = ("index", "tree_size", "hashes", "leaf_hash")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    leaf_hash: bytes
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ..., leaf_hash: _Optional[bytes] = ...) -> None: ...

class ConsistencyProofRequest(_message.Message):
    __slots__ = ("size1", "size2")
    SIZE1_FIELD_NUMBER: _ClassVar[int]
    SIZE2_FIELD_NUMBER: _ClassVar[int]
    size1: int
    size2: int
    def __init__(self, size1: _Optional[int] = ..., size2: _Optional[int] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetEntriesRequest(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class GetEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("after_size", "limit")
    AFTER_SIZE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_size: int
    limit: int
    def __init__(self, after_size: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints",)
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[Checkpoint]
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[Checkpoint, _Mapping]]] = ...) -> None: ...

class AddCosignatureRequest(_message.Message):
    __slots__ = ("checkpoint_note", "cosignature_line", "witness")
    CHECKPOINT_NOTE_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURE_LINE_FIELD_NUMBER: _ClassVar[int]
    WITNESS_FIELD_NUMBER: _ClassVar[int]
    checkpoint_note: str
    cosignature_line: str
    witness: str
    def __init__(self, checkpoint_note: _Optional[str] = ..., cosignature_line: _Optional[str] = ..., witness: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("client", "service", "purpose", "decision", "from_ms", "until_ms", "subject", "reason", "one_sided_only", "limit", "recorder", "message_id", "after_index", "kind")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ONE_SIDED_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    RECORDER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    client: str
    service: str
    purpose: str
    decision: _common_pb2.Decision
    from_ms: int
    until_ms: int
    subject: str
    reason: str
    one_sided_only: bool
    limit: int
    recorder: str
    message_id: str
    after_index: int
    kind: str
    def __init__(self, client: _Optional[str] = ..., service: _Optional[str] = ..., purpose: _Optional[str] = ..., decision: _Optional[_Union[_common_pb2.Decision, str]] = ..., from_ms: _Optional[int] = ..., until_ms: _Optional[int] = ..., subject: _Optional[str] = ..., reason: _Optional[str] = ..., one_sided_only: _Optional[bool] = ..., limit: _Optional[int] = ..., recorder: _Optional[str] = ..., message_id: _Optional[str] = ..., after_index: _Optional[int] = ..., kind: _Optional[str] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("entry", "record", "sealed")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    entry: LogEntry
    record: AccessRecord
    sealed: bool
    def __init__(self, entry: _Optional[_Union[LogEntry, _Mapping]] = ..., record: _Optional[_Union[AccessRecord, _Mapping]] = ..., sealed: _Optional[bool] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "query_record_id")
    HITS_FIELD_NUMBER: _ClassVar[int]
    QUERY_RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    query_record_id: str
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., query_record_id: _Optional[str] = ...) -> None: ...

class UnsealRequest(_message.Message):
    __slots__ = ("record_id", "reason")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    reason: str
    def __init__(self, record_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CitizenHistoryRequest(_message.Message):
    __slots__ = ("limit", "before_index", "acting_for")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_INDEX_FIELD_NUMBER: _ClassVar[int]
    ACTING_FOR_FIELD_NUMBER: _ClassVar[int]
    limit: int
    before_index: int
    acting_for: str
    def __init__(self, limit: _Optional[int] = ..., before_index: _Optional[int] = ..., acting_for: _Optional[str] = ...) -> None: ...

class CitizenHistoryEntry(_message.Message):
    __slots__ = ("entry", "record", "opening", "proof", "unsealed")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    OPENING_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    UNSEALED_FIELD_NUMBER: _ClassVar[int]
    entry: LogEntry
    record: AccessRecord
    opening: RecordOpening
    proof: InclusionProof
    unsealed: bool
    def __init__(self, entry: _Optional[_Union[LogEntry, _Mapping]] = ..., record: _Optional[_Union[AccessRecord, _Mapping]] = ..., opening: _Optional[_Union[RecordOpening, _Mapping]] = ..., proof: _Optional[_Union[InclusionProof, _Mapping]] = ..., unsealed: _Optional[bool] = ...) -> None: ...

class CitizenHistoryResponse(_message.Message):
    __slots__ = ("entries", "checkpoint", "next_before_index")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    NEXT_BEFORE_INDEX_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[CitizenHistoryEntry]
    checkpoint: Checkpoint
    next_before_index: int
    def __init__(self, entries: _Optional[_Iterable[_Union[CitizenHistoryEntry, _Mapping]]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., next_before_index: _Optional[int] = ...) -> None: ...

class ListRefusedRequest(_message.Message):
    __slots__ = ("after_id", "limit", "recorder")
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    RECORDER_FIELD_NUMBER: _ClassVar[int]
    after_id: int
    limit: int
    recorder: str
    def __init__(self, after_id: _Optional[int] = ..., limit: _Optional[int] = ..., recorder: _Optional[str] = ...) -> None: ...

class RefusedAppend(_message.Message):
    __slots__ = ("id", "recorder", "record_id", "code", "refused_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    RECORDER_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REFUSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    recorder: str
    record_id: str
    code: str
    refused_at_ms: int
    def __init__(self, id: _Optional[int] = ..., recorder: _Optional[str] = ..., record_id: _Optional[str] = ..., code: _Optional[str] = ..., refused_at_ms: _Optional[int] = ...) -> None: ...

class ListRefusedResponse(_message.Message):
    __slots__ = ("refused",)
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    refused: _containers.RepeatedCompositeFieldContainer[RefusedAppend]
    def __init__(self, refused: _Optional[_Iterable[_Union[RefusedAppend, _Mapping]]] = ...) -> None: ...

class WatchEntriesRequest(_message.Message):
    __slots__ = ("after_index",)
    AFTER_INDEX_FIELD_NUMBER: _ClassVar[int]
    after_index: int
    def __init__(self, after_index: _Optional[int] = ...) -> None: ...

class EntryNotice(_message.Message):
    __slots__ = ("index", "subject", "entry", "heartbeat", "caught_up")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    index: int
    subject: str
    entry: LogEntry
    heartbeat: bool
    caught_up: bool
    def __init__(self, index: _Optional[int] = ..., subject: _Optional[str] = ..., entry: _Optional[_Union[LogEntry, _Mapping]] = ..., heartbeat: _Optional[bool] = ..., caught_up: _Optional[bool] = ...) -> None: ...
