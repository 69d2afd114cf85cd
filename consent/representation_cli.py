"""``cdx representation ...``: the representation authority registers, amends, ends and lists
legal representatives (parents, guardians, authorised persons) in the consent service; a
citizen lists whom they may act for (``mine``) and who may act for them (``mine --for-me``).

The authority's commands use mutual TLS like the agency commands of ``cdx consent``: a security
server's auth certificate (``--server-dir``), an information system's client certificate
(``--cert``/``--key``), or on a single-box instance the authority's client certificate in
``DATA/clients``. ``--authority`` defaults to the subsystem global configuration designates.
A citizen's command authenticates with a token, as ``cdx consent list`` does.
"""

from __future__ import annotations

import argparse
from typing import Any

from cdx import clidefaults, errors
from cdx.cliutil import group, parse_time, print_json, print_table, say, when
from cdx.v1 import consent_pb2, consent_pb2_grpc
from consent.cli import (
    _agency_auth,
    _agency_calls,
    _citizen_auth,
    _citizen_calls,
    _common,
    _connection,
)

KINDS = {
    "parent": consent_pb2.RELATION_PARENT,
    "guardian": consent_pb2.RELATION_GUARDIAN,
    "authorised": consent_pb2.RELATION_AUTHORISED,
}
SCOPES = {"history": consent_pb2.SCOPE_HISTORY, "consents": consent_pb2.SCOPE_CONSENTS}
_KIND_NAMES = {v: k for k, v in KINDS.items()}
_SCOPE_NAMES = {v: k for k, v in SCOPES.items()}


def _authority(args: argparse.Namespace) -> str:
    if args.authority:
        return str(args.authority)
    conf = clidefaults.known_conf(args)
    if conf is None or not conf.representation_authority:
        raise errors.FailedPreconditionError(
            "no representation authority is known: give --authority SUBSYSTEM (global "
            "configuration designates it: cdx registry anchors set --representation-authority)"
        )
    return str(conf.representation_authority)


def _ms(text: str | None) -> int:
    return int(parse_time(text).timestamp() * 1000) if text else 0


def _relation_json(r: consent_pb2.Relation) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": _KIND_NAMES.get(r.kind, str(r.kind)),
        "representative": r.representative,
        "represented": r.represented,
        "scopes": [_SCOPE_NAMES.get(s, str(s)) for s in r.scopes],
        "valid_from": when(r.valid_from_ms),
        "valid_until": when(r.valid_until_ms) if r.valid_until_ms else None,
        "majority_date": r.majority_date or None,
        "ended_at": when(r.ended_at_ms) if r.ended_at_ms else None,
        "ends_at": when(r.ends_at_ms) if r.ends_at_ms else None,
        "in_force": r.in_force,
        "authority": r.authority,
        "reference": r.reference or None,
        "representative_name": r.representative_name or None,
        "represented_name": r.represented_name or None,
        "version": r.version,
    }


def _print(relations: list[consent_pb2.Relation], as_json: bool) -> None:
    if as_json:
        print_json([_relation_json(r) for r in relations])
        return
    if not relations:
        say("no relations")
        return
    print_table(
        ("ID", "KIND", "REPRESENTATIVE", "REPRESENTED", "SCOPES", "ENDS", "IN FORCE"),
        [
            (
                r.id,
                _KIND_NAMES.get(r.kind, str(r.kind)),
                r.representative_name or r.representative,
                r.represented_name or r.represented,
                ",".join(_SCOPE_NAMES.get(s, str(s)) for s in r.scopes),
                when(r.ends_at_ms) if r.ends_at_ms else "-",
                "yes" if r.in_force else "no",
            )
            for r in relations
        ],
    )


def _terms(args: argparse.Namespace) -> consent_pb2.Relation:
    return consent_pb2.Relation(
        kind=KINDS[args.kind] if getattr(args, "kind", None) else None,
        representative=getattr(args, "representative", None) or "",
        represented=getattr(args, "represented", None) or "",
        scopes=[SCOPES[s] for s in args.scope or ()],
        valid_from_ms=_ms(args.valid_from),
        valid_until_ms=_ms(args.valid_until),
        majority_date=args.majority_date or "",
        reference=args.reference or "",
        representative_name=args.representative_name or "",
        represented_name=args.represented_name or "",
    )


def cmd_register(args: argparse.Namespace) -> int:
    authority = _authority(args)
    with _agency_calls(args, authority) as calls:
        stub = consent_pb2_grpc.RepresentationStub(calls.channel)
        relation = calls(
            stub.RegisterRelation,
            consent_pb2.RegisterRelationRequest(authority=authority, relation=_terms(args)),
        )
    if args.json:
        print_json(_relation_json(relation))
    else:
        say(f"relation registered: {relation.id} ({_KIND_NAMES[relation.kind]})")
    return 0


#: ``cdx representation amend`` option -> the ``Relation`` field it sets.
_AMEND_OPTIONS = {
    "valid_from": "valid_from_ms",
    "valid_until": "valid_until_ms",
    "majority_date": "majority_date",
    "scope": "scopes",
    "reference": "reference",
    "representative_name": "representative_name",
    "represented_name": "represented_name",
}


