"""One error hierarchy for CDX, with stable snake_case codes and one gRPC-status table.

Every error a caller can see is a ``CdxError`` subclass. Its ``code`` is stable (clients and
tests match on it); its ``status`` comes from ``GRPC_STATUS``, the single table that maps each
class to a gRPC status code. ``tests/unit/test_errors.py`` fails when a class is missing there.

Every name here is public (the module has no ``__all__``: the hierarchy is its API).

Rules (STYLE.md, "Errors"):
- decide the class by how the caller should react;
- wrap foreign exceptions at the boundary with ``raise ... from``;
- messages never contain key material, tokens, national ids or payload values.
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class CdxError(Exception):
    """Base of every CDX error. ``code`` is stable; ``str(err)`` is a safe human message."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str | None = None) -> None:
        doc = (type(self).__doc__ or self.code).split("\n", 1)[0].rstrip(".")
        self.message = message or doc
        super().__init__(self.message)

    @property
    def status(self) -> grpc.StatusCode:
        """The gRPC status this error maps to (see ``GRPC_STATUS``)."""
        return status_for(type(self))


# --- invalid input -----------------------------------------------------------------------------


class InvalidArgumentError(CdxError):
    """The request is malformed or violates a documented limit."""

    code = "invalid_argument"


class InvalidIdentifierError(InvalidArgumentError):
    """An identifier does not follow the INSTANCE:CLASS:MEMBER[:SUBSYSTEM] grammar."""

    code = "invalid_identifier"


class InvalidCitizenIdError(InvalidArgumentError):
    """A citizen id is not a valid national id for the instance."""

    code = "invalid_citizen_id"


class MalformedError(InvalidArgumentError):
    """Untrusted bytes could not be parsed."""

    code = "malformed"


class LimitExceededError(InvalidArgumentError):
    """An input exceeds a size or count limit."""

    code = "limit_exceeded"


class ReasonRequiredError(InvalidArgumentError):
    """This operation needs a stated reason."""

    code = "reason_required"


class UnsafeCharactersError(InvalidArgumentError):
    """A field that is not free text holds control, bidi or other invisible characters."""

    code = "unsafe_characters"


class NoteFormatError(MalformedError):
    """A signed note, checkpoint or cosignature is not well-formed."""

    code = "malformed_note"


# --- verification failures ---------------------------------------------------------------------


class VerificationError(CdxError):
    """A signature, proof or certificate did not verify."""

    code = "verification_failed"


class SignatureError(VerificationError):
    """A signature did not verify."""

    code = "invalid_signature"


class UnknownKeyError(VerificationError):
    """The signing key is not known or not allowed here."""

    code = "unknown_key"


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof did not verify."""

    code = "invalid_proof"


class NoteSignatureError(VerificationError):
    """A signed note carries no valid signature from the required key(s)."""

    code = "invalid_note_signature"


class CheckpointInconsistentError(VerificationError):
    """A new checkpoint is not consistent with one seen before (split view or rewrite)."""

    code = "checkpoint_inconsistent"


class DecryptionError(VerificationError):
    """A ciphertext could not be decrypted (tampered, moved, or for another key)."""

    code = "decryption_failed"


class CertificateError(VerificationError):
    """A certificate is not valid for this use."""

    code = "invalid_certificate"


class CertificateExpiredError(CertificateError):
    """A certificate is outside its validity period."""

    code = "certificate_expired"


class CertificateRevokedError(CertificateError):
    """A certificate has been revoked."""

    code = "certificate_revoked"


class PeerNotRegisteredError(VerificationError):
    """The TLS peer is not a registered security server of the client's member."""

    code = "peer_not_registered"


class EnvelopeExpiredError(VerificationError):
    """The message is outside its freshness window (stale or past its deadline)."""

    code = "message_expired"


class EnvelopeFromFutureError(VerificationError):
    """The message claims to be issued in the future."""

    code = "message_from_future"


class ReplayError(VerificationError):
    """This message id has been seen before."""

    code = "replayed_message"


class BatchProofError(VerificationError):
    """A batch proof is malformed, does not cover the item, or its batch is not whole."""

    code = "batch_proof_invalid"


class StreamSequenceError(VerificationError):
    """A stream item is out of sequence (replayed, reordered or after a dropped item)."""

    code = "stream_sequence_error"


