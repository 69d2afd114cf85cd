"""`cdx up` as an operator runs it: queries from another shell, `cdx status`, Ctrl-C, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import eventually

pytestmark = pytest.mark.xdist_group("up")

CDX = [sys.executable, "-m", "cdx.cli"]


def _start(config: Path) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [*CDX, "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            return proc, lines
    proc.kill()
    raise AssertionError("cdx up did not come up:\n" + "\n".join(lines))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def _query_command(lines: list[str]) -> list[str]:
    printed = next(line.strip() for line in lines if line.strip().startswith("cdx query "))
    return [*CDX, *printed.split()[1:], "--json"]


def _served_tiles(data: Path) -> str:
    """The tile URL instance.toml records, once its checkpoint is served there (tlog-tiles)."""
    url = str(tomllib.loads((data / "instance.toml").read_text())["audit_tiles"])
    assert not url.endswith(":0")

    def checkpoint() -> bytes | None:
        with urllib.request.urlopen(f"{url}/checkpoint", timeout=10) as response:
            body: bytes = response.read()
        return body if body.startswith(b"cdx.vn/audit\n") else None

    eventually(
        checkpoint,
        timeout=30,
        interval=0.3,
        retry_on=(urllib.error.HTTPError,),  # 404 until the first checkpoint is published
        what="the log's checkpoint over HTTP",
    )
    return url


def test_up_serves_queries_from_another_shell_and_stops_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "single-box.toml"
    config.write_text('data_dir = "data"\n[portal]\nenabled = false\n')
    data = tmp_path / "data"

    proc, lines = _start(config)
    try:
        answer = subprocess.run(_query_command(lines), capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0, answer.stdout + answer.stderr
        released = json.loads(answer.stdout)
        assert set(released["data"]) == {"full_name", "birth_date", "gender"}
        status = subprocess.run(
            [*CDX, "status", "--data-dir", str(data)], capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "social security server" in status.stdout
        assert "notification service" in status.stdout  # with its outbox counts
        assert "dead letters" in status.stdout
        assert "serving" in status.stdout
        tiles = _served_tiles(data)
        assert any(line.strip().startswith("audit log") and tiles in line for line in lines)
    finally:
        if proc.poll() is None:
            out = _stop(proc)
    assert "Stopped." in out
    assert not (data / "up.pid").exists()

    # Nothing is left listening, and nothing accepted was lost: a second run ships every
    # record to the log.
    status = subprocess.run(
        [*CDX, "status", "--data-dir", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 1
    assert all(c["health"] == "down" for c in json.loads(status.stdout)["components"])

    proc, _ = _start(config)
    try:
        assert _served_tiles(data) == tiles  # the port bound at the first start, kept

        def shipped() -> dict[str, Any] | None:
            status = subprocess.run(
                [*CDX, "status", "--data-dir", str(data), "--json"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            report: dict[str, Any] = json.loads(status.stdout)
            audit = next(c for c in report["components"] if c["name"] == "audit log")
            logged = "log size 2" in audit["details"] or "log size 3" in audit["details"]
            return report if logged else None

        report = eventually(shipped, timeout=30, interval=0.5, what="the records in the log")
        assert all(
            "outbox 0 unshipped" in c["details"]
            for c in report["components"]
            if c["name"].endswith("security server")
        )
    finally:
        _stop(proc)
