"""The C2SP tlog-witness protocol: ``add-checkpoint`` requests and answers, the witness's
decision, a witness of any number of logs, and the client a log uses to collect cosignatures.

A request body is ``old <size>``, up to 63 base64 consistency-proof lines, an empty line, then
the signed checkpoint. The witness answers (c2sp.org/tlog-witness):

- 404 the origin is not a log it witnesses; 403 no signature by a key it trusts for it;
- 400 a malformed body, an old size above the checkpoint's, or a proof with old size 0;
- 409 (``text/x.tlog.size``, its size) the old size is not the size it last cosigned, or the
  same size comes with another root (a fork: kept as evidence by the caller);
- 422 the consistency proof does not verify;
- 200 its ``cosignature/v1`` line(s), after persisting the new size atomically.

``judge`` is the decision, pure; ``MultiLogWitness`` applies it to logs configured by origin and
verifier keys over a ``WitnessState`` (``FileWitnessState`` keeps one small file per log).
``add_checkpoint_body``/``WitnessClient`` are the log's side.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cdx import errors, merkle, note
from cdx.files import write_atomically

MAX_PROOF_LINES = 63
MAX_BODY_BYTES = 128 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed ``add-checkpoint`` request (the checkpoint not verified yet)."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint_note: str


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, content type, body."""

    status: int
    content_type: str
    body: str


def add_checkpoint_body(old_size: int, proof: Sequence[bytes], checkpoint_note: str) -> bytes:
    """The request body a log sends (c2sp.org/tlog-witness)."""
    lines = f"old {old_size}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return (lines + "\n" + checkpoint_note).encode()


