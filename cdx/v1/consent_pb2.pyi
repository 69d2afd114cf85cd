from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConsentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENT_STATE_UNSPECIFIED: _ClassVar[ConsentState]
    PENDING: _ClassVar[ConsentState]
    ACTIVE: _ClassVar[ConsentState]
    PAUSED: _ClassVar[ConsentState]
    REVOKED: _ClassVar[ConsentState]
    EXPIRED: _ClassVar[ConsentState]
    REJECTED: _ClassVar[ConsentState]

class SubjectRequestKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBJECT_REQUEST_KIND_UNSPECIFIED: _ClassVar[SubjectRequestKind]
    REQUEST_ACCESS: _ClassVar[SubjectRequestKind]
    REQUEST_OBJECTION: _ClassVar[SubjectRequestKind]
    REQUEST_RESTRICTION: _ClassVar[SubjectRequestKind]
    REQUEST_ERASURE: _ClassVar[SubjectRequestKind]
    REQUEST_RECTIFICATION: _ClassVar[SubjectRequestKind]
    REQUEST_COMPLAINT: _ClassVar[SubjectRequestKind]

class SubjectRequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBJECT_REQUEST_STATE_UNSPECIFIED: _ClassVar[SubjectRequestState]
    REQUEST_RECEIVED: _ClassVar[SubjectRequestState]
    REQUEST_ACKNOWLEDGED: _ClassVar[SubjectRequestState]
    REQUEST_IN_PROGRESS: _ClassVar[SubjectRequestState]
    REQUEST_COMPLETED: _ClassVar[SubjectRequestState]
    REQUEST_REFUSED: _ClassVar[SubjectRequestState]
    REQUEST_WITHDRAWN: _ClassVar[SubjectRequestState]

class SubjectRequestAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBJECT_REQUEST_ACTION_UNSPECIFIED: _ClassVar[SubjectRequestAction]
    REQUEST_ACKNOWLEDGE: _ClassVar[SubjectRequestAction]
    REQUEST_START: _ClassVar[SubjectRequestAction]
    REQUEST_EXTEND: _ClassVar[SubjectRequestAction]
    REQUEST_COMPLETE: _ClassVar[SubjectRequestAction]
    REQUEST_REFUSE: _ClassVar[SubjectRequestAction]

class RelationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELATION_KIND_UNSPECIFIED: _ClassVar[RelationKind]
    RELATION_PARENT: _ClassVar[RelationKind]
    RELATION_GUARDIAN: _ClassVar[RelationKind]
    RELATION_AUTHORISED: _ClassVar[RelationKind]

class RepresentationScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPRESENTATION_SCOPE_UNSPECIFIED: _ClassVar[RepresentationScope]
    SCOPE_HISTORY: _ClassVar[RepresentationScope]
    SCOPE_CONSENTS: _ClassVar[RepresentationScope]
CONSENT_STATE_UNSPECIFIED: ConsentState
PENDING: ConsentState
ACTIVE: ConsentState
PAUSED: ConsentState
REVOKED: ConsentState
EXPIRED: ConsentState
REJECTED: ConsentState
SUBJECT_REQUEST_KIND_UNSPECIFIED: SubjectRequestKind
REQUEST_ACCESS: SubjectRequestKind
REQUEST_OBJECTION: SubjectRequestKind
REQUEST_RESTRICTION: SubjectRequestKind
REQUEST_ERASURE: SubjectRequestKind
REQUEST_RECTIFICATION: SubjectRequestKind
REQUEST_COMPLAINT: SubjectRequestKind
SUBJECT_REQUEST_STATE_UNSPECIFIED: SubjectRequestState
REQUEST_RECEIVED: SubjectRequestState
REQUEST_ACKNOWLEDGED: SubjectRequestState
REQUEST_IN_PROGRESS: SubjectRequestState
REQUEST_COMPLETED: SubjectRequestState
REQUEST_REFUSED: SubjectRequestState
REQUEST_WITHDRAWN: SubjectRequestState
SUBJECT_REQUEST_ACTION_UNSPECIFIED: SubjectRequestAction
REQUEST_ACKNOWLEDGE: SubjectRequestAction
REQUEST_START: SubjectRequestAction
REQUEST_EXTEND: SubjectRequestAction
REQUEST_COMPLETE: SubjectRequestAction
REQUEST_REFUSE: SubjectRequestAction
RELATION_KIND_UNSPECIFIED: RelationKind
RELATION_PARENT: RelationKind
RELATION_GUARDIAN: RelationKind
RELATION_AUTHORISED: RelationKind
REPRESENTATION_SCOPE_UNSPECIFIED: RepresentationScope
SCOPE_HISTORY: RepresentationScope
SCOPE_CONSENTS: RepresentationScope

