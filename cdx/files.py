"""Files of an instance: atomic writes, reads with a clear error, the passphrase file.

Every file CDX writes (configurations, certificates, the last good global configuration) is
replaced atomically — temporary file, fsync, rename, fsync of the directory — so a crash
leaves the old file or the new one, whole. Private keys have their own writer in
``cdx.crypto.save_private_key`` (encrypted, 0600 from creation).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cdx import errors


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_file(path: Path) -> bytes:
    """Read a file the caller needs.

    Raises:
        NotFoundError: the file does not exist.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise errors.NotFoundError(f"missing file {path}") from exc


def read_passphrase(path: Path) -> bytes:
    """Read a key-store passphrase file (mode 0600, trailing newline stripped).

    Raises:
        NotFoundError: the file is missing.
        KeyStoreError: the file is accessible by group or others, or empty.
    """
    try:
        mode = path.stat().st_mode
        data = path.read_bytes().rstrip(b"\r\n")
    except FileNotFoundError as exc:
        raise errors.NotFoundError(f"no passphrase file at {path}") from exc
    if mode & 0o077:
        raise errors.KeyStoreError("the passphrase file is accessible by group or others")
    if not data:
        raise errors.KeyStoreError("the passphrase file is empty")
    return data
