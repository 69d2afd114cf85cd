"""Which refusals of the audit log are for good: the outbox's one table of append error codes.

The audit log answers each appended item with an empty ``error_code`` (it holds the record) or
the ``cdx.errors`` code of its refusal. The outbox asks ``permanent(code)``:

- **permanent**: the refusal depends only on the record's own bytes, so sending the same
  record again can never succeed. The outbox moves it to the dead-letter table, raises an
  alarm (health and metrics) and keeps shipping the rest; an operator re-queues it once the
  cause is fixed (``cdx security-server outbox requeue``).
- **transient**: the refusal depends on the log's state (its view of global configuration, a
  key rotation it has not seen yet, a busy store). The record stays in the queue and is
  retried with backoff; the backlog window still applies (fail closed).

A code missing from the table is transient: retrying and failing closed is the safe reading
of a refusal nobody classified (docs/adr/0010-dead-letters.md).
"""

from __future__ import annotations

from enum import Enum

from cdx import errors

__all__ = ["REFUSALS", "Refusal", "permanent"]


class Refusal(Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"


#: Append error code -> how the outbox treats it, with the reason.
REFUSALS: dict[str, Refusal] = {
    # The record's bytes do not parse, lack a record id, recorder or time, or break a limit.
    errors.MalformedError.code: Refusal.PERMANENT,
    errors.LimitExceededError.code: Refusal.PERMANENT,
    errors.InvalidArgumentError.code: Refusal.PERMANENT,
    # The opening does not open the record (e.g. a subject that is not a national id).
    errors.VerificationError.code: Refusal.PERMANENT,
    # The record names another recorder, or a kind a security server may not append.
    errors.PermissionDeniedError.code: Refusal.PERMANENT,
    # The log holds a different record under the same record id.
    errors.AlreadyExistsError.code: Refusal.PERMANENT,
    # The log's global configuration does not know this server or its current signing key
    # (yet): a registration or key rotation it has not fetched.
    errors.UnknownKeyError.code: Refusal.TRANSIENT,
    errors.SignatureError.code: Refusal.TRANSIENT,
    errors.ConfExpiredError.code: Refusal.TRANSIENT,
    # The log could not commit, or answered for another record.
    errors.UnavailableError.code: Refusal.TRANSIENT,
    errors.InternalError.code: Refusal.TRANSIENT,
    "mismatched_result": Refusal.TRANSIENT,
}


def permanent(code: str) -> bool:
    """Whether the audit log's refusal ``code`` is for good (unknown codes are transient)."""
    return REFUSALS.get(code, Refusal.TRANSIENT) is Refusal.PERMANENT
