"""Disaggregated audit metrics: per-image scores, per-group counts, rates with intervals.

Two routes give the same numbers (tests/audit/test_metrics.py checks that they do):
- the heavy path counts with numpy (``np.bincount`` over integer group codes). An audit of
  a million images x 100 classes x 3 attributes and their intersections needs hundreds of
  group x metric cells; fairlearn's MetricFrame evaluates a Python metric function per group
  via pandas groupby-apply, which is far too slow at that size for the 60 s budget;
- :func:`metric_frame` builds a fairlearn ``MetricFrame`` over the same per-image predictions,
  for users who want fairlearn's API (``.by_group``, ``.difference()``, ``.ratio()``, ...).
Metric names: ``accuracy`` (top-1, images with a known true class), ``flagged_rate`` (top-1 in a
harm category), ``class_rate`` (top-1 is one flagged class), ``topk_flagged_rate`` (a class of
the harm category is among the top k), ``derived_accuracy`` (category: a derived grouping; the
top-1 class's coarse label equals the image's coarse true label, e.g. gender from race x gender).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .definition import AuditSpec, group_key
from .sections import derived_truth
from .stats import wilson

MISSING = "(missing)"
OVERALL = "(all)"  # the attribute of the overall rows of the groups table (group "all images")
HARM_METRICS = ("flagged_rate", "class_rate", "topk_flagged_rate")
ACCURACY_METRICS = ("accuracy", "derived_accuracy")  # higher is better (ranks, detectable differences)


@dataclass
class DerivedCodes:
    """One derived grouping as codes: the coarse label of each class and each image's coarse truth."""

    labels: list[str]
    of_class: np.ndarray  # [C] int, coarse label of each class; -1 = in no coarse label
    truth: np.ndarray  # [N] int, coarse true label of each image; -1 = unknown


@dataclass
class Scores:
    """Per-image results of classifying N images into C classes (row order = records order)."""

    top1: np.ndarray  # [N] int32 class index
    top1_prob: np.ndarray  # [N] float32 softmax probability of the top-1 class
    topk: np.ndarray  # [N, k] int32, best first
    truth: np.ndarray  # [N] int32 class index, -1 where unknown
    classnames: list[str]
    derived: dict[str, DerivedCodes] = field(default_factory=dict)  # grouping name -> codes

    def __len__(self) -> int:
        return len(self.top1)


