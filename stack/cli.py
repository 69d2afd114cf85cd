"""`cdx demo`, `cdx up` and `cdx status`: a whole instance on one machine."""

from __future__ import annotations

import argparse
import os
import threading
import tomllib
from pathlib import Path
from typing import Any

from cdx import errors
from cdx.cliutil import on_stop_signal, print_json, say
from cdx.files import write_atomically

#: Tables and keys ``cdx up --config`` accepts (deploy/single-box.toml).
CONFIG_TABLES = ("data_dir", "ports", "portal", "telemetry", "oidc", "notify", "requests")
PORT_KEYS = ("registry", "consent", "audit", "audit_tiles", "portal", "notify", "agencies")
NOTIFY_KEYS = ("enabled", "smtp_host", "smtp_port", "sender", "starttls")
PORTAL_KEYS = ("enabled", "insecure_cookies")
TELEMETRY_KEYS = ("exporter", "otlp_endpoint", "health_listen")
#: ``[requests]``: where data-subject request deadlines count working days (ADR 0020).
REQUESTS_KEYS = ("time_zone", "public_holidays")


def cmd_demo(args: argparse.Namespace) -> int:
    import logging

    from cdx import health
    from stack.demo import run_demo

    if not args.verbose:
        logging.getLogger("cdx").setLevel(logging.WARNING)

    data_dir = Path(args.data_dir) if args.data_dir else None
    if data_dir is not None and (data_dir / "instance.toml").exists():
        raise errors.AlreadyExistsError(
            f"{data_dir} already holds an instance; the demo needs a fresh directory"
        )
    # Telemetry as `serve` and `up` start it (--telemetry, --otlp-endpoint, $CDX_TELEMETRY),
    # before any server is created so that every gRPC call of the story is traced.
    operations = health.start_operations(args, component="stack")
    try:
        return run_demo(data_dir, keep=args.keep)
    finally:
        operations.stop()  # flushes the exporters


