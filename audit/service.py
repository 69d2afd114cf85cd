"""The audit log's use cases: append, proofs, checkpoints, cosignatures, search, unseal, history.

Rules (DESIGN §8):

- **append**: only a security server appends, and only records it made: each record's
  ``recorder`` must be the calling server, its signature must verify under that server's signing
  key in global configuration (verify first, parse second), and its opening must open the
  record's subject commitment. Append is idempotent on record id. A failing item gets its own
  error code; the other items of the batch are appended.
- the **consent service** (``urn:cdx:service:consent``) appends only ``consent_event`` and
  ``subject_request`` records it made, signed with the ``consent_service_key`` of global
  configuration, with the opening of the citizen's commitment (so the citizen sees their
  consent changes and the steps of their requests);
- the log appends its **own** records (inspector queries, unseals), signed by the audit
  service key that global configuration anchors (``audit_service_key``), recorder
  ``urn:cdx:service:audit``;
- **inspector search**: every query is appended to the log *before* its results are returned;
  a search by subject needs a stated reason, and its entry is indexed under that subject so the
  citizen sees that an inspector looked;
- **representatives**: a legal representative's read of the represented person's history
  (allowed by the consent service, ``audit.servicer``) is appended first, as the log's own
  ``representative_access`` entry about the represented person (actor
  ``representative:<kind>``), so they see who looked;
- **citizen history**: the caller's own entries only (their subject index), newest first and
  paged with a cursor, with openings and inclusion proofs against the newest checkpoint that
  has the witness quorum (entries after it come without a proof: not yet verifiable, never
  "verified" one moment and not the next); SEALED entries stay hidden until an inspector
  unseals them (itself a new entry, shown to the citizen), filtered in the query so that any
  number of sealed entries cannot push the visible ones out of a page;
- **refusals**: every item the log refuses for good is kept (recorder, record id, code, time;
  never the record), and inspectors can list them (each listing is logged like a search).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import uuid6

from audit import fields, notes
from audit import keys as audit_keys
from audit.keys import KeyRing
from audit.sequencer import PreparedEntry, Sequenced, Sequencer
from audit.store import AuditStore, CheckpointRow, EntryRow, RefusedRow, SearchFilter
from cdx import clock as cdx_clock
from cdx import crypto, errors, merkle, note, records, telemetry
from cdx.globalconf import VerifiedGlobalConf, to_ms
from cdx.ids import CitizenId
from cdx.representation import RepresentationGrant, public_actor
from cdx.v1 import audit_pb2, common_pb2

log = logging.getLogger(__name__)

#: ``recorder`` of the entries the log makes itself.
AUDIT_RECORDER = "urn:cdx:service:audit"
#: ``recorder`` of consent lifecycle events (the consent service's certificate URI).
CONSENT_RECORDER = records.CONSENT_RECORDER
#: Entry kinds a security server may append; the others are the log's own or the consent
#: service's (``consent_event``, ``subject_request``, under ``consent_service_key``).
SERVER_KINDS = frozenset({"access"})
CONSENT_KINDS = records.CONSENT_KINDS
KIND_INSPECTOR_QUERY = "inspector_query"
KIND_UNSEAL = "unseal"
#: The first entry of a log that continues another (temporal sharding): the other log's last
#: checkpoint, signed (and cosigned) as it was, in the record's note.
KIND_LOG_ANCHOR = "log_anchor"
#: A legal representative read the represented person's history (docs/adr/0018).
KIND_REPRESENTATIVE_ACCESS = "representative_access"
#: Kinds of the log's own entries (signed by the audit service key).
AUDIT_KINDS = frozenset(
    {KIND_INSPECTOR_QUERY, KIND_UNSEAL, KIND_LOG_ANCHOR, KIND_REPRESENTATIVE_ACCESS}
)

MAX_BATCH_ITEMS = 1000
MAX_ENTRIES_PER_READ = 1000
MAX_SEARCH_HITS = 1000
MAX_HISTORY = 500
MAX_CHECKPOINTS_PER_READ = 1000
MAX_REFUSED_PER_READ = 1000
#: How long (seconds) the newest checkpoint is served from memory; another process publishing
#: is seen within this time (checkpoints come every 1-5 s).
CHECKPOINT_CACHE_S = 0.5
MAX_REASON_CHARS = 500
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LIMITS = {
    "record_id": 64,
    "message_id": 64,
    "client": 300,
    "service": 400,
    "purpose": 100,
    "reason_code": 100,
    "recorder": 300,
    "kind": 32,
}


@dataclass(frozen=True, slots=True)
class AppendOutcome:
    """One append result: ``index`` when sequenced, else ``error_code``."""

    record_id: str
    index: int = 0
    duplicate: bool = False
    error_code: str = ""


@dataclass(frozen=True, slots=True)
class Proof:
    """An inclusion proof of one leaf in the tree of ``tree_size`` leaves."""

    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """An inspector's query; ``subject`` needs a ``reason``."""

    client: str = ""
    service: str = ""
    purpose: str = ""
    decision: int = 0
    from_ms: int = 0
    until_ms: int = 0
    subject: CitizenId | None = field(default=None, repr=False)
    reason: str = ""
    one_sided_only: bool = False
    limit: int = 100
    recorder: str = ""
    message_id: str = ""
    after_index: int = -1
    kind: str = ""


