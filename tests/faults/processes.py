"""Running CDX commands as real processes in fault tests (so that they can be SIGKILLed)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from stack.agency import RunningAgency, serve_banner_addresses

CDX = Path(sys.executable).with_name("cdx")


def spawn(args: list[str], ready: str, timeout: float = 60.0) -> subprocess.Popen[str]:
    """Start ``cdx *args`` and wait until a line of its output contains ``ready``."""
    return spawn_reading(args, ready, timeout)[0]


def spawn_reading(
    args: list[str], ready: str, timeout: float = 60.0
) -> tuple[subprocess.Popen[str], str]:
    """Start ``cdx *args``; wait for, and return, the first output line containing ``ready``
    (a server prints the address it bound there).

    The output keeps being read (a full pipe would block the process); if ``ready`` does not
    appear in time, or the process exits, it is killed and the test fails with its output.
    """
    proc = subprocess.Popen(
        [str(CDX), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name=f"cdx-{args[0]}-output").start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is not None:
            seen.append(line)
            if ready in line:
                return proc, line.strip()
            continue
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"cdx {' '.join(args[:2])} did not start:\n{''.join(seen)}")


def spawn_security_server(agency: RunningAgency) -> subprocess.Popen[str]:
    """Run ``agency``'s security server as ``cdx security-server serve`` (a process a test may
    SIGKILL) from its ``server.toml``, and record the addresses it bound (``RunningAgency``)."""
    agency.prepare()
    proc, line = spawn_reading(
        ["security-server", "serve", "--config", str(agency.config_file)], "exchange"
    )
    addresses = serve_banner_addresses(line)
    assert addresses is not None, line
    agency.server_bound(*addresses)
    return proc