class StreamEpochError(VerificationError):
    """A stream epoch is not valid here (another stream or server, out of order, or used up)."""

    code = "stream_epoch_invalid"


class RequestHashMismatchError(VerificationError):
    """A response is not bound to the request it claims to answer."""

    code = "request_hash_mismatch"


class ProtocolVersionError(VerificationError):
    """The protocol version is not supported."""

    code = "unsupported_protocol_version"


class ConfSignatureError(VerificationError):
    """The global configuration is not signed by the anchored registry key."""

    code = "conf_invalid_signature"


class ConfWrongInstanceError(VerificationError):
    """The global configuration belongs to another instance."""

    code = "conf_wrong_instance"


class ConfRollbackError(VerificationError):
    """The global configuration is older than one already accepted."""

    code = "conf_rollback"


class ConfExpiredError(VerificationError):
    """The global configuration has expired; the server refuses to serve."""

    code = "conf_expired"


class TokenError(VerificationError):
    """A citizen or inspector token is invalid."""

    code = "invalid_token"


class TokenExpiredError(TokenError):
    """The token has expired."""

    code = "token_expired"


class TokenAudienceError(TokenError):
    """The token was issued for another audience."""

    code = "token_wrong_audience"


class TokenSignatureError(TokenError):
    """The token's signature does not verify with the identity provider's keys."""

    code = "token_signature_invalid"


class TokenAlgorithmError(TokenError):
    """The token's algorithm is not one the identity provider is registered with."""

    code = "token_algorithm_refused"


class TokenNonceError(TokenError):
    """The ID token's nonce does not match the login it answers."""

    code = "token_nonce_mismatch"


class TokenKeyUnknownError(TokenError):
    """The token names a signing key the identity provider does not publish."""

    code = "token_key_unknown"


# --- authorisation -----------------------------------------------------------------------------


class PermissionDeniedError(CdxError):
    """The caller is not allowed to do this."""

    code = "permission_denied"


class UnauthenticatedError(CdxError):
    """The caller did not authenticate."""

    code = "unauthenticated"


class LoginFailedError(UnauthenticatedError):
    """The identity provider did not complete the login (an error answer, a refused code)."""

    code = "login_failed"


class NoAgreementError(PermissionDeniedError):
    """No exchange agreement covers this client and service."""

    code = "no_agreement"


class PurposeNotAllowedError(PermissionDeniedError):
    """No exchange agreement covers this purpose for this client and service."""

    code = "purpose_not_allowed"


class FieldNotAllowedError(PermissionDeniedError):
    """A requested field is outside the agreement."""

    code = "field_not_allowed"


class ConsentDeniedError(PermissionDeniedError):
    """No active consent covers this request."""

    code = "consent_missing"


class ConsentPausedError(ConsentDeniedError):
    """The citizen has paused this consent."""

    code = "consent_paused"


class ConsentRevokedError(ConsentDeniedError):
    """The citizen has revoked this consent."""

    code = "consent_revoked"


class ConsentExpiredError(ConsentDeniedError):
    """The consent has expired."""

    code = "consent_expired"


class ConsentPurposeError(ConsentDeniedError):
    """The consent does not cover this purpose or service."""

    code = "consent_purpose"


class ConsentFieldError(ConsentDeniedError):
    """A requested field is outside the consent."""

    code = "consent_field"


class ConsentExhaustedError(ConsentDeniedError):
    """The consent's allowed number of uses is used up."""

    code = "consent_uses_exhausted"


class RepresentationDeniedError(PermissionDeniedError):
    """The caller may not act for this person."""

    code = "representation_denied"


class RepresentationMissingError(RepresentationDeniedError):
    """No legal representation lets the caller act for this person."""

    code = "representation_missing"


class RepresentationEndedError(RepresentationDeniedError):
    """The caller's legal representation of this person has ended (or they came of age)."""

    code = "representation_ended"


class RepresentationScopeError(RepresentationDeniedError):
    """The caller's legal representation of this person does not cover this action."""

    code = "representation_scope"


class MinorNeedsRepresentativeError(PermissionDeniedError):
    """A minor's consent is given by their legal representative, not by the minor."""

    code = "minor_needs_representative"


class NotRepresentationAuthorityError(PermissionDeniedError):
    """Only the designated representation authority registers legal representatives."""

    code = "not_representation_authority"


