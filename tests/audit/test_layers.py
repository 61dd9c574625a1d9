"""The audit package in layers: each module imports only modules of lower layers, at module
level and inside functions alike (type-only imports under ``if TYPE_CHECKING:`` do not run and
are not counted), so the import graph has no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import cliplab.audit

PACKAGE = Path(cliplab.audit.__file__).parent
LAYERS = [{"sections"}, {"definition", "metadata"}, {"stats"}, {"metrics"},
          {"disparities", "retrieval", "power"},  # numbers
          {"text"}, {"report"}, {"mitigation_report", "report_tables"}, {"html"}, {"outputs"}, {"result"},
          {"compare"}, {"run"}, {"variants", "mitigation"}, {"cli_args"}]
LAYER = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def _runtime_imports(tree: ast.Module) -> set[str]:
    """Names of cliplab.audit modules imported anywhere in ``tree`` except under TYPE_CHECKING."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for other in node.orelse:
                visit(other)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cliplab.audit."):
            found.add(node.module.split(".")[2])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    return {p.stem: _runtime_imports(ast.parse(p.read_text())) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def test_every_module_has_a_layer():
    assert set(_graph()) <= set(LAYER), set(_graph()) - set(LAYER)


def test_modules_import_only_lower_layers():
    upward = [(m, dep) for m, deps in _graph().items() for dep in deps
              if dep in LAYER and LAYER[dep] >= LAYER[m] and dep != m]
    assert not upward, upward


def test_import_graph_has_no_cycle():
    graph, state = _graph(), {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", " -> ".join([*path, m])
        state[m] = "open"
        for dep in graph.get(m, ()):
            visit(dep, [*path, m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


def test_detector_sees_function_level_imports():
    tree = ast.parse("def f():\n    from .report import x\nif TYPE_CHECKING:\n    from .result import R\n")
    assert _runtime_imports(tree) == {"report"}
