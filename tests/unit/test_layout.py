"""The floor plan stays true: imports between the package's parts only go down, and none goes round.

Layers, lowest first (README.md, Layout):
  0. the shared ground at the top of the package: config, errors, logs, metrics
  1. db/        the database
  2. live/      live updates      channels/  delivery channels (side by side: neither imports the other)
  3. web/       the HTTP edge
  4. views/     the blueprints
  5. ops/, the factory (__init__), wsgi, gunicorn_conf: the entry points, free to use everything

Read from the source (ast), so a lazy import inside a function counts as much as one at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "notifications_api"
NAME = "notifications_api"
SHARED = {"config", "errors", "logs", "metrics"}
RANK = {"shared": 0, "db": 1, "live": 2, "channels": 2, "web": 3, "views": 4, "ops": 5, "entry": 5}
SUBPACKAGES = {"db", "live", "channels", "web", "views", "ops"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([NAME, *parts])] = path
    return found


MODULES = _modules()


def _part(module: str) -> str:
    """Which part of the plan a module belongs to."""
    parts = module.split(".")[1:]
    if not parts:
        return "entry"  # the factory
    if parts[0] in SUBPACKAGES:
        return parts[0]
    return "shared" if parts[0] in SHARED else "entry"


def _imports(module: str, path: Path) -> set[str]:
    """The package's modules this module imports (a `from X import y` of a submodule counts as X.y)."""
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == NAME)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == NAME:
                target = node.module
            else:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in MODULES else target)
    found.discard(module)
    return {name for name in found if name in MODULES}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_the_plan_covers_every_module():
    assert {_part(m) for m in MODULES} <= set(RANK)
    top = sorted(m for m in MODULES if m.count(".") == 1 and _part(m) == "entry")
    assert top == [f"{NAME}.gunicorn_conf", f"{NAME}.wsgi"], \
        "a new top-level module: put it in the subpackage of its job, or name it shared ground here"
    for sub in SUBPACKAGES:
        doc = ast.get_docstring(ast.parse((PACKAGE / sub / "__init__.py").read_text()))
        assert doc and "\n" not in doc.strip(), f"{sub}/__init__.py says its job in one line"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module):
    source = _part(module)
    wrong = []
    for target in sorted(GRAPH[module]):
        destination = _part(target)
        if destination == source:
            continue
        sideways = RANK[destination] == RANK[source] and RANK[source] < RANK["entry"]  # live/ vs channels/
        if RANK[destination] > RANK[source] or sideways:
            wrong.append(f"{module} ({source}) imports {target} ({destination})")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(wrong)


def test_no_import_cycles():
    """Between modules (the package's own __init__ aside: every import passes through it)."""
    graph = {m: {t for t in targets if t != NAME} for m, targets in GRAPH.items() if m != NAME}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_can_fail():
    """The rules above see what they should: a known downward import, and the parts' ranks."""
    assert f"{NAME}.db.pool" in GRAPH[f"{NAME}.db.store"]
    assert f"{NAME}.web.auth" in GRAPH[f"{NAME}.views.notifications"]
    assert _part(f"{NAME}.db.store") == "db" and _part(f"{NAME}.metrics") == "shared"
    assert RANK["db"] < RANK["web"] < RANK["views"] < RANK["ops"]
