"""The small interfaces the portal needs from the consent service, the audit log, the identity
provider and the global configuration, with the domain types they return.

The gRPC implementations live in ``portal.grpc_clients``; unit tests pass in-memory fakes. Every
citizen or inspector call carries the user's identity-provider token, so the services (not the
portal) decide what the user may see. Audit material stays as exact bytes (the leaf data, the
checkpoint note) so ``portal.verify`` can check it: verify first, parse second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from cdx.globalconf import VerifiedGlobalConf
from cdx.tiles import Tile

ConsentAction = Literal["approve", "reject", "pause", "resume", "revoke"]
CONSENT_ACTIONS: tuple[ConsentAction, ...] = ("approve", "reject", "pause", "resume", "revoke")
ConsentStateName = Literal["PENDING", "ACTIVE", "PAUSED", "REVOKED", "EXPIRED", "REJECTED"]
Role = Literal["citizen", "inspector"]
#: Where the proofs a page shows come from: computed by the portal from the log's tiles, or as
#: the log's API served them (only where no tile endpoint is configured).
ProofSource = Literal["tiles", "api"]


# --- identity ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who is logged in, from a verified ID token.

    ``acting_for`` is the person whose data the user acts on when that is someone else (a
    parent for a child; ``None``: themselves): chosen in the portal among the people the consent
    service says the user legally represents, and checked again by the services on every call.
    ``acting_name`` and ``acting_kind`` (parent, guardian, authorised) are for display.
    """

    subject: str = field(repr=False)  # national id for a citizen; never logged, never in a URL
    role: Role
    name: str = field(repr=False)
    expires_at: datetime
    acting_for: str | None = field(default=None, repr=False)
    acting_name: str = field(default="", repr=False)
    acting_kind: str = ""

    @property
    def data_subject(self) -> str:
        """Whose data the pages show: the user's own unless acting for someone."""
        return self.acting_for or self.subject


@dataclass(frozen=True)
class LoginOption:
    """An identity provider users may log in with."""

    issuer: str
    development: bool
    label: str


@dataclass(frozen=True)
class LoginRequest:
    """A login in progress: where the browser goes, and what the callback must match."""

    url: str = field(repr=False)
    issuer: str
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)


@dataclass(frozen=True)
class Login:
    """A completed login: the verified user and the ID token relayed to the services."""

    principal: Principal
    id_token: str = field(repr=False)
    issuer: str


