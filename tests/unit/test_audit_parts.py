"""Pure parts of the audit log: epochs, sealed openings, frontier extension, witness checks."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import notes
from audit.keys import epoch_end, epoch_of, open_opening, seal_opening
from audit.witness import Witness
from cdx import crypto, errors, note
from cdx.v1 import audit_pb2
from tests.unit.audit_fakes import ORIGIN, FakeLog, Keys, exchange


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_epochs_are_utc_calendar_months() -> None:
    assert epoch_of(_ms(2025, 1, 31, 23, 59, 59)) == "2025-01"
    assert epoch_of(_ms(2025, 2, 1)) == "2025-02"
    assert epoch_end("2025-01") == datetime(2025, 2, 1, tzinfo=UTC)
    assert epoch_end("2025-12") == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["2025", "2025-13", "2025-00", "x-y", "1900-01", ""])
def test_malformed_epochs_are_refused(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        epoch_end(bad)


def test_an_opening_only_opens_for_its_record() -> None:
    key = crypto.new_salt()
    opening = audit_pb2.RecordOpening(
        record_id="r1", subject="012345678901", subject_salt=crypto.new_salt()
    )
    sealed = seal_opening(key, opening)
    assert b"012345678901" not in sealed
    assert open_opening(key, "r1", sealed) == opening
    with pytest.raises(errors.DecryptionError):
        open_opening(key, "r2", sealed)  # moved to another record
    with pytest.raises(errors.DecryptionError):
        open_opening(crypto.new_salt(), "r1", sealed)  # another epoch's key (or shredded)


def test_witness_names_are_valid_note_key_names() -> None:
    name = notes.witness_name("VN:GOV:A+B:ss 1")
    assert "+" not in name and " " not in name
    note.CosignatureSigner(name, Ed25519PrivateKey.generate())  # accepted as a key name


# --- witness -------------------------------------------------------------------------------------


class _Conf:
    def __init__(self, keys: Keys) -> None:
        self.audit_log_key = keys.log.verifier_key()
        self.audit_log_origin = ORIGIN


class _Client:
    """Serves a FakeLog's latest checkpoint and proofs; records cosignatures."""

    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.cosigned: list[tuple[str, str, str]] = []
        self.served: str | None = None

    def checkpoint(self, min_cosignatures: int = 0) -> audit_pb2.Checkpoint:
        return audit_pb2.Checkpoint(note=self.served or self.log.notes[-1])

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self.log.consistency_proof(size1, size2)

    def add_cosignature(self, text: str, line: str, witness: str) -> None:
        self.cosigned.append((text, line, witness))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Keys, FakeLog, _Client, Witness, Ed25519PrivateKey]:
    keys = Keys()
    log = FakeLog(keys)
    log.append(*exchange(keys))
    log.publish()
    client = _Client(log)
    key = Ed25519PrivateKey.generate()
    witness = Witness(
        "VN:GOV:GDT:ss1",
        key,
        client,  # type: ignore[arg-type]
        lambda: _Conf(keys),  # type: ignore[arg-type,return-value]
        tmp_path / "witness.json",
    )
    return keys, log, client, witness, key


def test_witness_cosigns_a_consistent_checkpoint(setup: tuple) -> None:  # type: ignore[type-arg]
    keys, log, client, witness, key = setup
    first = witness.poll_once()
    assert first.size == 2
    log.append(*exchange(keys))
    log.publish()
    accepted = witness.poll_once()
    assert accepted.size == 4 and witness.health() is None
    text, line, who = client.cosigned[-1]
    assert who == "VN:GOV:GDT:ss1"
    verifier = note.CosignatureVerifier(notes.witness_name(who), key.public_key())
    assert verifier.verify_cosignature(line, text) <= int(time.time())
    state = json.loads((witness._path).read_text())
    assert state["size"] == 4


def test_witness_refuses_a_fork_and_keeps_alarming(setup: tuple) -> None:  # type: ignore[type-arg]
    keys, _log, client, witness, _ = setup
    witness.poll_once()
    # The log shows a checkpoint of a bigger tree that does not extend the accepted one.
    other = FakeLog(keys)
    other.append(*exchange(keys), *exchange(keys))
    client.log = other
    client.served = other.publish()
    with pytest.raises(errors.CheckpointInconsistentError):
        witness.poll_once()
    assert witness.health() is not None
    assert witness.accepted is not None and witness.accepted.size == 2
    state = json.loads(witness._path.read_text())
    assert state["evidence"] == client.served and state["alarm"]
    # The alarm survives a restart of the witness.
    again = Witness(
        "VN:GOV:GDT:ss1", Ed25519PrivateKey.generate(), client, witness._conf, witness._path
    )  # type: ignore[arg-type]
    assert again.health() == witness.health()
    again.clear_alarm()
    assert again.health() is None


def test_witness_refuses_a_rollback(setup: tuple) -> None:  # type: ignore[type-arg]
    keys, log, client, witness, _ = setup
    log.append(*exchange(keys))
    log.publish()
    witness.poll_once()
    client.served = log.notes[0]  # an older, smaller checkpoint
    with pytest.raises(errors.CheckpointInconsistentError):
        witness.poll_once()
    assert "smaller" in (witness.health() or "")


def test_witness_refuses_a_checkpoint_signed_by_another_key(setup: tuple) -> None:  # type: ignore[type-arg]
    _keys, log, client, witness, _ = setup
    impostor = note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    client.served = log.publish(signer=impostor)
    with pytest.raises(errors.CheckpointInconsistentError):
        witness.poll_once()
    assert client.cosigned == []
    assert witness.health() is not None


def test_witness_does_not_cosign_twice(setup: tuple) -> None:  # type: ignore[type-arg]
    _, log, client, witness, _ = setup
    witness.poll_once()
    _text, line, _ = client.cosigned[0]
    client.served = log.notes[-1] + line  # the log now serves the note with our cosignature
    witness.poll_once()
    assert len(client.cosigned) == 1
