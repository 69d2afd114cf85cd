"""``cdx audit verify``: recompute the whole log from its entries and check every signature.

``verify_log(source, trust)`` trusts nothing the log says about itself. It:

1. opens every stored checkpoint (and the latest one, and any checkpoints the caller kept from
   earlier, e.g. a witness's state): each must be signed by the log key with the log's origin;
   two valid checkpoints of one size with different roots are a fork;
2. streams every entry up to the largest checkpoint, recomputes the RFC 9162 tree from the
   leaves and compares its root at **every** checkpoint size (which also proves all
   checkpoints consistent with each other); missing entries are a truncation;
3. verifies every record's signature under its recorder's key in global configuration (the
   audit service's own records under ``audit_service_key``, the consent service's
   ``consent_event`` and ``subject_request`` records under ``consent_service_key``) and flags
   duplicate record ids;
4. when a root does not match, walks inclusion proofs from the log down to the first entry
   that differs from the signed tree, and names it;
5. checks the witnesses' cosignatures on the latest checkpoint against the quorum;
6. pairs the consumer and provider records of each message and reports one-sided messages
   (an ALLOW with no record from the other side is an error once older than ``grace_ms``).

The report's ``ok`` is true only when no finding is an error. ``source`` is an ``AuditClient``
(over gRPC) or a ``StoreSource`` (directly on the database, for the operator).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from google.protobuf.message import DecodeError

from audit import notes
from audit.service import AUDIT_KINDS, AUDIT_RECORDER, KIND_LOG_ANCHOR
from audit.store import AuditStore
from cdx import crypto, errors, merkle, note, records
from cdx.globalconf import VerifiedGlobalConf
from cdx.v1 import audit_pb2, common_pb2

log = logging.getLogger(__name__)

Severity = Literal["error", "warning", "info"]
Progress = Callable[[int, int], None]
DEFAULT_GRACE_MS = 10 * 60 * 1000
_SIGNATURE_CHUNK = 2000
#: Below this many entries, worker processes cost more to start than they save.
_PROCESS_THRESHOLD = 20_000


class LogSource(Protocol):
    """What verification reads from a log (``AuditClient`` and ``StoreSource`` implement it)."""

    def checkpoint(self, min_cosignatures: int = 0) -> audit_pb2.Checkpoint: ...

    def iter_checkpoints(self) -> Iterator[audit_pb2.Checkpoint]: ...

    def iter_entries(self, start: int, end: int) -> Iterator[audit_pb2.LogEntry]: ...

    def inclusion_proof(
        self, index: int = 0, tree_size: int = 0, record_id: str = ""
    ) -> audit_pb2.InclusionProof: ...

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]: ...


@dataclass(frozen=True)
class Trust:
    """What the verifier trusts, from global configuration (or given explicitly)."""

    log_verifier: note.NoteVerifier
    origin: str
    record_keys: Mapping[str, crypto.PublicSigningKey]
    witnesses: Mapping[str, note.CosignatureVerifier] = field(default_factory=dict)
    quorum: int = 0

    @classmethod
    def from_conf(cls, conf: VerifiedGlobalConf) -> Trust:
        """Trust anchors of a verified global configuration.

        Raises:
            FailedPreconditionError: the configuration names no audit log key.
            NoteFormatError: the audit log key is malformed.
        """
        keys: dict[str, crypto.PublicSigningKey] = {
            s.id: s.signing_public_key for s in conf.servers.values()
        }
        if conf.audit_service_key_der:
            keys[AUDIT_RECORDER] = crypto.as_signing_public_key(
                crypto.public_key_from_der(conf.audit_service_key_der)
            )
        if conf.consent_service_key_der:
            keys[records.CONSENT_RECORDER] = crypto.as_signing_public_key(
                crypto.public_key_from_der(conf.consent_service_key_der)
            )
        witnesses = {notes.witness_name(k): v for k, v in notes.witness_verifiers(conf).items()}
        return cls(
            log_verifier=notes.log_verifier(conf.audit_log_key),
            origin=conf.audit_log_origin,
            record_keys=keys,
            witnesses=witnesses,
            quorum=conf.witness_quorum,
        )


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of verification; ``error`` findings make the log fail verification."""

    severity: Severity
    code: str
    message: str
    index: int | None = None
    record_id: str = ""

    def __str__(self) -> str:
        where = f" [entry {self.index}" if self.index is not None else ""
        if where and self.record_id:
            where += f", record {self.record_id}"
        where += "]" if where else ""
        return f"{self.severity.upper()} {self.code}{where}: {self.message}"


