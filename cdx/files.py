"""Files of an instance: private directories, atomic writes, reads with a clear error.

Every file CDX writes (configurations, certificates, keys, the last good global configuration)
is replaced atomically — temporary file, fsync, rename, fsync of the directory — so a crash
leaves the old file or the new one, whole. What CDX creates is private to the account that runs
it: files are mode 0600 from creation and the directories it creates are 0700 (threat model
T190). ``cdx.cli`` also sets the process umask to 0077, so files that libraries create (SQLite's
``-wal`` and ``-shm``, for one) are private too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cdx import errors

__all__ = ["DIR_MODE", "FILE_MODE", "make_private_dir", "read_file", "write_atomically"]

#: Mode of every file CDX creates, and of every directory it creates.
FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700 (existing ones are left alone).

    ``Path.mkdir(parents=True)`` would create the parents with the umask's default mode.

    Raises:
        OSError: a directory cannot be created.
    """
    missing: list[Path] = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            directory.mkdir(mode=DIR_MODE)
            os.chmod(directory, DIR_MODE)  # the umask may have narrowed or widened it


def write_atomically(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole.

    Raises:
        OSError: the file cannot be written.
    """
    directory = Path(path).parent
    make_private_dir(directory)
    tmp = directory / f".{Path(path).name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
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
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def read_file(path: Path, what: str = "file") -> bytes:
    """Read a file the caller needs; ``what`` names it in the error ("anchor file").

    Raises:
        NotFoundError: the file does not exist.
        FailedPreconditionError: it exists but cannot be read (permissions, a directory).
    """
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise errors.NotFoundError(f"missing {what} {path}") from exc
    except OSError as exc:
        raise errors.FailedPreconditionError(
            f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}"
        ) from exc
