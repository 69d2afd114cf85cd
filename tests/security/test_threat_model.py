"""``docs/threat-model.md`` stays true: every test it names exists, and every attack and fault
test is named there (a test nobody maps to a threat is a threat nobody wrote down)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "threat-model.md"
_TEST = re.compile(r"^def (test_\w+)", re.M)


def _references() -> list[tuple[str, str | None]]:
    """(file, test name or None) for every reference; ``::name`` continues the last file."""
    out: list[tuple[str, str | None]] = []
    current = ""
    for match in re.finditer(r"`(tests/[\w/]+\.py(?:::\w+)?|::\w+)`?", DOC.read_text()):
        text = match.group(1)
        if text.startswith("::"):
            out.append((current, text[2:]))
            continue
        path, _, name = text.partition("::")
        current = path
        out.append((path, name or None))
    return out


def test_every_test_the_threat_model_names_exists() -> None:
    missing = []
    for path, name in _references():
        file = PROJECT_ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name and name not in _TEST.findall(file.read_text()):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/threat-model.md names tests that do not exist: {missing}"


def test_every_attack_and_fault_test_is_in_the_threat_model() -> None:
    named = {(p, n) for p, n in _references()}
    whole_files = {p for p, n in named if n is None}
    unmapped = []
    for file in sorted(
        (
            *Path(PROJECT_ROOT, "tests/security").glob("test_attack_*.py"),
            *Path(PROJECT_ROOT, "tests/faults").glob("test_fault_*.py"),
        )
    ):
        rel = str(file.relative_to(PROJECT_ROOT))
        if rel in whole_files:
            continue
        for name in _TEST.findall(file.read_text()):
            if (rel, name) not in named:
                unmapped.append(f"{rel}::{name}")
    assert not unmapped, f"attack or fault tests missing from docs/threat-model.md: {unmapped}"
