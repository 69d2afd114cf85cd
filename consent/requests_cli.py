"""``cdx requests ...``: an agency works the data-subject requests addressed to it.

Every command acts for one subsystem (``--agency``) and authenticates with mutual TLS: that
subsystem's client certificate (``--cert``/``--key``; on a single-box instance the one in
``DATA/clients``) or the auth certificate of the security server hosting it (``--server-dir``).
The consent service answers only for requests addressed to that subsystem. Addresses default as
``cdx.clidefaults`` says (``--consent``, ``$CDX_CONSENT``, ``DATA/consent/address``,
``DATA/instance.toml``).

Deadlines (Decree 356/2025): acknowledge within 2 working days, complete within 15 days, one
extension of 15 days with a reason. ``cdx requests list --overdue`` shows what is late.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from cdx import clidefaults, errors, rpc
from cdx.cliutil import group, leaf, print_json, print_table, say, when
from cdx.v1 import consent_pb2, consent_pb2_grpc
from consent import cli as consent_cli

STATES = ("RECEIVED", "ACKNOWLEDGED", "IN_PROGRESS", "COMPLETED", "REFUSED", "WITHDRAWN")
#: The steps an agency takes: (command, action, what its text is, whether the text is needed).
STEPS = (
    ("acknowledge", consent_pb2.REQUEST_ACKNOWLEDGE, "", False),
    ("start", consent_pb2.REQUEST_START, "", False),
    ("extend", consent_pb2.REQUEST_EXTEND, "reason", True),
    ("complete", consent_pb2.REQUEST_COMPLETE, "answer", True),
    ("refuse", consent_pb2.REQUEST_REFUSE, "reason", True),
)


def _kind(value: int) -> str:
    return str(consent_pb2.SubjectRequestKind.Name(value)).removeprefix("REQUEST_").lower()


def _state(value: int) -> str:
    return str(consent_pb2.SubjectRequestState.Name(value)).removeprefix("REQUEST_")


def request_json(r: consent_pb2.SubjectRequest) -> dict[str, Any]:
    """A request as ``--json`` prints it."""
    return {
        "id": r.id,
        "kind": _kind(r.kind),
        "state": _state(r.state),
        "addressee": r.addressee or None,
        "purpose": r.purpose or None,
        "service": r.service or None,
        "subject": r.subject or None,
        "received_at": when(r.received_at_ms),
        "acknowledge_by": when(r.acknowledge_by_ms),
        "complete_by": when(r.complete_by_ms),
        "extended": r.extended,
        "closed_at": when(r.closed_at_ms) if r.closed_at_ms else None,
        "overdue": r.overdue or None,
        "steps": [
            {
                "action": s.action,
                "state": _state(s.state),
                "at": when(s.at_ms),
                "actor": s.actor,
                "text": s.text or None,
                "record_id": s.record_id,
            }
            for s in r.steps
        ],
    }


def print_requests(requests: Sequence[consent_pb2.SubjectRequest], as_json: bool) -> None:
    if as_json:
        print_json([request_json(r) for r in requests])
        return
    print_table(
        ("ID", "KIND", "STATE", "PURPOSE", "ACKNOWLEDGE BY", "COMPLETE BY", "OVERDUE"),
        [
            (
                r.id,
                _kind(r.kind),
                _state(r.state),
                r.purpose or "-",
                when(r.acknowledge_by_ms),
                when(r.complete_by_ms) + (" (extended)" if r.extended else ""),
                r.overdue or "-",
            )
            for r in requests
        ],
    )


def print_request(r: consent_pb2.SubjectRequest, as_json: bool) -> None:
    if as_json:
        print_json(request_json(r))
        return
    body = request_json(r)
    steps = body.pop("steps")
    width = max(len(k) for k in body)
    for key, value in body.items():
        say(f"{key.ljust(width)}  {'-' if value is None else value}")
    say("", "steps:")
    print_table(
        ("WHEN", "STEP", "BY", "TEXT"),
        [(s["at"], s["action"], s["actor"], s["text"] or "") for s in steps],
    )


def _stub(args: argparse.Namespace) -> tuple[consent_pb2_grpc.AgencyRequestsStub, Any, str]:
    identity = consent_cli._agency_identity(args, args.agency)
    if identity is None:
        raise errors.UnauthenticatedError(
            "give --cert FILE --key FILE (the subsystem's certificate) or --server-dir DIR "
            f"(no client certificate of {args.agency} in DATA/clients)"
        )
    address = consent_cli._address(args, public=False)
    channel = rpc.secure_channel(address, identity)
    return consent_pb2_grpc.AgencyRequestsStub(channel), channel, address


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    stub, channel, address = _stub(args)
    try:
        with clidefaults.reaching("consent service", address):
            return rpc.invoke(getattr(stub, method), request, timeout=args.timeout)
    finally:
        channel.close()


def cmd_list(args: argparse.Namespace) -> int:
    response = _call(
        args,
        "ListQueue",
        consent_pb2.ListQueueRequest(
            addressee=args.agency,
            states=[
                consent_pb2.SubjectRequestState.Value(f"REQUEST_{s}") for s in args.state or ()
            ],
            overdue_only=args.overdue,
        ),
    )
    print_requests(list(response.requests), args.json)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    found = _call(args, "GetRequest", consent_pb2.SubjectRequestId(request_id=args.id))
    print_request(found, args.json)
    return 0


def _step(action: Any, text_name: str) -> Any:
    def handler(args: argparse.Namespace) -> int:
        text = getattr(args, text_name, "") if text_name else ""
        done = _call(
            args,
            "Act",
            consent_pb2.ActOnRequestRequest(request_id=args.id, action=action, text=text or ""),
        )
        if args.json:
            print_json(request_json(done))
        else:
            say(f"request {done.id} is now {_state(done.state)}")
            if done.extended:
                say(f"  complete by {when(done.complete_by_ms)} (extended)")
        return 0

    return handler


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--agency",
        required=True,
        metavar="SUBSYSTEM",
        help="the subsystem the requests are addressed to, e.g. VN:GOV:VSS:benefits",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    consent_cli._common(p)
    consent_cli._connection(p)
    consent_cli._agency_auth(p)


def register(subparsers: Any) -> None:
    """Add ``cdx requests`` and its sub-commands."""
    sub = group(
        subparsers,
        "requests",
        "(agency) data-subject requests addressed to you: list, answer, extend, refuse",
        description="Objections, restrictions, erasure and rectification requests citizens "
        "addressed to a subsystem, with their Decree 356/2025 deadlines (acknowledge within 2 "
        "working days, complete within 15 days, one extension with a reason). Every step is "
        "signed into the audit log and shown to the citizen.",
    )
    p = leaf(sub, "list", "the open requests addressed to --agency (or --state ...)", cmd_list)
    p.add_argument("--state", action="append", choices=STATES, help="only these states")
    p.add_argument("--overdue", action="store_true", help="only requests past a deadline")
    _options(p)
    p = leaf(sub, "show", "one request: who, what, deadlines and every step", cmd_show)
    p.add_argument("id", help="request id")
    _options(p)
    for name, action, text, needed in STEPS:
        p = leaf(
            sub,
            name,
            f"{name} a request" + (f" (with the {text})" if text else ""),
            _step(action, text),
        )
        p.add_argument("id", help="request id")
        if text:
            p.add_argument(f"--{text}", required=needed, help=f"the {text} (shown to the citizen)")
        _options(p)
