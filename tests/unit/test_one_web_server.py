"""CDX has one web server runner (``cdx.webserver``): the portal, the development OpenID
provider, the audit log's tile server and tlog-witnesses all start through it, so a fix to how
a socket is bound, TLS is loaded or a server is stopped reaches every one of them."""

from __future__ import annotations

import ast

from tests.unit.test_layers import project_modules

RUNNER = "cdx.webserver"


def uvicorn_importers(module: str, source: str) -> list[str]:
    """Where ``module`` imports uvicorn (any form)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        if any(n == "uvicorn" or n.startswith("uvicorn.") for n in names):
            found.append(f"{module}:{node.lineno}")
    return found


def test_only_the_kernel_web_server_runs_uvicorn() -> None:
    importers = [
        where
        for module, source in project_modules()
        if module != RUNNER
        for where in uvicorn_importers(module, source)
    ]
    assert not importers, f"serve web apps with cdx.webserver.serve: {importers}"
    runner = dict(project_modules())[RUNNER]
    assert uvicorn_importers(RUNNER, runner)


def test_the_check_finds_a_second_runner() -> None:
    assert uvicorn_importers("portal.x", "import uvicorn\n") == ["portal.x:1"]
    assert uvicorn_importers("portal.x", "from uvicorn.config import Config\n") == ["portal.x:1"]
    assert uvicorn_importers("portal.x", "import starlette\n") == []
