"""When something an operator gave is wrong — a database that does not exist, a registry that is
not there, a key that does not open — ``cdx`` says so in one line that names the database, the
peer or the file and says what to do; JSON with ``--log-json``; never a traceback (threat model
T194). Background warnings name the peer too.

Each command runs as an operator runs it: ``cdx`` in its own process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdx.confclient import ConfClient
from registry.bootstrap import init_instance
from tests.conftest import postgres_url

CDX = [sys.executable, "-m", "cdx.cli"]


def cdx(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDX_")}
    return subprocess.run([*CDX, *argv], capture_output=True, text=True, timeout=120, env=env)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = Path(tmp_path_factory.mktemp("operator")) / "data"
    init_instance(directory, "VN", datetime.now(UTC))
    return directory


@pytest.mark.postgres
@pytest.mark.parametrize("log_json", [False, True], ids=["text", "json"])
def test_a_wrong_database_name_is_one_line_naming_it(tmp_path: Path, log_json: bool) -> None:
    url = postgres_url()
    if not url:
        pytest.skip("PostgreSQL not configured: set CDX_TEST_POSTGRES_URL")
    wrong = url.rsplit("/", 1)[0] + "/no_such_database_for_cdx"
    result = cdx(
        *(["--log-json"] if log_json else []),
        "registry", "init", "--data", str(tmp_path / "data"), "--instance", "VN",
        "--db-url", wrong,
    )  # fmt: skip
    line = _one_line(result)
    if log_json:
        shown = json.loads(line)
        assert shown["code"] == "unavailable" and shown["hint"]
        assert "no_such_database_for_cdx" in shown["message"]
    else:
        assert line.startswith("error [unavailable]: the database could not be used")
        assert "no_such_database_for_cdx" in line and " — check " in line


def test_an_absent_registry_is_one_line_naming_it(data: Path) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    line = _one_line(cdx("registry", "history", "--data", str(data), "--registry", address))
    assert line.startswith("error [unavailable]: the registry at " + address)
    assert "is it running" in line


def test_a_key_that_does_not_open_is_one_line_naming_the_file(data: Path) -> None:
    passphrase = data.parent / "wrong-passphrase"
    passphrase.write_text("not the instance passphrase\n")
    passphrase.chmod(0o600)
    key = data / "registry" / "admin" / "bootstrap.key"
    line = _one_line(
        cdx("consent", "list", "--data", str(data), "--token", "t", "--cert",
            str(key.with_suffix(".pem")), "--key", str(key), "--passphrase-file", str(passphrase))
    )  # fmt: skip
    assert line.startswith("error [key_store_error]: cannot decrypt the key file " + str(key))
    assert "passphrase" in line


def test_an_unsafe_key_file_mode_says_the_chmod_to_run(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    subprocess.run(["cp", "-a", str(data), str(copy)], check=True)
    key = copy / "registry" / "admin" / "bootstrap.key"
    key.chmod(0o644)
    line = _one_line(cdx("registry", "history", "--data", str(copy)))
    assert f"chmod 600 {key}" in line


def test_a_failing_configuration_refresh_names_the_registry(
    data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = init_instance(data.parent / "other", "VN", datetime.now(UTC))
    address = f"127.0.0.1:{_closed_port()}"
    client = ConfClient(
        address, paths.admin_identity(), paths.load_anchor(), data.parent / "conf.bin"
    )
    caplog.set_level(logging.WARNING, logger="cdx.confclient")
    client.start()
    try:
        deadline = time.monotonic() + 60
        while not any(address in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no warning named the registry"
            time.sleep(0.05)
    finally:
        client.stop()
    warning = next(r.getMessage() for r in caplog.records if address in r.getMessage())
    assert "registry" in warning and "unavailable" in warning
