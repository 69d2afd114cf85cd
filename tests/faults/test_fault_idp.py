"""The identity provider goes away: people already logged in keep working (sessions are the
portal's own, and relayed tokens verify from the cached keys), while a new login fails with a
clear, coded unavailability instead of hanging or crashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdx import errors
from cdx.clock import utcnow
from tests.integration.test_oidc_provider import CALLBACK, CITIZEN, Clock, log_in, relying_party
from tests.oidc_provider.external import ExternalProvider


def test_identity_provider_down_keeps_logged_in_users_and_refuses_new_logins_clearly(
    tmp_path: Path,
) -> None:
    provider = ExternalProvider(tmp_path, ["https://portal.test"]).start()
    try:
        idp, verifier, world = relying_party(provider, Clock())
        login = log_in(idp, provider, CITIZEN)
        pending = idp.begin(provider.issuer, CALLBACK)
    finally:
        provider.stop()
    # The services keep accepting the relayed token: the keys are cached.
    assert verifier.verify(login.id_token, world.conf, now=utcnow()).subject is not None
    # A login in flight cannot finish: the token endpoint is gone.
    with pytest.raises(errors.IdentityProviderUnavailableError):
        idp.complete(
            pending,
            code="a-code",
            returned_issuer=provider.issuer,
            redirect_uri=CALLBACK,
            now=utcnow(),
        )
