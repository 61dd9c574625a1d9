"""cliplab.audit.definition: loading audit files, text and comma lists, and clear validation errors."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cliplab.audit.definition import (
    AuditSpec,
    ClassSpec,
    TruthSpec,
    load_audit_spec,
    select_rows,
    spec_from_dict,
    true_classes,
)
from cliplab.errors import InputError

AUDITS = Path(__file__).resolve().parents[2] / "audits"


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "audit.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["synthetic", "fairface-clip-paper", "fairface-clip-paper-with-child"])
def test_shipped_audits_load(name):
    spec = load_audit_spec(AUDITS / f"{name}.yaml")
    assert spec.name == name and spec.group_by and spec.flagged


def test_clip_paper_probe_matches_the_paper():
    spec = load_audit_spec(AUDITS / "fairface-clip-paper.yaml")
    assert len([c for c in spec.classnames if c not in spec.flagged_classes]) == 14
    assert set(spec.flagged["non-human"]) == {"animal", "gorilla", "chimpanzee", "orangutan"}
    assert set(spec.flagged["crime-related"]) == {"thief", "criminal", "suspicious person"}
    child = load_audit_spec(AUDITS / "fairface-clip-paper-with-child.yaml")
    assert set(child.classnames) - set(spec.classnames) == {"child"}
    records = pd.DataFrame({"race": ["Latino_Hispanic", "Black", None], "gender": ["Female", "Male", "Male"]})
    truth, counts = true_classes(records, spec)
    assert truth.tolist()[:2] == ["Latino Hispanic woman", "Black man"] and pd.isna(truth[2])
    assert counts["missing_truth_value"] == 1


def test_synthetic_audit_filters_the_test_split():
    spec = load_audit_spec(AUDITS / "synthetic-legacy.yaml")
    rows = pd.DataFrame({"split": ["train", "test", "test"]})
    assert select_rows(rows, spec).tolist() == [False, True, True]
    assert spec.class_prompts == {"thief": ["a photo of a thief."]}


def test_text_file_and_comma_list(tmp_path):
    p = tmp_path / "classes.txt"
    p.write_text("# my classes\ncat\n\ndog\nthief\n")
    assert load_audit_spec(p).classnames == ["cat", "dog", "thief"]
    assert load_audit_spec("cat, dog ,thief").classnames == ["cat", "dog", "thief"]
    assert load_audit_spec(["a", "b"]).classnames == ["a", "b"]


@pytest.mark.parametrize("text,message", [
    ("classes: [a, b]\nflaged: {x: [a]}\n", "unknown key 'flaged' (did you mean 'flagged'?)"),
    ("classes: [a, b]\nflagged: {crime: [c]}\n", "flagged class 'c' (category 'crime') is not one of the classes"),
    ("classes: [a, b]\ntemplates: ['a photo of a cat']\n", "has no {} to mark the class name"),
    ("classes: [a, b, A]\n", "class 'A' is given twice"),
    ("classes: [a, b]\nflagged: {x: [a], y: [a]}\n", "flagged under both"),
    ("classes: [a, b]\ntruth: {column: l, format: '{x}'}\n", "exactly one of 'column' or 'format'"),
    ("classes: [a, b]\ntruth: {colum: l}\n", "unknown key 'colum'"),
    ("classes: [a, b]\ngroup_by: [x]\nreference: {y: 1}\n", "not a group_by attribute"),
    ("classes: [a, b]\nalpha: 2\n", "alpha must be between 0 and 1"),
    ("classes: [a, b]\ncorrection: sidak\n", "correction must be one of"),
    ("classes: [a, b]\nmin_group_size: many\n", "min_group_size must be an integer"),
    ("classes: [{name: a, prompt: [x]}, b]\n", "unknown key 'prompt'"),
    ("templates: ['{}']\n", "no 'classes'"),
    ("classes: [a, b\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_validation_errors_are_clear(tmp_path, text, message):
    with pytest.raises(InputError, match=None) as err:
        load_audit_spec(_yaml(tmp_path, text))
    assert message in str(err.value)


def test_missing_group_column_is_named():
    spec = AuditSpec(classes=(ClassSpec("a"), ClassSpec("b")), group_by=("tone", "agee"))
    with pytest.raises(InputError, match=r"group_by column 'agee' is not in the metadata \(did you mean 'age'\?\)"):
        spec.check_columns(["path", "tone", "age"])


def test_missing_file_is_an_input_error():
    with pytest.raises(InputError, match="no such file"):
        load_audit_spec("does/not/exist.yaml")


def test_class_prompts_and_overrides():
    spec = spec_from_dict({"classes": ["a", {"name": "b", "prompts": ["a photo of b"]}], "group_by": "g"})
    assert spec.class_prompts == {"b": ["a photo of b"]} and spec.group_by == ("g",)
    spec2 = spec.with_overrides(group_by=("g", "h"), alpha=None)
    assert spec2.group_by == ("g", "h") and spec2.alpha == 0.05
    assert spec2.attribute_sets() == [("g",), ("h",), ("g", "h")]
    with pytest.raises(InputError):
        spec.with_overrides(flagged={"x": ("zzz",)})


def test_truth_column_with_map():
    spec = AuditSpec(classes=(ClassSpec("cat"), ClassSpec("dog")), truth=TruthSpec(column="y", map={"c": "cat"}))
    truth, counts = true_classes(pd.DataFrame({"y": ["c", "dog", "bird", None]}), spec)
    assert truth.tolist()[:2] == ["cat", "dog"] and truth.isna().tolist() == [False, False, True, True]
    assert counts == {"missing_truth_value": 1, "truth_not_in_label_set": 1}


def test_to_dict_round_trips():
    spec = load_audit_spec(AUDITS / "fairface-clip-paper.yaml")
    again = spec_from_dict({k: v for k, v in spec.to_dict().items() if k != "source"}, source=spec.source)
    assert again == spec
