"""report.html for `cliplab robustness` and `cliplab probe`: one offline page, plotly inlined.

Same escaping as the audit report and the widgets (cliplab.html): every user string (class, shift,
group, model names) goes through ``esc`` before it reaches the page or a plotly label, and the figure
JSON placed inside <script> through ``script_json``.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .html import esc, script_json

if TYPE_CHECKING:  # pragma: no cover
    from .probe import ProbeResult
    from .robustness import RobustnessResult

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h2{border-bottom:1px solid #ccc;margin-top:2em}table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left}th{background:#f4f4f4}.muted{color:#666}"""
MAX_ER_FIGURES = 12


class _Figures:
    def __init__(self) -> None:
        self.count = 0

    def render(self, fig) -> str:
        import plotly.io as pio

        self.count += 1
        data = script_json(pio.to_json(fig, validate=False))
        return (f'<div id="f{self.count}" style="height:{fig.layout.height or 420}px"></div><script>(function(){{'
                f'var f={data};Plotly.newPlot("f{self.count}",f.data,f.layout,{{displaylogo:false}});}})();</script>')


def _table(df: pd.DataFrame, limit: int = 200) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) and np.isfinite(v) else esc(v)
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in df.head(limit).itertuples(index=False))
    more = f'<p class="muted">{len(df) - limit} more rows in the CSV.</p>' if len(df) > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _page(title: str, body: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(title)}</title><style>{CSS}</style>'
            f"<script>{get_plotlyjs()}</script></head><body><h1>{esc(title)}</h1>{''.join(body)}</body></html>\n")


def _err(df: pd.DataFrame, m: str) -> dict:
    return dict(type="data", symmetric=False, array=(df[f"{m}_high"] - df[m]).tolist(),
                arrayminus=(df[m] - df[f"{m}_low"]).tolist())


def logit_axis(values: np.ndarray) -> dict:
    """Axis settings that show logit-scaled positions with accuracy tick labels (plotly has no logit axis)."""
    ticks = np.array([0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999])
    lo, hi = np.nanmin(values) - 0.3, np.nanmax(values) + 0.3
    pos = np.log(ticks / (1 - ticks))
    keep = (pos >= lo) & (pos <= hi)
    return dict(tickvals=pos[keep].tolist(), ticktext=[f"{100 * t:g}%" for t in ticks[keep]], range=[lo, hi])


def er_figure(table: pd.DataFrame, slope: float, intercept: float, shift: str):
    """OOD against ID accuracy on logit axes: the baseline line, y = x, each evaluation with its ER."""
    import plotly.graph_objects as go
    from scipy.special import logit

    clip = lambda p: logit(np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4))
    x, y = clip(table["id_acc"]), clip(table["ood_acc"])
    span = np.linspace(min(x.min(), y.min()) - 0.3, max(x.max(), y.max()) + 0.3, 50)
    fig = go.Figure()
    fig.add_scatter(x=span, y=span, mode="lines", name="y = x (no drop under shift)", line=dict(dash="dot"))
    fig.add_scatter(x=span, y=slope * span + intercept, mode="lines", name="baseline fit")
    for is_base, sub in table.groupby("baseline"):
        idx = sub.index
        fig.add_scatter(x=x[idx], y=y[idx], mode="markers+text", name="baselines" if is_base else "evaluated",
                        text=[esc(n) for n in sub["name"]], textposition="top center",
                        hovertext=[f"{esc(n)}: ER {100 * e:+.1f} pp [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                                   for n, e, lo, hi in zip(sub["name"], sub["effective_robustness"],
                                                           sub["er_low"], sub["er_high"])])
    both = np.concatenate([x, y, span])
    fig.update_layout(title=f"Effective robustness: {esc(shift)}", height=460,
                      xaxis=dict(title="in-distribution accuracy (logit scale)", **logit_axis(both)),
                      yaxis=dict(title="shifted accuracy (logit scale)", **logit_axis(both)))
    return fig


