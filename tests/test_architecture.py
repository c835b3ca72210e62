"""The house's shape, checked on the source (nothing is imported): no import cycles, lazy imports
included; ``dkan`` imports nothing from ``sweeps`` except the CLI's lazy sweep commands; ``dkan`` never
imports Ray, Optuna or MLflow at module level; the sweep's core imports none of them at all, not even
lazily or through another module, and nothing of the shell that runs it; the MLflow store plumbing
imports nothing else of ``sweeps``; no module over 400 lines in ``dkan/`` or ``sweeps/``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dkan", "sweeps")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()
# the sweep's core (sweeps/core/): the decisions and their types, no Ray, Optuna or MLflow; it may import the MLflow
# store's names (sweeps.tracking: no MLflow, nothing else of sweeps). The shell (sweeps/shell/) runs it; sweeps.study
# joins them
CORE = {m for m in MODULES if m == "sweeps.core" or m.startswith("sweeps.core.")}
CORE_MAY_IMPORT = CORE | {"sweeps.tracking"}
RUNNERS = ("ray", "optuna", "mlflow")


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in the file, function-level ones included.
    ``from a import b`` names the module ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [(n if n in MODULES else node.module, id(node) in top) for n in names]
    return found


def _graph() -> dict[str, set[str]]:
    return {m: {i for i, _ in imports_of(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle_and_lazy_imports(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    f = tmp_path / "m.py"
    f.write_text("import os\nfrom dkan import config\n\ndef f():\n    from sweeps.core.plan import Plan\n")
    assert imports_of(f) == [("os", True), ("dkan.config", True), ("sweeps.core.plan", False)]


def reached(start: str, imports: dict[str, list[tuple[str, bool]]]) -> dict[str, str]:
    """Every module ``start`` reaches through the modules of ``imports`` (lazy imports included), each with
    the module that imports it: {reached: importer}."""
    seen, stack = {start: start}, [start]
    while stack:
        m = stack.pop()
        for i, _ in imports.get(m, []):
            if i not in seen:
                seen[i] = m
                if i in imports:
                    stack.append(i)
    return seen


def test_the_reach_follows_lazy_imports_through_other_modules():
    imports = {"a": [("b", True)], "b": [("os", True), ("c", False)], "c": [("ray.tune", False)]}
    assert reached("a", imports) == {"a": "a", "b": "a", "os": "b", "c": "b", "ray.tune": "c"}


def test_the_core_imports_no_ray_optuna_or_mlflow_not_even_lazily_or_transitively():
    imports = {m: imports_of(p) for m, p in MODULES.items()}
    bad = sorted(f"{m}: {i} (imported by {by})" for m in CORE_MAY_IMPORT for i, by in reached(m, imports).items()
                 if i.split(".")[0] in RUNNERS)
    assert bad == []


def test_no_core_module_imports_the_shell():
    assert {"sweeps.core.plan", "sweeps.core.selection", "sweeps.core.shape"} <= CORE
    bad = [f"{m} -> {i}" for m in sorted(CORE) for i, _ in imports_of(MODULES[m])
           if i.split(".")[0] == "sweeps" and i not in CORE_MAY_IMPORT]
    assert bad == []


def test_importing_the_core_loads_no_ray_optuna_or_mlflow():
    code = (f"import sys\nfor m in {sorted(CORE_MAY_IMPORT)!r}:\n    __import__(m)\n"
            f"print(sorted(k for k in sys.modules if k.split('.')[0] in {RUNNERS!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_importing_the_core_loads_neither_torch_nor_scipy_stats():
    """The decisions import in a fraction of a second (torch and scipy.stats take seconds): they load lazily,
    where a function needs them."""
    code = (f"import sys\nfor m in {sorted(CORE_MAY_IMPORT)!r}:\n    __import__(m)\n"
            "print(sorted(k for k in ('torch', 'torchvision', 'scipy.stats') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_no_import_cycles_lazy_imports_included():
    assert _cycles(_graph()) == []


def test_dkan_imports_sweeps_only_lazily_from_the_cli():
    bad = [f"{m} -> {i}" for m, p in MODULES.items() if m.startswith("dkan")
           for i, top in imports_of(p) if i.split(".")[0] == "sweeps" and (m != "dkan.cli" or top)]
    assert bad == []


def test_dkan_never_imports_ray_optuna_or_mlflow_at_module_level():
    bad = [f"{m} -> {i}" for m, p in MODULES.items() if m.startswith("dkan")
           for i, top in imports_of(p) if top and i.split(".")[0] in ("ray", "optuna", "mlflow")]
    assert bad == []


def test_the_mlflow_store_plumbing_imports_nothing_else_of_sweeps():
    assert {i for i, _ in imports_of(MODULES["sweeps.tracking"]) if i.startswith("sweeps")} == set()
    assert {i for i, _ in imports_of(MODULES["sweeps.shell.tracker"]) if i.startswith("sweeps")} == {"sweeps.tracking"}


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_module_over_400_lines(pkg):
    long = {m: n for m, p in MODULES.items() if m.split(".")[0] == pkg
            and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