class ConsentTerms(_message.Message):
    __slots__ = ("subject", "grantee", "services", "purpose", "fields", "data_from", "data_until", "valid_from_ms", "valid_until_ms", "max_uses", "retention_days")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    DATA_FROM_FIELD_NUMBER: _ClassVar[int]
    DATA_UNTIL_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    subject: str
    grantee: str
    services: _containers.RepeatedScalarFieldContainer[str]
    purpose: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    data_from: str
    data_until: str
    valid_from_ms: int
    valid_until_ms: int
    max_uses: int
    retention_days: int
    def __init__(self, subject: _Optional[str] = ..., grantee: _Optional[str] = ..., services: _Optional[_Iterable[str]] = ..., purpose: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., data_from: _Optional[str] = ..., data_until: _Optional[str] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., max_uses: _Optional[int] = ..., retention_days: _Optional[int] = ...) -> None: ...

class Consent(_message.Message):
    __slots__ = ("id", "state", "terms", "artefact", "supersedes", "uses", "created_at_ms", "updated_at_ms", "requested_by", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    ARTEFACT_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDES_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: ConsentState
    terms: ConsentTerms
    artefact: str
    supersedes: str
    uses: int
    created_at_ms: int
    updated_at_ms: int
    requested_by: str
    version: int
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[ConsentState, str]] = ..., terms: _Optional[_Union[ConsentTerms, _Mapping]] = ..., artefact: _Optional[str] = ..., supersedes: _Optional[str] = ..., uses: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., requested_by: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ConsentEvent(_message.Message):
    __slots__ = ("seq", "consent_id", "action", "state", "at_ms", "actor", "subject_tag")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TAG_FIELD_NUMBER: _ClassVar[int]
    seq: int
    consent_id: str
    action: str
    state: ConsentState
    at_ms: int
    actor: str
    subject_tag: str
    def __init__(self, seq: _Optional[int] = ..., consent_id: _Optional[str] = ..., action: _Optional[str] = ..., state: _Optional[_Union[ConsentState, str]] = ..., at_ms: _Optional[int] = ..., actor: _Optional[str] = ..., subject_tag: _Optional[str] = ...) -> None: ...

class ListMyConsentsRequest(_message.Message):
    __slots__ = ("states", "acting_for")
    STATES_FIELD_NUMBER: _ClassVar[int]
    ACTING_FOR_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[ConsentState]
    acting_for: str
    def __init__(self, states: _Optional[_Iterable[_Union[ConsentState, str]]] = ..., acting_for: _Optional[str] = ...) -> None: ...

class ListConsentsResponse(_message.Message):
    __slots__ = ("consents",)
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    consents: _containers.RepeatedCompositeFieldContainer[Consent]
    def __init__(self, consents: _Optional[_Iterable[_Union[Consent, _Mapping]]] = ...) -> None: ...

class ConsentActionRequest(_message.Message):
    __slots__ = ("consent_id", "acting_for")
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTING_FOR_FIELD_NUMBER: _ClassVar[int]
    consent_id: str
    acting_for: str
    def __init__(self, consent_id: _Optional[str] = ..., acting_for: _Optional[str] = ...) -> None: ...

class GrantRequest(_message.Message):
    __slots__ = ("terms", "acting_for")
    TERMS_FIELD_NUMBER: _ClassVar[int]
    ACTING_FOR_FIELD_NUMBER: _ClassVar[int]
    terms: ConsentTerms
    acting_for: str
    def __init__(self, terms: _Optional[_Union[ConsentTerms, _Mapping]] = ..., acting_for: _Optional[str] = ...) -> None: ...

