"""Folders are floors and imports only go down: read every import of the shipped packages.

Every ``import`` and ``from ... import`` counts, at module level or inside a function (an import
hidden in a function hides a cycle, it does not remove it). Floors, lowest first::

    collectors (aipulse) < catalog < stream < alerts < dashboards < services < cli (the composition root)

The catalog (aipulse_catalog: window columns, figures, the sketch) imports only the standard
library and the SDK's contract floor (test_the_catalog_imports_only_the_stdlib_and_the_sdk).

Known upward imports that other work removes are listed in ``KNOWN_UPWARD`` with the reason;
the test fails on any other, and on a listed one that is gone (so the list only shrinks).
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# folder -> its top-level import package, lowest floor first.
FLOORS = {
    "collectors": "aipulse",
    "catalog": "aipulse_catalog",
    "stream": "aipulse_stream",
    "alerts": "aipulse_alerts",
    "dashboards": "aipulse_grafana",
    "services": "aipulse_local",
    "cli": "aipulse_cli",
}
PACKAGE_FOLDER = {pkg: folder for folder, pkg in FLOORS.items()}
RANK = {folder: i for i, folder in enumerate(FLOORS)}
# (importing file, imported folder): why it is still there.
KNOWN_UPWARD = {
}


def imports_of(path: Path) -> set[str]:
    """Top-level package names imported anywhere in ``path`` (relative imports excluded)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def edges() -> dict[tuple[str, str], list[str]]:
    """(folder, folder it imports) -> the files that do."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for folder, pkg in FLOORS.items():
        for path in sorted((ROOT / folder / pkg).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for name in imports_of(path):
                target = PACKAGE_FOLDER.get(name)
                if target and target != folder:
                    out[(folder, target)].append(rel)
    return out


def test_parser_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef f():\n    from aipulse_local.state import StackState\n    import aipulse.contract\n"
                 "from . import sibling\n")
    assert imports_of(f) == {"os", "aipulse_local", "aipulse"}


def test_imports_only_go_down():
    upward = {(rel, dst): f"{src} imports {dst}" for (src, dst), files in edges().items()
              if RANK[dst] > RANK[src] for rel in files}
    unexpected = sorted(set(upward) - set(KNOWN_UPWARD))
    assert not unexpected, "imports going up a floor: " + "; ".join(f"{rel} -> {dst}/" for rel, dst in unexpected)
    gone = sorted(set(KNOWN_UPWARD) - set(upward))
    assert not gone, f"fixed, remove from KNOWN_UPWARD: {gone}"


def test_no_folder_imports_one_that_imports_it_back_except_known():
    graph = defaultdict(set)
    for (src, dst), files in edges().items():
        if not all((rel, dst) in KNOWN_UPWARD for rel in files):
            graph[src].add(dst)
    for a in FLOORS:
        for b in graph[a]:
            assert a not in _reachable(graph, b), f"{a}/ imports {b}/, which imports {a}/ back"


def test_the_composition_root_is_imported_by_nobody():
    importers = sorted({rel for (src, dst), files in edges().items() if dst == "cli" for rel in files})
    assert not importers, importers


def _reachable(graph, start) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_catalog_imports_only_the_stdlib_and_the_sdk():
    import sys

    allowed = set(sys.stdlib_module_names) | {"aipulse", "aipulse_catalog"}
    for path in sorted((ROOT / "catalog" / "aipulse_catalog").rglob("*.py")):
        extra = imports_of(path) - allowed
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}: the catalog is stdlib only"
