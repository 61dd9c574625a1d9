"""Disparities: each group against its attribute's reference group, tested and corrected.

For every attribute (and intersection), metric and harm category, the groups of adequate size
are compared with a reference group: the one configured in the audit, else the best group
(the lowest harm rate; for accuracy the highest accuracy). Each comparison gets the difference
and ratio of rates with bootstrap intervals, Fisher's exact p-value, and a p-value adjusted
across *all* comparisons of the audit.

A disparity is **flagged** when its adjusted p-value is below alpha AND the 95% interval of the
difference excludes 0: both the test and the interval must agree that the groups differ.
When the reference is the best group, that choice was made after looking at the data; every
pair of groups it could have picked counts toward the correction (see stats.adjust), so the
selection does not inflate false positives.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .definition import AuditSpec, group_key
from .metrics import OVERALL
from .stats import adjust, bootstrap_two_groups, fisher_exact, ratio

FLAG_RULE = ("a disparity is flagged when p_adjusted < alpha (Fisher's exact test, corrected across all "
             "comparisons of the audit) AND the 95% bootstrap interval of the difference excludes 0")
REFERENCE_RULE = ("each attribute's configured reference group; else the group of adequate size with the "
                  "lowest harm rate (for accuracy: the highest accuracy); data-chosen references count every "
                  "pair of groups toward the correction")
FOUR_FIFTHS_BAND = (0.8, 1.25)  # Aequitas' "fair" band for ratios; below 0.8 is the four-fifths rule
FAMILY = ["attribute", "metric", "category", "k"]
COLUMNS = ["attribute", "group", "reference", "reference_rule", "metric", "category", "k", "n", "n_reference",
           "count", "count_reference", "rate", "reference_rate", "difference", "ci_low", "ci_high", "ratio",
           "ratio_ci_low", "ratio_ci_high", "four_fifths_violation", "p_value", "p_adjusted", "flagged",
           "attributes", "group_values", "reference_values"]
PRE_STATS = COLUMNS[:13] + COLUMNS[-3:]


def pick_reference(family: pd.DataFrame, configured: str | None) -> tuple[pd.Series, str]:
    """The reference row of one family of groups: the configured group when usable, else the best."""
    if configured is not None:
        hit = family[family["group"] == configured]
        if len(hit):
            return hit.iloc[0], "configured"
    better_high = family["metric"].iloc[0] == "accuracy"
    key = family.assign(_r=-family["rate"] if better_high else family["rate"], _n=-family["denominator"])
    best = key.sort_values(["_r", "_n", "group"], kind="stable").iloc[0]
    return family.loc[best.name], "best" if configured is None else "best (configured group too small)"


def compare_to_reference(groups: pd.DataFrame, spec: AuditSpec) -> tuple[pd.DataFrame, int]:
    """One row per (family, non-reference group): counts, rates and reference, before statistics;
    and the number of implicit comparisons (pairs a data-chosen reference was picked from)."""
    eligible = groups[(groups["status"] == "ok") & (groups["attribute"] != OVERALL)]
    rows, n_extra = [], 0
    for _, fam in eligible.groupby(FAMILY, sort=False):
        if len(fam) < 2:
            continue
        ref, rule = pick_reference(fam, spec.reference.get(fam["attribute"].iloc[0]))
        if rule != "configured":
            g = len(fam)
            n_extra += g * (g - 1) // 2 - (g - 1)
        for _, row in fam.iterrows():
            if row.name == ref.name:
                continue
            rows.append({"attribute": row["attribute"], "group": row["group"], "reference": ref["group"],
                         "reference_rule": rule, "metric": row["metric"], "category": row["category"],
                         "k": int(row["k"]), "n": int(row["denominator"]), "n_reference": int(ref["denominator"]),
                         "count": int(row["count"]), "count_reference": int(ref["count"]),
                         "rate": row["rate"], "reference_rate": ref["rate"], "attributes": row["attributes"],
                         "group_values": row["group_values"], "reference_values": ref["group_values"]})
    return pd.DataFrame(rows, columns=PRE_STATS), n_extra


def compute_disparities(groups: pd.DataFrame, spec: AuditSpec) -> tuple[pd.DataFrame, int]:
    """The disparity table of an audit (columns: COLUMNS; see the module docstring for 'flagged')
    and the number of implicit comparisons counted toward the correction."""
    t, n_extra = compare_to_reference(groups, spec)
    if t.empty:
        return empty_disparities(), n_extra
    x1, n1, x0, n0 = (t[c].to_numpy(np.int64) for c in ("count", "n", "count_reference", "n_reference"))
    boot = bootstrap_two_groups(x1, n1, x0, n0, n_boot=spec.n_boot, alpha=0.05, seed=spec.seed)
    t["difference"] = t["rate"] - t["reference_rate"]
    t["ci_low"], t["ci_high"] = boot["diff_low"], boot["diff_high"]
    t["ratio"] = ratio(x1, n1, x0, n0)
    t["ratio_ci_low"], t["ratio_ci_high"] = boot["ratio_low"], boot["ratio_high"]
    lo, hi = FOUR_FIFTHS_BAND
    t["four_fifths_violation"] = (t["ratio"] < lo) | (t["ratio"] > hi)
    t["p_value"] = fisher_exact(x1, n1, x0, n0)
    t["p_adjusted"] = adjust(t["p_value"].to_numpy(), spec.correction, n_extra)
    excludes_zero = (t["ci_low"] > 0) | (t["ci_high"] < 0)
    t["flagged"] = (t["p_adjusted"] < spec.alpha) & excludes_zero
    return t[COLUMNS], n_extra


def empty_disparities() -> pd.DataFrame:
    """A disparity table with no rows but the right columns and dtypes."""
    t = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    return t.astype({"flagged": bool, "four_fifths_violation": bool, "k": int, "n": int, "n_reference": int,
                     **{c: float for c in ("rate", "reference_rate", "difference", "ci_low", "ci_high", "ratio",
                                           "ratio_ci_low", "ratio_ci_high", "p_value", "p_adjusted")}})


def check_references(records: pd.DataFrame, spec: AuditSpec) -> None:
    """A configured reference group that does not occur in the data is an input error (a typo)."""
    sets = {group_key(s): s for s in spec.attribute_sets()}
    for attr, value in spec.reference.items():
        cols = list(sets.get(attr, (attr,)))
        present = records[cols].astype("string").apply(lambda c: c.str.strip()).agg(group_key, axis=1)
        if not (present == value).any():
            shown = ", ".join(sorted(map(str, present.dropna().unique()))[:12])
            raise InputError(f"reference group {value!r} of {attr!r} does not occur in the data (values: {shown})")