class AmendRequest(_message.Message):
    __slots__ = ("consent_id", "terms", "acting_for")
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    ACTING_FOR_FIELD_NUMBER: _ClassVar[int]
    consent_id: str
    terms: ConsentTerms
    acting_for: str
    def __init__(self, consent_id: _Optional[str] = ..., terms: _Optional[_Union[ConsentTerms, _Mapping]] = ..., acting_for: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ConsentEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[ConsentEvent, _Mapping]]] = ...) -> None: ...

class ConsentReceipt(_message.Message):
    __slots__ = ("json", "jws")
    JSON_FIELD_NUMBER: _ClassVar[int]
    JWS_FIELD_NUMBER: _ClassVar[int]
    json: str
    jws: str
    def __init__(self, json: _Optional[str] = ..., jws: _Optional[str] = ...) -> None: ...

class RequestConsentRequest(_message.Message):
    __slots__ = ("requester", "terms")
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    requester: str
    terms: ConsentTerms
    def __init__(self, requester: _Optional[str] = ..., terms: _Optional[_Union[ConsentTerms, _Mapping]] = ...) -> None: ...

class ListGrantedRequest(_message.Message):
    __slots__ = ("grantee", "subject")
    GRANTEE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    grantee: str
    subject: str
    def __init__(self, grantee: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class CheckConsentRequest(_message.Message):
    __slots__ = ("subject", "client", "service", "purpose", "fields", "consent_id", "record_use", "partial_fields")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_USE_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELDS_FIELD_NUMBER: _ClassVar[int]
    subject: str
    client: str
    service: str
    purpose: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    consent_id: str
    record_use: bool
    partial_fields: bool
    def __init__(self, subject: _Optional[str] = ..., client: _Optional[str] = ..., service: _Optional[str] = ..., purpose: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., consent_id: _Optional[str] = ..., record_use: _Optional[bool] = ..., partial_fields: _Optional[bool] = ...) -> None: ...

class CheckConsentResponse(_message.Message):
    __slots__ = ("allowed", "consent_id", "allowed_fields", "deny_code", "valid_until_ms", "version", "limited")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    DENY_CODE_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMITED_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    consent_id: str
    allowed_fields: _containers.RepeatedScalarFieldContainer[str]
    deny_code: str
    valid_until_ms: int
    version: int
    limited: bool
    def __init__(self, allowed: _Optional[bool] = ..., consent_id: _Optional[str] = ..., allowed_fields: _Optional[_Iterable[str]] = ..., deny_code: _Optional[str] = ..., valid_until_ms: _Optional[int] = ..., version: _Optional[int] = ..., limited: _Optional[bool] = ...) -> None: ...

class WatchChangesRequest(_message.Message):
    __slots__ = ("after_seq", "resume")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    resume: bool
    def __init__(self, after_seq: _Optional[int] = ..., resume: _Optional[bool] = ...) -> None: ...

class ConsentChange(_message.Message):
    __slots__ = ("seq", "consent_id", "subject_tag", "grantee", "state", "heartbeat", "at_ms", "action")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TAG_FIELD_NUMBER: _ClassVar[int]
    GRANTEE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    consent_id: str
    subject_tag: str
    grantee: str
    state: ConsentState
    heartbeat: bool
    at_ms: int
    action: str
    def __init__(self, seq: _Optional[int] = ..., consent_id: _Optional[str] = ..., subject_tag: _Optional[str] = ..., grantee: _Optional[str] = ..., state: _Optional[_Union[ConsentState, str]] = ..., heartbeat: _Optional[bool] = ..., at_ms: _Optional[int] = ..., action: _Optional[str] = ...) -> None: ...

class SubjectRequestStep(_message.Message):
    __slots__ = ("seq", "action", "state", "at_ms", "actor", "text", "record_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    action: str
    state: SubjectRequestState
    at_ms: int
    actor: str
    text: str
    record_id: str
    def __init__(self, seq: _Optional[int] = ..., action: _Optional[str] = ..., state: _Optional[_Union[SubjectRequestState, str]] = ..., at_ms: _Optional[int] = ..., actor: _Optional[str] = ..., text: _Optional[str] = ..., record_id: _Optional[str] = ...) -> None: ...

class SubjectRequest(_message.Message):
    __slots__ = ("id", "kind", "state", "addressee", "purpose", "service", "subject", "received_at_ms", "acknowledge_by_ms", "complete_by_ms", "extended", "closed_at_ms", "overdue", "version", "steps", "bundle_ready")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ADDRESSEE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGE_BY_MS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_BY_MS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_READY_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: SubjectRequestKind
    state: SubjectRequestState
    addressee: str
    purpose: str
    service: str
    subject: str
    received_at_ms: int
    acknowledge_by_ms: int
    complete_by_ms: int
    extended: bool
    closed_at_ms: int
    overdue: str
    version: int
    steps: _containers.RepeatedCompositeFieldContainer[SubjectRequestStep]
    bundle_ready: bool
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[SubjectRequestKind, str]] = ..., state: _Optional[_Union[SubjectRequestState, str]] = ..., addressee: _Optional[str] = ..., purpose: _Optional[str] = ..., service: _Optional[str] = ..., subject: _Optional[str] = ..., received_at_ms: _Optional[int] = ..., acknowledge_by_ms: _Optional[int] = ..., complete_by_ms: _Optional[int] = ..., extended: _Optional[bool] = ..., closed_at_ms: _Optional[int] = ..., overdue: _Optional[str] = ..., version: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[SubjectRequestStep, _Mapping]]] = ..., bundle_ready: _Optional[bool] = ...) -> None: ...

