"""``cdx idp`` and ``cdx consent``: set up the development IdP and the consent service against a
real registry, run ``cdx consent serve`` as a process, and walk a consent through its life from
the command line as an agency and as a citizen."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from cdx import crypto
from cdx.cli import main
from tests.integration.exchange_harness import ADMIN, ExchangeInstance, build_instance
from tests.ports import closed_address
from tests.waiting import eventually

ALICE = "079090000001"
BOB = "079090000002"
SOCIAL = "VN:GOV:VSS:benefits"
TAX_SERVICE = "VN:GOV:GDT:income/income/v1"
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[ExchangeInstance]:
    built = build_instance(tmp_path, start=False)
    yield built
    built.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_consent_cli_end_to_end(
    instance: ExchangeInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    root = instance.root
    data = ["--data", str(root)]
    registry = ["--registry", instance.registry.address]
    # The instance's identity provider and consent service are set up again, with the CLI.
    shutil.rmtree(root / "idp")
    shutil.rmtree(root / "consent")

    code, out, _ = run(capsys, "idp", "init", *data, "--register", *registry)
    assert code == 0 and "urn:cdx:VN:dev-idp" in out

    # Port 0: the service binds free ports when it starts; its address is registered then.
    listen = public = "127.0.0.1:0"
    code, out, _ = run(
        capsys, "consent", "init", *data, *registry, "--listen", listen, "--public-listen", public
    )
    assert code == 0 and "registered" in out
    assert (root / "consent" / "consent.key").stat().st_mode & 0o077 == 0

    env = dict(os.environ, CDX_DATA=str(root))
    server = subprocess.Popen(
        [sys.executable, "-m", "cdx.cli", "consent", "serve", *data],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address_file = root / "consent" / "public_address"

        def started() -> bool:
            assert server.poll() is None, server.communicate()[1]
            return address_file.exists()

        eventually(started, timeout=30, what="cdx consent serve listening")
        address = (root / "consent" / "address").read_text().strip()
        instance.registry_service.set_trust_anchors(consent_service_address=address, actor=ADMIN)

        code, token, _ = run(capsys, "idp", "token", "--citizen", ALICE, *data, *registry)
        assert code == 0
        token_file = root / "alice.token"
        token_file.write_text(token)
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
        assert claims["sub"] == ALICE and claims["role"] == "citizen"
        citizen = ["--token-file", str(token_file)]

        social_ss = ["--server-dir", str(root / "servers" / "VSS-ss1")]
        code, out, _ = run(
            capsys, "consent", "request", *data, *social_ss,
            "--subject", ALICE, "--grantee", SOCIAL, "--service", TAX_SERVICE,
            "--purpose", PURPOSE, "--fields", "annual_income", "--valid-days", "30",
            "--max-uses", "10",
        )  # fmt: skip
        assert code == 0, out
        match = re.search(r"consent requested: (\S+)", out)
        assert match
        consent_id = match.group(1)

        code, out, _ = run(capsys, "consent", "list", *data, *citizen, "--state", "PENDING")
        assert code == 0 and consent_id in out and "PENDING" in out

        code, out, _ = run(capsys, "consent", "approve", consent_id, *data, *citizen)
        assert code == 0 and "ACTIVE" in out

        code, out, _ = run(capsys, "consent", "show", consent_id, *data, *citizen, "--json")
        assert code == 0
        shown = json.loads(out)
        assert shown["state"] == "ACTIVE" and shown["fields"] == ["annual_income"]
        assert shown["artefact_signature"].startswith("valid")
        assert [e["action"] for e in shown["events"]] == ["requested", "approved"]
        public_key = crypto.public_key_from_pem((root / "consent" / "consent.pub.pem").read_bytes())
        artefact = jwt.decode(shown["artefact"], public_key, algorithms=["EdDSA"])  # type: ignore[arg-type]
        assert artefact["consent_id"] == consent_id

        receipt = root / "receipt.json"
        code, out, _ = run(
            capsys, "consent", "receipt", consent_id, *data, *citizen, "--out", str(receipt)
        )
        assert code == 0
        record = json.loads(receipt.read_text())
        assert record["record_id"] == consent_id and record["pii_principal_id"] == ALICE
        signed = (root / "receipt.json.jws").read_text().strip()
        assert jwt.decode(signed, public_key, algorithms=["EdDSA"])["record_id"] == consent_id  # type: ignore[arg-type]

        # another citizen cannot touch it
        code, bob_token, _ = run(capsys, "idp", "token", "--citizen", BOB, *data, *registry)
        code, _, err = run(
            capsys, "consent", "revoke", consent_id, *data, "--token", bob_token.strip()
        )
        assert code == 2 and "not_found" in err

        code, out, _ = run(capsys, "consent", "revoke", consent_id, *data, *citizen)
        assert code == 0 and "REVOKED" in out

        code, out, _ = run(
            capsys, "consent", "list", *data, *social_ss, "--grantee", SOCIAL, "--json"
        )
        assert code == 0
        assert [(c["id"], c["state"]) for c in json.loads(out)] == [(consent_id, "REVOKED")]

        # a forged token and a missing token are refused with a clear message
        code, _, err = run(capsys, "consent", "list", *data, "--token", token[:-8] + "AAAAAAAA")
        assert code == 2 and "token_signature_invalid" in err
        saved = os.environ.pop("CDX_TOKEN", None)
        try:
            code, _, err = run(capsys, "consent", "list", *data)
        finally:
            if saved is not None:
                os.environ["CDX_TOKEN"] = saved
        assert code == 2 and "token" in err

        # an agency cannot approve: the citizen commands need a citizen's token
        code, _, err = run(capsys, "consent", "approve", consent_id, *data, *social_ss)
        assert code == 2
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        finally:
            if server.poll() is None:
                server.kill()
    assert server.returncode == 0
    assert not (root / "consent" / "address").exists()


def test_idp_token_needs_a_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "passphrase").write_text("secret\n")
    (tmp_path / "passphrase").chmod(0o600)
    code, _, _ = run(capsys, "idp", "init", "--data", str(tmp_path), "--instance", "VN")
    assert code == 0
    with closed_address() as nothing_listens:
        code, _, err = run(
            capsys, "idp", "token", "--data", str(tmp_path), "--citizen", ALICE,
            "--registry", nothing_listens,
        )  # fmt: skip
    assert code == 2 and "no global configuration" in err