# --- state -------------------------------------------------------------------------------------


class NotFoundError(CdxError):
    """The requested object does not exist (or is not visible to the caller)."""

    code = "not_found"


class UnknownServiceError(NotFoundError):
    """The service is not published in the global configuration."""

    code = "unknown_service"


class AlreadyExistsError(CdxError):
    """An object with this identity already exists."""

    code = "already_exists"


class FailedPreconditionError(CdxError):
    """The system is not in a state that allows this operation."""

    code = "failed_precondition"


class InvalidTransitionError(FailedPreconditionError):
    """This state change is not allowed from the current state."""

    code = "invalid_transition"


class KeyStoreError(FailedPreconditionError):
    """A private key file could not be loaded (wrong passphrase, corrupted, or unsafe mode)."""

    code = "key_store_error"


class TreeStateConflictError(CdxError):
    """Another sequencer advanced the log first (compare-and-swap lost)."""

    code = "tree_state_conflict"


class RateLimitedError(CdxError):
    """The agreement's rate limit is exceeded."""

    code = "rate_limited"


class UnavailableError(CdxError):
    """A dependency is unavailable; try again later."""

    code = "unavailable"


class IdentityProviderUnavailableError(UnavailableError):
    """The identity provider's discovery document or keys could not be fetched."""

    code = "idp_unavailable"


class BackendUnavailableError(UnavailableError):
    """The data provider's backend did not answer."""

    code = "backend_unavailable"


class ConsentUnavailableError(UnavailableError):
    """The consent service is unreachable and no fresh cached decision exists."""

    code = "consent_unavailable"


class OutboxBacklogError(UnavailableError):
    """Access records could not be shipped to the audit log in time; data release is paused."""

    code = "audit_backlog"


class InvalidAddressError(InvalidArgumentError):
    """A notification address (e-mail or app handle) is not one CDX will send to."""

    code = "invalid_address"


class DeliveryRefusedError(FailedPreconditionError):
    """The mail server or webhook refused a notification for good."""

    code = "delivery_refused"


class DeliveryUnavailableError(UnavailableError):
    """The mail server or webhook could not take a notification now; it is retried."""

    code = "delivery_unavailable"


class DeadlineExceededError(CdxError):
    """The deadline passed before the operation completed."""

    code = "deadline_exceeded"


class InternalError(CdxError):
    """An internal error occurred."""

    code = "internal"


_S = grpc.StatusCode

