"""The simulator package's shape: no import cycle (imports inside functions count), small modules and classes.

``import_graph`` and ``find_cycle`` take any package folder, so the same check
can cover all of tinybot.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tinybot

TINYBOT = Path(tinybot.__file__).parent


def module_name(path: Path, root: Path, package: str) -> str:
    """`root`/sim/engine.py → "<package>.sim.engine"; a package's __init__.py is the package itself."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imported_modules(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that `module` imports anywhere (module level, functions, methods).

    Relative imports are resolved; ``from X import n`` imports the module X.n if there is one, else X.
    """
    here = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = here
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            found |= {f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names}
    return (found & known) - {module}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of `package` (the folder `root`) it imports, counting imports inside functions."""
    files = {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    return {
        name: imported_modules(ast.parse(path.read_text()), name, path.name == "__init__.py", set(files))
        for name, path in files.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_simulator_package_has_no_import_cycle():
    graph = import_graph(TINYBOT / "sim", "tinybot.sim")
    assert "tinybot.sim.server" in graph["tinybot.sim.simulator"]  # the graph sees the package's own imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_check_counts_imports_inside_functions(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "engine.py").write_text("from .sub import server\n")
    (pkg / "sub" / "server.py").write_text("def serve():\n    from .. import engine\n    return engine\n")
    (pkg / "wire.py").write_text("import pkg.sub.server\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.engine"] == {"pkg.sub.server"}
    assert graph["pkg.sub.server"] == {"pkg.engine"}
    assert graph["pkg.wire"] == {"pkg.sub.server"}
    assert find_cycle(graph) == ["pkg.engine", "pkg.sub.server", "pkg.engine"]
    (pkg / "sub" / "server.py").write_text("def serve():\n    return 1\n")
    assert find_cycle(import_graph(pkg, "pkg")) is None


# Issue 22's limits: the engine may be the one big module; a class that grows past this is doing two jobs.
MAX_MODULE_LINES, MAX_ENGINE_LINES, MAX_CLASS_LINES = 700, 1000, 350


def test_simulator_modules_are_small_and_say_what_they_are_for():
    for path in sorted((TINYBOT / "sim").glob("*.py")):
        text = path.read_text()
        lines = len(text.splitlines())
        assert lines <= (MAX_ENGINE_LINES if path.name == "engine.py" else MAX_MODULE_LINES), f"{path.name}: {lines}"
        tree = ast.parse(text)
        doc = ast.get_docstring(tree)
        assert doc and text.startswith('"""') and len(doc.splitlines()[0]) > 20, f"{path.name}: no one-line purpose"
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                assert size <= MAX_CLASS_LINES, f"{path.name}: class {node.name} has {size} lines"
