"""The import graph of the `selfcheck` package, read from the source (nothing is imported).

Layers, bottom to top; a module may import its own layer and those below, never above:

    system        the OS edge: systemd notify, secret files
    drivers | mqtt    the hardware edge and the wire contract (neither imports the other)
    kiosk | central   the station and the library side (neither imports the other);
                      inside the station: core (and its timeouts) < shared (settings,
                      texts, receipt) < runtime < ui
    lab           demo, simulation, chaos, benchmarks, fuzzing, the process harness
    cli           the `selfcheck` command
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# (rank, wing): a module imports only from a lower rank, or from the same wing.
LAYERS: list[tuple[str, int, str]] = [
    ("selfcheck.system", 0, "system"),
    ("selfcheck.drivers", 1, "drivers"),
    ("selfcheck.mqtt", 1, "mqtt"),
    ("selfcheck.kiosk.core", 2, "kiosk.core"),
    ("selfcheck.kiosk.core_model", 2, "kiosk.core"),
    ("selfcheck.kiosk.core_table", 2, "kiosk.core"),
    ("selfcheck.kiosk.timeouts", 2, "kiosk.core"),  # pure values the core and runtime share
    ("selfcheck.kiosk.runtime", 4, "kiosk.runtime"),
    ("selfcheck.kiosk.ui", 5, "kiosk.ui"),
    ("selfcheck.kiosk", 3, "kiosk.shared"),
    ("selfcheck.central", 2, "central"),
    ("selfcheck.lab", 6, "lab"),
    ("selfcheck.cli", 7, "cli"),
    ("selfcheck", 0, "root"),
]


def layer_of(module: str) -> tuple[int, str]:
    for prefix, rank, wing in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank, wing
    raise KeyError(module)


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (the wings are linked in: follow links)."""
    found: dict[str, Path] = {}
    for folder, _, files in os.walk(SRC / "selfcheck", followlinks=True):
        for name in files:
            if name.endswith(".py"):
                path = Path(folder) / name
                parts = list(path.relative_to(SRC).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import of `module`, lazy ones included, those only
    for type checking left out (they never run)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(node: ast.AST) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for sub in child.orelse:
                    yield from walk(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    yield (full if full in known else base), child.lineno
            yield from walk(child)

    for name, line in walk(tree):
        if name == "selfcheck" or name.startswith("selfcheck."):
            while name not in known and "." in name:
                name = name.rpartition(".")[0]
            yield name, line


def graph() -> dict[str, dict[str, int]]:
    known = modules()
    return {m: {dep: line for dep, line in imports(m, p, known) if dep != m}
            for m, p in known.items()}


def upward(g: dict[str, dict[str, int]]) -> list[str]:
    found = []
    for module, deps in g.items():
        rank, wing = layer_of(module)
        for dep, line in deps.items():
            dep_rank, dep_wing = layer_of(dep)
            if dep_wing != wing and dep_rank >= rank and dep_wing != "root":
                found.append(f"{module}:{line} imports {dep} ({wing} -> {dep_wing})")
    return found


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, {}):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out
