"""A security server's keys and certificates on disk (DESIGN §5), loaded in one place.

Layout of ``DATA/servers/<code>/`` (private keys encrypted with the instance passphrase, 0600)::

    auth.key     auth.pem      ECDSA P-256 TLS key + registry-issued auth certificate
    signing.key  signing.pem   ECDSA P-256 message/record signing key + signing certificate
    hpke.key                   X25519 key that opens request bodies (public half in global conf)
    witness.key                Ed25519 key that cosigns audit-log checkpoints
    ca.pem                     the instance CA (from the registry)
    anchor.json                the registry key + instance id, installed out of band
    globalconf.bin             last good global configuration (kept by the conf client)
    auth.csr signing.csr       the certificate requests made at init (kept for re-registration)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cdx import crypto, errors, keyfiles, pki
from cdx.files import write_atomically
from cdx.globalconf import Anchor
from cdx.ids import SecurityServerId
from cdx.rpc import TlsIdentity

AUTH_KEY = "auth.key"
AUTH_CERT = "auth.pem"
AUTH_CSR = "auth.csr"
SIGNING_KEY = "signing.key"
SIGNING_CERT = "signing.pem"
SIGNING_CSR = "signing.csr"
HPKE_KEY = "hpke.key"
WITNESS_KEY = "witness.key"
CA_CERT = "ca.pem"
ANCHOR = "anchor.json"
GLOBAL_CONF = "globalconf.bin"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise errors.NotFoundError(f"missing file {path.name} in {path.parent}") from exc


@dataclass(frozen=True)
class GeneratedKeys:
    """Fresh keys and CSRs made by ``generate_keys`` (private keys already saved)."""

    auth_csr_pem: bytes
    signing_csr_pem: bytes
    hpke_public_raw: bytes
    witness_public_raw: bytes


def generate_keys(
    data_dir: Path,
    server_id: str,
    passphrase: bytes,
    *,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> GeneratedKeys:
    """Generate the server's four keys, save them encrypted and write the two CSRs.

    Raises:
        AlreadyExistsError: keys already exist in ``data_dir``.
    """
    if (data_dir / SIGNING_KEY).exists() or (data_dir / AUTH_KEY).exists():
        raise errors.AlreadyExistsError(f"keys already exist in {data_dir}")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    auth = crypto.generate_signing_key("ecdsa-p256")
    signing = crypto.generate_signing_key("ecdsa-p256")
    hpke = crypto.generate_hpke_key()
    witness = ed25519.Ed25519PrivateKey.generate()
    for name, key in (
        (AUTH_KEY, auth),
        (SIGNING_KEY, signing),
        (HPKE_KEY, hpke),
        (WITNESS_KEY, witness),
    ):
        keyfiles.save_private_key(data_dir / name, key, passphrase)
    uri = SecurityServerId.parse(server_id).uri()
    auth_csr = pki.build_csr(
        auth, server_id[-64:], uri=uri, dns_names=dns_names, ip_addresses=ip_addresses
    )
    signing_csr = pki.build_csr(signing, server_id[-64:], uri=uri)
    write_atomically(data_dir / AUTH_CSR, auth_csr)
    write_atomically(data_dir / SIGNING_CSR, signing_csr)
    return GeneratedKeys(
        auth_csr,
        signing_csr,
        crypto.raw_x25519_public(hpke.public_key()),
        witness.public_key().public_bytes_raw(),
    )


def install_certificates(
    data_dir: Path, *, auth_cert_pem: bytes, signing_cert_pem: bytes, ca_cert_pem: bytes
) -> None:
    """Store the certificates the registry issued, after checking they match our keys.

    Raises:
        MalformedError: not PEM certificates.
        KeyStoreError: a certificate is for another key than the one generated here.
    """
    for cert_pem, csr_name in ((auth_cert_pem, AUTH_CSR), (signing_cert_pem, SIGNING_CSR)):
        cert = pki.cert_from_pem(cert_pem)
        csr = x509.load_pem_x509_csr(_read(data_dir / csr_name))
        if crypto.public_key_to_der(cert.public_key()) != crypto.public_key_to_der(  # type: ignore[arg-type]
            csr.public_key()  # type: ignore[arg-type]
        ):
            raise errors.KeyStoreError("an issued certificate does not match this server's key")
    pki.cert_from_pem(ca_cert_pem)
    write_atomically(data_dir / AUTH_CERT, auth_cert_pem)
    write_atomically(data_dir / SIGNING_CERT, signing_cert_pem)
    write_atomically(data_dir / CA_CERT, ca_cert_pem)


@dataclass(frozen=True)
class ServerKeys:
    """Everything secret a running server holds, loaded from its data directory."""

    server_id: str
    signer: crypto.KeySigner
    hpke_key: x25519.X25519PrivateKey = field(repr=False)
    witness_key: ed25519.Ed25519PrivateKey = field(repr=False)
    tls: TlsIdentity = field(repr=False)
    auth_cert: x509.Certificate
    signing_cert: x509.Certificate
    ca_cert: x509.Certificate
    anchor: Anchor

    def outbox_key(self) -> bytes:
        """The AES-256 key that encrypts record openings at rest (HKDF of the HPKE key)."""
        raw = self.hpke_key.private_bytes_raw()
        return HKDF(hashes.SHA256(), 32, salt=None, info=b"cdx/outbox-key/v1").derive(raw)


def load_keys(data_dir: Path, server_id: str, passphrase: bytes) -> ServerKeys:
    """Load and cross-check the server's keys and certificates.

    Raises:
        NotFoundError: a file is missing (run ``cdx security-server init``).
        KeyStoreError: a key cannot be decrypted, or a certificate does not match its key or
            names another server.
        MalformedError: a certificate or the anchor does not parse.
    """
    auth = keyfiles.load_signing_key(data_dir / AUTH_KEY, passphrase)
    signing = keyfiles.load_signing_key(data_dir / SIGNING_KEY, passphrase)
    hpke = keyfiles.load_hpke_key(data_dir / HPKE_KEY, passphrase)
    witness = keyfiles.load_private_key(data_dir / WITNESS_KEY, passphrase)
    if not isinstance(witness, ed25519.Ed25519PrivateKey):
        raise errors.KeyStoreError("the witness key must be an Ed25519 key")
    auth_pem = _read(data_dir / AUTH_CERT)
    auth_cert = pki.cert_from_pem(auth_pem)
    signing_cert = pki.cert_from_pem(_read(data_dir / SIGNING_CERT))
    ca_pem = _read(data_dir / CA_CERT)
    ca_cert = pki.cert_from_pem(ca_pem)
    anchor = Anchor.from_json(_read(data_dir / ANCHOR))
    for cert, key in ((auth_cert, auth), (signing_cert, signing)):
        if crypto.public_key_to_der(cert.public_key()) != crypto.public_key_to_der(  # type: ignore[arg-type]
            key.public_key()
        ):
            raise errors.KeyStoreError("a certificate does not match its private key")
        if str(pki.server_id_of(cert)) != server_id:
            raise errors.KeyStoreError("a certificate names another server")
    key_pem = auth.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # in memory only: gRPC core needs the key in clear
    )
    return ServerKeys(
        server_id=server_id,
        signer=crypto.KeySigner(signing),
        hpke_key=hpke,
        witness_key=witness,
        tls=TlsIdentity(cert_pem=auth_pem, key_pem=key_pem, ca_pem=ca_pem),
        auth_cert=auth_cert,
        signing_cert=signing_cert,
        ca_cert=ca_cert,
        anchor=anchor,
    )
