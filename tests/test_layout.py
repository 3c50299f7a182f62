"""The layout shows the data flow: packages import downward only, and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edge_agent"
# Top to bottom: a package may import only those listed after it.
ORDER = [
    "cli",
    "tools",
    "app",
    "appliance",
    "guard",
    "sources",
    "events",
    "observability",
    "runtime",
    "inference",
    "access",
    "config",
    "errors",
]
FREE = {"allocator", "web", "__init__"}  # leaves that import nothing of ours
MAX_LINES = 320


def _imports(path: Path) -> set[str]:
    """Top-level parts of edge_agent that one module imports."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])  # the module's package
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = parts[: len(parts) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
        else:
            target = (node.module or "").split(".")
        if target[:1] == ["edge_agent"] and len(target) > 1:
            found.add(target[1])
    return found


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_packages_import_downward_only() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        own = _part(path)
        if own in FREE:
            continue
        assert own in ORDER, f"{own} is not placed in the layout order"
        below = set(ORDER[ORDER.index(own) + 1 :]) | FREE
        wrong += [f"{path.relative_to(PACKAGE)} imports {t}" for t in _imports(path) - below - {own}]
    assert not wrong, wrong


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, big
