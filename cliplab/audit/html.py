"""report.html: one self-contained, offline page that opens with its finding.

The top of the page says what was audited, on what, each flagged disparity in one sentence with
its numbers, and what the audit could not have detected; then a reading guide and the limits.
Charts are static SVG (cliplab.html.bars_svg) with hover text, so the page is small, needs no
script and draws its text at once. Safety: every string that comes from user files (class names,
templates, attribute values, paths, the audit's name) goes through :func:`esc` before it reaches
the page; the page has no script at all.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..html import FLAGGED_COLOUR, REFERENCE_COLOUR, bars_svg, esc, group_colours, number, ordered_values, thumbnail_uri
from ..html import script_json as script_json  # re-exported: tests and older callers import it from here
from ..html import table_html as _table
from .mitigation_report import mitigation_section
from .report import FLAG_RULE, REFERENCE_RULE, pct
from .report_tables import error_rates_section, fairness_section, retrieval_section

if TYPE_CHECKING:  # pragma: no cover
    from .compare import AuditComparison
    from .result import AuditResult

CSS = """*{box-sizing:border-box}body{font:15px/1.5 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;
padding:0 1em;color:#222}h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ddd;
padding:3px 7px;text-align:left;vertical-align:top}th{background:#f4f4f4}tr.flag td{background:#fde8e8}
.muted{color:#666}.box{background:#f7f7fb;border:1px solid #dde;padding:.6em 1em;border-radius:4px}
.headline{background:#fff8e6;border:1px solid #e8c770;padding:.8em 1.2em;border-radius:4px}
.headline li{margin:.3em 0}.warn{background:#fde8e8;border:2px solid #c0392b;padding:.6em 1em;font-weight:600}
.thumbs{display:flex;flex-wrap:wrap;gap:12px}.thumb{width:150px;font-size:12px;overflow-wrap:anywhere}
.thumb img{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ccc;object-fit:contain}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1em}
code{background:#f3f3f3;padding:0 3px;overflow-wrap:anywhere}svg{max-width:100%;height:auto}
dl.guide dt{font-weight:600}dl.guide dd{margin:0 0 .4em 1.2em}"""


def shown_group(row) -> str:
    """A group as a reader should see it: its values as written (``group`` is the escaped key that keeps
    ``p & q`` + ``r`` apart from ``p`` + ``q & r``; charts show the plain values joined by " & ")."""
    values = row.get("group_values")
    return " & ".join(map(str, values)) if isinstance(values, (list, tuple)) and len(values) else str(row["group"])

def _pp(x: Any) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{100 * float(x):+.1f}"


def _p(x: Any) -> str:
    """A p-value as people read it: 3.1e-05, 0.0021, 0.11, 1."""
    if x is None or pd.isna(x):
        return "n/a"
    x = float(x)
    return f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}"


def _ratio(x: Any) -> str:
    if x is None or pd.isna(x):
        return "n/a"
    return "unbounded (reference 0%)" if math.isinf(float(x)) else f"{float(x):.2f}x"


def metric_label(row: Any, top_k: int | None = None) -> str:
    """A metric id as words: 'top-1 prediction: thief', 'thief among the top 5', 'top-1 accuracy'."""
    metric, cat = str(row.get("metric", "")), str(row.get("category", "") or "")
    k = row.get("k", top_k)
    k = int(k) if k is not None and not pd.isna(k) else top_k
    if metric == "accuracy":
        return "top-1 accuracy"
    if metric == "derived_accuracy":
        return f"{cat} accuracy (top-1 class mapped to {cat})"
    if metric == "flagged_rate":
        return f"predicted as {cat} (top-1)" if cat else "predicted as a flagged class (top-1)"
    if metric == "topk_flagged_rate":
        return f"{cat or 'a flagged class'} among the top {k}"
    return metric.replace("_", " ") + (f": {cat}" if cat else "")


def _flagged_index(result: AuditResult) -> set:
    return set(result.flagged().index)


def _mdd_column(d: pd.DataFrame) -> str | None:
    """The minimum-detectable-difference column, when the audit computed one (name read defensively)."""
    return next((c for c in d.columns if "detectable" in str(c).lower() or str(c).lower() in ("mdd", "mde")), None)


# ------------------------------------------------------------------------------- headline
def _sentence(r: pd.Series, top_k: int) -> str:
    """One flagged disparity as a sentence with its numbers."""
    what = metric_label(r, top_k)
    attr, grp, ref = esc(r["attribute"]), esc(r["group"]), esc(r["reference"])
    rate, ref_rate = pct(r["rate"]), pct(r["reference_rate"])
    n, n_ref = r.get("n"), r.get("n_reference")
    sizes = f" (n = {int(n)} and {int(n_ref)})" if n is not None and n_ref is not None and not pd.isna(n_ref) else ""
    ratio = r.get("ratio")
    times = ("" if ratio is None or pd.isna(ratio) else
             "; the reference group had none" if math.isinf(float(ratio)) else f", {float(ratio):.1f} times the rate")
    return (f"<li><b>{attr} = {grp}</b>: {esc(what)} {rate} against {ref_rate} for {ref} (the reference){sizes}: "
            f"<b>{_pp(r['difference'])} pp</b> [95% CI {_pp(r['ci_low'])}, {_pp(r['ci_high'])}]{times}; "
            f"adjusted p = {_p(r['p_adjusted'])}.</li>")


def _retrieval_sentences(result: AuditResult) -> list[str]:
    r = result.retrieval
    out: list[str] = []
    if r is None or r.empty or "top_k_share" not in r:
        return out
    for _, row in r.iterrows():
        top, pop = row.get("top_k_share") or {}, row.get("population_share") or {}
        if not isinstance(top, dict) or not top:
            continue
        g = max(top, key=lambda a: top[a] - pop.get(a, 0.0))
        if top[g] - pop.get(g, 0.0) < 0.1:
            continue
        out.append(f"<li>Retrieval: the top {esc(row['k'])} images for <q>{esc(row['query'])}</q> are "
                   f"<b>{pct(top[g])} {esc(row['attribute'])} = {esc(g)}</b>, against {pct(pop.get(g, 0.0))} of "
                   f"all audited images.</li>")
    return out


def _undetectable(result: AuditResult) -> str:
    d = result.disparities
    col = _mdd_column(d) if d is not None else None
    if col is None:
        small = result.groups[result.groups["attribute"] != "(all)"]["denominator"]
        smallest = int(small.min()) if len(small) else 0
        return ("<p><b>What this audit could not detect</b>: an unflagged comparison is not evidence of no "
                f"difference; the smallest audited group has {smallest} images, and this version of the audit "
                "does not report the smallest difference each comparison could have detected.</p>")
    flagged = _flagged_index(result)
    rest = d[~d.index.isin(flagged)]
    rest = rest[rest[col].notna()] if len(rest) else rest
    if rest.empty:
        return ""
    worst = rest.loc[rest[col].astype(float).idxmax()]
    return ("<p><b>What this audit could not detect</b>: among the comparisons not flagged, differences smaller "
            f"than {100 * float(rest[col].median()):.1f} pp (median; up to {100 * float(worst[col]):.1f} pp for "
            f"{esc(worst['attribute'])} = {esc(worst['group'])}, {esc(metric_label(worst, result.spec.top_k))}) "
            "would probably have gone unnoticed (80% power).</p>")


def _limitations(result: AuditResult) -> str:
    g = result.groups[(result.groups["attribute"] != "(all)")]
    sizes = g.drop_duplicates(["attribute", "group"])
    smallest = sizes.loc[sizes["denominator"].idxmin()] if len(sizes) else None
    items = []
    if "biased" in result.predictions.columns:
        items.append("The images are <b>synthetic</b> (cartoon figures with a bias planted in the training "
                     "captions): the audit has a known answer, and says nothing about real photographs.")
    identity = str(result.model.get("identity", ""))
    if "tiny" in identity or result.model.get("random_init"):
        items.append(f"The model (<code>{esc(identity)}</code>) is small and was trained here, not a "
                     "pretrained CLIP: its rates are not those of a production model.")
    if smallest is not None:
        items.append(f"Group sizes decide what can be seen: the smallest group is {esc(smallest['attribute'])} = "
                     f"{esc(smallest['group'])} with {int(smallest['denominator'])} images; groups under "
                     f"{esc(result.spec.min_group_size)} images are reported but not compared.")
    items.append("Attributes are the metadata's labels, not self-identification; a rate measures this label set "
                 "and these prompts only (see the what-if section for another label set).")
    return "<h2>Limitations</h2><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


READING_GUIDE = f"""<h2>How to read this report</h2><dl class="guide">
<dt>rate</dt><dd>the share of a group's images with that outcome, e.g. 10.5% of dark-tone images predicted as
<q>thief</q>; the whisker is its 95% Wilson interval.</dd>
<dt>pp (percentage points)</dt><dd>a difference between two rates: 10.5% against 0.3% is +10.2 pp.</dd>
<dt>ratio</dt><dd>the group's rate divided by the reference group's: 2.00x is twice as often.</dd>
<dt>95% CI</dt><dd>the range of differences compatible with the data; one that excludes 0 is a real gap.</dd>
<dt>top-1 / top-k</dt><dd>top-1: the classifier's single prediction; <q>among the top k</q>: the flagged class
is one of its k best guesses (k is given each time).</dd>
<dt>reference group</dt><dd>what each group is compared to: {esc(REFERENCE_RULE)}. Marked with a dark outline
in the charts, flagged groups with a red one (▲).</dd>
<dt>flagged</dt><dd>{esc(FLAG_RULE)}.</dd>
<dt>MaxSkew@k, NDKL (retrieval)</dt><dd>who is in the k images a text query retrieves, against the audited
images: MaxSkew@k = ln(top-k share / overall share) of the most over-represented group (0 is representative,
0.69 is twice its share); NDKL sums that gap over all ranks (0 is representative).</dd></dl>"""


def _headline(result: AuditResult) -> str:
    spec, d = result.spec, result.disparities
    flagged = result.flagged()
    n_all = len(d)
    warn = ('<p class="warn">This model has random weights (random_init): it was never trained, so these '
            "rates say nothing about a trained model.</p>" if result.model.get("random_init") else "")
    what = (f"<p>Audit <b>{esc(spec.name)}</b> of the model <code>{esc(result.model.get('identity'))}</code> on "
            f"<b>{esc(result.data.get('n_audited'))} images</b>, grouped by {esc(', '.join(spec.group_by))}; "
            f"{n_all} comparisons of a group with its reference.</p>")
    if len(flagged):
        order = flagged.reindex(flagged["difference"].abs().sort_values(ascending=False).index)
        found = (f"<p><b>{len(flagged)} flagged disparit{'y' if len(flagged) == 1 else 'ies'}</b>:</p><ul>"
                 + "".join(_sentence(r, spec.top_k) for _, r in order.head(8).iterrows())
                 + (f"<li>... and {len(flagged) - 8} more, in the table below.</li>" if len(flagged) > 8 else "")
                 + "</ul>")
    else:
        found = "<p><b>No flagged disparity</b>: no comparison passed both the corrected test and the interval.</p>"
    retrieval = _retrieval_sentences(result)
    found += f"<ul>{''.join(retrieval)}</ul>" if retrieval else ""
    return (f'{warn}<section class="headline">{what}{found}{_undetectable(result)}'
            f'<p class="muted">Created {esc(result.created)} with cliplab {esc(result.version)}.</p></section>')


# ------------------------------------------------------------------------------- sections
def _tested_nothing(d: pd.DataFrame) -> pd.Series:
    """Rows where both rates are 0% or both 100% (no variation in either group: the test says nothing)."""
    rate, ref = d["rate"].fillna(0), d["reference_rate"].fillna(0)
    return ((rate == 0) & (ref == 0)) | ((rate == 1) & (ref == 1))


def _section_disparities(result: AuditResult) -> str:
    d = result.disparities
    if d is None or d.empty:
        return "<h2>Disparities</h2><p>No comparison could be made (fewer than two groups of adequate size).</p>"
    flagged = _flagged_index(result)
    empty = _tested_nothing(d)
    shown = d[~empty].copy()
    shown["_flag"] = shown.index.isin(flagged)
    shown["what"] = [metric_label(r, result.spec.top_k) for _, r in shown.iterrows()]
    shown["difference_ci"] = [f"{_pp(r['difference'])} [{_pp(r['ci_low'])}, {_pp(r['ci_high'])}]"
                              for _, r in shown.iterrows()]
    shown["rate_n"] = [f"{pct(r['rate'])} of {int(r['n'])}" if "n" in r else pct(r["rate"])
                       for _, r in shown.iterrows()]
    shown["ref_n"] = [f"{pct(r['reference_rate'])} of {int(r['n_reference'])}" if "n_reference" in r
                      else pct(r["reference_rate"]) for _, r in shown.iterrows()]
    shown["verdict"] = ["flagged" if f else "not flagged" for f in shown["_flag"]]
    cols: list[tuple[str, str, Callable[[Any], str] | None]] = [
        ("attribute", "attribute", None), ("group", "group", None), ("reference", "reference", None),
        ("what", "outcome", None), ("rate_n", "rate", None), ("ref_n", "reference rate", None),
        ("difference_ci", "difference, pp [95% CI]", None), ("ratio", "ratio", _ratio),
        ("p_adjusted", "p (adjusted)", _p)]
    mdd = _mdd_column(d)
    if mdd:
        cols.append((mdd, "detectable difference, pp", lambda v: "n/a" if pd.isna(v) else f"{100 * float(v):.1f}"))
    cols.append(("verdict", "verdict", None))
    order = shown.assign(_o=~shown["_flag"], _a=-shown["difference"].abs()).sort_values(["_o", "p_adjusted", "_a"])
    skipped = (f"<p class=\"muted\">{int(empty.sum())} comparison(s) where both rates are 0% or both 100% "
               "(no variation in either group) are not listed: they test nothing.</p>" if empty.any() else "")
    return (f"<h2>Disparities</h2><p>{len(flagged)} flagged of {len(d)} comparisons. Correction: "
            f"{esc(result.spec.correction)}, alpha {esc(result.spec.alpha)}.</p>{skipped}"
            + _table(order, cols, lambda r: "flag" if r["_flag"] else "", limit=300, more="comparisons"))


def _rate_charts(result: AuditResult, sub: pd.DataFrame, attr: str) -> list[str]:
    """One SVG chart per (metric, category) of an attribute: groups in order, reference and flagged marked."""
    d = result.disparities
    flagged = _flagged_index(result)
    charts: list[str] = []
    for (metric, cat), t in sub.groupby(["metric", "category"], sort=False):
        if metric not in ("flagged_rate", "topk_flagged_rate", "accuracy", "derived_accuracy") and len(charts) >= 6:
            continue
        order = ordered_values(t["group"]) or list(t["group"])
        t = t.set_index("group").loc[[g for g in order if g in set(t["group"])]].reset_index()
        colours = group_colours(order)
        rel = d[(d["attribute"] == attr) & (d["metric"] == metric) & (d["category"] == cat)] if len(d) else d
        refs = set(rel["reference"]) if len(rel) else set()
        hot = set(rel.loc[rel.index.isin(flagged), "group"]) if len(rel) else set()
        rows = []
        for _, r in t.iterrows():
            mark = ("flagged" if r["group"] in hot else "reference" if r["group"] in refs
                    else "small" if r.get("status") != "ok" else "")
            rows.append({"label": shown_group(r), "rate": r["rate"], "low": r["ci_low"], "high": r["ci_high"],
                         "colour": colours.get(str(r["group"]), "#4c78a8"), "mark": mark,
                         "tip": f"{shown_group(r)}: {pct(r['rate'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}], "
                                f"{int(r['count'])} of {int(r['denominator'])} images"})
        label = metric_label({"metric": metric, "category": cat, "k": t["k"].iloc[0] if "k" in t else None},
                             result.spec.top_k)
        charts.append(bars_svg(f"{attr}: {label}", rows, f"share of images ({label}), 95% Wilson interval"))
    return charts


def _section_groups(result: AuditResult) -> str:
    parts = ['<h2>Rates by group</h2><p class="muted">Bars: share of each group\'s images; whiskers: 95% Wilson '
             f'intervals; <span style="color:{REFERENCE_COLOUR}">dark outline: reference group</span>, '
             f'<span style="color:{FLAGGED_COLOUR}">red outline ▲: flagged</span>; faded: groups under '
             f"{esc(result.spec.min_group_size)} images (reported, not compared). Hover a bar for its counts.</p>"]
    g = result.groups
    for attr in result.attributes:
        sub = g[g["attribute"] == attr]
        parts.append(f"<h3>{esc(attr)}</h3><div class=\"charts\">{''.join(_rate_charts(result, sub, attr))}</div>")
    return "".join(parts)


def _section_examples(result: AuditResult, n: int) -> str:
    if n <= 0:
        return ""
    ex = result.worst_examples(n)
    if ex.empty:
        return "<h2>Examples</h2><p>No image was put into a flagged class or misclassified.</p>"
    cards = []
    for _, r in ex.iterrows():
        attrs = ", ".join(f"{a} = {r[a]}" for a in result.spec.group_by if a in r)
        src = thumbnail_uri(r["path"], 128) if "path" in r else ""
        img = f'<img alt="{esc(attrs)}" src="{src}">' if src else '<div class="muted">(image unreadable)</div>'
        cards.append(f'<div class="thumb">{img}<br><b>{esc(r["prediction"])}</b> {pct(r["probability"])}<br>'
                     f'truth: {esc(r["truth"] or "n/a")}<br>{esc(attrs)}</div>')
    return ("<h2>Most confident flagged predictions</h2><p class=\"muted\">The images put into a flagged class "
            "with the highest probability (or, with none, the most confident misclassifications).</p>"
            f'<div class="thumbs">{"".join(cards)}</div>')


def _section_label_set(result: AuditResult) -> str:
    spec = result.spec
    cat_of = {c: cat for cat, cls in spec.flagged.items() for c in cls}
    rows = "".join(f"<tr><td>{esc(c.name)}</td><td>{esc(cat_of.get(c.name, ''))}</td>"
                   f"<td>{esc(' | '.join(c.prompts) if c.prompts else '(templates)')}</td></tr>" for c in spec.classes)
    templates = "".join(f"<li><code>{esc(t)}</code></li>" for t in spec.templates)
    refs = ", ".join(f"{a}: {g}" for a, g in dict(spec.reference).items()) or "chosen from the data (see the guide)"
    return (f"<h2>Label set and settings</h2><p>Audit <b>{esc(spec.name)}</b> from {esc(spec.source)}. "
            f"{esc(spec.description)}</p><div class=\"cliplab-scroll\"><table><tr><th>class</th><th>harm category"
            f"</th><th>prompts</th></tr>{rows}</table></div><p>Templates:</p><ul>{templates}</ul>"
            f"<p>Truth: {esc(_describe_truth(spec.truth))}. Group by: {esc(', '.join(spec.group_by))} "
            f"(intersections: {'yes' if spec.intersections else 'no'}). Where: {esc(_describe_where(spec.where))}. "
            f"Reference groups: {esc(refs)}. Top-k: k = {esc(spec.top_k)}. Bootstrap draws: {esc(spec.n_boot)}, "
            f"seed {esc(spec.seed)}.</p>")


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
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(number(v) if not isinstance(v, str) else v)}</td></tr>"
                   for k, v in items)
    skipped = pd.DataFrame([(s.path, s.reason) for s in result.skipped], columns=["path", "reason"])
    skip_table = _table(skipped, [("path", "file", None), ("reason", "reason", None)], limit=200, more="files") \
        if len(skipped) else "<p>No file was skipped.</p>"
    return f"<h2>Data</h2><table>{rows}</table><h3>Skipped files</h3>{skip_table}"


def _section_comparison(comp: AuditComparison | None) -> str:
    if comp is None:
        return ""
    t = comp.changes
    a_names, b_names = comp.a.spec.classnames, comp.b.spec.classnames
    added = ", ".join(c for c in b_names if c not in a_names) or "none"
    removed = ", ".join(c for c in a_names if c not in b_names) or "none"
    parts = [f"<h2>Label-set what-if: {esc(comp.a.spec.name)} &rarr; {esc(comp.b.spec.name)}</h2>"
             f"<p>Added classes: {esc(added)}; removed: {esc(removed)}."
             " Paired on the same images: exact McNemar tests, corrected; intervals by resampling images.</p>"
             '<div class="charts">']
    for (attr, cat), sub in t[t["metric"] == "flagged_rate"].groupby(["attribute", "category"], sort=False):
        colours = group_colours(list(sub["group"]))
        rows = []
        for _, r in sub.iterrows():
            for name, col in ((comp.a.spec.name, "rate_a"), (comp.b.spec.name, "rate_b")):
                rows.append({"label": f"{r['group']} ({name})", "rate": r[col], "low": r[col], "high": r[col],
                             "colour": colours.get(str(r["group"]), "#4c78a8"),
                             "mark": "flagged" if col == "rate_b" and bool(r.get("significant")) else "",
                             "tip": f"{r['group']}, {name}: {pct(r[col])}"})
        parts.append(bars_svg(f"{attr}: predicted as {cat} (top-1)", rows, "share of images"))
    parts.append("</div>")
    t = t.assign(verdict=["significant" if bool(s) else "not significant" for s in t["significant"]],
                 what=[metric_label(r) for _, r in t.iterrows()],
                 change_ci=[f"{_pp(r['change'])} [{_pp(r['ci_low'])}, {_pp(r['ci_high'])}]" for _, r in t.iterrows()])
    cols: list[tuple[str, str, Callable[[Any], str] | None]] = [
        ("attribute", "attribute", None), ("group", "group", None), ("what", "outcome", None), ("n", "n", None),
        ("rate_a", "rate A", pct), ("rate_b", "rate B", pct), ("change_ci", "change, pp [95% CI]", None),
        ("p_adjusted", "p (adjusted)", _p), ("verdict", "verdict", None)]
    parts.append(_table(t, cols, lambda r: "flag" if r["verdict"] == "significant" else "", limit=300,
                        more="changes"))
    return "".join(parts)


def render_html(result: AuditResult, comparison: AuditComparison | None = None, thumbnails: int = 12) -> str:
    """The whole report as one HTML string: headline first, no script, every user string escaped."""
    spec = result.spec
    body = [f"<h1>Bias audit: {esc(spec.name)}</h1>", _headline(result), READING_GUIDE, _limitations(result),
            _section_disparities(result), _section_groups(result), _section_comparison(comparison),
            mitigation_section(result.mitigation),
            retrieval_section(result), fairness_section(result), error_rates_section(result),
            _section_examples(result, thumbnails),
            _section_label_set(result), _section_data(result)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>cliplab audit: {esc(spec.name)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
