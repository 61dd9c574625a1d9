"""Audit outputs: metrics.json, groups.csv, disparities.csv, predictions.parquet, report.html,
and the terminal summary. Every file is written atomically (cliplab.atomic).

metrics.json's schema is documented in docs/audit.md (``schema: cliplab-audit/1``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..atomic import prepare_out_dir, write_json, write_table, write_text
from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .compare import AuditComparison
    from .result import AuditResult

SCHEMA = "cliplab-audit/1"
FLAG_RULE = ("a disparity is flagged when p_adjusted < alpha (Fisher's exact test, corrected across all "
             "comparisons of the audit) AND the 95% bootstrap interval of the difference excludes 0")
REFERENCE_RULE = ("each attribute's configured reference group; else the group of adequate size with the "
                  "lowest harm rate (for accuracy: the highest accuracy); data-chosen references count every "
                  "pair of groups toward the correction")


def records_for_json(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: numpy scalars to Python, NaN and +-inf to null."""
    return [{str(k): _clean(v) for k, v in row.items()} for row in table.to_dict("records")]


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def metrics_document(result: AuditResult, comparison: AuditComparison | None = None) -> dict[str, Any]:
    """The metrics.json document of an audit (and of a label-set comparison, when given)."""
    spec = result.spec
    doc = {
        "schema": SCHEMA,
        "schema_doc": "docs/audit.md",
        "cliplab_version": result.version,
        "created": result.created,
        "model": _clean(result.model),
        "audit": spec.to_dict(),
        "settings": {"alpha": spec.alpha, "correction": spec.correction, "min_group_size": spec.min_group_size,
                     "n_boot": spec.n_boot, "seed": spec.seed, "top_k": spec.top_k, "flag_rule": FLAG_RULE,
                     "reference_rule": REFERENCE_RULE, "rate_interval": "Wilson score, 95%",
                     "difference_interval": "parametric bootstrap percentile, 95%",
                     "implicit_comparisons": int(result.disparities.attrs.get("n_extra", 0))},
        "data": _clean(result.data) | {"n_skipped": len(result.skipped)},
        "n_disparities": len(result.disparities),
        "n_flagged": int(result.disparities["flagged"].sum()) if len(result.disparities) else 0,
        "overall": records_for_json(result.overall()),
        "groups": records_for_json(result.groups),
        "disparities": records_for_json(result.disparities),
        "fairness": records_for_json(result.fairness),
        "retrieval": records_for_json(result.retrieval),
        "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped[:1000]],
    }
    if comparison is not None:
        doc["comparison"] = comparison.to_dict()
    return doc


def write_report(result: AuditResult, out: str | Path, comparison: AuditComparison | None = None,
                 thumbnails: int = 12, predictions_format: str = "parquet") -> Path:
    """Write every output of an audit into ``out``; returns the path of report.html."""
    from .html import render_html

    if predictions_format not in ("parquet", "csv"):
        raise InputError(f"predictions format must be parquet or csv, got {predictions_format!r}")
    out = prepare_out_dir(out)
    write_table(out / "groups.csv", result.groups)
    write_table(out / "disparities.csv", result.disparities)
    write_table(out / f"predictions.{predictions_format}", result.predictions)
    write_table(out / "skipped.csv", pd.DataFrame([(s.path, s.reason) for s in result.skipped],
                                                  columns=["path", "reason"]))
    if comparison is not None:
        write_table(out / "comparison.csv", comparison.changes)
    write_json(out / "metrics.json", metrics_document(result, comparison))
    return write_text(out / "report.html", render_html(result, comparison, thumbnails=thumbnails))


# ------------------------------------------------------------------------------ terminal
def pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), *(line(r) for r in rows)])


def summary_text(result: AuditResult, max_rows: int = 10) -> str:
    """Overall rates, then the flagged disparities (largest first), as plain text."""
    spec, d = result.spec, result.data
    lines = [f"audit {spec.name!r}: {result.model.get('identity', '')} on {d.get('n_audited', 0)} images "
             f"({len(result.skipped)} skipped or unmatched; groups by {', '.join(spec.group_by)})"]
    overall = result.overall()
    parts = [f"{_metric_name(r)} {pct(r['rate'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]"
             for _, r in overall[overall["metric"].isin(["accuracy", "flagged_rate", "topk_flagged_rate"])].iterrows()]
    if parts:
        lines.append("overall: " + "; ".join(parts))
    flagged = result.flagged()
    n = len(result.disparities)
    lines.append(f"{len(flagged)} flagged disparit{'y' if len(flagged) == 1 else 'ies'} of {n} comparisons "
                 f"({spec.correction}, alpha {spec.alpha}; min group size {spec.min_group_size}):")
    rows = [[r["attribute"], r["group"], r["reference"], _metric_name(r), pct(r["rate"]), pct(r["reference_rate"]),
             f"{100 * r['difference']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]",
             f"{r['p_adjusted']:.2g}"] for _, r in flagged.head(max_rows).iterrows()]
    if rows:
        lines.append(_table(rows, ["attribute", "group", "reference", "metric", "rate", "ref rate",
                                   "diff pp [95% CI]", "p_adj"]))
        if len(flagged) > max_rows:
            lines.append(f"... and {len(flagged) - max_rows} more (see the report)")
    small = result.groups[(result.groups["status"] == "too_small")][["attribute", "group"]].drop_duplicates()
    if len(small):
        lines.append(f"{len(small)} group(s) below {spec.min_group_size} images: reported, not compared")
    return "\n".join(lines)


def _metric_name(r) -> str:
    if r["metric"] == "accuracy":
        return "accuracy"
    top = f"top-{r['k']}" if r["k"] > 1 else "top-1"
    return f"{top} {r['category']}"


def comparison_text(comp: AuditComparison, max_rows: int = 10) -> str:
    """The largest significant per-group changes from label set A to B, as plain text."""
    t = comp.changes
    sig = t[t["significant"].astype(bool)]
    sig = sig.reindex(sig["change"].abs().sort_values(ascending=False).index)
    lines = [f"label-set what-if: {comp.a.spec.name!r} -> {comp.b.spec.name!r}: {len(sig)} significant change(s) "
             f"of {int((t['status'] == 'ok').sum())}"]
    rows = [[r["attribute"], r["group"], _metric_name(r), pct(r["rate_a"]), pct(r["rate_b"]),
             f"{100 * r['change']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"]
            for _, r in sig.head(max_rows).iterrows()]
    if rows:
        lines.append(_table(rows, ["attribute", "group", "metric", "rate A", "rate B", "change pp [95% CI]"]))
    return "\n".join(lines)
