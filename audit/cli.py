"""``cdx audit ...``: run the audit log, and inspect, prove and verify it.

Inspector commands talk to a running audit log over mutual TLS with an inspector certificate
(``cdx registry cert issue --kind inspector --name NAME --out DATA/inspectors``; a single-box
instance has one in ``DATA/inspector``) and take their trust anchors (log key, origin,
recorders' keys, witness keys) from the global configuration, fetched from the registry and
verified against ``DATA/registry/anchor.json``. Addresses default as ``cdx.clidefaults`` says,
so on a data directory ``cdx up`` created they need no flags.

Operator commands (``init``, ``serve``, ``shred``, ``verify --database``) work on the audit
service's own data directory ``DATA/audit``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from audit import requests_cli
from audit.client import AuditClient
from cdx import clidefaults, db, errors, merkle
from cdx.cliutil import (
    add_data_option,
    add_timeout_option,
    group,
    leaf,
    on_stop_signal,
    parse_time,
    print_json,
    print_table,
    say,
    wait_for_stop_signal,
    when,
)
from cdx.clock import utcnow
from cdx.files import make_private_dir, read_file, write_atomically
from cdx.globalconf import VerifiedGlobalConf, to_ms
from cdx.rpc import TlsIdentity
from cdx.v1 import audit_pb2, common_pb2

DEFAULT_LISTEN = "127.0.0.1:4500"


# --- connection --------------------------------------------------------------------------------


def _audit_address(args: argparse.Namespace, conf: VerifiedGlobalConf | None) -> str:
    """``--address``, ``$CDX_AUDIT``, ``DATA/audit/address``, ``DATA/instance.toml``, then the
    address global configuration publishes."""
    paths = clidefaults.data_paths(args)
    return clidefaults.address(
        "audit log",
        paths.data_dir,
        flag=args.address,
        flag_name="--address",
        env="CDX_AUDIT",
        address_files=(paths.audit_dir / "address",),
        instance_key="audit",
        default=conf.audit_log_address if conf is not None else "",
    )


@dataclass(frozen=True)
class _Session:
    """An inspector's connection: verified global configuration and the audit client."""

    identity: TlsIdentity
    conf: VerifiedGlobalConf
    client: AuditClient


@contextlib.contextmanager
def _session(args: argparse.Namespace) -> Iterator[_Session]:
    """Inspector identity, global configuration (verified), and the audit log, named in errors."""
    identity = clidefaults.inspector_identity(args)
    conf = clidefaults.fetch_conf(args, identity)
    address = _audit_address(args, conf)
    with (
        clidefaults.reaching("audit log", address),
        AuditClient(address, identity, timeout=args.timeout) as client,
    ):
        yield _Session(identity, conf, client)


def _add_connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    add_data_option(g)
    g.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="audit log address (default: $CDX_AUDIT, DATA/audit/address, DATA/instance.toml, "
        "or global conf)",
    )
    g.add_argument(
        "--inspector",
        default="inspector",
        metavar="NAME",
        help="use DATA/inspectors/NAME.pem and NAME.key (default: %(default)s)",
    )
    g.add_argument("--cert", metavar="FILE", help="inspector certificate (PEM) elsewhere")
    g.add_argument("--key", metavar="FILE", help="its key (encrypted with the instance passphrase)")
    g.add_argument("--ca", metavar="FILE", help="instance CA (default: DATA/registry/ca.pem)")
    g.add_argument(
        "--registry",
        metavar="HOST:PORT",
        help="registry address for global conf (default: $CDX_REGISTRY, DATA/registry/address, "
        "DATA/instance.toml)",
    )
    g.add_argument("--anchor", metavar="FILE", help="anchor (default: DATA/registry/anchor.json)")
    g.add_argument("--globalconf", metavar="FILE", help="use a stored global conf copy instead")
    add_timeout_option(g)


# --- output ------------------------------------------------------------------------------------


def _date_ms(text: str) -> int:
    return to_ms(parse_time(text))


_DECISIONS = {common_pb2.ALLOW: "ALLOW", common_pb2.DENY: "DENY"}
_ROLES = {common_pb2.CONSUMER: "consumer", common_pb2.PROVIDER: "provider"}
_DECISION_ARGS: dict[str, common_pb2.Decision] = {
    "": common_pb2.DECISION_UNSPECIFIED,
    "ALLOW": common_pb2.ALLOW,
    "DENY": common_pb2.DENY,
}


