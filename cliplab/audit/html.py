"""report.html: one self-contained, offline page (plotly inlined, thumbnails as data URIs).

Safety: every string that comes from user files (class names, templates, attribute values,
paths, the audit's name) goes through :func:`esc` (html.escape) before it reaches the page,
and the JSON handed to plotly inside <script> has ``<``, ``>``, ``&`` and the JavaScript line
separators escaped as \\uXXXX, so no value can close the script element or inject markup.
Labels shown by plotly are html-escaped too, as plotly renders a subset of HTML in labels.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from .report import FLAG_RULE, REFERENCE_RULE, pct

if TYPE_CHECKING:  # pragma: no cover
    from .compare import AuditComparison
    from .result import AuditResult

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f4f4f4}tr.flag td{background:#fde8e8}
tr.small td{color:#888}.muted{color:#666}.box{background:#f7f7fb;border:1px solid #dde;padding:.6em 1em}
.thumbs{display:flex;flex-wrap:wrap;gap:12px}.thumb{width:150px;font-size:12px}
.thumb img{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ccc;object-fit:contain}
code{background:#f3f3f3;padding:0 3px}"""


def esc(value: Any) -> str:
    """HTML-escape any value (quotes included, so it is also safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def script_json(value: Any) -> str:
    """JSON safe to place inside a <script> element."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, allow_nan=False)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, rep)
    return text


def table_html(df: pd.DataFrame, columns: list[tuple[str, str, Callable[[Any], str] | None]],
               row_class: Callable[[pd.Series], str] | None = None, limit: int | None = None) -> str:
    """An HTML table of selected columns; every cell is escaped after formatting."""
    head = "".join(f"<th>{esc(h)}</th>" for _, h, _ in columns)
    body = []
    for _, row in (df.head(limit) if limit else df).iterrows():
        cls = row_class(row) if row_class else ""
        cells = "".join(f"<td>{esc(fmt(row[c]) if fmt else row[c])}</td>" for c, _, fmt in columns)
        body.append(f'<tr class="{esc(cls)}">{cells}</tr>')
    more = f'<p class="muted">{len(df) - limit} more rows in the CSV files.</p>' if limit and len(df) > limit else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _num(x: Any, digits: int = 3) -> str:
    try:
        return "n/a" if pd.isna(x) else f"{float(x):.{digits}g}"
    except (TypeError, ValueError):
        return str(x)


def _pp(x: Any) -> str:
    return "n/a" if pd.isna(x) else f"{100 * float(x):+.1f}"


# ------------------------------------------------------------------------------- figures
class Figures:
    """Collects plotly figures; each becomes a div plus a script with escaped JSON."""

    def __init__(self) -> None:
        self.count = 0

    def render(self, fig) -> str:
        import plotly.io as pio

        self.count += 1
        div = f"fig{self.count}"
        data = script_json(pio.to_json(fig, validate=False))
        return (f'<div id="{div}" style="width:100%;height:{fig.layout.height or 380}px"></div>'
                f'<script>(function(){{var f={data};Plotly.newPlot("{div}",f.data,f.layout,'
                f'{{displaylogo:false,responsive:true}});}})();</script>')


