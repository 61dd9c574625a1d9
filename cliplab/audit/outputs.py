"""Audit files: metrics.json, groups.csv, disparities.csv, predictions.parquet, skipped.csv,
report.html (cliplab.audit.html). Every file is written atomically (cliplab.atomic).

An output module: it reads a result (and comparison) by their fields and imports only the
layers below the result at run time, so ``AuditResult.write()`` can call it without a cycle.
metrics.json's schema is documented in docs/audit.md.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..atomic import prepare_out_dir, write_json, write_table, write_text
from ..errors import InputError
from .disparities import DETECT_RULE, REFERENCE_RULE

if TYPE_CHECKING:  # pragma: no cover - type names only; no import at run time
    from .compare import AuditComparison
    from .result import AuditResult

SCHEMA = "cliplab-audit/2"
METHODS = {"rate_interval": "Wilson score, 95%, Clopper-Pearson ends for counts within 2 of 0 or n",
           "difference_interval": "Newcombe hybrid score, 95% (ci_*) and simultaneous within the family (sim_ci_*)",
           "ratio_interval": "log with 0.5 added to each count, 95% and simultaneous within the family",
           "test": "Fisher's exact, two-sided",
           "four_fifths": "violation when the whole simultaneous ratio interval is outside 0.8-1.25",
           "detectable_difference": "smallest difference detected with 80% power at alpha / (families x family "
                                    "size), two-sided two-proportion test, normal approximation",
           "paired_interval": "Bonett-Price adjusted Wald, 95%", "paired_test": "exact McNemar"}


def records_for_json(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: numpy scalars to Python, NaN and +-inf to null."""
    return [{str(k): clean_json(v) for k, v in row.items()} for row in table.to_dict("records")]


def clean_json(v: Any) -> Any:
    """A value made JSON-ready (recursively): numpy scalars to Python, NaN, +-inf and NA to None."""
    if isinstance(v, dict):
        return {str(k): clean_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean_json(x) for x in v]
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
        "model": clean_json(result.model),
        "audit": spec.to_dict(),
        "settings": {"alpha": spec.alpha, "correction": spec.correction, "min_group_size": spec.min_group_size,
                     "seed": spec.seed, "top_k": spec.top_k, "detect_rule": DETECT_RULE, "flag_rule": DETECT_RULE,
                     "reference_rule": REFERENCE_RULE, "reference_mode": spec.reference_mode,
                     "n_families": int(result.disparities["family"].nunique()), **METHODS},
        "data": clean_json(result.data.to_dict()) | {"n_skipped": len(result.skipped)},
        "n_disparities": len(result.disparities),
        "n_detected": len(result.detected()),
        "n_flagged": len(result.detected()),  # deprecated name of n_detected (schema 1)
        "overall": records_for_json(result.overall()),
        "groups": records_for_json(result.groups),
        "disparities": records_for_json(result.disparities),
        "fairness": records_for_json(result.fairness),
        "error_rates": records_for_json(result.error_rates),
        "retrieval": records_for_json(result.retrieval),
        "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped[:1000]],
    }
    if comparison is not None:
        doc["comparison"] = comparison_document(comparison)
    if result.mitigation is not None:
        from .mitigation_report import mitigation_document

        doc["mitigation"] = mitigation_document(result.mitigation, records_for_json)
    return doc


def comparison_document(comp: AuditComparison) -> dict[str, Any]:
    """metrics.json's ``comparison``: both label sets and the per-group changes."""
    return {"label_set_a": comp.a.spec.to_dict(), "label_set_b": comp.b.spec.to_dict(),
            "changes": records_for_json(comp.changes)}


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
    if result.mitigation is not None:
        write_table(out / "mitigation.csv", result.mitigation.disparities)
        write_table(out / "mitigation-overall.csv", result.mitigation.overall)
    write_json(out / "metrics.json", metrics_document(result, comparison))
    return write_text(out / "report.html", render_html(result, comparison, thumbnails=thumbnails))


def write_comparison(comp: AuditComparison, out: str | Path, thumbnails: int = 12,
                     predictions_format: str = "parquet") -> Path:
    """A's report with the comparison in ``out``, B's full audit in ``out/label-set-b``."""
    write_report(comp.b, Path(out) / "label-set-b", thumbnails=thumbnails, predictions_format=predictions_format)
    return write_report(comp.a, out, comp, thumbnails=thumbnails, predictions_format=predictions_format)