def cmd_amend(args: argparse.Namespace) -> int:
    authority = _authority(args)
    fields = [f for option, f in _AMEND_OPTIONS.items() if getattr(args, option) is not None]
    if not fields:
        raise errors.InvalidArgumentError("nothing to amend: give at least one option")
    with _agency_calls(args, authority) as calls:
        stub = consent_pb2_grpc.RepresentationStub(calls.channel)
        relation = calls(
            stub.AmendRelation,
            consent_pb2.AmendRelationRequest(
                authority=authority, relation_id=args.id, relation=_terms(args), set_fields=fields
            ),
        )
    if args.json:
        print_json(_relation_json(relation))
    else:
        say(f"relation {relation.id} amended (version {relation.version})")
    return 0


def cmd_end(args: argparse.Namespace) -> int:
    authority = _authority(args)
    with _agency_calls(args, authority) as calls:
        stub = consent_pb2_grpc.RepresentationStub(calls.channel)
        relation = calls(
            stub.EndRelation,
            consent_pb2.EndRelationRequest(
                authority=authority,
                relation_id=args.id,
                ended_at_ms=_ms(args.at),
                reason=args.reason or "",
            ),
        )
    say(f"relation {relation.id} ended at {when(relation.ended_at_ms)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    authority = _authority(args)
    with _agency_calls(args, authority) as calls:
        stub = consent_pb2_grpc.RepresentationStub(calls.channel)
        response = calls(
            stub.ListRelations,
            consent_pb2.ListRelationsRequest(authority=authority, person=args.person),
        )
    _print(list(response.relations), args.json)
    return 0


def cmd_mine(args: argparse.Namespace) -> int:
    with _citizen_calls(args) as calls:
        stub = consent_pb2_grpc.RepresentationStub(calls.channel)
        method = stub.ListRepresentatives if args.for_me else stub.ListRepresented
        response = calls(method, consent_pb2.ListMyRelationsRequest(include_ended=args.all))
    _print(list(response.relations), args.json)
    return 0


# --- parser --------------------------------------------------------------------------------------


def _authority_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--authority",
        metavar="SUBSYSTEM",
        help="the representation authority (default: the one global configuration designates)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def _validity(p: argparse.ArgumentParser, *, amend: bool) -> None:
    default = None if amend else ()
    p.add_argument(
        "--scope",
        action="append",
        choices=sorted(SCOPES),
        default=default,
        help="(authorised persons) what they may do: history, consents (repeatable)",
    )
    p.add_argument("--valid-from", metavar="TIME", help="start (default: now)")
    p.add_argument("--valid-until", metavar="TIME", help="end (default: open-ended)")
    p.add_argument(
        "--majority-date",
        metavar="YYYY-MM-DD",
        help="the day the represented person comes of age (required for a parent)",
    )
    p.add_argument("--reference", help="the authority's reference, e.g. a birth registration")
    p.add_argument("--representative-name", help="display name of the representative")
    p.add_argument("--represented-name", help="display name of the represented person")


def register(subparsers: Any) -> None:
    sub = group(
        subparsers,
        "representation",
        "legal representatives: parents, guardians, authorised persons",
        description="The representation authority (the subsystem global configuration "
        "designates) registers, amends, ends and lists relations, with mutual TLS: a "
        "security server's certificate (--server-dir), an information system's (--cert, "
        "--key) or, on a single-box instance, the authority's client certificate. "
        "A citizen lists whom they may act for with `mine` (token).",
    )

    p = sub.add_parser("register", help="(authority) register a legal representative")
    _common(p)
    _connection(p)
    p.add_argument("--representative", required=True, help="national id of who acts")
    p.add_argument("--represented", required=True, help="national id of whom they act for")
    p.add_argument("--kind", required=True, choices=sorted(KINDS), help="kind of relation")
    _validity(p, amend=False)
    _authority_options(p)
    _agency_auth(p)
    p.set_defaults(handler=cmd_register)

    p = sub.add_parser("amend", help="(authority) change validity, majority date, scopes, names")
    _common(p)
    _connection(p)
    p.add_argument("id", help="relation id")
    _validity(p, amend=True)
    _authority_options(p)
    _agency_auth(p)
    p.set_defaults(handler=cmd_amend)

    p = sub.add_parser("end", help="(authority) end a relation")
    _common(p)
    _connection(p)
    p.add_argument("id", help="relation id")
    p.add_argument("--at", metavar="TIME", help="when it ended (default: now)")
    p.add_argument("--reason", help="reason code, e.g. court-order")
    _authority_options(p)
    _agency_auth(p)
    p.set_defaults(handler=cmd_end)

    p = sub.add_parser("list", help="(authority) relations in which a person is either party")
    _common(p)
    _connection(p)
    p.add_argument("--person", required=True, help="national id")
    _authority_options(p)
    _agency_auth(p)
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("mine", help="(citizen) the people I may act for now")
    _common(p)
    _connection(p)
    p.add_argument("--for-me", action="store_true", help="who may act for me instead")
    p.add_argument("--all", action="store_true", help="also relations no longer in force")
    p.add_argument("--json", action="store_true", help="print JSON")
    _citizen_auth(p)
    p.set_defaults(handler=cmd_mine)
