"""The public API: every name in cliplab.__all__ imports and says what it is, and docs/api.md
documents exactly those names, each with an example; the examples run, in order, as one script."""
from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cliplab

ROOT = Path(__file__).resolve().parents[1]
API = (ROOT / "docs" / "api.md").read_text()
ENTRY = re.compile(r"^### `([^`]+)`\n(.+?)(?=^##|\Z)", re.M | re.S)
CODE = re.compile(r"```python\n(.*?)```", re.S)


def _entries() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in ENTRY.finditer(API)}


@pytest.mark.parametrize("name", [n for n in cliplab.__all__ if n != "__version__"])
def test_every_public_name_imports_and_has_its_own_docstring(name):
    obj = getattr(cliplab, name)
    doc = obj.__doc__ or ""  # a class's own, never a base class's (inspect.getdoc would inherit)
    assert doc.strip(), f"cliplab.{name} has no docstring"
    assert not doc.startswith(f"{name}("), f"cliplab.{name} has only the dataclass-generated docstring"


def test_api_doc_lists_exactly_the_public_names_each_with_an_example():
    entries = _entries()
    assert sorted(entries) == sorted(cliplab.__all__)
    assert list(entries) == list(dict.fromkeys(entries)), "a name is documented twice"
    for name, body in entries.items():
        code = CODE.findall(body)
        assert len(code) == 1, f"docs/api.md: {name} needs exactly one python example"
        ast.parse(code[0])


def test_api_doc_examples_run(tmp_path):
    script = "\n".join(CODE.findall(API))  # the setup block first, then every entry in order
    env = {**os.environ, "CLIPLAB_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "RANDOM WEIGHTS" in p.stdout  # ZeroShotResult.summary() says what the model is
    assert "exit_code" not in p.stderr


def test_result_types_have_write_and_summary():
    for name in ("ImageEmbeddings", "ZeroShotResult", "SensitivityResult", "AuditResult", "AuditComparison"):
        cls = getattr(cliplab, name)
        assert callable(getattr(cls, "write", None)), name
        assert "out" in inspect.signature(cls.write).parameters, name
    assert callable(cliplab.ImageEmbeddings.summary) and callable(cliplab.ZeroShotResult.summary)


@pytest.mark.parametrize("acc1, warns", [(0.53, True), (0.5, True), (0.75, False)])
def test_zeroshot_summary_warns_when_accuracy_is_at_chance(acc1, warns):
    metrics = {"model": "m@x", "random_init": False, "n_images": 100, "classnames": ["a", "b"], "templates": ["{}"],
               "acc1": acc1, "acc5": 1.0, "mean_per_class_recall": acc1}
    text = cliplab.ZeroShotResult(metrics, None, None, None).summary()  # type: ignore[arg-type]
    assert ("is not above chance (50.0% for 2 classes" in text) == warns, text
    assert "RANDOM" not in text
