"""``cdx.v1.CitizenNotifications`` over gRPC: who is calling, proto <-> domain, nothing else.

A citizen reaches their own preferences only: the caller is the portal (its mutual-TLS
certificate ``urn:cdx:service:portal``, a token relay) carrying the citizen's ID token, which
is verified against the identity providers global configuration anchors (``cdx.jwks``), as the
consent service and the audit log do. The national id comes from the token, never from the
request, so no request can name another citizen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from cdx import errors, pki, rpc
from cdx.clock import Clock
from cdx.globalconf import VerifiedGlobalConf
from cdx.ids import CitizenId
from cdx.jwks import TokenVerifier
from cdx.v1 import notify_pb2, notify_pb2_grpc
from notify.model import Category, Preferences
from notify.service import NotifyService

DEFAULT_TOKEN_RELAYS = ("urn:cdx:service:portal",)
MAX_CATEGORIES = 16

_TO_PB = {
    Category.EVERY_ACCESS: notify_pb2.EVERY_ACCESS,
    Category.CONSENT_ACCESS: notify_pb2.CONSENT_ACCESS,
    Category.DENIALS: notify_pb2.DENIALS,
    Category.CONSENT_REQUESTS: notify_pb2.CONSENT_REQUESTS,
    Category.UNSEALED: notify_pb2.UNSEALED,
    Category.REPRESENTATIVE_ACTIONS: notify_pb2.REPRESENTATIVE_ACTIONS,
}
_FROM_PB: dict[int, Category] = {int(v): k for k, v in _TO_PB.items()}


def preferences_pb(p: Preferences) -> notify_pb2.NotifyPreferences:
    return notify_pb2.NotifyPreferences(
        categories=sorted(_TO_PB[c] for c in p.categories),
        email=p.email,
        app_handle=p.app_handle,
        language=p.language,
        version=p.version,
    )


def categories_from_pb(values: Sequence[int]) -> frozenset[Category]:
    """Raises: InvalidArgumentError: an unknown category, or too many."""
    if len(values) > MAX_CATEGORIES:
        raise errors.LimitExceededError("too many categories")
    out = set()
    for v in values:
        category = _FROM_PB.get(v)
        if category is None:
            raise errors.InvalidArgumentError("unknown notification category")
        out.add(category)
    return frozenset(out)


class CitizenNotificationsServicer(notify_pb2_grpc.CitizenNotificationsServicer):  # type: ignore[misc]
    """Citizens read and replace their own preferences (an ID token relayed by the portal)."""

    def __init__(
        self,
        service: NotifyService,
        conf_source: Callable[[], VerifiedGlobalConf],
        clock: Clock,
        *,
        token_relays: Sequence[str] = DEFAULT_TOKEN_RELAYS,
        token_verifier: TokenVerifier | None = None,
    ) -> None:
        self._service = service
        self._conf = conf_source
        self._clock = clock
        self._relays = frozenset(token_relays)
        self._tokens = token_verifier or TokenVerifier()

    def _citizen(self, context: grpc.ServicerContext) -> CitizenId:
        cert = rpc.peer_certificate(context)
        if cert is None:
            raise errors.UnauthenticatedError("a client certificate is required")
        if not any(uri in self._relays for uri in pki.certificate_uris(cert)):
            raise errors.PermissionDeniedError("this peer may not relay citizens' tokens")
        conf = self._conf()
        conf.check_fresh(self._clock())  # fail closed on an expired configuration (DESIGN §5)
        if conf.is_revoked(pki.fingerprint(cert), cert.serial_number):
            raise errors.CertificateRevokedError()
        token = rpc.bearer_token(context)
        if not token:
            raise errors.UnauthenticatedError("a citizen token is required")
        claims = self._tokens.verify(token, conf, now=self._clock())
        if claims.role != "citizen" or claims.subject is None:
            raise errors.PermissionDeniedError("citizens only")
        subject: CitizenId = claims.subject
        return subject

    def GetPreferences(
        self, request: notify_pb2.GetPreferencesRequest, context: grpc.ServicerContext
    ) -> notify_pb2.NotifyPreferences:
        subject = self._citizen(context)
        return preferences_pb(self._service.preferences(subject.value))

    def SetPreferences(
        self, request: notify_pb2.SetPreferencesRequest, context: grpc.ServicerContext
    ) -> notify_pb2.NotifyPreferences:
        subject = self._citizen(context)
        p = request.preferences
        stored = self._service.set_preferences(
            subject.value,
            categories_from_pb(p.categories),
            email=p.email,
            app_handle=p.app_handle,
            language=p.language or "vi",
        )
        return preferences_pb(stored)
