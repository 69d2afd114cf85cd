"""The error hierarchy: every class is mapped to a gRPC status, and codes are stable and unique."""

from __future__ import annotations

import importlib
import pkgutil
import re

import grpc
import pytest

from cdx import errors

PACKAGES = ("cdx", "registry", "security_server", "consent", "audit", "portal", "stack")


def _all_classes() -> list[type[errors.CdxError]]:
    # Import every module of every package, so that an error class defined anywhere registers.
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if ".migrations" not in info.name:
                importlib.import_module(info.name)
    return errors.all_error_classes()


def test_every_error_class_is_mapped_to_a_grpc_status() -> None:
    unmapped = [cls.__name__ for cls in _all_classes() if cls not in errors.GRPC_STATUS]
    assert unmapped == []


def test_error_codes_are_unique_snake_case() -> None:
    codes = [cls.code for cls in _all_classes()]
    assert len(codes) == len(set(codes)), "two classes share a code"
    for code in codes:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code), code


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (errors.ReplayError, grpc.StatusCode.UNAUTHENTICATED),
        (errors.NoAgreementError, grpc.StatusCode.PERMISSION_DENIED),
        (errors.UnknownServiceError, grpc.StatusCode.NOT_FOUND),
        (errors.OutboxBacklogError, grpc.StatusCode.UNAVAILABLE),
        (errors.InvalidIdentifierError, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.TreeStateConflictError, grpc.StatusCode.ABORTED),
    ],
)
def test_status_decides_how_the_caller_reacts(
    cls: type[errors.CdxError], status: grpc.StatusCode
) -> None:
    assert cls().status == status


def test_code_round_trips_to_class() -> None:
    for cls in _all_classes():
        assert errors.class_for_code(cls.code) is cls
    assert errors.class_for_code("no_such_code") is errors.CdxError


def test_message_defaults_to_the_class_summary() -> None:
    err = errors.ConsentRevokedError()
    assert str(err) == "The citizen has revoked this consent"
    assert errors.ConsentRevokedError("custom").message == "custom"
