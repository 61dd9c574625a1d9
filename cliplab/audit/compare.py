"""Label-set what-ifs: the same images and embeddings, two label sets, per-group changes.

The CLIP paper added the single class 'child' and saw the youngest people's crime-related and
non-human rates collapse. Here the two audits are paired on identical images, so each group's
change in a flagged rate is a paired difference: its interval is Bonett-Price's adjusted Wald
interval (real at zero discordant counts), its test the exact McNemar test, corrected within
each (attribute set, metric, category) family behind the family's gate (stats.family_adjust).
A class only B has (``new_class_rate``) is described, not tested: its rate under A is 0 by
construction, so "no change" is false before looking at any image.
The data side of the comparison (where, group_by, reference, sizes, statistics settings) is
audit A's; B contributes its label set: classes, templates, flagged categories and truth.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .definition import AuditSpec, group_key
from .metrics import attribute_codes, harm_membership
from .result import AuditResult
from .stats import family_adjust, mcnemar_exact, paired_interval

DATA_KEYS = ("where", "group_by", "intersections", "reference", "min_group_size", "alpha", "correction", "top_k",
             "n_boot", "seed", "retrieval_queries", "retrieval_k")
COLUMNS = ["attribute", "group", "n", "status", "metric", "category", "k", "rate_a", "rate_b", "change",
           "ci_low", "ci_high", "p_value", "p_adjusted", "significant", "attributes", "group_values", "detected"]


@dataclass
class AuditComparison:
    """Audit A and audit B of the same images, and ``changes``: one row per (attribute, group,
    metric, category) with rate_a, rate_b, change = rate_b - rate_a, its 95% interval, the
    McNemar p-value, the adjusted p-value and ``significant`` (adjusted p < alpha and the
    interval excludes 0); ``significant`` is the same column under its old name. Metric
    ``new_class_rate`` is the top-1 rate into a class that only B has (rate_a is 0 by
    construction; not tested: p-values are null)."""

    a: AuditResult
    b: AuditResult
    changes: pd.DataFrame

    def summary(self, max_rows: int = 10) -> str:
        from .text import comparison_text

        return comparison_text(self, max_rows)

    def write(self, out: str | Path, thumbnails: int = 12, predictions_format: str = "parquet") -> Path:
        """A's report with the comparison in ``out``, B's full audit in ``out/label-set-b``."""
        from .outputs import write_comparison

        return write_comparison(self, out, thumbnails=thumbnails, predictions_format=predictions_format)

    def to_dict(self) -> dict:
        """metrics.json's ``comparison`` entry."""
        from .outputs import comparison_document

        return comparison_document(self)


def align_spec(b: AuditSpec, a: AuditSpec) -> AuditSpec:
    """B's label set with A's data-side settings (so both audits cover the same images and groups)."""
    return replace(b, **{k: getattr(a, k) for k in DATA_KEYS}, truth=b.truth or a.truth)


def compare_audits(a: AuditResult, b: AuditResult) -> AuditComparison:
    """Per-group changes from label set A to label set B on the same images."""
    paths = [r["path"].reset_index(drop=True) if "path" in r else None for r in (a.records, b.records)]
    same = len(a.records) == len(b.records) and (paths[0] is None or paths[0].equals(paths[1]))
    if not same:
        raise InputError("the two audits cover different images: run both on the same embeddings "
                         "(cliplab.audit.compare_label_sets / --compare does this)")
    spec = a.spec
    rows = []
    shared = [c for c in a.spec.flagged if c in b.spec.flagged]
    ma, mb = harm_membership(a.scores, a.spec), harm_membership(b.scores, b.spec)
    fa = _top1_in(a, a.spec.flagged)
    fb = _top1_in(b, b.spec.flagged)
    new = [c for c in b.spec.classnames if c not in a.spec.classnames]
    cache: dict = {}
    for attrs in spec.attribute_sets():
        codes, names = attribute_codes(a.records, attrs, cache)
        for cat in shared:
            rows += _paired_rows(codes, names, attrs, "flagged_rate", cat, 1, fa[cat], fb[cat], spec)
            k = a.scores.topk.shape[1]
            if k > 1:
                rows += _paired_rows(codes, names, attrs, "topk_flagged_rate", cat, k, ma[cat], mb[cat], spec)
        for cls in new:
            hit = b.scores.top1 == b.scores.classnames.index(cls)
            rows += _paired_rows(codes, names, attrs, "new_class_rate", cls, 1, np.zeros_like(hit), hit, spec)
    t = pd.DataFrame(rows, columns=COLUMNS[:7] + COLUMNS[-3:-1] + ["n11", "n10", "n01", "n00"])
    if t.empty:
        return AuditComparison(a, b, pd.DataFrame(columns=COLUMNS))
    t["rate_a"] = (t["n11"] + t["n10"]) / t["n"]
    t["rate_b"] = (t["n11"] + t["n01"]) / t["n"]
    t["change"] = t["rate_b"] - t["rate_a"]
    t["ci_low"], t["ci_high"] = paired_interval(t["n10"], t["n01"], t["n"])
    tested = (t["status"] == "ok") & (t["metric"] != "new_class_rate")
    t["p_value"] = np.where(tested, mcnemar_exact(t["n10"], t["n01"]), np.nan)
    t["p_adjusted"] = np.nan
    if tested.any():
        fam = t.loc[tested, ["attribute", "metric", "category", "k"]].astype(str).agg("|".join, axis=1)
        t.loc[tested, "p_adjusted"] = family_adjust(t.loc[tested, "p_value"].to_numpy(), fam, spec.correction)[0]
    t["detected"] = tested & (t["p_adjusted"] < spec.alpha) & ((t["ci_low"] > 0) | (t["ci_high"] < 0))
    t["significant"] = t["detected"]
    return AuditComparison(a, b, t[COLUMNS])


def _top1_in(result: AuditResult, flagged) -> dict[str, np.ndarray]:
    names = np.array(result.scores.classnames)
    return {cat: np.isin(names[result.scores.top1], list(cls)) for cat, cls in flagged.items()}


def _paired_rows(codes, names, attrs, metric, category, k, in_a, in_b, spec) -> list[dict]:
    ok = codes >= 0
    G = len(names)
    cells = np.bincount(codes[ok] * 4 + in_a[ok].astype(int) * 2 + in_b[ok].astype(int), minlength=4 * G)
    cells = cells.reshape(G, 4)  # [n00, n01, n10, n11]
    rows = []
    for gid in np.flatnonzero(cells.sum(axis=1) > 0):
        n00, n01, n10, n11 = (int(v) for v in cells[gid])
        n = n00 + n01 + n10 + n11
        rows.append({"attribute": group_key(attrs), "group": group_key(names[gid]), "n": n,
                     "status": "ok" if n >= spec.min_group_size else "too_small", "metric": metric,
                     "category": category, "k": k, "attributes": list(attrs), "group_values": list(names[gid]),
                     "n11": n11, "n10": n10, "n01": n01, "n00": n00})
    return rows
