"""Consent artefacts and receipts as compact JWS (RFC 7515) signed with EdDSA (RFC 8037).

An artefact is the granted terms, signed once by the consent service and never edited: a change
of terms is a new artefact whose ``supersedes`` claim names the consent it replaces. Its status
(active, paused, revoked) lives outside the signature. Any JOSE library verifies one with the
consent service's Ed25519 key from global configuration (``anchors.consent_service_key``)::

    jwt.decode(artefact, public_key, algorithms=["EdDSA"], options={"verify_aud": False})

Claims: ``iss``, ``jti`` and ``consent_id`` (the consent id), ``iat``, ``nbf``/``exp`` (the
validity as NumericDate), the terms (``sub``, ``grantee``, ``services``, ``purpose``,
``fields``, ``data_from``, ``data_until``, ``valid_from``, ``valid_until``, ``max_uses``,
``retention_days``) and ``supersedes`` (empty for an original consent). The header carries
``kid`` = the CDX key id of the signing key and ``typ`` = ``cdx-consent+jwt``.

Signing goes through a ``Signer`` (an HSM can hold the key); verification here takes the key
(never the header) to fix the algorithm.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from cdx import crypto, errors
from cdx.consentpolicy import ConsentTerms
from consent.model import canonical_json, terms_to_json

ARTEFACT_TYPE = "cdx-consent+jwt"
RECEIPT_TYPE = "cdx-consent-receipt+jwt"
MAX_JWS_CHARS = 64 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise errors.MalformedError("not base64url") from exc


def sign_jws(signer: crypto.Signer, payload: bytes, typ: str) -> str:
    """Compact JWS of ``payload`` with ``alg: EdDSA`` (the signer must hold an Ed25519 key)."""
    header = canonical_json({"alg": "EdDSA", "kid": signer.key_id, "typ": typ}).encode()
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    return f"{signing_input}.{_b64(signer.sign(signing_input.encode('ascii')))}"


def verify_jws(jws: str, public_key: ed25519.Ed25519PublicKey, typ: str) -> bytes:
    """Verify a compact JWS from ``sign_jws`` and return its payload bytes.

    Raises:
        MalformedError: not a compact JWS, or not of type ``typ``.
        SignatureError: the signature does not verify, or the header is not EdDSA.
    """
    if not isinstance(jws, str) or len(jws) > MAX_JWS_CHARS or jws.count(".") != 2:
        raise errors.MalformedError("not a compact JWS")
    head, body, sig = jws.split(".")
    try:
        header = json.loads(_unb64(head))
    except ValueError as exc:
        raise errors.MalformedError("the JWS header is not JSON") from exc
    if not isinstance(header, dict) or header.get("typ") != typ:
        raise errors.MalformedError("unexpected JWS type")
    if header.get("alg") != "EdDSA" or "crit" in header:
        raise errors.SignatureError()
    crypto.verify(public_key, _unb64(sig), f"{head}.{body}".encode("ascii"))
    return _unb64(body)


def artefact_claims(
    terms: ConsentTerms, *, consent_id: str, issuer: str, issued_at: datetime, supersedes: str
) -> dict[str, Any]:
    """The claims an artefact signs (see the module docstring)."""
    claims = terms_to_json(terms)
    claims.update(
        {
            "iss": issuer,
            "jti": consent_id,
            "consent_id": consent_id,
            "iat": int(issued_at.timestamp()),
            "nbf": int(terms.valid_from.timestamp()),
            "exp": int(terms.valid_until.timestamp()),
            "supersedes": supersedes,
        }
    )
    return claims


def sign_artefact(
    signer: crypto.Signer,
    terms: ConsentTerms,
    *,
    consent_id: str,
    issuer: str,
    issued_at: datetime,
    supersedes: str = "",
) -> str:
    """Sign the granted terms as a consent artefact (compact JWS)."""
    claims = artefact_claims(
        terms, consent_id=consent_id, issuer=issuer, issued_at=issued_at, supersedes=supersedes
    )
    return sign_jws(signer, canonical_json(claims).encode(), ARTEFACT_TYPE)


def verify_artefact(jws: str, public_key: ed25519.Ed25519PublicKey) -> dict[str, Any]:
    """Verify an artefact and return its claims (validity is the caller's to judge).

    Raises:
        MalformedError: not an artefact.
        SignatureError: not signed by ``public_key``.
    """
    try:
        claims = json.loads(verify_jws(jws, public_key, ARTEFACT_TYPE))
    except ValueError as exc:
        raise errors.MalformedError("the artefact payload is not JSON") from exc
    if not isinstance(claims, dict) or not claims.get("consent_id"):
        raise errors.MalformedError("not a consent artefact")
    return claims
