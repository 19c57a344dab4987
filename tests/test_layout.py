"""The package's layout rules (shared/design/layout.md), read from the source: every import of every file.

Folders are rooms; `ALLOWED` lists which rooms each may import (lazy imports inside functions count
too). From it follow the rules of the design: `views` imports nothing else of anagram; `translate`
nothing from `pipelines`, `method`, `sampler`; `runs`, `outputs`, `evaluation` never `cli` or `app`;
`app` never `cli`. The room graph must have no cycle, and the engines must print nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "anagram"

ALLOWED: dict[str, set[str]] = {
    "views": set(),
    "sampler": {"views"},
    "method": {"views", "sampler"},
    "pipelines": {"views", "sampler", "method"},
    "outputs": {"views"},
    "runs": {"views", "method", "pipelines", "outputs"},
    "testbed": {"views", "sampler", "method", "pipelines", "outputs"},
    "evaluation": {"views", "method", "pipelines", "outputs", "testbed"},
    "translate": {"views", "outputs", "testbed"},
    "cli": {"views", "sampler", "method", "pipelines", "outputs", "runs", "testbed", "evaluation", "translate", "app"},
    "app": {"views", "sampler", "method", "pipelines", "outputs", "runs", "testbed", "evaluation", "translate"},
    "": {"pipelines"},  # anagram/__init__.py: the lazy face (its TYPE_CHECKING import names the pipelines)
}
# Rooms whose code must not print or draw: they report through callbacks and return results.
ENGINES = ("views", "sampler", "method", "pipelines", "outputs", "runs", "evaluation", "translate")


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the anagram modules a file imports, anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "anagram")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "anagram":
                continue
            for alias in node.names:  # `from pkg import x`: x is a module of pkg, or a name in pkg
                found.add(f"{target}.{alias.name}" if is_module(f"{target}.{alias.name}") else target)
    return found


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def room_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        room = room_of(module_name(path))
        for target in imported_modules(path):
            other = room_of(target)
            if other != room and (PACKAGE / other).is_dir():
                graph.setdefault(room, set()).add(other)
    return graph


def depth(graph: dict[str, set[str]]) -> dict[str, int]:
    """Floor of each room: 0 for a room that imports no other, else one above its highest import."""
    floors: dict[str, int] = {}

    def floor(room: str, path: tuple[str, ...] = ()) -> int:
        assert room not in path, f"import cycle between rooms: {' -> '.join(path + (room,))}"
        if room not in floors:
            floors[room] = 1 + max((floor(o, path + (room,)) for o in graph.get(room, ())), default=-1)
        return floors[room]

    for room in graph:
        floor(room)
    return floors


def test_every_room_is_declared():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert rooms <= set(ALLOWED), f"undeclared rooms: {sorted(rooms - set(ALLOWED))}"


def test_every_import_follows_the_layout():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        room = room_of(module_name(path))
        for target in sorted(imported_modules(path)):
            other = room_of(target)
            if other and other != room and (PACKAGE / other).is_dir() and other not in ALLOWED[room]:
                problems.append(f"{path.relative_to(PACKAGE.parent)} imports {target} ({room or 'anagram'} -> {other})")
            if not is_module(target):
                problems.append(f"{path.relative_to(PACKAGE.parent)} imports {target}, which does not exist")
    assert not problems, "\n".join(problems)


def test_rooms_form_layers_without_cycles():
    graph = room_graph()
    floors = depth(graph)
    assert floors.get("views", 0) == 0
    assert max(floors.values()) >= 3
    for room, others in graph.items():
        assert all(floors[o] < floors[room] for o in others)


def test_engines_print_nothing():
    problems = []
    for room in ENGINES:
        for path in sorted((PACKAGE / room).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                    problems.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: print()")
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    if any(n.split(".")[0] in ("rich", "typer", "gradio", "tqdm") for n in names):
                        problems.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: imports {names[0]}")
    assert not problems, "engines report through callbacks; only cli/ and app/ print:\n" + "\n".join(problems)


if __name__ == "__main__":  # print the room graph, as the issue note gives it
    graph = room_graph()
    floors = depth(graph)
    for room in sorted(floors, key=lambda r: (floors[r], r)):
        print(f"floor {floors[room]}: {room or 'anagram'} -> {', '.join(sorted(o or 'anagram' for o in graph.get(room, ()))) or '-'}")