class ProgressBar:
    """A one-line progress bar on a stream (only drawn when enabled)."""

    def __init__(self, stream: TextIO, enabled: bool, width: int = 30) -> None:
        self._stream = stream
        self._enabled = enabled
        self._width = width
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled or total <= 0:
            return
        percent = min(100, done * 100 // total)
        if percent == self._last and done != total:
            return
        self._last = percent
        filled = self._width * percent // 100
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\rverifying [{bar}] {percent:3d}% {done}/{total} entries")
        if done >= total:
            self._stream.write("\n")
        self._stream.flush()


# --- inspector commands ------------------------------------------------------------------------


def _open_served(conf: VerifiedGlobalConf, signed_note: str) -> Any:
    from audit import notes

    witnesses = notes.witness_verifiers(conf).values()
    return notes.open_log_checkpoint(
        signed_note, notes.log_verifier(conf.audit_log_key), conf.audit_log_origin, witnesses
    )


def cmd_checkpoint(args: argparse.Namespace) -> int:
    with _session(args) as s:
        served = s.client.checkpoint(args.min_cosignatures)
        opened = _open_served(s.conf, served.note)
    if args.save:
        write_atomically(Path(args.save), served.note.encode())
    if args.json:
        print_json(
            {
                "origin": opened.checkpoint.origin,
                "size": opened.size,
                "root_hash": base64.b64encode(opened.root).decode(),
                "published_at": when(served.published_at_ms),
                "cosigned_by": list(opened.cosigned_by),
                "note": served.note,
            },
        )
        return 0
    say(f"origin        {opened.checkpoint.origin}")
    say(f"tree size     {opened.size}")
    say(f"root hash     {base64.b64encode(opened.root).decode()}")
    say(f"published     {when(served.published_at_ms)}")
    say("signature     valid (log key from global configuration)")
    quorum = s.conf.witness_quorum
    say(
        f"cosigned by   {', '.join(opened.cosigned_by) or '(no witness yet)'}"
        + (f"  [{len(opened.cosigned_by)} of quorum {quorum}]" if quorum else "")
    )
    if args.save:
        say(f"saved to      {args.save}")
    return 0


class _LogReader:
    """Where ``cdx audit proof`` reads the checkpoint, proofs and entries: the log's tiles
    (``--tiles URL``: proofs computed here from tiles) or its gRPC API."""

    def __init__(self, session: _Session, tiles_url: str, timeout: float) -> None:
        from audit.tileclient import TileClient

        self._session = session
        self._tiles = (
            TileClient(tiles_url, ca_pem=session.identity.ca_pem, timeout=timeout)
            if tiles_url
            else None
        )

    @property
    def source(self) -> str:
        """Where the proofs come from, as said to the user."""
        if self._tiles is not None:
            return f"computed here from the log's tiles at {self._tiles.prefix}"
        return "from the log's API (no tile endpoint known; --tiles URL gives one)"

    def checkpoint_note(self) -> str:
        if self._tiles is not None:
            return self._tiles.checkpoint_note()
        return str(self._session.client.checkpoint().note)

    def inclusion(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """(entry, proof)."""
        if self._tiles is not None:
            _, proof = self._tiles.inclusion_proof(index, size)
            return self._tiles.entry(index, size), proof
        served = self._session.client.inclusion_proof(index=index, tree_size=size)
        (entry,) = self._session.client.entries(index, index + 1)
        return entry.record.SerializeToString(deterministic=True), list(served.hashes)

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        if self._tiles is not None:
            return self._tiles.consistency_proof(size1, size2)
        return self._session.client.consistency_proof(size1, size2)


def cmd_proof(args: argparse.Namespace) -> int:
    from audit import receipts

    with _session(args) as s:
        reader = _LogReader(s, clidefaults.tiles_url(args, s.conf), args.timeout)
        served_note = reader.checkpoint_note()
        opened = _open_served(s.conf, served_note)
        if args.consistency:
            size1, size2 = args.consistency
            size2 = size2 or opened.size
            if size2 != opened.size:
                raise errors.InvalidArgumentError("size2 must be the latest checkpoint's size")
            old_note = (
                read_file(Path(args.old_checkpoint), "checkpoint file").decode()
                if args.old_checkpoint
                else ""
            )
            if old_note:
                old = _open_served(s.conf, old_note)
                if old.size != size1:
                    raise errors.InvalidArgumentError("--old-checkpoint is not of size SIZE1")
                old_root = old.root
            elif args.old_root:
                old_root = base64.b64decode(args.old_root)
            else:
                raise errors.InvalidArgumentError(
                    "give --old-checkpoint FILE (or --old-root B64) of the older tree"
                )
            hashes = reader.consistency(size1, size2)
            merkle.verify_consistency(size1, size2, hashes, old_root, opened.root)
            say(f"consistent: tree {size1} is a prefix of tree {size2} ({len(hashes)} hashes)")
            say(f"  proof {reader.source}")
            if args.export:
                if not old_note:
                    raise errors.InvalidArgumentError("--export needs --old-checkpoint FILE")
                text = receipts.consistency_receipt(old_note, size1, hashes, served_note)
                write_atomically(Path(args.export), text.encode())
                say(f"receipt written to {args.export} (verify offline: cdx audit receipt)")
            return 0
        if not args.record_id and args.index is None:
            raise errors.InvalidArgumentError("give --record-id or --index")
        index = args.index
        if args.record_id:
            index = s.client.inclusion_proof(record_id=args.record_id, tree_size=opened.size).index
        entry, proof = reader.inclusion(index, opened.size)
        merkle.verify_inclusion(merkle.leaf_hash(entry), index, opened.size, proof, opened.root)
        signed = audit_pb2.SignedAccessRecord.FromString(entry)
        record = audit_pb2.AccessRecord.FromString(signed.record)
    say(f"entry {index} (record {record.record_id}) is in tree {opened.size}")
    say(f"  root {base64.b64encode(opened.root).decode()}, {len(proof)} proof hashes")
    say(f"  proof {reader.source}")
    say(
        f"  {when(record.time_ms)}  {_ROLES.get(record.role, record.recorder)}  "
        f"{record.client} -> {record.service}  {record.purpose}  "
        f"{_DECISIONS.get(record.decision, '?')} {record.reason_code}"
    )
    if args.export:
        write_atomically(
            Path(args.export),
            receipts.inclusion_receipt(entry, index, proof, served_note).encode(),
        )
        say(f"receipt written to {args.export} (verify offline: cdx audit receipt)")
    return 0


def _key_lines(path: str) -> list[str]:
    return [
        line.strip()
        for line in read_file(Path(path), "key file").decode().splitlines()
        if line.strip()
    ]


def cmd_receipt(args: argparse.Namespace) -> int:
    """Verify a receipt offline: no network, only the keys given."""
    from audit import receipts
    from cdx import note

    log_key = args.log_key
    if log_key.startswith("@"):
        (log_key,) = _key_lines(log_key[1:])
    verifier = note.NoteVerifier.from_key_text(log_key)
    witnesses = tuple(
        note.CosignatureVerifier.from_key_text(k)
        for path in args.witness_keys or []
        for k in _key_lines(path)
    )
    trust = receipts.Trust(verifier, args.origin or verifier.name, witnesses, args.quorum)
    text = read_file(Path(args.file), "receipt").decode()
    if text.startswith(receipts.CONSISTENCY_HEADER):
        both = receipts.verify_consistency_receipt(text, trust)
        say(f"VALID: tree {both.old.size} is a prefix of tree {both.new.size} of {trust.origin}")
        say(f"  cosigned by {', '.join(both.new.cosigned_by) or '(no witness)'}")
        return 0
    found = receipts.verify_inclusion_receipt(text, trust)
    signed = audit_pb2.SignedAccessRecord.FromString(found.entry)
    record = audit_pb2.AccessRecord.FromString(signed.record)
    say(f"VALID: entry {found.index} of {trust.origin} (tree {found.checkpoint.size})")
    say(
        f"  record {record.record_id}  {when(record.time_ms)}  {record.client} -> "
        f"{record.service}  {_DECISIONS.get(record.decision, '?')} {record.reason_code}"
    )
    say(f"  cosigned by {', '.join(found.checkpoint.cosigned_by) or '(no witness)'}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    request = audit_pb2.SearchRequest(
        client=args.client or "",
        service=args.service or "",
        purpose=args.purpose or "",
        decision=_DECISION_ARGS[args.decision or ""],
        from_ms=_date_ms(args.since) if args.since else 0,
        until_ms=_date_ms(args.until) if args.until else 0,
        subject=args.subject or "",
        reason=args.reason or "",
        one_sided_only=args.one_sided,
        limit=args.limit,
        recorder=args.recorder or "",
        message_id=args.message_id or "",
    )
    if args.after is not None:
        request.after_index = args.after
    if request.subject and not request.reason:
        raise errors.ReasonRequiredError("a search by subject needs --reason")
    with _session(args) as s:
        response = s.client.search(request)
    if args.json:
        out = [
            {
                "index": h.entry.index,
                "record_id": h.record.record_id,
                "time": when(h.record.time_ms),
                "recorder": h.record.recorder,
                "role": _ROLES.get(h.record.role, ""),
                "client": h.record.client,
                "service": h.record.service,
                "purpose": h.record.purpose,
                "decision": _DECISIONS.get(h.record.decision, ""),
                "reason": h.record.reason_code,
                "kind": h.record.kind or "access",
                "message_id": h.record.message_id,
                "sealed": h.sealed,
            }
            for h in response.hits
        ]
        print_json({"query_record_id": response.query_record_id, "hits": out})
        return 0
    print_table(
        ("INDEX", "TIME", "ROLE", "CLIENT", "SERVICE", "PURPOSE", "DECISION", "KIND", "SEALED"),
        [
            (
                h.entry.index,
                when(h.record.time_ms),
                _ROLES.get(h.record.role, "-"),
                h.record.client or "-",
                h.record.service or "-",
                h.record.purpose or "-",
                f"{_DECISIONS.get(h.record.decision, '?')} {h.record.reason_code}".strip(),
                h.record.kind or "access",
                "sealed" if h.sealed else "",
            )
            for h in response.hits
        ],
    )
    say(f"{len(response.hits)} hit(s); this query is logged as record {response.query_record_id}")
    if response.hits and len(response.hits) >= args.limit:
        say(f"more may follow: add --after {response.hits[-1].entry.index}")
    return 0


def cmd_refused(args: argparse.Namespace) -> int:
    with _session(args) as s:
        rows = s.client.list_refused(args.after or 0, args.limit, args.recorder or "")
    if args.json:
        out = [
            {
                "id": r.id,
                "recorder": r.recorder,
                "record_id": r.record_id,
                "code": r.code,
                "refused_at": when(r.refused_at_ms),
            }
            for r in rows
        ]
        print_json({"refused": out})
        return 0
    print_table(
        ("ID", "REFUSED", "RECORDER", "RECORD", "CODE"),
        [(r.id, when(r.refused_at_ms), r.recorder, r.record_id, r.code) for r in rows],
    )
    if rows and len(rows) >= args.limit:
        say(f"more may follow: add --after {rows[-1].id}")
    return 0


def cmd_unseal(args: argparse.Namespace) -> int:
    with _session(args) as s:
        result = s.client.unseal(args.record_id, args.reason)
    say(f"unsealed {args.record_id}; the unseal is logged as entry {result.index}")
    return 0


def _known_checkpoints(paths: list[str] | None) -> list[str]:
    out: list[str] = []
    for p in paths or []:
        text = read_file(Path(p), "checkpoint file").decode()
        if text.lstrip().startswith("{"):  # a witness state file
            obj = json.loads(text)
            text = str(obj.get("note", ""))
        if text:
            out.append(text)
    return out


def _finding_json(f: Any) -> dict[str, Any]:
    return {
        "severity": f.severity,
        "code": f.code,
        "message": f.message,
        "index": f.index,
        "record_id": f.record_id,
    }


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "tree_size": report.tree_size,
        "root_hash": base64.b64encode(report.root).decode(),
        "entries_checked": report.entries_checked,
        "signatures_checked": report.signatures_checked,
        "checkpoints_checked": report.checkpoints_checked,
        "messages_paired": report.messages_paired,
        "cosigned_by": list(report.cosigned_by),
        "findings": [_finding_json(f) for f in report.findings],
    }


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        print_json(_report_json(report))
        return
    say(f"tree size            {report.tree_size}")
    say(f"root hash            {base64.b64encode(report.root).decode()}")
    say(f"entries recomputed   {report.entries_checked}")
    say(f"record signatures    {report.signatures_checked} checked")
    say(f"checkpoints          {report.checkpoints_checked} checked")
    say(f"messages paired      {report.messages_paired}")
    say(f"cosigned by          {', '.join(report.cosigned_by) or '(none)'}")
    shown = [f for f in report.findings if f.severity != "info"]
    infos = len(report.findings) - len(shown)
    for f in shown[:200]:
        say(f"  {f}")
    if len(shown) > 200:
        say(f"  ... and {len(shown) - 200} more")
    if infos:
        say(f"  ({infos} message(s) refused by the consumer's own server, one-sided by design)")
    say("VERIFIED: the log is intact" if report.ok else "FAILED: the log does not verify")


@contextlib.contextmanager
def _log_sources(
    args: argparse.Namespace, ca_pem: bytes, locations: list[str]
) -> Iterator[list[Any]]:
    """Read-only sources of the logs at ``locations``: a tile URL (``http(s)://``, the log's
    c2sp.org/tlog-tiles) or a database URL."""
    from audit.store import AuditStore
    from audit.tileclient import TileClient, TileLogSource
    from audit.verify import StoreSource

    engines: list[Any] = []
    sources: list[Any] = []
    try:
        for location in locations:
            if location.startswith(("http://", "https://")):
                client = TileClient(location, ca_pem=ca_pem, timeout=args.timeout)
                sources.append(TileLogSource(client))
            else:
                engine = db.create_engine(location, schema=args.schema)
                engines.append(engine)
                sources.append(StoreSource(AuditStore(engine)))
        yield sources
    finally:
        for engine in engines:
            engine.dispose()


def cmd_verify(args: argparse.Namespace) -> int:
    from audit.verify import Trust, verify_chain

    show = args.progress or (sys.stderr.isatty() and not args.no_progress)
    progress = ProgressBar(sys.stderr, show)
    verify = functools.partial(
        verify_chain,
        known_checkpoints=_known_checkpoints(args.known_checkpoint),
        progress=progress,
        grace_ms=int(args.grace * 1000),
        require_quorum=args.require_quorum,
        workers=args.workers,
    )
    previous = list(args.previous or [])
    if args.database or args.tiles:
        identity = clidefaults.inspector_identity(args)
        conf = clidefaults.fetch_conf(args, identity)
        newest = args.database or args.tiles
        with _log_sources(args, identity.ca_pem, [newest, *previous]) as (source, *older):
            report = verify(source, Trust.from_conf(conf), older)
    else:
        with _session(args) as s, _log_sources(args, s.identity.ca_pem, previous) as older:
            report = verify(s.client, Trust.from_conf(s.conf), older)
    _print_chain(report, args.json)
    return 0 if report.ok else 1


def _print_chain(chain: Any, as_json: bool) -> None:
    if len(chain.periods) == 1 and not chain.findings:  # one log: the report as it always was
        _print_report(chain.periods[0][1], as_json)
        return
    if as_json:
        print_json(
            {
                "ok": chain.ok,
                "periods": [
                    {"origin": origin, **_report_json(report)} for origin, report in chain.periods
                ],
                "findings": [_finding_json(f) for f in chain.findings],
            }
        )
        return
    for number, (origin, report) in enumerate(chain.periods):
        say(f"== {origin}" + (" (newest)" if number == 0 else f" (period -{number})"))
        _print_report(report, False)
    for f in chain.findings:
        say(f"  {f}")
    periods = len(chain.periods)
    say(
        f"VERIFIED: {periods} periods of the log, each anchored in the next"
        if chain.ok
        else "FAILED: the chain of periods does not verify"
    )


# --- operator commands -------------------------------------------------------------------------


def _audit_dir(args: argparse.Namespace) -> Path:
    return (
        Path(args.audit_dir) if args.audit_dir else clidefaults.data_paths(args).data_dir / "audit"
    )


def _database_url(args: argparse.Namespace) -> str:
    return args.database or db.sqlite_url(_audit_dir(args) / "audit.db")


def cmd_init(args: argparse.Namespace) -> int:
    from audit.server import LOG_VKEY, RECORD_PUB, init_audit_keys

    directory = _audit_dir(args)
    continues = Path(args.continues) if args.continues else None
    keys = init_audit_keys(
        directory, clidefaults.passphrase(args), args.origin, continues=continues
    )
    say(f"Created the audit log keys in {directory}")
    if continues is not None:
        say(f"  a new period of the log in {continues} (its audit service key is kept)")
        say(f"Start it: cdx audit anchor --previous-dir {continues} --audit-dir {directory}")
        return 0
    say(f"  origin              {args.origin}")
    say(f"  log verifier key    {keys.log_verifier_key}")
    say(f"  audit service key   {directory / RECORD_PUB} (SPKI DER)")
    say("Anchor them in global configuration:")
    say(
        f'  cdx registry anchors set --audit-origin {args.origin} --audit-key "$(cat '
        f'{directory / LOG_VKEY})" --audit-service-key {directory / RECORD_PUB} '
        "--audit-address HOST:PORT"
    )
    say("and issue its TLS certificate:")
    say(
        f"  cdx registry cert issue --kind service --name audit --ip 127.0.0.1 "
        f"--out {directory / 'tls'}"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cdx import health

    operations = health.start_operations(args, component="audit")
    try:
        return _serve(args, operations)
    finally:
        operations.stop()


def _serve(args: argparse.Namespace, operations: Any) -> int:
    from audit import monitoring
    from audit.server import load_audit_keys, start_audit_service
    from cdx import health
    from cdx.confclient import ConfClient

    directory = _audit_dir(args)
    keys = load_audit_keys(directory, clidefaults.passphrase(args))
    tls_dir = directory / "tls"
    identity = clidefaults.identity(args, tls_dir / "audit.pem", tls_dir / "audit.key")
    conf_client = ConfClient(
        clidefaults.registry_address(args),
        identity,
        clidefaults.anchor(args),
        directory / "globalconf.bin",
    )
    with contextlib.suppress(errors.CdxError):
        conf_client.refresh()
    conf_client.start()
    # One read connection per server thread (32) plus the sequencer and checkpointer.
    engine = db.create_engine(_database_url(args), schema=args.schema, pool_size=40)
    from audit.cosigners import witness_client
    from audit.server import TlsFiles
    from audit.tilestore import open_tile_store

    tls_files = None
    if args.tiles_https:
        tls_files = TlsFiles(
            str(tls_dir / "audit.pem"),
            str(tls_dir / "audit.key"),
            clidefaults.passphrase(args).decode(),
        )
    running = start_audit_service(
        engine,
        identity,
        log_signer=keys.log_signer,
        record_signer=keys.record_signer,
        master_key=keys.master_key,
        conf=conf_client.current,
        address=args.listen,
        checkpoint_interval=args.interval,
        token_audience=args.token_audience,
        tiles=open_tile_store(args.tiles or str(directory / "tiles")),
        tiles_listen=args.tiles_listen,
        tiles_tls=tls_files,
        witnesses=[witness_client(w) for w in args.witness or []],
        verify_workers=args.verify_workers,
    )
    operations.add_checks(*monitoring.health_checks(running, conf_client.current, identity))
    operations.on_stop(monitoring.observe(running, identity=identity))
    for remove in health.observe_conf({"server": "audit"}, conf_client.latest):
        operations.on_stop(remove)
    write_atomically(directory / "address", running.address.encode() + b"\n")
    if running.tiles_url:  # where `cdx audit proof` on this data directory finds them
        write_atomically(directory / "tiles-url", running.tiles_url.encode() + b"\n")
    say(f"audit log {keys.log_signer.name} listening on {running.address}")
    if running.tiles_url:
        say(f"audit log tiles served at {running.tiles_url}")

    on_stop_signal(running.stop)
    try:
        running.wait()
    finally:
        running.stop()
        conf_client.stop()
        for written in ("address", "tiles-url"):
            with contextlib.suppress(FileNotFoundError):
                (directory / written).unlink()
    return 0


WITNESS_KEY = "witness.key"
WITNESS_NAME = "witness.name"


def cmd_witness_init(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from cdx import keyfiles, note

    directory = Path(args.dir)
    if (directory / WITNESS_KEY).exists():
        raise errors.AlreadyExistsError(f"{directory / WITNESS_KEY} exists")
    make_private_dir(directory)
    key = ed25519.Ed25519PrivateKey.generate()
    signer = note.CosignatureSigner(args.name, key)  # checks the name
    keyfiles.save_private_key(directory / WITNESS_KEY, key, clidefaults.passphrase(args))
    write_atomically(directory / WITNESS_NAME, (args.name + "\n").encode())
    say(f"witness key created in {directory}")
    say(f"  verifier key  {signer.verifier_key()}")
    return 0


def cmd_witness_serve(args: argparse.Namespace) -> int:
    import time

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from audit.http import witness_app
    from audit.tlogwitness import FileWitnessState, MultiLogWitness
    from cdx import keyfiles, note, webserver

    directory = Path(args.dir)
    key = keyfiles.load_private_key(directory / WITNESS_KEY, clidefaults.passphrase(args))
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise errors.KeyStoreError(f"{directory / WITNESS_KEY} is not an Ed25519 key")
    signer = note.CosignatureSigner(
        read_file(directory / WITNESS_NAME, "witness name file").decode().strip(), key
    )
    logs: dict[str, list[note.NoteVerifier]] = {}
    for option in args.log:
        # "ORIGIN=VKEY" when an "=" comes before the key's first "+", else a bare VKEY.
        named = "=" in option.split("+", 1)[0]
        origin, _, vkey = option.partition("=") if named else ("", "", option)
        verifier = note.NoteVerifier.from_key_text(vkey)
        logs.setdefault(origin or verifier.name, []).append(verifier)
    core = MultiLogWitness(
        signer, logs, FileWitnessState(directory / "state"), clock=lambda: int(time.time())
    )
    web = webserver.serve(witness_app(core.add_checkpoint), args.listen, name="cdx-witness")
    say(f"witness {signer.name} listening on {web.url}/add-checkpoint")
    try:
        wait_for_stop_signal()
    finally:
        web.stop()
    return 0


def cmd_anchor(args: argparse.Namespace) -> int:
    from audit.server import LOG_VKEY, RECORD_PUB, anchor_new_period, load_audit_keys
    from audit.store import AuditStore
    from cdx import note

    old_dir, new_dir = Path(args.previous_dir), _audit_dir(args)
    old_origin = read_file(old_dir / "origin", "the old log's origin file").decode().strip()
    old_key = note.NoteVerifier.from_key_text(
        read_file(old_dir / LOG_VKEY, "the old log's verifier key").decode().strip()
    )
    keys = load_audit_keys(new_dir, clidefaults.passphrase(args))
    if read_file(old_dir / RECORD_PUB, "the old log's record key") != keys.record_public_der:
        raise errors.FailedPreconditionError(
            "a new period keeps the audit service key, which global configuration anchors "
            f"and which signed the old period's own entries: create it with 'cdx audit init "
            f"--continues {old_dir}'"
        )
    old_engine = db.create_engine(
        args.previous_database or db.sqlite_url(old_dir / "audit.db"),
        schema=args.previous_schema,
    )
    new_engine = db.create_engine(_database_url(args), schema=args.schema)
    try:
        anchored = anchor_new_period(AuditStore(old_engine), old_key, old_origin, new_engine, keys)
    finally:
        old_engine.dispose()
        new_engine.dispose()
    say(f"{keys.log_signer.name} starts with entry 0 anchoring {old_origin} at size {anchored}.")
    say("Next: name the new log in global configuration, serve it, keep the old tiles served:")
    say(
        f'  cdx registry anchors set --audit-origin {keys.log_signer.name} --audit-key "$(cat '
        f'{new_dir / LOG_VKEY})" --audit-tiles URL'
    )
    say(f"  cdx audit serve --audit-dir {new_dir} ...")
    say("Verify across the periods: cdx audit verify --previous OLD_TILES_URL")
    return 0


def cmd_shred(args: argparse.Namespace) -> int:
    from audit.keys import KeyRing, epoch_end
    from audit.server import load_audit_keys
    from audit.store import AuditStore

    before_ms = _date_ms(args.before)
    before = datetime.fromtimestamp(before_ms / 1000, tz=UTC)
    keys = load_audit_keys(_audit_dir(args), clidefaults.passphrase(args))
    engine = db.create_engine(_database_url(args), schema=args.schema)
    try:
        keyring = KeyRing(AuditStore(engine), keys.master_key)
        doomed = [
            e for e, destroyed in keyring.epochs() if not destroyed and epoch_end(e) <= before
        ]
        if not doomed:
            say(f"no epoch ended before {args.before}: nothing to shred")
            return 0
        if not args.yes:
            say(f"would destroy the opening keys of {len(doomed)} epoch(s): {', '.join(doomed)}")
            say("run again with --yes to shred them (this cannot be undone)")
            return 1
        shredded = keyring.shred_before(before, to_ms(utcnow()))
    finally:
        engine.dispose()
    say(f"destroyed the opening keys of {len(shredded)} epoch(s): {', '.join(shredded)}")
    say("their openings and subject-index entries are gone; the log itself still verifies")
    return 0


# --- registration ------------------------------------------------------------------------------


def _add_operator(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("audit service")
    add_data_option(g)
    g.add_argument("--audit-dir", metavar="DIR", help="audit keys directory (default: DATA/audit)")
    g.add_argument("--database", metavar="URL", help="database URL (default: DATA/audit/audit.db)")
    g.add_argument("--schema", help="PostgreSQL schema (default: the search path)")


def register(subparsers: Any) -> None:
    """Add ``cdx audit`` and its sub-commands."""
    sub = group(
        subparsers,
        "audit",
        "the audit log: checkpoints, proofs, search, verification",
        description="The central transparency log of signed access records.",
    )

    p = leaf(sub, "checkpoint", "fetch and verify the latest signed checkpoint", cmd_checkpoint)
    p.add_argument(
        "--min-cosignatures",
        type=int,
        default=0,
        metavar="K",
        help="the newest checkpoint with at least K witness cosignatures",
    )
    p.add_argument("--save", metavar="FILE", help="keep the signed note (for a later verify)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_connection(p)

    p = leaf(
        sub,
        "proof",
        "prove that a record is in the log, or that the log only grew",
        cmd_proof,
        description=(
            "Fetch the latest checkpoint, then an inclusion proof of a record (by --record-id or\n"
            "--index) or a consistency proof from an older tree (--consistency SIZE1 0\n"
            "--old-root B64), and verify it locally. Proofs are computed here from the log's\n"
            "tiles when a tile endpoint is known (on a `cdx up` data directory it is), else\n"
            "taken from the log's API (--api forces that)."
        ),
    )
    p.add_argument("--record-id", help="the record to prove")
    p.add_argument("--index", type=int, help="the entry index to prove")
    p.add_argument(
        "--consistency",
        type=int,
        nargs=2,
        metavar=("SIZE1", "SIZE2"),
        help="prove tree SIZE1 is a prefix of the latest (SIZE2 0 = latest)",
    )
    p.add_argument("--old-root", metavar="B64", help="root hash of tree SIZE1 (base64)")
    p.add_argument(
        "--old-checkpoint",
        metavar="FILE",
        help="the older checkpoint (saved with 'cdx audit checkpoint --save'), for --consistency",
    )
    p.add_argument(
        "--tiles",
        metavar="URL",
        help="read the checkpoint, proofs and entries from the log's tiles at URL (tlog-tiles; "
        "default: $CDX_AUDIT_TILES, DATA/audit/tiles-url, DATA/instance.toml, or global conf)",
    )
    p.add_argument(
        "--api",
        action="store_true",
        help="read them from the log's gRPC API instead of its tiles",
    )
    p.add_argument(
        "--export",
        metavar="FILE",
        help="write a self-contained receipt (inclusion: .tlog-proof; consistency: "
        ".tlog-consistency) that 'cdx audit receipt' verifies offline",
    )
    _add_connection(p)

    p = leaf(
        sub,
        "receipt",
        "verify an exported receipt offline (no network)",
        cmd_receipt,
        description="Verify a .tlog-proof (an entry is in the log) or .tlog-consistency (the log\n"
        "only grew) receipt with nothing but the keys given: the log's note verifier key and,\n"
        "for a quorum, the witnesses' cosignature verifier keys (both published under\n"
        "/.well-known/cdx/ and shown by 'cdx registry conf show').\n\n"
        "Exit status: 0 when the receipt verifies, 1 or 2 when it does not.",
    )
    p.add_argument("file", metavar="FILE", help="the receipt")
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

    p = leaf(
        sub,
        "search",
        "search the log (the query itself is logged)",
        cmd_search,
        description=(
            "Search access records. A search by --subject needs --reason; every search is\n"
            "appended to the log before its results are returned."
        ),
    )
    p.add_argument("--client", help="agency: member or subsystem id (prefix match)")
    p.add_argument("--service", help="service id (prefix match)")
    p.add_argument("--purpose", help="purpose code")
    p.add_argument("--decision", choices=("ALLOW", "DENY"), help="decision")
    p.add_argument("--since", metavar="DATE", help="from this time (YYYY-MM-DD or ISO 8601)")
    p.add_argument("--until", metavar="DATE", help="before this time")
    p.add_argument("--subject", metavar="NATIONAL_ID", help="the citizen (needs --reason)")
    p.add_argument("--reason", help="why you search (logged; required with --subject)")
    p.add_argument("--recorder", metavar="SERVER_ID", help="the recording security server")
    p.add_argument("--message-id", help="one message's records")
    p.add_argument("--one-sided", action="store_true", help="only messages with one side")
    p.add_argument("--limit", type=int, default=100, help="hits to return (default: 100)")
    p.add_argument(
        "--after", type=int, metavar="INDEX", help="next page: only entries after this index"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_connection(p)

    p = leaf(
        sub,
        "refused",
        "list appends the log refused for good (the listing is logged)",
        cmd_refused,
        description="Every record the log refused for good (bad signature, unsafe characters, not\n"
        "the caller's own, ...): the recording server, the record id, the code and when. A\n"
        "security server keeps such a record as a dead letter; nothing is deleted.",
    )
    p.add_argument("--recorder", metavar="SERVER_ID", help="one recording server")
    p.add_argument("--after", type=int, metavar="ID", help="next page: only refusals after ID")
    p.add_argument("--limit", type=int, default=100, help="rows to return (default: 100)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_connection(p)

    p = leaf(sub, "unseal", "make a sealed entry visible to its citizen (logged)", cmd_unseal)
    p.add_argument("--record-id", required=True, help="the sealed record")
    p.add_argument("--reason", required=True, help="why (logged, shown to the citizen)")
    _add_connection(p)

    p = leaf(
        sub,
        "verify",
        "verify the whole log: tree, signatures, checkpoints, message pairs",
        cmd_verify,
        description=(
            "Fetch every checkpoint and entry, recompute the Merkle tree, check every record's\n"
            "signature under its recorder's key, every checkpoint signature and the consistency\n"
            "of all checkpoints, pair the consumer and provider records of each message, and\n"
            "name any entry that differs from what the log signed.\n\n"
            "Exit status: 0 only if everything holds, 1 if anything fails, 2 on usage errors."
        ),
    )
    p.add_argument(
        "--known-checkpoint",
        action="append",
        metavar="FILE",
        help="a checkpoint kept earlier (or a witness state file); repeatable",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="one-sided messages younger than this are only warned about (default 600)",
    )
    p.add_argument(
        "--require-quorum",
        action="store_true",
        help="fail unless the latest checkpoint has the witness quorum",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="processes checking signatures on large logs (default: CPUs, at most 4)",
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar (stderr)")
    p.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--database",
        metavar="URL",
        help="read the audit database directly instead of the service (operators)",
    )
    p.add_argument(
        "--tiles",
        metavar="URL",
        help="read the log from its tiles (c2sp.org/tlog-tiles) instead of the service",
    )
    p.add_argument(
        "--previous",
        action="append",
        metavar="URL",
        help="the log the verified one continues (temporal sharding): its tiles' URL or its "
        "database URL; repeat for older periods, newest first",
    )
    p.add_argument("--schema", help="PostgreSQL schema with --database or --previous")
    _add_connection(p)

    p = leaf(
        sub,
        "anchor",
        "start a new period of the log, anchored in the last checkpoint of the old one",
        cmd_anchor,
        description="Temporal sharding: the log of a new period (its own origin, keys and\n"
        "database, made with 'cdx audit init --origin NEW --audit-dir DIR') gets as its first\n"
        "entry the last checkpoint of the log it continues, signed and cosigned as it was, with\n"
        "that log's origin and key. Run it with both logs stopped; then name the new log in\n"
        "global configuration, serve it, and keep serving the old log's tiles. 'cdx audit\n"
        "verify --previous OLD' then walks from the new period into the old one.",
    )
    p.add_argument(
        "--previous-dir",
        required=True,
        metavar="DIR",
        help="the old log's directory (its log.vkey and origin; its database by default)",
    )
    p.add_argument(
        "--previous-database", metavar="URL", help="the old log's database (default: DIR/audit.db)"
    )
    p.add_argument("--previous-schema", help="its PostgreSQL schema")
    _add_operator(p)

    p = leaf(sub, "init", "create the audit log's keys", cmd_init)
    p.add_argument("--origin", required=True, help="log name, e.g. cdx.example.vn/audit")
    p.add_argument(
        "--continues",
        metavar="DIR",
        help="a new period of the log in DIR (temporal sharding): keep its audit service key; "
        "then run 'cdx audit anchor'",
    )
    _add_operator(p)

    p = leaf(sub, "serve", "run the audit log service", cmd_serve)
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help="address to listen on (default: %(default)s)",
    )
    p.add_argument("--registry", metavar="HOST:PORT", help="registry address (global conf)")
    p.add_argument(
        "--interval", type=float, default=1.0, help="seconds between checkpoints, 1-5 (default: 1)"
    )
    p.add_argument(
        "--token-audience",
        default="",
        help="audience of relayed user tokens (default: urn:cdx:<instance>, as the IdPs issue)",
    )
    p.add_argument(
        "--tiles",
        metavar="DIR|s3://BUCKET/PREFIX",
        help="publish the log as tlog-tiles there (default: DATA/audit/tiles)",
    )
    p.add_argument(
        "--tiles-listen",
        metavar="HOST:PORT",
        help="also serve the tiles and key documents over HTTP on this address",
    )
    p.add_argument(
        "--tiles-https",
        action="store_true",
        help="serve them over HTTPS with the audit log's TLS certificate",
    )
    p.add_argument(
        "--verify-workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="processes checking the record signatures of batches (0: none; default: CPUs)",
    )
    p.add_argument(
        "--witness",
        action="append",
        metavar="URL=VKEY",
        help="push every checkpoint to this tlog-witness and keep its cosignature (repeatable)",
    )
    _add_operator(p)

    wsub = group(
        sub,
        "witness",
        "a tlog-witness for this or other logs",
        description="A C2SP tlog-witness: cosigns the checkpoints of the logs it is given.",
    )
    p = leaf(wsub, "init", "create a witness key", cmd_witness_init)
    p.add_argument("--name", required=True, help="the witness's key name, e.g. witness.example/w1")
    p.add_argument("--dir", required=True, metavar="DIR", help="where to keep the key and state")
    _add_operator(p)
    p = leaf(
        wsub,
        "serve",
        "serve POST /add-checkpoint for the logs given",
        cmd_witness_serve,
        description="Cosign the checkpoints of each --log (its origin and note verifier key)\n"
        "after checking that it is consistent with the last one cosigned\n"
        "(c2sp.org/tlog-witness).",
    )
    p.add_argument("--dir", required=True, metavar="DIR", help="the directory 'init' created")
    p.add_argument(
        "--log",
        action="append",
        required=True,
        metavar="[ORIGIN=]VKEY",
        help="a log to witness: its verifier key (origin: the key's name unless given)",
    )
    p.add_argument("--listen", default="127.0.0.1:4520", metavar="HOST:PORT")
    _add_operator(p)

    p = leaf(
        sub,
        "shred",
        "destroy the opening keys of epochs past retention",
        cmd_shred,
        description=(
            "Crypto-shred: destroy the keys of every epoch (calendar month) that ended before\n"
            "DATE, making its openings (salts, subject ids) and subject-index entries\n"
            "unrecoverable. The log keeps only salted commitments, so it still verifies."
        ),
    )
    p.add_argument("--before", required=True, metavar="DATE", help="YYYY-MM-DD")
    p.add_argument("--yes", action="store_true", help="do it (otherwise only show what would go)")
    _add_operator(p)

    requests_cli.register(sub, _add_connection)
