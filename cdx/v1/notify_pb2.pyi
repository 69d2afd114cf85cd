from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NotifyCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFY_CATEGORY_UNSPECIFIED: _ClassVar[NotifyCategory]
    EVERY_ACCESS: _ClassVar[NotifyCategory]
    CONSENT_ACCESS: _ClassVar[NotifyCategory]
    DENIALS: _ClassVar[NotifyCategory]
    CONSENT_REQUESTS: _ClassVar[NotifyCategory]
    UNSEALED: _ClassVar[NotifyCategory]
    REPRESENTATIVE_ACTIONS: _ClassVar[NotifyCategory]
NOTIFY_CATEGORY_UNSPECIFIED: NotifyCategory
EVERY_ACCESS: NotifyCategory
CONSENT_ACCESS: NotifyCategory
DENIALS: NotifyCategory
CONSENT_REQUESTS: NotifyCategory
UNSEALED: NotifyCategory
REPRESENTATIVE_ACTIONS: NotifyCategory

class NotifyPreferences(_message.Message):
    __slots__ = ("categories", "email", "app_handle", "language", "version")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    APP_HANDLE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[NotifyCategory]
    email: str
    app_handle: str
    language: str
    version: int
    def __init__(self, categories: _Optional[_Iterable[_Union[NotifyCategory, str]]] = ..., email: _Optional[str] = ..., app_handle: _Optional[str] = ..., language: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetPreferencesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetPreferencesRequest(_message.Message):
    __slots__ = ("preferences",)
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    preferences: NotifyPreferences
    def __init__(self, preferences: _Optional[_Union[NotifyPreferences, _Mapping]] = ...) -> None: ...
