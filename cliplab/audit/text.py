"""Terminal text of an audit and of a label-set comparison (what ``cliplab audit`` prints).

An output module: it reads an :class:`~cliplab.audit.AuditResult` (or comparison) by its fields
and imports nothing above the statistics layer, so the result's ``summary()`` can call it.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - type names only; no import at run time
    from .compare import AuditComparison
    from .result import AuditResult


def pct(x: float | None) -> str:
    """A proportion as a percentage with one decimal ('n/a' for None or NaN)."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned plain-text columns."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def metric_name(r) -> str:
    """'accuracy', or 'top-1 <category>' / 'top-k <category>' for a harm metric row."""
    if r["metric"] == "accuracy":
        return "accuracy"
    if r["metric"] == "derived_accuracy":
        return f"{r['category']} accuracy"
    top = f"top-{r['k']}" if r["k"] > 1 else "top-1"
    return f"{top} {r['category']}"


def summary_text(result: AuditResult, max_rows: int = 10) -> str:
    """Overall rates, then the flagged disparities (largest first), as plain text."""
    spec, d = result.spec, result.data
    lines = [f"audit {spec.name!r}: {result.model.get('identity', '')} on {d.n_audited} images "
             f"({len(result.skipped)} skipped or unmatched; groups by {', '.join(spec.group_by)})"]
    overall = result.overall()
    parts = [f"{metric_name(r)} {pct(r['rate'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]"
             for _, r in overall[overall["metric"].isin(["accuracy", "derived_accuracy", "flagged_rate",
                                                                               "topk_flagged_rate"])].iterrows()]
    if parts:
        lines.append("overall: " + "; ".join(parts))
    detected, d_all = result.detected(), result.disparities
    n_fam = d_all["family"].nunique() if len(d_all) else 0
    lines.append(f"{len(detected)} detected disparit{'y' if len(detected) == 1 else 'ies'} of {len(d_all)} "
                 f"comparisons in {n_fam} families (reference: {spec.reference_mode} unless configured; "
                 f"{spec.correction} within each family behind its gate, alpha {spec.alpha}; min group size "
                 f"{spec.min_group_size}):")
    rows = [[r["attribute"], r["group"], r["reference"], metric_name(r), pct(r["rate"]), pct(r["reference_rate"]),
             f"{pp(r['difference'])} [{pp(r['sim_ci_low'])}, {pp(r['sim_ci_high'])}]", f"{r['p_adjusted']:.2g}",
             str(r["family_size"])] for _, r in detected.head(max_rows).iterrows()]
    if rows:
        lines.append(table(rows, ["attribute", "group", "reference", "metric", "rate", "ref rate",
                                  "diff pp [simultaneous CI]", "p_adj", "family size"]))
        if len(detected) > max_rows:
            lines.append(f"... and {len(detected) - max_rows} more (see the report)")
    lines += _not_detected_lines(result, max_rows)
    small = result.groups[(result.groups["status"] == "too_small")][["attribute", "group"]].drop_duplicates()
    if len(small):
        lines.append(f"{len(small)} group(s) below {spec.min_group_size} images: reported, not compared")
    return "\n".join(lines)


def pp(x: float) -> str:
    """A difference of proportions in percentage points, signed ('n/a' for NaN)."""
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:+.1f}"


def _not_detected_lines(result: AuditResult, max_rows: int) -> list[str]:
    """The comparisons of single attributes without a detection, with the smallest difference
    each could have detected: '0 detected' is no evidence of no disparity when that is large."""
    nd = result.not_detected()
    if nd.empty:
        return []
    single = nd[nd["attributes"].map(len) == 1]
    mdd = nd["detectable_difference"].abs()
    lines = [f"not detected: {len(nd)} comparisons; each could not have detected a difference smaller than its "
             f"detectable difference (80% power): median {pp(float(mdd.median()))} pp, from "
             f"{pp(float(mdd.min()))} to {pp(float(mdd.max()))} pp"]
    shown = single.reindex(single["detectable_difference"].abs().sort_values(ascending=False).index).head(max_rows)
    rows = [[r["attribute"], r["group"], metric_name(r), pct(r["rate"]), pct(r["reference_rate"]),
             pp(r["difference"]), f"could not have detected less than {pp(r['detectable_difference'])} pp"]
            for _, r in shown.iterrows()]
    if rows:
        lines.append(table(rows, ["attribute", "group", "metric", "rate", "ref rate", "diff pp", "power"]))
    return lines


def comparison_text(comp: AuditComparison, max_rows: int = 10) -> str:
    """The largest significant per-group changes from label set A to B, as plain text."""
    t = comp.changes
    sig = t[t["detected"].astype(bool)]
    sig = sig.reindex(sig["change"].abs().sort_values(ascending=False).index)
    lines = [f"label-set what-if: {comp.a.spec.name!r} -> {comp.b.spec.name!r}: {len(sig)} detected change(s) "
             f"of {int(t['p_value'].notna().sum())} tested"]
    rows = [[r["attribute"], r["group"], metric_name(r), pct(r["rate_a"]), pct(r["rate_b"]),
             f"{100 * r['change']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"]
            for _, r in sig.head(max_rows).iterrows()]
    if rows:
        lines.append(table(rows, ["attribute", "group", "metric", "rate A", "rate B", "change pp [95% CI]"]))
    return "\n".join(lines)
