"""Unit tests for consent artefacts, subject tags and the development identity provider."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import crypto, errors, globalconf, keyfiles
from cdx.consentpolicy import ConsentTerms
from cdx.ids import CitizenId
from cdx.tokens import citizen_audience, verify_token
from cdx.v1 import registry_pb2
from consent.artefact import ARTEFACT_TYPE, sign_artefact, sign_jws, verify_artefact
from consent.idp import init_dev_idp, load_dev_idp, mint_portal_token
from consent.model import subject_tag, terms_from_json, terms_to_json

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = ed25519.Ed25519PrivateKey.generate()
SIGNER = crypto.KeySigner(KEY)
TERMS = ConsentTerms(
    subject=CitizenId("079090000001"),
    grantee="VN:GOV:VSS:benefits",
    services=("VN:GOV:GDT:income/income/v1",),
    purpose="SOCIAL_BENEFIT_ELIGIBILITY",
    fields=frozenset({"annual_income", "tax_year"}),
    valid_from=NOW,
    valid_until=NOW + timedelta(days=30),
    data_from=date(2020, 1, 1),
    max_uses=3,
    retention_days=30,
)


def artefact(**kw: object) -> str:
    args: dict[str, object] = {
        "consent_id": "c-1",
        "issuer": "urn:cdx:VN:consent",
        "issued_at": NOW,
        "supersedes": "",
    }
    args.update(kw)
    return sign_artefact(SIGNER, TERMS, **args)  # type: ignore[arg-type]


def test_terms_json_round_trip() -> None:
    assert terms_from_json(terms_to_json(TERMS)) == TERMS


def test_artefact_verifies_here_and_with_pyjwt() -> None:
    token = artefact(supersedes="c-0")
    ours = verify_artefact(token, KEY.public_key())
    theirs = jwt.decode(
        token,
        KEY.public_key(),
        algorithms=["EdDSA"],
        options={"verify_exp": False, "verify_nbf": False},
    )
    assert ours == theirs
    assert ours["supersedes"] == "c-0" and ours["sub"] == "079090000001"
    assert ours["exp"] == int((NOW + timedelta(days=30)).timestamp())
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": SIGNER.key_id, "typ": ARTEFACT_TYPE}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_or_foreign_artefacts_are_refused() -> None:
    token = artefact()
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["fields"] = ["annual_income", "tax_year", "employer"]
    with pytest.raises(errors.SignatureError):
        verify_artefact(f"{head}.{_b64(json.dumps(claims).encode())}.{sig}", KEY.public_key())
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(errors.SignatureError):
        verify_artefact(token, other.public_key())
    none_head = _b64(json.dumps({"alg": "none", "typ": ARTEFACT_TYPE}).encode())
    with pytest.raises(errors.SignatureError):
        verify_artefact(f"{none_head}.{body}.", KEY.public_key())
    receipt_like = sign_jws(SIGNER, b'{"consent_id":"c-1"}', "cdx-consent-receipt+jwt")
    with pytest.raises(errors.MalformedError):
        verify_artefact(receipt_like, KEY.public_key())
    for garbage in ("", "a.b", "a.b.c.d", "!!!.???.###", "x" * 70_000):
        with pytest.raises((errors.MalformedError, errors.SignatureError)):
            verify_artefact(garbage, KEY.public_key())


def test_subject_tag_is_keyed() -> None:
    alice = CitizenId("079090000001")
    key_a, key_b = b"a" * 32, b"b" * 32
    assert subject_tag(key_a, alice) == subject_tag(key_a, alice)
    assert subject_tag(key_a, alice) != subject_tag(key_b, alice)
    assert "079090000001" not in subject_tag(key_a, alice)


# --- development identity provider ---------------------------------------------------------------


def conf_with(
    idp_info: globalconf.IdentityProviderInfo | None, *, production: bool
) -> globalconf.VerifiedGlobalConf:
    registry_key = ed25519.Ed25519PrivateKey.generate()
    conf = registry_pb2.GlobalConf(
        instance="VN",
        version=1,
        issued_at_ms=int(NOW.timestamp() * 1000),
        expires_at_ms=int((NOW + timedelta(minutes=10)).timestamp() * 1000),
    )
    conf.anchors.production = production
    if idp_info is not None:
        conf.anchors.identity_providers.add(
            issuer=idp_info.issuer,
            public_key=idp_info.public_key_der,
            development=idp_info.development,
        )
    raw = globalconf.sign_global_conf(conf, crypto.KeySigner(registry_key))
    anchor = globalconf.Anchor("VN", registry_key.public_key())
    return globalconf.verify_global_conf(raw, anchor, NOW)


def test_dev_idp_tokens_verify_and_are_refused_in_production(tmp_path: Path) -> None:
    idp = init_dev_idp(tmp_path, "VN", b"pass")
    assert (tmp_path / "idp" / "idp.key").stat().st_mode & 0o077 == 0
    assert load_dev_idp(tmp_path, b"pass").public_key_der == idp.public_key_der
    assert init_dev_idp(tmp_path, "VN", b"pass").key_id == idp.key_id  # idempotent
    conf = conf_with(idp.registration(), production=False)
    token = mint_portal_token(tmp_path, b"pass", "079090000001", conf=conf, now=NOW)
    claims = verify_token(
        token,
        conf.identity_providers,
        audience=citizen_audience("VN"),
        now=NOW,
        production=False,
        instance="VN",
    )
    assert claims.subject == CitizenId("079090000001") and claims.role == "citizen"
    with pytest.raises(errors.TokenError):
        verify_token(
            token, conf.identity_providers, audience=citizen_audience("VN"), now=NOW,
            production=True,
        )  # fmt: skip
    with pytest.raises(errors.FailedPreconditionError, match="production"):
        idp.issue("079090000001", conf=conf_with(None, production=True), now=NOW)
    with pytest.raises(errors.FailedPreconditionError, match="not registered"):
        mint_portal_token(
            tmp_path, b"pass", "079090000001", conf=conf_with(None, production=False), now=NOW
        )
    with pytest.raises(errors.InvalidCitizenIdError):
        idp.issue("12345", conf=conf, now=NOW)
    inspector = idp.issue("dpa-7", conf=conf, now=NOW, role="inspector")
    assert jwt.decode(inspector, options={"verify_signature": False})["role"] == "inspector"


def test_dev_idp_refuses_another_instance_and_bad_passphrase(tmp_path: Path) -> None:
    init_dev_idp(tmp_path, "VN", b"pass")
    with pytest.raises(errors.InvalidArgumentError):
        init_dev_idp(tmp_path, "XX", b"pass")
    with pytest.raises(errors.KeyStoreError):
        load_dev_idp(tmp_path, b"wrong")
    with pytest.raises(errors.NotFoundError):
        load_dev_idp(tmp_path / "elsewhere", b"pass")


def test_tag_key_of_an_instance_without_a_tag_key_file_is_derived(tmp_path: Path) -> None:
    from consent.instance import ConsentPaths, derive_tag_key

    paths = ConsentPaths(tmp_path)
    paths.dir.mkdir()
    keyfiles.save_private_key(paths.signing_key, KEY, b"pass")
    derived = paths.tag_secret(b"pass")
    assert derived == derive_tag_key(KEY) and len(derived) == 32
    assert paths.read_settings()["listen"]  # defaults without consent.json
    other = ed25519.Ed25519PrivateKey.generate()
    assert derive_tag_key(other) != derived


def test_data_key_of_an_instance_without_a_data_key_file_is_derived_and_rotates(
    tmp_path: Path,
) -> None:
    from consent.instance import ConsentPaths, derive_tag_key, rotate_data_key
    from consent.sealing import derive_data_key, key_id

    paths = ConsentPaths(tmp_path)
    paths.dir.mkdir()
    keyfiles.save_private_key(paths.signing_key, KEY, b"pass")
    derived = derive_data_key(derive_tag_key(KEY))
    assert paths.data_secret(b"pass") == derived and derived != paths.tag_secret(b"pass")
    assert paths.data_keys(b"pass").retired_ids == ()
    with pytest.raises(errors.FailedPreconditionError, match="cdx up"):
        rotate_data_key(tmp_path, b"pass")  # `cdx up` runs it: it would not read a new key

    # A service set up by `cdx consent init` before data keys existed: consent.json, no data.key.
    paths.settings.write_text('{"format": "cdx-consent/v1"}')
    old_id, new_id = rotate_data_key(tmp_path, b"pass")
    assert old_id == key_id(derived) != new_id
    assert paths.retired_data_keys() == [paths.retired_data_key(old_id)]
    for path in (paths.data_key, paths.retired_data_key(old_id)):
        assert path.stat().st_mode & 0o077 == 0
    keys = paths.data_keys(b"pass")
    assert (keys.current_id, keys.retired_ids) == (new_id, (old_id,))
    with pytest.raises(errors.KeyStoreError):
        paths.data_keys(b"wrong")
