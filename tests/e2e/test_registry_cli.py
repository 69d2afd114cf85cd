"""``cdx registry ...`` end to end: ``init`` and ``serve`` run as real processes; admin commands
go through ``cdx.cli.main`` to that server over mutual TLS."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdx import cli, crypto, pki
from cdx.paths import InstancePaths
from registry.client import RegistryAdminClient
from tests.waiting import eventually

CDX = [sys.executable, "-m", "cdx.cli"]

# Keep this module's tests on one worker: they share one registry.
pytestmark = pytest.mark.xdist_group("registry-cli")


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run(*argv: str) -> Result:
    """Run ``cdx`` in this process (the real entry point, without re-importing everything)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(list(argv))
        except SystemExit as exc:  # argparse: --help and usage errors
            rc = int(exc.code or 0)
    return Result(rc, out.getvalue(), err.getvalue())


@dataclass
class Instance:
    data: Path
    paths: InstancePaths
    address: str

    def cdx(self, *argv: str) -> Result:
        return run(*argv, "--data", str(self.data))


@pytest.fixture(scope="module", autouse=True)
def _keep_test_logging() -> Iterator[None]:
    # cdx.cli.main configures process-wide logging for a CLI run; keep pytest's handlers.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cdx.telemetry.configure_logging", lambda **_kw: None)
        yield


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    data = tmp_path_factory.mktemp("cli") / "data"
    init = subprocess.run(
        [*CDX, "registry", "init", "--data", str(data), "--instance", "VN"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    assert "anchor.json" in init.stdout and "Created registry of instance VN" in init.stdout
    paths = InstancePaths(data)
    server = subprocess.Popen(
        [*CDX, "registry", "serve", "--data", str(data), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def started() -> bool:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            return paths.address_file.exists()

        eventually(started, timeout=30, what="cdx registry serve listening")
        yield Instance(data, paths, paths.address_file.read_text().strip())
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    out = server.stdout.read() if server.stdout else ""
    assert rc == 0 and "listening on" in out
    assert not paths.address_file.exists()  # a stopped registry withdraws its address


def _leaf_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...]
) -> Iterator[tuple[str, ...]]:
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaf_commands(sub, (*prefix, name))


def test_every_registry_command_has_help() -> None:
    top = cli.build_parser()
    registry = next(
        a.choices["registry"] for a in top._actions if isinstance(a, argparse._SubParsersAction)
    )
    commands = list(_leaf_commands(registry, ("registry",)))
    assert ("registry", "agreement", "add") in commands and len(commands) >= 20
    for command in commands:
        result = run(*command, "--help")
        assert result.rc == 0, command
        assert result.out.startswith("usage: cdx " + " ".join(command)), command
        assert len(result.out.splitlines()) > 3, command


def test_admin_workflow(instance: Instance, tmp_path: Path) -> None:
    steps = [
        ("member", "add", "VN:GOV:BCA", "--name", "Ministry of Public Security"),
        ("member", "add", "VN:GOV:VSS", "--name", "Vietnam Social Security"),
        ("subsystem", "add", "VN:GOV:BCA:population"),
        ("subsystem", "add", "VN:GOV:VSS:benefits"),
        (
            "service", "add", "VN:GOV:BCA:population/person/v1",
            "--fields", "full_name,birth_date,address", "--categories", "identity",
            "--description", "Person record",
        ),
        ("purpose", "add", "SOCIAL_BENEFIT", "--description", "Social benefit eligibility"),
    ]  # fmt: skip
    for step in steps:
        result = instance.cdx("registry", *step)
        assert result.rc == 0, result.err
    assert "Added purpose SOCIAL_BENEFIT" in result.out

    agreement = instance.cdx(
        "registry", "agreement", "add",
        "--client", "VN:GOV:VSS:benefits", "--service", "VN:GOV:BCA:population/person/v1",
        "--purpose", "SOCIAL_BENEFIT", "--basis", "LEGAL_OBLIGATION",
        "--legal-reference", "Law 41/2024/QH15", "--fields", "full_name,birth_date",
        "--rate-limit", "120",
    )  # fmt: skip
    assert agreement.rc == 0, agreement.err
    agreement_id = re.search(r"Added agreement (agr-[0-9a-f]+)", agreement.out)
    assert agreement_id is not None

    # A security server registers from CSRs it made itself.
    auth_key, signing_key = crypto.generate_signing_key(), crypto.generate_signing_key()
    (tmp_path / "auth.csr").write_bytes(pki.build_csr(auth_key, "ss1"))
    (tmp_path / "signing.csr").write_bytes(pki.build_csr(signing_key, "ss1"))
    hpke_hex = crypto.raw_x25519_public(crypto.generate_hpke_key().public_key()).hex()
    registered = instance.cdx(
        "registry", "server", "register", "VN:GOV:BCA:ss1", "--address", "127.0.0.1:7301",
        "--auth-csr", str(tmp_path / "auth.csr"), "--signing-csr", str(tmp_path / "signing.csr"),
        "--hpke-public-key", hpke_hex, "--subsystem", "VN:GOV:BCA:population",
        "--out", str(tmp_path / "certs"),
    )  # fmt: skip
    assert registered.rc == 0, registered.err
    auth = pki.cert_from_pem((tmp_path / "certs" / "auth.pem").read_bytes())
    assert str(pki.server_id_of(auth)) == "VN:GOV:BCA:ss1"
    assert (tmp_path / "certs" / "ca.pem").read_bytes() == instance.paths.load_ca_pem()

    shown = instance.cdx("registry", "conf", "show")
    assert shown.rc == 0, shown.err
    for text in (
        "Global configuration of instance VN",
        "verified against the anchor",
        "Ministry of Public Security",
        "VN:GOV:BCA:ss1",
        "127.0.0.1:7301",
        agreement_id.group(1),
        "LEGAL_OBLIGATION",
    ):
        assert text in shown.out

    as_json = json.loads(instance.cdx("registry", "conf", "show", "--json").out)
    [a] = as_json["agreements"]
    assert (a["client"], a["fields"], a["rate_limit_per_minute"]) == (
        "VN:GOV:VSS:benefits",
        ["birth_date", "full_name"],
        120,
    )
    assert [s["id"] for s in as_json["servers"]] == ["VN:GOV:BCA:ss1"]

    history = instance.cdx("registry", "history", "--limit", "20")
    assert history.rc == 0
    assert re.search(r"admin:bootstrap\s+server\.register\s+VN:GOV:BCA:ss1", history.out)
    assert re.search(r"admin:bootstrap\s+agreement\.add\s+" + agreement_id.group(1), history.out)


def test_refused_commands_print_a_coded_message_not_a_traceback(instance: Instance) -> None:
    instance.cdx("registry", "member", "add", "VN:GOV:GDT", "--name", "Tax")
    again = instance.cdx("registry", "member", "add", "VN:GOV:GDT", "--name", "Tax")
    assert again.rc == 2
    assert again.err.startswith("error [already_exists]:") and "Traceback" not in again.err

    bad = instance.cdx("registry", "member", "add", "VN:GOV", "--name", "x")
    assert bad.rc == 2 and "error [invalid_identifier]" in bad.err

    reinit = subprocess.run(
        [*CDX, "registry", "init", "--data", str(instance.data), "--instance", "VN"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reinit.returncode == 2 and "error [already_exists]" in reinit.stderr
    assert "Traceback" not in reinit.stderr


def test_conf_show_verifies_a_stored_copy(instance: Instance, tmp_path: Path) -> None:
    with RegistryAdminClient(instance.address, instance.paths.admin_identity()) as admin:
        raw = admin.get_global_conf(0)
    assert raw is not None
    stored = tmp_path / "globalconf.bin"
    stored.write_bytes(raw)
    ok = instance.cdx("registry", "conf", "show", "--file", str(stored))
    assert ok.rc == 0 and "Global configuration of instance VN" in ok.out

    tampered = bytearray(raw)
    tampered[len(tampered) // 2] ^= 0x01
    stored.write_bytes(bytes(tampered))
    refused = instance.cdx("registry", "conf", "show", "--file", str(stored))
    assert refused.rc == 2
    assert re.match(r"error \[(conf_invalid_signature|malformed)\]", refused.err)


def test_new_admin_certificate_is_issued_and_used(instance: Instance) -> None:
    issued = instance.cdx("registry", "cert", "issue", "--kind", "admin", "--name", "alice")
    assert issued.rc == 0, issued.err
    assert "urn:cdx:admin:alice" in issued.out
    key_file = instance.paths.admin_key("alice")
    assert key_file.exists() and os.stat(key_file).st_mode & 0o077 == 0
    assert b"ENCRYPTED" in key_file.read_bytes()
    added = instance.cdx(
        "registry", "purpose", "add", "TAX_AUDIT", "--description", "Tax audit", "--admin", "alice"
    )
    assert added.rc == 0, added.err
    history = instance.cdx("registry", "history", "--limit", "1")
    assert re.search(r"admin:alice\s+purpose\.add\s+TAX_AUDIT", history.out)