@dataclass(frozen=True, slots=True)
class SearchHit:
    entry: EntryRow
    record: audit_pb2.AccessRecord
    sealed: bool


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A citizen's entry: the record, its opening (``None`` once shredded) and its proof
    (``None`` while no checkpoint with the witness quorum covers it)."""

    entry: EntryRow
    record: audit_pb2.AccessRecord
    opening: audit_pb2.RecordOpening | None
    proof: Proof | None
    unsealed: bool


@dataclass(slots=True)
class PreparedBatch:
    """A batch checked and built, waiting for its commit (``prepare_append``)."""

    caller: str
    now_ms: int
    outcomes: list[AppendOutcome | None]
    entries: list[PreparedEntry] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CitizenPage:
    """One page of a citizen's history; ``next_before_index`` is the cursor of the next (older)
    page, 0 when there is none."""

    entries: list[HistoryEntry]
    checkpoint: CheckpointRow | None
    next_before_index: int


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _column(value: str, name: str) -> str:
    """The search-column copy of a record field: control characters (PostgreSQL text cannot
    even hold NUL) replaced and the length capped. A provider records what a possibly hostile
    peer claimed, and refusing its record would stall that provider's outbox; the leaf keeps
    the exact signed bytes, so nothing is lost."""
    if value.isascii() and value.isprintable():  # the usual case: nothing to replace
        return value[: _LIMITS[name]]
    return _CONTROL.sub("\ufffd", value)[: _LIMITS[name]]


def _text(value: str, name: str, limit: int) -> str:
    if len(value) > limit:
        raise errors.LimitExceededError(f"{name} is longer than {limit} characters")
    return value


def _query_text(value: str, name: str, limit: int) -> str:
    """``_text`` for what callers search or look up by."""
    if "\x00" in value:  # PostgreSQL text cannot hold a NUL; SQLite would end a pattern there
        raise errors.InvalidArgumentError(f"{name} contains a NUL character")
    return _text(value, name, limit)


#: Tree indexes and sizes are uint64 on the wire but BIGINT (signed) in SQL.
_MAX_SQL_INT = 2**63 - 1


class AuditService:
    """The audit log's behaviour over a store, a sequencer and the keys of the openings."""

    def __init__(
        self,
        audit_store: AuditStore,
        sequencer: Sequencer,
        keyring: KeyRing,
        conf: Callable[[], VerifiedGlobalConf],
        record_signer: crypto.Signer,
        *,
        clock: cdx_clock.Clock = cdx_clock.utcnow,
    ) -> None:
        self.store = audit_store
        self.sequencer = sequencer
        self.keyring = keyring
        self._conf = conf
        self._signer = record_signer
        self._clock = clock
        # GetCheckpoint is the hottest read: the newest checkpoint (per quorum) is kept for a
        # fraction of a second, and dropped at once when this process publishes or cosigns.
        self._checkpoints: dict[int, tuple[float, CheckpointRow]] = {}
        self._parsed_keys: dict[bytes, crypto.PublicSigningKey] = {}

    def conf(self) -> VerifiedGlobalConf:
        """The current global configuration, refused once expired (fail closed).

        Raises:
            ConfExpiredError: the configuration has expired.
        """
        conf = self._conf()
        conf.check_fresh(self._clock())
        return conf

    # --- append -------------------------------------------------------------------------------

    def append(
        self, caller_server: str, items: Sequence[audit_pb2.OutboxItem]
    ) -> list[AppendOutcome]:
        """Append records made by ``caller_server``; one outcome per item, in order.

        Raises:
            LimitExceededError: more than ``MAX_BATCH_ITEMS`` items.
            ConfExpiredError: global configuration expired.
            UnavailableError: the log could not commit (retry: appends are idempotent).
        """
        batch = self.prepare_append(caller_server, items)
        with telemetry.stage("audit.append", server=caller_server) as stage:
            stage.set("records", len(batch.entries))
            sequenced = self.sequencer.append(batch.entries)
        return self.finish_append(batch, sequenced)

    def signing_key_of(self, caller_server: str, conf: VerifiedGlobalConf) -> bytes:
        """The SPKI DER of the key ``caller_server``'s records must be signed with.

        Raises:
            UnknownKeyError: the caller has none in global configuration.
        """
        if caller_server == CONSENT_RECORDER:
            if not conf.consent_service_key_der:
                raise errors.UnknownKeyError("global configuration names no consent service key")
            return conf.consent_service_key_der
        server = conf.servers.get(caller_server)
        if server is None:
            raise errors.UnknownKeyError("the recorder is not a registered security server")
        return crypto.public_key_to_der(server.signing_public_key)

    def verifying_key_of(
        self, caller_server: str, conf: VerifiedGlobalConf
    ) -> crypto.PublicSigningKey:
        """The key ``caller_server``'s records must verify under, as a key object (parsed once
        per key, not once per record).

        Raises:
            UnknownKeyError: the caller has none in global configuration.
        """
        if caller_server != CONSENT_RECORDER:
            server = conf.servers.get(caller_server)
            if server is None:
                raise errors.UnknownKeyError("the recorder is not a registered security server")
            return server.signing_public_key  # parsed once per configuration
        der = self.signing_key_of(caller_server, conf)
        cached = self._parsed_keys.get(der)
        if cached is None:
            cached = crypto.as_signing_public_key(crypto.public_key_from_der(der))
            self._parsed_keys = {der: cached}
        return cached

    def prepare_append(
        self,
        caller_server: str,
        items: Sequence[audit_pb2.OutboxItem],
        *,
        signature_codes: Sequence[str | None] | None = None,
    ) -> PreparedBatch:
        """Check every item and build what the sequencer writes (the request's CPU work).

        ``signature_codes``, when given, are the outcomes of an earlier check of each item's
        record signature (``records.check_signatures`` in worker processes): ``None`` for a
        valid one, else the refusal code; the rest of the checks run here.

        Raises:
            LimitExceededError: more than ``MAX_BATCH_ITEMS`` items.
            ConfExpiredError: global configuration expired.
        """
        if len(items) > MAX_BATCH_ITEMS:
            raise errors.LimitExceededError(f"at most {MAX_BATCH_ITEMS} items per batch")
        started = time.perf_counter()
        conf = self.conf()
        now_ms = to_ms(self._clock())
        batch = PreparedBatch(caller_server, now_ms, [None] * len(items))
        for i, item in enumerate(items):
            try:
                code = signature_codes[i] if signature_codes is not None else None
                if code:
                    raise errors.class_for_code(code)()
                checked = signature_codes is not None
                batch.entries.append(self._prepare(item, caller_server, conf, now_ms, checked))
                batch.positions.append(i)
            except errors.CdxError as exc:
                rid = _claimed_record_id(item)
                log.info("refused access record from %s: %s", caller_server, exc.code)
                batch.outcomes[i] = AppendOutcome(rid, error_code=exc.code)
        telemetry.mark("audit.verify", started)  # record signatures of the batch checked
        return batch

    def finish_append(
        self, batch: PreparedBatch, sequenced: Sequence[Sequenced]
    ) -> list[AppendOutcome]:
        """One outcome per item of a committed batch; refusals are kept for inspectors."""
        for pos, result in zip(batch.positions, sequenced):
            batch.outcomes[pos] = _outcome(result)
        done = [o for o in batch.outcomes if o is not None]
        refused = [
            (batch.caller, _kept_id(o.record_id), o.error_code) for o in done if o.error_code
        ]
        if refused:
            self.store.insert_refused(refused, batch.now_ms)
        return done

    def seal_openings(self, entries: Sequence[PreparedEntry]) -> None:
        """Encrypt the openings of entries about to be committed under their epoch's key and
        index them under the subject (the sequencer calls this, off the request path); an
        entry of a shredded epoch keeps its record only."""
        now_ms = to_ms(self._clock())
        for e in entries:
            opening = e.opening
            if opening is None or e.sealed_opening is not None:
                continue
            key = self.keyring.epoch_key_for_writing(e.epoch, now_ms)
            if key is not None:
                e.sealed_opening = audit_keys.seal_opening(key, opening)
                e.subject_mac = self.keyring.subject_mac(opening.subject, now_ms)
            e.opening = None

    def _prepare(
        self,
        item: audit_pb2.OutboxItem,
        caller_server: str,
        conf: VerifiedGlobalConf,
        now_ms: int,
        signature_checked: bool = False,
    ) -> PreparedEntry:
        claimed = records.parse_unverified_record(item.record)
        if claimed.recorder != caller_server:
            raise errors.PermissionDeniedError("a server appends only records it made")
        allowed = CONSENT_KINDS if caller_server == CONSENT_RECORDER else SERVER_KINDS
        if signature_checked:  # in a worker process, against the same key
            record = claimed
        else:
            key = self.verifying_key_of(caller_server, conf)
            record = records.verify_access_record(item.record, key)
        if record.recorder != caller_server:  # pragma: no cover - the same bytes as above
            raise errors.PermissionDeniedError("a server appends only records it made")
        kind = record.kind or "access"
        if kind not in allowed:
            raise errors.PermissionDeniedError("this entry kind is not this recorder's")
        return self._prepared(
            item.record, record, item.opening if item.HasField("opening") else None, now_ms
        )

    def _prepared(
        self,
        signed: audit_pb2.SignedAccessRecord,
        record: audit_pb2.AccessRecord,
        opening: audit_pb2.RecordOpening | None,
        now_ms: int,
        *,
        unseal_target: str | None = None,
        copy_subjects_from: int | None = None,
    ) -> PreparedEntry:
        if not record.record_id:
            raise errors.MalformedError("the record has no record id")
        if len(record.record_id) > _LIMITS["record_id"] or _CONTROL.search(record.record_id):
            raise errors.MalformedError("the record id is not a well-formed identifier")
        if record.time_ms <= 0:
            raise errors.MalformedError("the record has no time")
        fields.check_names(record)
        epoch = audit_keys.epoch_of(record.time_ms)
        plain = None
        if opening is not None and (opening.subject or opening.subject_salt):
            if opening.record_id != record.record_id:
                raise errors.VerificationError("the opening belongs to another record")
            try:
                CitizenId(opening.subject)
                opens = crypto.constant_time_equal(
                    crypto.commitment(opening.subject_salt, opening.subject.encode()),
                    record.subject_commitment,
                )
            except errors.CdxError as exc:
                raise errors.VerificationError("the opening does not open the record") from exc
            if not opens:
                raise errors.VerificationError("the opening does not open the record")
            plain = opening  # sealed by ``seal_openings`` when the sequencer commits it
        leaf = signed.SerializeToString(deterministic=True)
        return PreparedEntry(
            record_id=record.record_id,
            leaf=leaf,
            leaf_hash=merkle.leaf_hash(leaf),
            recorder=_column(record.recorder, "recorder"),
            role=int(record.role),
            client=_column(record.client, "client"),
            service=_column(record.service, "service"),
            purpose=_column(record.purpose, "purpose"),
            decision=int(record.decision),
            reason=_column(record.reason_code, "reason_code"),
            time_ms=record.time_ms,
            message_id=_column(record.message_id, "message_id"),
            visibility=int(record.visibility) or common_pb2.NORMAL,
            kind=_column(record.kind or "access", "kind"),
            epoch=epoch,
            opening=plain,
            unseal_target=unseal_target,
            copy_subjects_from=copy_subjects_from,
        )

    def _append_own(
        self,
        record: audit_pb2.AccessRecord,
        opening: audit_pb2.RecordOpening | None = None,
        *,
        unseal_target: str | None = None,
        copy_subjects_from: int | None = None,
    ) -> Sequenced:
        signed = records.sign_access_record(record, self._signer)
        entry = self._prepared(
            signed,
            record,
            opening,
            to_ms(self._clock()),
            unseal_target=unseal_target,
            copy_subjects_from=copy_subjects_from,
        )
        (result,) = self.sequencer.append([entry])
        if result.error_code:
            raise errors.InternalError("the log refused its own record")
        return result

    # --- public reads -------------------------------------------------------------------------

    def checkpoint(self, min_cosignatures: int = 0) -> CheckpointRow:
        """The newest checkpoint (with at least ``min_cosignatures`` cosignatures).

        Raises:
            NotFoundError: none published yet (or none with enough cosignatures).
        """
        now = time.monotonic()
        cached = self._checkpoints.get(min_cosignatures)
        if cached is not None and now - cached[0] < CHECKPOINT_CACHE_S:
            row: CheckpointRow | None = cached[1]
        else:
            witnesses = self._registered_witnesses() if min_cosignatures else None
            row = self.store.latest_checkpoint(min_cosignatures, witnesses)
            if row is not None:
                self._checkpoints[min_cosignatures] = (now, row)
        if row is None:
            raise errors.NotFoundError("no checkpoint has been published yet")
        return row

    def forget_checkpoints(self) -> None:
        """Drop the cached checkpoints (this process signed one or stored a cosignature)."""
        self._checkpoints.clear()

    def _registered_witnesses(self) -> set[str]:
        """The witnesses whose cosignatures count: security servers with a witness key (other
        witnesses' lines are stored and served too, but do not make a quorum)."""
        return set(notes.witness_verifiers(self.conf()))

    def inclusion_proof(self, index: int, tree_size: int = 0, record_id: str = "") -> Proof:
        """Inclusion proof of entry ``index`` (or of ``record_id``) in a tree size
        (0 = the latest checkpoint).

        Raises:
            NotFoundError: unknown record id, or no checkpoint yet.
            InvalidArgumentError: index not in the tree, or size beyond the committed tree.
        """
        if record_id:
            found = self.store.find_record(_query_text(record_id, "record_id", 64))
            if found is None:
                raise errors.NotFoundError("no entry holds this record id")
            index = found.idx
        size = tree_size or self.checkpoint().size
        if index >= size:
            raise errors.InvalidArgumentError("the entry is not in this tree size yet")
        leaf_hash, hashes = self.store.inclusion_proof(index, size)
        return Proof(index, size, leaf_hash, tuple(hashes))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """Consistency proof between two tree sizes.

        Raises:
            InvalidArgumentError: ``size1 > size2`` or ``size2`` beyond the committed tree.
        """
        return self.store.consistency_proof(size1, size2)

    def entries(self, start: int, end: int) -> list[EntryRow]:
        """Entries ``[start, end)``, at most ``MAX_ENTRIES_PER_READ`` (fewer at the tree's end).

        Raises:
            InvalidArgumentError: ``end < start``.
        """
        if end < start:
            raise errors.InvalidArgumentError("end must not be below start")
        if start >= _MAX_SQL_INT:
            return []
        return self.store.entries(start, min(end, start + MAX_ENTRIES_PER_READ, _MAX_SQL_INT))

    def list_checkpoints(self, after_size: int, limit: int) -> list[CheckpointRow]:
        """Checkpoints with a size above ``after_size`` (-1 = all), oldest first."""
        if after_size >= _MAX_SQL_INT:
            return []
        return self.store.list_checkpoints(after_size, min(limit or 100, MAX_CHECKPOINTS_PER_READ))

    # --- witnesses ----------------------------------------------------------------------------

    def add_cosignature(
        self, caller_server: str, checkpoint_text: str, line: str, witness: str
    ) -> int:
        """Store a witness's cosignature of a published checkpoint; returns its size.

        Raises:
            PermissionDeniedError: a server cosigns only as itself.
            UnknownKeyError: the server has no witness key in global configuration.
            NotFoundError: the log published no such checkpoint.
            NoteFormatError / NoteSignatureError: a malformed or invalid cosignature.
        """
        if witness != caller_server:
            raise errors.PermissionDeniedError("a server cosigns only as itself")
        verifier = notes.witness_verifiers(self.conf()).get(witness)
        if verifier is None:
            raise errors.UnknownKeyError("the server has no witness key in global configuration")
        cp = note.Checkpoint.parse(checkpoint_text)
        row = self.store.checkpoint_at(cp.size)
        if row is None or row.root != cp.root_hash or notes.body_of(row.note) != checkpoint_text:
            raise errors.NotFoundError("the log published no such checkpoint")
        sig = note.NoteSignature.parse_line(line)
        timestamp = verifier.verify_cosignature(sig, checkpoint_text)
        self.store.insert_cosignature(
            cp.size, witness, sig.to_line(), timestamp, to_ms(self._clock())
        )
        self.forget_checkpoints()
        return cp.size

    # --- inspectors ---------------------------------------------------------------------------

    def _base_record(self, kind: str, inspector: str, reason: str) -> audit_pb2.AccessRecord:
        return audit_pb2.AccessRecord(
            record_id=str(uuid6.uuid7()),
            time_ms=to_ms(self._clock()),
            recorder=AUDIT_RECORDER,
            role=common_pb2.ROLE_UNSPECIFIED,
            decision=common_pb2.ALLOW,
            reason_code="ok",
            visibility=common_pb2.NORMAL,
            kind=kind,
            note=reason,
            actor=inspector,
        )

    def inspector_pseudonym(self, issuer: str, principal: str) -> str:
        """How an inspector who signed in with a token is named in the log: the issuer and a
        keyed hash of the token subject (which may be a national id)."""
        mac = self.keyring.subject_mac(f"inspector\n{issuer}\n{principal}", to_ms(self._clock()))
        return f"token:{mac[:12].hex()}"

    def search(self, inspector: str, query: SearchQuery) -> tuple[list[SearchHit], str]:
        """Run an inspector's query, after appending the entry that records it.

        Returns the hits and the record id of the query's own entry.

        Raises:
            ReasonRequiredError: a subject search without a reason.
            LimitExceededError: an over-long field.
        """
        reason = _query_text(query.reason, "reason", MAX_REASON_CHARS)
        try:
            reason = fields.check_reason(reason, required=query.subject is not None)
        except errors.ReasonRequiredError:
            log.warning("refused a subject search by %s: no readable reason", inspector)
            raise
        record = self._base_record(KIND_INSPECTOR_QUERY, inspector, reason)
        record.client = _query_text(query.client, "client", 300)
        record.service = _query_text(query.service, "service", 400)
        record.purpose = _query_text(query.purpose, "purpose", 100)
        opening = None
        now_ms = to_ms(self._clock())
        if query.subject is not None:
            salt = crypto.new_salt()
            record.subject_commitment = crypto.commitment(salt, query.subject.value.encode())
            opening = audit_pb2.RecordOpening(
                record_id=record.record_id, subject=query.subject.value, subject_salt=salt
            )
        logged = self._append_own(record, opening)
        f = SearchFilter(
            client=query.client,
            service=query.service,
            purpose=query.purpose,
            decision=query.decision,
            from_ms=query.from_ms,
            until_ms=query.until_ms,
            subject_mac=(
                self.keyring.subject_mac(query.subject.value, now_ms)
                if query.subject is not None
                else None
            ),
            recorder=_query_text(query.recorder, "recorder", 300),
            message_id=_query_text(query.message_id, "message_id", 64),
            kind=_query_text(query.kind, "kind", 40),
            one_sided_only=query.one_sided_only,
            after_index=min(query.after_index, _MAX_SQL_INT),
            limit=max(1, min(query.limit or 100, MAX_SEARCH_HITS)),
        )
        rows = self.store.search(f)
        sealed_ids = [r.record_id for r in rows if r.visibility == common_pb2.SEALED]
        unsealed = self.store.unsealed(sealed_ids) if sealed_ids else set()
        hits = [
            SearchHit(
                r,
                _decoded(r),
                r.visibility == common_pb2.SEALED and r.record_id not in unsealed,
            )
            for r in rows
        ]
        log.info("inspector query logged as entry %d (%d hits)", logged.index, len(hits))
        return hits, logged.record_id

    def unseal(self, inspector: str, record_id: str, reason: str) -> Sequenced:
        """Make a SEALED entry visible to its citizen; the unseal is itself an entry.

        Raises:
            ReasonRequiredError: no reason given.
            NotFoundError: no such record.
            FailedPreconditionError: the record is not sealed, or already unsealed.
        """
        reason = _query_text(reason, "reason", MAX_REASON_CHARS)
        try:
            reason = fields.check_reason(reason, required=True)
        except errors.ReasonRequiredError:
            log.warning("refused an unseal by %s: no readable reason", inspector)
            raise
        target = self.store.find_record(_query_text(record_id, "record_id", 64))
        if target is None:
            raise errors.NotFoundError("no entry holds this record id")
        if target.visibility != common_pb2.SEALED:
            raise errors.FailedPreconditionError("the entry is not sealed")
        if self.store.unsealed([record_id]):
            raise errors.FailedPreconditionError("the entry is already unsealed")
        record = self._base_record(KIND_UNSEAL, inspector, reason)
        record.target_record_id = record_id
        record.client = target.client
        record.service = target.service
        record.purpose = target.purpose
        return self._append_own(record, unseal_target=record_id, copy_subjects_from=target.idx)

    # --- citizens -----------------------------------------------------------------------------

    def record_representative_access(self, grant: RepresentationGrant) -> Sequenced:
        """Append the entry that says a legal representative read ``grant.represented``'s
        history: indexed under the represented person (with its opening), the actor the kind
        of relation only (``representative:<kind>``; never a national id or the relation id).
        """
        record = self._base_record(KIND_REPRESENTATIVE_ACCESS, public_actor(grant.actor), "history")
        salt = crypto.new_salt()
        subject = grant.represented.value
        record.subject_commitment = crypto.commitment(salt, subject.encode())
        opening = audit_pb2.RecordOpening(
            record_id=record.record_id, subject=subject, subject_salt=salt
        )
        return self._append_own(record, opening)

    def citizen_history(
        self, subject: CitizenId, limit: int = 100, before_index: int = 0
    ) -> CitizenPage:
        """The caller's own entries, newest first: at most ``limit``, with an index below
        ``before_index`` when it is not 0 (the cursor of the previous page), covered by the
        latest checkpoint; SEALED entries only once unsealed. Each comes with its opening and,
        when the newest checkpoint with the witness quorum covers it, an inclusion proof in
        that checkpoint (the one returned)."""
        latest = self.store.latest_checkpoint()
        if latest is None or latest.size == 0:
            return CitizenPage([], latest, 0)
        quorum = self.conf().witness_quorum
        proven = (
            self.store.latest_checkpoint(quorum, self._registered_witnesses()) if quorum else latest
        )
        checkpoint = proven or latest  # no quorum anywhere yet: everything is still pending
        now_ms = to_ms(self._clock())
        mac = self.keyring.subject_mac(subject.value, now_ms)
        limit = max(1, min(limit or 100, MAX_HISTORY))
        below = min(latest.size, before_index) if before_index else latest.size
        rows = self.store.subject_history(mac, below, limit + 1)
        more = len(rows) > limit
        visible = rows[:limit]
        sealed = self.store.sealed_openings([r.idx for r in visible])
        epoch_keys = self.keyring.epoch_keys_for_reading([e for e, _ in sealed.values()])
        covered = [r.idx for r in visible if r.idx < checkpoint.size]
        proofs = self.store.inclusion_proofs(covered, checkpoint.size)
        out: list[HistoryEntry] = []
        for r in visible:
            opening = None
            if r.idx in sealed:
                epoch, blob = sealed[r.idx]
                key = epoch_keys.get(epoch)
                if key is not None:
                    opening = audit_keys.open_opening(key, r.record_id, blob)
                    if not crypto.constant_time_equal(
                        opening.subject.encode(), subject.value.encode()
                    ):
                        log.error("subject index entry %d does not match its opening", r.idx)
                        continue
            proof = None
            if r.idx in proofs:
                leaf_hash, hashes = proofs[r.idx]
                proof = Proof(r.idx, checkpoint.size, leaf_hash, tuple(hashes))
            unsealed = r.visibility == common_pb2.SEALED  # shown only because it was unsealed
            out.append(HistoryEntry(r, _decoded(r), opening, proof, unsealed))
        return CitizenPage(out, checkpoint, visible[-1].idx if more else 0)

    # --- refusals -----------------------------------------------------------------------------

    def list_refused(
        self, inspector: str, after_id: int = 0, limit: int = 100, recorder: str = ""
    ) -> list[RefusedRow]:
        """Appends refused for good, oldest first, after the listing is itself logged.

        Raises:
            LimitExceededError / InvalidArgumentError: an over-long or NUL recorder.
        """
        recorder = _query_text(recorder, "recorder", 300)
        record = self._base_record(KIND_INSPECTOR_QUERY, inspector, "list refused appends")
        record.client = recorder
        self._append_own(record)
        limit = max(1, min(limit or 100, MAX_REFUSED_PER_READ))
        return self.store.list_refused(min(max(after_id, 0), _MAX_SQL_INT), limit, recorder)

    # --- temporal sharding ---------------------------------------------------------------------

    def anchor_previous_log(
        self, checkpoint_note: str, previous_key: note.NoteVerifier, previous_origin: str
    ) -> Sequenced:
        """Append the last checkpoint of the log this one continues, as this log's first
        entry (kind ``log_anchor``, signed by the audit service key): whoever verifies this log
        also holds where the previous one ended (its origin in ``client``, its checkpoint as
        signed and cosigned in ``note``) and the key to check that log with
        (``previous_log_key``), so a chain of periods verifies from the newest.

        Raises:
            NoteSignatureError / NoteFormatError / VerificationError: the checkpoint is not the
                previous log's (key or origin).
            FailedPreconditionError: this log already has entries (an anchor comes first).
        """
        opened = notes.open_log_checkpoint(checkpoint_note, previous_key, previous_origin)
        if self.store.tree_state().size:
            raise errors.FailedPreconditionError(
                "this log already has entries: the anchor of a period is its first entry"
            )
        record = self._base_record(KIND_LOG_ANCHOR, "operator", checkpoint_note)
        record.client = previous_origin[:300]
        record.previous_log_key = previous_key.key_text()
        result = self._append_own(record)
        if result.index != 0:  # pragma: no cover - another writer raced the check above
            raise errors.FailedPreconditionError("the anchor is not the log's first entry")
        log.info("anchored log %s at size %d", previous_origin, opened.size)
        return result

    # --- retention ----------------------------------------------------------------------------

    def shred_before(self, before_ms: int) -> list[str]:
        """Destroy the opening keys of every epoch that ended by ``before_ms``; returns them."""
        from datetime import UTC, datetime

        before = datetime.fromtimestamp(before_ms / 1000, tz=UTC)
        return self.keyring.shred_before(before, to_ms(self._clock()))


def _outcome(result: Sequenced) -> AppendOutcome:
    return AppendOutcome(result.record_id, result.index, result.duplicate, result.error_code)


def _decoded(row: EntryRow) -> audit_pb2.AccessRecord:
    signed = audit_pb2.SignedAccessRecord.FromString(row.leaf)
    record: audit_pb2.AccessRecord = audit_pb2.AccessRecord.FromString(signed.record)
    return record


def _kept_id(record_id: str) -> str:
    """A refused record's id as kept: record ids are UUIDs; anything else a (possibly
    compromised) recorder claimed is not stored, since it could be anything."""
    return record_id if _UUID.fullmatch(record_id) else "-"


def _claimed_record_id(item: audit_pb2.OutboxItem) -> str:
    try:
        return records.parse_unverified_record(item.record).record_id[:64]
    except errors.CdxError:
        return item.opening.record_id[:64]


__all__ = [
    "AUDIT_RECORDER",
    "CONSENT_RECORDER",
    "KIND_REPRESENTATIVE_ACCESS",
    "AppendOutcome",
    "AuditService",
    "CitizenPage",
    "HistoryEntry",
    "Proof",
    "SearchHit",
    "SearchQuery",
]
