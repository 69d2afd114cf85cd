"""A real browser for the portal's end-to-end tests: Debian's Chromium driven by Playwright.

``chromium()`` launches ``/usr/bin/chromium`` (or ``chromium``/``chromium-browser`` on
``PATH``) headless; Playwright downloads no browser of its own. When the browser or the
``playwright`` package cannot be had, the test skips through ``tests.conftest.skip_missing``
(a failure under ``CI=true``).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

from tests.conftest import skip_missing

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def executable() -> str | None:
    """Where Chromium is installed, if it is."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), closed afterwards."""
    if sync_playwright is None:
        skip_missing("the playwright package", "pip install -e '.[dev]'")
    path = executable()
    if path is None:
        skip_missing("Chromium", "apt-get install chromium")
    with sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=path, args=ARGS)
        except Exception as exc:  # e.g. missing shared libraries
            skip_missing("a Chromium that starts", str(exc).splitlines()[0])
        try:
            yield launched
        finally:
            launched.close()
