"""A PostgreSQL server of the test run's own: ``initdb`` in a temporary directory, ``pg_ctl``.

``LocalPostgres.create()`` runs the server binaries installed on the machine
(``/usr/lib/postgresql/<version>/bin``, or ``initdb``/``pg_ctl`` on ``PATH``) as the current
user, or as ``postgres`` through ``runuser`` when running as root (``initdb`` refuses root).
The server listens on a Unix socket in its own directory only, never on a TCP port, so two
test processes can never race for a port. ``tests/conftest.py`` starts one per test process
when ``CDX_TEST_POSTGRES_URL`` is not set; fault tests start their own to restart it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa

from tests.waiting import eventually

USER = "postgres"


def server_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest installed version), if any."""
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        for version in sorted(base.iterdir(), reverse=True):
            if (version / "bin" / "initdb").exists() and (version / "bin" / "pg_ctl").exists():
                return version / "bin"
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def unavailable_reason() -> str | None:
    """Why ``LocalPostgres.create()`` cannot work here (``None``: it can)."""
    if server_binaries() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl; Debian: apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb refuses to run as root"
    return None


class LocalPostgres:
    """A PostgreSQL cluster in ``datadir``, reachable at ``url`` over its Unix socket."""

    def __init__(self, bindir: Path, datadir: Path, as_user: list[str]) -> None:
        self.bindir, self.datadir, self.as_user = bindir, datadir, as_user
        self.url = f"postgresql://{USER}@/postgres?host={datadir}"

    @classmethod
    def create(cls) -> LocalPostgres:
        """``initdb`` a new cluster (trust authentication, user ``postgres``) and start it.

        Raises:
            RuntimeError: see ``unavailable_reason``; or initdb / the server failed.
        """
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        bindir = server_binaries()
        assert bindir is not None
        as_user = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
        # As root, the cluster belongs to ``postgres``, who must reach it: /tmp, not a private
        # temporary directory.
        datadir = Path(tempfile.mkdtemp(prefix="cdx-pg-", dir="/tmp" if as_user else None))
        if as_user:
            shutil.chown(datadir, USER, USER)
        server = cls(bindir, datadir, as_user)
        try:
            server._run(
                "initdb", "-D", str(datadir), "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8"
            )
            server.start()
        except BaseException:
            server.destroy()
            raise
        return server

    def _run(self, program: str, *args: str) -> None:
        try:
            subprocess.run(
                [*self.as_user, str(self.bindir / program), *args],
                check=True,
                capture_output=True,
                timeout=120,
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{program} failed: {' / '.join(detail)}") from exc

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-k {self.datadir} -c listen_addresses='' -c max_connections=300 "
            "-c shared_buffers=32MB"
        )
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-o", options,
            "-l", str(self.datadir / "server.log"), "-w", "start",
        )  # fmt: skip
        self.wait()

    def restart(self) -> None:
        # stop + start rather than `pg_ctl restart`, so the new server gets its log file and
        # does not inherit (and hold open) this process's pipes.
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        """Stop the server and delete the cluster."""
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)

    def wait(self, timeout: float = 60.0) -> None:
        """Wait until a connection succeeds."""
        engine = sa.create_engine(
            self.url.replace("postgresql://", "postgresql+psycopg://", 1),
            poolclass=sa.pool.NullPool,
        )

        def connects() -> bool:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True

        try:
            eventually(
                connects,
                timeout=timeout,
                interval=0.2,
                retry_on=(sa.exc.OperationalError,),
                what="PostgreSQL accepting connections",
            )
        finally:
            engine.dispose()
