"""``cdx consent ...``: run the consent service, act on consents, log a citizen in.

Citizen commands (``list``, ``approve``, ``reject``, ``pause``, ``resume``, ``revoke``,
``grant``, ``show``, ``receipt``) authenticate with a token (``--token``, ``--token-file`` or
``$CDX_TOKEN``), act for someone the citizen legally represents with ``--acting-for ID``, and
go to the service's public port (server-authenticated TLS); on a single-box
instance, which has no public port, they go to the mutual-TLS port as the portal does. Agency
commands (``request``, ``list --grantee``, ``show --grantee``) use mutual TLS with a security
server's auth certificate (``--server-dir``), an information system's client certificate
(``--cert`` and ``--key``), or on a single-box instance the grantee's client certificate in
``DATA/clients``. Addresses and files default as ``cdx.clidefaults`` says.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import clidefaults, crypto, errors, keyfiles, rpc
from cdx.cliutil import (
    add_data_option,
    add_timeout_option,
    csv,
    group,
    print_json,
    print_table,
    say,
    wait_for_stop_signal,
    when,
)
from cdx.clock import utcnow
from cdx.files import read_file, write_atomically
from cdx.globalconf import VerifiedGlobalConf
from cdx.v1 import consent_pb2, consent_pb2_grpc
from consent.artefact import verify_artefact
from consent.instance import (
    DEFAULT_LISTEN,
    DEFAULT_PUBLIC_LISTEN,
    ConsentPaths,
    init_consent,
    open_consent,
    rotate_data_key,
)
from consent.login_cli import add_login_command

#: ``--token-file -`` reads the token from standard input.
STDIN = "-"
STATES = ("PENDING", "ACTIVE", "PAUSED", "REVOKED", "EXPIRED", "REJECTED")


# --- connections ---------------------------------------------------------------------------------


def _data(args: argparse.Namespace) -> Path:
    return clidefaults.data_paths(args).data_dir


def _ca_file(args: argparse.Namespace) -> Path:
    return clidefaults.ca_file(args, ConsentPaths(_data(args)).ca_pem)


def _identity(args: argparse.Namespace, cert: Path, key: Path) -> rpc.TlsIdentity:
    return keyfiles.load_identity(cert, key, _ca_file(args), clidefaults.passphrase(args))


def _agency_identity(
    args: argparse.Namespace, subsystem: str | None = None
) -> rpc.TlsIdentity | None:
    """``--server-dir`` (a security server's auth certificate), ``--cert``/``--key`` (an
    information system's), else the client certificate issued to ``subsystem`` in
    ``DATA/clients`` (a single-box instance has one per agency); ``None`` when there is none."""
    if args.server_dir:
        server = Path(args.server_dir)
        return keyfiles.load_identity(
            server / "auth.pem",
            server / "auth.key",
            server / "ca.pem",
            clidefaults.passphrase(args),
        )
    if args.cert or args.key:
        if not (args.cert and args.key):
            raise errors.InvalidArgumentError("give both --cert and --key")
        return _identity(args, Path(args.cert), Path(args.key))
    if subsystem:
        return clidefaults.client_identity(args, subsystem)
    return None


def _address(args: argparse.Namespace, *, public: bool) -> str:
    """The citizen (server-authenticated) or the mutual-TLS port of the consent service."""
    data, paths = _data(args), ConsentPaths(_data(args))
    if public:
        return clidefaults.address(
            "consent service (citizen port)",
            data,
            flag=args.consent,
            flag_name="--consent",
            env="CDX_CONSENT_PUBLIC",
            address_files=(paths.public_address_file,),
            default=DEFAULT_PUBLIC_LISTEN,
        )
    return clidefaults.address(
        "consent service",
        data,
        flag=args.consent,
        flag_name="--consent",
        env="CDX_CONSENT",
        address_files=(paths.address_file,),
        instance_key="consent",
        default=DEFAULT_LISTEN,
    )


def _single_box_relay(args: argparse.Namespace) -> rpc.TlsIdentity | None:
    """On a single-box instance (no citizen port; ``DATA/instance.toml``), citizens reach the
    mutual-TLS port as the portal does: with the portal's identity relaying their token."""
    data = _data(args)
    if args.consent or os.environ.get("CDX_CONSENT_PUBLIC"):
        return None
    if clidefaults.first_line(ConsentPaths(data).public_address_file):
        return None
    if "consent" not in clidefaults.instance_addresses(data):
        return None
    tls = clidefaults.data_paths(args).portal_dir / "tls"
    return _identity(args, tls / "portal.pem", tls / "portal.key")


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    if args.token_file:
        if args.token_file == STDIN:
            text = sys.stdin.read()
        else:
            text = read_file(Path(args.token_file), "token file").decode()
        token = text.strip()
        if token:
            return token
    token = os.environ.get("CDX_TOKEN", "").strip()
    if not token:
        raise errors.UnauthenticatedError(
            "a citizen token is required: --token, --token-file or $CDX_TOKEN "
            "(`cdx idp token --citizen ID` mints one on a development instance)"
        )
    return token


class _Calls:
    """Stubs over one channel, each call turning a refusal into its ``CdxError`` (an unreachable
    service is named)."""

    def __init__(
        self, channel: grpc.Channel, peer: str, timeout: float, token: str | None = None
    ) -> None:
        self.channel = channel
        self.citizen = consent_pb2_grpc.CitizenConsentStub(channel)
        self.agency = consent_pb2_grpc.AgencyConsentStub(channel)
        self._peer = peer
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None

    def __call__(self, method: Any, request: Any) -> Any:
        with clidefaults.reaching("consent service", self._peer):
            return rpc.invoke(method, request, timeout=self._timeout, metadata=self._metadata)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> _Calls:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _citizen_calls(args: argparse.Namespace) -> _Calls:
    token = _token(args)
    identity = _agency_identity(args) if (args.cert or args.server_dir) else None
    identity = identity or _single_box_relay(args)
    if identity is not None:  # e.g. the portal's certificate: the mutual-TLS port
        address = _address(args, public=False)
        channel = rpc.secure_channel(address, identity)
    else:
        address = _address(args, public=True)
        channel = rpc.secure_channel(address, None, read_file(_ca_file(args), "CA certificate"))
    return _Calls(channel, address, args.timeout, token)


def _agency_calls(args: argparse.Namespace, subsystem: str | None = None) -> _Calls:
    identity = _agency_identity(args, subsystem)
    if identity is None:
        raise errors.UnauthenticatedError(
            "agency commands need --server-dir DIR or --cert FILE --key FILE "
            "(on a single-box instance: the grantee's client certificate in DATA/clients)"
        )
    address = _address(args, public=False)
    return _Calls(rpc.secure_channel(address, identity), address, args.timeout)


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
        "valid_from": when(t.valid_from_ms),
        "valid_until": when(t.valid_until_ms),
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
        print_json([_consent_json(c) for c in consents])
        return
    if not consents:
        say("no consents")
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
                when(c.terms.valid_until_ms),
                f"{c.uses}/{c.terms.max_uses}" if c.terms.max_uses else str(c.uses),
            )
            for c in consents
        ],
    )


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

    data = _data(args)
    passphrase = clidefaults.passphrase(args)
    anchor_file = Path(args.anchor) if args.anchor else clidefaults.data_paths(args).anchor
    anchor_json = read_file(anchor_file, "anchor file")
    registry = clidefaults.registry_address(args)

    def init(registrar: RegistryAdminClient | None) -> ConsentPaths:
        return init_consent(
            data,
            passphrase,
            registrar=registrar,
            registry_address=registry,
            anchor_json=anchor_json,
            listen=args.listen,
            public_listen=args.public_listen,
            advertise=args.advertise,
            db_url=args.db_url,
            db_schema=args.db_schema,
            dns_names=args.dns_name or ["localhost"],
            ip_addresses=args.ip or ["127.0.0.1"],
        )

    if args.offline:
        paths = init(None)
        say(f"consent service keys created in {paths.dir}; now have a registry admin run:")
        say(
            f"  cdx registry cert issue --kind service --name consent --csr {paths.tls_csr} "
            f"--out {paths.tls_cert.parent}"
        )
        say(
            f"  cdx registry anchors set --consent-key {paths.signing_public} "
            f"--consent-address {args.advertise or args.listen}"
        )
        say(f"then place the certificate at {paths.tls_cert} and the CA at {paths.ca_pem}")
        return 0
    instance = clidefaults.data_paths(args)
    if args.admin_cert:
        identity = _identity(args, Path(args.admin_cert), Path(args.admin_key))
    else:
        identity = _identity(args, instance.admin_cert(args.admin), instance.admin_key(args.admin))
    with (
        clidefaults.reaching("registry", registry),
        RegistryAdminClient(registry, identity, timeout=args.timeout) as client,
    ):
        paths = init(client)
    public_pem = read_file(paths.signing_public, "artefact public key")
    signer_id = crypto.key_id(crypto.public_key_from_pem(public_pem))
    say(f"consent service created in {paths.dir} and registered with the registry")
    say(f"  artefact key id   {signer_id[:16]}")
    say(f"  address           {args.advertise or args.listen} (public: {args.public_listen})")
    say("start it with: cdx consent serve")
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
            clidefaults.passphrase(args),
            listen=args.listen,
            public_listen=args.public_listen,
            registry_address=args.registry,
            on_event=on_event,
        )
    except BaseException:
        operations.stop()
        raise
    cert = instance.paths.identity(clidefaults.passphrase(args)).certificate()
    operations.add_checks(
        health.conf_check("consent globalconf", instance.conf_client.current),
        health.certificate_check("consent certificate", lambda: (cert,)),
    )
    for remove in health.observe_conf({"server": "consent"}, instance.conf_client.latest):
        operations.on_stop(remove)
    operations.on_stop(health.observe_certificates({"server": "consent"}, lambda: (("tls", cert),)))
    running = instance.running
    say(
        f"consent service listening on {running.address} (mutual TLS)"
        + (f" and {running.public_address} (citizens)" if running.public_address else "")
    )
    wait_for_stop_signal()
    instance.stop()
    operations.stop()
    return 0


