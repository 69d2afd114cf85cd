"""The witness each security server runs: checks that the log only grows, then cosigns.

Every ``interval`` seconds ``Witness.poll_once``:

1. fetches the latest checkpoint and verifies its signature with the log key and origin from
   global configuration (``audit_log_key``, ``audit_log_origin``);
2. compares it with the last checkpoint this witness accepted (kept on disk, written
   atomically): a smaller size, or the same size with another root, is a rewrite or a split
   view; a larger size must come with a consistency proof that verifies
   (``cdx.merkle.verify_consistency``, RFC 9162 §2.1.4.2);
3. on success, stores the new checkpoint as accepted and sends its ``cosignature/v1``
   (C2SP tlog-cosignature) made with the server's Ed25519 witness key, whose public half is
   this server's ``witness_public_key`` in global configuration.

On any inconsistency it refuses the checkpoint, logs an error, keeps the offending note as
evidence in its state file and raises an alarm that ``health()`` reports until an operator
clears it (``clear_alarm``): a log that forked once must not be trusted again silently. An
unreachable log is not an alarm.

A new period of the log (temporal sharding: global configuration names a new origin and key)
is followed only through its anchor: the new log's first entry, proven in its checkpoint and
signed by the audit service key, must name the origin this witness followed, the key that
signed the checkpoint it accepted last, and a checkpoint of that log at least as large (the
same root at the same size). Anything else is an alarm, so switching the origin cannot be used
to make witnesses forget what they cosigned.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from audit import notes, tlogwitness
from audit.client import AuditClient
from cdx import clock as cdx_clock
from cdx import crypto, errors, merkle, note, records, telemetry
from cdx.files import write_atomically
from cdx.globalconf import VerifiedGlobalConf

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0
STATE_FILE = "witness.json"


@dataclass(frozen=True, slots=True)
class Accepted:
    """The last checkpoint this witness accepted."""

    size: int
    root: bytes
    note: str


class Witness:
    """Verifies and cosigns the audit log's checkpoints on behalf of one security server."""

    def __init__(
        self,
        server_id: str,
        witness_key: ed25519.Ed25519PrivateKey,
        client: AuditClient,
        conf: Callable[[], VerifiedGlobalConf],
        state_path: Path,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: cdx_clock.Clock = cdx_clock.utcnow,
    ) -> None:
        self.server_id = server_id
        self._signer = note.CosignatureSigner(notes.witness_name(server_id), witness_key)
        self._client = client
        self._conf = conf
        self._path = state_path
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        state = self._load()
        self._accepted = state[0]
        self._alarm: str | None = state[1]
        self.last_error: errors.CdxError | None = None

    # --- state on disk ------------------------------------------------------------------------

    def _load(self) -> tuple[Accepted | None, str | None]:
        try:
            data = json.loads(self._path.read_bytes())
        except FileNotFoundError:
            return None, None
        except ValueError as exc:
            raise errors.InternalError("the witness state file is corrupt") from exc
        accepted = None
        if data.get("note"):
            accepted = Accepted(
                int(data["size"]), base64.b64decode(data["root"]), str(data["note"])
            )
        return accepted, data.get("alarm") or None

    def _save(self, evidence: str | None = None) -> None:
        a = self._accepted
        data: dict[str, object] = {"format": "cdx-witness/v1", "alarm": self._alarm}
        if a is not None:
            data.update(size=a.size, root=base64.b64encode(a.root).decode(), note=a.note)
        if evidence is not None:
            data["evidence"] = evidence
        elif self._path.exists():
            try:
                old = json.loads(self._path.read_bytes())
                if old.get("evidence"):
                    data["evidence"] = old["evidence"]
            except ValueError:
                pass
        write_atomically(self._path, json.dumps(data, indent=2).encode(), 0o600)

    @property
    def accepted(self) -> Accepted | None:
        """The last checkpoint accepted (``None`` before the first)."""
        return self._accepted

    def health(self) -> str | None:
        """``None`` when no inconsistency was seen, else the alarm (for the health check)."""
        return self._alarm

    def clear_alarm(self) -> None:
        """Acknowledge an alarm (after investigation); the evidence stays in the state file."""
        with self._lock:
            self._alarm = None
            self._save()

    def _raise_alarm(self, why: str, evidence: str) -> errors.CheckpointInconsistentError:
        self._alarm = why
        log.error("audit log checkpoint refused by witness %s: %s", self.server_id, why)
        self._save(evidence)
        return errors.CheckpointInconsistentError(why)

    # --- one round ----------------------------------------------------------------------------

    def poll_once(self) -> Accepted:
        """Fetch, check and cosign the latest checkpoint; returns the accepted checkpoint.

        Raises:
            CheckpointInconsistentError: the checkpoint is badly signed, from another log, or
                inconsistent with the last one accepted (the alarm is raised).
            UnavailableError: the log could not be reached (no alarm).
        """
        with self._lock:
            conf = self._conf()
            verifier = notes.log_verifier(conf.audit_log_key)
            served = self._client.checkpoint()
            try:
                opened = notes.open_log_checkpoint(served.note, verifier, conf.audit_log_origin)
            except (
                errors.NoteSignatureError,
                errors.MalformedError,
                errors.VerificationError,
            ) as exc:
                raise self._raise_alarm(
                    "the checkpoint is not validly signed by the log key", served.note
                ) from exc
            last = self._accepted
            if last is not None and _origin(last.note) != opened.checkpoint.origin:
                self._follow_period(last, opened, conf)
                last = None  # a new log: it starts here
            if last is not None:
                self._check_extends(last, opened)
            accepted = Accepted(opened.size, opened.root, served.note)
            if last is None or opened.size != last.size:
                self._accepted = accepted
                self._save()
            if self._signer.name not in {s.name for s in note.parse_note(served.note).signatures}:
                with telemetry.stage("witness.cosign", server=self.server_id):
                    line = self._signer.cosign(opened.text, int(self._clock().timestamp()))
                    self._client.add_cosignature(opened.text, line, self.server_id)
            return accepted

    def _follow_period(
        self, last: Accepted, new: notes.OpenedCheckpoint, conf: VerifiedGlobalConf
    ) -> None:
        """Accept a new period only through its anchor (see the module docstring)."""
        old_origin = _origin(last.note)
        try:
            if new.size == 0:
                raise errors.VerificationError("the new log is empty")
            (first,) = self._client.entries(0, 1)
            leaf = first.record.SerializeToString(deterministic=True)
            proof = self._client.inclusion_proof(index=0, tree_size=new.size)
            merkle.verify_inclusion(merkle.leaf_hash(leaf), 0, new.size, proof.hashes, new.root)
            service_key = crypto.as_signing_public_key(
                crypto.public_key_from_der(conf.audit_service_key_der)
            )
            record = records.verify_access_record(first.record, service_key)
            if record.kind != "log_anchor" or record.client != old_origin:
                raise errors.VerificationError("the first entry does not anchor the old log")
            old_key = note.NoteVerifier.from_key_text(record.previous_log_key)
            notes.open_log_checkpoint(last.note, old_key, old_origin)  # the key we trusted
            anchored = notes.open_log_checkpoint(record.note, old_key, old_origin)
            if anchored.size < last.size or (
                anchored.size == last.size and anchored.root != last.root
            ):
                raise errors.VerificationError("the anchor is behind what this witness accepted")
        except (errors.CdxError, ValueError) as exc:
            raise self._raise_alarm(
                f"the log changed origin from {old_origin} without anchoring the checkpoint "
                "this witness accepted",
                new.note,
            ) from exc
        log.info("witness %s follows the new period %s", self.server_id, new.checkpoint.origin)

    def _check_extends(self, last: Accepted, new: notes.OpenedCheckpoint) -> None:
        if new.size < last.size:
            raise self._raise_alarm(
                "the log is smaller than a checkpoint it signed before", new.note
            )
        if new.size == last.size:
            if new.root != last.root:
                raise self._raise_alarm(
                    "two checkpoints of one size with different roots", new.note
                )
            return
        try:
            proof = self._client.consistency_proof(last.size, new.size)
            merkle.verify_consistency(last.size, new.size, proof, last.root, new.root)
        except errors.ProofError as exc:
            raise self._raise_alarm(
                "the new checkpoint is not consistent with the last accepted one", new.note
            ) from exc

    # --- pushed: c2sp.org/tlog-witness ---------------------------------------------------------

    def add_checkpoint(self, body: bytes) -> tlogwitness.Answer:
        """Answer a tlog-witness ``add-checkpoint`` request for the instance's log: the same
        checks, state and alarms as polling, the consistency proof coming with the request
        (serve it with ``audit.http.witness_app``). Never raises for a bad request."""
        try:
            request = tlogwitness.parse_request(body)
        except errors.MalformedError as exc:
            return tlogwitness.Answer(400, "text/plain; charset=utf-8", f"{exc.message}\n")
        try:
            conf = self._conf()
            verifier = notes.log_verifier(conf.audit_log_key)
            origin = conf.audit_log_origin or verifier.name
            checkpoint = tlogwitness.open_for_witness(request.checkpoint_note, {origin: [verifier]})
            with self._lock:
                last = self._accepted
                if last is not None and _origin(last.note) != checkpoint.origin:
                    opened = notes.OpenedCheckpoint(
                        checkpoint, checkpoint.to_text(), request.checkpoint_note
                    )
                    try:
                        self._follow_period(last, opened, conf)
                    except errors.CheckpointInconsistentError as exc:
                        return tlogwitness.Answer(409, "text/plain; charset=utf-8", f"{exc}\n")
                    last = None
                latest = tlogwitness.Latest(last.size, last.root) if last is not None else None
                try:
                    tlogwitness.judge(latest, request, checkpoint)
                except tlogwitness.WitnessRefusal as refusal:
                    if refusal.status == 409 and refusal.size is None:  # both signed by the log
                        self._raise_alarm(
                            "two checkpoints of one size with different roots",
                            request.checkpoint_note,
                        )
                    raise
                self._accepted = Accepted(
                    checkpoint.size, checkpoint.root_hash, request.checkpoint_note
                )
                self._save()
            text = checkpoint.to_text()
            with telemetry.stage("witness.cosign", server=self.server_id):
                line = self._signer.cosign(text, int(self._clock().timestamp()))
            return tlogwitness.Answer(200, "text/plain; charset=utf-8", line)
        except tlogwitness.WitnessRefusal as refusal:
            return refusal.answer()
        except errors.CdxError as exc:  # no current configuration: cannot judge now
            return tlogwitness.Answer(503, "text/plain; charset=utf-8", f"{exc.code}\n")

    # --- background ---------------------------------------------------------------------------

    def start(self) -> Witness:
        """Poll in a background thread; returns self."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cdx-audit-witness", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
                self.last_error = None
            except errors.CheckpointInconsistentError as exc:
                self.last_error = exc  # alarmed and logged already
            except errors.CdxError as exc:
                self.last_error = exc
                log.warning("witness could not check the audit log: %s", exc.code)
            except Exception:
                log.exception("witness round failed")
            self._stop.wait(self._interval)


def witness_for_security_server(ctx: Any, *, interval: float = DEFAULT_INTERVAL) -> Witness:
    """The witness of a security server, from the context its plugins get
    (``security_server.server.PluginContext``: ``server_id``, ``keys.witness_key``, ``tls``,
    ``conf_client``, ``config.data_dir``, ``now_fn``).

    The log's address is read from global configuration at each call; the state lives in
    ``<data dir>/witness.json``. Call ``start()``, and add ``health`` to the server's health
    checks so that an inconsistent log shows as NOT_SERVING.
    """

    def address() -> str:
        latest = ctx.conf_client.latest()
        return str(latest.audit_log_address) if latest is not None else ""

    return Witness(
        ctx.server_id,
        ctx.keys.witness_key,
        AuditClient(address, ctx.tls),
        ctx.conf_client.current,
        Path(ctx.config.data_dir) / STATE_FILE,
        interval=interval,
        clock=ctx.now_fn,
    )


def _origin(signed_note: str) -> str:
    """The origin line of a checkpoint this witness stored (it verified it then)."""
    return notes.body_of(signed_note).split("\n", 1)[0]
