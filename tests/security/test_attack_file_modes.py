"""Another local account reads nothing of an instance: every file ``cdx`` creates is 0600 and
every directory 0700 — databases and their SQLite ``-wal``/``-shm`` files, keys, certificates,
configurations, last-good global configurations (threat model T190).

The instance is provisioned and run as an operator does it (``cdx up``, in its own process,
started with the usual umask 022), and its data directory is walked while it serves.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdx import db

CDX = [sys.executable, "-m", "cdx.cli"]


def _up(config: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*CDX, "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        umask=0o022,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("Press Ctrl-C"):
            return proc
    proc.kill()
    raise AssertionError("cdx up did not come up:\n" + "".join(seen))


def _exposed(root: Path) -> list[str]:
    """Everything under ``root`` (``root`` included) that group or others could use."""
    out = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            out.append(f"{path.relative_to(root.parent)}: {mode:o}, not {want:o}")
    return out


@pytest.fixture
def running_instance(tmp_path: Path) -> tuple[Path, subprocess.Popen[str]]:
    config = tmp_path / "single-box.toml"
    config.write_text('data_dir = "data"\n')
    return tmp_path / "data", _up(config)


def test_a_single_box_data_dir_is_private_to_its_account(
    running_instance: tuple[Path, subprocess.Popen[str]],
) -> None:
    data, proc = running_instance
    try:
        walked = sorted(p.name for p in data.rglob("*"))
        # What the walk must cover: databases with their WAL files, keys, conf copies.
        for name in ("consent.db", "audit.db", "registry.db", "passphrase", "instance.toml"):
            assert name in walked, name
        assert any(n.endswith(".db-wal") for n in walked) and "globalconf.bin" in walked
        assert any(n.endswith(".key") for n in walked)
        assert _exposed(data) == []
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert _exposed(data) == []  # what shutting down wrote too


def test_a_new_sqlite_database_is_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        engine = db.create_engine(db.sqlite_url(tmp_path / "new" / "store.db"))
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [
                "store.db",
                "store.db-shm",
                "store.db-wal",
            ]
            assert _exposed(tmp_path / "new") == []
        engine.dispose()
    finally:
        os.umask(previous)
