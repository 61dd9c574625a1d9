"""The import graph of cliplab/, built from the source with ast: no cycles, and only cliplab/cli/
imports the command line (the CLI is a skin over the library, never the other way round).

Every import counts, also one inside a function (a lazy import still runs), except those under
``if TYPE_CHECKING:``, which never run. ``from pkg import name`` is an edge to ``pkg.name`` when
that is a module, else to ``pkg``.
"""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cliplab"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:  # the `else:` branch of `if TYPE_CHECKING:` does run
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    yield child
                yield from _runtime_imports(child)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _runtime_imports(node)


def imports_of(name: str) -> set[str]:
    """The cliplab modules that module ``name`` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return e.args[1]
    return None


def test_the_graph_is_read_from_the_source():
    assert {"cliplab.cli", "cliplab.cli.audit", "cliplab.audit.run", "cliplab.models"} <= set(GRAPH)
    assert "cliplab.audit" in GRAPH["cliplab.cli.audit"]  # a lazy import inside cmd_audit counts
    assert "cliplab.errors" in GRAPH["cliplab.cli"]  # `from .. import errors` is the module


def test_only_the_cli_imports_the_cli():
    offenders = sorted(f"{src} -> {dst}" for src, dsts in GRAPH.items() for dst in dsts
                       if dst.startswith("cliplab.cli") and not src.startswith("cliplab.cli"))
    assert not offenders


def test_no_import_cycle_anywhere():
    """Function-level imports count too; only imports under ``if TYPE_CHECKING:`` do not."""
    assert cycle(GRAPH) is None
