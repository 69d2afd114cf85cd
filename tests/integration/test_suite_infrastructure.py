"""The suite is honest about what it ran: under ``CI=true`` a test skipped for missing test
infrastructure (PostgreSQL, Chromium, the conformance vectors) is a failure, and without
``CDX_TEST_POSTGRES_URL`` the PostgreSQL tests run on a throwaway cluster of their own.

Each case runs pytest as a separate process, as ``make test`` does, with this suite's
``tests/conftest.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import POSTGRES_ENV, PROJECT_ROOT, skip_missing
from tests.postgres import unavailable_reason

SKIPPING = """
import pytest
from tests.conftest import skip_missing

def test_needs_missing_infrastructure():
    skip_missing("a thing the suite needs", "install it")

def test_skips_for_another_reason():
    pytest.skip("not on this platform")
"""


def _pytest(
    tmp_path: Path, source: str, *args: str, env: dict[str, str]
) -> tuple[dict[str, int], str]:
    test_file = tmp_path / "test_case.py"
    test_file.write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), "-q", "-rA", *args, str(test_file)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )  # fmt: skip
    counts = {
        word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", done.stdout)
    }
    return counts, done.stdout + done.stderr


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in changes}
    env.update({k: v for k, v in changes.items() if v is not None})
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return env


def test_a_skip_for_missing_infrastructure_is_a_failure_in_ci(tmp_path: Path) -> None:
    counts, output = _pytest(tmp_path, SKIPPING, env=_env(CI="true"))
    assert counts == {"failed": 1, "skipped": 1}, output
    assert "CI=true, so this is a failure, not a skip" in output


def test_outside_ci_a_skip_for_missing_infrastructure_says_what_is_missing(
    tmp_path: Path,
) -> None:
    counts, output = _pytest(tmp_path, SKIPPING, env=_env(CI=None))
    assert counts == {"skipped": 2}, output
    assert "missing test infrastructure: a thing the suite needs (install it)" in output


def test_without_the_variable_postgres_tests_run_on_a_throwaway_cluster(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        skip_missing("PostgreSQL server binaries", reason)
    source = (PROJECT_ROOT / "tests" / "integration" / "test_registry_migrations.py").read_text()
    where = tmp_path / "where"
    source += f"""

def test_where_the_postgres_tests_ran():
    from tests.conftest import postgres_url

    open({str(where)!r}, "w").write(postgres_url())
"""
    counts, output = _pytest(
        tmp_path, source, "-k", "postgres or where", env=_env(**{POSTGRES_ENV: None})
    )
    assert counts.get("passed", 0) >= 3 and set(counts) == {"passed"}, output
    url = where.read_text()
    assert "?host=" in url, url  # the throwaway cluster's socket directory
    assert not Path(url.split("?host=", 1)[1]).exists(), "the throwaway cluster was left behind"
