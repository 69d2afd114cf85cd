"""The deployment artefacts in ``deploy/`` reference only what the product really has.

Every ``cdx ...`` command line (Compose, Kubernetes, systemd, the bootstrap script) must parse
with the real ``cdx`` parser; every listen port must be declared where the orchestrator needs
it (container ports, Services, published ports) and every probe must hit a port and path the
health endpoint serves; every ``CDX_*`` variable must be one the code reads; every example
TOML must load with the real config loaders; every Secret a workload mounts must exist in the
Secrets example with the keys the workload asks for.
"""

from __future__ import annotations

import configparser
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (the dev extra) parses the manifests")

from cdx import health, telemetry  # noqa: E402
from cdx.cli import build_parser  # noqa: E402
from security_server.config import load_config  # noqa: E402
from stack import cli as stack_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BOOTSTRAP = DEPLOY / "scripts" / "bootstrap.sh"
HEALTH_PORT = 9464


# --- helpers ---------------------------------------------------------------------------------


def parse_cdx(argv: list[str]) -> Any:
    """Parse ``argv`` (after ``cdx``) with the real parser; a failure names the command."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`cdx {' '.join(argv)}` does not parse") from exc
    assert getattr(args, "handler", None) is not None, f"`cdx {' '.join(argv)}` runs nothing"
    return args


def listen_ports(argv: list[str]) -> set[int]:
    """Ports a serve command listens on (``--listen``, ``--public-listen``, ``--address``)."""
    ports = set()
    for flag in ("--listen", "--public-listen", "--address"):
        if flag in argv:
            ports.add(int(argv[argv.index(flag) + 1].rsplit(":", 1)[1]))
    return ports


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml_docs(path):
            yield path, doc


def bootstrap_defaults() -> dict[str, str]:
    """``VAR="${VAR:-default}"`` lines of the bootstrap script."""
    found = re.findall(r'^(\w+)="\$\{\1:-([^}]*)\}"', BOOTSTRAP.read_text(), re.M)
    return dict(found)


def bootstrap_commands() -> list[list[str]]:
    """Every ``cdx ...`` command of the bootstrap script, with variables given sample values."""
    text = BOOTSTRAP.read_text().replace("\\\n", " ")
    values = {**bootstrap_defaults(), "D": "/var/lib/cdx", "R": "127.0.0.1:4400"}
    values.update(id="VN:GOV:BCA:ss1", host="ss-bca", listen="0.0.0.0", sub="VN:GOV:BCA:population")
    values.update(agency="bca", DB="postgresql://cdx@db/cdx", REGISTRY_PID="1")
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("cdx "):
            continue
        line = line.split(" &", 1)[0]
        line = re.sub(r'"\$\(cat [^)]*\)"', "KEYTEXT", line)
        line = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), "X"), line)
        commands.append(shlex.split(line)[1:])
    return commands


def known_env_names() -> set[str]:
    """``CDX_*`` names the code or the bootstrap script reads."""
    names = set(telemetry.ENVIRONMENT)
    sources = [BOOTSTRAP.read_text()]
    for package in (
        "cdx",
        "registry",
        "security_server",
        "consent",
        "audit",
        "notify",
        "portal",
        "stack",
    ):
        sources += [p.read_text() for p in (ROOT / package).rglob("*.py")]
    text = "\n".join(sources)
    return names | set(re.findall(r"\b(CDX_[A-Z_]+)\b", text))


# --- Compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def cdx_services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("cdx:") and "entrypoint" not in service:
            yield name, service


def test_compose_runs_every_component(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    for needed in ("postgres", "registry", "consent", "audit", "portal", "otel-collector"):
        assert needed in services
    servers = [
        n for n, s in cdx_services(compose) if s["command"][:2] == ["security-server", "serve"]
    ]
    assert len(servers) >= 2


def test_compose_commands_parse_and_probe_the_health_port(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in cdx_services(compose):
        argv = [str(a) for a in service["command"]]
        parse_cdx(argv)
        env = service["environment"]
        health_port = int(str(env["CDX_HEALTH_LISTEN"]).rsplit(":", 1)[1])
        assert health_port == HEALTH_PORT, name
        check = service.get("healthcheck", {})
        if not check.get("disable"):
            probe = " ".join(check["test"])
            assert f":{health_port}/healthz" in probe, name
        published = {int(str(p).split(":")[-2]) for p in service.get("ports", [])}
        assert published <= listen_ports(argv) | {5501}, name  # 5501: a server's gateway
        checked += 1
    assert checked >= 7


def test_compose_environment_names_are_read_by_the_code(compose: dict[str, Any]) -> None:
    known = known_env_names()
    for name, service in compose["services"].items():
        for key in service.get("environment", {}) or {}:
            if key.startswith("CDX_"):
                assert key in known, f"{name}: {key} is read by nothing"


def test_compose_security_servers_use_the_ports_the_bootstrap_registers(
    compose: dict[str, Any],
) -> None:
    defaults = bootstrap_defaults()
    assert int(defaults["SS_GATEWAY_PORT"]) == 5501
    assert int(defaults["SS_EXCHANGE_PORT"]) == 5500
    commands = {n: [str(a) for a in s["command"]] for n, s in cdx_services(compose)}
    assert listen_ports(commands["registry"]) == {int(defaults["REGISTRY_PORT"])}
    assert listen_ports(commands["audit"]) == {int(defaults["AUDIT_PORT"])}
    assert listen_ports(commands["consent"]) == {
        int(defaults["CONSENT_PORT"]),
        int(defaults["CONSENT_PUBLIC_PORT"]),
    }
    assert defaults["BACKEND_BCA"].endswith(":6001")
    assert listen_ports(commands["backend-bca"]) == {6001}
    for name in ("ss-bca", "ss-vss"):
        config = commands[name][commands[name].index("--config") + 1]
        agency = name.split("-")[1]
        assert config == f"/var/lib/cdx/servers/{agency}/server.toml"
        assert '"$D/servers/$agency/server.toml"' in BOOTSTRAP.read_text()


def test_bootstrap_script_commands_parse() -> None:
    commands = bootstrap_commands()
    assert len(commands) >= 15
    for argv in commands:
        parse_cdx(argv)
    kinds = {tuple(a[:2]) for a in commands}
    for needed in (
        ("registry", "init"),
        ("registry", "serve"),
        ("audit", "init"),
        ("consent", "init"),
        ("security-server", "init"),
        ("registry", "agreement"),
    ):
        assert needed in kinds, needed


def test_bootstrap_writes_server_settings_the_loader_accepts(tmp_path: Path) -> None:
    """The server.toml the script writes (its echo lines) loads with the real loader."""
    script = BOOTSTRAP.read_text()
    block = script[script.index("  {\n", script.index("security-server init")) :]
    block = block[: block.index('} > "$D/servers/$agency/server.toml"')]
    lines = []
    for raw in block.splitlines():
        m = re.match(r"\s*(?:if .*then )?echo (['\"])(.*)\1(?:; fi)?$", raw)
        if m:
            lines.append(m.group(2).replace('\\"', '"'))
    text = "\n".join(lines)
    values = {"id": "VN:GOV:BCA:ss1", "listen": "0.0.0.0", "agency": "bca", "DB": ""}
    values.update(bootstrap_defaults())
    text = re.sub(r"\$(\w+)", lambda m: values.get(m.group(1), "x"), text)
    (tmp_path / "server.toml").write_text(text)
    config = load_config(tmp_path / "server.toml")
    assert config.server_id == "VN:GOV:BCA:ss1"
    assert config.exchange_address.endswith(":5500")
    assert config.backend_for("VN:GOV:BCA:population/person/v1") == "backend-bca:6001"


# --- Kubernetes ------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert listed == on_disk


def _secret_keys() -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for doc in yaml_docs(K8S / "secrets.example.yaml"):
        assert doc["kind"] == "Secret"
        keys[doc["metadata"]["name"]] = set(doc["stringData"])
    return keys


def test_workloads_parse_declare_ports_and_probe_the_health_endpoint() -> None:
    secrets = _secret_keys()
    services = {doc["metadata"]["name"]: doc for _, doc in k8s_docs() if doc["kind"] == "Service"}
    deployments = [(p, d) for p, d in k8s_docs() if d["kind"] == "Deployment"]
    seen = set()
    for path, doc in deployments:
        pod = doc["spec"]["template"]["spec"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= (
            doc["spec"]["template"]["metadata"]["labels"].items()
        )
        for container in pod["containers"]:
            if not container["image"].startswith("cdx:"):
                continue
            argv = [str(a) for a in container["args"]]
            parse_cdx(argv)
            seen.add(tuple(argv[:2]))
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert listen_ports(argv) <= set(ports.values()), path.name
            if argv[:2] == ["security-server", "serve"]:
                # Its ports are in the server.toml the bootstrap writes.
                defaults = bootstrap_defaults()
                assert ports["exchange"] == int(defaults["SS_EXCHANGE_PORT"]), path.name
                assert ports["gateway"] == int(defaults["SS_GATEWAY_PORT"]), path.name
            env = {e["name"]: e for e in container.get("env", [])}
            known = known_env_names()
            assert all(k in known for k in env if k.startswith("CDX_")), path.name
            for ref in re.findall(r"\$\((\w+)\)", " ".join(argv)):
                assert ref in env, f"{path.name}: $({ref}) is not defined"
            if "CDX_HEALTH_LISTEN" in env:
                listen = env["CDX_HEALTH_LISTEN"]["value"]
                assert ports["health"] == int(listen.rsplit(":", 1)[1]), path.name
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    get = container[probe]["httpGet"]
                    assert get["port"] == "health" and get["path"] in health.PATHS, path.name
                assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
            else:
                assert "readinessProbe" in container, path.name
            # The Service in front exposes the same named ports.
            service = services[doc["metadata"]["name"]]
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, f"{path.name}: {port['targetPort']}"
        # Secrets: each one mounted exists, with every key the workload asks for.
        for volume in pod.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                name = source["secret"]["name"]
                assert name in secrets, f"{path.name}: Secret {name} is not described"
                wanted = {item["key"] for item in source["secret"].get("items", [])}
                assert wanted <= secrets[name], f"{path.name}: {wanted - secrets[name]}"
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
        for container in pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], path.name
    for needed in (
        ("registry", "serve"),
        ("audit", "serve"),
        ("consent", "serve"),
        ("security-server", "serve"),
        ("portal", "serve"),
    ):
        assert needed in seen, needed


def test_security_server_workloads_mount_the_config_they_name() -> None:
    for _, doc in k8s_docs():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        argv = [str(a) for a in pod["containers"][0].get("args", [])]
        if "--config" not in argv:
            continue
        config = argv[argv.index("--config") + 1]
        mounted = {
            f"/var/lib/cdx/{item['path']}"
            for volume in pod["volumes"]
            for source in volume.get("projected", {}).get("sources", [])
            for item in source["secret"].get("items", [])
        }
        assert config in mounted, doc["metadata"]["name"]
        assert "/var/lib/cdx/passphrase" in mounted


def test_secret_creation_script_creates_every_described_secret_and_key() -> None:
    script = (DEPLOY / "scripts" / "k8s-secrets.sh").read_text().replace("\\\n", " ")
    created: dict[str, set[str]] = {}
    for line in script.splitlines():
        m = re.search(r"create secret generic (\S+)(.*)", line)
        if m:
            created[m.group(1)] = set(re.findall(r"--from-(?:file|literal)=([^=]+)=", m.group(2)))
    assert created == _secret_keys()


# --- systemd and example configs -------------------------------------------------------------


def test_systemd_units_run_real_commands() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert len(units) >= 5
    known = known_env_names()
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit.read_text())
        exec_start = parser["Service"]["ExecStart"]
        argv = shlex.split(exec_start)
        assert argv[0].endswith("/cdx"), unit.name
        parse_cdx([a.replace("%i", "bca") for a in argv[1:]])
        for env in re.findall(r"\b(CDX_[A-Z_]+)=", unit.read_text()):
            assert env in known, f"{unit.name}: {env}"
        for ref in re.findall(r"\$\{(\w+)\}", exec_start):
            assert ref in (DEPLOY / "systemd" / "cdx.env.example").read_text(), ref
    for example in (DEPLOY / "systemd").glob("*.env.example"):
        for name in re.findall(r"^(CDX_[A-Z_]+)=", example.read_text(), re.M):
            assert name in known | {"CDX_AUDIT_DATABASE_URL"}, f"{example.name}: {name}"


def test_example_server_config_loads_with_every_setting() -> None:
    config = load_config(DEPLOY / "config" / "server.example.toml")
    assert config.server_id == "VN:GOV:BCA:ss1"
    assert config.database_schema == "ss_bca"
    raw = tomllib.loads((DEPLOY / "config" / "server.example.toml").read_text())
    assert set(raw["limits"]) <= {f for f in type(config.limits).__dataclass_fields__}


def test_single_box_config_uses_only_keys_cdx_up_accepts() -> None:
    raw = tomllib.loads((DEPLOY / "single-box.toml").read_text())
    assert set(raw) <= set(stack_cli.CONFIG_TABLES)
    assert set(raw["ports"]) <= set(stack_cli.PORT_KEYS)
    assert set(raw["portal"]) <= set(stack_cli.PORTAL_KEYS)
    assert set(raw["telemetry"]) <= set(stack_cli.TELEMETRY_KEYS)
    telemetry.TelemetrySettings(
        exporter=raw["telemetry"]["exporter"],
        otlp_endpoint=raw["telemetry"]["otlp_endpoint"],
        health_listen=raw["telemetry"]["health_listen"],
    )
    ports = [*raw["ports"].values(), int(raw["telemetry"]["health_listen"].rsplit(":", 1)[1])]
    agency_ports = range(raw["ports"]["agencies"], raw["ports"]["agencies"] + 4 * 3)
    assert not set(ports) & set(agency_ports) - {raw["ports"]["agencies"]}
    assert len(set(ports)) == len(ports)


def test_the_check_itself_catches_a_bad_command() -> None:
    with pytest.raises(AssertionError, match="does not parse"):
        parse_cdx(["security-server", "serve", "--confg", "x.toml"])
    with pytest.raises(AssertionError, match="does not parse"):
        parse_cdx(["consent", "serve", "--database", "x"])
