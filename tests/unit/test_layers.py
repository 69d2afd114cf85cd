"""The import layers of docs/architecture.md hold: every import (``ast``) of every project package
is an allowed edge, so a new upward edge fails here before anyone has to notice it in review.

Layers, lowest first: the kernel (``cdx``); the components (``registry``, ``security_server``,
``consent``, ``audit``), which reach one another only through the client modules each publishes;
the portal (a client of the components); ``stack`` (composes a whole instance); ``bench`` and
``tools``. ``cdx.cli`` is the composition root: the one kernel module that imports components,
and only their ``cli`` modules. The kernel's verifying core is pure: no I/O, no clock.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import PROJECT_ROOT

PACKAGES = ("cdx", "registry", "security_server", "consent", "audit", "notify", "portal", "stack", "bench", "tools")  # fmt: skip
COMPONENTS = frozenset({"registry", "security_server", "consent", "audit", "notify"})

#: What each component publishes to the others (and to the portal): its clients.
CLIENT_MODULES = frozenset(
    {
        "registry.client",  # the registry admin API (cdx registry, security-server init, portal)
        "registry.model",  # the domain types the admin client returns
        "audit.client",  # the audit log API (shippers, inspectors, the portal)
        "audit.notes",  # opening the log's signed checkpoints against global configuration
        "audit.tileclient",  # the log's tiles over HTTP(S) (the portal's proofs)
        "audit.witness",  # the witness a security server runs
        "audit.bundles",  # the access-bundle format the consent service signs (ADR 0020)
        "consent.checker",  # the consent checker a provider security server plugs in
        "consent.idp",  # the development identity provider (portal login, tokens)
        "consent.representation_client",  # whether a person may act for another (the audit log)
    }
)

#: Which layer may import which: a layer always may import itself (within its own package).
ALLOWED: dict[str, frozenset[str]] = {
    "kernel": frozenset({"kernel"}),
    "component": frozenset({"kernel", "client"}),
    "portal": frozenset({"kernel", "client"}),
    "stack": frozenset({"kernel", "client", "component", "portal"}),
    "bench": frozenset({"kernel", "client", "component", "portal", "stack"}),
    "tools": frozenset({"kernel"}),
    "root": frozenset({"kernel", "cli"}),
}

#: The kernel's verifying core: takes bytes and ``now``, returns values or raises; no I/O, no
#: clock (ADR 0001). ``cdx.lawful`` times the consent check with ``cdx.telemetry``, which is
#: ambient instrumentation, a no-op until configured (ADR 0006).
PURE = frozenset(
    {
        "cdx.ids", "cdx.errors", "cdx.crypto", "cdx.pki", "cdx.envelope", "cdx.merkle",
        "cdx.note", "cdx.globalconf", "cdx.records", "cdx.consentpolicy", "cdx.tokens",
        "cdx.lawful", "cdx.safetext", "cdx.representation",
    }
)  # fmt: skip
#: Modules a pure module must not import (I/O, clock, processes, databases, the kernel's I/O).
IMPURE = frozenset(
    {
        "os", "io", "pathlib", "socket", "subprocess", "shutil", "tempfile", "time",
        "threading", "sqlalchemy", "alembic", "urllib.request", "http",
        "cdx.rpc", "cdx.db", "cdx.files", "cdx.keyfiles", "cdx.paths", "cdx.confclient",
        "cdx.health", "cdx.cli", "cdx.cliutil", "cdx.clidefaults", "cdx.clock",
    }
)  # fmt: skip
#: Calls that read the clock or open files.
IMPURE_CALLS = frozenset({"open", "now", "utcnow", "today"})


@dataclass(frozen=True)
class Edge:
    module: str  # the importing module
    target: str  # the imported module (or dynamic target)
    line: int
    dynamic: bool = False  # importlib.import_module, __import__, find_spec


def layer(module: str) -> str:
    """The layer of a project module (``cdx.cli`` is the composition root)."""
    if module == "cdx.cli":
        return "root"
    top = module.split(".")[0]
    if top == "cdx":
        return "kernel"
    return "component" if top in COMPONENTS else top


def target_layer(target: str) -> str:
    """The layer an import lands in, as ``ALLOWED`` names it."""
    if any(target == m or target.startswith(m + ".") for m in CLIENT_MODULES):
        return "client"
    parts = target.split(".")
    if (
        parts[0] in COMPONENTS | {"portal", "stack"}
        and len(parts) == 2
        and (parts[1] == "cli" or parts[1].endswith("_cli"))
    ):
        return "cli"  # the commands each part registers with the composition root
    return layer(target)


def imports(module: str, source: str) -> Iterator[Edge]:
    """Every import of ``source`` (module ``module``) that lands in a project package, at any
    depth (functions, ``TYPE_CHECKING`` blocks), and every dynamic import."""
    tree = ast.parse(source)
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield Edge(module, full if _is_module(full) else base, node.lineno)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            yield Edge(module, _dynamic_target(node), node.lineno, dynamic=True)


def _is_module(name: str) -> bool:
    path = PROJECT_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_dynamic_import(node: ast.Call) -> bool:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return name in ("import_module", "__import__", "find_spec")


def _dynamic_target(node: ast.Call) -> str:
    """A literal (or literal-prefixed f-string) module name; ``<dynamic>`` otherwise."""
    arg = node.args[0] if node.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:
        first = arg.values[0]
        if isinstance(first, ast.Constant) and str(first.value).startswith("cdx.v1."):
            return "cdx.v1"
    return "<dynamic>"


def violations(edge: Edge) -> list[str]:
    """Why ``edge`` is not allowed (empty when it is)."""
    where = f"{edge.module}:{edge.line} imports {edge.target}"
    top = edge.target.split(".")[0]
    if edge.dynamic and (top in PACKAGES or edge.target == "<dynamic>") and edge.target != "cdx.v1":
        # Generated stubs looked up by name are the one exception.
        return [f"{where}: a dynamic import hides its edge from this test and the type checker"]
    out: list[str] = []
    if edge.module in PURE and any(
        edge.target == m or edge.target.startswith(m + ".") for m in IMPURE
    ):
        out.append(f"{where}: {edge.module} is pure (no I/O, no clock)")
    if top not in PACKAGES:
        return out  # the standard library and third-party packages
    source_top = edge.module.split(".")[0]
    if source_top == top and not (top == "cdx" and edge.target == "cdx.cli"):
        return out  # within one package (the kernel never imports its composition root)
    if target_layer(edge.target) not in ALLOWED[layer(edge.module)]:
        out.append(f"{where}: {layer(edge.module)} may not import {target_layer(edge.target)}")
    return out


def impure_calls(module: str, source: str) -> list[str]:
    """Calls of a pure module that read the clock or open files."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in IMPURE_CALLS:
                out.append(f"{module}:{node.lineno} calls {name}(): {module} is pure")
    return out


