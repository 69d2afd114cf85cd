"""``cdx consent ...``: run the consent service, act on consents, log a citizen in.

Citizen commands (``list``, ``approve``, ``reject``, ``pause``, ``resume``, ``revoke``,
``grant``, ``show``, ``receipt``) authenticate with a token (``--token``, ``--token-file`` or
``$CDX_TOKEN``) and go to the service's public port (server-authenticated TLS). Agency commands
(``request``, ``list --grantee``, ``show --grantee``) use mutual TLS with a security server's
auth certificate (``--server-dir``) or an information system's client certificate (``--cert``
and ``--key``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import crypto, errors, rpc
from cdx.cliutil import print_table
from cdx.clock import utcnow
from cdx.globalconf import VerifiedGlobalConf, verify_global_conf
from cdx.v1 import consent_pb2, consent_pb2_grpc
from consent.artefact import verify_artefact
from consent.instance import (
    DEFAULT_LISTEN,
    DEFAULT_PUBLIC_LISTEN,
    ConsentPaths,
    init_consent,
    open_consent,
)
from consent.login_cli import add_login_command

DEFAULT_DATA = "./data"
STATES = ("PENDING", "ACTIVE", "PAUSED", "REVOKED", "EXPIRED", "REJECTED")


# --- small helpers -------------------------------------------------------------------------------


def _data(args: argparse.Namespace) -> Path:
    return Path(args.data)


def _passphrase(args: argparse.Namespace) -> bytes:
    from registry.paths import read_passphrase

    if getattr(args, "passphrase_file", None):
        path = Path(args.passphrase_file)
        try:
            value = path.read_bytes().rstrip(b"\r\n")
        except FileNotFoundError as exc:
            raise errors.NotFoundError(f"missing file {path}") from exc
        if not value:
            raise errors.KeyStoreError("the passphrase file is empty")
        return value
    return read_passphrase(_data(args))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise errors.NotFoundError(f"missing file {path}") from exc


def _first_line(path: Path) -> str | None:
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if text:
            return text
    return None


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _parse_duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except (ValueError, IndexError) as exc:
        raise errors.InvalidArgumentError("a duration is like 90s, 30m, 12h or 7d") from exc


# --- connections ---------------------------------------------------------------------------------


def _ca_pem(args: argparse.Namespace) -> bytes:
    if args.ca:
        return _read(Path(args.ca))
    data = _data(args)
    for candidate in (data / "consent" / "ca.pem", data / "registry" / "ca.pem"):
        if candidate.exists():
            return candidate.read_bytes()
    raise errors.NotFoundError("no CA certificate found: give --ca FILE")


def _agency_identity(args: argparse.Namespace) -> rpc.TlsIdentity | None:
    from registry.paths import load_identity

    if args.server_dir:
        server = Path(args.server_dir)
        return load_identity(
            server / "auth.pem", server / "auth.key", server / "ca.pem", _passphrase(args)
        )
    if args.cert or args.key:
        if not (args.cert and args.key):
            raise errors.InvalidArgumentError("give both --cert and --key")
        ca = Path(args.ca) if args.ca else None
        if ca is None:
            data = _data(args)
            ca = data / "consent" / "ca.pem"
            if not ca.exists():
                ca = data / "registry" / "ca.pem"
        return load_identity(Path(args.cert), Path(args.key), ca, _passphrase(args))
    return None


def _address(args: argparse.Namespace, *, public: bool) -> str:
    if args.consent:
        return str(args.consent)
    env = os.environ.get("CDX_CONSENT_PUBLIC" if public else "CDX_CONSENT")
    if env:
        return env
    paths = ConsentPaths(_data(args))
    found = _first_line(paths.public_address_file if public else paths.address_file)
    if found:
        return found
    return DEFAULT_PUBLIC_LISTEN if public else DEFAULT_LISTEN


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    if args.token_file:
        text = sys.stdin.read() if args.token_file == "-" else _read(Path(args.token_file)).decode()
        token = text.strip()
        if token:
            return token
    token = os.environ.get("CDX_TOKEN", "").strip()
    if not token:
        raise errors.UnauthenticatedError(
            "a citizen token is required: --token, --token-file or $CDX_TOKEN"
        )
    return token


class _Calls:
    """Stubs over one channel, each call turning a refusal into its ``CdxError``."""

    def __init__(self, channel: grpc.Channel, timeout: float, token: str | None = None) -> None:
        self.channel = channel
        self.citizen = consent_pb2_grpc.CitizenConsentStub(channel)
        self.agency = consent_pb2_grpc.AgencyConsentStub(channel)
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None

    def __call__(self, method: Any, request: Any) -> Any:
        return rpc.invoke(method, request, timeout=self._timeout, metadata=self._metadata)

    def close(self) -> None:
        self.channel.close()


def _citizen_calls(args: argparse.Namespace) -> _Calls:
    token = _token(args)
    identity = _agency_identity(args) if (args.cert or args.server_dir) else None
    if identity is not None:  # e.g. the portal's certificate: the mutual-TLS port
        channel = rpc.secure_channel(_address(args, public=False), identity)
    else:
        channel = rpc.secure_channel(_address(args, public=True), None, _ca_pem(args))
    return _Calls(channel, args.timeout, token)


def _agency_calls(args: argparse.Namespace) -> _Calls:
    identity = _agency_identity(args)
    if identity is None:
        raise errors.UnauthenticatedError(
            "agency commands need --server-dir DIR or --cert FILE --key FILE"
        )
    return _Calls(rpc.secure_channel(_address(args, public=False), identity), args.timeout)


# --- output --------------------------------------------------------------------------------------


def _state(value: int) -> str:
    return str(consent_pb2.ConsentState.Name(value))


def _consent_json(c: consent_pb2.Consent) -> dict[str, Any]:
    t = c.terms
    return {
        "id": c.id,
        "state": _state(c.state),
        "subject": t.subject,
        "grantee": t.grantee,
        "services": list(t.services),
        "purpose": t.purpose,
        "fields": list(t.fields),
        "data_from": t.data_from or None,
        "data_until": t.data_until or None,
        "valid_from": _when(t.valid_from_ms),
        "valid_until": _when(t.valid_until_ms),
        "max_uses": t.max_uses,
        "uses": c.uses,
        "retention_days": t.retention_days,
        "requested_by": c.requested_by or None,
        "supersedes": c.supersedes or None,
        "version": c.version,
        "artefact": c.artefact or None,
    }


def _print_consents(consents: Sequence[consent_pb2.Consent], as_json: bool) -> None:
    if as_json:
        print(json.dumps([_consent_json(c) for c in consents], indent=2, ensure_ascii=False))
        return
    if not consents:
        print("no consents")
        return
    print_table(
        ("ID", "STATE", "GRANTEE", "PURPOSE", "FIELDS", "VALID UNTIL", "USES"),
        [
            (
                c.id,
                _state(c.state),
                c.terms.grantee,
                c.terms.purpose,
                ",".join(c.terms.fields),
                _when(c.terms.valid_until_ms),
                f"{c.uses}/{c.terms.max_uses}" if c.terms.max_uses else str(c.uses),
            )
            for c in consents
        ],
    )


def _local_conf(data: Path) -> VerifiedGlobalConf | None:
    """The newest verifiable global configuration stored under ``data`` (possibly expired)."""
    from cdx.globalconf import Anchor

    best: VerifiedGlobalConf | None = None
    candidates = [(data / "consent" / "globalconf.bin", data / "consent" / "anchor.json")]
    servers = data / "servers"
    if servers.is_dir():
        candidates += [(d / "globalconf.bin", d / "anchor.json") for d in sorted(servers.iterdir())]
    for conf_path, anchor_path in candidates:
        anchor_file = anchor_path if anchor_path.exists() else data / "registry" / "anchor.json"
        try:
            anchor = Anchor.from_json(anchor_file.read_bytes())
            conf = verify_global_conf(conf_path.read_bytes(), anchor, utcnow(), allow_expired=True)
        except (OSError, errors.CdxError):
            continue
        if best is None or conf.version > best.version:
            best = conf
    return best


def _fetched_conf(args: argparse.Namespace) -> VerifiedGlobalConf | None:
    """The current configuration from the registry (admin identity), if reachable."""
    from cdx.globalconf import Anchor
    from registry.client import RegistryAdminClient
    from registry.paths import InstancePaths

    paths = InstancePaths(_data(args))
    if not paths.admin_cert().exists():
        return None
    address = _registry_address(args)
    try:
        with RegistryAdminClient(address, paths.admin_identity(), timeout=5) as client:
            raw = client.get_global_conf()
    except errors.CdxError:
        return None
    if raw is None:
        return None
    return verify_global_conf(raw, Anchor.from_json(_read(paths.anchor)), utcnow())


def _registry_address(args: argparse.Namespace) -> str:
    if getattr(args, "registry", None):
        return str(args.registry)
    env = os.environ.get("CDX_REGISTRY")
    if env:
        return env
    found = _first_line(_data(args) / "registry" / "address")
    return found or "127.0.0.1:4400"


def _verify_artefact_text(artefact: str, conf: VerifiedGlobalConf | None) -> str:
    if not artefact:
        return "none (not granted yet)"
    if conf is None or not conf.consent_service_key_der:
        return "not verified (no global configuration with the consent service key found)"
    key = crypto.public_key_from_der(conf.consent_service_key_der)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        return "not verified (the registered consent key is not Ed25519)"
    try:
        verify_artefact(artefact, key)
    except errors.CdxError:
        return "INVALID: not signed by the registered consent service key"
    return "valid (EdDSA, registered consent service key)"


# --- commands: the service -----------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from registry.client import RegistryAdminClient
    from registry.paths import InstancePaths, load_identity

    data = _data(args)
    passphrase = _passphrase(args)
    anchor_json = _read(Path(args.anchor) if args.anchor else InstancePaths(data).anchor)
    registry = _registry_address(args)
    dns = args.dns_name or ["localhost"]
    ips = args.ip or ["127.0.0.1"]
    if args.offline:
        paths = init_consent(
            data,
            passphrase,
            registrar=None,
            registry_address=registry,
            anchor_json=anchor_json,
            listen=args.listen,
            public_listen=args.public_listen,
            advertise=args.advertise,
            db_url=args.db_url,
            db_schema=args.db_schema,
            dns_names=dns,
            ip_addresses=ips,
        )
        print(f"consent service keys created in {paths.dir}; now have a registry admin run:")
        print(
            f"  cdx registry cert issue --kind service --name consent --csr {paths.tls_csr} "
            f"--out {paths.tls_cert.parent}"
        )
        print(
            f"  cdx registry anchors set --consent-key {paths.signing_public} "
            f"--consent-address {args.advertise or args.listen}"
        )
        print(f"then place the certificate at {paths.tls_cert} and the CA at {paths.ca_pem}")
        return 0
    instance = InstancePaths(data)
    if args.admin_cert:
        identity = load_identity(
            Path(args.admin_cert), Path(args.admin_key), instance.ca_pem, passphrase
        )
    else:
        identity = instance.admin_identity(args.admin)
    with RegistryAdminClient(registry, identity, timeout=args.timeout) as client:
        paths = init_consent(
            data,
            passphrase,
            registrar=client,
            registry_address=registry,
            anchor_json=anchor_json,
            listen=args.listen,
            public_listen=args.public_listen,
            advertise=args.advertise,
            db_url=args.db_url,
            db_schema=args.db_schema,
            dns_names=dns,
            ip_addresses=ips,
        )
    signer_id = crypto.key_id(crypto.public_key_from_pem(_read(paths.signing_public)))
    print(f"consent service created in {paths.dir} and registered with the registry")
    print(f"  artefact key id   {signer_id[:16]}")
    print(f"  address           {args.advertise or args.listen} (public: {args.public_listen})")
    print("start it with: cdx consent serve")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from consent.model import ConsentEvent

    events = logging.getLogger("cdx.consent.events")

    def on_event(event: ConsentEvent) -> None:
        # Logged for the operator (never with a national id); the audit log receives them
        # from the database when global configuration names its address.
        events.info(
            "consent %s %s -> %s by %s (seq %d)",
            event.consent_id,
            event.action,
            event.state.value,
            event.actor,
            event.seq,
        )

    from cdx import health

    operations = health.start_operations(args, component="consent")
    try:
        instance = open_consent(
            _data(args),
            _passphrase(args),
            listen=args.listen,
            public_listen=args.public_listen,
            registry_address=args.registry,
            on_event=on_event,
        )
    except BaseException:
        operations.stop()
        raise
    cert = instance.paths.identity(_passphrase(args)).certificate()
    operations.add_checks(
        health.conf_check("consent globalconf", instance.conf_client.current),
        health.certificate_check("consent certificate", lambda: (cert,)),
    )
    for remove in health.observe_conf({"server": "consent"}, instance.conf_client.latest):
        operations.on_stop(remove)
    operations.on_stop(health.observe_certificates({"server": "consent"}, lambda: (("tls", cert),)))
    stopped = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    running = instance.running
    print(
        f"consent service listening on {running.address} (mutual TLS)"
        + (f" and {running.public_address} (citizens)" if running.public_address else ""),
        flush=True,
    )
    stopped.wait()
    instance.stop()
    operations.stop()
    return 0


# --- commands: agencies --------------------------------------------------------------------------


def _terms(args: argparse.Namespace, subject: str) -> consent_pb2.ConsentTerms:
    now = utcnow()
    if args.valid_until:
        from consent.model import parse_iso

        until = parse_iso(args.valid_until)
    else:
        until = now + timedelta(days=args.valid_days)
    for value in (args.data_from, args.data_until):
        if value:
            try:
                date.fromisoformat(value)
            except ValueError as exc:
                raise errors.InvalidArgumentError("dates are YYYY-MM-DD") from exc
    return consent_pb2.ConsentTerms(
        subject=subject,
        grantee=args.grantee,
        services=list(args.service),
        purpose=args.purpose,
        fields=_csv(args.fields),
        data_from=args.data_from or "",
        data_until=args.data_until or "",
        valid_until_ms=int(until.timestamp() * 1000),
        max_uses=args.max_uses,
        retention_days=args.retention_days,
    )


def cmd_request(args: argparse.Namespace) -> int:
    calls = _agency_calls(args)
    try:
        consent = calls(
            calls.agency.RequestConsent,
            consent_pb2.RequestConsentRequest(
                requester=args.grantee, terms=_terms(args, args.subject)
            ),
        )
    finally:
        calls.close()
    if args.json:
        print(json.dumps(_consent_json(consent), indent=2, ensure_ascii=False))
    else:
        print(f"consent requested: {consent.id} (PENDING until the citizen approves)")
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    calls = _citizen_calls(args)
    try:
        consent = calls(calls.citizen.Grant, consent_pb2.GrantRequest(terms=_terms(args, "")))
    finally:
        calls.close()
    print(f"consent granted: {consent.id} ({_state(consent.state)})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.grantee:
        calls = _agency_calls(args)
        try:
            response = calls(
                calls.agency.ListGranted,
                consent_pb2.ListGrantedRequest(grantee=args.grantee, subject=args.subject or ""),
            )
        finally:
            calls.close()
        consents = [c for c in response.consents if not args.state or _state(c.state) in args.state]
    else:
        calls = _citizen_calls(args)
        try:
            response = calls(
                calls.citizen.ListMyConsents,
                consent_pb2.ListMyConsentsRequest(
                    states=[consent_pb2.ConsentState.Value(s) for s in args.state or ()]
                ),
            )
        finally:
            calls.close()
        consents = list(response.consents)
    _print_consents(consents, args.json)
    return 0


def _citizen_action(name: str) -> Any:
    def handler(args: argparse.Namespace) -> int:
        calls = _citizen_calls(args)
        try:
            consent = calls(
                getattr(calls.citizen, name),
                consent_pb2.ConsentActionRequest(consent_id=args.id),
            )
        finally:
            calls.close()
        print(f"consent {consent.id} is now {_state(consent.state)}")
        return 0

    return handler


def cmd_show(args: argparse.Namespace) -> int:
    events: list[consent_pb2.ConsentEvent] = []
    if args.grantee or args.server_dir or (args.cert and not _has_token(args)):
        calls = _agency_calls(args)
        try:
            consent = calls(
                calls.agency.GetConsent, consent_pb2.ConsentActionRequest(consent_id=args.id)
            )
        finally:
            calls.close()
    else:
        calls = _citizen_calls(args)
        try:
            listed = calls(calls.citizen.ListMyConsents, consent_pb2.ListMyConsentsRequest())
            found = [c for c in listed.consents if c.id == args.id]
            if not found:
                raise errors.NotFoundError("no such consent")
            consent = found[0]
            events = list(
                calls(
                    calls.citizen.ListEvents, consent_pb2.ConsentActionRequest(consent_id=args.id)
                ).events
            )
        finally:
            calls.close()
    conf = _local_conf(_data(args))
    verdict = _verify_artefact_text(consent.artefact, conf)
    if args.json:
        out = _consent_json(consent)
        out["artefact_signature"] = verdict
        out["events"] = [
            {"seq": e.seq, "action": e.action, "state": _state(e.state), "at": _when(e.at_ms),
             "actor": e.actor}
            for e in events
        ]  # fmt: skip
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    body = _consent_json(consent)
    width = max(len(k) for k in body)
    for key, value in body.items():
        if key == "artefact":
            continue
        shown = ", ".join(value) if isinstance(value, list) else ("-" if value is None else value)
        print(f"{key.ljust(width)}  {shown}")
    print(f"{'artefact'.ljust(width)}  {verdict}")
    if events:
        print("\nhistory:")
        print_table(
            ("SEQ", "WHEN", "ACTION", "STATE", "BY"),
            [(e.seq, _when(e.at_ms), e.action, _state(e.state), e.actor) for e in events],
        )
    return 0


def _has_token(args: argparse.Namespace) -> bool:
    return bool(args.token or args.token_file or os.environ.get("CDX_TOKEN"))


def cmd_receipt(args: argparse.Namespace) -> int:
    calls = _citizen_calls(args)
    try:
        receipt = calls(
            calls.citizen.GetReceipt, consent_pb2.ConsentActionRequest(consent_id=args.id)
        )
    finally:
        calls.close()
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps(json.loads(receipt.json), indent=2, ensure_ascii=False) + "\n")
        out.with_suffix(out.suffix + ".jws").write_text(receipt.jws + "\n")
        print(f"receipt written to {out} (signed copy: {out}.jws)")
    else:
        print(json.dumps(json.loads(receipt.json), indent=2, ensure_ascii=False))
    return 0


# --- parser --------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default=os.environ.get("CDX_DATA", DEFAULT_DATA),
        help="instance data directory (default: $CDX_DATA or ./data)",
    )
    p.add_argument("--passphrase-file", metavar="FILE", help="default: DATA/passphrase")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default: 10)")


def _connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument(
        "--consent",
        metavar="HOST:PORT",
        help="consent service address (default: $CDX_CONSENT / $CDX_CONSENT_PUBLIC, or the "
        "address files a running service writes in DATA/consent)",
    )
    g.add_argument("--ca", metavar="FILE", help="instance CA (default: DATA/consent/ca.pem)")


def _citizen_auth(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("citizen authentication")
    g.add_argument("--token", help="citizen token (prefer --token-file: argv is visible)")
    g.add_argument("--token-file", metavar="FILE", help="file holding the token ('-': stdin)")
    g.add_argument("--cert", metavar="FILE", help="optional client certificate (mTLS port)")
    g.add_argument("--key", metavar="FILE", help="its key (encrypted with the passphrase)")
    g.add_argument("--server-dir", help=argparse.SUPPRESS)


def _agency_auth(p: argparse.ArgumentParser, *, with_token: bool = False) -> None:
    g = p.add_argument_group("agency authentication (mutual TLS)")
    g.add_argument(
        "--server-dir",
        metavar="DIR",
        help="a security server's data directory (its auth certificate and key)",
    )
    g.add_argument("--cert", metavar="FILE", help="an information system's client certificate")
    g.add_argument("--key", metavar="FILE", help="its key (encrypted with the passphrase)")
    if with_token:
        g.add_argument("--token", help="citizen token (citizen view)")
        g.add_argument("--token-file", metavar="FILE", help="file holding a citizen token")


def _terms_options(p: argparse.ArgumentParser, *, subject: bool) -> None:
    if subject:
        p.add_argument("--subject", required=True, help="the citizen's national id")
    p.add_argument("--grantee", required=True, help="client subsystem, e.g. VN:GOV:VSS:benefits")
    p.add_argument("--service", required=True, action="append", help="service id (repeatable)")
    p.add_argument("--purpose", required=True, help="purpose code")
    p.add_argument("--fields", required=True, help="comma-separated fields")
    p.add_argument("--valid-days", type=float, default=90, help="validity (default: 90 days)")
    p.add_argument("--valid-until", help="end of validity, RFC 3339 (overrides --valid-days)")
    p.add_argument("--max-uses", type=int, default=0, help="number of uses (0: unlimited)")
    p.add_argument("--retention-days", type=int, default=0, help="retention at the recipient")
    p.add_argument("--data-from", help="earliest date of data covered (YYYY-MM-DD)")
    p.add_argument("--data-until", help="latest date of data covered (YYYY-MM-DD)")


def register(subparsers: Any) -> None:
    top = subparsers.add_parser(
        "consent",
        help="consent service: run it, request, grant, approve and revoke consents",
        description="Citizen commands (list, grant, approve, reject, pause, resume, revoke, "
        "show, receipt) authenticate with a token (--token-file, --token or $CDX_TOKEN) and use "
        "the service's public port. Agency commands (request, list --grantee, show --grantee) "
        "use mutual TLS with a security server's auth certificate (--server-dir) or an "
        "information system's client certificate (--cert, --key).",
    )
    top.set_defaults(handler=lambda _a, _p=top: _p.print_help() or 1)
    sub = top.add_subparsers(dest="consent_command", metavar="COMMAND")

    p = sub.add_parser("init", help="create the consent service's keys and register it")
    _common(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="mutual-TLS address (%(default)s)")
    p.add_argument(
        "--public-listen", default=DEFAULT_PUBLIC_LISTEN, help="citizen address (%(default)s)"
    )
    p.add_argument("--advertise", metavar="HOST:PORT", help="address published in global conf")
    p.add_argument("--db-url", help="database URL (default: SQLite DATA/consent/consent.db)")
    p.add_argument("--db-schema", help="PostgreSQL schema")
    p.add_argument("--dns-name", action="append", help="DNS name in the certificate (repeatable)")
    p.add_argument("--ip", action="append", help="IP address in the certificate (repeatable)")
    p.add_argument("--anchor", metavar="FILE", help="anchor file (default: DATA/registry/...)")
    p.add_argument("--offline", action="store_true", help="only write a CSR; print the steps")
    p.add_argument("--registry", metavar="HOST:PORT", help="registry address")
    p.add_argument("--admin", default="bootstrap", help="admin in DATA/registry/admin")
    p.add_argument("--admin-cert", metavar="FILE", help="admin certificate elsewhere")
    p.add_argument("--admin-key", metavar="FILE", help="its encrypted key")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("serve", help="run the consent service until interrupted")
    _common(p)
    p.add_argument("--listen", help="override the mutual-TLS address")
    p.add_argument("--public-listen", help="override the citizen address")
    p.add_argument("--registry", metavar="HOST:PORT", help="override the registry address")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser(
        "request", help="(agency) ask a citizen for consent: PENDING until they approve"
    )
    _common(p)
    _connection(p)
    _terms_options(p, subject=True)
    _agency_auth(p)
    p.add_argument("--json", action="store_true", help="print the consent as JSON")
    p.set_defaults(handler=cmd_request)

    p = sub.add_parser("grant", help="(citizen) grant consent directly")
    _common(p)
    _connection(p)
    _terms_options(p, subject=False)
    _citizen_auth(p)
    p.set_defaults(handler=cmd_grant)

    p = sub.add_parser(
        "list", help="(citizen) my consents and pending requests; (agency) --grantee"
    )
    _common(p)
    _connection(p)
    p.add_argument("--state", action="append", choices=STATES, help="only these states")
    p.add_argument("--grantee", help="(agency) consents granted to this subsystem")
    p.add_argument("--subject", help="(agency) only this citizen's")
    p.add_argument("--json", action="store_true", help="print JSON")
    _agency_auth(p, with_token=True)
    p.set_defaults(handler=cmd_list)

    for name, method, text in (
        ("approve", "Approve", "approve a pending request"),
        ("reject", "Reject", "reject a pending request"),
        ("pause", "Pause", "pause an active consent"),
        ("resume", "Resume", "resume a paused consent"),
        ("revoke", "Revoke", "revoke a consent (final)"),
    ):
        p = sub.add_parser(name, help=f"(citizen) {text}")
        _common(p)
        _connection(p)
        p.add_argument("id", help="consent id")
        _citizen_auth(p)
        p.set_defaults(handler=_citizen_action(method))

    p = sub.add_parser("show", help="one consent, its history and whether its artefact verifies")
    _common(p)
    _connection(p)
    p.add_argument("id", help="consent id")
    p.add_argument("--grantee", action="store_true", help="(agency) view as the grantee")
    p.add_argument("--json", action="store_true", help="print JSON")
    _agency_auth(p, with_token=True)
    p.set_defaults(handler=cmd_show)

    add_login_command(sub, _common)

    p = sub.add_parser("receipt", help="(citizen) download a signed ISO/IEC TS 27560 receipt")
    _common(p)
    _connection(p)
    p.add_argument("id", help="consent id")
    p.add_argument("--out", metavar="FILE", help="write JSON here (and FILE.jws)")
    _citizen_auth(p)
    p.set_defaults(handler=cmd_receipt)
