"""In-memory consent service, audit log and identity provider for the portal's unit tests.

The log is real where it matters: a signed global configuration with registry-issued signing
certificates, access records signed by the recording servers, an RFC 9162 tree, a checkpoint
signed with the log key and cosigned by the servers' witness keys. Only transport is faked.
"""

from __future__ import annotations

import itertools
import json
import secrets
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():  # Starlette suggests httpx2, which is not packaged here
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from audit.notes import witness_name
from cdx import crypto, errors, merkle, note, pki, records
from cdx.globalconf import (
    Anchor,
    IdentityProviderInfo,
    VerifiedGlobalConf,
    identity_provider_to_proto,
    sign_global_conf,
    verify_global_conf,
)
from cdx.ids import SecurityServerId
from cdx.tiles import Tile, check_tile
from cdx.v1 import audit_pb2, common_pb2, registry_pb2
from consent.idp import DevIdentityProvider, dev_issuer
from portal import backends as b
from portal.app import create_app
from portal.config import PortalConfig
from portal.sessions import StoredSession

NOW = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)
ALICE = "001090000001"
BOB = "001090000002"
INSPECTOR = "dpa-inspector-7"
ORIGIN = "vn.cdx.example/audit"
GDT, BCA, VSS = "VN:GOV:GDT:income", "VN:GOV:BCA:population", "VN:GOV:VSS:benefits"
PERSON = "VN:GOV:BCA:population/person/v1"
INCOME = "VN:GOV:GDT:income/income/v1"
SERVERS = {"VN:GOV:BCA:ss1": [BCA], "VN:GOV:GDT:ss1": [GDT], "VN:GOV:VSS:ss1": [VSS]}
_BASIS = {
    "CONSENT": common_pb2.CONSENT,
    "LEGAL_OBLIGATION": common_pb2.LEGAL_OBLIGATION,
    "PUBLIC_TASK": common_pb2.PUBLIC_TASK,
}


def server_of(subsystem: str) -> str:
    return next(s for s, subs in SERVERS.items() if subsystem in subs)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class FakeConfSource:
    def __init__(self, conf: VerifiedGlobalConf) -> None:
        self.conf = conf
        self.down = False

    def current(self) -> VerifiedGlobalConf:
        if self.down:
            raise errors.UnavailableError("no configuration")
        return self.conf


class FakeIdp:
    """An OpenID provider in memory: ``code_for`` is the user logging in there (the code is
    opaque and single-use), tokens are opaque random strings; ``development`` flags it as the
    development provider."""

    ISSUER = "https://id.fake.test"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.development = True
        self.tokens: dict[str, b.Principal] = {}
        self.fail_with: Exception | None = None
        self.logged_out: list[str] = []
        self.codes: dict[str, tuple[str, str]] = {}
        self.token_lifetime = timedelta(hours=1)

    def code_for(self, subject: str, role: str = "citizen") -> str:
        code = secrets.token_urlsafe(16)
        self.codes[code] = (role, subject)
        return code

    def options(self) -> list[b.LoginOption]:
        return [b.LoginOption(self.ISSUER, self.development, "id.fake.test")]

    def begin(self, issuer: str, redirect_uri: str, *, language: str = "") -> b.LoginRequest:
        if issuer != self.ISSUER:
            raise errors.NotFoundError("no such identity provider")
        state = secrets.token_urlsafe(16)
        url = f"{self.ISSUER}/authorize?state={state}&redirect_uri={redirect_uri}"
        return b.LoginRequest(url, issuer, state, secrets.token_urlsafe(16), "v" * 43)

    def complete(
        self,
        pending: b.LoginRequest,
        *,
        code: str,
        returned_issuer: str | None,
        redirect_uri: str,
        now: datetime,
    ) -> b.Login:
        if self.fail_with is not None:
            raise self.fail_with
        role, subject = self.codes.pop(code, ("", ""))
        if not subject:
            raise errors.LoginFailedError()
        token = secrets.token_urlsafe(24)
        name = "Inspector Lan" if role == "inspector" else "Citizen"
        principal = b.Principal(subject, role, name, now + self.token_lifetime)  # type: ignore[arg-type]
        self.tokens[token] = principal
        return b.Login(principal, token, self.ISSUER)

    def logout_url(self, issuer: str, id_token: str, post_logout_redirect_uri: str) -> str | None:
        self.logged_out.append(id_token)
        return f"{self.ISSUER}/logout?post_logout_redirect_uri={post_logout_redirect_uri}"

    def verify(self, token: str, now: datetime) -> b.Principal:
        principal = self.tokens.get(token)
        if principal is None:
            raise errors.TokenError()
        if now >= principal.expires_at:
            raise errors.TokenExpiredError()
        return principal


