"""The shape of ``app/``: no import cycle, the core never imports the HTTP layer, the
environment is read in one module, and no generated code is executed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
ENTRY_POINTS = {"app.cli"}  # composition roots: they may import every layer


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in APP.rglob("*.py")}


def trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def imports(tree: ast.Module, name: str) -> set[str]:
    """The ``app`` modules a module imports, at any depth of its body (function-level too),
    except under ``if TYPE_CHECKING:``, which never runs."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}: a relative import (app/ uses absolute ones)"
            base = node.module or ""
            submodules = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
            # `from package import module` imports the module; anything else, the named module
            found.update(submodules or {base})
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imports(tree, name) for name, tree in trees().items()}


def test_app_has_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_only_the_http_layer_and_the_cli_import_app_api() -> None:
    offenders = {
        name: sorted(target for target in targets if target.startswith("app.api"))
        for name, targets in GRAPH.items()
        if not name.startswith("app.api") and name not in ENTRY_POINTS
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def calls(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
    return names


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_executes_generated_code(name: str) -> None:
    assert not {"exec", "eval"} & calls(trees()[name])


def test_the_environment_is_read_only_by_settings() -> None:
    readers = sorted(
        name
        for name, tree in trees().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv")
    )
    assert set(readers) <= {"app.settings"}, readers