def rate_figure(t: pd.DataFrame, title: str):
    """Grouped bars: one trace per category, groups on the x axis, Wilson intervals as error bars."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for cat, sub in t.groupby("category", sort=False):
        small = sub["status"] != "ok"
        labels = [esc(g) + (" (too small)" if s else "") for g, s in zip(sub["group"], small)]
        fig.add_bar(x=labels, y=sub["rate"], name=esc(cat or sub["metric"].iloc[0]),
                    marker_opacity=[0.35 if s else 1.0 for s in small],
                    error_y=dict(type="data", symmetric=False, array=(sub["ci_high"] - sub["rate"]).tolist(),
                                 arrayminus=(sub["rate"] - sub["ci_low"]).tolist()),
                    hovertext=[f"n={n}, {pct(r)} [{pct(lo)}, {pct(hi)}]" for n, r, lo, hi in
                               zip(sub["denominator"], sub["rate"], sub["ci_low"], sub["ci_high"])])
    fig.update_layout(title=esc(title), barmode="group", yaxis_tickformat=".0%", height=380,
                      margin=dict(l=50, r=20, t=50, b=90), legend_title_text="")
    return fig


# ------------------------------------------------------------------------------- sections
def _section_groups(result: AuditResult, figs: Figures) -> str:
    parts = ["<h2>Rates by group</h2><p class=\"muted\">Bars: share of each group's images; whiskers: 95% Wilson "
             f"intervals. Faded bars: groups under {result.spec.min_group_size} images (reported, not compared).</p>"]
    g = result.groups
    for attr in result.attributes:
        sub = g[g["attribute"] == attr]
        parts.append(f"<h3>{esc(attr)}</h3>")
        for metric, title in (("flagged_rate", "top-1 prediction into a flagged category"),
                              ("topk_flagged_rate", f"flagged category among the top {result.spec.top_k}"),
                              ("accuracy", "top-1 accuracy")):
            t = sub[sub["metric"] == metric]
            if len(t):
                parts.append(figs.render(rate_figure(t, f"{attr}: {title}")))
    return "".join(parts)


def _section_disparities(result: AuditResult) -> str:
    d = result.disparities
    cols = [("attribute", "attribute", None), ("group", "group", None), ("reference", "reference", None),
            ("metric", "metric", None), ("category", "category", None), ("n", "n", None),
            ("rate", "rate", pct), ("reference_rate", "reference rate", pct), ("difference", "difference (pp)", _pp),
            ("ci_low", "95% CI low", _pp), ("ci_high", "95% CI high", _pp), ("ratio", "ratio", _num),
            ("four_fifths_violation", "outside 0.8-1.25", None), ("p_adjusted", "p (adjusted)", _num),
            ("flagged", "flagged", None)]
    order = d.assign(_f=~d["flagged"], _a=-d["difference"].abs()).sort_values(["_f", "p_adjusted", "_a"]) \
        if len(d) else d
    return (f"<h2>Disparities</h2><p>{len(result.flagged())} flagged of {len(d)} comparisons. "
            f"{esc(FLAG_RULE)}. Reference: {esc(REFERENCE_RULE)}. Correction: {esc(result.spec.correction)}, "
            f"alpha {esc(result.spec.alpha)}.</p>"
            + table_html(order, cols, lambda r: "flag" if r["flagged"] else "", limit=300))


def _section_examples(result: AuditResult, n: int) -> str:
    if n <= 0:
        return ""
    ex = result.worst_examples(n)
    if ex.empty:
        return "<h2>Examples</h2><p>No image was put into a flagged class or misclassified.</p>"
    cards = []
    for _, r in ex.iterrows():
        attrs = ", ".join(f"{a}={r[a]}" for a in result.spec.group_by if a in r)
        src = _thumbnail(r["path"]) if "path" in r else ""
        img = f'<img alt="{esc(attrs)}" src="{src}">' if src else '<div class="muted">(image unreadable)</div>'
        cards.append(f'<div class="thumb">{img}<br><b>{esc(r["prediction"])}</b> {pct(r["probability"])}<br>'
                     f'truth: {esc(r["truth"] or "n/a")}<br>{esc(attrs)}</div>')
    return ("<h2>Most confident flagged predictions</h2><p class=\"muted\">The images put into a flagged class "
            "with the highest probability (or, with none, the most confident misclassifications).</p>"
            f'<div class="thumbs">{"".join(cards)}</div>')


def _thumbnail(path: str, size: int = 128) -> str:
    from ..data import ImageError, load_image

    try:
        im = load_image(path)
    except (ImageError, OSError):
        return ""
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _section_label_set(result: AuditResult) -> str:
    spec = result.spec
    cat_of = {c: cat for cat, cls in spec.flagged.items() for c in cls}
    rows = "".join(f"<tr><td>{esc(c.name)}</td><td>{esc(cat_of.get(c.name, ''))}</td>"
                   f"<td>{esc(' | '.join(c.prompts) if c.prompts else '(templates)')}</td></tr>" for c in spec.classes)
    templates = "".join(f"<li><code>{esc(t)}</code></li>" for t in spec.templates)
    truth_text = _describe_truth(spec.truth)
    return (f"<h2>Label set and settings</h2><p>Audit <b>{esc(spec.name)}</b> from {esc(spec.source)}. "
            f"{esc(spec.description)}</p><table><tr><th>class</th><th>harm category</th><th>prompts</th></tr>"
            f"{rows}</table><p>Templates:</p><ul>{templates}</ul>"
            f"<p>Truth: {esc(truth_text)}. Group by: {esc(', '.join(spec.group_by))} (intersections: "
            f"{esc(spec.intersections)}). Where: {esc(_describe_where(spec.where))}. Reference groups: "
            f"{esc(dict(spec.reference) or 'best group')}. Top-k: {esc(spec.top_k)}. Bootstrap draws: "
            f"{esc(spec.n_boot)}, seed {esc(spec.seed)}.</p>")


def _describe_where(where) -> str:
    return "; ".join(f"{col} in {', '.join(vals)}" for col, vals in where.items()) or "all rows"


def _describe_truth(truth) -> str:
    if truth is None:
        return "none (no accuracy)"
    if truth.column:
        return f"column {truth.column}" + (f", recoded {dict(truth.map)}" if truth.map else "")
    return f"format {truth.format}" + (f", recoded {dict(truth.values)}" if truth.values else "")


def _section_data(result: AuditResult) -> str:
    d = result.data
    missing = d.get("missing_attribute_values", {})
    truth = d.get("truth", {})
    items = [("images audited", d.get("n_audited")), ("images selected by the filter", d.get("n_selected")),
             ("images embedded now / from cache", f"{d.get('n_encoded', 0)} / {d.get('n_cached', 0)}"),
             ("metadata rows", d.get("n_metadata_rows")),
             ("metadata rows without an image", d.get("metadata_without_image")),
             ("images without metadata", d.get("images_without_metadata")),
             ("skipped or unmatched files", len(result.skipped)),
             ("missing attribute values", ", ".join(f"{k}: {v}" for k, v in missing.items()) or "none"),
             ("truth", ", ".join(f"{k}: {v}" for k, v in truth.items()))]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    skipped = pd.DataFrame([(s.path, s.reason) for s in result.skipped], columns=["path", "reason"])
    skip_table = table_html(skipped, [("path", "file", None), ("reason", "reason", None)], limit=200) \
        if len(skipped) else "<p>No file was skipped.</p>"
    return f"<h2>Data</h2><table>{rows}</table><h3>Skipped files</h3>{skip_table}"


def _section_fairness(result: AuditResult) -> str:
    f = result.fairness
    if f.empty:
        return ""
    cols = [("attribute", "attribute", None), ("category", "category", None),
            ("demographic_parity_difference", "demographic parity difference", _num),
            ("demographic_parity_ratio", "demographic parity ratio", _num),
            ("equalized_odds_difference", "equalized odds difference", _num)]
    return ("<h2>fairlearn summary</h2><p class=\"muted\">Over all groups, whatever their size (fairlearn's "
            "definitions).</p>" + table_html(f, cols))


def _section_retrieval(result: AuditResult) -> str:
    r = result.retrieval
    if r.empty:
        return ""
    cols = [("query", "query", None), ("attribute", "attribute", None), ("k", "k", None),
            ("max_skew", "MaxSkew@k", _num), ("max_skew_group", "most over-represented", None),
            ("min_skew", "MinSkew@k", _num), ("min_skew_group", "most under-represented", None),
            ("ndkl", "NDKL", _num)]
    return ("<h2>Retrieval bias</h2><p class=\"muted\">Who is in the top k images of each text query, against "
            "the audited images' proportions; 0 is representative.</p>" + table_html(r, cols))


def _section_comparison(comp: AuditComparison | None, figs: Figures) -> str:
    if comp is None:
        return ""
    import plotly.graph_objects as go

    t = comp.changes
    a_names, b_names = comp.a.spec.classnames, comp.b.spec.classnames
    added = ", ".join(c for c in b_names if c not in a_names) or "none"
    removed = ", ".join(c for c in a_names if c not in b_names) or "none"
    parts = [f"<h2>Label-set what-if: {esc(comp.a.spec.name)} &rarr; {esc(comp.b.spec.name)}</h2>"
             f"<p>Added classes: {esc(added)}; removed: {esc(removed)}."
             " Paired on the same images: exact McNemar tests, corrected; intervals by resampling images.</p>"]
    for (attr, metric, cat), sub in t[t["metric"] == "flagged_rate"].groupby(["attribute", "metric", "category"],
                                                                             sort=False):
        fig = go.Figure()
        labels = [esc(g) for g in sub["group"]]
        fig.add_bar(x=labels, y=sub["rate_a"], name=esc(comp.a.spec.name))
        fig.add_bar(x=labels, y=sub["rate_b"], name=esc(comp.b.spec.name))
        fig.update_layout(title=esc(f"{attr}: top-1 {cat}"), barmode="group", yaxis_tickformat=".0%", height=340)
        parts.append(figs.render(fig))
    cols = [("attribute", "attribute", None), ("group", "group", None), ("metric", "metric", None),
            ("category", "category", None), ("n", "n", None), ("rate_a", "rate A", pct), ("rate_b", "rate B", pct),
            ("change", "change (pp)", _pp), ("ci_low", "95% CI low", _pp), ("ci_high", "95% CI high", _pp),
            ("p_adjusted", "p (adjusted)", _num), ("significant", "significant", None)]
    parts.append(table_html(t, cols, lambda r: "flag" if r["significant"] else "", limit=300))
    return "".join(parts)


def render_html(result: AuditResult, comparison: AuditComparison | None = None, thumbnails: int = 12) -> str:
    """The whole report as one HTML string."""
    from plotly.offline import get_plotlyjs

    figs = Figures()
    spec = result.spec
    body = [f"<h1>Bias audit: {esc(spec.name)}</h1>",
            f'<p class="box">Model <code>{esc(result.model.get("identity"))}</code>; '
            f'{esc(result.data.get("n_audited"))} '
            f"images; {len(result.flagged())} flagged disparities. Created {esc(result.created)} with cliplab "
            f"{esc(result.version)}.</p>",
            _section_disparities(result), _section_groups(result, figs), _section_comparison(comparison, figs),
            _section_retrieval(result), _section_fairness(result), _section_examples(result, thumbnails),
            _section_label_set(result), _section_data(result)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>cliplab audit: {esc(spec.name)}</title><style>{CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>{''.join(body)}</body></html>\n")
