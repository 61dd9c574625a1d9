"""The report's table sections: retrieval bias as shares, the fairlearn summary, error rates per true class.

Kept apart from :mod:`cliplab.audit.html` (the page, its headline and charts) so each file stays one screenful
of concerns; every user string still goes through :func:`cliplab.html.esc` (via ``table_html``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..html import esc, number
from ..html import table_html as _table
from .report import pct

if TYPE_CHECKING:  # pragma: no cover
    from .result import AuditResult


def fairness_section(result: AuditResult) -> str:
    f = result.fairness
    if f is None or f.empty:
        return ""
    cols: list[tuple[str, str, Callable[[Any], str] | None]] = [
        ("attribute", "attribute", None), ("category", "category", None),
        ("demographic_parity_difference", "demographic parity difference", number),
        ("demographic_parity_ratio", "demographic parity ratio", number),
        ("equalized_odds_difference", "equalized odds difference", number)]
    return ("<h2>fairlearn summary</h2><p class=\"muted\">Over all groups, whatever their size (fairlearn's "
            "definitions).</p>" + _table(f, [c for c in cols if c[0] in f.columns], limit=None))


def error_rates_section(result: AuditResult) -> str:
    """Per single attribute, group and true class: the false negative and false positive rates."""
    e = result.error_rates
    e = e[(e["status"] == "ok") & (e["attributes"].map(len) == 1)] if len(e) else e
    if e.empty:
        return ""
    e = e.sort_values("false_negative_rate", ascending=False, kind="stable")
    e = e.assign(**{name: [f"{pct(r[rate])} [{pct(r[f'{name}_ci_low'])}, {pct(r[f'{name}_ci_high'])}]"
                           for _, r in e.iterrows()]
                    for name, rate in (("fnr", "false_negative_rate"), ("fpr", "false_positive_rate"))})
    cols: list[tuple[str, str, Callable[[Any], str] | None]] = [
        ("attribute", "attribute", None), ("group", "group", None), ("true_class", "true class", None),
        ("n_true", "images of the class", None), ("fnr", "missed (false negative rate) [95% CI]", None),
        ("fpr", "others put into it (false positive rate) [95% CI]", None)]
    return ("<h2>Error rates per true class</h2><p class=\"muted\">Equalized odds, one class against the rest, per "
            "group (single attributes; intersections and each group's confusion matrix: metrics.json "
            "<code>error_rates</code> and <code>AuditResult.confusion()</code>). Highest miss rate first.</p>"
            + _table(e, cols, limit=100, more="rows"))


def _shares(top: Any, pop: Any) -> str:
    if not isinstance(top, dict):
        return "n/a"
    return "; ".join(f"{a}: {pct(v)} (of all: {pct((pop or {}).get(a, float('nan')))})"
                     for a, v in sorted(top.items(), key=lambda p: -p[1]))


def retrieval_section(result: AuditResult) -> str:
    r = result.retrieval
    if r is None or r.empty:
        return ""
    t = r.copy()
    if "top_k_share" in t:
        t["shares"] = [_shares(a, b) for a, b in zip(t["top_k_share"], t.get("population_share", [None] * len(t)))]
    else:
        t["shares"] = "n/a"
    t["skew"] = [f"{number(v)} ({esc(g)})" for v, g in zip(t["max_skew"], t["max_skew_group"])]
    t["absent"] = [("absent from the top k: " + str(g)) if pd.notna(v) and math.isinf(float(v)) else
                   f"{number(v)} ({g})" for v, g in zip(t["min_skew"], t["min_skew_group"])]
    cols: list[tuple[str, str, Callable[[Any], str] | None]] = [
        ("query", "query", None), ("attribute", "attribute", None), ("k", "k", None),
        ("shares", "share in the top k (share of all images)", None),
        ("skew", "MaxSkew@k (most over-represented)", None),
        ("absent", "MinSkew@k (most under-represented)", None), ("ndkl", "NDKL", number)]
    return ("<h2>Retrieval bias</h2><p class=\"muted\">Who is in the top k images of each text query, against "
            "the audited images' proportions; MaxSkew and NDKL are 0 when the top k is representative.</p>"
            + _table(t, cols, limit=None))
