"""``cdx registry ...``: create and run a registry, and administer it over its admin API.

Every admin command talks to a running registry over mutual TLS with an admin certificate
(by default ``DATA/registry/admin/bootstrap.*``); the registry address comes from
``--registry``, ``$CDX_REGISTRY``, the ``address`` file a running registry writes, or a
single-box instance's ``instance.toml`` (``cdx.clidefaults``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from cdx import clidefaults, crypto, errors, globalconf, keydocs, keyfiles, pki
from cdx.clidefaults import DEFAULT_REGISTRY_ADDRESS
from cdx.cliutil import (
    add_data_option,
    add_timeout_option,
    csv,
    duration,
    group,
    leaf,
    on_stop_signal,
    print_json,
    print_table,
    say,
    when,
)
from cdx.clock import utcnow
from cdx.files import read_file, write_atomically
from cdx.globalconf import IdentityProviderInfo, VerifiedGlobalConf
from cdx.paths import BOOTSTRAP_ADMIN
from cdx.tokens import ALGORITHMS
from registry.client import RegistryAdminClient

DEFAULT_LISTEN = DEFAULT_REGISTRY_ADDRESS


# --- connection ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[RegistryAdminClient]:
    """The registry admin API, as ``--admin NAME`` (or ``--admin-cert``/``--admin-key``)."""
    paths = clidefaults.data_paths(args)
    if args.admin_cert or args.admin_key:
        if not (args.admin_cert and args.admin_key):
            raise errors.InvalidArgumentError("give both --admin-cert and --admin-key")
        identity = clidefaults.identity(args, Path(args.admin_cert), Path(args.admin_key))
    else:
        identity = clidefaults.identity(
            args, paths.admin_cert(args.admin), paths.admin_key(args.admin)
        )
    address = clidefaults.registry_address(args)
    with (
        clidefaults.reaching("registry", address),
        RegistryAdminClient(address, identity, timeout=args.timeout) as client,
    ):
        yield client


def _add_connection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    add_data_option(g)
    g.add_argument(
        "--registry",
        metavar="HOST:PORT",
        help="registry address (default: $CDX_REGISTRY, DATA/registry/address, "
        f"DATA/instance.toml, or {DEFAULT_LISTEN})",
    )
    g.add_argument(
        "--admin",
        default=BOOTSTRAP_ADMIN,
        metavar="NAME",
        help="admin certificate in DATA/registry/admin/NAME.pem (default: %(default)s)",
    )
    g.add_argument("--admin-cert", metavar="FILE", help="admin certificate (PEM) elsewhere")
    g.add_argument("--admin-key", metavar="FILE", help="its encrypted key (instance passphrase)")
    add_timeout_option(g)


# --- init and serve ------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from registry.bootstrap import init_instance

    paths = init_instance(
        Path(args.data),
        args.instance,
        utcnow(),
        db_url=args.db_url,
        db_schema=args.db_schema,
        key_algorithm=args.key_algorithm,
        dns_names=tuple(args.dns_name or ("localhost",)),
        ip_addresses=tuple(args.ip or ("127.0.0.1",)),
    )
    anchor = paths.load_anchor()
    say(f"Created registry of instance {anchor.instance} in {paths.registry_dir}")
    print_table(
        ("WHAT", "WHERE"),
        [
            ("anchor (install on every security server)", paths.anchor),
            ("CA certificate", paths.ca_pem),
            ("registry key id", anchor.key_id),
            ("admin certificate", paths.admin_cert()),
            ("key-store passphrase", paths.passphrase_file),
            ("database", args.db_url or paths.database),
        ],
    )
    say("", f"Next: cdx registry serve --data {args.data}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cdx import health
    from registry.server import start_registry

    operations = health.start_operations(args, component="registry")
    try:
        running = start_registry(
            Path(args.data),
            args.listen,
            conf_validity=timedelta(seconds=args.conf_validity),
        )
    except BaseException:
        operations.stop()
        raise
    operations.add_checks(*_health_checks(running))
    paths = running.paths
    write_atomically(paths.address_file, running.address.encode() + b"\n")

    on_stop_signal(lambda: running.stop(grace=1.0))
    say(
        f"registry of {running.service.instance} listening on {running.address} "
        f"(configuration version {running.service.conf_version()}, "
        f"validity {duration(running.service.conf_validity)})"
    )
    running.wait()
    operations.stop()
    with contextlib.suppress(FileNotFoundError):
        paths.address_file.unlink()
    return 0


def _health_checks(running: Any) -> list[Any]:
    """``/healthz``: the configuration the registry serves verifies and is current; its TLS
    certificate is valid."""
    from cryptography import x509

    from cdx import health

    anchor = running.paths.load_anchor()
    cert = x509.load_pem_x509_certificate(running.paths.tls_cert.read_bytes())

    def served(now: datetime) -> object:
        return globalconf.verify_global_conf(running.service.current_conf(), anchor, now)

    return [
        health.conf_check("registry globalconf", served),
        health.certificate_check("registry certificate", lambda: (cert,)),
    ]


# --- members, subsystems, servers ----------------------------------------------------------------


def cmd_member_add(args: argparse.Namespace) -> int:
    with _client(args) as c:
        m = c.add_member(args.id, args.name)
    say(f"Added member {m.id} ({m.name})")
    return 0


def cmd_subsystem_add(args: argparse.Namespace) -> int:
    with _client(args) as c:
        m = c.add_subsystem(args.id)
    say(f"Added subsystem {args.id}; {m.id} now has: {', '.join(m.subsystems)}")
    return 0


def _read_key_bytes(value: str, what: str, size: int) -> bytes:
    """A raw public key given as a file (raw bytes or PEM) or as hex or base64 text."""
    path = Path(value)
    data = path.read_bytes() if path.is_file() else value.encode()
    if len(data) == size:
        return data
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        key = crypto.public_key_from_pem(text)
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if len(raw) == size:
            return raw
    with contextlib.suppress(ValueError):
        raw = bytes.fromhex(text.decode())
        if len(raw) == size:
            return raw
    with contextlib.suppress(ValueError, binascii.Error):
        raw = base64.b64decode(text, validate=True)
        if len(raw) == size:
            return raw
    raise errors.InvalidArgumentError(f"{what} must be {size} raw bytes, hex, base64 or a PEM file")


def cmd_server_register(args: argparse.Namespace) -> int:
    hpke = _read_key_bytes(args.hpke_public_key, "the HPKE public key", 32)
    witness = (
        _read_key_bytes(args.witness_public_key, "the witness key", 32)
        if args.witness_public_key
        else b""
    )
    with _client(args) as c:
        certs = c.register_server(
            args.id,
            args.address,
            read_file(Path(args.auth_csr), "auth CSR"),
            read_file(Path(args.signing_csr), "signing CSR"),
            hpke,
            args.subsystem or [],
            dns_names=args.dns_name or ("localhost",),
            ip_addresses=args.ip or ("127.0.0.1",),
            witness_public_raw=witness,
        )
    out = Path(args.out)
    issued = (("auth.pem", certs.auth_cert_pem), ("signing.pem", certs.signing_cert_pem))
    for name, data in (*issued, ("ca.pem", certs.ca_pem)):
        write_atomically(out / name, data)
    auth = pki.cert_from_pem(certs.auth_cert_pem)
    say(f"Registered security server {args.id} at {args.address}")
    print_table(
        ("CERTIFICATE", "FILE", "FINGERPRINT", "VALID UNTIL"),
        [
            (
                "auth (TLS)",
                out / "auth.pem",
                pki.fingerprint(auth)[:16],
                when(auth.not_valid_after_utc),
            ),
            ("signing", out / "signing.pem", "", ""),
            ("CA", out / "ca.pem", "", ""),
        ],
    )
    return 0


def cmd_server_revoke(args: argparse.Namespace) -> int:
    with _client(args) as c:
        c.revoke_server(args.id, args.reason)
    say(f"Revoked security server {args.id}: its certificates are listed as revoked and it")
    say("is no longer in the global configuration.")
    return 0


# --- services, purposes, agreements, anchors -----------------------------------------------------


def cmd_service_add(args: argparse.Namespace) -> int:
    fields = csv(args.fields)
    with _client(args) as c:
        c.add_service(args.id, fields, csv(args.categories or ""), args.description or "")
    say(f"Published service {args.id} with fields: {', '.join(fields)}")
    return 0


def cmd_purpose_add(args: argparse.Namespace) -> int:
    with _client(args) as c:
        c.add_purpose(args.code, args.description, args.description_vi or "")
    say(f"Added purpose {args.code}: {args.description}")
    return 0


def cmd_agreement_add(args: argparse.Namespace) -> int:
    with _client(args) as c:
        agreement_id = c.add_agreement(
            args.client,
            args.service,
            args.purpose,
            args.basis,
            args.legal_reference or "",
            csv(args.fields),
            rate_limit_per_minute=args.rate_limit,
            retention_days=args.retention_days,
            sealed=args.sealed,
        )
    say(f"Added agreement {agreement_id}")
    print_table(
        ("CLIENT", "SERVICE", "PURPOSE", "BASIS", "FIELDS", "VISIBILITY"),
        [
            (
                args.client,
                args.service,
                args.purpose,
                args.basis,
                ",".join(csv(args.fields)),
                "SEALED" if args.sealed else "NORMAL",
            )
        ],
    )
    return 0


def cmd_agreement_remove(args: argparse.Namespace) -> int:
    with _client(args) as c:
        c.remove_agreement(args.id)
    say(f"Removed agreement {args.id}")
    return 0


def _public_key_der_file(path: str) -> bytes:
    data = read_file(Path(path), "public key file")
    key = (
        crypto.public_key_from_pem(data)
        if b"-----BEGIN" in data
        else crypto.public_key_from_der(data)
    )
    return crypto.public_key_to_der(key)


def cmd_anchors_set(args: argparse.Namespace) -> int:
    idps: list[IdentityProviderInfo] | None = None
    if args.idp or args.oidc:
        idps = [
            IdentityProviderInfo(
                issuer, _public_key_der_file(key_file), args.idp_development, args.idp_audience
            )
            for issuer, key_file in args.idp or ()
        ]
        idps += [
            IdentityProviderInfo(
                issuer,
                b"",
                args.idp_development,
                args.idp_audience,
                tuple(args.idp_alg or ("RS256",)),
                args.idp_national_id_claim,
                args.idp_inspector_claim,
                args.idp_inspector_value,
                args.idp_cli_client_id,
            )
            for issuer in args.oidc or ()
        ]
    with _client(args) as c:
        anchors = c.set_trust_anchors(
            consent_service_key_der=(
                _public_key_der_file(args.consent_key) if args.consent_key else None
            ),
            consent_service_address=args.consent_address,
            audit_log_origin=args.audit_origin,
            audit_log_key=args.audit_key,
            audit_log_address=args.audit_address,
            audit_service_key_der=(
                _public_key_der_file(args.audit_service_key) if args.audit_service_key else None
            ),
            identity_providers=idps,
            witness_quorum=args.witness_quorum,
            production=args.production,
            representation_authority=args.representation_authority,
            audit_tiles_url=args.audit_tiles,
        )
    say("Trust anchors now:")
    _print_anchors(anchors)
    return 0


def _key_summary(der: bytes) -> str:
    return crypto.key_id(crypto.public_key_from_der(der))[:16] if der else "-"


def _print_anchors(a: Any) -> None:
    print_table(
        ("ANCHOR", "VALUE"),
        [
            ("consent service key id", _key_summary(a.consent_service_key)),
            ("consent service address", a.consent_service_address or "-"),
            ("audit log origin", a.audit_log_origin or "-"),
            ("audit log key", a.audit_log_key or "-"),
            ("audit log address", a.audit_log_address or "-"),
            ("audit log tiles", a.audit_tiles_url or "-"),
            ("audit service key id", _key_summary(a.audit_service_key)),
            ("witness quorum", a.witness_quorum),
            ("production", "yes" if a.production else "no"),
            ("representation authority", a.representation_authority or "-"),
        ],
        indent="  ",
    )
    if a.identity_providers:
        print_table(
            ("IDENTITY PROVIDER", "KEY", "CLIENT ID", "ALGORITHMS", "CLAIMS", "DEVELOPMENT"),
            [
                (
                    p.issuer,
                    _key_summary(p.public_key) if p.public_key else "JWKS",
                    p.audience or "-",
                    ",".join(p.algorithms) or "-",
                    f"id={p.national_id_claim or 'sub'} "
                    f"inspector={p.inspector_claim or 'role'}={p.inspector_value or 'inspector'}",
                    "yes" if p.development else "no",
                )
                for p in a.identity_providers
            ],
            indent="  ",
        )


# --- certificates --------------------------------------------------------------------------------


def cmd_cert_issue(args: argparse.Namespace) -> int:
    paths = clidefaults.data_paths(args)
    out = Path(args.out) if args.out else (paths.admin_dir if args.kind == "admin" else Path("."))
    stem = args.name.replace(":", "_")
    key = None
    if args.csr:
        csr = read_file(Path(args.csr), "CSR")
    else:
        key = crypto.generate_signing_key("ecdsa-p256")
        csr = pki.build_csr(key, args.name[:64])
    with _client(args) as c:
        issued = c.issue_client_certificate(
            csr, args.kind, args.name, dns_names=args.dns_name or (), ip_addresses=args.ip or ()
        )
    write_atomically(out / f"{stem}.pem", issued.cert_pem)
    if key is not None:
        keyfiles.save_private_key(out / f"{stem}.key", key, paths.passphrase())
    cert = pki.cert_from_pem(issued.cert_pem)
    say(f"Issued {args.kind} certificate for {args.name}")
    print_table(
        ("FILE", "URI", "FINGERPRINT", "VALID UNTIL"),
        [
            (
                out / f"{stem}.pem",
                ", ".join(pki.certificate_uris(cert)),
                pki.fingerprint(cert),
                when(cert.not_valid_after_utc),
            )
        ],
    )
    if key is not None:
        say(f"key (encrypted with the instance passphrase): {out / f'{stem}.key'}")
    return 0


def cmd_cert_revoke(args: argparse.Namespace) -> int:
    with _client(args) as c:
        c.revoke_certificate(args.fingerprint, args.reason)
    say(f"Revoked certificate {args.fingerprint}")
    return 0


# --- configuration and history -------------------------------------------------------------------


def conf_summary(conf: VerifiedGlobalConf) -> dict[str, Any]:
    """A JSON-friendly summary of a verified configuration (no key material)."""
    return {
        "instance": conf.instance,
        "version": conf.version,
        "issued_at": conf.issued_at.isoformat(),
        "expires_at": conf.expires_at.isoformat(),
        "registry_key_id": conf.registry_key_id,
        "members": [
            {"id": m.id, "name": m.name, "subsystems": list(m.subsystems)}
            for m in conf.members.values()
        ],
        "servers": [
            {
                "id": s.id,
                "address": s.address,
                "subsystems": sorted(s.subsystems),
                "auth_fingerprint": s.auth_fingerprint,
                "signing_key_id": s.signing_key_id,
            }
            for s in conf.servers.values()
        ],
        "services": [
            {
                "id": s.id,
                "fields": list(s.fields),
                "data_categories": list(s.data_categories),
                "description": s.description,
            }
            for s in conf.services.values()
        ],
        "purposes": [
            {"code": p.code, "description": p.description, "description_vi": p.description_vi}
            for p in conf.purposes.values()
        ],
        "agreements": [
            {
                "id": a.id,
                "client": a.client,
                "service": a.service,
                "purpose": a.purpose,
                "lawful_basis": a.lawful_basis,
                "legal_reference": a.legal_reference,
                "fields": sorted(a.fields),
                "rate_limit_per_minute": a.rate_limit_per_minute,
                "retention_days": a.retention_days,
                "visibility": "SEALED" if a.sealed else "NORMAL",
            }
            for a in sorted(conf.agreements, key=lambda a: a.id)
        ],
        "revoked_cert_fingerprints": sorted(conf.revoked_fingerprints),
        "standard_keys": {
            "log_verifier_key": conf.audit_log_key,
            "witness_verifier_keys": keydocs.witness_keys(conf),
            "jwks": keydocs.jwks(conf),
        },
    }


def print_conf(conf: VerifiedGlobalConf, now: datetime) -> None:
    state = "EXPIRED" if conf.expired(now) else f"expires in {duration(conf.expires_at - now)}"
    say(f"Global configuration of instance {conf.instance}, version {conf.version}")
    say(f"  issued {when(conf.issued_at)}, expires {when(conf.expires_at)} ({state})")
    say(f"  signed by registry key {conf.registry_key_id[:16]}… (verified against the anchor)")
    sections: list[tuple[str, Sequence[str], list[Sequence[object]]]] = [
        (
            "Members",
            ("ID", "NAME", "SUBSYSTEMS"),
            [(m.id, m.name, ", ".join(m.subsystems) or "-") for m in conf.members.values()],
        ),
        (
            "Security servers",
            ("ID", "ADDRESS", "SUBSYSTEMS", "AUTH CERT"),
            [
                (s.id, s.address, ", ".join(sorted(s.subsystems)) or "-", s.auth_fingerprint[:16])
                for s in conf.servers.values()
            ],
        ),
        (
            "Services",
            ("ID", "FIELDS", "DATA CATEGORIES"),
            [
                (s.id, ", ".join(s.fields), ", ".join(s.data_categories) or "-")
                for s in conf.services.values()
            ],
        ),
        (
            "Purposes",
            ("CODE", "DESCRIPTION"),
            [(p.code, p.description) for p in conf.purposes.values()],
        ),
        (
            "Agreements",
            ("ID", "CLIENT", "SERVICE", "PURPOSE", "BASIS", "FIELDS", "LIMIT/MIN", "VISIBILITY"),
            [
                (
                    a.id,
                    a.client,
                    a.service,
                    a.purpose,
                    a.lawful_basis,
                    ", ".join(sorted(a.fields)),
                    a.rate_limit_per_minute or "-",
                    "SEALED" if a.sealed else "NORMAL",
                )
                for a in sorted(conf.agreements, key=lambda a: a.id)
            ],
        ),
    ]
    for title, headers, rows in sections:
        say("", f"{title} ({len(rows)})")
        print_table(headers, rows, indent="  ")
    say("", "Trust anchors")
    _print_anchors(conf.proto.anchors)
    say("", "Keys in standard forms (published by the audit log under /.well-known/cdx/)")
    say(f"  log note verifier key   {conf.audit_log_key or '-'}")
    for server_id, vkey in keydocs.witness_keys(conf).items():
        say(f"  witness {server_id}  {vkey}")
    for jwk in keydocs.jwks(conf)["keys"]:
        say(f"  JWK {jwk['cdx:use']}  kid {jwk['kid'][:16]}…  {jwk['alg']}")
    say("", f"Revoked certificates: {len(conf.revoked_fingerprints)}")


def cmd_conf_show(args: argparse.Namespace) -> int:
    paths = clidefaults.data_paths(args)
    anchor_file = Path(args.anchor) if args.anchor else paths.anchor
    anchor = globalconf.Anchor.from_json(read_file(anchor_file, "anchor file"))
    now = utcnow()
    if args.file:
        raw: bytes | None = read_file(Path(args.file), "global configuration")
    else:
        with _client(args) as c:
            raw = c.get_global_conf(0)
    if raw is None:  # pragma: no cover - version 0 is never current
        raise errors.UnavailableError("the registry returned no configuration")
    conf = globalconf.verify_global_conf(raw, anchor, now, allow_expired=bool(args.file))
    if args.json:
        print_json(conf_summary(conf))
    else:
        print_conf(conf, now)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _client(args) as c:
        entries = c.history(args.limit)
    print_table(
        ("#", "WHEN", "ACTOR", "ACTION", "TARGET", "DETAIL"),
        [
            (
                e.seq,
                when(e.at),
                e.actor,
                e.action,
                e.target,
                e.detail if args.detail else e.detail[:60],
            )
            for e in entries
        ],
    )
    return 0


# --- parser --------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``cdx registry ...`` to the ``cdx`` command."""
    sub = group(
        subparsers,
        "registry",
        "the instance's trust root: members, servers, services, agreements, global conf",
        description="Create, run and administer the CDX registry (the instance's trust root).",
    )

    p = leaf(
        sub,
        "init",
        "create a new instance: CA, registry key, anchor file, database, admin certificate",
        cmd_init,
        description="Create a new CDX instance in DATA/registry: the instance CA, the registry\n"
        "signing key (encrypted with DATA/passphrase), anchor.json (install it on every\n"
        "security server), the database schema, a bootstrap admin certificate and the\n"
        "registry's TLS certificate. Refuses to overwrite an existing registry.",
    )
    add_data_option(p)
    p.add_argument("--instance", required=True, help="instance id, e.g. VN")
    p.add_argument("--db-url", help="database URL (default: SQLite DATA/registry/registry.db)")
    p.add_argument("--db-schema", help="PostgreSQL schema (default: the search path)")
    p.add_argument(
        "--key-algorithm",
        choices=("ed25519", "ecdsa-p256"),
        default="ed25519",
        help="registry signing key algorithm (default: %(default)s)",
    )
    p.add_argument("--dns-name", action="append", help="DNS name of the registry (repeatable)")
    p.add_argument("--ip", action="append", help="IP address of the registry (repeatable)")

    p = leaf(sub, "serve", "run the registry (gRPC with mutual TLS) until interrupted", cmd_serve)
    add_data_option(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="address (default: %(default)s)")
    p.add_argument(
        "--conf-validity",
        type=float,
        default=600,
        metavar="SECONDS",
        help="lifetime of each signed configuration (default: 600)",
    )

    members = group(sub, "member", "register member organisations")
    p = leaf(members, "add", "register a member (INSTANCE:CLASS:MEMBER)", cmd_member_add)
    p.add_argument("id", help="member id, e.g. VN:GOV:BCA")
    p.add_argument("--name", required=True, help="organisation name")
    _add_connection_options(p)

    subsystems = group(sub, "subsystem", "register subsystems (information systems)")
    p = leaf(subsystems, "add", "register a subsystem of a member", cmd_subsystem_add)
    p.add_argument("id", help="subsystem id, e.g. VN:GOV:BCA:population")
    _add_connection_options(p)

    servers = group(sub, "server", "register and revoke security servers")
    p = leaf(
        servers,
        "register",
        "register a security server from its CSRs; writes its certificates",
        cmd_server_register,
        description="Register a security server. The server generates its own keys and CSRs\n"
        "(private keys never leave it); the registry's CA issues its auth (TLS) and signing\n"
        "certificates, written to --out as auth.pem, signing.pem and ca.pem.",
    )
    p.add_argument("id", help="server id, e.g. VN:GOV:BCA:ss1")
    p.add_argument("--address", required=True, help="HOST:PORT of its exchange endpoint")
    p.add_argument("--auth-csr", required=True, metavar="FILE", help="auth key CSR (PEM)")
    p.add_argument("--signing-csr", required=True, metavar="FILE", help="signing key CSR (PEM)")
    p.add_argument(
        "--hpke-public-key",
        required=True,
        metavar="FILE|HEX",
        help="X25519 public key: raw 32-byte file, PEM file, hex or base64",
    )
    p.add_argument("--witness-public-key", metavar="FILE|HEX", help="Ed25519 witness key")
    p.add_argument("--subsystem", action="append", help="subsystem it hosts (repeatable)")
    p.add_argument("--dns-name", action="append", help="DNS SAN (default: localhost)")
    p.add_argument("--ip", action="append", help="IP SAN (default: 127.0.0.1)")
    p.add_argument("--out", default=".", help="directory for the certificates (default: .)")
    _add_connection_options(p)
    p = leaf(servers, "revoke", "revoke a server's certificates", cmd_server_revoke)
    p.add_argument("id", help="server id")
    p.add_argument("--reason", required=True, help="why (recorded in the history)")
    _add_connection_options(p)

    services = group(sub, "service", "publish services")
    p = leaf(services, "add", "publish a service with its fields", cmd_service_add)
    p.add_argument("id", help="service id, e.g. VN:GOV:BCA:population/person/v1")
    p.add_argument("--fields", required=True, help="comma-separated field names")
    p.add_argument("--categories", help="comma-separated data categories")
    p.add_argument("--description", help="what the service returns")
    _add_connection_options(p)

    purposes = group(sub, "purpose", "manage the purpose catalogue")
    p = leaf(purposes, "add", "add a purpose code to the catalogue", cmd_purpose_add)
    p.add_argument("code", help="purpose code, e.g. SOCIAL_BENEFIT_ELIGIBILITY")
    p.add_argument("--description", required=True, help="description (English)")
    p.add_argument("--description-vi", help="description (Vietnamese)")
    _add_connection_options(p)

    agreements = group(sub, "agreement", "manage exchange agreements")
    p = leaf(
        agreements,
        "add",
        "add an exchange agreement (client x service x purpose -> lawful basis)",
        cmd_agreement_add,
        description="Allow a client subsystem to call a service for a purpose, on a lawful\n"
        "basis. Legal mandates (LEGAL_OBLIGATION, PUBLIC_TASK, VITAL_INTEREST) need\n"
        "--legal-reference; CONSENT agreements need the citizen's consent per request.",
    )
    p.add_argument("--client", required=True, help="client subsystem id")
    p.add_argument("--service", required=True, help="service id")
    p.add_argument("--purpose", required=True, help="purpose code")
    p.add_argument(
        "--basis",
        required=True,
        choices=("CONSENT", "LEGAL_OBLIGATION", "PUBLIC_TASK", "VITAL_INTEREST"),
        help="lawful basis",
    )
    p.add_argument("--legal-reference", help="the law that mandates the access")
    p.add_argument("--fields", required=True, help="comma-separated permitted fields")
    p.add_argument(
        "--rate-limit",
        type=int,
        default=0,
        help="requests per minute (0: unlimited; a --sealed agreement then gets 60)",
    )
    p.add_argument("--retention-days", type=int, default=0, help="retention at the recipient")
    p.add_argument(
        "--sealed", action="store_true", help="covert: hidden from the citizen until unsealed"
    )
    _add_connection_options(p)
    p = leaf(agreements, "remove", "withdraw an agreement", cmd_agreement_remove)
    p.add_argument("id", help="agreement id (agr-...)")
    _add_connection_options(p)

    anchors = group(sub, "anchors", "trust anchors: consent service, audit log, identity providers")
    p = leaf(
        anchors, "set", "set trust anchors (options not given keep their value)", cmd_anchors_set
    )
    p.add_argument("--consent-key", metavar="FILE", help="consent service public key (PEM/DER)")
    p.add_argument("--consent-address", metavar="HOST:PORT", help="consent service address")
    p.add_argument("--audit-origin", help="audit log checkpoint origin")
    p.add_argument("--audit-key", help="audit log signed-note verifier key text")
    p.add_argument("--audit-address", metavar="HOST:PORT", help="audit log address")
    p.add_argument(
        "--audit-tiles",
        metavar="URL",
        help="where the audit log's tiles are served (c2sp.org/tlog-tiles URL prefix; '' clears)",
    )
    p.add_argument("--audit-service-key", metavar="FILE", help="audit service public key")
    p.add_argument(
        "--idp",
        nargs=2,
        action="append",
        metavar=("ISSUER", "KEYFILE"),
        help="static-key identity provider, for offline tests only (refused in production; "
        "repeatable; with --oidc, replaces the list)",
    )
    p.add_argument(
        "--oidc",
        action="append",
        metavar="ISSUER_URL",
        help="OpenID Connect identity provider by its issuer URL (repeatable; with --idp, "
        "replaces the list; the options below apply to every one given)",
    )
    p.add_argument(
        "--idp-client-id",
        "--idp-audience",
        dest="idp_audience",
        default="",
        help="the portal's client id at the identity provider (the audience of its ID tokens)",
    )
    p.add_argument(
        "--idp-alg",
        action="append",
        choices=sorted(ALGORITHMS),
        help="ID-token signing algorithm to accept (repeatable; default: RS256)",
    )
    p.add_argument(
        "--idp-national-id-claim", default="", help="claim holding the national id (default: sub)"
    )
    p.add_argument(
        "--idp-inspector-claim", default="", help="claim that marks inspectors (default: role)"
    )
    p.add_argument(
        "--idp-inspector-value", default="", help="its value for inspectors (default: inspector)"
    )
    p.add_argument(
        "--idp-cli-client-id",
        default="",
        help="public client id of the citizen CLI (device authorization grant)",
    )
    p.add_argument("--idp-development", action="store_true", help="mark them as development IdPs")
    p.add_argument("--witness-quorum", type=int, help="k of the k-of-n checkpoint cosignatures")
    p.add_argument(
        "--production",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="production instance (refuses development identity providers)",
    )
    p.add_argument(
        "--representation-authority",
        metavar="SUBSYSTEM",
        help="the subsystem that registers legal representatives, e.g. the civil-status "
        "register ('' removes it)",
    )
    _add_connection_options(p)

    certs = group(sub, "cert", "issue and revoke admin, client, inspector, service certificates")
    p = leaf(
        certs,
        "issue",
        "issue a TLS certificate (generates the key unless --csr is given)",
        cmd_cert_issue,
    )
    p.add_argument("--kind", required=True, choices=("admin", "client", "inspector", "service"))
    p.add_argument("--name", required=True, help="admin/inspector/service name or subsystem id")
    p.add_argument("--csr", metavar="FILE", help="CSR (PEM); without it a key is generated")
    p.add_argument("--out", help="output directory (default: DATA/registry/admin for admins, .)")
    p.add_argument("--dns-name", action="append", help="DNS SAN (service certificates only)")
    p.add_argument("--ip", action="append", help="IP SAN (service certificates only)")
    _add_connection_options(p)
    p = leaf(certs, "revoke", "revoke a certificate by fingerprint", cmd_cert_revoke)
    p.add_argument("fingerprint", help="SHA-256 fingerprint (64 hex characters)")
    p.add_argument("--reason", required=True, help="why (recorded in the history)")
    _add_connection_options(p)

    confs = group(sub, "conf", "inspect the signed global configuration")
    p = leaf(
        confs,
        "show",
        "fetch, verify and print the global configuration",
        cmd_conf_show,
        description="Fetch the current global configuration from the registry (or read a stored\n"
        "copy with --file), verify it against the anchor, and print it.",
    )
    p.add_argument(
        "--anchor", metavar="FILE", help="anchor file (default: DATA/registry/anchor.json)"
    )
    p.add_argument("--file", metavar="FILE", help="verify a stored copy (e.g. globalconf.bin)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    _add_connection_options(p)

    p = leaf(sub, "history", "show the append-only history of admin changes", cmd_history)
    p.add_argument("--limit", type=int, default=50, help="entries to show (default: 50)")
    p.add_argument("--detail", action="store_true", help="show full details")
    _add_connection_options(p)