class IdentityProvider(Protocol):
    """Logs users in through OpenID Connect (``portal.identity.OidcIdentity``)."""

    def options(self) -> Sequence[LoginOption]:
        """The providers shown on the login page."""
        ...

    def begin(self, issuer: str, redirect_uri: str, *, language: str = "") -> LoginRequest:
        """Start a login at ``issuer``.

        Raises:
            NotFoundError: not a provider users may log in with.
            IdentityProviderUnavailableError: the provider cannot be reached.
        """
        ...

    def complete(
        self,
        pending: LoginRequest,
        *,
        code: str,
        returned_issuer: str | None,
        redirect_uri: str,
        now: datetime,
    ) -> Login:
        """Finish a login with the authorization code the browser brought back.

        Raises:
            UnauthenticatedError: the provider refused the code.
            TokenError (and subclasses): the ID token is not valid.
            IdentityProviderUnavailableError: the provider cannot be reached.
        """
        ...

    def logout_url(self, issuer: str, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """Where the provider ends its own session (RP-initiated logout), if it can."""
        ...


class ConfSource(Protocol):
    """The current verified global configuration (members, purposes, log and witness keys)."""

    def current(self) -> VerifiedGlobalConf:
        """Raises ``UnavailableError`` when no fresh configuration is available."""
        ...


# --- consent -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentTerms:
    grantee: str
    services: tuple[str, ...]
    purpose: str
    fields: tuple[str, ...]
    data_from: str = ""
    data_until: str = ""
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    max_uses: int = 0
    retention_days: int = 0


@dataclass(frozen=True)
class Consent:
    id: str
    state: ConsentStateName
    terms: ConsentTerms
    artefact: str = field(default="", repr=False)  # compact JWS by the consent service
    supersedes: str = ""
    uses: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    requested_by: str = ""
    version: int = 0


@dataclass(frozen=True)
class ConsentEvent:
    seq: int
    action: str
    state: ConsentStateName
    at: datetime
    actor: str


@dataclass(frozen=True)
class Relation:
    """A legal representation relation as a citizen sees it (``consent.v1.Relation``): the
    other party's national id (``person``) never goes into a page or a URL; ``name`` does."""

    id: str
    kind: str  # parent, guardian, authorised
    person: str = field(repr=False)  # the other party's national id
    name: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    ends_at: datetime | None = None
    in_force: bool = True


@dataclass(frozen=True)
class ConsentReceipt:
    """An ISO/IEC TS 27560 consent record (JSON) and its compact JWS by the consent service."""

    json: str
    jws: str


class ConsentBackend(Protocol):
    """``cdx.v1.CitizenConsent`` as the portal uses it; the token decides whose consents, or
    ``acting_for`` (a national id; ``""``: the user's own) names a person the user legally
    represents, which the consent service checks on every call (``RepresentationDeniedError``
    and its subclasses when it does not hold)."""

    def list_my_consents(self, token: str, acting_for: str = "") -> Sequence[Consent]: ...

    def act(
        self, token: str, action: ConsentAction, consent_id: str, acting_for: str = ""
    ) -> Consent:
        """Approve, reject, pause, resume or revoke.

        Raises:
            NotFoundError: no such consent for this citizen.
            InvalidTransitionError: not allowed from the consent's current state.
            MinorNeedsRepresentativeError: a minor approves or resumes on their own.
        """
        ...

    def receipt(self, token: str, consent_id: str, acting_for: str = "") -> ConsentReceipt: ...

    def events(
        self, token: str, consent_id: str, acting_for: str = ""
    ) -> Sequence[ConsentEvent]: ...

    def represented(self, token: str) -> Sequence[Relation]:
        """The people the user may act for now (``Relation.person`` is the represented)."""
        ...

    def representatives(self, token: str) -> Sequence[Relation]:
        """Who may act for the user now (``Relation.person`` is the representative)."""
        ...


# --- audit -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as the log served it: the signed note (with cosignatures) is what counts."""

    note: str
    size: int
    published_at: datetime | None = None


@dataclass(frozen=True)
class InclusionProof:
    index: int
    tree_size: int
    hashes: tuple[bytes, ...]
    leaf_hash: bytes = b""


@dataclass(frozen=True)
class LogEntry:
    """One leaf: ``leaf_data`` is the serialized ``SignedAccessRecord`` exactly as hashed."""

    index: int
    leaf_data: bytes = field(repr=False)
    integrated_at: datetime | None = None


@dataclass(frozen=True)
class RecordOpening:
    """The secrets that open a record's subject commitment (absent after crypto-shredding)."""

    record_id: str
    subject: str = field(repr=False)
    subject_salt: bytes = field(repr=False)
    #: Opens the commitment of a request step's text (a data-subject request's entry only).
    request_salt: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class HistoryItem:
    entry: LogEntry
    proof: InclusionProof | None
    opening: RecordOpening | None


@dataclass(frozen=True)
class CitizenHistory:
    items: tuple[HistoryItem, ...]
    checkpoint: SignedCheckpoint | None
    next_before_index: int = 0  # cursor of the next (older) page; 0 = none
    proof_source: ProofSource = "api"
    tiles_url: str = ""
    #: Why entries the checkpoint covers have no proof from tiles (``tiles_unavailable``:
    #: the endpoint did not serve them; ``invalid_tiles``: it served malformed ones).
    tiles_problem: str = ""


@dataclass(frozen=True)
class SearchQuery:
    client: str = ""
    service: str = ""
    purpose: str = ""
    decision: Literal["", "ALLOW", "DENY"] = ""
    from_ms: int = 0
    until_ms: int = 0
    subject: str = field(default="", repr=False)
    reason: str = ""
    one_sided_only: bool = False
    recorder: str = ""
    limit: int = 100


@dataclass(frozen=True)
class SearchHit:
    entry: LogEntry
    sealed: bool


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[SearchHit, ...]
    query_record_id: str


@dataclass(frozen=True)
class RefusedAppend:
    """A record the log refused for good (a security server keeps it as a dead letter)."""

    recorder: str
    record_id: str
    code: str
    at: datetime | None


class TileFetcher(Protocol):
    """The log's tiles (c2sp.org/tlog-tiles) from its tile endpoint (``audit.tileclient``).
    Nothing fetched is trusted: proofs computed from tiles are checked against a verified
    checkpoint."""

    prefix: str

    def fetch(self, wanted: Sequence[Tile]) -> Mapping[Tile, bytes]:
        """The given tiles.

        Raises:
            NotFoundError / UnavailableError / DeadlineExceededError: not served.
            MalformedError: a tile has the wrong length.
        """
        ...


class AuditBackend(Protocol):
    """``cdx.v1.AuditLog`` as the portal uses it. Public reads need no token."""

    def checkpoint(self, min_cosignatures: int = 0) -> SignedCheckpoint:
        """The newest checkpoint with at least ``min_cosignatures`` cosignatures.

        Raises:
            NotFoundError: none (yet).
        """
        ...

    def inclusion_proof(self, record_id: str, tree_size: int) -> InclusionProof:
        """Raises ``NotFoundError`` for an unknown record, ``InvalidArgumentError`` when the
        record is not in a tree of ``tree_size`` yet."""
        ...

    def consistency_proof(self, size1: int, size2: int) -> tuple[bytes, ...]: ...

    def entries(self, start: int, end: int) -> Sequence[LogEntry]: ...

    def citizen_history(
        self, token: str, limit: int, before_index: int = 0, acting_for: str = ""
    ) -> CitizenHistory:
        """A page of the citizen's entries (or, ``acting_for``, of a person they legally
        represent: the log asks the consent service and records the read), newest first, below
        ``before_index`` (0 = newest)."""
        ...

    def search(self, token: str, query: SearchQuery) -> SearchResult:
        """Raises ``PermissionDeniedError`` unless the token is an inspector's;
        ``ReasonRequiredError`` for a citizen search without a reason."""
        ...

    def unseal(self, token: str, record_id: str, reason: str) -> str:
        """Make a sealed entry visible to its citizen; returns the unseal entry's record id."""
        ...

    def refused(self, token: str, limit: int) -> Sequence[RefusedAppend]:
        """Records the log refused for good, oldest first (inspectors; the listing is logged).

        Raises ``PermissionDeniedError`` unless the token is an inspector's."""
        ...
