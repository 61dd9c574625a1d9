"""Derived groupings: accuracy of a coarser label from a finer prediction (gender from race x gender,
as the CLIP paper reports), per group with Wilson intervals, tested like the other rates."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cliplab.audit.definition import load_audit_spec
from cliplab.audit.power import families_per_attribute_set
from cliplab.audit.run import audit_features
from cliplab.audit.stats import wilson
from cliplab.errors import InputError

CLASSES = ["a man", "a woman", "b man", "b woman", "thief"]
GENDER = {"man": ["a man", "b man"], "woman": ["a woman", "b woman"]}
SPEC = {"classes": CLASSES, "flagged": {"crime-related": ["thief"]}, "truth": {"format": "{race} {gender}"},
        "group_by": ["race"], "min_group_size": 30, "derived": {"gender": GENDER}}


def _world(seed: int = 0, n: int = 600, d: int = 24):
    """Race is faint in the images, gender strong: the 4-way prediction errs on race, rarely on gender;
    race b's images are noisier, so its gender accuracy is lower."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    e = dict(zip(["a", "b", "man", "woman", "thief"], q.T))
    race, gender = rng.choice(["a", "b"], n), rng.choice(["man", "woman"], n)
    noise = np.where(race == "b", 0.55, 0.25)[:, None] * rng.standard_normal((n, d))
    feats = np.stack([0.3 * e[r] + e[g] for r, g in zip(race, gender)]) + noise
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    w = np.stack([e[c.split()[0]] * 0.3 + e[c.split()[1]] for c in CLASSES[:4]] + [e["thief"]], axis=1)
    w /= np.linalg.norm(w, axis=0, keepdims=True)
    records = pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "race": race, "gender": gender,
                            "sex": np.where(gender == "man", "M", "F")})
    return feats.astype(np.float32), records, w


def _audit(spec=SPEC):
    feats, records, w = _world()
    return audit_features(feats, records, load_audit_spec(spec), w, 50.0), records


def test_derived_accuracy_per_group_equals_the_counts_by_hand():
    result, records = _audit()
    p = result.predictions
    coarse = {c: g for g, cs in GENDER.items() for c in cs}
    hit = p["prediction"].astype(str).map(coarse).fillna("(none)") == records["gender"]
    g = result.groups[result.groups["metric"] == "derived_accuracy"].set_index("group")
    for race in ("a", "b"):
        mine = hit[records["race"] == race]
        row = g.loc[race]
        assert row["category"] == "gender" and row["denominator"] == len(mine) and row["count"] == mine.sum()
        lo, hi = wilson(np.array([mine.sum()]), np.array([len(mine)]))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo[0], hi[0]))
    fine = result.groups[result.groups["metric"] == "accuracy"].set_index("group")
    assert (g.loc[["a", "b"], "rate"] > fine.loc[["a", "b"], "rate"] + 0.1).all()  # race errors keep the gender
    assert g.loc["all images", "rate"] == pytest.approx(hit.mean())
    shown = p["prediction_gender"].astype(object).where(p["prediction_gender"].notna(), "(none)")
    assert (shown == p["prediction"].astype(str).map(coarse).fillna("(none)")).all()
    assert (p["truth_gender"].astype(str) == records["gender"]).all()


def test_derived_accuracy_is_compared_between_groups():
    result, _ = _audit()
    d = result.disparities[result.disparities["metric"] == "derived_accuracy"].set_index("group")
    assert set(d.index) == {"a", "b"} and (d["category"] == "gender").all()
    assert d.loc["b", "difference"] < 0 and d.loc["b", "detected"]  # race b's noisier images: lower gender accuracy
    assert (d["detectable_difference"] < 0).all()  # an accuracy: a shortfall is the harm
    assert "gender accuracy" in result.summary()
    ranks = result.groups[(result.groups["metric"] == "derived_accuracy") & result.groups["rank"].notna()]
    assert ranks.set_index("group").loc["b", "rank"] == 1  # rank 1 = least accurate
    assert families_per_attribute_set(result.spec) == result.disparities["family"].nunique() == 4  # the planner agrees


def test_own_truth_column_and_outputs(tmp_path):
    spec = {**SPEC, "truth": None,
            "derived": {"gender": {"labels": GENDER, "truth": {"column": "sex", "map": {"M": "man", "F": "woman"}}}}}
    result, records = _audit(spec)
    plain, _ = _audit()
    own = result.groups[result.groups["metric"] == "derived_accuracy"].set_index("group")["rate"]
    assert np.allclose(own, plain.groups[plain.groups["metric"] == "derived_accuracy"].set_index("group")["rate"])
    assert "accuracy" not in set(result.groups["metric"])  # no fine truth: no 4-way accuracy
    assert result.data.truth["with_truth (gender)"] == len(records)
    page = result.write(tmp_path / "out").read_text()
    assert "gender accuracy (top-1 class mapped to gender)" in page
    assert "Error rates per true class" not in page  # no fine truth: no per-class error rates
    assert "Error rates per true class" in plain.write(tmp_path / "plain").read_text()
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert doc["audit"]["derived"]["gender"]["truth"]["column"] == "sex"
    assert any(r["metric"] == "derived_accuracy" for r in doc["groups"])
    again = load_audit_spec({k: v for k, v in doc["audit"].items() if k != "source"})  # round trip
    assert again.derived == load_audit_spec(spec).derived


@pytest.mark.parametrize("derived,message", [
    ({"gender": {"man": ["a man", "b mna"], "woman": ["a woman"]}}, "class 'b mna' (coarse label 'man') is not one "
                                                                    "of the classes (did you mean 'b man'?)"),
    ({"gender": {"man": ["a man", "b man"], "woman": ["a man"]}}, "class 'a man' is in both 'man' and 'woman'"),
    ({"gender": {"man": ["a man"]}}, "needs two or more coarse labels"),
    ({"gender": {"man": [], "woman": ["a woman"]}}, "coarse label 'man' lists no classes"),
    ({"gender": ["a man"]}, "must map coarse labels to lists of classes"),
    ([], "'derived' must map a grouping name"),
    ({"gender": {"labels": GENDER, "truth": {"colum": "sex"}}}, "unknown key 'colum'"),
])
def test_bad_derived_groupings(derived, message):
    with pytest.raises(InputError) as info:
        load_audit_spec({**SPEC, "derived": derived})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_derived_grouping_needs_a_truth():
    with pytest.raises(InputError, match="derived grouping 'gender' needs a true label"):
        load_audit_spec({**SPEC, "truth": None})


def test_own_truth_column_must_exist_and_match():
    feats, records, w = _world()
    spec = {**SPEC, "derived": {"gender": {"labels": GENDER, "truth": "sexx"}}}
    with pytest.raises(InputError, match=r"derived\['gender'\].truth column 'sexx' is not in the metadata"):
        audit_features(feats, records, load_audit_spec(spec), w)
    spec = {**SPEC, "derived": {"gender": {"labels": GENDER, "truth": "sex"}}}  # M/F are not man/woman
    with pytest.raises(InputError, match="derived grouping 'gender': no image has a coarse true label"):
        audit_features(feats, records, load_audit_spec(spec), w)
