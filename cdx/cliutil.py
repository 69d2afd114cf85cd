"""Output helpers shared by every `cdx` sub-command: one aligned plain-text table."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TextIO


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    indent: str = "",
    file: TextIO | None = None,
) -> None:
    """Print an aligned plain-text table; ``(none)`` when there are no rows."""
    out = file or sys.stdout
    text_rows = [[str(c) for c in r] for r in rows]
    if not text_rows:
        print(f"{indent}(none)", file=out)
        return
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) for i, h in enumerate(headers)]
    print(indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(), file=out)
    for r in text_rows:
        print(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)
