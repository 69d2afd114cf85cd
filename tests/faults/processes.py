"""Running CDX commands as real processes in fault tests (so that they can be SIGKILLed)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

CDX = Path(sys.executable).with_name("cdx")


def spawn(args: list[str], ready: str, timeout: float = 60.0) -> subprocess.Popen[str]:
    """Start ``cdx *args`` and wait until a line of its output contains ``ready``.

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
                return proc
            continue
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"cdx {' '.join(args[:2])} did not start:\n{''.join(seen)}")
