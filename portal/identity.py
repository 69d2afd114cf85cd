"""Logging users in: token verification against the identity providers registered in global
conf (``cdx.tokens``), and the development IdP's login (``consent.idp``) where allowed."""

from __future__ import annotations

from datetime import datetime

from cdx import errors
from cdx.tokens import citizen_audience, verify_token
from consent.idp import DevIdentityProvider
from portal.backends import ConfSource, Principal, Role


class RegisteredIdentity:
    """Verifies tokens of any registered IdP; mints them only with a development IdP.

    Production citizens log in through the national OIDC provider, whose tokens this verifies
    the same way; the redirect flow to that provider is not part of this class.
    """

    def __init__(self, conf_source: ConfSource, dev: DevIdentityProvider | None = None) -> None:
        self._conf = conf_source
        self._dev = dev

    @property
    def development(self) -> bool:
        if self._dev is None:
            return False
        try:
            return not self._conf.current().production
        except errors.CdxError:
            return False

    def dev_login(self, subject: str, role: Role, now: datetime) -> str:
        if self._dev is None:
            raise errors.PermissionDeniedError("no development identity provider")
        conf = self._conf.current()
        if conf.production:
            raise errors.PermissionDeniedError("development login is refused in production")
        try:
            return self._dev.issue(subject, conf=conf, now=now, role=role)
        except errors.FailedPreconditionError as exc:
            raise errors.PermissionDeniedError("development login is not available") from exc

    def verify(self, token: str, now: datetime) -> Principal:
        conf = self._conf.current()
        claims = verify_token(
            token,
            conf.identity_providers,
            audience=citizen_audience(conf.instance),
            now=now,
            production=conf.production,
            instance=conf.instance,
        )
        if claims.expires_at is None:
            raise errors.TokenError("the token has no expiry")
        subject = claims.subject.value if claims.subject is not None else claims.principal
        return Principal(subject, claims.role, claims.name, claims.expires_at)