class MemorySessions:
    """``portal.sessions.SessionStore`` in a dict."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredSession] = {}

    def load(self, id_hash: str) -> StoredSession | None:
        return self.rows.get(id_hash)

    def create(self, id_hash: str, session: StoredSession) -> None:
        assert id_hash not in self.rows
        self.rows[id_hash] = session

    def update(self, id_hash: str, seen_at_ms: int, sealed: bytes) -> bool:
        row = self.rows.get(id_hash)
        if row is None:
            return False
        self.rows[id_hash] = replace(row, seen_at_ms=seen_at_ms, sealed=sealed)
        return True

    def delete(self, id_hash: str) -> None:
        self.rows.pop(id_hash, None)

    def purge(self, now_ms: int, idle_since_ms: int) -> int:
        gone = [
            k
            for k, v in self.rows.items()
            if v.expires_at_ms <= now_ms or v.seen_at_ms < idle_since_ms
        ]
        for k in gone:
            del self.rows[k]
        return len(gone)


@dataclass
class Leaf:
    data: bytes
    record: audit_pb2.AccessRecord
    subject: str
    salt: bytes
    unsealed: bool = False


@dataclass
class FakeRelation:
    """A legal representation relation as the fake consent service holds it."""

    id: str
    kind: str
    representative: str
    represented: str
    representative_name: str = ""
    represented_name: str = ""
    ends_at: datetime | None = None
    in_force: bool = True


@dataclass
class World:
    """Keys, configuration and log contents shared by the fakes."""

    clock: Clock = field(default_factory=Clock)
    relations: list[FakeRelation] = field(default_factory=list)

    def represent(
        self, representative: str, represented: str, *, kind: str = "parent", name: str = ""
    ) -> FakeRelation:
        """Register a relation (as the representation authority would)."""
        relation = FakeRelation(str(uuid.uuid4()), kind, representative, represented, "", name)
        self.relations.append(relation)
        return relation

    def acting(self, caller: str, acting_for: str) -> tuple[str, str]:
        """``(data subject, actor)`` of a call by ``caller`` for ``acting_for``, checked as the
        services do (a relation in force, else a ``RepresentationDeniedError``)."""
        if not acting_for or acting_for == caller:
            return caller, "citizen"
        between = [
            r for r in self.relations if (r.representative, r.represented) == (caller, acting_for)
        ]
        if not between:
            raise errors.RepresentationMissingError()
        live = [r for r in between if r.in_force]
        if not live:
            raise errors.RepresentationEndedError()
        return acting_for, f"representative:{live[0].kind}:{live[0].id}"

    def __post_init__(self) -> None:
        ca_key, ca_cert = pki.create_ca("VN", NOW - timedelta(days=1))
        self.signing: dict[str, crypto.KeySigner] = {}
        self.witness: dict[str, note.CosignatureSigner] = {}
        conf = registry_pb2.GlobalConf(
            instance="VN",
            version=1,
            issued_at_ms=_ms(NOW - timedelta(minutes=1)),
            expires_at_ms=_ms(NOW + timedelta(days=30)),
        )
        for member, name in (
            ("VN:GOV:BCA", "Bộ Công an"),
            ("VN:GOV:GDT", "Tổng cục Thuế"),
            ("VN:GOV:VSS", "Bảo hiểm xã hội Việt Nam"),
        ):
            conf.members.add(id=member, name=name, subsystems=[member.split(":")[2].lower()])
        for server_id, subsystems in SERVERS.items():
            key = crypto.generate_signing_key()
            csr = pki.build_csr(key, server_id)
            cert = pki.issue_signing_certificate(
                ca_key, ca_cert, csr, SecurityServerId.parse(server_id), NOW
            )
            self.signing[server_id] = crypto.KeySigner(key)
            wkey = Ed25519PrivateKey.generate()
            self.witness[server_id] = note.CosignatureSigner(witness_name(server_id), wkey)
            conf.servers.add(
                id=server_id,
                address="127.0.0.1:1",
                subsystems=subsystems,
                signing_cert=cert.public_bytes(Encoding.DER),
                witness_public_key=self.witness[server_id].verifier().public_key,
                signing_key_id=self.signing[server_id].key_id,
            )
        conf.services.add(
            id=PERSON,
            description="Population register: person",
            fields=["full_name", "date_of_birth", "address"],
        )
        conf.services.add(id=INCOME, description="Annual income", fields=["income", "year"])
        conf.purposes.add(
            code="SOCIAL_BENEFIT",
            description="Social benefit eligibility",
            description_vi="Xét hưởng trợ cấp xã hội",
        )
        conf.purposes.add(
            code="TAX_ASSESSMENT",
            description="Tax assessment",
            description_vi="Xác định nghĩa vụ thuế",
        )
        self.log_signer = note.NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
        self.consent_key = Ed25519PrivateKey.generate()
        # Consent changes are recorded by the consent service under its artefact key.
        self.signing[records.CONSENT_RECORDER] = crypto.KeySigner(self.consent_key)
        # The log's own entries (inspector queries, representatives' reads) under its key.
        audit_key = crypto.generate_signing_key()
        self.signing["urn:cdx:service:audit"] = crypto.KeySigner(audit_key)
        anchors = conf.anchors
        anchors.audit_log_origin = ORIGIN
        anchors.audit_log_key = self.log_signer.verifier().key_text()
        anchors.witness_quorum = 2
        anchors.consent_service_key = crypto.public_key_to_der(self.consent_key.public_key())
        anchors.audit_service_key = crypto.public_key_to_der(audit_key.public_key())
        self.dev_idp = DevIdentityProvider(dev_issuer("VN"), "VN", Ed25519PrivateKey.generate())
        anchors.identity_providers.add(
            issuer=self.dev_idp.issuer, public_key=self.dev_idp.public_key_der, development=True
        )
        self._conf_pb = conf
        self._registry = crypto.KeySigner(crypto.generate_signing_key())
        self.conf = self.resign()
        self.leaves: list[Leaf] = []
        self.tree = merkle.InMemoryTree()
        self.checkpoint_note = ""
        self.checkpoint_published = NOW
        self.checkpoint_size = 0
        self.checkpoints: list[tuple[str, int, int]] = []  # (note, size, cosignatures)

    def resign(
        self,
        *,
        production: bool = False,
        identity_providers: Sequence[IdentityProviderInfo] | None = None,
    ) -> VerifiedGlobalConf:
        """Sign the configuration again (a new version), e.g. to switch to production or to
        anchor other identity providers."""
        conf = self._conf_pb
        conf.version += 1
        conf.anchors.production = production
        if identity_providers is not None:
            del conf.anchors.identity_providers[:]
            conf.anchors.identity_providers.extend(
                identity_provider_to_proto(p) for p in identity_providers
            )
        raw = sign_global_conf(conf, self._registry)
        self.conf = verify_global_conf(raw, Anchor("VN", self._registry.public_key()), NOW)
        return self.conf

    # --- log contents --------------------------------------------------------------------------

    def record(
        self,
        subject: str,
        *,
        client: str = VSS,
        service: str = PERSON,
        purpose: str = "SOCIAL_BENEFIT",
        basis: str = "LEGAL_OBLIGATION",
        decision: str = "ALLOW",
        reason: str = "ok",
        fields: Sequence[str] = ("full_name", "address"),
        at: datetime | None = None,
        consent_id: str = "",
        legal_reference: str = "Decree 20/2021/ND-CP",
        sealed: bool = False,
        sides: Sequence[str] = ("PROVIDER", "CONSUMER"),
        recorder: str | None = None,
        kind: str = "access",
        note: str = "",
        actor: str = "",
    ) -> str:
        """Append the records of one exchange (both sides by default); returns the message id."""
        message_id = str(uuid.uuid4())
        when = at or self.clock.now
        for side in sides:
            server = recorder or server_of(service.split("/")[0] if side == "PROVIDER" else client)
            salt = crypto.new_salt()
            rec = audit_pb2.AccessRecord(
                record_id=str(uuid.uuid4()),
                message_id=message_id,
                time_ms=_ms(when),
                recorder=server,
                role=common_pb2.PROVIDER if side == "PROVIDER" else common_pb2.CONSUMER,
                client=client,
                service=service,
                purpose=purpose,
                lawful_basis=_BASIS[basis],
                consent_id=consent_id,
                legal_reference=legal_reference if basis != "CONSENT" else "",
                decision=common_pb2.ALLOW if decision == "ALLOW" else common_pb2.DENY,
                reason_code=reason,
                released_fields=list(fields) if decision == "ALLOW" else [],
                subject_commitment=crypto.commitment(salt, subject.encode()),
                request_commitment=crypto.commitment(crypto.new_salt(), b"{}"),
                visibility=common_pb2.SEALED if sealed else common_pb2.NORMAL,
                kind=kind,
                note=note,
                actor=actor,
            )
            body = rec.SerializeToString()
            signer = self.signing[server]
            signed = audit_pb2.SignedAccessRecord(
                record=body,
                signature=signer.sign(b"cdx/access-record/v1\n" + body),
                key_id=signer.key_id,
            )
            data = signed.SerializeToString()
            self.leaves.append(Leaf(data, rec, subject, salt))
            self.tree.append(merkle.leaf_hash(data))
        return message_id

    def publish(self, cosigners: Sequence[str] | None = None) -> None:
        """Sign a checkpoint of the whole tree and let witnesses cosign it."""
        size = self.tree.size
        text = note.Checkpoint(ORIGIN, size, self.tree.root()).to_text()
        signed = note.parse_note(self.log_signer.sign(text))
        sigs = list(signed.signatures)
        stamp = int(self.clock.now.timestamp())
        for server in SERVERS if cosigners is None else cosigners:
            sigs.append(note.NoteSignature.parse_line(self.witness[server].cosign(text, stamp)))
        self.checkpoint_note = note.Note(text, tuple(sigs)).to_text()
        self.checkpoint_published = self.clock.now
        self.checkpoint_size = size
        self.checkpoints.append((self.checkpoint_note, size, len(sigs) - 1))

    def index_of(self, record_id: str) -> int:
        for i, leaf in enumerate(self.leaves):
            if leaf.record.record_id == record_id:
                return i
        raise errors.NotFoundError()

    def records_of(self, subject: str) -> list[Leaf]:
        return [leaf for leaf in self.leaves if leaf.subject == subject]


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class FakeAudit:
    def __init__(self, world: World, idp: FakeIdp) -> None:
        self.world = world
        self.idp = idp
        self.searches: list[b.SearchQuery] = []
        self.unsealed: list[tuple[str, str]] = []
        self.refusals: list[b.RefusedAppend] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise errors.UnavailableError("audit log down")

    def _principal(self, token: str, role: str) -> b.Principal:
        principal = self.idp.verify(token, self.world.clock.now)
        if principal.role != role:
            raise errors.PermissionDeniedError()
        return principal

    def checkpoint(self, min_cosignatures: int = 0) -> b.SignedCheckpoint:
        self._check()
        if min_cosignatures == 0 and self.world.checkpoint_note:  # also a tampered latest
            return b.SignedCheckpoint(
                self.world.checkpoint_note,
                self.world.checkpoint_size,
                self.world.checkpoint_published,
            )
        for signed, size, cosignatures in reversed(self.world.checkpoints):
            if cosignatures >= min_cosignatures:
                return b.SignedCheckpoint(signed, size, self.world.clock.now)
        raise errors.NotFoundError()

    def _proof(self, index: int, size: int) -> b.InclusionProof:
        hashes = merkle.inclusion_proof(self.world.tree, index, size)
        return b.InclusionProof(
            index, size, tuple(hashes), merkle.leaf_hash(self.world.leaves[index].data)
        )

    def inclusion_proof(self, record_id: str, tree_size: int) -> b.InclusionProof:
        self._check()
        index = self.world.index_of(record_id)
        size = tree_size or self.world.checkpoint_size
        if index >= size:
            raise errors.InvalidArgumentError("the entry is not in this tree size yet")
        return self._proof(index, size)

    def consistency_proof(self, size1: int, size2: int) -> tuple[bytes, ...]:
        self._check()
        return tuple(merkle.consistency_proof(self.world.tree, size1, size2))

    def entries(self, start: int, end: int) -> list[b.LogEntry]:
        self._check()
        return [
            b.LogEntry(i, self.world.leaves[i].data, self.world.clock.now)
            for i in range(start, min(end, len(self.world.leaves)))
        ]

    def citizen_history(
        self, token: str, limit: int, before_index: int = 0, acting_for: str = ""
    ) -> b.CitizenHistory:
        self._check()
        subject, _ = self.world.acting(self._principal(token, "citizen").subject, acting_for)
        size = self.world.checkpoint_size
        items = []
        for i, leaf in enumerate(self.world.leaves):
            if leaf.subject != subject:
                continue
            if leaf.record.visibility == common_pb2.SEALED and not leaf.unsealed:
                continue
            proof = self._proof(i, size) if i < size else None
            items.append(
                b.HistoryItem(
                    b.LogEntry(i, leaf.data, self.world.clock.now),
                    proof,
                    b.RecordOpening(leaf.record.record_id, subject, leaf.salt),
                )
            )
        cp = b.SignedCheckpoint(self.world.checkpoint_note, size) if size else None
        if before_index:
            items = [i for i in items if i.entry.index < before_index]
        page = items[-limit:]
        older = page[0].entry.index if len(items) > limit else 0
        return b.CitizenHistory(tuple(page), cp, older)

    def refused(self, token: str, limit: int) -> list[b.RefusedAppend]:
        self._check()
        self._principal(token, "inspector")
        return self.refusals[:limit]

    def search(self, token: str, query: b.SearchQuery) -> b.SearchResult:
        self._check()
        self._principal(token, "inspector")
        if query.subject and not query.reason:
            raise errors.ReasonRequiredError()
        self.searches.append(query)
        hits = []
        for i, leaf in enumerate(self.world.leaves):
            r = leaf.record
            if query.client and not r.client.startswith(query.client):
                continue
            if query.service and r.service != query.service:
                continue
            if query.decision == "DENY" and r.decision != common_pb2.DENY:
                continue
            if query.decision == "ALLOW" and r.decision != common_pb2.ALLOW:
                continue
            if query.subject and leaf.subject != query.subject:
                continue
            if (
                query.one_sided_only
                and sum(1 for x in self.world.leaves if x.record.message_id == r.message_id) > 1
            ):
                continue
            sealed = r.visibility == common_pb2.SEALED and not leaf.unsealed
            hits.append(b.SearchHit(b.LogEntry(i, leaf.data, self.world.clock.now), sealed))
        return b.SearchResult(tuple(hits[: query.limit]), str(uuid.uuid4()))

    def unseal(self, token: str, record_id: str, reason: str) -> str:
        self._check()
        self._principal(token, "inspector")
        leaf = self.world.leaves[self.world.index_of(record_id)]
        if leaf.unsealed:
            raise errors.FailedPreconditionError("the entry is already unsealed")
        leaf.unsealed = True
        self.unsealed.append((record_id, reason))
        return str(uuid.uuid4())


_TRANSITIONS = {
    "approve": ({"PENDING"}, "ACTIVE", "approved"),
    "reject": ({"PENDING"}, "REJECTED", "rejected"),
    "pause": ({"ACTIVE"}, "PAUSED", "paused"),
    "resume": ({"PAUSED"}, "ACTIVE", "resumed"),
    "revoke": ({"ACTIVE", "PAUSED", "PENDING"}, "REVOKED", "revoked"),
}


class FakeConsent:
    def __init__(self, world: World, idp: FakeIdp) -> None:
        self.world = world
        self.idp = idp
        self.consents: dict[str, tuple[str, b.Consent]] = {}
        self.history: dict[str, list[b.ConsentEvent]] = {}
        self.seq = itertools.count(1)
        self.calls: list[tuple[str, str]] = []

    def _subject(self, token: str) -> str:
        principal = self.idp.verify(token, self.world.clock.now)
        if principal.role != "citizen":
            raise errors.PermissionDeniedError()
        return principal.subject

    def add(
        self,
        subject: str,
        *,
        state: b.ConsentStateName = "ACTIVE",
        grantee: str = GDT,
        service: str = PERSON,
        purpose: str = "TAX_ASSESSMENT",
    ) -> str:
        cid = f"c-{uuid.uuid4().hex[:12]}"
        now = self.world.clock.now
        terms = b.ConsentTerms(
            grantee=grantee,
            services=(service,),
            purpose=purpose,
            fields=("full_name", "address"),
            valid_from=now,
            valid_until=now + timedelta(days=365),
            retention_days=30,
        )
        artefact = "" if state == "PENDING" else self._sign({"jti": cid, "grantee": grantee})
        self.consents[cid] = (
            subject,
            b.Consent(
                cid,
                state,
                terms,
                artefact,
                created_at=now,
                updated_at=now,
                requested_by=grantee if state == "PENDING" else "",
                version=1,
            ),
        )
        self.history[cid] = [
            b.ConsentEvent(
                next(self.seq),
                "requested" if state == "PENDING" else "granted",
                state,
                now,
                "citizen",
            )
        ]
        return cid

    def _sign(self, claims: dict[str, object]) -> str:
        return jwt.encode(claims, self.world.consent_key, algorithm="EdDSA")

    def state(self, cid: str) -> str:
        return self.consents[cid][1].state

    def _mine(self, token: str, cid: str, acting_for: str = "") -> b.Consent:
        subject, _ = self.world.acting(self._subject(token), acting_for)
        entry = self.consents.get(cid)
        if entry is None or entry[0] != subject:
            raise errors.NotFoundError()
        return entry[1]

    def list_my_consents(self, token: str, acting_for: str = "") -> list[b.Consent]:
        subject, _ = self.world.acting(self._subject(token), acting_for)
        return [c for s, c in self.consents.values() if s == subject]

    def represented(self, token: str) -> list[b.Relation]:
        me = self._subject(token)
        return [
            b.Relation(
                r.id,
                r.kind,
                r.represented,
                r.represented_name,
                ("consents", "history"),
                r.ends_at,
                r.in_force,
            )
            for r in self.world.relations
            if r.representative == me and r.in_force
        ]

    def representatives(self, token: str) -> list[b.Relation]:
        me = self._subject(token)
        return [
            b.Relation(
                r.id,
                r.kind,
                r.representative,
                r.representative_name,
                ("consents", "history"),
                r.ends_at,
                r.in_force,
            )
            for r in self.world.relations
            if r.represented == me and r.in_force
        ]

    def act(
        self, token: str, action: b.ConsentAction, consent_id: str, acting_for: str = ""
    ) -> b.Consent:
        _, actor = self.world.acting(self._subject(token), acting_for)
        consent = self._mine(token, consent_id, acting_for)
        allowed, new_state, event = _TRANSITIONS[action]
        if consent.state not in allowed:
            raise errors.InvalidTransitionError()
        self.calls.append((action, consent_id))
        updated = replace(consent, state=new_state, updated_at=self.world.clock.now)  # type: ignore[arg-type]
        self.consents[consent_id] = (self.consents[consent_id][0], updated)
        self.history[consent_id].append(
            b.ConsentEvent(next(self.seq), event, new_state, self.world.clock.now, actor)
        )  # type: ignore[arg-type]
        return updated

    def receipt(self, token: str, consent_id: str, acting_for: str = "") -> b.ConsentReceipt:
        consent = self._mine(token, consent_id, acting_for)
        record = {
            "consent_id": consent.id,
            "state": consent.state,
            "grantee": consent.terms.grantee,
        }
        return b.ConsentReceipt(json.dumps(record), self._sign(record))

    def events(self, token: str, consent_id: str, acting_for: str = "") -> list[b.ConsentEvent]:
        self._mine(token, consent_id, acting_for)
        return list(self.history[consent_id])


class FakeTiles:
    """The log's tile endpoint (c2sp.org/tlog-tiles) over the world's tree: ``tampered`` maps
    a tile path to the bytes served instead, ``down`` makes every fetch fail, and ``fetched``
    lists what was asked for."""

    prefix = "https://tiles.portal.test/audit"

    def __init__(self, world: World) -> None:
        self.world = world
        self.tampered: dict[str, bytes] = {}
        self.down = False
        self.fetched: list[Tile] = []

    def _hashes(self, tile: Tile) -> bytes:
        span = 1 << (8 * tile.level)
        first = tile.first * span
        tree = self.world.tree
        return b"".join(
            merkle.range_hash(tree.subtree_hash, first + i * span, first + (i + 1) * span)
            for i in range(tile.width)
        )

    def fetch(self, wanted: Sequence[Tile]) -> dict[Tile, bytes]:
        if self.down:
            raise errors.UnavailableError("tile endpoint down")
        self.fetched.extend(wanted)
        out = {t: self.tampered.get(t.path(), self._hashes(t)) for t in wanted}
        for tile, data in out.items():
            check_tile(tile, data)
        return out


@dataclass
class Harness:
    world: World
    idp: FakeIdp
    audit: FakeAudit
    consent: FakeConsent
    conf_source: FakeConfSource
    config: PortalConfig
    sessions: MemorySessions = field(default_factory=MemorySessions)
    #: The log's tile endpoint (``None``: global configuration names none).
    tiles: FakeTiles | None = None

    def app(self) -> object:
        return create_app(
            self.config,
            self.consent,
            self.audit,
            self.idp,
            self.conf_source,
            self.world.clock,
            sessions=self.sessions,
            tiles=lambda _conf: self.tiles,
        )

    def client(self) -> TestClient:
        return TestClient(self.app(), base_url="https://portal.test", follow_redirects=False)

    def start_login(self, client: TestClient, next_path: str = "") -> str:
        """Start a login; returns the ``state`` the identity provider would bring back."""
        start = client.get("/login/start", params={"issuer": FakeIdp.ISSUER, "next": next_path})
        assert start.status_code == 303, start.text
        query = parse_qs(urlsplit(start.headers["location"]).query)
        return query["state"][0]

    def login(self, client: TestClient, subject: str, role: str = "citizen") -> None:
        state = self.start_login(client)
        code = self.idp.code_for(subject, role)
        response = client.get("/auth/callback", params={"state": state, "code": code})
        assert response.status_code == 303, response.text


def harness(*, secure_cookies: bool = True) -> Harness:
    world = World()
    idp = FakeIdp(world.clock)
    config = PortalConfig(
        session_key=crypto.Secret(secrets.token_bytes(32)),
        secure_cookies=secure_cookies,
        default_language="en",
        timezone="Asia/Ho_Chi_Minh",
    )
    return Harness(
        world,
        idp,
        FakeAudit(world, idp),
        FakeConsent(world, idp),
        FakeConfSource(world.conf),
        config,
    )


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]
