"""docs/api.md is exactly what `make proto` generates from the protos and the error table."""

from __future__ import annotations

from pathlib import Path

from tools import protodoc

ROOT = Path(__file__).resolve().parents[2]


def test_api_reference_is_fresh() -> None:
    committed = (ROOT / "docs" / "api.md").read_text()
    assert committed == protodoc.render(), "docs/api.md is stale; run `make proto`"


def test_api_reference_lists_every_rpc_and_error_code() -> None:
    from cdx import errors
    from cdx.v1 import audit_pb2, consent_pb2, exchange_pb2, registry_pb2

    text = protodoc.render()
    for module in (exchange_pb2, registry_pb2, consent_pb2, audit_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert f"| `{method.name}` |" in text, method.full_name
    for cls in errors.GRPC_STATUS:
        assert f"| `{cls.code}` |" in text, cls.code