def _load_up_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise errors.NotFoundError(f"no config file {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise errors.MalformedError(f"{path} is not valid TOML: {exc}") from exc


def cmd_up(args: argparse.Namespace) -> int:
    from stack.provision import InstanceLayout, Ports, create_instance
    from stack.runtime import StackOptions, start_instance

    config = _load_up_config(Path(args.config) if args.config else None)
    base = Path(args.config).parent if args.config else Path.cwd()
    data_dir = Path(args.data_dir or config.get("data_dir", "data"))
    if not data_dir.is_absolute():
        data_dir = (base / data_dir).resolve()
    ports_cfg = config.get("ports", {})
    unknown = set(ports_cfg) - set(PORT_KEYS)
    if unknown:
        raise errors.InvalidArgumentError(f"unknown [ports] keys: {', '.join(sorted(unknown))}")
    telemetry_cfg = config.get("telemetry", {})
    unknown = set(telemetry_cfg) - set(TELEMETRY_KEYS)
    if unknown:
        raise errors.InvalidArgumentError(f"unknown [telemetry] keys: {', '.join(sorted(unknown))}")
    requests_cfg = config.get("requests", {})
    unknown = set(requests_cfg) - set(REQUESTS_KEYS)
    if unknown:
        raise errors.InvalidArgumentError(f"unknown [requests] keys: {', '.join(sorted(unknown))}")
    from consent.workdays import DEFAULT_ZONE, WorkingCalendar

    calendar = WorkingCalendar.from_settings(
        str(requests_cfg.get("time_zone", DEFAULT_ZONE)), requests_cfg.get("public_holidays", [])
    )
    if not (data_dir / "instance.toml").exists():
        say(f"Creating a new instance in {data_dir} …")
        create_instance(
            data_dir,
            Ports(
                registry=ports_cfg.get("registry"),
                consent=ports_cfg.get("consent"),
                audit=ports_cfg.get("audit"),
                portal=ports_cfg.get("portal"),
                notify=ports_cfg.get("notify"),
                tiles=ports_cfg.get("audit_tiles"),
                base=ports_cfg.get("agencies"),
            ),
        )
    portal_cfg = config.get("portal", {})
    notify_cfg = config.get("notify", {})
    unknown = set(notify_cfg) - set(NOTIFY_KEYS)
    if unknown:
        raise errors.InvalidArgumentError(f"unknown [notify] keys: {', '.join(sorted(unknown))}")
    smtp = None
    if notify_cfg.get("smtp_host"):
        from notify.channels import SmtpSettings

        smtp = SmtpSettings(
            str(notify_cfg["smtp_host"]),
            int(notify_cfg.get("smtp_port", 587)),
            str(notify_cfg.get("sender", "no-reply@cdx.vn")),
            starttls=bool(notify_cfg.get("starttls", True)),
        )
    stop = threading.Event()
    on_stop_signal(stop.set)  # already while starting: a Ctrl-C then stops right after
    # Flags and environment first, then [telemetry] of the config file.
    from cdx import health

    args.telemetry = args.telemetry or _env_or("CDX_TELEMETRY", telemetry_cfg.get("exporter"))
    args.otlp_endpoint = args.otlp_endpoint or _env_or(
        "CDX_OTLP_ENDPOINT", telemetry_cfg.get("otlp_endpoint")
    )
    args.health_listen = args.health_listen or _env_or(
        "CDX_HEALTH_LISTEN", telemetry_cfg.get("health_listen")
    )
    operations = health.start_operations(args, component="stack")
    try:
        inst = start_instance(
            data_dir,
            StackOptions(
                portal=portal_cfg.get("enabled", True),
                insecure_cookies=portal_cfg.get("insecure_cookies", False),
                oidc=config.get("oidc"),
                config_dir=base,
                notify=notify_cfg.get("enabled", True),
                notify_smtp=smtp,
                consent_settings={"calendar": calendar},
            ),
        )
    except BaseException:
        operations.stop()
        raise
    operations.add_checks(*inst.health_checks())
    try:
        layout: InstanceLayout = inst.layout
        say(f"CDX instance {layout.instance} is up (data: {data_dir}).")
        say(f"  registry   {layout.registry}")
        say(f"  consent    {layout.consent}")
        say(f"  audit log  {layout.audit}  (tiles: {layout.audit_tiles})")
        for key, a in layout.agencies.items():
            say(f"  {key:<10} gateway {a.gateway} (mTLS)  {a.gateway_token} (token)")
        if inst.portal is not None:
            say(f"  portal     {inst.portal.url}")
        if inst.notify is not None:
            say(f"  notify     {inst.notify.address}")
        if inst.mail_sink is not None:
            say(
                f"  mail       {inst.mail_sink.address} (a local sink: messages are kept in "
                f"{layout.notify_dir / 'mailbox'})"
            )
        if operations.endpoint is not None:
            say(f"  health     {operations.endpoint.url}/healthz  (metrics: /metrics)")
        say("Try, in another shell:")
        a = layout.agencies["social"]
        say(
            f"  cdx query --gateway {a.gateway} --ca {data_dir}/registry/ca.pem "
            f"--cert {a.client_dir}/client.pem --key {a.client_dir}/client.key "
            f"--key-passphrase-file {data_dir}/passphrase "
            "--service VN:GOV:BCA:population/person/v1 --subject 079090000001 "
            "--purpose SOCIAL_BENEFIT_ELIGIBILITY"
        )
        say(f"  cdx status --data-dir {data_dir}")
        # The pid file before the last line: whoever waits for that line finds the data
        # directory complete (no temporary file of the atomic write left to race with).
        write_atomically(data_dir / "up.pid", f"{os.getpid()}\n".encode())
        say("Press Ctrl-C to stop.")
        while not stop.wait(1.0):
            pass
        say("Stopping: draining outboxes and shutting down …")
    finally:
        inst.stop()
        operations.stop()
        (data_dir / "up.pid").unlink(missing_ok=True)
    say("Stopped.")
    return 0


def _env_or(name: str, fallback: object) -> str | None:
    value = os.environ.get(name) or fallback
    return str(value) if value else None


def cmd_status(args: argparse.Namespace) -> int:
    from stack.status import collect_status

    servers = [Path(f) for f in args.security_server or ()]
    urls = list(args.health or ())
    data_dir = args.data_dir or (None if servers or urls else "data")
    status = collect_status(
        Path(data_dir) if data_dir else None, security_servers=servers, health_urls=urls
    )
    if args.json:
        print_json(status)
        return 0 if status["healthy"] else 1
    say(f"{'component':<24} {'address':<22} {'health':<12} details")
    for row in status["components"]:
        say(f"{row['name']:<24} {row['address']:<22} {row['health']:<12} {row['details']}")
    return 0 if status["healthy"] else 1


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run a whole instance and a real scenario end to end",
        description="Create an instance (SQLite files under DATA_DIR, default a fresh temporary "
        "directory), start the registry, consent service, audit log, three agencies' security "
        "servers and sample backends with mutual TLS, and play the benefit-application story. "
        "Exits 0 only if every step behaved as expected.",
    )
    demo.add_argument("--data-dir", help="where to create the instance (must not exist yet)")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the instance and the portal running after the story (Ctrl-C stops)",
    )
    demo.set_defaults(handler=cmd_demo)

    up = subparsers.add_parser(
        "up",
        help="run a whole single-box instance until Ctrl-C",
        description="Run every component of an instance in one process until Ctrl-C or SIGTERM. "
        "The first run creates the instance in the configured data directory.",
    )
    up.add_argument("--config", help="TOML config (see deploy/single-box.toml)")
    up.add_argument("--data-dir", help="overrides data_dir of the config")
    up.set_defaults(handler=cmd_up)

    status = subparsers.add_parser(
        "status",
        help="health of each component of a running instance",
        description="Ask each component for its health, and show global-conf age, outbox lag, "
        "dead letters and log size. Components come from a single-box DATA_DIR, from security "
        "servers' server.toml files (each names its registry, backends and, through its "
        "global configuration, the audit log and consent service), and from health endpoints.",
    )
    status.add_argument(
        "--data-dir", help="a single-box instance's data directory (default: data, if nothing else)"
    )
    status.add_argument(
        "--security-server",
        action="append",
        metavar="FILE",
        help="a security server's server.toml (repeatable; run where the server runs)",
    )
    status.add_argument(
        "--health",
        action="append",
        metavar="URL",
        help="a process's health endpoint, e.g. http://10.0.0.5:9464 (repeatable)",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)
