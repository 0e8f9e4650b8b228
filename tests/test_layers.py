"""The package's layers: a module imports only from its own layer or below (docs/DEVELOPING.md).

Every module's imports are read with ``ast`` (function-level and ``TYPE_CHECKING`` imports
included, since a lazy import is still a dependency), mapped to the room they come from and
compared by rank.  Within layer 1 the rooms are ordered too: models < tasks < constructions,
measures, figures (a task never measures a model; a model knows no task).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "theorylab"

# room -> rank; a module may import a room of equal or lower rank
RANKS: dict[str, float] = {
    "": 0,  # theorylab/__init__.py (the version and the error type)
    "errors": 0,
    "config": 0,
    "models": 1.0,
    "tasks": 1.1,
    "constructions": 1.2,
    "measures": 1.2,
    "figures": 1.2,
    "store": 2,
    "runs": 3,
    "sweep": 4,
    "claims": 5,
    "report": 6,
    "cli": 7,
    "__main__": 8,
}


def room(module: str) -> str:
    """``theorylab.runs.loop`` -> ``runs``; ``theorylab`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported theorylab module) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "theorylab"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] != "theorylab":
                continue
            if name == "theorylab":  # from theorylab import runs -> that room; __version__ -> the package
                out += [(node.lineno, f"theorylab.{a.name}" if a.name in RANKS else "theorylab")
                        for a in node.names]
            else:
                out.append((node.lineno, name))
    return out


def violations(root: Path = PACKAGE) -> list[str]:
    """Every import that goes up a layer, as ``file:line: module (room rank) imports X (rank)``."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        mod = module_name(path, root)
        here = room(mod)
        if here not in RANKS:
            bad.append(f"{path}: room {here!r} has no layer; add it to RANKS in tests/test_layers.py")
            continue
        for line, target in imports_of(path, mod):
            there = room(target)
            if there not in RANKS:
                bad.append(f"{path}:{line}: imports {target}, whose room {there!r} has no layer")
            elif RANKS[there] > RANKS[here]:
                bad.append(f"{path}:{line}: {mod} (layer {RANKS[here]:g}) imports {target} "
                           f"(layer {RANKS[there]:g}), an upward import")
    return bad


def test_no_upward_imports():
    bad = violations()
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


def test_every_room_is_a_folder_or_a_module_with_a_layer():
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    rooms.discard("__init__")
    assert rooms <= set(RANKS), f"rooms without a layer: {sorted(rooms - set(RANKS))}"


@pytest.mark.parametrize("where, planted", [
    ("models/transformer.py", "from theorylab.cli import app"),
    ("tasks/modular.py", "import theorylab.runs.loop"),
    ("measures/fourier.py", "    from theorylab.store import Store\n"),  # a lazy import counts too
    ("store/__init__.py", "from theorylab.runs import RunConfig"),
    ("claims/engine.py", "from ..report import write_report"),  # relative
])
def test_a_planted_upward_import_fails(tmp_path, where, planted):
    """The module as it is passes; the same module with one upward import planted fails."""
    copy = tmp_path / "theorylab"
    target = copy / where
    target.parent.mkdir(parents=True)
    text = (PACKAGE / where).read_text()
    target.write_text(text)
    assert violations(copy) == []
    if planted.startswith("    "):
        planted = "def _planted():\n" + planted
    target.write_text(text + "\n\n" + planted + "\n")
    found = violations(copy)
    assert len(found) == 1 and str(target) in found[0] and "upward import" in found[0], found
