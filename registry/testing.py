"""Helpers for tests and demos: generate a security server's keys and register it.

A real server makes its keys itself and sends only CSRs and public keys (``cdx security-server
init``); this module does the same in one process so tests can set up agencies quickly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from cdx import crypto, pki
from cdx.rpc import TlsIdentity
from registry.model import ServerCertificates


@dataclass(frozen=True)
class ServerKeys:
    """The private keys a security server holds, and the CSRs/public keys it registers."""

    server_id: str
    auth_key: crypto.PrivateSigningKey = field(repr=False)
    signing_key: crypto.PrivateSigningKey = field(repr=False)
    hpke_key: x25519.X25519PrivateKey = field(repr=False)
    witness_key: ed25519.Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, server_id: str) -> ServerKeys:
        return cls(
            server_id,
            crypto.generate_signing_key("ecdsa-p256"),
            crypto.generate_signing_key("ecdsa-p256"),
            crypto.generate_hpke_key(),
            ed25519.Ed25519PrivateKey.generate(),
        )

    def auth_csr(self) -> bytes:
        return pki.build_csr(self.auth_key, self.server_id[-64:])

    def signing_csr(self) -> bytes:
        return pki.build_csr(self.signing_key, self.server_id[-64:])

    @property
    def hpke_public_raw(self) -> bytes:
        return crypto.raw_x25519_public(self.hpke_key.public_key())

    @property
    def witness_public_raw(self) -> bytes:
        return self.witness_key.public_key().public_bytes_raw()

    def identity(self, certs: ServerCertificates) -> TlsIdentity:
        """The server's mTLS identity (auth certificate + key) once registered."""
        key_pem = self.auth_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),  # in memory only
        )
        return TlsIdentity(certs.auth_cert_pem, key_pem, certs.ca_pem)


def register_server(
    registrar: object,
    server_id: str,
    address: str,
    subsystems: Sequence[str],
    *,
    actor: str | None = None,
) -> tuple[ServerKeys, ServerCertificates]:
    """Generate keys for ``server_id`` and register it through a ``RegistryService`` (pass
    ``actor``) or a ``RegistryAdminClient`` (no actor: the admin certificate is the actor)."""
    keys = ServerKeys.generate(server_id)
    args = (
        server_id,
        address,
        keys.auth_csr(),
        keys.signing_csr(),
        keys.hpke_public_raw,
        list(subsystems),
    )
    kwargs = {"witness_public_raw": keys.witness_public_raw}
    if actor is not None:
        certs = registrar.register_server(*args, actor, **kwargs)  # type: ignore[attr-defined]
    else:
        certs = registrar.register_server(*args, **kwargs)  # type: ignore[attr-defined]
    assert isinstance(certs, ServerCertificates)
    return keys, certs
