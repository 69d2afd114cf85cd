"""``cdx audit requests ...`` and ``cdx audit bundle verify``: inspectors and data-subject
requests, and the offline check of a citizen's access bundle.

``cdx audit requests`` talks to the consent service (which holds the requests, ADR 0020) with
the inspector certificate ``cdx audit`` uses: ``overdue`` lists every open request past a
Decree 356/2025 deadline, at every agency (no citizen, no text); ``complaints``, ``show`` and
the steps (``acknowledge``, ``start``, ``extend``, ``complete``, ``refuse``) work the
complaints citizens address to the inspectors.

``cdx audit bundle verify FILE`` needs no instance and no network: the log's note verifier key,
the consent service's key (the log's ``/.well-known/cdx/jwks.json``, or a PEM file), and for a
quorum the witnesses' keys — as ``cdx audit receipt``. Exit status 0 when the bundle verifies,
1 when it does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit import bundles, receipts
from cdx import clidefaults, crypto, errors, note, rpc
from cdx.cliutil import group, leaf, print_json, print_table, say, when
from cdx.files import read_file
from cdx.v1 import audit_pb2, consent_pb2, consent_pb2_grpc

STATES = ("RECEIVED", "ACKNOWLEDGED", "IN_PROGRESS", "COMPLETED", "REFUSED", "WITHDRAWN")
STEPS = (
    ("acknowledge", consent_pb2.REQUEST_ACKNOWLEDGE, ""),
    ("start", consent_pb2.REQUEST_START, ""),
    ("extend", consent_pb2.REQUEST_EXTEND, "reason"),
    ("complete", consent_pb2.REQUEST_COMPLETE, "answer"),
    ("refuse", consent_pb2.REQUEST_REFUSE, "reason"),
)


def _kind(value: int) -> str:
    return str(consent_pb2.SubjectRequestKind.Name(value)).removeprefix("REQUEST_").lower()


def _state(value: int) -> str:
    return str(consent_pb2.SubjectRequestState.Name(value)).removeprefix("REQUEST_")


def _json(r: consent_pb2.SubjectRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": _kind(r.kind),
        "state": _state(r.state),
        "addressee": r.addressee or None,
        "purpose": r.purpose or None,
        "subject": r.subject or None,
        "received_at": when(r.received_at_ms),
        "acknowledge_by": when(r.acknowledge_by_ms),
        "complete_by": when(r.complete_by_ms),
        "extended": r.extended,
        "overdue": r.overdue or None,
        "steps": [
            {"action": s.action, "at": when(s.at_ms), "actor": s.actor, "text": s.text or None}
            for s in r.steps
        ],
    }


# --- inspectors and requests ---------------------------------------------------------------------


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    identity = clidefaults.inspector_identity(args)
    paths = clidefaults.data_paths(args)
    conf_address = ""
    if not (args.consent or clidefaults.instance_addresses(paths.data_dir).get("consent")):
        conf_address = clidefaults.fetch_conf(args, identity).consent_service_address
    address = clidefaults.address(
        "consent service",
        paths.data_dir,
        flag=args.consent,
        flag_name="--consent",
        env="CDX_CONSENT",
        address_files=(paths.data_dir / "consent" / "address",),
        instance_key="consent",
        default=conf_address,
    )
    channel = rpc.secure_channel(address, identity)
    try:
        stub = consent_pb2_grpc.InspectorRequestsStub(channel)
        with clidefaults.reaching("consent service", address):
            return rpc.invoke(getattr(stub, method), request, timeout=args.timeout)
    finally:
        channel.close()


def cmd_overdue(args: argparse.Namespace) -> int:
    response = _call(args, "ListOverdue", consent_pb2.ListOverdueRequest(limit=args.limit))
    requests = list(response.requests)
    if args.json:
        print_json([_json(r) for r in requests])
        return 0
    print_table(
        ("ID", "KIND", "ADDRESSED TO", "STATE", "OVERDUE", "DEADLINE", "RECEIVED"),
        [
            (
                r.id,
                _kind(r.kind),
                r.addressee or "(inspectors)",
                _state(r.state),
                r.overdue,
                when(r.complete_by_ms if r.overdue == "completion" else r.acknowledge_by_ms),
                when(r.received_at_ms),
            )
            for r in requests
        ],
    )
    return 0


def cmd_complaints(args: argparse.Namespace) -> int:
    states = [consent_pb2.SubjectRequestState.Value(f"REQUEST_{s}") for s in args.state or ()]
    response = _call(args, "ListComplaints", consent_pb2.ListComplaintsRequest(states=states))
    requests = list(response.requests)
    if args.json:
        print_json([_json(r) for r in requests])
        return 0
    print_table(
        ("ID", "STATE", "RECEIVED", "ACKNOWLEDGE BY", "COMPLETE BY", "OVERDUE"),
        [
            (
                r.id,
                _state(r.state),
                when(r.received_at_ms),
                when(r.acknowledge_by_ms),
                when(r.complete_by_ms),
                r.overdue or "-",
            )
            for r in requests
        ],
    )
    return 0


def _print_one(r: consent_pb2.SubjectRequest, as_json: bool) -> None:
    body = _json(r)
    if as_json:
        print_json(body)
        return
    steps = body.pop("steps")
    width = max(len(k) for k in body)
    for key, value in body.items():
        say(f"{key.ljust(width)}  {'-' if value is None else value}")
    say("", "steps:")
    print_table(
        ("WHEN", "STEP", "BY", "TEXT"),
        [(s["at"], s["action"], s["actor"], s["text"] or "") for s in steps],
    )


def cmd_show(args: argparse.Namespace) -> int:
    found = _call(args, "GetComplaint", consent_pb2.SubjectRequestId(request_id=args.id))
    _print_one(found, args.json)
    return 0


def _step(action: Any, text_name: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        text = getattr(args, text_name) if text_name else ""
        done = _call(
            args,
            "ActOnComplaint",
            consent_pb2.ActOnRequestRequest(request_id=args.id, action=action, text=text),
        )
        if args.json:
            _print_one(done, True)
        else:
            say(f"complaint {done.id} is now {_state(done.state)}")
        return 0

    return handler


# --- offline bundle verification -----------------------------------------------------------------


def _key_text(value: str) -> list[str]:
    if not value.startswith("@"):
        return [value]
    text = read_file(Path(value[1:]), "key file").decode()
    return [line.strip() for line in text.splitlines() if line.strip()]


def _consent_key(args: argparse.Namespace) -> crypto.PublicSigningKey:
    if args.consent_key:
        return crypto.as_signing_public_key(
            crypto.public_key_from_pem(read_file(Path(args.consent_key), "consent key"))
        )
    from jwt.algorithms import OKPAlgorithm

    try:
        document = json.loads(read_file(Path(args.jwks), "JWK set"))
        found = [
            k
            for k in document["keys"]
            if isinstance(k, dict) and k.get("cdx:use") == "consent-artefacts"
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.MalformedError(f"{args.jwks} is not a JWK set") from exc
    if len(found) != 1:
        raise errors.UnknownKeyError(f"{args.jwks} holds no consent service key")
    try:
        key = OKPAlgorithm.from_jwk(found[0])
    except Exception as exc:  # PyJWT raises InvalidKeyError (and others) for bad JWKs
        raise errors.MalformedError("the consent service's JWK is not a public key") from exc
    return crypto.as_signing_public_key(key)


def cmd_bundle_verify(args: argparse.Namespace) -> int:
    """Verify an access bundle offline: no network, only the keys given."""
    (log_key,) = _key_text(args.log_key)[:1] or [""]
    verifier = note.NoteVerifier.from_key_text(log_key)
    witnesses = tuple(
        note.CosignatureVerifier.from_key_text(k)
        for path in args.witness_keys or []
        for k in _key_text(f"@{path}")
    )
    trust = receipts.Trust(verifier, args.origin or verifier.name, witnesses, args.quorum)
    consent_key = _consent_key(args)
    data = read_file(Path(args.file), "access bundle")
    listed: list[tuple[int, audit_pb2.AccessRecord]] = []
    try:
        found = bundles.verify_bundle(
            data, trust, consent_key, keep=lambda i, r: listed.append((i, r))
        )
    except errors.CdxError as exc:
        say(f"INVALID: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(found.entries_by_kind.items())) or "none"
    say(f"VALID: access bundle of request {found.request_id}, issued {found.issued_at}")
    say(f"  signed by the consent service key {crypto.key_id(consent_key)[:16]}")
    say(
        f"  log {found.origin}, tree {found.tree_size}, cosigned by "
        f"{', '.join(found.cosigned_by) or '(no witness)'}"
    )
    total = sum(found.entries_by_kind.values())
    say(f"  {total} entries in the log and about the subject ({kinds})")
    if found.entries_omitted:
        say(f"  {found.entries_omitted} entries not covered yet (newer than the checkpoint)")
    say(f"  {found.consents} consents (every signed artefact verified)")
    say(
        f"  {found.requests} requests, {found.steps_in_log} steps matched with their log "
        f"entries, {found.steps_not_yet_in_log} not in the log yet"
    )
    if args.list:
        print_table(
            ("INDEX", "WHEN", "KIND", "CLIENT", "SERVICE", "PURPOSE", "DECISION"),
            [
                (
                    i,
                    when(r.time_ms),
                    r.kind or "access",
                    r.client or "-",
                    r.service or "-",
                    r.purpose or "-",
                    r.reason_code,
                )
                for i, r in sorted(listed, reverse=True)
            ],
            indent="  ",
        )
    return 0


def register(sub: Any, add_connection: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``requests`` and ``bundle`` to ``cdx audit`` (``add_connection``: its inspector
    connection options)."""
    requests = group(
        sub,
        "requests",
        "data-subject requests: overdue at any agency, complaints to the inspectors",
        description="Requests citizens file (objection, restriction, erasure, rectification, "
        "complaint) with their Decree 356/2025 deadlines, from the consent service.",
    )

    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument(
            "--consent",
            metavar="HOST:PORT",
            help="consent service address (default: $CDX_CONSENT, DATA/consent/address, "
            "DATA/instance.toml, or global conf)",
        )
        add_connection(p)

    p = leaf(
        requests, "overdue", "every open request past a deadline, at every agency", cmd_overdue
    )
    p.add_argument("--limit", type=int, default=500, help="rows (default: 500)")
    options(p)
    p = leaf(
        requests,
        "complaints",
        "complaints to the inspectors (open ones by default)",
        cmd_complaints,
    )
    p.add_argument("--state", action="append", choices=STATES, help="only these states")
    options(p)
    p = leaf(requests, "show", "one complaint: the citizen, the text, every step", cmd_show)
    p.add_argument("id", help="request id")
    options(p)
    for name, action, text in STEPS:
        p = leaf(requests, name, f"{name} a complaint", _step(action, text))
        p.add_argument("id", help="request id")
        if text:
            p.add_argument(f"--{text}", required=True, help=f"the {text} (shown to the citizen)")
        options(p)

    bundle = group(sub, "bundle", "citizens' access bundles")
    p = leaf(
        bundle,
        "verify",
        "verify an access bundle offline (no network)",
        cmd_bundle_verify,
        description="Verify a citizen's access bundle (cdx-access-bundle/v1) with nothing but\n"
        "the keys given: its signature by the consent service (--jwks: the log's\n"
        "/.well-known/cdx/jwks.json, or --consent-key PEM), every entry's inclusion in the\n"
        "checkpoint (--log-key; --witness-keys and --quorum for the witnesses), every entry\n"
        "and consent being about the bundle's subject, and every request step's text being\n"
        "the one the log committed to.\n\n"
        "Exit status: 0 when the bundle verifies, 1 when it does not.",
    )
    p.add_argument("file", metavar="FILE", help="the bundle (JSON)")
    p.add_argument(
        "--log-key", required=True, metavar="VKEY|@FILE", help="the log's note verifier key"
    )
    p.add_argument("--origin", help="the log's origin (default: the log key's name)")
    p.add_argument(
        "--witness-keys",
        action="append",
        metavar="FILE",
        help="a file of witness verifier keys, one per line (repeatable)",
    )
    p.add_argument(
        "--quorum", type=int, default=0, metavar="K", help="require K witness cosignatures"
    )
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", metavar="FILE", help="the JWK set with the consent service's key")
    keys.add_argument("--consent-key", metavar="FILE", help="the consent service's key (PEM)")
    p.add_argument("--list", action="store_true", help="also list every proven entry")