def project_modules() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            rel = path.relative_to(PROJECT_ROOT)
            if rel.parts[:2] == ("cdx", "v1") or "migrations" in rel.parts:
                continue  # generated stubs; Alembic scripts
            name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            yield name, path.read_text()


def test_every_import_follows_the_layers() -> None:
    found = [v for m, src in project_modules() for e in imports(m, src) for v in violations(e)]
    found += [c for m, src in project_modules() if m in PURE for c in impure_calls(m, src)]
    assert not found, "\n".join(found)


def test_the_layer_table_covers_every_package() -> None:
    seen = {layer(m) for m, _ in project_modules()}
    assert seen == set(ALLOWED), seen ^ set(ALLOWED)
    assert all(_is_module(m) for m in CLIENT_MODULES | PURE)


# --- the test fails on what it is meant to catch -------------------------------------------


def _check(module: str, source: str) -> list[str]:
    found = [v for e in imports(module, source) for v in violations(e)]
    return found + (impure_calls(module, source) if module in PURE else [])


#: The consent checker as it was: a component reaching up into another component's internals.
UPWARD_CHECKER = """
from cdx import errors
from security_server.lawful import ConsentGrant
"""


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("consent.checker", UPWARD_CHECKER),
        ("security_server.cli", "import importlib\nm = importlib.import_module(name)\n"),
        ("security_server.cli", "m = importlib.import_module('consent.checker')\n"),
        ("cdx.globalconf", "from registry.client import RegistryAdminClient\n"),
        ("cdx.rpc", "def f():\n    from cdx.cli import main\n"),
        ("audit.cli", "from registry.paths import load_identity\n"),
        ("portal.web", "from consent.service import ConsentService\n"),
        ("registry.service", "from portal.app import create_app\n"),
        ("consent.server", "from stack.runtime import start_instance\n"),
        ("cdx.crypto", "import os\n"),
        ("cdx.lawful", "from cdx.db import create_engine\n"),
        ("cdx.tokens", "from datetime import datetime\nnow = datetime.now()\n"),
        ("cdx.cli", "from consent.store import ConsentStore\n"),
        ("tools.protodoc", "from audit.store import AuditStore\n"),
    ],
    ids=[
        "consent_checker_importing_security_server",
        "dynamic_import_by_name",
        "dynamic_plugin_import_typed_any",
        "kernel_importing_a_component",
        "kernel_importing_the_composition_root",
        "component_importing_another_components_internals",
        "portal_importing_a_service",
        "component_importing_the_portal",
        "component_importing_the_stack",
        "pure_module_doing_io",
        "pure_module_importing_the_database",
        "pure_module_reading_the_clock",
        "composition_root_importing_more_than_cli_modules",
        "tools_importing_a_component",
    ],
)
def test_an_upward_edge_is_caught(module: str, source: str) -> None:
    assert _check(module, source), f"{module} importing this should fail the layer test"


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("consent.checker", "from cdx.lawful import ConsentGrant\n"),
        ("security_server.cli", "from consent.checker import CachedConsentChecker\n"),
        ("portal.instance", "from registry.client import RegistryAdminClient\n"),
        ("stack.runtime", "from security_server.server import start_security_server\n"),
        ("cdx.cli", "import audit.cli\n"),
        ("bench.loadgen", "m = importlib.import_module(f'cdx.v1.{name}_pb2')\n"),
    ],
)
def test_an_allowed_edge_passes(module: str, source: str) -> None:
    assert not _check(module, source)
