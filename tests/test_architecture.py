"""The house's shape, checked on the source (nothing is imported): no import cycles, lazy imports
included; ``dkan`` imports nothing from ``sweeps`` except the CLI's lazy sweep commands; ``dkan`` never
imports Ray, Optuna or MLflow at module level; the MLflow store plumbing imports nothing else of
``sweeps``; no module over 400 lines in ``dkan/`` or ``sweeps/``."""

from __future__ import annotations

import ast
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
    f.write_text("import os\nfrom dkan import config\n\ndef f():\n    from sweeps.plan import Plan\n")
    assert imports_of(f) == [("os", True), ("dkan.config", True), ("sweeps.plan", False)]


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


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_module_over_400_lines(pkg):
    long = {m: n for m, p in MODULES.items() if m.split(".")[0] == pkg
            and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
