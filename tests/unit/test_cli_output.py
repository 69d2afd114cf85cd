"""What ``cdx`` commands print cannot rewrite the reader's terminal: every line, table cell,
JSON string and log line escapes control and bidi characters (``cdx.safetext``), and commands
print only through ``cdx.cliutil``."""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cdx import cliutil, safetext, telemetry
from cdx.v1 import audit_pb2, common_pb2
from tests.conftest import PROJECT_ROOT

#: Characters that move the cursor, clear the screen, overwrite or reorder what is shown.
HOSTILE = {
    "esc_clear_screen": "\x1b[2J\x1b[H",
    "carriage_return": "ok\rALL RECORDS VERIFIED OK",
    "newline": "x\nVERIFIED: the log is intact",
    "c1_csi": "\x9b2J",
    "bidi_override": "\u202eKO DEIFIREV",
    "bidi_isolate": "\u2066x\u2069",
    "zero_width": "a\u200bb",
    "line_separator": "a\u2028b",
    "nul_and_del": "a\x00b\x7f",
    "bell": "\x07",
}


def _unsafe(text: str) -> list[str]:
    return [c for c in text if c != "\n" and safetext.is_unsafe(c)]


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_say_and_tables_escape_every_unsafe_character(value: str) -> None:
    out = io.StringIO()
    cliutil.say(f"client {value}", file=out)
    cliutil.print_table(("CLIENT", "REASON"), [(value, "ok")], file=out)
    text = out.getvalue()
    assert not _unsafe(text)
    assert text.count("\n") == 3  # one line, a header and one row: nothing injected a line
    assert safetext.escape(value) in text


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_json_output_escapes_but_keeps_the_value(value: str) -> None:
    out = io.StringIO()
    cliutil.print_json({"client": value, "nested": [value, "Nguyễn Văn An"]}, file=out)
    assert not _unsafe(out.getvalue())
    assert json.loads(out.getvalue()) == {"client": value, "nested": [value, "Nguyễn Văn An"]}


def test_escaping_keeps_ordinary_text_as_it_is() -> None:
    text = "Nguyễn Văn An — VN:GOV:BCA:population/person/v1\tok 😀"
    assert safetext.escape(text) == text.replace("\t", "\\x09")
    assert safetext.escape_json(json.dumps(text, ensure_ascii=False)) == json.dumps(
        text, ensure_ascii=False
    )
    assert json.loads(safetext.escape_json(json.dumps("\U000e0041", ensure_ascii=False))) == (
        "\U000e0041"  # a tag character (Cf) beyond the BMP, escaped as a surrogate pair
    )


@pytest.mark.parametrize("json_lines", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_log_lines_escape_values_a_peer_sent(value: str, json_lines: bool) -> None:
    formatter = telemetry.JsonFormatter() if json_lines else telemetry.TextFormatter()
    record = logging.LogRecord("cdx.test", logging.WARNING, __file__, 1, "peer %s", (value,), None)
    line = formatter.format(record)
    assert "\n" not in line and not _unsafe(line)
    if json_lines:
        assert json.loads(line)["message"] == f"peer {value}"


def test_a_traceback_keeps_its_lines_but_not_raw_escapes() -> None:
    try:
        raise ValueError("bad \x1b[2J value")
    except ValueError:
        import sys

        record = logging.LogRecord("cdx", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    text = telemetry.TextFormatter().format(record)
    assert "Traceback" in text and text.count("\n") >= 2 and "\x1b" not in text


# --- commands print only through cdx.cliutil ---------------------------------------------


def _command_modules() -> list[str]:
    out = [
        p
        for pattern in ("*/cli.py", "*/*_cli.py")
        for p in PROJECT_ROOT.glob(pattern)
        if p.parent.name not in ("tests", ".venv")
    ]
    return sorted(str(p.relative_to(PROJECT_ROOT)) for p in out)


@pytest.mark.parametrize("path", _command_modules())
def test_commands_print_only_through_the_toolkit(path: str) -> None:
    """A bare ``print`` would show a peer's value raw; ``cdx/cli.py`` prints its one failure
    line escaped itself."""
    tree = ast.parse((PROJECT_ROOT / path).read_text())
    prints = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
        and not (
            path == "cdx/cli.py"
            and node.args
            and isinstance(node.args[0], ast.Call)
            and getattr(node.args[0].func, "id", "") in ("escape", "escape_json")
        )
    ]
    assert not prints, f"{path} prints raw at lines {prints}"


# --- cdx audit search renders a hostile record safely ------------------------------------


class _Client:
    def __init__(self, response: audit_pb2.SearchResponse) -> None:
        self.response = response

    def search(self, _request: audit_pb2.SearchRequest) -> audit_pb2.SearchResponse:
        return self.response


def _hostile_hit(value: str) -> audit_pb2.SearchHit:
    record = audit_pb2.AccessRecord(
        record_id="r1",
        client=value,
        service="VN:GOV:BCA:population/person/v1",
        purpose=value,
        decision=common_pb2.DENY,
        reason_code=value,
        message_id="m1",
    )
    return audit_pb2.SearchHit(record=record)


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_audit_search_shows_a_hostile_record_escaped(
    monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    from audit import cli as audit_cli

    value = "\x1b[2J\x1b[HALL RECORDS VERIFIED OK\u202e\r"
    response = audit_pb2.SearchResponse(hits=[_hostile_hit(value)], query_record_id="q1")

    @contextlib.contextmanager
    def session(_args: argparse.Namespace) -> Iterator[Any]:
        yield argparse.Namespace(client=_Client(response))

    monkeypatch.setattr(audit_cli, "_session", session)
    parser = argparse.ArgumentParser()
    audit_cli.register(parser.add_subparsers())
    args = parser.parse_args(["audit", "search", *(["--json"] if as_json else [])])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.handler(args) == 0
    assert not _unsafe(out.getvalue())
    if as_json:
        assert json.loads(out.getvalue())["hits"][0]["client"] == value
    else:
        assert "\\x1b[2J" in out.getvalue()
