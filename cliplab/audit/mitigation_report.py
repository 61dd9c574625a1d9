"""How a mitigation check is shown: terminal lines, the report's section, metrics.json's entry.

An output module: it reads a :class:`~cliplab.audit.mitigation.MitigationResult` by its fields
(no import of the mitigation module at run time), so the page, the files and the result's
``summary()`` can call it. Every user string reaching the page goes through ``esc``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..html import esc
from ..html import table_html as _table
from .text import metric_name, pct, pp, table

if TYPE_CHECKING:  # pragma: no cover - type names only
    from .mitigation import MitigationResult

METHODS = ("orthogonal", "calibrated")  # = mitigation.METHODS (not imported: this module sits below it)
STAGES = ("before", *METHODS)


def shown_disparities(m: MitigationResult) -> pd.DataFrame:
    """The rows worth reading: detected before or under a method, largest |difference| before first."""
    d = m.disparities
    hit = pd.concat([d[f"detected_{s}"].fillna(False).astype(bool) for s in STAGES], axis=1).any(axis=1)
    shown = d[hit]
    return shown.reindex(shown["difference_before"].abs().sort_values(ascending=False).index)


def _change(r: Any) -> str:
    if r["method"] == "before":
        return ""
    return f"{pp(r['change'])} pp [{pp(r['change_ci_low'])}, {pp(r['change_ci_high'])}]"


def mitigation_text(m: MitigationResult | None, max_rows: int = 10) -> str:
    """The mitigation check as plain text (empty without one)."""
    if m is None:
        return ""
    counts = m.detected_counts()
    lines = [f"mitigation: {m.attribute!r} ({', '.join(m.values)}) projected out of the text classifier "
             f"({len(m.bias_prompts)} biased prompts, {m.n_pairs} pairs, lambda {m.lam:g}): detected disparities "
             + ", ".join(f"{counts[s]} {s}" for s in STAGES)]
    for _, r in m.overall.iterrows():
        if r["method"] != "before":
            continue
        after = m.overall[(m.overall["metric"] == r["metric"]) & (m.overall["category"] == r["category"])
                          & (m.overall["method"] != "before")]
        lines.append(f"  {metric_name(r)}: {pct(r['rate'])} before; " + "; ".join(
            f"{a['method']} {pct(a['rate'])} ({_change(a)})" for _, a in after.iterrows()))
    shown = shown_disparities(m).head(max_rows)
    rows = [[r["attribute"], r["group"], metric_name(r)]
            + [f"{pp(r[f'difference_{s}'])}{' *' if bool(r[f'detected_{s}']) else ''}" for s in STAGES]
            for _, r in shown.iterrows()]
    if rows:
        lines.append(table(rows, ["attribute", "group", "metric", "diff pp before", "orthogonal", "calibrated"]))
        lines.append("  (* detected; every disparity before and after is in mitigation.csv)")
    return "\n".join(lines)


def mitigation_document(m: MitigationResult, records_for_json) -> dict[str, Any]:
    """metrics.json's ``mitigation`` entry (``records_for_json`` makes the tables JSON-ready)."""
    return {"method": "projection", "attribute": m.attribute, "values": list(m.values), "lambda": m.lam,
            "centre": m.centre, "bias_prompts": list(m.bias_prompts), "n_pairs": m.n_pairs,
            "projections": list(METHODS), "diagnostics": m.diagnostics, "n_detected": m.detected_counts(),
            "overall": records_for_json(m.overall), "disparities": records_for_json(m.disparities)}


def _ci(r: Any, stage: str) -> str:
    return f"{pp(r[f'difference_{stage}'])} [{pp(r[f'ci_low_{stage}'])}, {pp(r[f'ci_high_{stage}'])}]"


def mitigation_section(m: MitigationResult | None) -> str:
    """The report's mitigation section (empty without one)."""
    if m is None:
        return ""
    counts = m.detected_counts()
    diag = "; ".join(f"{s}: pair gap {100 * m.diagnostics[s]['pair_gap']:.0f}% of before, bias prompts' residual "
                     f"{100 * m.diagnostics[s]['bias_residual']:.0f}%" for s in METHODS)
    parts = [f"<h2>Mitigation check: {esc(m.attribute)} projected out of the text embeddings</h2>",
             "<p>The class embeddings of the classifier, projected to remove the directions spanned by the biased "
             f"prompts ({esc(', '.join(m.bias_prompts[:6]))}{' ...' if len(m.bias_prompts) > 6 else ''}; "
             f"{'centred' if m.centre else 'not centred'}), then renormalised, and the audit rerun on the same "
             "image embeddings. <b>orthogonal</b>: P0 = I - A(A<sup>T</sup>A)<sup>+</sup>A<sup>T</sup>; "
             "<b>calibrated</b> (Chuang et al. 2023): P0 (I + &lambda;M)<sup>-1</sup>, M the mean outer product "
             f"of the differences of {m.n_pairs} prompt pairs that differ only in {esc(m.attribute)}, "
             f"&lambda; = {esc(f'{m.lam:g}')}. {esc(diag)}.</p>",
             f"<p>Detected disparities: {', '.join(f'{counts[s]} {s}' for s in STAGES)}.</p>"]
    o = m.overall.assign(what=[metric_name(r) for _, r in m.overall.iterrows()])
    o = o.iloc[np.argsort(pd.factorize(o["what"])[0], kind="stable")]  # each rate's three classifiers together
    o = o.assign(rate_ci=[f"{pct(r['rate'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]" for _, r in o.iterrows()],
                 change_ci=[_change(r) for _, r in o.iterrows()])
    parts.append("<h3>Overall rates before and after (the cost)</h3>"
                 '<p class="muted">Change: paired on the same images (Bonett-Price 95% interval, exact McNemar '
                 "p).</p>" + _table(o, [("what", "rate", None), ("method", "classifier", None), ("n", "n", None),
                                        ("rate_ci", "rate [95% CI]", None),
                                        ("change_ci", "change from before", None),
                                        ("p_value", "p (McNemar)", _p)], limit=None))
    shown = shown_disparities(m)
    if shown.empty:
        parts.append("<p>No disparity is detected before or after either projection.</p>")
        return "".join(parts)
    t = shown.assign(what=[metric_name(r) for _, r in shown.iterrows()],
                     **{f"d_{s}": [_ci(r, s) for _, r in shown.iterrows()] for s in STAGES},
                     **{f"v_{s}": ["detected" if bool(r[f"detected_{s}"]) else "" for _, r in shown.iterrows()]
                        for s in STAGES})
    cols = [("attribute", "attribute", None), ("group", "group", None), ("what", "metric", None),
            ("reference", "reference", None)]
    for s in STAGES:
        cols += [(f"d_{s}", f"{s}: difference, pp [95% CI]", None), (f"v_{s}", s, None)]
    parts.append("<h3>Disparities before and after</h3>"
                 '<p class="muted">The disparities detected before or under either projection; all of them are in '
                 "mitigation.csv and metrics.json.</p>"
                 + _table(t, cols, lambda r: "flag" if r["v_before"] else "", limit=300, more="disparities"))
    return "".join(parts)


def _p(x: Any) -> str:
    if x is None or pd.isna(x):
        return ""
    return f"{float(x):.2g}" if float(x) >= 1e-4 else f"{float(x):.1e}"