def parse_request(body: bytes) -> AddCheckpoint:
    """Parse an ``add-checkpoint`` body.

    Raises:
        MalformedError: not the format above (size without leading zeroes, proof hashes of
            32 bytes, at most 63 of them, a blank line before the checkpoint).
    """
    if len(body) > MAX_BODY_BYTES:
        raise errors.MalformedError("the request is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.MalformedError("the request is not UTF-8") from exc
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise errors.MalformedError("no blank line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    size_text = first.removeprefix("old ")
    if size_text == first or not size_text.isascii() or not size_text.isdigit():
        raise errors.MalformedError("the first line must be 'old <size>'")
    if size_text != str(int(size_text)) or int(size_text) > merkle.MAX_TREE_SIZE:
        raise errors.MalformedError("the old size has leading zeroes or is out of range")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise errors.MalformedError("more than 63 consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except binascii.Error as exc:
            raise errors.MalformedError("a proof line is not base64") from exc
        if len(h) != merkle.HASH_SIZE:
            raise errors.MalformedError("a proof hash is not 32 bytes")
        proof.append(h)
    return AddCheckpoint(int(size_text), tuple(proof), checkpoint)


class WitnessRefusal(Exception):
    """The witness refuses the checkpoint (``status`` says how, per tlog-witness); it never
    leaves the witness: ``answer()`` is what the caller gets."""

    def __init__(self, status: int, message: str, *, size: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.size = size  # for 409: the size the witness last cosigned

    def answer(self) -> Answer:
        if self.status == 409 and self.size is not None:
            return Answer(409, SIZE_CONTENT_TYPE, f"{self.size}\n")
        return Answer(self.status, _TEXT, self.message + "\n")


@dataclass(frozen=True, slots=True)
class Latest:
    """What a witness last cosigned for a log."""

    size: int
    root: bytes


def judge(latest: Latest | None, request: AddCheckpoint, new: note.Checkpoint) -> None:
    """Decide whether a verified checkpoint may be cosigned, given the last one cosigned.

    Raises:
        WitnessRefusal: 400, 409 (``size`` set, or a fork when the sizes match) or 422.
    """
    if request.old_size > new.size:
        raise WitnessRefusal(400, "the old size is larger than the checkpoint")
    last_size = latest.size if latest is not None else 0
    if request.old_size != last_size:
        raise WitnessRefusal(409, "the old size is not the last cosigned size", size=last_size)
    if request.old_size == 0:
        if request.proof:
            raise WitnessRefusal(400, "a proof from size 0 must be empty")
        return
    assert latest is not None
    if new.size == latest.size:
        if request.proof or new.root_hash != latest.root:
            raise WitnessRefusal(409, "another root for the size last cosigned: a fork")
        return
    try:
        merkle.verify_consistency(latest.size, new.size, request.proof, latest.root, new.root_hash)
    except errors.ProofError as exc:
        raise WitnessRefusal(422, "the consistency proof does not verify") from exc


def open_for_witness(
    checkpoint_note: str, logs: Mapping[str, Sequence[note.NoteVerifier]]
) -> note.Checkpoint:
    """Verify a checkpoint against the keys trusted for its origin (unknown keys ignored).

    Raises:
        WitnessRefusal: 400 malformed, 404 unknown origin, 403 not signed by a trusted key.
    """
    try:
        body = note.parse_note(checkpoint_note).text
        origin = note.Checkpoint.parse(body).origin
    except (errors.MalformedError, errors.LimitExceededError) as exc:
        raise WitnessRefusal(400, "the checkpoint is malformed") from exc
    verifiers = logs.get(origin)
    if not verifiers:
        raise WitnessRefusal(404, "this witness does not witness that log")
    try:
        checkpoint, _ = note.open_checkpoint(checkpoint_note, list(verifiers))
    except errors.NoteSignatureError as exc:
        raise WitnessRefusal(403, "not signed by a key trusted for this log") from exc
    except (errors.MalformedError, errors.LimitExceededError) as exc:
        raise WitnessRefusal(400, "the checkpoint is malformed") from exc
    return checkpoint


# --- a witness of several logs -------------------------------------------------------------------


class WitnessState(Protocol):
    """The last cosigned checkpoint of each log, replaced atomically."""

    def latest(self, origin: str) -> Latest | None: ...

    def store(self, origin: str, latest: Latest, checkpoint_note: str) -> None: ...


class FileWitnessState:
    """One JSON file per log origin in a directory (written atomically, mode 0600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, origin: str) -> Path:
        return self.directory / (urllib.parse.quote(origin, safe="") + ".json")

    def latest(self, origin: str) -> Latest | None:
        try:
            data = json.loads(self._path(origin).read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise errors.InternalError("a witness state file is corrupt") from exc
        return Latest(int(data["size"]), base64.b64decode(data["root"]))

    def store(self, origin: str, latest: Latest, checkpoint_note: str) -> None:
        data = {
            "format": "cdx-tlog-witness/v1",
            "origin": origin,
            "size": latest.size,
            "root": base64.b64encode(latest.root).decode(),
            "note": checkpoint_note,
        }
        write_atomically(self._path(origin), json.dumps(data, indent=2).encode(), 0o600)


class MultiLogWitness:
    """A tlog-witness for the logs it is configured with (origin -> trusted verifier keys)."""

    def __init__(
        self,
        signer: note.CosignatureSigner,
        logs: Mapping[str, Sequence[note.NoteVerifier]],
        state: WitnessState,
        clock: Callable[[], int],
    ) -> None:
        self._signer = signer
        self._logs = logs
        self._state = state
        self._clock = clock
        self._lock = threading.Lock()  # check-and-store is atomic (the spec's race)

    @property
    def verifier_key(self) -> str:
        return self._signer.verifier_key()

    def add_checkpoint(self, body: bytes) -> Answer:
        """Answer one ``add-checkpoint`` request (never raises for a bad request)."""
        try:
            request = parse_request(body)
        except errors.MalformedError as exc:
            return Answer(400, _TEXT, f"{exc.message}\n")
        try:
            checkpoint = open_for_witness(request.checkpoint_note, self._logs)
            with self._lock:
                judge(self._state.latest(checkpoint.origin), request, checkpoint)
                self._state.store(
                    checkpoint.origin,
                    Latest(checkpoint.size, checkpoint.root_hash),
                    request.checkpoint_note,
                )
            text = checkpoint.to_text()
            return Answer(200, _TEXT, self._signer.cosign(text, self._clock()))
        except WitnessRefusal as refusal:
            return refusal.answer()


# --- the log's side ------------------------------------------------------------------------------


class WitnessClient:
    """Asks one tlog-witness (``<prefix>/add-checkpoint``) to cosign, following its 409s."""

    def __init__(
        self,
        url: str,
        verifier: note.CosignatureVerifier,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/") + "/add-checkpoint"
        self.verifier = verifier
        self._timeout = timeout
        self.known_size = 0  # the size we believe the witness last cosigned

    @property
    def name(self) -> str:
        return self.verifier.name

    def _post(self, body: bytes) -> tuple[int, str, bytes]:
        request = urllib.request.Request(self.url, data=body, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                return (
                    int(response.status),
                    str(response.headers.get("content-type", "")),
                    bytes(response.read()),
                )
        except urllib.error.HTTPError as exc:
            return exc.code, str(exc.headers.get("content-type", "")), bytes(exc.read())
        except OSError as exc:
            raise errors.UnavailableError(f"witness {self.url} is unreachable") from exc

    def cosign(
        self, checkpoint_note: str, proof_from: Callable[[int], Sequence[bytes]]
    ) -> note.NoteSignature:
        """Send the checkpoint with a consistency proof from the witness's size; return its
        verified cosignature.

        Raises:
            UnavailableError: unreachable.
            VerificationError: refused (the status says why), or the answer is not a valid
                cosignature by this witness.
        """
        text = note.parse_note(checkpoint_note).text
        for _ in range(2):  # a 409 tells the witness's size: one retry from there
            old = self.known_size
            body = add_checkpoint_body(old, proof_from(old), checkpoint_note)
            status, content_type, answer = self._post(body)
            reply = answer.decode("utf-8", "replace")
            if status == 409 and content_type.startswith(SIZE_CONTENT_TYPE):
                size = reply.strip()
                if not size.isdigit():
                    raise errors.VerificationError("the witness answered a malformed size")
                self.known_size = int(size)
                continue
            if status != 200:
                raise errors.VerificationError(f"witness {self.url} refused ({status})")
            for line in reply.splitlines(keepends=True):
                sig = note.NoteSignature.parse_line(line)
                if (sig.name, sig.key_id) == (self.verifier.name, self.verifier.key_id):
                    self.verifier.verify_cosignature(sig, text)
                    self.known_size = note.Checkpoint.parse(text).size
                    return sig
            raise errors.VerificationError("the witness answered no cosignature by its key")
        raise errors.VerificationError(f"witness {self.url} keeps answering 409")
