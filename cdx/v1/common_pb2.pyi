from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class LawfulBasis(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAWFUL_BASIS_UNSPECIFIED: _ClassVar[LawfulBasis]
    CONSENT: _ClassVar[LawfulBasis]
    LEGAL_OBLIGATION: _ClassVar[LawfulBasis]
    PUBLIC_TASK: _ClassVar[LawfulBasis]
    VITAL_INTEREST: _ClassVar[LawfulBasis]

class Visibility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VISIBILITY_UNSPECIFIED: _ClassVar[Visibility]
    NORMAL: _ClassVar[Visibility]
    SEALED: _ClassVar[Visibility]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    ALLOW: _ClassVar[Decision]
    DENY: _ClassVar[Decision]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    CONSUMER: _ClassVar[Role]
    PROVIDER: _ClassVar[Role]
LAWFUL_BASIS_UNSPECIFIED: LawfulBasis
CONSENT: LawfulBasis
LEGAL_OBLIGATION: LawfulBasis
PUBLIC_TASK: LawfulBasis
VITAL_INTEREST: LawfulBasis
VISIBILITY_UNSPECIFIED: Visibility
NORMAL: Visibility
SEALED: Visibility
DECISION_UNSPECIFIED: Decision
ALLOW: Decision
DENY: Decision
ROLE_UNSPECIFIED: Role
CONSUMER: Role
PROVIDER: Role

class ErrorDetail(_message.Message):
    __slots__ = ("code", "message", "correlation_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    correlation_id: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
