"""``cdx security-server init`` (online and offline registration), ``cdx query``, ``status``
and ``token`` against a real registry and real servers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cdx import crypto, pki
from cdx.cli import main
from cdx.clock import utcnow
from registry.bootstrap import init_instance
from registry.server import RunningRegistry, start_registry
from security_server.backends import start_backend
from security_server.backends.sample import CITIZENS
from security_server.config import load_config
from security_server.provisioning import RegistrationRequest
from security_server.server import RunningSecurityServer, start_security_server

ADMIN = "admin:test"
ANNE = CITIZENS[0]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RunningRegistry]:
    paths = init_instance(tmp_path, "VN", utcnow())
    running = start_registry(paths, "127.0.0.1:0")
    svc = running.service
    svc.add_purpose("SOCIAL_BENEFIT_ELIGIBILITY", "Benefit eligibility", "", ADMIN)
    for member, sub in (("VN:GOV:BCA", "population"), ("VN:GOV:VSS", "benefits")):
        svc.add_member(member, member, ADMIN)
        svc.add_subsystem(f"{member}:{sub}", ADMIN)
    svc.add_service(
        "VN:GOV:BCA:population/person/v1",
        ["full_name", "birth_date", "address", "gender"],
        ["personal"],
        "person",
        ADMIN,
    )
    svc.add_agreement(
        "VN:GOV:VSS:benefits", "VN:GOV:BCA:population/person/v1", "SOCIAL_BENEFIT_ELIGIBILITY",
        "LEGAL_OBLIGATION", "Law on Social Insurance 2024", ["full_name", "birth_date"],
        actor=ADMIN,
    )  # fmt: skip
    yield running
    running.stop()


def _is_identity(registry: RunningRegistry, subsystem: str, directory: Path) -> tuple[Path, Path]:
    key = crypto.generate_signing_key("ecdsa-p256")
    issued = registry.service.issue_client_certificate(
        pki.build_csr(key, "is"), "client", subsystem, ADMIN
    )
    cert_path, key_path = directory / "is.pem", directory / "is.key"
    cert_path.write_bytes(issued.cert_pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_init_register_serve_and_query(
    tmp_path: Path, registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path
    reg_dir = root / "registry"
    backend = start_backend("population", root / "backends" / "population.db")
    servers: list[RunningSecurityServer] = []
    try:
        # Online: the provider registers itself through the admin API.
        # Each server binds a free port when it starts and its address is registered then
        # (below); until then the registry holds a placeholder.
        bca_dir = root / "servers" / "BCA-ss1"
        assert main([
            "security-server", "init", "--data-dir", str(bca_dir), "--server-id", "VN:GOV:BCA:ss1",
            "--address", "127.0.0.1:1", "--registry", registry.address,
            "--ca", str(reg_dir / "ca.pem"), "--admin-cert", str(reg_dir / "admin/bootstrap.pem"),
            "--admin-key", str(reg_dir / "admin/bootstrap.key"),
            "--admin-passphrase-file", str(root / "passphrase"),
            "--passphrase-file", str(root / "passphrase"),
            "--anchor", str(reg_dir / "anchor.json"), "--subsystem", "VN:GOV:BCA:population",
            "--backend", f"VN:GOV:BCA:population={backend.address}", "--gateway", "127.0.0.1:0",
        ]) == 0  # fmt: skip
        assert "registered" in capsys.readouterr().out

        # Offline: the consumer exports a request that an administrator registers.
        vss_dir = root / "servers" / "VSS-ss1"
        request_file = root / "vss-request.json"
        assert main([
            "security-server", "init", "--data-dir", str(vss_dir), "--server-id", "VN:GOV:VSS:ss1",
            "--address", "127.0.0.1:1", "--anchor", str(reg_dir / "anchor.json"),
            "--subsystem", "VN:GOV:VSS:benefits", "--gateway", "127.0.0.1:0",
            "--gateway-token", "127.0.0.1:0", "--export-request", str(request_file),
        ]) == 0  # fmt: skip
        out = capsys.readouterr().out
        assert "cdx registry server register VN:GOV:VSS:ss1" in out
        request = RegistrationRequest.from_json(request_file.read_bytes())
        assert request.subsystems == ("VN:GOV:VSS:benefits",)
        certs = registry.service.register_server(
            request.server_id, request.address, request.auth_csr_pem, request.signing_csr_pem,
            request.hpke_public_raw, list(request.subsystems), ADMIN,
            dns_names=list(request.dns_names), ip_addresses=list(request.ip_addresses),
            witness_public_raw=request.witness_public_raw,
        )  # fmt: skip
        cert_dir = root / "vss-certs"
        cert_dir.mkdir()
        (cert_dir / "auth.pem").write_bytes(certs.auth_cert_pem)
        (cert_dir / "signing.pem").write_bytes(certs.signing_cert_pem)
        (cert_dir / "ca.pem").write_bytes(certs.ca_pem)
        assert main([
            "security-server", "install-certificates", "--data-dir", str(vss_dir),
            "--certificates", str(cert_dir),
        ]) == 0  # fmt: skip

        # Keys never leave the server and are encrypted at rest.
        for name in ("auth.key", "signing.key", "hpke.key", "witness.key"):
            path = vss_dir / name
            assert path.stat().st_mode & 0o077 == 0
            assert b"ENCRYPTED" in path.read_bytes()

        for data_dir in (bca_dir, vss_dir):
            config = load_config(data_dir / "server.toml").with_changes(
                registry_address=registry.address, exchange_address="127.0.0.1:0"
            )
            server = start_security_server(config)
            servers.append(server)
            registry.service.set_server_address(server.server_id, server.exchange_address, ADMIN)
        for server in servers:
            server.conf_client.refresh()
        vss = servers[1]
        cert, key = _is_identity(registry, "VN:GOV:VSS:benefits", root)
        base = [
            "query", "--gateway", vss.gateway_address, "--ca", str(reg_dir / "ca.pem"),
            "--service", "VN:GOV:BCA:population/person/v1", "--subject", ANNE.id,
            "--purpose", "SOCIAL_BENEFIT_ELIGIBILITY", "--cert", str(cert), "--key", str(key),
        ]  # fmt: skip
        assert main(base) == 0
        table = capsys.readouterr().out
        assert ANNE.full_name in table and "birth_date" in table
        assert "address" not in table  # outside the agreement
        assert "LEGAL_OBLIGATION" in table and "access record:" in table

        assert main([*base, "--json", "--field", "full_name"]) == 0
        response = json.loads(capsys.readouterr().out)
        assert response["data"] == {"full_name": ANNE.full_name}
        assert response["record_id"] and response["provider_record_id"]

        assert main([*base, "--field", "address"]) == 2
        assert "field_not_allowed" in capsys.readouterr().err

        assert main(["security-server", "status", "--config", str(vss_dir / "server.toml")]) == 0
        status = capsys.readouterr().out
        assert "unshipped records  3" in status

        assert main(["security-server", "token", "--subsystem", "VN:GOV:VSS:benefits"]) == 0
        lines = capsys.readouterr().out.splitlines()
        token = lines[0].rsplit(" ", 1)[1]
        assert hashlib.sha256(token.encode()).hexdigest() in lines[2]
        assert lines[2].endswith('= "VN:GOV:VSS:benefits"')
    finally:
        for server in servers:
            server.stop()
        backend.stop()


def test_init_refuses_to_overwrite_keys(tmp_path: Path, registry: RunningRegistry) -> None:
    args = [
        "security-server", "init", "--data-dir", str(tmp_path / "ss"), "--server-id",
        "VN:GOV:BCA:ss9", "--address", "127.0.0.1:1", "--anchor",
        str(tmp_path / "registry" / "anchor.json"), "--subsystem", "VN:GOV:BCA:population",
        "--export-request", str(tmp_path / "req.json"),
    ]  # fmt: skip
    assert main(args) == 0
    before = (tmp_path / "ss" / "signing.key").read_bytes()
    assert main(args) == 2
    assert (tmp_path / "ss" / "signing.key").read_bytes() == before
