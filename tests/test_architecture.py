"""The layering of ``monitor/``, checked rather than remembered.

The contracts are in ``pyproject.toml`` (``[tool.importlinter]``): the core imports no
I/O library, even through a package ``__init__``; the edges import the core, never
the reverse; the CLI is on top. Here they run, together with two checks import-linter
does not make: the import graph has no cycle, and ``monitor --help`` loads nothing heavy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
    "lint-imports"
)


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS, "lint-imports is missing: install the test extras (import-linter)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # The core reaching an I/O library directly, and through an edge module.
        ("monitor/alerting/policy.py", "import sqlite3", "I/O library"),
        ("monitor/window.py", "import monitor.alerting.engine", "I/O library"),
        # A core module reaching up to the service.
        ("monitor/drift.py", "import monitor.service", "CLI on top"),
    ],
)
def test_the_contracts_catch_a_forbidden_import(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """The check can fail: a copy of the package with one forbidden import breaks it."""
    shutil.copytree(ROOT / "monitor", tmp_path / "monitor")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(f"{line}  # noqa\n" + target.read_text())
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith(" BROKEN")]
    assert any(contract in ln for ln in broken), result.stdout


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    nxt = graph.find_modules_directly_imported_by(child) & modules
                    work.append((child, iter(sorted(nxt))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_graph_has_no_cycle() -> None:
    """Every import counts: lazy ones inside functions and ``TYPE_CHECKING`` ones too."""
    graph = grimp.build_graph("monitor", cache_dir=None)
    modules = {m for m in graph.modules if m == "monitor" or m.startswith("monitor.")}
    assert _cycles(graph, modules) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph, {"p", "p.a", "p.b", "p.c"}) == [["p.a", "p.b", "p.c"]]


HEAVY = ("numpy", "scipy", "river", "aiokafka", "aiohttp", "httpx", "pydantic")


def test_monitor_help_loads_nothing_heavy() -> None:
    """``monitor --help`` answers at once: the CLI imports its commands' modules lazily."""
    code = (
        "import sys\n"
        "from monitor.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


#: Where a private name of a dependency may appear, and why (STYLE: "a private name only
#: inside one adapter that checks the version").
PRIVATE_NAME_ADAPTERS = {
    # scipy's compiled exact KS path count, behind a version check and a pinned range.
    "monitor/detectors/scipy_private.py",
    # river's ADWIN fast path and ADWIN/Page-Hinkley state, behind a check of the river
    # release (tests/test_river_private.py) and a pinned range.
    "monitor/detectors/river_private.py",
}
#: ``obj._name`` accesses that are ours or public by convention (namedtuple's ``_replace``).
OWN_PRIVATE_ACCESSES = {
    ("monitor/performance/normalize.py", "classes._index"),
    ("monitor/service_metrics.py", "sample._replace"),
}


def _private_uses(path: Path) -> list[str]:
    import ast

    rel = path.relative_to(ROOT).as_posix()
    found = []
    tree = ast.parse(path.read_text())
    # A name bound to ``cls(...)`` in a classmethod is an instance of our own class.
    own_names = {"self", "cls"} | {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "cls"
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in ("monitor", "__future__"):
                continue
            parts = [*node.module.split("."), *(a.name for a in node.names)]
            if any(p.startswith("_") and not p.startswith("__") for p in parts):
                found.append(f"{rel}:{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(p.startswith("_") for p in alias.name.split(".")[1:]):
                    found.append(f"{rel}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__"):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in own_names:
                continue
            if isinstance(base, ast.Call) and ast.unparse(base.func) == "super":
                continue
            if (rel, ast.unparse(node)) in OWN_PRIVATE_ACCESSES:
                continue
            found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_private_names_of_dependencies_stay_in_their_adapters() -> None:
    """No ``site._server``, ``consumer._client``, ``scipy.stats._private`` outside an adapter."""
    uses = [
        use
        for path in sorted((ROOT / "monitor").rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in PRIVATE_NAME_ADAPTERS
        for use in _private_uses(path)
    ]
    assert uses == []


#: Defined and never named elsewhere, on purpose: callbacks the library calls by name.
CALLED_BY_NAME = {"on_partitions_revoked", "on_partitions_assigned"}
#: Known dead code, left on purpose (none today).
KNOWN_DEAD: set[tuple[str, str]] = set()


def test_no_function_is_defined_and_never_used() -> None:
    """Every function, method and class of ``monitor/`` is named somewhere else.

    A name that appears only at its definition (in the package, the tests, the
    benchmarks and the dev tools) is dead code. Decorated functions are skipped:
    a decorator registers them (pydantic validators, properties read by name).
    """
    import ast
    import re
    from collections import Counter

    sources = {
        path.relative_to(ROOT).as_posix(): path.read_text()
        for folder in ("monitor", "tests", "bench", "devtools")
        for path in sorted((ROOT / folder).rglob("*.py"))
    }
    uses = Counter(re.findall(r"\w+", "\n".join(sources.values())))
    dead = []
    for rel, source in sources.items():
        if not rel.startswith("monitor/"):
            continue
        for top in ast.parse(source).body:
            nodes = [top]
            if isinstance(top, ast.ClassDef):
                nodes += [
                    n for n in top.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                ]
            for node in nodes:
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    continue
                name = node.name
                if name.startswith("__") or name in CALLED_BY_NAME or (rel, name) in KNOWN_DEAD:
                    continue
                if node.decorator_list and not isinstance(node, ast.ClassDef):
                    continue
                if uses[name] <= 1:
                    dead.append(f"{rel}:{node.lineno}: {name}")
    assert dead == []


IO_LIBRARIES = ("aiokafka", "aiohttp", "httpx", "sqlite3", "prometheus_client")


@pytest.mark.parametrize(
    "module",
    [
        "monitor.alerting.policy",
        "monitor.alerting.page_cap",
        "monitor.model_monitor",
        "monitor.drift",
        "monitor.signals",
    ],
)
def test_importing_a_core_module_loads_no_io_library(module: str) -> None:
    """At run time too: what a package ``__init__`` imports is loaded with the module."""
    code = (
        f"import sys, {module}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({IO_LIBRARIES!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
