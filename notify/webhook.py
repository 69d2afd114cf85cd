"""Signs and verifies webhook deliveries (Standard Webhooks, v1 symmetric); pure, no I/O.

The national app verifies every POST it receives from CDX with the shared secret::

    webhook-id:        the delivery's idempotency key (the app drops a second one)
    webhook-timestamp: Unix seconds
    webhook-signature: v1,<base64(HMAC-SHA256(secret, id "." timestamp "." body))>

The secret is shown to the app's operator as ``whsec_<base64(secret)>`` (``cdx notify
webhook-secret``). A verifier refuses a timestamp more than ``tolerance`` seconds from its
clock (replays of an old delivery).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cdx import errors

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of the secret format, not a secret
DEFAULT_TOLERANCE_S = 300


def secret_text(secret: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(secret).decode("ascii")


def parse_secret(text: str) -> bytes:
    """Raises: MalformedError: not ``whsec_<base64>``."""
    if not text.startswith(SECRET_PREFIX):
        raise errors.MalformedError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.MalformedError("a webhook secret is base64 after whsec_") from exc


def signature(secret: bytes, delivery_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def headers(secret: bytes, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery."""
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, delivery_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: bytes,
    received: dict[str, str],
    body: bytes,
    *,
    now: int,
    tolerance: int = DEFAULT_TOLERANCE_S,
) -> str:
    """Check a delivery as the app would; returns its id.

    Raises:
        SignatureError: missing headers, a stale timestamp, or no valid signature.
    """
    lower = {k.lower(): v for k, v in received.items()}
    delivery_id = lower.get("webhook-id", "")
    stamp = lower.get("webhook-timestamp", "")
    offered = lower.get("webhook-signature", "")
    if not delivery_id or not stamp.isdigit() or not offered:
        raise errors.SignatureError("the webhook headers are missing")
    if abs(now - int(stamp)) > tolerance:
        raise errors.SignatureError("the webhook timestamp is too far from now")
    expected = signature(secret, delivery_id, int(stamp), body)
    if not any(hmac.compare_digest(expected, s) for s in offered.split(" ")):
        raise errors.SignatureError("no valid webhook signature")
    return delivery_id