def cmd_rotate_data_key(args: argparse.Namespace) -> int:
    data = _data(args)
    old_id, new_id = rotate_data_key(data, clidefaults.passphrase(args))
    retired = ConsentPaths(data).retired_data_key(old_id)
    say(f"new data key {new_id}; the old key {old_id} is kept in {retired}")
    say(
        "restart the consent service (every replica with the new data.key): it reseals the "
        "stored consents under the new key; then delete the retired key file (the shred)"
    )
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
        fields=csv(args.fields),
        data_from=args.data_from or "",
        data_until=args.data_until or "",
        valid_until_ms=int(until.timestamp() * 1000),
        max_uses=args.max_uses,
        retention_days=args.retention_days,
    )


def cmd_request(args: argparse.Namespace) -> int:
    with _agency_calls(args, args.grantee) as calls:
        consent = calls(
            calls.agency.RequestConsent,
            consent_pb2.RequestConsentRequest(
                requester=args.grantee, terms=_terms(args, args.subject)
            ),
        )
    if args.json:
        print_json(_consent_json(consent))
    else:
        say(f"consent requested: {consent.id} (PENDING until the citizen approves)")
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    with _citizen_calls(args) as calls:
        consent = calls(
            calls.citizen.Grant,
            consent_pb2.GrantRequest(terms=_terms(args, ""), acting_for=_acting_for(args)),
        )
    say(f"consent granted: {consent.id} ({_state(consent.state)})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.grantee:
        with _agency_calls(args, args.grantee) as calls:
            response = calls(
                calls.agency.ListGranted,
                consent_pb2.ListGrantedRequest(grantee=args.grantee, subject=args.subject or ""),
            )
        consents = [c for c in response.consents if not args.state or _state(c.state) in args.state]
    else:
        with _citizen_calls(args) as calls:
            response = calls(
                calls.citizen.ListMyConsents,
                consent_pb2.ListMyConsentsRequest(
                    states=[consent_pb2.ConsentState.Value(s) for s in args.state or ()],
                    acting_for=_acting_for(args),
                ),
            )
        consents = list(response.consents)
    _print_consents(consents, args.json)
    return 0


def _citizen_action(name: str) -> Any:
    def handler(args: argparse.Namespace) -> int:
        with _citizen_calls(args) as calls:
            consent = calls(
                getattr(calls.citizen, name),
                consent_pb2.ConsentActionRequest(consent_id=args.id, acting_for=_acting_for(args)),
            )
        say(f"consent {consent.id} is now {_state(consent.state)}")
        return 0

    return handler


def cmd_show(args: argparse.Namespace) -> int:
    events: list[consent_pb2.ConsentEvent] = []
    if args.grantee or args.server_dir or (args.cert and not _has_token(args)):
        with _agency_calls(args) as calls:
            consent = calls(
                calls.agency.GetConsent, consent_pb2.ConsentActionRequest(consent_id=args.id)
            )
    else:
        with _citizen_calls(args) as calls:
            listed = calls(
                calls.citizen.ListMyConsents,
                consent_pb2.ListMyConsentsRequest(acting_for=_acting_for(args)),
            )
            found = [c for c in listed.consents if c.id == args.id]
            if not found:
                raise errors.NotFoundError("no such consent")
            consent = found[0]
            events = list(
                calls(
                    calls.citizen.ListEvents,
                    consent_pb2.ConsentActionRequest(
                        consent_id=args.id, acting_for=_acting_for(args)
                    ),
                ).events
            )
    conf = clidefaults.stored_conf(_data(args))
    verdict = _verify_artefact_text(consent.artefact, conf)
    if args.json:
        out = _consent_json(consent)
        out["artefact_signature"] = verdict
        out["events"] = [
            {"seq": e.seq, "action": e.action, "state": _state(e.state), "at": when(e.at_ms),
             "actor": e.actor}
            for e in events
        ]  # fmt: skip
        print_json(out)
        return 0
    body = _consent_json(consent)
    width = max(len(k) for k in body)
    for key, value in body.items():
        if key == "artefact":
            continue
        shown = ", ".join(value) if isinstance(value, list) else ("-" if value is None else value)
        say(f"{key.ljust(width)}  {shown}")
    say(f"{'artefact'.ljust(width)}  {verdict}")
    if events:
        say("", "history:")
        print_table(
            ("SEQ", "WHEN", "ACTION", "STATE", "BY"),
            [(e.seq, when(e.at_ms), e.action, _state(e.state), e.actor) for e in events],
        )
    return 0


def _acting_for(args: argparse.Namespace) -> str:
    """The national id of the person the citizen acts for (``--acting-for``), or ``""``."""
    return str(getattr(args, "acting_for", None) or "")


def _has_token(args: argparse.Namespace) -> bool:
    return bool(args.token or args.token_file or os.environ.get("CDX_TOKEN"))


def cmd_receipt(args: argparse.Namespace) -> int:
    with _citizen_calls(args) as calls:
        receipt = calls(
            calls.citizen.GetReceipt,
            consent_pb2.ConsentActionRequest(consent_id=args.id, acting_for=_acting_for(args)),
        )
    if args.out:
        out = Path(args.out)
        text = json.dumps(json.loads(receipt.json), indent=2, ensure_ascii=False) + "\n"
        write_atomically(out, text.encode())
        write_atomically(out.with_suffix(out.suffix + ".jws"), receipt.jws.encode() + b"\n")
        say(f"receipt written to {out} (signed copy: {out}.jws)")
    else:
        print_json(json.loads(receipt.json))
    return 0


# --- parser --------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    add_data_option(p)
    p.add_argument("--passphrase-file", metavar="FILE", help="default: DATA/passphrase")
    add_timeout_option(p)


def _connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument(
        "--consent",
        metavar="HOST:PORT",
        help="consent service address (default: $CDX_CONSENT / $CDX_CONSENT_PUBLIC, the "
        "address files a running service writes in DATA/consent, or DATA/instance.toml)",
    )
    g.add_argument(
        "--ca", metavar="FILE", help="instance CA (default: DATA/consent/ca.pem or DATA/registry)"
    )


def _citizen_auth(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("citizen authentication")
    g.add_argument("--token", help="citizen token (prefer --token-file: argv is visible)")
    g.add_argument("--token-file", metavar="FILE", help="file holding the token ('-': stdin)")
    g.add_argument("--cert", metavar="FILE", help="optional client certificate (mTLS port)")
    g.add_argument("--key", metavar="FILE", help="its key (encrypted with the passphrase)")
    g.add_argument("--server-dir", help=argparse.SUPPRESS)
    g.add_argument(
        "--acting-for",
        metavar="ID",
        help="national id of a person you legally represent (`cdx representation mine`)",
    )


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
        g.add_argument(
            "--acting-for", metavar="ID", help="(citizen) a person you legally represent"
        )


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
    sub = group(
        subparsers,
        "consent",
        "consent service: run it, request, grant, approve and revoke consents",
        description="Citizen commands (list, grant, approve, reject, pause, resume, revoke, "
        "show, receipt) authenticate with a token (--token-file, --token or $CDX_TOKEN) and use "
        "the service's public port (on a single-box instance: its mutual-TLS port, as the "
        "portal). Agency commands (request, list --grantee, show --grantee) use mutual TLS with "
        "a security server's auth certificate (--server-dir), an information system's client "
        "certificate (--cert, --key), or on a single-box instance the grantee's.",
    )

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
        "rotate-data-key",
        help="replace the key sealing stored consents (resealed at the next start)",
    )
    _common(p)
    p.set_defaults(handler=cmd_rotate_data_key)

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
