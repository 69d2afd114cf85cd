"""Run ``cdx`` in this process, as the entry point does, capturing what it prints."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from cdx import cli


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str


def run_cdx(argv: Sequence[str]) -> Result:
    """``cdx ARGV``: exit status, stdout and stderr (argparse's ``SystemExit`` included)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(list(argv))
        except SystemExit as exc:  # --help and usage errors
            rc = int(exc.code or 0)
    return Result(rc, out.getvalue(), err.getvalue())
