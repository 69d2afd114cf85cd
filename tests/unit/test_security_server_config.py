"""Unit tests for the security server's settings file, API tokens and registration files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cdx import errors
from security_server.config import (
    Limits,
    SecurityServerConfig,
    config_from_mapping,
    dump_config,
    hash_token,
    load_config,
)
from security_server.provisioning import (
    IssuedCertificates,
    RegistrationRequest,
    names_for,
)

TOKEN = "s3cr3t-token"


def _config(tmp_path: Path, **changes: object) -> SecurityServerConfig:
    values: dict[str, object] = {
        "server_id": "VN:GOV:BCA:ss1",
        "data_dir": tmp_path / "ss",
        "exchange_address": "0.0.0.0:5500",
        "registry_address": "127.0.0.1:4400",
        "passphrase_file": tmp_path / "passphrase",
        "backends": {
            "VN:GOV:BCA:population": "127.0.0.1:6001",
            "VN:GOV:BCA:population/special/v2": "127.0.0.1:6002",
        },
        "gateway_tokens": {hash_token(TOKEN): "VN:GOV:BCA:population"},
        "limits": Limits(max_fields=10, freshness_s=30.0),
    }
    values.update(changes)
    return SecurityServerConfig(**values)  # type: ignore[arg-type]


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    config = _config(tmp_path)
    path = tmp_path / "server.toml"
    path.write_text(dump_config(config, base=tmp_path), encoding="utf-8")
    loaded = load_config(path)
    assert loaded == config
    assert "ss" in path.read_text() and str(tmp_path) not in path.read_text()  # relative paths


def test_token_lookup_uses_only_the_hash(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.subsystem_for_token(TOKEN) == "VN:GOV:BCA:population"
    assert config.subsystem_for_token(TOKEN + "x") is None
    assert config.subsystem_for_token("") is None
    assert TOKEN not in dump_config(config) and TOKEN not in repr(config)


def test_backend_is_found_by_service_then_subsystem(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.backend_for("VN:GOV:BCA:population/special/v2") == "127.0.0.1:6002"
    assert config.backend_for("VN:GOV:BCA:population/person/v1") == "127.0.0.1:6001"
    assert config.backend_for("VN:GOV:GDT:income/income/v1") is None


def test_defaults(tmp_path: Path) -> None:
    config = SecurityServerConfig(server_id="VN:GOV:BCA:ss1", data_dir=tmp_path)
    assert config.db_url.endswith("/ss.db") and config.db_url.startswith("sqlite:///")
    assert config.passphrase_path == tmp_path / "passphrase"
    assert config.outbox_window.total_seconds() == 300


@pytest.mark.parametrize(
    "data",
    [
        {"server_id": "VN:GOV:BCA:ss1"},  # no data_dir
        {"server_id": "VN:GOV:BCA:ss1", "data_dir": ".", "surprise": 1},
        {"server_id": "VN:GOV:BCA:ss1", "data_dir": ".", "limits": {"nope": 1}},
        {"server_id": "VN:GOV:BCA:ss1", "data_dir": ".", "workers": "many"},
        {"server_id": "VN:GOV:BCA:ss1", "data_dir": ".", "gateway_tokens": {"abc": "x"}},
    ],
    ids=["missing_data_dir", "unknown_key", "unknown_limit", "bad_number", "bad_token_hash"],
)
def test_invalid_settings_are_refused(tmp_path: Path, data: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        config_from_mapping(data, base=tmp_path)


@pytest.mark.parametrize(
    "data",
    [
        {"server_id": "not a server", "data_dir": "."},
        {"server_id": "VN:GOV:BCA:ss1", "data_dir": ".", "backends": {"bad id": "h:1"}},
    ],
    ids=["bad_server_id", "bad_backend_key"],
)
def test_invalid_identifiers_are_refused(tmp_path: Path, data: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidIdentifierError):
        config_from_mapping(data, base=tmp_path)


def test_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text("server_id = ", encoding="utf-8")
    with pytest.raises(errors.InvalidArgumentError):
        load_config(path)
    with pytest.raises(errors.InvalidArgumentError):
        load_config(tmp_path / "missing.toml")


# --- registration files -----------------------------------------------------------------------


def _request() -> RegistrationRequest:
    return RegistrationRequest(
        server_id="VN:GOV:BCA:ss1",
        address="ss1.bca.example:5500",
        subsystems=("VN:GOV:BCA:population",),
        auth_csr_pem=b"-----BEGIN CERTIFICATE REQUEST-----\nA\n-----END CERTIFICATE REQUEST-----\n",
        signing_csr_pem=b"-----BEGIN CERTIFICATE REQUEST-----\nB\n-----END CERTIFICATE REQUEST-----\n",
        hpke_public_raw=bytes(range(32)),
        witness_public_raw=bytes(range(32, 64)),
        dns_names=("localhost", "ss1.bca.example"),
        ip_addresses=("127.0.0.1",),
    )


def test_registration_request_round_trip() -> None:
    request = _request()
    assert RegistrationRequest.from_json(request.to_json()) == request
    obj = json.loads(request.to_json())
    assert obj["format"] == "cdx-server-registration/v1"
    assert base64.b64decode(obj["hpke_public_key"]) == bytes(range(32))


def test_certificates_file_round_trip() -> None:
    issued = IssuedCertificates("VN:GOV:BCA:ss1", b"A", b"B", b"C")
    assert IssuedCertificates.from_json(issued.to_json()) == issued


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"format": "something-else"}',
        b'{"format": "cdx-server-registration/v1"}',
        json.dumps({**json.loads(_request().to_json()), "hpke_public_key": "%%%"}).encode(),
        b"{" + b" " * (300 * 1024) + b"}",
    ],
    ids=["not_json", "not_object", "other_format", "missing_fields", "bad_base64", "too_large"],
)
def test_malformed_registration_request(data: bytes) -> None:
    with pytest.raises((errors.MalformedError, errors.LimitExceededError)):
        RegistrationRequest.from_json(data)


def test_names_for_an_address() -> None:
    assert names_for("ss1.bca.example:5500") == (("localhost", "ss1.bca.example"), ("127.0.0.1",))
    assert names_for("10.0.0.5:5500") == (("localhost",), ("127.0.0.1", "10.0.0.5"))
    assert names_for("0.0.0.0:5500") == (("localhost",), ("127.0.0.1",))


def test_exchange_stream_setting_round_trips_and_must_be_a_boolean(tmp_path: Path) -> None:
    config = _config(tmp_path, exchange_stream=False)
    path = tmp_path / "server.toml"
    path.write_text(dump_config(config, base=tmp_path), encoding="utf-8")
    assert load_config(path).exchange_stream is False
    assert _config(tmp_path).exchange_stream is True  # streaming is the default
    with pytest.raises(errors.InvalidArgumentError):
        # A quoted "false" would otherwise read as true.
        config_from_mapping(
            {"server_id": "VN:GOV:BCA:ss1", "data_dir": ".", "exchange_stream": "false"},
            base=tmp_path,
        )
