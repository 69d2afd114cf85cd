"""`cdx demo` run as a user would: a subprocess, its exit code and the story's key lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("demo")


def _cdx() -> list[str]:
    return [sys.executable, "-m", "cdx.cli"]


def test_demo_plays_the_whole_story_and_exits_zero(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.run(
        [*_cdx(), "demo", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "11 of 11 steps behaved as expected." in out
    # Every proof is against a checkpoint cosigned by at least the quorum (2 of 3 witnesses).
    assert re.search(r"cosigned by [23] of 3 witnesses", out), out
    for line in (
        "only the 3 agreed fields were released",
        "[field_not_allowed]",
        "[consent_missing]",
        "is ACTIVE with a JWS artefact verified",
        "'employer' (not consented) was dropped",
        "choices stored by the notification service",
        "no national id and no income in it, linking to the verified entry",
        "signed by the log and cosigned by",
        "[consent_revoked]",
        "his own approval is refused [minor_needs_representative]",
        "verified history shows who acted for him",
        "representative:parent",
        "entries verified; the inspector's search finds",
    ):
        assert line in out, line
    # The national id never reaches the terminal, the logs or the audit leaf (it appears
    # only in the backend's own register and inside encrypted openings).
    assert "079090000001" not in out + proc.stderr
    assert "079190000011" not in out + proc.stderr  # nor the son's
    assert (data / "instance.toml").exists()


def test_demo_refuses_a_directory_that_already_holds_an_instance(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "instance.toml").write_text('format = "cdx-instance/v1"\n')
    proc = subprocess.run(
        [*_cdx(), "demo", "--data-dir", str(data)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "error [already_exists]" in proc.stderr
