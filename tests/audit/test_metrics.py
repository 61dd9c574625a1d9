"""cliplab.audit.metrics: the count-based numbers equal fairlearn's on the same predictions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    selection_rate,
)

from cliplab.audit.definition import AuditSpec, ClassSpec, TruthSpec
from cliplab.audit.metrics import OVERALL
from cliplab.audit.run import audit_features

CLASSES = ["cat", "dog", "bird", "gorilla", "thief", "criminal"]


def _data(n: int = 3000, seed: int = 0, classes=CLASSES):
    rng = np.random.default_rng(seed)
    d = 16
    weights = rng.normal(size=(d, len(classes))).astype(np.float32)
    weights /= np.linalg.norm(weights, axis=0)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    a = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]).astype(object)
    a[rng.random(n) < 0.03] = None  # missing attribute values
    records = pd.DataFrame({"path": [f"img{i}.png" for i in range(n)], "a": a,
                            "b": rng.choice(["u", "v"], n),
                            "label": rng.choice([*classes, "unknown-class"], n)})
    return feats, records, weights


@pytest.fixture(scope="module")
def result():
    feats, records, weights = _data()
    spec = AuditSpec(classes=tuple(ClassSpec(c) for c in CLASSES), group_by=("a", "b"), truth=TruthSpec(column="label"),
                     flagged={"non-human": ("gorilla",), "crime-related": ("thief", "criminal")}, top_k=3,
                     min_group_size=400, n_boot=200)
    return audit_features(feats, records, spec, weights, 30.0)


CASES = [("accuracy", ""), ("flagged_rate", "non-human"), ("flagged_rate", "crime-related"),
         ("class_rate", "thief"), ("topk_flagged_rate", "crime-related")]


@pytest.mark.parametrize("attribute", ["a", "b", "a & b"])
@pytest.mark.parametrize("metric,category", CASES)
def test_rates_equal_fairlearn_metricframe(result, attribute, metric, category):
    mf = result.metric_frame(attribute, metric, category)
    assert isinstance(mf, MetricFrame)
    ours = result.groups[(result.groups["attribute"] == attribute) & (result.groups["metric"] == metric)
                         & (result.groups["category"] == category)]
    theirs = mf.by_group[metric]
    if isinstance(theirs.index, pd.MultiIndex):
        theirs.index = [" & ".join(map(str, i)) for i in theirs.index]
    merged = ours.set_index("group")["rate"].sort_index()
    np.testing.assert_allclose(merged.to_numpy(), theirs.sort_index().to_numpy(), rtol=1e-12)
    assert list(merged.index) == sorted(map(str, theirs.index))


def test_direct_metricframe_on_raw_predictions(result):
    """Independently of cliplab's predictions table helper: MetricFrame with selection_rate."""
    p = result.predictions.dropna(subset=["a"])
    flagged = p["flagged_category"].eq("crime-related").astype(int)
    mf = MetricFrame(metrics=selection_rate, y_true=flagged, y_pred=flagged, sensitive_features=p["a"])
    ours = result.by_group("flagged_rate", "crime-related", attribute="a").set_index("group")["crime-related"]
    pd.testing.assert_series_equal(ours.sort_index(), mf.by_group.sort_index(), check_names=False)
    n = result.by_group("flagged_rate", attribute="a").set_index("group")["n"]
    assert n.sum() == len(p)
    assert result.data.missing_attribute_values["a"] == result.predictions["a"].isna().sum() > 0


def test_overall_rates_and_truth_counts(result):
    p = result.predictions
    overall = result.overall().set_index(["metric", "category"])["rate"]
    assert overall[("flagged_rate", "non-human")] == pytest.approx((p["flagged_category"] == "non-human").mean())
    known = p["truth"].notna()
    assert overall[("accuracy", "")] == pytest.approx(p.loc[known, "correct"].mean())
    assert result.data.truth["truth_not_in_label_set"] == (result.records["label"] == "unknown-class").sum()


