"""Settings of one portal instance."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cdx import crypto, errors

SESSION_KEY_INFO = b"cdx/portal-session/v1"


@dataclass(frozen=True)
class PortalConfig:
    """How the portal runs.

    ``secure_cookies`` is on by default: the session cookie (a random id; the session itself
    lives in the portal's database) is ``Secure`` and ``__Host-`` prefixed, so browsers send it
    over HTTPS only. ``cdx portal serve --insecure-cookies`` turns
    it off for a loopback demo over plain HTTP; never use that on a network.
    """

    session_key: crypto.Secret[bytes] = field(repr=False)
    secure_cookies: bool = True
    timezone: str = "Asia/Ho_Chi_Minh"
    default_language: str = "vi"
    history_limit: int = 1000
    search_limit: int = 200
    session_idle_minutes: int = 30
    session_lifetime_hours: int = 12
    rpc_timeout_s: float = 5.0
    #: The portal's address as browsers reach it (``https://portal.example``): the OpenID
    #: redirect URI is ``<public_url>/auth/callback``. Empty: taken from each request.
    public_url: str = ""

    def __post_init__(self) -> None:
        if len(self.session_key.reveal()) != 32:
            raise errors.InvalidArgumentError("the session key is 32 bytes")


def derive_session_key(passphrase: bytes) -> crypto.Secret[bytes]:
    """The key sealing session data at rest, derived from the instance passphrase
    (HKDF-SHA256, RFC 5869, one block).

    Every replica of the portal derives the same key, so sessions survive a restart and move
    between replicas; changing the passphrase logs everyone out.
    """
    prk = hmac.new(b"cdx portal session salt", passphrase, hashlib.sha256).digest()
    okm = hmac.new(prk, SESSION_KEY_INFO + b"\x01", hashlib.sha256).digest()
    return crypto.Secret(okm)