@dataclass
class VerifyReport:
    """What ``verify_log`` found."""

    tree_size: int = 0
    root: bytes = b""
    entries_checked: int = 0
    signatures_checked: int = 0
    checkpoints_checked: int = 0
    cosigned_by: tuple[str, ...] = ()
    messages_paired: int = 0
    findings: list[Finding] = field(default_factory=list)
    #: Messages with a record of one side only: message id -> (role, that record's id).
    unpaired: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def add(self, severity: Severity, code: str, message: str, **where: object) -> None:
        self.findings.append(Finding(severity, code, message, **where))  # type: ignore[arg-type]


# --- sources -----------------------------------------------------------------------------------


class StoreSource:
    """A ``LogSource`` reading an audit database directly (the operator's view)."""

    def __init__(self, audit_store: AuditStore) -> None:
        self._store = audit_store

    def checkpoint(self, min_cosignatures: int = 0) -> audit_pb2.Checkpoint:
        row = self._store.latest_checkpoint(min_cosignatures)
        if row is None:
            raise errors.NotFoundError("no checkpoint has been published yet")
        return _checkpoint_pb(row)

    def iter_checkpoints(self) -> Iterator[audit_pb2.Checkpoint]:
        after = -1
        while True:
            page = self._store.list_checkpoints(after, 1000)
            yield from (_checkpoint_pb(r) for r in page)
            if len(page) < 1000:
                return
            after = page[-1].size

    def iter_leaves(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """``(index, leaf)`` of entries ``[start, end)``: the exact bytes, nothing parsed."""
        pos = start
        while pos < end:
            leaves = self._store.leaves_between(pos, min(end, pos + 5000))
            if not leaves:
                return
            for offset, leaf in enumerate(leaves):
                yield pos + offset, leaf
            pos += len(leaves)

    def iter_entries(self, start: int, end: int) -> Iterator[audit_pb2.LogEntry]:
        pos = start
        while pos < end:
            rows = self._store.entries(pos, min(end, pos + 2000))
            if not rows:
                return
            for r in rows:
                yield audit_pb2.LogEntry(
                    index=r.idx,
                    record=audit_pb2.SignedAccessRecord.FromString(r.leaf),
                    integrated_at_ms=r.integrated_at_ms,
                )
            pos = rows[-1].idx + 1

    def inclusion_proof(
        self, index: int = 0, tree_size: int = 0, record_id: str = ""
    ) -> audit_pb2.InclusionProof:
        leaf_hash, hashes = self._store.inclusion_proof(index, tree_size)
        return audit_pb2.InclusionProof(
            index=index, tree_size=tree_size, hashes=hashes, leaf_hash=leaf_hash
        )

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self._store.consistency_proof(size1, size2)


def _checkpoint_pb(row: object) -> audit_pb2.Checkpoint:
    return audit_pb2.Checkpoint(
        note=row.note_with_cosignatures,  # type: ignore[attr-defined]
        size=row.size,  # type: ignore[attr-defined]
        root_hash=row.root,  # type: ignore[attr-defined]
        published_at_ms=row.published_at_ms,  # type: ignore[attr-defined]
    )


@dataclass
class _Opened:
    size: int
    root: bytes
    text: str
    note: str
    cosigned_by: tuple[str, ...]


# --- verification ------------------------------------------------------------------------------


def verify_log(
    source: LogSource,
    trust: Trust,
    *,
    known_checkpoints: Sequence[str] = (),
    progress: Progress | None = None,
    grace_ms: int = DEFAULT_GRACE_MS,
    require_quorum: bool = False,
    workers: int = 2,
) -> VerifyReport:
    """Verify the log served by ``source`` against ``trust`` (see the module docstring)."""
    report = VerifyReport()
    opened = _open_checkpoints(source, trust, known_checkpoints, report)
    if not opened:
        report.add("error", "no_checkpoint", "no validly signed checkpoint to verify against")
        return report
    target = max(opened)
    report.tree_size = target
    check = _EntryCheck(trust, opened, target, report, grace_ms)
    check.run(source, progress, workers)
    complete = len(check.leaf_hashes) == target * 32
    if check.mismatched and complete:
        size, bad_root = check.mismatched[0]
        _locate_divergence(source, check.leaf_hashes, size, bad_root, report)
    if report.ok and complete:
        _spot_check_proofs(source, check.leaf_hashes, opened, target, report)
    _check_cosignatures(opened[target], trust, report, require_quorum)
    report.root = opened[target][0].root
    return report


def _open_checkpoints(
    source: LogSource, trust: Trust, known: Sequence[str], report: VerifyReport
) -> dict[int, list[_Opened]]:
    served: list[tuple[str, str]] = []
    try:
        latest = source.checkpoint()
        served.append(("latest", latest.note))
    except errors.NotFoundError:
        pass
    served += [("stored", cp.note) for cp in source.iter_checkpoints()]
    served += [("known", n) for n in known]
    opened: dict[int, list[_Opened]] = {}
    seen_notes: set[str] = set()
    for origin_of, text in served:
        if text in seen_notes:
            continue
        seen_notes.add(text)
        report.checkpoints_checked += 1
        try:
            cp, verified = note.open_checkpoint(text, [trust.log_verifier])
        except (errors.NoteSignatureError, errors.MalformedError, errors.LimitExceededError) as exc:
            size = _claimed_size(text)
            report.add(
                "error",
                "invalid_checkpoint_signature",
                f"a {origin_of} checkpoint{f' of size {size}' if size is not None else ''} "
                f"is not validly signed by the log key ({exc.code})",
            )
            continue
        if trust.origin and cp.origin != trust.origin:
            report.add("error", "wrong_origin", f"a {origin_of} checkpoint names another log")
            continue
        cosigned: list[str] = []
        for sig in verified.unverified:
            witness = trust.witnesses.get(sig.name)
            if witness is None or witness.key_id != sig.key_id:
                continue
            try:
                witness.verify_cosignature(sig, verified.text)
                cosigned.append(sig.name)
            except errors.CdxError:
                report.add(
                    "error",
                    "invalid_cosignature",
                    f"the cosignature of {sig.name} on checkpoint {cp.size} does not verify",
                )
        entry = _Opened(cp.size, cp.root_hash, verified.text, text, tuple(sorted(cosigned)))
        same = opened.setdefault(cp.size, [])
        if any(o.root != entry.root for o in same):
            report.add(
                "error",
                "forked_checkpoints",
                f"two validly signed checkpoints of size {cp.size} have different roots",
            )
        if all(o.root != entry.root for o in same):
            same.append(entry)
        else:  # keep the one with the most cosignatures
            for i, o in enumerate(same):
                if o.root == entry.root and len(entry.cosigned_by) > len(o.cosigned_by):
                    same[i] = entry
    return opened


def _claimed_size(text: str) -> int | None:
    try:
        return note.Checkpoint.parse(note.parse_note(text).text).size
    except errors.CdxError:
        return None


@dataclass(frozen=True, slots=True)
class _Side:
    index: int
    record_id: str
    role: int
    decision: int
    time_ms: int


class _Inline:
    """An executor that runs the work at once (small logs: no worker start-up cost)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def submit(self, fn: Callable[..., list[_Checked]], *args: object) -> Future[list[_Checked]]:
        future: Future[list[_Checked]] = Future()
        future.set_result(fn(*args))
        return future


def _executor(workers: int, size: int) -> Any:
    """Worker processes for the signature checks of a large log (they are CPU-bound and hold
    the GIL), inline work for a small one."""
    if workers <= 1 or size < _PROCESS_THRESHOLD:
        return _Inline()
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


class _EntryCheck:
    """Streams the entries: tree roots at every checkpoint, signatures, ids, message pairs."""

    def __init__(
        self,
        trust: Trust,
        opened: dict[int, list[_Opened]],
        target: int,
        report: VerifyReport,
        grace_ms: int,
    ) -> None:
        self.trust = trust
        self.opened = opened
        self.target = target
        self.report = report
        self.grace_ms = grace_ms
        self.leaf_hashes = bytearray()
        self.mismatched: list[tuple[int, bytes]] = []
        self.seen_ids: dict[str, int] = {}
        self.messages: dict[str, list[_Side]] = {}
        self.newest_ms = 0

    def run(self, source: LogSource, progress: Progress | None, workers: int) -> None:
        report = self.report
        for cp in self.opened.get(0, []):
            if cp.root != merkle.EMPTY_ROOT:
                report.add("error", "checkpoint_root_mismatch", "checkpoint 0 has a non-empty root")
        sizes = sorted(s for s in self.opened if s > 0)
        next_size = 0
        stream = merkle.Accumulator()
        expected = 0
        chunk: list[tuple[int, bytes]] = []
        in_flight: deque[Future[list[_Checked]]] = deque()
        keys = {name: crypto.public_key_to_der(key) for name, key in self.trust.record_keys.items()}
        with _executor(workers, self.target) as pool:
            for index, leaf in _leaves(source, self.target):
                if index != expected:
                    report.add(
                        "error", "entries_out_of_order", "the log served entries out of order"
                    )
                    break
                h = merkle.leaf_hash(leaf)
                self.leaf_hashes += h
                stream.add(h)
                expected += 1
                while next_size < len(sizes) and sizes[next_size] <= expected:
                    if sizes[next_size] == expected:
                        self._compare_roots(expected, stream.root())
                    next_size += 1
                chunk.append((index, leaf))
                if len(chunk) >= _SIGNATURE_CHUNK:
                    in_flight.append(pool.submit(_verify_chunk, chunk, keys))
                    chunk = []
                    # Bounded memory: only a few chunks in flight.
                    while len(in_flight) > 2 * max(1, workers):
                        self._collect(in_flight.popleft().result())
                if progress is not None and expected % 1000 == 0:
                    progress(expected, self.target)
            if chunk:
                in_flight.append(pool.submit(_verify_chunk, chunk, keys))
            while in_flight:
                self._collect(in_flight.popleft().result())
        report.entries_checked = expected
        if progress is not None:
            progress(expected, self.target)
        if expected < self.target:
            report.add(
                "error",
                "log_truncated",
                f"a signed checkpoint covers {self.target} entries but the log serves only "
                f"{expected}",
            )
        _pair(self.messages, self.newest_ms, self.grace_ms, report)

    def _compare_roots(self, size: int, root: bytes) -> None:
        for cp in self.opened[size]:
            if cp.root != root:
                self.mismatched.append((size, cp.root))
                self.report.add(
                    "error",
                    "checkpoint_root_mismatch",
                    f"the entries do not hash to the root of checkpoint {size}",
                )

    def _collect(self, results: list[_Checked]) -> None:
        report = self.report
        for index, record, problem in results:
            report.signatures_checked += 1
            if problem is not None:
                report.add(
                    "error",
                    problem[0],
                    problem[1],
                    index=index,
                    record_id=record.record_id if record is not None else "",
                )
                continue
            assert record is not None
            first = self.seen_ids.setdefault(record.record_id, index)
            if first != index:
                report.add(
                    "error",
                    "duplicate_record_id",
                    f"the record id also appears at entry {first}",
                    index=index,
                    record_id=record.record_id,
                )
            if record.kind == KIND_LOG_ANCHOR and index != 0:
                report.add(
                    "error",
                    "misplaced_anchor",
                    "a log_anchor entry that is not the log's first entry",
                    index=index,
                    record_id=record.record_id,
                )
            self.newest_ms = max(self.newest_ms, record.time_ms)
            if record.kind == "access" and record.message_id:
                self.messages.setdefault(record.message_id, []).append(
                    _Side(index, record.record_id, record.role, record.decision, record.time_ms)
                )


def _leaves(source: LogSource, end: int) -> Iterator[tuple[int, bytes]]:
    """``(index, leaf bytes)`` up to ``end``: straight from a database source, re-serialized
    (canonically, as hashed) from a gRPC one."""
    raw = getattr(source, "iter_leaves", None)
    if raw is not None:
        yield from raw(0, end)
        return
    for entry in source.iter_entries(0, end):
        yield entry.index, entry.record.SerializeToString(deterministic=True)


@dataclass(frozen=True, slots=True)
class _Summary:
    """What the rest of verification needs from one record (small, cheap to pickle)."""

    record_id: str
    kind: str
    message_id: str
    role: int
    decision: int
    time_ms: int


_Checked = tuple[int, "_Summary | None", "tuple[str, str] | None"]
_worker_keys: dict[bytes, crypto.PublicSigningKey] = {}


def _key_from_der(der: bytes) -> crypto.PublicSigningKey:
    key = _worker_keys.get(der)
    if key is None:
        key = _worker_keys[der] = crypto.as_signing_public_key(crypto.public_key_from_der(der))
    return key


def _summary(record: audit_pb2.AccessRecord) -> _Summary:
    return _Summary(
        record.record_id,
        record.kind or "access",
        record.message_id,
        int(record.role),
        int(record.decision),
        int(record.time_ms),
    )


def _verify_chunk(chunk: Sequence[tuple[int, bytes]], keys: Mapping[str, bytes]) -> list[_Checked]:
    """Check the signatures of serialized ``SignedAccessRecord``s (runs in worker processes).

    ``keys`` maps each recorder to its public key as SPKI DER.
    """
    out: list[_Checked] = []
    for index, leaf in chunk:
        try:
            signed = audit_pb2.SignedAccessRecord.FromString(leaf)
            claimed = records.parse_unverified_record(signed)
        except (errors.CdxError, DecodeError):
            out.append((index, None, ("malformed_record", "the entry is not an access record")))
            continue
        der = keys.get(claimed.recorder)
        if der is None:
            problem = ("unknown_recorder", "the recorder has no key in global configuration")
            out.append((index, _summary(claimed), problem))
            continue
        key = _key_from_der(der)
        try:
            record = records.verify_access_record(signed, key)
        except errors.SignatureError:
            rotated = signed.key_id and signed.key_id != crypto.key_id(key)
            why = (
                "the record was signed by a key the recorder no longer has registered"
                if rotated
                else "the record's signature does not verify: it was altered after signing"
            )
            out.append((index, _summary(claimed), ("invalid_record_signature", why)))
            continue
        except errors.CdxError as exc:
            problem = ("malformed_record", f"the record does not verify ({exc.code})")
            out.append((index, _summary(claimed), problem))
            continue
        if record.recorder == AUDIT_RECORDER and record.kind not in AUDIT_KINDS:
            problem = ("invalid_record_kind", "the log signed an access record")
            out.append((index, _summary(record), problem))
            continue
        if record.recorder == records.CONSENT_RECORDER and record.kind not in records.CONSENT_KINDS:
            problem = ("invalid_record_kind", "the consent service signed an access record")
            out.append((index, _summary(record), problem))
            continue
        out.append((index, _summary(record), None))
    return out


def _pair(
    messages: Mapping[str, list[_Side]], newest_ms: int, grace_ms: int, report: VerifyReport
) -> None:
    for message_id, sides in messages.items():
        roles = {s.role for s in sides}
        if common_pb2.CONSUMER in roles and common_pb2.PROVIDER in roles:
            report.messages_paired += 1
            consumer_allowed = any(
                s.role == common_pb2.CONSUMER and s.decision == common_pb2.ALLOW for s in sides
            )
            provider_denied = any(
                s.role == common_pb2.PROVIDER and s.decision == common_pb2.DENY for s in sides
            )
            if consumer_allowed and provider_denied:
                report.add(
                    "error",
                    "sides_disagree",
                    f"message {message_id}: the consumer recorded ALLOW, the provider DENY",
                    index=sides[0].index,
                    record_id=sides[0].record_id,
                )
            continue
        first = sides[0]
        report.unpaired[message_id] = (first.role, first.record_id)
        side = "consumer" if first.role == common_pb2.CONSUMER else "provider"
        allowed = any(s.decision == common_pb2.ALLOW for s in sides)
        recent = newest_ms - first.time_ms < grace_ms
        severity: Severity
        if allowed and not recent:
            severity = "error"  # data moved and one side did not record it
        elif allowed or first.role == common_pb2.PROVIDER:
            severity = "warning"
        else:
            severity = "info"  # refused by the consumer's server: the provider never saw it
        report.add(
            severity,
            "one_sided_message",
            f"message {message_id} has only a {side} record"
            + (" (recent: the other side may still be in its outbox)" if recent else ""),
            index=first.index,
            record_id=first.record_id,
        )


def _locate_divergence(
    source: LogSource, leaf_hashes: bytearray, size: int, signed_root: bytes, report: VerifyReport
) -> None:
    """Name the first entry whose hash differs from the tree the checkpoint signed."""
    tree = merkle.InMemoryTree(bytes(leaf_hashes[i * 32 : i * 32 + 32]) for i in range(size))
    lo, hi, j = 0, size, 0
    for _ in range(130):
        try:
            proof = source.inclusion_proof(j, size)
        except errors.CdxError as exc:
            report.add(
                "warning",
                "cannot_locate",
                f"the log gave no proof to locate the change ({exc.code})",
            )
            return
        theirs = list(proof.hashes)
        ranges = merkle.inclusion_ranges(j, size)
        if len(theirs) != len(ranges):
            report.add("warning", "cannot_locate", "the log served a malformed proof")
            return
        try:
            merkle.verify_inclusion(bytes(proof.leaf_hash), j, size, theirs, signed_root)
        except errors.ProofError:
            report.add(
                "error",
                "tree_rewritten",
                f"the log's stored tree no longer matches checkpoint {size}: its nodes were "
                "rewritten too",
            )
            return
        candidate = None
        for (a, b), h in zip(reversed(ranges), reversed(theirs)):
            if lo <= a and b <= hi and merkle.range_hash(tree.subtree_hash, a, b) != h:
                candidate = (a, b)
                break
        if candidate is None:
            report.add(
                "error",
                "entry_altered",
                f"this entry differs from the one checkpoint {size} signed",
                index=j,
                record_id=_record_id_at(source, j),
            )
            return
        lo, hi = candidate
        j = lo
    report.add("warning", "cannot_locate", "could not narrow down the altered entry")


def _record_id_at(source: LogSource, index: int) -> str:
    for entry in source.iter_entries(index, index + 1):
        try:
            return records.parse_unverified_record(entry.record).record_id
        except errors.CdxError:
            return ""
    return ""


def _spot_check_proofs(
    source: LogSource,
    leaf_hashes: bytearray,
    opened: dict[int, list[_Opened]],
    target: int,
    report: VerifyReport,
) -> None:
    """Check that the log's proof API agrees with the recomputed tree (a few samples)."""
    if target == 0:
        return
    root = opened[target][0].root
    for index in sorted({0, target // 2, target - 1}):
        try:
            proof = source.inclusion_proof(index, target)
            merkle.verify_inclusion(
                bytes(leaf_hashes[index * 32 : index * 32 + 32]),
                index,
                target,
                list(proof.hashes),
                root,
            )
        except errors.CdxError as exc:
            report.add(
                "error",
                "bad_inclusion_proof",
                f"the log's inclusion proof fails ({exc.code})",
                index=index,
            )
    smallest = min((s for s in opened if 0 < s < target), default=None)
    if smallest is not None:
        try:
            hashes = source.consistency_proof(smallest, target)
            merkle.verify_consistency(smallest, target, hashes, opened[smallest][0].root, root)
        except errors.CdxError as exc:
            report.add(
                "error", "bad_consistency_proof", f"the log's consistency proof fails ({exc.code})"
            )


def _check_cosignatures(
    latest: list[_Opened], trust: Trust, report: VerifyReport, require_quorum: bool
) -> None:
    best = max(latest, key=lambda o: len(o.cosigned_by))
    report.cosigned_by = best.cosigned_by
    if trust.quorum and len(best.cosigned_by) < trust.quorum:
        report.add(
            "error" if require_quorum else "warning",
            "quorum_not_met",
            f"the latest checkpoint has {len(best.cosigned_by)} of the {trust.quorum} "
            "witness cosignatures required",
        )


# --- periods (temporal sharding) ---------------------------------------------------------------


@dataclass
class ChainReport:
    """What ``verify_chain`` found: one report per period, newest first, and the findings about
    the links between them."""

    periods: list[tuple[str, VerifyReport]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for _, r in self.periods) and not any(
            f.severity == "error" for f in self.findings
        )

    def add(self, severity: Severity, code: str, message: str) -> None:
        self.findings.append(Finding(severity, code, message))


@dataclass(frozen=True)
class _Anchor:
    origin: str
    key: note.NoteVerifier
    checkpoint_note: str
    size: int


def verify_chain(
    newest: LogSource,
    trust: Trust,
    previous: Sequence[LogSource] = (),
    *,
    known_checkpoints: Sequence[str] = (),
    progress: Progress | None = None,
    grace_ms: int = DEFAULT_GRACE_MS,
    require_quorum: bool = False,
    workers: int = 2,
) -> ChainReport:
    """Verify a log and, through the ``log_anchor`` entry each period starts with, the logs it
    continues (``previous``: their sources, newest first), each as ``verify_log`` does.

    Each link is checked from the newer side only: the anchor is the newer log's first entry
    (proven in its verified tree, signed by the audit service key), it names the previous
    log's origin and key and carries that log's last checkpoint, which must verify under that
    key, match the previous log's entries (it is verified as a known checkpoint of it), and be
    where that log ends (an entry after it belongs to no period). Exchanges recorded across a
    boundary (one side in each period) are paired across it.
    """
    chain = ChainReport()
    source, current = newest, trust
    known = list(known_checkpoints)
    waiting = list(previous)
    anchored_size: int | None = None
    while True:
        report = verify_log(
            source,
            current,
            known_checkpoints=known,
            progress=progress,
            grace_ms=grace_ms,
            require_quorum=require_quorum,
            workers=workers,
        )
        chain.periods.append((current.origin, report))
        if anchored_size is not None and report.tree_size > anchored_size:
            chain.add(
                "error",
                "entries_after_anchor",
                f"{current.origin} has {report.tree_size - anchored_size} entries after the "
                f"checkpoint of size {anchored_size} the next period anchored: they are in no "
                "period of the chain",
            )
        anchor = _anchor_of(source, current, report, chain)
        if anchor is None:
            break
        if not waiting:
            chain.add(
                "warning",
                "previous_log_not_checked",
                f"{current.origin} continues {anchor.origin} (size {anchor.size}): give that "
                "log's tiles or database to verify it too",
            )
            break
        source = waiting.pop(0)
        current = Trust(
            log_verifier=anchor.key,
            origin=anchor.origin,
            record_keys=trust.record_keys,
            witnesses=trust.witnesses,
            quorum=trust.quorum,
        )
        known = [anchor.checkpoint_note]
        anchored_size = anchor.size
    if waiting:
        chain.add(
            "warning",
            "unused_previous_log",
            f"{len(waiting)} previous log(s) given but not reached: the chain ended before",
        )
    _pair_across(chain)
    return chain


def _anchor_of(
    source: LogSource, trust: Trust, report: VerifyReport, chain: ChainReport
) -> _Anchor | None:
    """The anchor this log starts with, checked against the root of its newest signed
    checkpoint (``None``: it starts no chain, or the link is broken)."""
    if report.tree_size == 0 or not report.root:
        return None
    first = next(iter(_leaves(source, 1)), None)
    if first is None:
        return None
    leaf = first[1]
    try:
        signed = audit_pb2.SignedAccessRecord.FromString(leaf)
        claimed = records.parse_unverified_record(signed)
    except (errors.CdxError, DecodeError):
        return None  # verify_log reported it
    if claimed.kind != KIND_LOG_ANCHOR:
        return None
    try:  # the entry read now is the one the verified tree holds
        proof = source.inclusion_proof(0, report.tree_size)
        merkle.verify_inclusion(
            merkle.leaf_hash(leaf), 0, report.tree_size, list(proof.hashes), report.root
        )
        service_key = trust.record_keys.get(AUDIT_RECORDER)
        if service_key is None:
            raise errors.UnknownKeyError("no audit service key to check the anchor with")
        record = records.verify_access_record(signed, service_key)
        if record.recorder != AUDIT_RECORDER or not record.previous_log_key:
            raise errors.VerificationError("the anchor is not the log's own, or names no key")
        key = note.NoteVerifier.from_key_text(record.previous_log_key)
        opened = notes.open_log_checkpoint(record.note, key, record.client)
    except errors.CdxError as exc:
        chain.add(
            "error",
            "invalid_anchor",
            f"the first entry of {trust.origin} does not anchor a previous log ({exc.code})",
        )
        return None
    return _Anchor(record.client, key, record.note, opened.size)


def _pair_across(chain: ChainReport) -> None:
    """An exchange whose consumer and provider records fell into two adjacent periods is
    paired, not one-sided."""
    for (_, newer), (_, older) in zip(chain.periods, chain.periods[1:]):
        for message_id, (role, record_id) in list(newer.unpaired.items()):
            other = older.unpaired.get(message_id)
            if other is None or other[0] == role:
                continue
            for report, rid in ((newer, record_id), (older, other[1])):
                report.findings = [
                    f
                    for f in report.findings
                    if not (f.code == "one_sided_message" and f.record_id == rid)
                ]
                report.unpaired.pop(message_id, None)
            newer.messages_paired += 1
