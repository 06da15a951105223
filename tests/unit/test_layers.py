"""The layers and the absence of import cycles, checked on every test run.

import-linter checks the contracts in pyproject.toml (the layers DESIGN.md
draws, and no cycle between the modules and subpackages of any package). The
second test looks one level finer, at modules: a module that imports its own
package's facade (`routing.sla.clock` importing `routing.sla`) is a cycle too.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "parsers", "routing", "storage", "gateway")


def test_layers__import_contracts_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    # Its logging set-up is a dictConfig that disables every logger existing at
    # the time (the gateway's own), and so every log assertion of later tests.
    monkeypatch.setattr("importlinter.cli._configure_logging", lambda verbose: None)
    assert lint_imports(config_filename="pyproject.toml", no_cache=True, no_logo=True) == 0


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in graph.modules:
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_layers__no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert _cycles(graph) == []
