"""The trust anchors of a verified global configuration in standard forms; pure, no I/O.

Software that is not CDX checks CDX's evidence with these:

- the audit log's **note verifier key** (c2sp.org/signed-note, ``<name>+<id>+<base64>``), which
  verifies its checkpoints;
- each witness's **cosignature verifier key** (c2sp.org/tlog-cosignature, type 0x04), named as
  the witness signs (``witness_name`` of its server id);
- the consent service's key (its JWS consent artefacts and receipts) and the audit service's key
  (the log's own records) as a **JWKS** (RFC 7517), ``kid`` = CDX key id.

``documents(conf)`` maps the well-known paths the log publishes them at to their bytes.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from cdx import crypto, errors, note
from cdx.globalconf import VerifiedGlobalConf

LOG_KEY_PATH = ".well-known/cdx/log.vkey"
WITNESS_KEYS_PATH = ".well-known/cdx/witnesses.vkeys"
JWKS_PATH = ".well-known/cdx/jwks.json"


def witness_name(server_id: str) -> str:
    """The cosignature key name of a security server (signed-note names hold no ``+``/space)."""
    return urllib.parse.quote(server_id, safe=":'(),-.=?")


def witness_keys(conf: VerifiedGlobalConf) -> dict[str, str]:
    """``server id -> cosignature verifier key`` of every server that registered a witness key."""
    out: dict[str, str] = {}
    for server in sorted(conf.servers.values(), key=lambda s: s.id):
        if server.witness_public_raw:
            try:
                verifier = note.CosignatureVerifier(
                    witness_name(server.id), server.witness_public_raw
                )
            except errors.MalformedError:
                continue  # an unusable registration verifies nothing
            out[server.id] = verifier.key_text()
    return out


def _jwk(der: bytes, use: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm

    key = crypto.public_key_from_der(der)
    jwk: dict[str, Any]
    if isinstance(key, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
        jwk["alg"] = "EdDSA"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
        jwk["alg"] = "ES256"
    else:
        raise errors.UnknownKeyError("not a signing key")
    jwk.update(kid=crypto.key_id(key), use="sig", **{"cdx:use": use})
    return jwk


def jwks(conf: VerifiedGlobalConf) -> dict[str, Any]:
    """The consent service's and the audit service's signing keys as a JWK set.

    Raises:
        MalformedError: a key in the configuration is not a supported public key.
    """
    keys = []
    if conf.consent_service_key_der:
        keys.append(_jwk(conf.consent_service_key_der, "consent-artefacts"))
    if conf.audit_service_key_der:
        keys.append(_jwk(conf.audit_service_key_der, "audit-records"))
    return {"keys": keys}


def documents(conf: VerifiedGlobalConf) -> dict[str, tuple[bytes, str]]:
    """``path -> (bytes, content type)`` of the key documents.

    Raises:
        MalformedError: a key in the configuration is not a supported public key.
    """
    out: dict[str, tuple[bytes, str]] = {}
    if conf.audit_log_key:
        out[LOG_KEY_PATH] = (conf.audit_log_key.encode() + b"\n", "text/plain; charset=utf-8")
    lines = "".join(f"{k}\n" for k in witness_keys(conf).values())
    out[WITNESS_KEYS_PATH] = (lines.encode(), "text/plain; charset=utf-8")
    body = json.dumps(jwks(conf), indent=2, sort_keys=True).encode() + b"\n"
    out[JWKS_PATH] = (body, "application/jwk-set+json")
    return out
