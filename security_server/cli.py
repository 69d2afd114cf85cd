"""``cdx security-server ...``, ``cdx query`` and ``cdx backend serve``.

- ``cdx security-server init``: generate keys and CSRs, register with the registry (admin API,
  or ``--export-request`` for an administrator to register offline), install the anchor and
  write ``server.toml``;
- ``cdx security-server install-certificates``: finish an offline registration;
- ``cdx security-server serve --config FILE``: run the server until SIGTERM/SIGINT;
- ``cdx security-server status --config FILE``: outbox depth and age, configuration version;
- ``cdx security-server outbox dead-letters|requeue``: records the log refused for good
  (``security_server.outbox_cli``);
- ``cdx security-server token --config FILE --subsystem SUB``: mint a gateway API token;
- ``cdx query``: ask a service through a gateway as an information system;
- ``cdx backend serve``: run a sample backend (population, tax or social register).
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from cdx import clidefaults, errors, keyfiles, rpc
from cdx.cliutil import group, print_json, print_table, say, wait_for_stop_signal
from cdx.clock import utcnow
from cdx.files import read_file, write_atomically
from cdx.v1 import common_pb2, exchange_pb2, exchange_pb2_grpc
from security_server import keystore, outbox_cli, provisioning
from security_server.config import SecurityServerConfig, dump_config, hash_token, load_config

if TYPE_CHECKING:  # the plug-ins are imported where the server is started
    from audit.witness import Witness
    from cdx.lawful import ConsentChecker
    from security_server.outbox import AuditShipper
    from security_server.server import PluginContext, RunningSecurityServer

CONFIG_NAME = "server.toml"


# --- helpers -------------------------------------------------------------------------------------


# --- init ----------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    passphrase_file = Path(args.passphrase_file).resolve() if args.passphrase_file else None
    secret = keyfiles.ensure_passphrase(passphrase_file or data_dir / "passphrase")
    anchor_json = read_file(Path(args.anchor), "anchor file")
    subsystems = list(args.subsystem or [])
    if not subsystems:
        raise errors.InvalidArgumentError("give at least one --subsystem this server hosts")
    backends: dict[str, str] = {}
    for item in args.backend or []:
        key, sep, address = item.partition("=")
        if not sep:
            raise errors.InvalidArgumentError("--backend is SERVICE_OR_SUBSYSTEM=HOST:PORT")
        backends[key] = address
    config = SecurityServerConfig(
        server_id=args.server_id,
        data_dir=data_dir,
        exchange_address=args.listen or args.address,
        gateway_address=args.gateway,
        gateway_token_address=args.gateway_token or "",
        registry_address=args.registry or "",
        passphrase_file=passphrase_file,
        backends=backends,
    )
    request = provisioning.prepare(
        data_dir, args.server_id, args.address, subsystems, secret, anchor_json
    )
    write_atomically(data_dir / CONFIG_NAME, dump_config(config, base=data_dir).encode())
    if args.export_request:
        out = Path(args.export_request)
        write_atomically(out, request.to_json())
        write_atomically(data_dir / "hpke.pub", request.hpke_public_raw.hex().encode())
        write_atomically(data_dir / "witness.pub", request.witness_public_raw.hex().encode())
        say(f"Keys generated in {data_dir}; registration request written to {out}.")
        say("An administrator registers it with:")
        say(
            f"  cdx registry server register {args.server_id} --address {args.address} "
            f"--auth-csr {data_dir / keystore.AUTH_CSR} "
            f"--signing-csr {data_dir / keystore.SIGNING_CSR} "
            f"--hpke-public-key {request.hpke_public_raw.hex()} "
            f"--witness-public-key {request.witness_public_raw.hex()} "
            + " ".join(f"--subsystem {s}" for s in subsystems)
            + " "
            + " ".join(f"--dns-name {d}" for d in request.dns_names)
            + " "
            + " ".join(f"--ip {i}" for i in request.ip_addresses)
            + " --out CERT_DIR"
        )
        say(
            f"then: cdx security-server install-certificates --data-dir {data_dir} "
            "--certificates CERT_DIR"
        )
        return 0
    if not (args.registry and args.admin_cert and args.admin_key):
        raise errors.InvalidArgumentError(
            "give --registry, --admin-cert and --admin-key (or --export-request FILE)"
        )
    from registry.client import RegistryAdminClient

    admin_pass = Path(args.admin_passphrase_file) if args.admin_passphrase_file else None
    admin_key = keyfiles.load_tls_key_pem(Path(args.admin_key), admin_pass)
    ca_pem = read_file(Path(args.ca), "CA certificate") if args.ca else None
    if ca_pem is None:
        raise errors.InvalidArgumentError("give --ca (the instance CA certificate, PEM)")
    identity = rpc.TlsIdentity(
        read_file(Path(args.admin_cert), "admin certificate"), admin_key, ca_pem
    )
    with (
        clidefaults.reaching("registry", args.registry),
        RegistryAdminClient(args.registry, identity) as client,
    ):
        issued = provisioning.register_with_client(client)(request)
    provisioning.install(data_dir, issued)
    say(f"Security server {args.server_id} registered; keys and certificates in {data_dir}")
    say(f"Start it with: cdx security-server serve --config {data_dir / CONFIG_NAME}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    source = Path(args.certificates)
    if source.is_dir():
        issued = provisioning.IssuedCertificates(
            server_id="",
            auth_cert_pem=read_file(source / "auth.pem", "certificate"),
            signing_cert_pem=read_file(source / "signing.pem", "certificate"),
            ca_cert_pem=read_file(source / "ca.pem", "certificate"),
        )
    else:
        issued = provisioning.IssuedCertificates.from_json(
            read_file(Path(source), "certificates file")
        )
    provisioning.install(data_dir, issued)
    say(f"Certificates installed in {data_dir}")
    return 0


# --- serve / status / token ----------------------------------------------------------------------


def _consent_checker(ctx: PluginContext) -> ConsentChecker | None:
    """The consent checker plug-in: the consent service named in global configuration, over
    mutual TLS with this server's auth certificate (none configured: consent is denied)."""
    from consent.checker import CachedConsentChecker

    conf = ctx.conf_client.current(ctx.now_fn())
    if not conf.consent_service_address:
        return None
    return CachedConsentChecker(conf.consent_service_address, ctx.tls)


