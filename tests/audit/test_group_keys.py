"""Group and attribute-set names never collide (issue 12.7): values and column names that hold
the intersection separator `` & `` are escaped in names and kept as lists in the tables/JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cliplab.audit.definition import group_key, load_audit_spec, split_key
from cliplab.audit.run import audit_features
from cliplab.errors import InputError

DATA = Path(__file__).parent / "data"
AUDIT = {"classes": ["person", "thief"], "flagged": {"crime": ["thief"]}, "templates": ["{}"], "top_k": 1,
         "min_group_size": 10, "n_boot": 200}


def _audit(csv: str, group_by: list[str], harmed: dict[str, str], reference: dict | None = None, rate=0.6):
    records = pd.read_csv(DATA / csv, dtype=str, keep_default_na=False)
    target = np.all([records[c] == v for c, v in harmed.items()], axis=0)
    rng = np.random.default_rng(0)
    harm = rng.random(len(records)) < np.where(target, rate, 0.02)
    spec = load_audit_spec(AUDIT | {"group_by": group_by, "reference": reference or {}})
    return audit_features(np.eye(2, dtype=np.float32)[harm.astype(int)], records, spec, np.eye(2, dtype=np.float32))


@pytest.mark.parametrize("parts", [("p & q", "r"), ("p", "q & r"), ("a\\", "&b"), ("x",), ("", "&&"), ("\\&",)])
def test_group_key_round_trips(parts):
    assert split_key(group_key(parts)) == parts


def test_colliding_values_get_distinct_names_and_structured_parts(tmp_path):
    result = _audit("colliding_values.csv", ["role", "site"], {"role": "p", "site": "q & r"})
    inter = result.groups[(result.groups["attribute"] == "role & site") & (result.groups["metric"] == "flagged_rate")]
    assert sorted(inter["group"]) == sorted(["p \\& q & r", "p & q \\& r", "p & r", "p \\& q & q \\& r"])
    flagged = result.flagged()
    hit = flagged[(flagged["attribute"] == "role & site") & (flagged["difference"] > 0)]
    assert len(hit) == 1 and hit["group_values"].iloc[0] == ["p", "q & r"]
    doc = json.loads((result.write(tmp_path / "out", thumbnails=0).parent / "metrics.json").read_text())
    rows = [d for d in doc["disparities"] if d["attribute"] == "role & site" and d["detected"] and d["difference"] > 0]
    assert rows and rows[0]["group_values"] == ["p", "q & r"] and rows[0]["attributes"] == ["role", "site"]
    assert len({g["group"] for g in doc["groups"] if g["attribute"] == "role & site"}) == 4


def test_reference_by_escaped_name_picks_exactly_that_group():
    ref = group_key(("p & q", "r"))
    result = _audit("colliding_values.csv", ["role", "site"], {"role": "p", "site": "q & r"}, {"role & site": ref})
    d = result.disparities[result.disparities["attribute"] == "role & site"]
    assert set(d["reference"]) == {ref} and all(v == ["p & q", "r"] for v in d["reference_values"])
    assert (d["reference_rule"] == "configured").all()


def test_ambiguous_reference_name_is_an_input_error():
    with pytest.raises(InputError, match=r"reference group 'p & q & r' of 'role & site' does not occur") as e:
        _audit("colliding_values.csv", ["role", "site"], {"role": "p"}, {"role & site": "p & q & r"})
    assert "\n" not in str(e.value) and "p \\& q & r" in str(e.value)  # the real names are listed


def test_colliding_column_names_get_distinct_attribute_sets():
    cols = ["x & y", "z", "x", "y & z"]
    result = _audit("colliding_attributes.csv", cols, {"x & y": "a", "z": "c"})
    names = [a for a in result.groups["attribute"].unique() if a != "(all)"]
    assert len(names) == len(set(names)) == 15  # 4 single + 6 pairs + 4 triples + 1 of four
    assert {"x \\& y & z", "x & y \\& z"} <= set(names)
    pair = result.groups[result.groups["attribute"] == "x \\& y & z"]
    assert all(a == ["x & y", "z"] for a in pair["attributes"])


def test_reference_for_an_ambiguous_attribute_name_is_refused():
    with pytest.raises(InputError, match="reference given for 'x & y & z', which is not a group_by attribute"):
        _audit("colliding_attributes.csv", ["x & y", "z", "x", "y & z"], {"x": "e"}, {"x & y & z": "a & c"})
