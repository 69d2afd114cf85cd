"""Terminal escape injection: values other people wrote (names in the registry, records in the
log, arguments pasted into a command) reach an operator's terminal only escaped, in tables,
JSON, one-line errors and log lines alike (threat model T191, T192).

The registry refuses C0 control characters in names but keeps C1 controls (``\\x9b`` is an
8-bit CSI: "clear the screen" on terminals that honour it) and bidi overrides as text; ``cdx``
must still show them harmlessly.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdx import safetext, telemetry
from registry.bootstrap import init_instance
from registry.server import RunningRegistry, start_registry
from tests.cdx_command import Result, run_cdx

ADMIN = "admin:bootstrap"
#: An 8-bit CSI "clear screen", then a forged verdict written right to left.
HOSTILE_NAME = "\x9b2J\x9bH\u202eKO DEIFIREV SDROCER LLA"
MEMBER = "VN:GOV:EVIL"


def run(*argv: str) -> Result:
    return run_cdx(argv)


def _raw(text: str) -> list[str]:
    return [c for c in text if c != "\n" and safetext.is_unsafe(c)]


@pytest.fixture(scope="module", autouse=True)
def _keep_test_logging() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cdx.telemetry.configure_logging", lambda **_kw: None)
        yield


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    data = Path(tmp_path_factory.mktemp("escape")) / "data"
    paths = init_instance(data, "VN", datetime.now(UTC))
    running = start_registry(paths, "127.0.0.1:0")
    try:
        running.service.add_member(MEMBER, HOSTILE_NAME, ADMIN)
        running.service.add_purpose("FORGED_PURPOSE", f"audit {HOSTILE_NAME}", "", ADMIN)
        yield running
    finally:
        running.stop(grace=0.5)


def _cdx(running: RunningRegistry, *argv: str) -> Result:
    return run(*argv, "--data", str(running.paths.data_dir), "--registry", running.address)


def test_hostile_registry_names_cannot_rewrite_the_operators_terminal(
    registry: RunningRegistry,
) -> None:
    shown = _cdx(registry, "registry", "conf", "show")
    assert shown.rc == 0, shown.err
    assert not _raw(shown.out)
    assert safetext.escape(HOSTILE_NAME) in shown.out  # shown, as visible escapes


def test_hostile_registry_names_stay_whole_in_json_output(registry: RunningRegistry) -> None:
    shown = _cdx(registry, "registry", "conf", "show", "--json")
    assert shown.rc == 0, shown.err
    assert not _raw(shown.out)
    members = {m["id"]: m["name"] for m in json.loads(shown.out)["members"]}
    assert members[MEMBER] == HOSTILE_NAME  # a program reading the JSON gets the real value


def test_hostile_history_details_are_escaped(registry: RunningRegistry) -> None:
    shown = _cdx(registry, "registry", "history", "--detail")
    assert shown.rc == 0, shown.err
    assert not _raw(shown.out) and "FORGED_PURPOSE" in shown.out


@pytest.mark.parametrize("log_json", [False, True], ids=["text", "json"])
def test_a_hostile_argument_is_escaped_in_the_one_line_error(log_json: bool) -> None:
    hostile = "\x1b[2J\x1b[HVERIFIED: the log is intact\n"
    result = run(*(["--log-json"] if log_json else []), "audit", "search", "--since", hostile)
    assert result.rc == 2 and result.out == ""
    assert result.err.count("\n") == 1 and not _raw(result.err)
    if log_json:
        assert json.loads(result.err)["code"] == "invalid_argument"
    else:
        assert result.err.startswith("error [invalid_argument]: not a date:")


@pytest.mark.parametrize("json_lines", [False, True], ids=["text", "json"])
def test_cdx_log_lines_escape_what_a_peer_sent(json_lines: bool) -> None:
    """The handler ``cdx`` installs for every command writes a peer's value escaped."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        telemetry.logs.configure_logging(json_lines=json_lines)
        stream = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        logging.getLogger("cdx.test").warning("peer %s refused", HOSTILE_NAME)
        line = stream.getvalue()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert line.count("\n") == 1 and not _raw(line)
    assert "DEIFIREV" in line and (json_lines or safetext.escape(HOSTILE_NAME) in line)