def _audit_shipper(ctx: PluginContext) -> AuditShipper | None:
    """The audit shipper plug-in: the audit log named in global configuration (read again at
    each connection); none configured: records stay in the outbox."""
    from audit.client import AuditClient

    conf = ctx.conf_client.current(ctx.now_fn())
    if not conf.audit_log_address:
        return None

    def address() -> str:
        latest = ctx.conf_client.latest()
        return str(latest.audit_log_address if latest else "")

    return AuditClient(address, ctx.tls)


def _start_witness(running: RunningSecurityServer) -> Witness | None:
    """The server's audit-log witness (DESIGN §8) when global configuration anchors a log."""
    from audit.witness import witness_for_security_server
    from security_server.server import PluginContext

    conf = running.conf_client.latest()
    if conf is None or not (conf.audit_log_key and conf.audit_log_address):
        return None
    keys = running.keys
    context = PluginContext(
        running.server_id, running.config, keys.tls, running.conf_client, keys, utcnow
    )
    return witness_for_security_server(context).start()


def cmd_serve(args: argparse.Namespace) -> int:
    from cdx import health
    from security_server.server import start_security_server

    config = load_config(args.config)
    operations = health.start_operations(
        args, component="security-server", server_id=config.server_id
    )
    witnesses: list[Witness] = []  # filled once the server runs; its alarm also stops gRPC health

    def witness() -> Witness | None:
        return witnesses[0] if witnesses else None

    try:
        running = start_security_server(
            config,
            witness=witness,
            consent_checker_factory=_consent_checker,
            audit_shipper_factory=_audit_shipper,
        )
    except BaseException:
        operations.stop()
        raise
    started = _start_witness(running)
    if started is not None:
        witnesses.append(started)
        operations.on_stop(started.stop)
    operations.add_checks(*running.health.checks())
    operations.on_stop(running.health.observe())
    say(
        f"security server {config.server_id}: exchange {running.exchange_address}, "
        f"gateway {running.gateway_address}"
        + (
            f", token gateway {running.gateway_token_address}"
            if running.gateway_token_address
            else ""
        )
    )
    wait_for_stop_signal()
    operations.stop()
    running.stop(grace=2.0)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from cdx import db
    from security_server.outbox import summary

    config = load_config(args.config)
    engine = db.create_engine(config.db_url, schema=config.database_schema)
    try:
        outbox = summary(engine)
    except errors.UnavailableError as exc:
        raise errors.UnavailableError(
            f"the server database {db.display_url(config.db_url)} cannot be read ({exc.message})"
        ) from exc
    finally:
        engine.dispose()
    now_ms = int(utcnow().timestamp() * 1000)
    oldest = outbox.oldest_queued_ms
    age = f"{(now_ms - oldest) / 1000:.1f}s" if oldest is not None else "-"
    conf_file = config.data_dir / keystore.GLOBAL_CONF
    print_table(
        ["item", "value"],
        [
            ("server", config.server_id),
            ("access records", outbox.records),
            ("unshipped records", outbox.queued),
            ("oldest unshipped", age),
            ("dead letters", outbox.dead_letters),
            ("outbox window", f"{config.outbox_window_s:g}s"),
            ("global conf copy", "present" if conf_file.exists() else "missing"),
        ],
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(32)
    say(f"token (give it to the information system; it is not stored): {token}")
    say(f"add to [gateway_tokens] in {args.config or CONFIG_NAME}:")
    say(f'"{hash_token(token)}" = "{args.subsystem}"')
    return 0


# --- query ---------------------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace) -> int:
    ca_pem = read_file(Path(args.ca), "CA certificate")
    metadata: tuple[tuple[str, str], ...] = ()
    token = args.token or os.environ.get("CDX_GATEWAY_TOKEN")
    if args.cert or args.key:
        if not (args.cert and args.key):
            raise errors.InvalidArgumentError("give both --cert and --key")
        key_pem = keyfiles.load_tls_key_pem(
            Path(args.key), Path(args.key_passphrase_file) if args.key_passphrase_file else None
        )
        channel = rpc.secure_channel(
            args.gateway,
            rpc.TlsIdentity(read_file(Path(args.cert), "certificate"), key_pem, ca_pem),
        )
    elif token:
        channel = rpc.secure_channel(args.gateway, None, ca_pem)
        metadata = (("authorization", f"Bearer {token}"),)
    else:
        raise errors.InvalidArgumentError("give --cert/--key or --token ($CDX_GATEWAY_TOKEN)")
    request = exchange_pb2.QueryRequest(
        client=args.client or "",
        service=args.service,
        subject=args.subject,
        purpose=args.purpose,
        fields=list(args.field or []),
        consent_id=args.consent_id or "",
    )
    try:
        with clidefaults.reaching("gateway", args.gateway):
            response = rpc.invoke(
                exchange_pb2_grpc.GatewayStub(channel).Query,
                request,
                timeout=args.timeout,
                metadata=metadata or None,
            )
    finally:
        channel.close()
    if args.json:
        print_json(json_format.MessageToDict(response, preserving_proto_field_name=True))
        return 0
    data = json_format.MessageToDict(response.data)
    print_table(["field", "value"], [(k, data[k]) for k in sorted(data)])
    basis = common_pb2.LawfulBasis.Name(response.lawful_basis)
    reference = f" ({response.legal_reference})" if response.legal_reference else ""
    say("", f"lawful basis: {basis}{reference}")
    if response.consent_id:
        say(f"consent: {response.consent_id}")
    say(f"message id: {response.message_id}")
    say(f"access record: {response.record_id} (provider: {response.provider_record_id})")
    return 0


def cmd_backend(args: argparse.Namespace) -> int:
    from security_server.backends import start_backend

    backend = start_backend(args.kind, args.db, args.address, minimise=args.minimise)
    say(f"{args.kind} backend on {backend.address} ({args.db})")
    wait_for_stop_signal()
    backend.stop()
    return 0


# --- parser --------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``security-server``, ``query`` and ``backend`` to the ``cdx`` command."""
    sub = group(
        subparsers,
        "security-server",
        "set up and run a security server",
        description="Set up and run an agency's security server (DESIGN §6).",
    )

    p = sub.add_parser(
        "init",
        help="generate keys, register with the registry, write server.toml",
        description="Generate the server's keys and CSRs in --data-dir (private keys never "
        "leave it), install the anchor, and register with the registry over its admin API "
        "(--registry, --admin-cert, --admin-key, --ca) or export a request file "
        "(--export-request) for an administrator.",
    )
    p.add_argument("--data-dir", required=True, help="directory for keys, certificates, database")
    p.add_argument("--server-id", required=True, help="e.g. VN:GOV:BCA:ss1")
    p.add_argument("--address", required=True, help="HOST:PORT peers use for its exchange endpoint")
    p.add_argument("--listen", help="exchange listen address (default: --address)")
    p.add_argument("--gateway", default="127.0.0.1:5501", help="gateway listen address (mTLS)")
    p.add_argument("--gateway-token", help="listen address of the API-token gateway (optional)")
    p.add_argument("--subsystem", action="append", help="subsystem it hosts (repeatable)")
    p.add_argument("--backend", action="append", help="SERVICE_OR_SUBSYSTEM=HOST:PORT")
    p.add_argument("--anchor", required=True, help="anchor.json of the instance (out of band)")
    p.add_argument("--passphrase-file", help="key-store passphrase (default: DATA_DIR/passphrase)")
    p.add_argument("--registry", help="registry HOST:PORT")
    p.add_argument("--ca", help="instance CA certificate (PEM), to reach the registry")
    p.add_argument("--admin-cert", help="registry admin certificate (PEM)")
    p.add_argument("--admin-key", help="its key (PEM; encrypted needs --admin-passphrase-file)")
    p.add_argument("--admin-passphrase-file", help="passphrase of an encrypted admin key")
    p.add_argument("--export-request", metavar="FILE", help="write a registration request instead")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser(
        "install-certificates",
        help="install certificates from an offline registration",
        description="Install auth.pem, signing.pem and ca.pem (a directory written by "
        "'cdx registry server register --out DIR') or a cdx-server-certificates/v1 JSON file.",
    )
    p.add_argument("--data-dir", required=True)
    p.add_argument("--certificates", required=True, metavar="DIR|FILE")
    p.set_defaults(handler=cmd_install)

    p = sub.add_parser("serve", help="run the security server", description="Run until stopped.")
    p.add_argument("--config", required=True, help="server.toml")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("status", help="outbox depth and age", description="Show local state.")
    p.add_argument("--config", required=True, help="server.toml")
    p.set_defaults(handler=cmd_status)

    outbox_cli.register(sub)

    p = sub.add_parser(
        "token",
        help="mint a gateway API token",
        description="Print a new API token and the hash line to put in [gateway_tokens].",
    )
    p.add_argument("--subsystem", required=True, help="subsystem the token stands for")
    p.add_argument("--config", help="server.toml (only named in the instructions)")
    p.set_defaults(handler=cmd_token)

    q = subparsers.add_parser(
        "query",
        help="query a service through a security server's gateway",
        description="Ask a service about a citizen, for a purpose, as an information system.",
    )
    q.add_argument("--gateway", required=True, metavar="HOST:PORT")
    q.add_argument("--ca", required=True, help="instance CA certificate (PEM)")
    q.add_argument("--client", help="your subsystem id (checked against your credentials)")
    q.add_argument("--service", required=True, help="e.g. VN:GOV:BCA:population/person/v1")
    q.add_argument("--subject", required=True, help="citizen national id")
    q.add_argument("--purpose", required=True, help="purpose code")
    q.add_argument("--field", action="append", help="requested field (repeatable; default all)")
    q.add_argument("--consent-id", help="consent relied on (consent agreements)")
    q.add_argument("--cert", help="information-system certificate (PEM)")
    q.add_argument("--key", help="its private key (PEM)")
    q.add_argument("--key-passphrase-file", help="passphrase of an encrypted --key")
    q.add_argument("--token", help="gateway API token (or $CDX_GATEWAY_TOKEN)")
    q.add_argument("--timeout", type=float, default=15.0)
    q.add_argument("--json", action="store_true", help="print the full response as JSON")
    q.set_defaults(handler=cmd_query)

    bsub = group(subparsers, "backend", "sample agency backends")
    p = bsub.add_parser(
        "serve",
        help="run a sample DataProvider backend over SQLite",
        description="Serve a sample register (population, tax or social) seeded with "
        "fictional citizens (security_server/backends/sample.py).",
    )
    p.add_argument("--kind", required=True, choices=["population", "tax", "social"])
    p.add_argument("--db", required=True, help="SQLite file (seeded on first use)")
    p.add_argument("--address", default="127.0.0.1:6001")
    p.add_argument("--minimise", action="store_true", help="return only the requested fields")
    p.set_defaults(handler=cmd_backend)
