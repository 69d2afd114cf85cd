"""``cdx status`` for a multi-process deployment: the components named by each security
server's ``server.toml`` (the server, its registry, the audit log its global configuration
names, its backends) and by health endpoints, each asked for its health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdx import health
from cdx.cli import main
from security_server.config import dump_config
from tests.faults.audit_log import AuditLog, attach_audit_log
from tests.integration.exchange_harness import ExchangeInstance, build_instance

pytestmark = pytest.mark.xdist_group("status")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[ExchangeInstance, AuditLog, dict[str, Path]]]:
    instance = build_instance(tmp_path, start=False)
    log = attach_audit_log(instance, tmp_path)
    files: dict[str, Path] = {}
    try:
        log.start()
        for key, agency in instance.agencies.items():
            agency.start()
            files[key] = agency.data_dir / "server.toml"
            files[key].write_text(dump_config(agency.config, base=agency.data_dir))
        yield instance, log, files
    finally:
        instance.close()
        log.close()


def _status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    code = main(["status", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_status_of_a_multi_process_deployment_from_its_configuration_files(
    deployment: tuple[ExchangeInstance, AuditLog, dict[str, Path]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance, log, files = deployment
    population, social = instance.agency("population"), instance.agency("social")
    endpoint = health.HealthEndpoint(
        "127.0.0.1:0", population.running.health.checks(), component="security-server"
    )
    try:
        args = ["--security-server", str(files["population"])]
        args += ["--security-server", str(files["social"]), "--health", endpoint.url]
        code, report = _status(capsys, *args)
        rows = {(r["name"], r["address"]): r for r in report["components"]}  # type: ignore[attr-defined]
        assert code == 0 and report["healthy"], report
        server = rows[(f"{population.server_id} security server", population.registered_address)]
        assert server["health"] == "serving"
        assert "conf v" in server["details"] and "outbox 0 unshipped" in server["details"]
        assert rows[("registry", instance.registry.address)]["health"] == "serving"
        audit = rows[("audit log", log.address)]
        assert audit["health"] == "serving" and "log size" in audit["details"]
        backend = population.backend.address
        assert (
            rows[(f"{population.server_id} backend {population.subsystem}", backend)]["health"]
            == "serving"
        )
        assert (f"{social.server_id} security server", social.registered_address) in rows
        assert [r for r in rows if r[0] == "registry"] == [("registry", instance.registry.address)]
        assert rows[("security-server health", endpoint.url)]["health"] == "serving"

        population.backend.stop()
        code, report = _status(capsys, *args)
        rows = {(r["name"], r["address"]): r for r in report["components"]}  # type: ignore[attr-defined]
        assert code == 1 and not report["healthy"]
        assert (
            rows[(f"{population.server_id} backend {population.subsystem}", backend)]["health"]
            == "down"
        )
    finally:
        endpoint.stop()


def test_status_says_which_component_is_down_in_plain_text(
    deployment: tuple[ExchangeInstance, AuditLog, dict[str, Path]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, log, files = deployment
    log.stop()
    capsys.readouterr()
    assert main(["status", "--security-server", str(files["tax"])]) == 1
    lines = capsys.readouterr().out.splitlines()
    (audit,) = [line for line in lines if line.startswith("audit log")]
    assert log.address in audit and " down " in f"{audit} "
