"""The house rules, checked: layered imports (import-linter), no import cycle, ruff, public API only."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKED = ["src", "tests", "benchmarks"]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' (it is pinned in the test extra)")
    return found


def test_layers_contract_is_kept() -> None:
    """pyproject.toml [tool.importlinter]: no module imports from a layer above its own."""
    out = _run(_tool("lint-imports"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in out.stdout


def test_no_import_cycle_in_src() -> None:
    """No cycle at all, not even a type-only one (imports under TYPE_CHECKING count)."""
    import grimp

    sys.path.insert(0, str(REPO / "src"))
    graph = grimp.build_graph("paperscope", cache_dir=None)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported in (importer, "paperscope") or importer == "paperscope":
                continue
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back and not all(m == "paperscope" or importer.startswith(m + ".") for m in back[1:-1]):
                cycles.append((importer, *back))
    # A package's __init__ importing its own submodules is not a cycle (import-linter agrees).
    cycles = [c for c in cycles if not (c[0].startswith(c[1] + ".") or c[1].startswith(c[0] + "."))]
    assert not cycles, cycles[:5]


def test_ruff_check_passes() -> None:
    out = _run(_tool("ruff"), "check", *CHECKED)
    assert out.returncode == 0, out.stdout[-4000:]


def test_ruff_format_is_applied() -> None:
    out = _run(_tool("ruff"), "format", "--check", *CHECKED)
    assert out.returncode == 0, out.stdout[-4000:]


def test_tests_and_benchmarks_use_public_names_only() -> None:
    """No ``obj._private`` of a paperscope object and no ``from paperscope... import _name``."""
    found = []
    for folder in ("tests", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                    if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "sys", "os"):
                        continue
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} .{node.attr}")
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("paperscope"):
                    found += [
                        f"{path.relative_to(REPO)}:{node.lineno} import {a.name}"
                        for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")
                    ]
    assert not found, found
