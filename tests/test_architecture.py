"""The house's rules, read off the code: rooms by concern, arrows pointing down only, no cycles, small files.

README.md ("Layout") and ../shared/DESIGN.md draw the same floors.  Imports inside functions count
like any other (a lazy import is still a dependency); `if TYPE_CHECKING:` imports count too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tinybot"

# Floors, ground first.  A module may import its own room and the rooms on lower floors; two rooms
# on one floor do not import each other.  `tinybot/__init__.py` and `__main__.py` entry points sit
# above everything (nothing imports an entry point).
FLOORS = (
    ("base",),
    ("store", "sim"),
    ("exchange",),
    ("trade",),
    ("advisors", "analysis"),
    ("owner",),
    ("loop",),
    ("ops",),
    ("rehearse",),
    ("cli",),
)
FLOOR_OF = {room: n for n, rooms in enumerate(FLOORS) for room in rooms}

MAX_TOP_LEVEL_MODULES = 12
MAX_MODULE_LINES = 700
MAX_CLASS_LINES = 350
LONGER_ALLOWED = {"tinybot/sim/engine.py": 1000, "tinybot/loop/scheduler.py": 500}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(current: str, is_package: bool, level: int, module: str | None) -> str:
    if not level:
        return module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _nearest(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The tinybot modules that module ``name`` imports anywhere in its body."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            target = _absolute(name, is_package, node.level, node.module)
            if not target.startswith("tinybot"):
                continue
            for alias in node.names:
                hit = _nearest(f"{target}.{alias.name}", known)
                if hit:
                    found.add(hit)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tinybot"):
                    hit = _nearest(alias.name, known)
                    if hit:
                        found.add(hit)
    found.discard(name)
    # `from . import x` inside a package's __init__ resolves to the package itself first: drop self-loops
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
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


def room_of(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) < 2 or parts[-1] == "__main__":
        return None  # the package itself and entry points stand above the house
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[1]).is_dir() else None


def test_cycle_finder_finds_a_cycle():
    """The checker itself works: a planted cycle is found, a chain is not a cycle."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_files():
    assert cycles(graph()) == []


def test_every_module_lives_in_a_room_of_the_plan():
    rooms = {room_of(n) for n in modules()} - {None}
    assert rooms <= set(FLOOR_OF), f"rooms not on a floor of FLOORS: {sorted(rooms - set(FLOOR_OF))}"


def test_no_module_imports_a_room_above_it():
    upward = []
    for name, deps in graph().items():
        mine = room_of(name)
        if mine is None:
            continue
        for dep in deps:
            theirs = room_of(dep)
            if theirs is None or theirs == mine:
                continue
            if FLOOR_OF[theirs] >= FLOOR_OF[mine]:
                upward.append(f"{name} ({mine}) imports {dep} ({theirs})")
    assert upward == []


def test_few_modules_directly_in_the_package():
    top = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_modules_stay_small():
    long = {}
    for path in modules().values():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > LONGER_ALLOWED.get(_rel(path), MAX_MODULE_LINES):
            long[_rel(path)] = n
    assert long == {}


def test_classes_stay_small():
    long = {}
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                long[f"{_rel(path)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert long == {}


def test_every_module_says_what_it_is_for():
    silent = [
        _rel(p)
        for p in modules().values()
        if p.name != "__main__.py" and not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))
    ]
    assert silent == []


@pytest.mark.parametrize("folder", ["tinybot", "tests", "bench"])
def test_no_noqa_keeps_a_re_export(folder):
    """Old import paths are deleted, not re-exported: a `from … import name` kept only by a `noqa: F401` is gone.
    (`import module  # noqa: F401` for its side effect — a preload, a converter registered — is not a re-export.)"""
    kept = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.match(r"\s*from\s", line) and re.search(r"noqa:\s*F401", line):
                kept.append(f"{_rel(path)}:{n}: {line.strip()}")
    assert kept == []


def test_no_test_module_imports_another():
    """Tests share fixtures through conftest.py files and one helpers module, never by importing a test file."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.rpartition(".")[2].startswith("test_"):
                    offenders.append(f"{_rel(path)} imports {name}")
    assert offenders == []


REPOSITORY_WIDE_TESTS = {"test_architecture.py", "test_packaging.py", "test_bench_smoke.py"}


def test_tests_mirror_the_rooms():
    """A test lives in the folder of the room it tests (tests/trade/ for tinybot/trade/); only tests of the
    repository as a whole sit at tests/'s top; shared code is in tests/helpers/, data in tests/fixtures/."""
    tests = ROOT / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert folders - {"helpers", "fixtures"} <= set(FLOOR_OF), sorted(folders - {"helpers", "fixtures"} - set(FLOOR_OF))
    assert {p.name for p in tests.glob("test_*.py")} <= REPOSITORY_WIDE_TESTS
    assert not list((tests / "helpers").glob("test_*.py")) and not list((tests / "fixtures").rglob("*.py"))