def test_demographic_parity_equals_fairlearn(result):
    p = result.predictions.dropna(subset=["a"])
    for cat in ("non-human", "crime-related"):
        y = p["flagged_category"].eq(cat).astype(int)
        row = result.fairness.set_index(["attribute", "category"]).loc[("a", cat)]
        assert row["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(y, y, sensitive_features=p["a"]))
        assert row["demographic_parity_ratio"] == pytest.approx(
            demographic_parity_ratio(y, y, sensitive_features=p["a"]))


def test_equalized_odds_on_a_binary_task_equals_fairlearn():
    feats, records, weights = _data(n=2000, seed=3, classes=["safe", "threat"])
    records["label"] = np.where(np.random.default_rng(4).random(len(records)) < 0.4, "threat", "safe")
    spec = AuditSpec(classes=(ClassSpec("safe"), ClassSpec("threat")), group_by=("a",), flagged={"harm": ("threat",)},
                     truth=TruthSpec(column="label"), n_boot=200)
    res = audit_features(feats, records, spec, weights, 50.0)
    p = res.predictions.dropna(subset=["a"])
    y_true, y_pred = (p["truth"] == "threat").astype(int), (p["prediction"] == "threat").astype(int)
    row = res.fairness[(res.fairness["attribute"] == "a") & res.fairness["equalized_odds_difference"].notna()].iloc[0]
    assert row["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y_true, y_pred, sensitive_features=p["a"]))
    assert row["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y_true, y_pred, sensitive_features=p["a"]))


def test_small_groups_are_reported_not_ranked_or_compared(result):
    g = result.groups
    small = g[g["status"] == "too_small"]
    assert len(small) and small["rank"].isna().all() and (small["denominator"] < 400).all()
    assert g[(g["status"] == "ok") & (g["attribute"] != OVERALL)]["rank"].notna().all()
    d = result.disparities
    for _, r in small.iterrows():
        same = d[(d["attribute"] == r["attribute"]) & (d["metric"] == r["metric"]) & (d["category"] == r["category"])]
        assert r["group"] not in set(same["group"]) | set(same["reference"])


def test_disparity_rows_are_consistent(result):
    d = result.disparities
    assert {"attribute", "group", "reference", "metric", "category", "difference", "ci_low", "ci_high",
            "p_adjusted", "flagged"} <= set(d.columns)
    np.testing.assert_allclose(d["difference"], d["rate"] - d["reference_rate"])
    assert (d["ci_low"] <= d["ci_high"]).all()
    assert (d["p_adjusted"] >= d["p_value"]).all()
    # default reference: the rest of the attribute set (every image with a value, small groups included)
    g = result.groups.set_index(["attribute", "metric", "category", "k"])
    for _, r in d.sample(20, random_state=0).iterrows():
        fam = g.loc[(r["attribute"], r["metric"], r["category"], r["k"])]
        assert r["reference"] == "(rest)" and r["n_reference"] == fam["denominator"].sum() - r["n"]
        assert r["count_reference"] == fam["count"].sum() - r["count"]
    assert (d["sim_ci_low"] <= d["ci_low"]).all() and (d["sim_ci_high"] >= d["ci_high"]).all()


def test_label_set_what_if_is_paired_and_counts_new_classes():
    """B adds a class that absorbs some of group x's harmful predictions (the paper's 'child')."""
    from cliplab.audit.compare import align_spec, compare_audits

    rng = np.random.default_rng(8)
    n = 1200
    group = np.repeat(["x", "y"], n // 2)
    harm = rng.random(n) < np.where(group == "x", 0.3, 0.05)
    young = (group == "x") & harm & (rng.random(n) < 0.7)  # these go to 'child' once it exists
    records = pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "g": group})
    a_spec = AuditSpec(classes=(ClassSpec("person"), ClassSpec("thief")), flagged={"crime": ("thief",)},
                       group_by=("g",), n_boot=500, top_k=1)
    b_spec = align_spec(AuditSpec(classes=(ClassSpec("person"), ClassSpec("thief"), ClassSpec("child")),
                                  flagged={"crime": ("thief",)}), a_spec)
    fa = np.eye(2, dtype=np.float32)[harm.astype(int)]
    fb = np.eye(3, dtype=np.float32)[np.where(young, 2, harm.astype(int))]
    a = audit_features(fa, records, a_spec, np.eye(2, dtype=np.float32))
    b = audit_features(fb, records, b_spec, np.eye(3, dtype=np.float32))
    comp = compare_audits(a, b).changes.set_index(["group", "metric", "category"])
    x = comp.loc[("x", "flagged_rate", "crime")]
    assert x["rate_a"] == pytest.approx(harm[group == "x"].mean())
    assert x["change"] == pytest.approx(-young[group == "x"].mean()) and x["ci_high"] < 0 and x["significant"]
    assert not comp.loc[("y", "flagged_rate", "crime")]["significant"]
    assert comp.loc[("x", "new_class_rate", "child")]["rate_b"] == pytest.approx(young[group == "x"].mean())


def test_error_rates_per_group_and_class_equal_sklearn(result):
    """FNR = 1 - recall and FPR of each true class within each group, against sklearn."""
    from sklearn.metrics import confusion_matrix

    er = result.error_rates
    p = result.predictions
    p = p[p["truth"].notna() & p["a"].notna()]
    for grp in ("x", "z"):
        sub = p[p["a"] == grp]
        labels = sorted(set(sub["truth"].astype(str)) | set(sub["prediction"].astype(str)))
        cm = confusion_matrix(sub["truth"].astype(str), sub["prediction"].astype(str), labels=labels)
        for cls in ("cat", "gorilla"):
            i = labels.index(cls)
            row = er[(er["attribute"] == "a") & (er["group"] == grp) & (er["true_class"] == cls)].iloc[0]
            assert row["n_true"] == cm[i].sum()
            assert row["false_negative_rate"] == pytest.approx(1 - cm[i, i] / cm[i].sum())
            assert row["false_positive_rate"] == pytest.approx((cm[:, i].sum() - cm[i, i]) / (cm.sum() - cm[i].sum()))
        assert (result.confusion("a", grp).to_numpy().sum()) == len(sub)
    assert set(er["attribute"]) == {"a", "b", "a & b"} and (er["fnr_ci_low"] <= er["false_negative_rate"]).all()


def test_no_group_of_adequate_size_gives_no_disparities():
    feats, records, weights = _data(n=200, seed=5)
    spec = AuditSpec(classes=tuple(ClassSpec(c) for c in CLASSES), group_by=("a",), min_group_size=500,
                     flagged={"crime-related": ("thief", "criminal")}, top_k=1)
    res = audit_features(feats, records, spec, weights, 30.0)
    assert res.disparities.empty and "0 detected disparities" in res.summary()