#: The one table mapping each error class to a gRPC status. Lookup walks the MRO, but every
#: class is listed explicitly so that a reviewer sees the decision (a unit test enforces it).
GRPC_STATUS: dict[type[CdxError], grpc.StatusCode] = {
    CdxError: _S.INTERNAL,
    InternalError: _S.INTERNAL,
    InvalidArgumentError: _S.INVALID_ARGUMENT,
    InvalidIdentifierError: _S.INVALID_ARGUMENT,
    InvalidCitizenIdError: _S.INVALID_ARGUMENT,
    MalformedError: _S.INVALID_ARGUMENT,
    LimitExceededError: _S.INVALID_ARGUMENT,
    ReasonRequiredError: _S.INVALID_ARGUMENT,
    UnsafeCharactersError: _S.INVALID_ARGUMENT,
    NoteFormatError: _S.INVALID_ARGUMENT,
    VerificationError: _S.UNAUTHENTICATED,
    SignatureError: _S.UNAUTHENTICATED,
    UnknownKeyError: _S.UNAUTHENTICATED,
    ProofError: _S.FAILED_PRECONDITION,
    NoteSignatureError: _S.UNAUTHENTICATED,
    CheckpointInconsistentError: _S.FAILED_PRECONDITION,
    DecryptionError: _S.UNAUTHENTICATED,
    CertificateError: _S.UNAUTHENTICATED,
    CertificateExpiredError: _S.UNAUTHENTICATED,
    CertificateRevokedError: _S.UNAUTHENTICATED,
    PeerNotRegisteredError: _S.PERMISSION_DENIED,
    EnvelopeExpiredError: _S.UNAUTHENTICATED,
    EnvelopeFromFutureError: _S.UNAUTHENTICATED,
    ReplayError: _S.UNAUTHENTICATED,
    RequestHashMismatchError: _S.UNAUTHENTICATED,
    BatchProofError: _S.UNAUTHENTICATED,
    StreamSequenceError: _S.UNAUTHENTICATED,
    StreamEpochError: _S.UNAUTHENTICATED,
    ProtocolVersionError: _S.FAILED_PRECONDITION,
    ConfSignatureError: _S.FAILED_PRECONDITION,
    ConfWrongInstanceError: _S.FAILED_PRECONDITION,
    ConfRollbackError: _S.FAILED_PRECONDITION,
    ConfExpiredError: _S.UNAVAILABLE,
    TokenError: _S.UNAUTHENTICATED,
    TokenExpiredError: _S.UNAUTHENTICATED,
    TokenAudienceError: _S.UNAUTHENTICATED,
    TokenSignatureError: _S.UNAUTHENTICATED,
    TokenAlgorithmError: _S.UNAUTHENTICATED,
    TokenNonceError: _S.UNAUTHENTICATED,
    TokenKeyUnknownError: _S.UNAUTHENTICATED,
    PermissionDeniedError: _S.PERMISSION_DENIED,
    UnauthenticatedError: _S.UNAUTHENTICATED,
    LoginFailedError: _S.UNAUTHENTICATED,
    NoAgreementError: _S.PERMISSION_DENIED,
    PurposeNotAllowedError: _S.PERMISSION_DENIED,
    FieldNotAllowedError: _S.PERMISSION_DENIED,
    ConsentDeniedError: _S.PERMISSION_DENIED,
    ConsentPausedError: _S.PERMISSION_DENIED,
    ConsentRevokedError: _S.PERMISSION_DENIED,
    ConsentExpiredError: _S.PERMISSION_DENIED,
    ConsentPurposeError: _S.PERMISSION_DENIED,
    ConsentFieldError: _S.PERMISSION_DENIED,
    ConsentExhaustedError: _S.PERMISSION_DENIED,
    RepresentationDeniedError: _S.PERMISSION_DENIED,
    RepresentationMissingError: _S.PERMISSION_DENIED,
    RepresentationEndedError: _S.PERMISSION_DENIED,
    RepresentationScopeError: _S.PERMISSION_DENIED,
    MinorNeedsRepresentativeError: _S.PERMISSION_DENIED,
    NotRepresentationAuthorityError: _S.PERMISSION_DENIED,
    NotFoundError: _S.NOT_FOUND,
    UnknownServiceError: _S.NOT_FOUND,
    AlreadyExistsError: _S.ALREADY_EXISTS,
    FailedPreconditionError: _S.FAILED_PRECONDITION,
    InvalidTransitionError: _S.FAILED_PRECONDITION,
    KeyStoreError: _S.FAILED_PRECONDITION,
    TreeStateConflictError: _S.ABORTED,
    RateLimitedError: _S.RESOURCE_EXHAUSTED,
    UnavailableError: _S.UNAVAILABLE,
    IdentityProviderUnavailableError: _S.UNAVAILABLE,
    BackendUnavailableError: _S.UNAVAILABLE,
    ConsentUnavailableError: _S.UNAVAILABLE,
    OutboxBacklogError: _S.UNAVAILABLE,
    DeadlineExceededError: _S.DEADLINE_EXCEEDED,
    InvalidAddressError: _S.INVALID_ARGUMENT,
    DeliveryRefusedError: _S.FAILED_PRECONDITION,
    DeliveryUnavailableError: _S.UNAVAILABLE,
}


def status_for(cls: type[CdxError]) -> grpc.StatusCode:
    """Return the gRPC status for an error class (nearest listed ancestor)."""
    for klass in cls.__mro__:
        if klass in GRPC_STATUS:
            return GRPC_STATUS[klass]
    return grpc.StatusCode.INTERNAL


def all_error_classes() -> list[type[CdxError]]:
    """Every ``CdxError`` subclass defined anywhere (for the mapping test and code lookup)."""
    seen: list[type[CdxError]] = [CdxError]
    stack: list[type[CdxError]] = [CdxError]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.append(sub)
                stack.append(sub)
    return seen


def class_for_code(code: str) -> type[CdxError]:
    """Map a stable code received from a peer back to its class (``CdxError`` if unknown)."""
    for cls in all_error_classes():
        if cls.code == code:
            return cls
    return CdxError