class FileRequestRequest(_message.Message):
    __slots__ = ("kind", "addressee", "purpose", "service", "details")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ADDRESSEE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    kind: SubjectRequestKind
    addressee: str
    purpose: str
    service: str
    details: str
    def __init__(self, kind: _Optional[_Union[SubjectRequestKind, str]] = ..., addressee: _Optional[str] = ..., purpose: _Optional[str] = ..., service: _Optional[str] = ..., details: _Optional[str] = ...) -> None: ...

class SubjectRequestId(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ListMyRequestsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSubjectRequestsResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SubjectRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SubjectRequest, _Mapping]]] = ...) -> None: ...

class AccessEvidenceEntry(_message.Message):
    __slots__ = ("index", "leaf", "proof", "subject_salt", "request_salt")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_SALT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SALT_FIELD_NUMBER: _ClassVar[int]
    index: int
    leaf: bytes
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    subject_salt: bytes
    request_salt: bytes
    def __init__(self, index: _Optional[int] = ..., leaf: _Optional[bytes] = ..., proof: _Optional[_Iterable[bytes]] = ..., subject_salt: _Optional[bytes] = ..., request_salt: _Optional[bytes] = ...) -> None: ...

class CompleteAccessRequest(_message.Message):
    __slots__ = ("request_id", "checkpoint_note", "entries", "omitted")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_NOTE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    OMITTED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    checkpoint_note: str
    entries: _containers.RepeatedCompositeFieldContainer[AccessEvidenceEntry]
    omitted: int
    def __init__(self, request_id: _Optional[str] = ..., checkpoint_note: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[AccessEvidenceEntry, _Mapping]]] = ..., omitted: _Optional[int] = ...) -> None: ...

class AccessBundle(_message.Message):
    __slots__ = ("request_id", "bundle")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    bundle: bytes
    def __init__(self, request_id: _Optional[str] = ..., bundle: _Optional[bytes] = ...) -> None: ...

class ListQueueRequest(_message.Message):
    __slots__ = ("addressee", "states", "overdue_only")
    ADDRESSEE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_ONLY_FIELD_NUMBER: _ClassVar[int]
    addressee: str
    states: _containers.RepeatedScalarFieldContainer[SubjectRequestState]
    overdue_only: bool
    def __init__(self, addressee: _Optional[str] = ..., states: _Optional[_Iterable[_Union[SubjectRequestState, str]]] = ..., overdue_only: _Optional[bool] = ...) -> None: ...

class ActOnRequestRequest(_message.Message):
    __slots__ = ("request_id", "action", "text")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    action: SubjectRequestAction
    text: str
    def __init__(self, request_id: _Optional[str] = ..., action: _Optional[_Union[SubjectRequestAction, str]] = ..., text: _Optional[str] = ...) -> None: ...

class ListOverdueRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListComplaintsRequest(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[SubjectRequestState]
    def __init__(self, states: _Optional[_Iterable[_Union[SubjectRequestState, str]]] = ...) -> None: ...

class Relation(_message.Message):
    __slots__ = ("id", "kind", "representative", "represented", "scopes", "valid_from_ms", "valid_until_ms", "majority_date", "ended_at_ms", "authority", "reference", "representative_name", "represented_name", "ends_at_ms", "in_force", "version", "created_at_ms", "updated_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REPRESENTATIVE_FIELD_NUMBER: _ClassVar[int]
    REPRESENTED_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    MAJORITY_DATE_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REPRESENTATIVE_NAME_FIELD_NUMBER: _ClassVar[int]
    REPRESENTED_NAME_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_MS_FIELD_NUMBER: _ClassVar[int]
    IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: RelationKind
    representative: str
    represented: str
    scopes: _containers.RepeatedScalarFieldContainer[RepresentationScope]
    valid_from_ms: int
    valid_until_ms: int
    majority_date: str
    ended_at_ms: int
    authority: str
    reference: str
    representative_name: str
    represented_name: str
    ends_at_ms: int
    in_force: bool
    version: int
    created_at_ms: int
    updated_at_ms: int
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[RelationKind, str]] = ..., representative: _Optional[str] = ..., represented: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[RepresentationScope, str]]] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ..., majority_date: _Optional[str] = ..., ended_at_ms: _Optional[int] = ..., authority: _Optional[str] = ..., reference: _Optional[str] = ..., representative_name: _Optional[str] = ..., represented_name: _Optional[str] = ..., ends_at_ms: _Optional[int] = ..., in_force: _Optional[bool] = ..., version: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ...) -> None: ...

class RegisterRelationRequest(_message.Message):
    __slots__ = ("authority", "relation")
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    authority: str
    relation: Relation
    def __init__(self, authority: _Optional[str] = ..., relation: _Optional[_Union[Relation, _Mapping]] = ...) -> None: ...

class AmendRelationRequest(_message.Message):
    __slots__ = ("authority", "relation_id", "relation", "set_fields")
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    RELATION_ID_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    SET_FIELDS_FIELD_NUMBER: _ClassVar[int]
    authority: str
    relation_id: str
    relation: Relation
    set_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, authority: _Optional[str] = ..., relation_id: _Optional[str] = ..., relation: _Optional[_Union[Relation, _Mapping]] = ..., set_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class EndRelationRequest(_message.Message):
    __slots__ = ("authority", "relation_id", "ended_at_ms", "reason")
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    RELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    authority: str
    relation_id: str
    ended_at_ms: int
    reason: str
    def __init__(self, authority: _Optional[str] = ..., relation_id: _Optional[str] = ..., ended_at_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ListRelationsRequest(_message.Message):
    __slots__ = ("authority", "person")
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    authority: str
    person: str
    def __init__(self, authority: _Optional[str] = ..., person: _Optional[str] = ...) -> None: ...

class ListMyRelationsRequest(_message.Message):
    __slots__ = ("include_ended",)
    INCLUDE_ENDED_FIELD_NUMBER: _ClassVar[int]
    include_ended: bool
    def __init__(self, include_ended: _Optional[bool] = ...) -> None: ...

class ListRelationsResponse(_message.Message):
    __slots__ = ("relations",)
    RELATIONS_FIELD_NUMBER: _ClassVar[int]
    relations: _containers.RepeatedCompositeFieldContainer[Relation]
    def __init__(self, relations: _Optional[_Iterable[_Union[Relation, _Mapping]]] = ...) -> None: ...

class CheckRepresentationRequest(_message.Message):
    __slots__ = ("representative", "represented", "scope")
    REPRESENTATIVE_FIELD_NUMBER: _ClassVar[int]
    REPRESENTED_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    representative: str
    represented: str
    scope: RepresentationScope
    def __init__(self, representative: _Optional[str] = ..., represented: _Optional[str] = ..., scope: _Optional[_Union[RepresentationScope, str]] = ...) -> None: ...

class CheckRepresentationResponse(_message.Message):
    __slots__ = ("relation_id", "kind", "ends_at_ms")
    RELATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_MS_FIELD_NUMBER: _ClassVar[int]
    relation_id: str
    kind: RelationKind
    ends_at_ms: int
    def __init__(self, relation_id: _Optional[str] = ..., kind: _Optional[_Union[RelationKind, str]] = ..., ends_at_ms: _Optional[int] = ...) -> None: ...