def score_images(features: np.ndarray, weights: np.ndarray, logit_scale: float, k: int, truth: np.ndarray,
                 classnames: list[str], chunk: int = 65536) -> Scores:
    """Top-1, its probability and the top-k of every image, in chunks (memory stays ~chunk x C)."""
    n, c = len(features), weights.shape[1]
    k = min(k, c)
    top1 = np.empty(n, np.int32)
    prob = np.empty(n, np.float32)
    topk = np.empty((n, k), np.int32)
    w = np.ascontiguousarray(weights, dtype=np.float32)
    for s in range(0, n, chunk):
        logits = np.asarray(features[s:s + chunk], dtype=np.float32) @ w
        logits *= logit_scale
        part = np.argpartition(-logits, k - 1, axis=1)[:, :k] if k < c else np.tile(np.arange(c), (len(logits), 1))
        vals = np.take_along_axis(logits, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        topk[s:s + chunk] = np.take_along_axis(part, order, axis=1)
        top1[s:s + chunk] = topk[s:s + chunk, 0]
        best = np.take_along_axis(vals, order[:, :1], axis=1)
        np.subtract(logits, best, out=logits)
        np.exp(logits, out=logits)
        prob[s:s + chunk] = 1.0 / logits.sum(axis=1)
    return Scores(top1, prob, topk, np.asarray(truth, np.int32), list(classnames))


def derived_codes(records: pd.DataFrame, spec: AuditSpec, fine_truth: pd.Series) -> dict[str, DerivedCodes]:
    """The spec's derived groupings as codes; ``fine_truth`` is each row's true class (or <NA>)."""
    out = {}
    for g in spec.derived:
        labels = list(g.labels)
        index, label_of = {label: i for i, label in enumerate(labels)}, g.label_of()
        of_class = np.array([index[label_of[c]] if c in label_of else -1 for c in spec.classnames], np.int64)
        truth = pd.Categorical(derived_truth(records, g, fine_truth), categories=labels).codes.astype(np.int64)
        out[g.name] = DerivedCodes(labels, of_class, truth)
    return out


# ------------------------------------------------------------------------------ group codes
def attribute_codes(records: pd.DataFrame, attributes: tuple[str, ...],
                    cache: dict | None = None) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Integer group code per row (-1 where any attribute is missing) and each group's values
    (one per attribute; :func:`~cliplab.audit.definition.group_key` names them).

    ``cache`` (a dict kept by the caller) holds each attribute's factorisation, so intersections
    do not re-read the string columns.
    """
    codes = np.zeros(len(records), np.int64)
    names: list[tuple[str, ...]] = [()]
    missing = np.zeros(len(records), bool)
    for attr in attributes:
        cache = {} if cache is None else cache
        if attr not in cache:
            cache[attr] = _factorize(records, attr)
        c, uniques = cache[attr]
        missing |= c < 0
        codes = codes * len(uniques) + np.maximum(c, 0)
        names = [(*n, str(u)) for n in names for u in uniques]
    codes[missing] = -1
    return codes, names


def _factorize(records: pd.DataFrame, attr: str) -> tuple[np.ndarray, list[str]]:
    col = records[attr].astype("string").str.strip().replace("", pd.NA)
    c, uniques = pd.factorize(col, sort=True)
    return c, [str(u) for u in uniques]


def harm_membership(scores: Scores, spec: AuditSpec) -> dict[str, np.ndarray]:
    """For each harm category: [N] bool, a class of the category is among the top k."""
    index = {c: i for i, c in enumerate(scores.classnames)}
    out = {}
    for cat, classes in spec.flagged.items():
        member = np.zeros(len(scores.classnames), bool)
        member[[index[c] for c in classes]] = True
        out[cat] = member[scores.topk].any(axis=1)
    return out


# ------------------------------------------------------------------------------ counting
def group_counts(codes: np.ndarray, n_groups: int, scores: Scores, spec: AuditSpec,
                 topk_member: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long table of (group, metric, category, count, denominator) for one attribute set."""
    ok = codes >= 0
    g, C = codes[ok], len(scores.classnames)
    n = np.bincount(g, minlength=n_groups)
    pred = np.bincount(g * C + scores.top1[ok], minlength=n_groups * C).reshape(n_groups, C)
    has_truth = scores.truth[ok] >= 0
    n_truth = np.bincount(g, weights=has_truth, minlength=n_groups).astype(np.int64)
    correct = np.bincount(g, weights=has_truth & (scores.truth[ok] == scores.top1[ok]), minlength=n_groups)
    index = {c: i for i, c in enumerate(scores.classnames)}
    parts = []
    gid = np.arange(n_groups)
    if (scores.truth >= 0).any():
        parts.append(_rows(gid, n, "accuracy", "", 0, correct, n_truth))
    for name, dc in scores.derived.items():
        known = dc.truth[ok] >= 0
        hit = known & (dc.of_class[scores.top1[ok]] == dc.truth[ok])
        parts.append(_rows(gid, n, "derived_accuracy", name, 0, np.bincount(g, weights=hit, minlength=n_groups),
                           np.bincount(g, weights=known, minlength=n_groups)))
    for cat, classes in spec.flagged.items():
        cols = [index[c] for c in classes]
        parts.append(_rows(gid, n, "flagged_rate", cat, 1, pred[:, cols].sum(axis=1), n))
        for cls in classes if len(classes) > 1 else ():  # a one-class category's rate is the class rate
            parts.append(_rows(gid, n, "class_rate", cls, 1, pred[:, index[cls]], n))
        k = scores.topk.shape[1]
        if k > 1:
            member = np.bincount(g, weights=topk_member[cat][ok], minlength=n_groups)
            parts.append(_rows(gid, n, "topk_flagged_rate", cat, k, member, n))
    if not parts:
        return pd.DataFrame(columns=["gid", "n", "metric", "category", "k", "count", "denominator"])
    table = pd.concat(parts, ignore_index=True)
    return table[table["n"] > 0].reset_index(drop=True)


def _rows(gid, n, metric, category, k, count, denominator) -> pd.DataFrame:
    return pd.DataFrame({"gid": gid, "n": n, "metric": metric, "category": category, "k": k,
                         "count": np.rint(count).astype(np.int64), "denominator": np.asarray(denominator, np.int64)})


def disaggregate(records: pd.DataFrame, scores: Scores, spec: AuditSpec) -> pd.DataFrame:
    """Rates per group of every attribute set, with Wilson intervals and a size status.

    Columns: attribute, group, n, status (ok | too_small), metric, category, k, count,
    denominator, attributes and group_values (the parts of the two names, as lists), rate,
    ci_low, ci_high, rank (1 = most harmed among groups of adequate size; for accuracy,
    1 = least accurate). Rows with a missing attribute value form no group;
    their number is in :func:`missing_counts`.
    """
    member = harm_membership(scores, spec)
    frames: list[pd.DataFrame] = []
    cache: dict = {}
    for attrs in spec.attribute_sets():
        codes, values = attribute_codes(records, attrs, cache)
        t = group_counts(codes, len(values), scores, spec, member)
        t.insert(0, "group", [group_key(values[i]) for i in t["gid"]])
        t.insert(0, "attribute", group_key(attrs))
        t["attributes"] = [list(attrs)] * len(t)
        t["group_values"] = [list(values[i]) for i in t["gid"]]
        frames.append(t.drop(columns="gid"))
    frames.append(_overall(scores, spec, member))
    table = pd.concat(frames, ignore_index=True)
    table["rate"] = np.divide(table["count"], table["denominator"], out=np.full(len(table), np.nan),
                              where=table["denominator"] > 0)
    table["ci_low"], table["ci_high"] = wilson(table["count"], table["denominator"])
    small = (table["denominator"] < spec.min_group_size) & (table["attribute"] != OVERALL)
    table.insert(3, "status", np.where(small, "too_small", "ok"))
    table["rank"] = _ranks(table)
    return table


def _overall(scores: Scores, spec: AuditSpec, member: dict[str, np.ndarray]) -> pd.DataFrame:
    codes = np.zeros(len(scores), np.int64)
    t = group_counts(codes, 1, scores, spec, member).drop(columns="gid")
    t.insert(0, "group", "all images")
    t.insert(0, "attribute", OVERALL)
    t["attributes"] = [[] for _ in range(len(t))]
    t["group_values"] = [[] for _ in range(len(t))]
    return t


def _ranks(table: pd.DataFrame) -> pd.Series:
    ok = (table["status"] == "ok") & (table["attribute"] != OVERALL)
    harm = np.where(table["metric"].isin(ACCURACY_METRICS), table["rate"], -table["rate"])
    ranks = pd.Series(harm, index=table.index)[ok].groupby(
        [table["attribute"][ok], table["metric"][ok], table["category"][ok], table["k"][ok]]).rank(method="min")
    return ranks.reindex(table.index)


def missing_counts(records: pd.DataFrame, spec: AuditSpec) -> dict[str, int]:
    """Rows with no value for each group-by attribute (kept in the audit, but in no group)."""
    out = {}
    for attr in spec.group_by:
        col = records[attr].astype("string").str.strip().replace("", pd.NA)
        out[attr] = int(col.isna().sum())
    return out


# ------------------------------------------------------------------------ error rates
ERROR_COLUMNS = ["attribute", "group", "status", "true_class", "n_true", "n_other", "false_negative_rate",
                 "fnr_ci_low", "fnr_ci_high", "false_positive_rate", "fpr_ci_low", "fpr_ci_high",
                 "attributes", "group_values"]


def error_rates(records: pd.DataFrame, scores: Scores, spec: AuditSpec) -> pd.DataFrame:
    """Per (attribute set, group, true class): how often the group's images of that class are
    missed (false negative rate, 1 - recall) and how often its images of other classes are put
    into it (false positive rate): multiclass equalized odds, one class against the rest.

    Only images with a known true class count; classes no image has as truth are left out.
    Wilson intervals (95%, unadjusted). ``status`` is the group's size status (min_group_size).
    """
    known = scores.truth >= 0
    C = len(scores.classnames)
    frames: list[pd.DataFrame] = []
    cache: dict = {}
    for attrs in spec.attribute_sets():
        codes, values = attribute_codes(records, attrs, cache)
        ok = known & (codes >= 0)
        g, t, p = codes[ok], scores.truth[ok], scores.top1[ok]
        G = len(values)
        n_true = np.bincount(g * C + t, minlength=G * C).reshape(G, C)
        hit = np.bincount(g[t == p] * C + t[t == p], minlength=G * C).reshape(G, C)
        predicted = np.bincount(g * C + p, minlength=G * C).reshape(G, C)
        n_group = n_true.sum(axis=1, keepdims=True)
        gi, ci = np.nonzero((n_group > 0) & (n_true.sum(axis=0) > 0)[None, :])
        miss, n_pos = (n_true - hit)[gi, ci], n_true[gi, ci]
        fp, n_neg = (predicted - hit)[gi, ci], (n_group - n_true)[gi, ci]
        fnr_lo, fnr_hi = wilson(miss, n_pos)
        fpr_lo, fpr_hi = wilson(fp, n_neg)
        frames.append(pd.DataFrame({
            "attribute": group_key(attrs), "group": [group_key(values[i]) for i in gi],
            "status": np.where(n_group[gi, 0] >= spec.min_group_size, "ok", "too_small"),
            "true_class": [scores.classnames[c] for c in ci], "n_true": n_pos, "n_other": n_neg,
            "false_negative_rate": np.divide(miss, n_pos, out=np.full(len(gi), np.nan), where=n_pos > 0),
            "fnr_ci_low": fnr_lo, "fnr_ci_high": fnr_hi,
            "false_positive_rate": np.divide(fp, n_neg, out=np.full(len(gi), np.nan), where=n_neg > 0),
            "fpr_ci_low": fpr_lo, "fpr_ci_high": fpr_hi, "attributes": [list(attrs)] * len(gi),
            "group_values": [list(values[i]) for i in gi]}))
    return pd.concat(frames, ignore_index=True)[ERROR_COLUMNS] if frames else pd.DataFrame(columns=ERROR_COLUMNS)


# ------------------------------------------------------------------------ fairlearn route
def metric_frame(predictions: pd.DataFrame, attributes: str | list[str], metric: str = "flagged_rate",
                 category: str = ""):
    """A fairlearn MetricFrame of one audit metric, from an audit's per-image predictions table.

    ``predictions`` is ``AuditResult.predictions`` (columns ``truth``, ``prediction``,
    ``flagged_category``, ``topk`` and the attributes). Rows with missing attribute values are
    left out, as in the audit's own groups.
    """
    from fairlearn.metrics import MetricFrame, selection_rate
    from sklearn.metrics import accuracy_score

    attrs = [attributes] if isinstance(attributes, str) else list(attributes)
    df = predictions.dropna(subset=attrs)
    if metric == "accuracy":
        df = df[df["truth"].notna()]
        y_true, y_pred, fn = df["truth"].astype(str), df["prediction"].astype(str), accuracy_score
    else:
        y_pred = _indicator(df, metric, category)
        y_true, fn = y_pred, selection_rate
    sf = df[attrs].astype(str)
    return MetricFrame(metrics={metric: fn}, y_true=y_true, y_pred=y_pred,
                       sensitive_features=sf if len(attrs) > 1 else sf[attrs[0]])


def _indicator(df: pd.DataFrame, metric: str, category: str) -> np.ndarray:
    if metric == "flagged_rate":
        return (df["flagged_category"] == category).to_numpy(int)
    if metric == "class_rate":
        return (df["prediction"] == category).to_numpy(int)
    if metric == "topk_flagged_rate":
        return df[f"topk_{category}"].to_numpy(int)
    raise ValueError(f"unknown audit metric {metric!r}")


# ---------------------------------------------------------------------- fairness summary
def fairness_summary(groups: pd.DataFrame, scores: Scores, records: pd.DataFrame, spec: AuditSpec) -> pd.DataFrame:
    """fairlearn's summary numbers from the counts, per (attribute, category).

    demographic_parity_difference / _ratio: max - min and min / max of the top-1 rate into the
    category over all groups (as fairlearn defines them: every group, whatever its size).
    For a two-class label set with a known truth, also equalized_odds_difference (worst case of
    the TPR and FPR differences), the positive class being the flagged one (else the second).
    """
    rows = []
    g = groups[(groups["attribute"] != OVERALL) & (groups["metric"] == "flagged_rate")]
    for (attr, cat), fam in g.groupby(["attribute", "category"], sort=False):
        rates = fam["rate"].to_numpy(float)
        rows.append({"attribute": attr, "category": cat,
                     "demographic_parity_difference": float(rates.max() - rates.min()),
                     "demographic_parity_ratio": float(rates.min() / rates.max()) if rates.max() > 0 else 1.0,
                     "equalized_odds_difference": np.nan})
    if len(scores.classnames) == 2 and (scores.truth >= 0).any():
        rows += _binary_rows(scores, records, spec)
    return pd.DataFrame(rows, columns=["attribute", "category", "demographic_parity_difference",
                                       "demographic_parity_ratio", "equalized_odds_difference"])


def _binary_rows(scores: Scores, records: pd.DataFrame, spec: AuditSpec) -> list[dict]:
    flagged = [i for i, c in enumerate(scores.classnames) if c in spec.flagged_classes]
    pos = flagged[0] if flagged else 1
    known = scores.truth >= 0
    y, p = scores.truth == pos, scores.top1 == pos
    rows: list[dict] = []
    cache: dict = {}
    for attrs in spec.attribute_sets():
        codes, names = attribute_codes(records, attrs, cache)
        ok = (codes >= 0) & known
        G = len(names)
        sel = np.bincount(codes[ok], weights=p[ok], minlength=G) / np.maximum(np.bincount(codes[ok], minlength=G), 1)
        tpr = _cond_rate(codes[ok], p[ok], y[ok], G)
        fpr = _cond_rate(codes[ok], p[ok], ~y[ok], G)
        present = np.bincount(codes[ok], minlength=G) > 0
        sel = sel[present]
        eod = max(np.nanmax(tpr) - np.nanmin(tpr), np.nanmax(fpr) - np.nanmin(fpr))
        rows.append({"attribute": group_key(attrs), "category": scores.classnames[pos],
                     "demographic_parity_difference": float(sel.max() - sel.min()),
                     "demographic_parity_ratio": float(sel.min() / sel.max()) if sel.max() > 0 else 1.0,
                     "equalized_odds_difference": float(eod)})
    return rows


def _cond_rate(codes: np.ndarray, pred: np.ndarray, cond: np.ndarray, G: int) -> np.ndarray:
    den = np.bincount(codes[cond], minlength=G)
    num = np.bincount(codes[cond], weights=pred[cond], minlength=G)
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)
