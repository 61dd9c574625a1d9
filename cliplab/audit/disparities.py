"""Disparities: each group against a reference, tested and corrected within its family.

A **family** is one (attribute set, metric, category, k): e.g. race x top-1 flagged rate into
'crime-related'. Within a family every group of adequate size is compared with a reference:
- an attribute's configured group (``reference: {race: White}``), else the audit's
  ``reference_mode``:
- ``rest`` (default): the group against all other images of the attribute set (disjoint
  samples, so the two-sample statistics hold); with no disparity the shown differences average
  0. Picking the best group instead inflated every shown difference (+0.7 to +5.1 pp with no
  true disparity; benchmarks/bench_audit_stats.py);
- ``overall``: the difference from the rate of all images of the attribute set (the group
  included): (1 - w) x the rest difference, w = the group's share; same test.
Per comparison: difference with Newcombe's interval, ratio with the log-adjusted interval, both
unadjusted 95% (``ci_*``) and simultaneous within the family (``sim_ci_*``, Bonferroni: level
1 - alpha / family size); Fisher's exact p-value; ``p_adjusted`` (Holm within the family, behind
the family's gate: stats.family_adjust). The smallest difference each comparison could have
detected with 80% power is ``detectable_difference``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .definition import REFERENCE_MODES, AuditSpec, group_key

__all__ = ["ALL_GROUPS", "COLUMNS", "DETECT_RULE", "FLAG_RULE", "REFERENCE_MODES", "REFERENCE_RULE", "REST",
           "check_references", "compare_to_reference", "compute_disparities", "empty_disparities"]
from .metrics import ACCURACY_METRICS, OVERALL
from .stats import detectable_difference, difference_interval, family_adjust, fisher_exact, ratio, ratio_interval

DETECT_RULE = ("a disparity is detected when p_adjusted < alpha (Fisher's exact test; Holm within its family, "
               "behind the family's gate, corrected across families) AND its simultaneous interval "
               "(sim_ci_low, sim_ci_high) excludes 0")
FLAG_RULE = DETECT_RULE  # the name the report page imports
REFERENCE_RULE = ("each attribute's configured reference group; else reference_mode: 'rest' (the group against "
                  "all other images of the attribute set) or 'overall' (against all images of the attribute set)")
REST, ALL_GROUPS = "(rest)", "(overall)"  # reference names of the two modes
POWER = 0.8  # of detectable_difference
FOUR_FIFTHS_BAND = (0.8, 1.25)  # Aequitas' "fair" band for ratios; below 0.8 is the four-fifths rule
FAMILY = ["attribute", "metric", "category", "k"]
COLUMNS = ["attribute", "group", "reference", "reference_rule", "metric", "category", "k", "n", "n_reference",
           "count", "count_reference", "rate", "reference_rate", "difference", "ci_low", "ci_high", "ratio",
           "ratio_ci_low", "ratio_ci_high", "four_fifths_violation", "p_value", "p_adjusted", "flagged",
           "attributes", "group_values", "reference_values", "family", "family_size", "family_p", "sim_ci_low",
           "sim_ci_high", "sim_ratio_ci_low", "sim_ratio_ci_high", "detected", "detectable_difference"]
PRE_STATS = COLUMNS[:13] + COLUMNS[23:28] + ["test_count", "test_n", "weight"]


def compare_to_reference(groups: pd.DataFrame, spec: AuditSpec) -> pd.DataFrame:
    """One row per (family, compared group): counts, rates and reference, before statistics.

    ``test_count`` / ``test_n`` are the counts the group is tested against (the configured
    group, or the rest of the attribute set); ``weight`` is the group's share of the attribute
    set for 'overall' (the shown difference is (1 - weight) x the tested one), else 0.
    Vectorised over all families (an audit of FairFace's shape has about 20,000 rows).
    """
    t = groups[groups["attribute"] != OVERALL]
    fam = t.groupby(FAMILY, sort=False)
    total_n, total_x = fam["denominator"].transform("sum"), fam["count"].transform("sum")
    ok = t["status"] == "ok"
    is_ref = ok & (t["group"] == t["attribute"].map(dict(spec.reference)))
    fam_id = fam.ngroup()
    ref_rows = t[is_ref].assign(_f=fam_id[is_ref]).drop_duplicates("_f").set_index("_f")
    has_ref = fam_id.isin(ref_rows.index)
    # assign before filtering: assigning a Series to an empty frame would adopt the Series' rows
    compared = t.assign(_f=fam_id, _total_n=total_n, _total_x=total_x, _has_ref=has_ref)[ok & ~is_ref]
    size = compared.groupby("_f")["group"].transform("size")
    compared = compared[size >= np.where(compared["_has_ref"], 1, 2)]
    size = size[compared.index]
    if compared.empty:
        return pd.DataFrame(columns=PRE_STATS)
    ref = ref_rows.reindex(compared["_f"])
    configured = compared["_has_ref"].to_numpy()
    mode = spec.reference_mode
    n, x = compared["denominator"].to_numpy(np.int64), compared["count"].to_numpy(np.int64)
    tn_rest, tx_rest = compared["_total_n"].to_numpy(np.int64) - n, compared["_total_x"].to_numpy(np.int64) - x
    ref_n = ref["denominator"].to_numpy(float)
    ref_x = ref["count"].to_numpy(float)
    test_n = np.where(configured, ref_n, tn_rest).astype(np.int64)
    test_x = np.where(configured, ref_x, tx_rest).astype(np.int64)
    overall = ~configured & (mode == "overall")
    rn = np.where(overall, compared["_total_n"], test_n).astype(np.int64)
    rx = np.where(overall, compared["_total_x"], test_x).astype(np.int64)
    labels = [_metric_label(k) for k in zip(compared["metric"], compared["category"], compared["k"])]
    out = pd.DataFrame({
        "attribute": compared["attribute"].to_numpy(), "group": compared["group"].to_numpy(),
        "reference": np.where(configured, ref["group"].to_numpy(), ALL_GROUPS if mode == "overall" else REST),
        "reference_rule": np.where(configured, "configured", mode), "metric": compared["metric"].to_numpy(),
        "category": compared["category"].to_numpy(), "k": compared["k"].to_numpy(int), "n": n, "n_reference": rn,
        "count": x, "count_reference": rx, "rate": compared["rate"].to_numpy(float),
        "reference_rate": np.divide(rx, rn, out=np.full(len(rn), np.nan), where=rn > 0),
        "attributes": compared["attributes"].to_numpy(), "group_values": compared["group_values"].to_numpy(),
        "reference_values": [list(v) if c else [] for v, c in zip(ref["group_values"], configured)],
        "family": [f"{a} x {lab}: {s} comparisons" for a, lab, s in zip(compared["attribute"], labels, size)],
        "family_size": size.to_numpy(int), "test_count": test_x, "test_n": test_n,
        "weight": np.where(overall, n / np.maximum(compared["_total_n"].to_numpy(float), 1), 0.0)})
    return out[PRE_STATS]


def _metric_label(key) -> str:
    metric, category, k = key
    if metric in ACCURACY_METRICS:
        return f"{category} accuracy (derived)" if category else "accuracy"
    return f"{metric} {category} (top-{k})"


def compute_disparities(groups: pd.DataFrame, spec: AuditSpec) -> pd.DataFrame:
    """The disparity table of an audit (columns: COLUMNS; see the module docstring)."""
    t = compare_to_reference(groups, spec)
    if t.empty:
        return empty_disparities()
    x1, n1, x0, n0 = (t[c].to_numpy(np.int64) for c in ("count", "n", "test_count", "test_n"))
    w = t["weight"].to_numpy(float)
    sim_alpha = spec.alpha / t["family_size"].to_numpy(float)
    t["difference"] = t["rate"] - t["reference_rate"]
    for prefix, a in (("", 0.05), ("sim_", sim_alpha)):
        lo, hi = difference_interval(x1, n1, x0, n0, a)
        t[f"{prefix}ci_low"], t[f"{prefix}ci_high"] = (1 - w) * lo, (1 - w) * hi
        rlo, rhi = ratio_interval(x1, n1, x0, n0, a)
        t[f"{prefix}ratio_ci_low"], t[f"{prefix}ratio_ci_high"] = _to_overall(rlo, w), _to_overall(rhi, w)
    t["ratio"] = np.where(w > 0, _to_overall(ratio(x1, n1, x0, n0), w), ratio(x1, n1, x0, n0))
    lo_band, hi_band = FOUR_FIFTHS_BAND
    t["four_fifths_violation"] = (t["sim_ratio_ci_high"] < lo_band) | (t["sim_ratio_ci_low"] > hi_band)
    t["p_value"] = fisher_exact(x1, n1, x0, n0)
    t["p_adjusted"], t["family_p"] = family_adjust(t["p_value"].to_numpy(), t["family"], spec.correction)
    excludes_zero = (t["sim_ci_low"] > 0) | (t["sim_ci_high"] < 0)
    t["detected"] = (t["p_adjusted"] < spec.alpha) & excludes_zero
    t["flagged"] = t["detected"]  # deprecated name (schema 1); see docs/audit.md
    n_families = t["family"].nunique()
    direction = np.where(t["metric"].isin(ACCURACY_METRICS), -1, 1)
    p0 = np.divide(x0, n0, out=np.zeros(len(t)), where=n0 > 0)
    mdd = detectable_difference(n1, n0, p0, spec.alpha / (n_families * t["family_size"].to_numpy(float)), POWER,
                                direction)
    t["detectable_difference"] = direction * (1 - w) * mdd
    return t[COLUMNS].reset_index(drop=True)


def _to_overall(r, w):
    """A group-vs-rest ratio r as the group-vs-everyone ratio r / (w r + 1 - w) (monotone in r)."""
    r, w = np.asarray(r, float), np.asarray(w, float)
    with np.errstate(invalid="ignore"):
        out = np.where(np.isinf(r), 1 / np.where(w > 0, w, 1), r / (w * r + 1 - w))
    return np.where(w > 0, out, r)


def empty_disparities() -> pd.DataFrame:
    """A disparity table with no rows but the right columns and dtypes."""
    t = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    floats = ("rate", "reference_rate", "difference", "ci_low", "ci_high", "ratio", "ratio_ci_low", "ratio_ci_high",
              "p_value", "p_adjusted", "family_p", "sim_ci_low", "sim_ci_high", "sim_ratio_ci_low",
              "sim_ratio_ci_high", "detectable_difference")
    return t.astype({"flagged": bool, "detected": bool, "four_fifths_violation": bool, "k": int, "n": int,
                     "n_reference": int, "family_size": int, **{c: float for c in floats}})


def check_references(records: pd.DataFrame, spec: AuditSpec) -> None:
    """A configured reference group that does not occur in the data is an input error (a typo)."""
    sets = {group_key(s): s for s in spec.attribute_sets()}
    for attr, value in spec.reference.items():
        cols = list(sets.get(attr, (attr,)))
        present = records[cols].astype("string").apply(lambda c: c.str.strip()).agg(group_key, axis=1)
        if not (present == value).any():
            shown = ", ".join(sorted(map(str, present.dropna().unique()))[:12])
            raise InputError(f"reference group {value!r} of {attr!r} does not occur in the data (values: {shown})")
