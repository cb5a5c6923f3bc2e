"""The project's imports, read from the source with ``ast`` (nothing is imported): the one walker that
the layering test (tests/test_boundaries.py), the project-wide cycle test and the add-on's batch test
(tests/blender/test_imports.py) share. Imports inside functions count: a lazy import only hides a cycle.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "training", "blender_att3d")


def module_files(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` under ``root``."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """``(line, module, names)`` for every import statement in ``path``, relative ones made absolute:
    ``import a.b`` gives ``("a.b", ())``, ``from a import x, y`` gives ``("a", ("x", "y"))``."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield node.lineno, module, tuple(alias.name for alias in node.names)


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in ``path``; ``from m import n`` yields ``m.n`` too, since ``n``
    may be a submodule (``from blender_att3d import client``). For layering rules on names."""
    for line, module, names in imports(path, root):
        yield line, module
        for n in names:
            yield line, f"{module}.{n}"


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file.

    ``from PKG import a, b`` depends on the submodules ``PKG.a``/``PKG.b``, and on ``PKG`` itself only
    for names that are not submodules (a package's ``__init__`` runs before any of its modules anyway,
    so that edge alone is no cycle).
    """
    known = module_files(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        deps: set[str] = set()
        for _, module, names in imports(path, root):
            subs = [f"{module}.{n}" for n in names]
            deps.update(s for s in subs if s in known)
            if not names or any(s not in known for s in subs):
                deps.add(module)
        deps.discard(name)  # batch.py imports itself when run as a script (blender -b -P batch.py)
        graph[name] = {d for d in deps if d in known}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every project module that importing ``start`` can reach, ``start`` included."""
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")
