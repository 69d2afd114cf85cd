"""What the portal needs from the consent service's data-subject request APIs (ADR 0020), with
the domain types they return; a companion of ``portal.backends``.

Citizens file, follow and withdraw their requests, and complete an access request with the
history the audit log proved to them (``AccessEvidence``): the consent service checks it and
signs the bundle. Inspectors see every overdue request (without citizen or texts) and work the
complaints. The gRPC implementation is ``portal.grpc_requests``; unit tests pass fakes. Every
call carries the user's identity-provider token: the service decides what they may see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

RequestKindName = Literal[
    "access", "objection", "restriction", "erasure", "rectification", "complaint"
]
REQUEST_KINDS: tuple[RequestKindName, ...] = (
    "access",
    "objection",
    "restriction",
    "erasure",
    "rectification",
    "complaint",
)
#: Kinds a citizen files with the form (access has its own button).
FORM_KINDS: tuple[RequestKindName, ...] = REQUEST_KINDS[1:]
RequestStateName = Literal[
    "RECEIVED", "ACKNOWLEDGED", "IN_PROGRESS", "COMPLETED", "REFUSED", "WITHDRAWN"
]
HandlerAction = Literal["acknowledge", "start", "extend", "complete", "refuse"]
HANDLER_ACTIONS: tuple[HandlerAction, ...] = (
    "acknowledge",
    "start",
    "extend",
    "complete",
    "refuse",
)
FINAL_STATES = frozenset({"COMPLETED", "REFUSED", "WITHDRAWN"})


@dataclass(frozen=True)
class RequestStep:
    action: str
    state: RequestStateName
    at: datetime
    actor: str
    text: str = field(default="", repr=False)
    record_id: str = ""


@dataclass(frozen=True)
class SubjectRequest:
    id: str
    kind: RequestKindName
    state: RequestStateName
    addressee: str
    purpose: str
    service: str
    received_at: datetime
    acknowledge_by: datetime
    complete_by: datetime
    extended: bool = False
    closed_at: datetime | None = None
    overdue: str = ""  # "acknowledgement", "completion" or ""
    steps: tuple[RequestStep, ...] = ()
    bundle_ready: bool = False
    subject: str = field(default="", repr=False)  # for the inspector handling a complaint

    @property
    def open(self) -> bool:
        return self.state not in FINAL_STATES

    @property
    def details(self) -> str:
        """What the citizen wrote when filing."""
        return self.steps[0].text if self.steps and self.steps[0].action == "received" else ""

    @property
    def answer(self) -> RequestStep | None:
        """The handler's last word: the completion, refusal or extension with its text."""
        for step in reversed(self.steps):
            if step.text and step.action in ("completed", "refused", "extended"):
                return step
        return None


@dataclass(frozen=True)
class EvidenceEntry:
    """One entry of the citizen's history, proven in the evidence's checkpoint."""

    index: int
    leaf: bytes = field(repr=False)
    proof: tuple[bytes, ...] = field(repr=False)
    subject_salt: bytes = field(repr=False)
    request_salt: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class AccessEvidence:
    """The citizen's history as the audit log proved it: one checkpoint, the entries it covers,
    and how many it did not cover (newer, or their opening shredded)."""

    checkpoint_note: str
    entries: tuple[EvidenceEntry, ...]
    omitted: int = 0


class RequestsBackend(Protocol):
    """``cdx.v1.CitizenRequests`` and ``InspectorRequests`` as the portal uses them."""

    def file(
        self,
        token: str,
        kind: RequestKindName,
        *,
        addressee: str = "",
        purpose: str = "",
        service: str = "",
        details: str = "",
    ) -> SubjectRequest:
        """Raises ``InvalidArgumentError`` (and subclasses) or ``NotFoundError`` for a request
        the service refuses (unknown agency or purpose, missing details, too long)."""
        ...

    def list_mine(self, token: str) -> Sequence[SubjectRequest]: ...

    def get_mine(self, token: str, request_id: str) -> SubjectRequest:
        """Raises ``NotFoundError``: no such request of this citizen."""
        ...

    def withdraw(self, token: str, request_id: str) -> SubjectRequest: ...

    def complete_access(self, token: str, request_id: str, evidence: AccessEvidence) -> bytes:
        """The signed bundle file.

        Raises:
            VerificationError (and subclasses): the service did not accept the evidence.
            InvalidTransitionError: the request is already answered.
        """
        ...

    def access_bundle(self, token: str, request_id: str) -> bytes: ...

    def overdue(self, token: str) -> Sequence[SubjectRequest]:
        """Every overdue request (inspectors only; no citizen, no texts)."""
        ...

    def complaints(self, token: str) -> Sequence[SubjectRequest]:
        """Open complaints to the inspectors (inspectors only)."""
        ...

    def complaint(self, token: str, request_id: str) -> SubjectRequest: ...

    def act_on_complaint(
        self, token: str, request_id: str, action: HandlerAction, text: str = ""
    ) -> SubjectRequest: ...
