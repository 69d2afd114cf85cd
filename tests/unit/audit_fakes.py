"""In-memory stand-ins for the audit log's unit tests: signed records and a fake log source."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cdx import crypto, errors, merkle, note, records
from cdx.v1 import audit_pb2, common_pb2

ORIGIN = "cdx.test/audit"
CONSUMER = "VN:GOV:VSS:ss1"
PROVIDER = "VN:GOV:BCA:ss1"


@dataclass
class Keys:
    log: note.NoteSigner = field(
        default_factory=lambda: note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    )
    servers: dict[str, crypto.KeySigner] = field(
        default_factory=lambda: {
            CONSUMER: crypto.KeySigner(crypto.generate_signing_key()),
            PROVIDER: crypto.KeySigner(crypto.generate_signing_key()),
        }
    )

    def public(self) -> dict[str, crypto.PublicSigningKey]:
        return {name: s.public_key() for name, s in self.servers.items()}


def record(
    recorder: str,
    role: int,
    *,
    message_id: str | None = None,
    decision: int = common_pb2.ALLOW,
    time_ms: int | None = None,
    purpose: str = "SOCIAL_BENEFIT_ELIGIBILITY",
    record_id: str | None = None,
) -> audit_pb2.AccessRecord:
    return audit_pb2.AccessRecord(
        record_id=record_id or str(uuid.uuid4()),
        message_id=message_id or str(uuid.uuid4()),
        time_ms=time_ms or int(time.time() * 1000),
        recorder=recorder,
        role=role,  # type: ignore[arg-type]
        client="VN:GOV:VSS:benefits",
        service="VN:GOV:BCA:population/person/v1",
        purpose=purpose,
        lawful_basis=common_pb2.LEGAL_OBLIGATION,
        decision=decision,  # type: ignore[arg-type]
        reason_code="ok" if decision == common_pb2.ALLOW else "no_agreement",
        subject_commitment=bytes(32),
        visibility=common_pb2.NORMAL,
        kind="access",
    )


def exchange(keys: Keys, **kw: object) -> list[audit_pb2.SignedAccessRecord]:
    """Both sides' signed records of one message."""
    mid = str(uuid.uuid4())
    return [
        records.sign_access_record(
            record(CONSUMER, common_pb2.CONSUMER, message_id=mid, **kw), keys.servers[CONSUMER]
        ),  # type: ignore[arg-type]
        records.sign_access_record(
            record(PROVIDER, common_pb2.PROVIDER, message_id=mid, **kw), keys.servers[PROVIDER]
        ),  # type: ignore[arg-type]
    ]


class FakeLog:
    """A ``LogSource``: entries as served (tamperable) and proofs from the tree as signed."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.entries: list[audit_pb2.SignedAccessRecord] = []
        self.notes: list[str] = []
        self.tree = merkle.InMemoryTree()  # the "node table": only grows, never tampered here

    def append(self, *signed: audit_pb2.SignedAccessRecord) -> None:
        for s in signed:
            self.entries.append(s)
            self.tree.append(merkle.leaf_hash(s.SerializeToString(deterministic=True)))

    def publish(self, signer: note.NoteSigner | None = None, root: bytes | None = None) -> str:
        size = self.tree.size
        text = note.Checkpoint(ORIGIN, size, root or self.tree.root()).to_text()
        signed = (signer or self.keys.log).sign(text)
        self.notes.append(signed)
        return signed

    # LogSource

    def checkpoint(self, min_cosignatures: int = 0) -> audit_pb2.Checkpoint:
        if not self.notes:
            raise errors.NotFoundError()
        return audit_pb2.Checkpoint(note=self.notes[-1])

    def iter_checkpoints(self) -> Iterator[audit_pb2.Checkpoint]:
        for n in self.notes:
            yield audit_pb2.Checkpoint(note=n)

    def iter_entries(self, start: int, end: int) -> Iterator[audit_pb2.LogEntry]:
        for i in range(start, min(end, len(self.entries))):
            yield audit_pb2.LogEntry(index=i, record=self.entries[i])

    def inclusion_proof(
        self, index: int = 0, tree_size: int = 0, record_id: str = ""
    ) -> audit_pb2.InclusionProof:
        return audit_pb2.InclusionProof(
            index=index,
            tree_size=tree_size,
            hashes=merkle.inclusion_proof(self.tree, index, tree_size),
            leaf_hash=self.tree.leaf_hashes(index, index + 1)[0],
        )

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return merkle.consistency_proof(self.tree, size1, size2)