def robustness_page(result: RobustnessResult, title: str = "cliplab robustness") -> str:
    import plotly.graph_objects as go

    figs = _Figures()
    s = result.shifts
    body = [f"<p>{len(result.classnames)} classes; {s['shift'].nunique()} sets (in-distribution and shifts); "
            f"classifiers: {esc(', '.join(s['classifier'].unique()))}.</p>"]
    body += [f'<p class="muted">{esc(n)}</p>' for n in result.notes]
    fig = go.Figure()
    for clf, sub in s.groupby("classifier", sort=False):
        fig.add_bar(x=[esc(v) for v in sub["shift"]], y=sub["acc1"], name=esc(clf), error_y=_err(sub, "acc1"))
    fig.update_layout(title="Top-1 accuracy per shift (95% Wilson intervals)", barmode="group",
                      yaxis_tickformat=".0%", height=440)
    body += ["<h2>Accuracy under shift</h2>", figs.render(fig), _table(s)]
    if len(result.gaps):
        g = result.gaps
        fig = go.Figure()
        for (clf, attr, metric), sub in g.groupby(["classifier", "attribute", "metric"], sort=False):
            fig.add_scatter(x=[esc(v) for v in sub["shift"]], y=sub["gap"], mode="markers+lines",
                            name=esc(f"{clf}: {attr} {metric}"), error_y=_err(sub, "gap"))
        fig.update_layout(title="Gap between groups (largest - smallest) per shift, Newcombe 95%", height=420,
                          yaxis_tickformat=".0%")
        body += ["<h2>Groups under shift</h2>", figs.render(fig), _table(g), _table(result.groups)]
    if len(result.effective):
        body.append("<h2>Effective robustness</h2><p>Baseline line fitted to logit(shifted accuracy) against "
                    "logit(in-distribution accuracy) of the baseline models (Taori et al. 2020); effective "
                    "robustness = shifted accuracy above the line (bootstrap 95% interval).</p>")
        lines = result.lines.set_index("shift")
        for shift, sub in list(result.effective.groupby("shift", sort=False))[:MAX_ER_FIGURES]:
            sub = sub.reset_index(drop=True)
            body.append(figs.render(er_figure(sub, lines.at[shift, "slope"], lines.at[shift, "intercept"], shift)))
        body.append(_table(result.effective))
    return _page(title, body)


def probe_page(result: ProbeResult, title: str = "cliplab probe") -> str:
    import plotly.graph_objects as go

    figs = _Figures()
    sm = result.summary
    fig = go.Figure()
    fig.add_scatter(x=sm["k"], y=sm["acc1"], mode="lines+markers", name="k-shot linear probe (mean, 95% t)",
                    error_y=_err(sm, "acc1"))
    fig.add_hline(y=result.full["acc1"], line_dash="dash", annotation_text="probe on all training data")
    if result.zeroshot:
        fig.add_hline(y=result.zeroshot["acc1"], line_color="crimson", annotation_text="zero-shot")
    if result.zeroshot_worth_k:
        fig.add_vline(x=result.zeroshot_worth_k, line_dash="dot", line_color="crimson")
    fig.update_layout(title=esc(result.zeroshot_worth), height=440, yaxis_tickformat=".0%",
                      xaxis=dict(type="log", title="labelled examples per class", tickvals=sm["k"].tolist()))
    body = [f"<p>{len(result.classnames)} classes. {esc(result.zeroshot_worth)}.</p>", figs.render(fig),
            "<h2>k-shot summary</h2>", _table(sm), "<h2>Full-data probe</h2>",
            f"<pre>{esc(json.dumps(result.full, indent=1))}</pre>"]
    if len(result.short_classes):
        body += ["<h2>Classes with fewer than k training examples (all their examples used)</h2>",
                 _table(result.short_classes)]
    body += ["<h2>Every probe</h2>", _table(result.curve)]
    return _page(title, body)
