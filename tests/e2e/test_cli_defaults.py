"""``cdx`` commands on a single-box data directory need no flags but ``--data``: addresses,
certificates, the CA and the passphrase all come from the instance's layout (``cdx.clidefaults``).

A real instance (``stack``: every component a real gRPC server with mutual TLS) runs in this
process; each command goes through ``cdx.cli.main`` as an operator, an inspector, an agency and
a citizen would type it.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from security_server.backends.sample import CITIZENS
from stack.provision import create_instance
from stack.runtime import RunningInstance, StackOptions, start_instance
from stack.topology import spec
from tests.cdx_command import Result, run_cdx

CITIZEN = CITIZENS[0].id
PURPOSE = "SOCIAL_BENEFIT_ELIGIBILITY"
ENVIRONMENT = (
    "CDX_DATA",
    "CDX_REGISTRY",
    "CDX_AUDIT",
    "CDX_AUDIT_TILES",
    "CDX_CONSENT",
    "CDX_CONSENT_PUBLIC",
)


@pytest.fixture(scope="module", autouse=True)
def _plain_process() -> Iterator[None]:
    """No address from the environment, and pytest keeps its log handlers."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ENVIRONMENT:
            mp.delenv(name, raising=False)
        mp.setattr("cdx.telemetry.configure_logging", lambda **_kw: None)
        yield


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningInstance]:
    data = Path(tmp_path_factory.mktemp("single-box")) / "data"
    create_instance(data)
    with start_instance(data, StackOptions(portal=False)) as running:
        # Something for the inspector to find: an allowed and a refused exchange.
        population = spec("population").service
        running.query("social", population, CITIZEN, PURPOSE)
        with contextlib.suppress(Exception):
            running.query("social", population, CITIZEN, PURPOSE, ("address",))
        _wait_for_log_entries(running, 3)  # both sides of one, the refusing consumer of the other
        yield running


def _wait_for_log_entries(running: RunningInstance, count: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        result = cdx(running, "audit", "checkpoint", "--json")
        if result.rc == 0 and json.loads(result.out)["size"] >= count:
            return
        assert time.monotonic() < deadline, f"the log did not reach {count} entries"
        time.sleep(0.2)


def cdx(instance: RunningInstance, *argv: str) -> Result:
    return run_cdx([*argv, "--data", str(instance.layout.data_dir)])


def test_registry_commands_find_the_registry(instance: RunningInstance) -> None:
    shown = cdx(instance, "registry", "conf", "show", "--json")
    assert shown.rc == 0, shown.err
    assert json.loads(shown.out)["instance"] == instance.layout.instance


def test_inspector_commands_find_the_log_and_the_inspector(instance: RunningInstance) -> None:
    checkpoint = cdx(instance, "audit", "checkpoint", "--json")
    assert checkpoint.rc == 0, checkpoint.err
    assert json.loads(checkpoint.out)["size"] >= 2
    search = cdx(instance, "audit", "search", "--decision", "DENY", "--json")
    assert search.rc == 0, search.err
    assert any(h["reason"] == "field_not_allowed" for h in json.loads(search.out)["hits"])
    proof = cdx(instance, "audit", "proof", "--index", "0")
    assert proof.rc == 0 and "is in tree" in proof.out, proof.err
    # The instance serves its log's tiles; the proof is computed from them by default.
    tiles = instance.layout.audit_tiles
    assert tiles.startswith("http://127.0.0.1:") and not tiles.endswith(":0")
    assert f"computed here from the log's tiles at {tiles}" in proof.out
    assert instance.conf.current().audit_tiles_url == tiles
    api = cdx(instance, "audit", "proof", "--index", "0", "--api")
    assert api.rc == 0 and "from the log's API" in api.out, api.err
    verify = cdx(instance, "audit", "verify", "--no-progress", "--grace", "3600")
    assert verify.rc == 0 and "VERIFIED" in verify.out, verify.out + verify.err


def test_agency_and_citizen_consent_commands_find_the_consent_service(
    instance: RunningInstance, tmp_path: Path
) -> None:
    minted = cdx(instance, "idp", "token", "--citizen", CITIZEN)
    assert minted.rc == 0, minted.err
    token = tmp_path / "citizen.token"
    token.write_text(minted.out.strip())
    requested = cdx(
        instance, "consent", "request", "--grantee", spec("social").subsystem,
        "--subject", CITIZEN, "--service", spec("tax").service, "--purpose", PURPOSE,
        "--fields", "annual_income",
    )  # fmt: skip
    assert requested.rc == 0, requested.err
    found = re.search(r"consent requested: (\S+)", requested.out)
    assert found
    listed = cdx(instance, "consent", "list", "--token-file", str(token), "--json")
    assert listed.rc == 0, listed.err
    assert {c["id"]: c["state"] for c in json.loads(listed.out)}[found.group(1)] == "PENDING"
    approved = cdx(instance, "consent", "approve", found.group(1), "--token-file", str(token))
    assert approved.rc == 0 and "ACTIVE" in approved.out, approved.err


def test_a_missing_credential_is_one_line_naming_the_file(instance: RunningInstance) -> None:
    missing = cdx(instance, "audit", "checkpoint", "--inspector", "nobody")
    assert missing.rc == 2 and missing.out == ""
    assert missing.err.count("\n") == 1 and "nobody.pem" in missing.err
    assert "cdx registry cert issue" in missing.err  # what to do
