"""Secrets on disk: encrypted private-key files, the passphrase file, and mTLS identities.

The key material itself is ``cdx.crypto``'s (``private_key_to_pem`` / ``private_key_from_pem``);
this module is the file I/O around it:

- a private key is written atomically, mode 0600 from creation, encrypted under a passphrase;
- loading refuses a symbolic link, anything but a regular file, a file accessible by group or
  others, an oversized file, and every decryption failure, each with a ``KeyStoreError`` that
  names the file and says what to do;
- the passphrase file must be 0600 and non-empty;
- an mTLS identity (certificate, encrypted key, CA) is decrypted in memory only.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import x25519

from cdx import crypto, errors
from cdx.files import FILE_MODE, read_file, write_atomically
from cdx.rpc import TlsIdentity

__all__ = [
    "ensure_passphrase",
    "load_hpke_key",
    "load_identity",
    "load_private_key",
    "load_signing_key",
    "load_tls_key_pem",
    "read_passphrase",
    "save_private_key",
]

_MAX_KEY_FILE_BYTES = 64 * 1024


def save_private_key(
    path: str | os.PathLike[str], key: crypto.PrivateKey, passphrase: bytes
) -> None:
    """Write ``key`` encrypted under ``passphrase``, atomically, mode 0600 from creation.

    A crash leaves either the old key or the new one, never a partial file.

    Raises:
        InvalidArgumentError: the passphrase is empty or not bytes.
        UnknownKeyError: the key is not an ECDSA P-256, Ed25519 or X25519 private key.
        KeyStoreError: the file could not be written.
    """
    pem = crypto.private_key_to_pem(key, passphrase)
    target = Path(os.path.abspath(os.fspath(path)))
    try:
        write_atomically(target, pem, FILE_MODE)
    except OSError as exc:
        raise errors.KeyStoreError(
            f"cannot write the key file {target}: {exc.strerror or type(exc).__name__}"
        ) from exc


def load_private_key(path: str | os.PathLike[str], passphrase: bytes) -> crypto.PrivateKey:
    """Load a key written by ``save_private_key``.

    Raises:
        KeyStoreError: the file is missing, a symbolic link or not a regular file, accessible
            by group or others (any of mode bits 0o077), too large, not encrypted, encrypted
            under another passphrase, corrupted, or holds an unsupported key type.
    """
    where = os.fspath(path)
    if not isinstance(passphrase, bytes) or not passphrase:
        raise errors.KeyStoreError(f"no passphrase to open the key file {where}")
    try:
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise errors.KeyStoreError(f"cannot open the key file {where}: {reason}") from exc
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise errors.KeyStoreError(f"the key file {where} is not a regular file")
        if mode & 0o077:
            raise errors.KeyStoreError(
                f"the key file {where} is accessible by group or others: chmod 600 {where}"
            )
        data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise errors.KeyStoreError(f"the key file {where} is too large to be a key")
    try:
        return crypto.private_key_from_pem(data, passphrase)
    except errors.KeyStoreError as exc:
        raise errors.KeyStoreError(
            f"cannot decrypt the key file {where}: {exc.message} "
            "(check the passphrase file the command uses)"
        ) from exc


def load_signing_key(path: str | os.PathLike[str], passphrase: bytes) -> crypto.PrivateSigningKey:
    """``load_private_key`` that also requires a signing key (ECDSA P-256 or Ed25519).

    Raises:
        KeyStoreError: as ``load_private_key``, or the file holds an X25519 key.
    """
    key = load_private_key(path, passphrase)
    if isinstance(key, x25519.X25519PrivateKey):
        raise errors.KeyStoreError(
            f"the key file {os.fspath(path)} holds an X25519 key, not a signing key"
        )
    return key


def load_hpke_key(path: str | os.PathLike[str], passphrase: bytes) -> x25519.X25519PrivateKey:
    """``load_private_key`` that also requires an X25519 HPKE key.

    Raises:
        KeyStoreError: as ``load_private_key``, or the file holds a signing key.
    """
    key = load_private_key(path, passphrase)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise errors.KeyStoreError(
            f"the key file {os.fspath(path)} holds a signing key, not an X25519 key"
        )
    return key


# --- the passphrase file -------------------------------------------------------------------------


def read_passphrase(path: Path) -> bytes:
    """Read a key-store passphrase file (mode 0600, trailing newline stripped).

    Raises:
        NotFoundError: the file is missing.
        FailedPreconditionError: it cannot be read.
        KeyStoreError: the file is accessible by group or others, or empty.
    """
    data = read_file(path, "passphrase file").rstrip(b"\r\n")
    if path.stat().st_mode & 0o077:
        raise errors.KeyStoreError(
            f"the passphrase file {path} is accessible by group or others: chmod 600 {path}"
        )
    if not data:
        raise errors.KeyStoreError(f"the passphrase file {path} is empty")
    return data


def ensure_passphrase(path: Path, passphrase: bytes | None = None) -> bytes:
    """Return the passphrase in ``path``, creating the file (0600) with a new one when missing.

    Raises:
        InvalidArgumentError: ``passphrase`` differs from the one already on disk.
        KeyStoreError: as ``read_passphrase``.
    """
    if path.exists():
        existing = read_passphrase(path)
        if passphrase is not None and not crypto.constant_time_equal(existing, passphrase):
            raise errors.InvalidArgumentError(f"a different passphrase is already in {path}")
        return existing
    value = passphrase if passphrase is not None else secrets.token_urlsafe(32).encode()
    write_atomically(path, value + b"\n", FILE_MODE)
    return value


# --- mTLS identities -----------------------------------------------------------------------------


def load_identity(cert: Path, key: Path, ca: Path, passphrase: bytes) -> TlsIdentity:
    """Load an mTLS identity whose key is stored encrypted; the key is decrypted in memory only.

    Raises:
        NotFoundError: the certificate or the CA file is missing.
        KeyStoreError: the key cannot be opened or decrypted, or has an unsafe mode.
    """
    private = load_signing_key(key, passphrase)
    return TlsIdentity(
        cert_pem=read_file(cert, "certificate"),
        key_pem=crypto.private_key_to_unencrypted_pem(private),
        ca_pem=read_file(ca, "CA certificate"),
    )


def load_tls_key_pem(path: Path, passphrase_file: Path | None) -> bytes:
    """PEM of a TLS private key stored in clear or encrypted (``passphrase_file`` opens it).

    Keys CDX writes are always encrypted; an information system may bring its own in clear.

    Raises:
        NotFoundError: the file is missing.
        InvalidArgumentError: the key is encrypted and no passphrase file is given.
        KeyStoreError: as ``load_signing_key`` and ``read_passphrase``.
    """
    data = read_file(path, "key file")
    if b"ENCRYPTED" not in data:
        return data
    if passphrase_file is None:
        raise errors.InvalidArgumentError(
            f"the key {path} is encrypted: give its passphrase file (--key-passphrase-file)"
        )
    key = load_signing_key(path, read_passphrase(passphrase_file))
    return crypto.private_key_to_unencrypted_pem(key)
