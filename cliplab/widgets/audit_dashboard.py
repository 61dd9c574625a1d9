"""AuditDashboard: browse an audit result (:class:`cliplab.audit.AuditResult`) group by group.

Pick an attribute, a metric and a category: bars show each group's rate with its Wilson 95%
interval (groups below the audit's minimum size in grey), a table lists the disparities with
the reference group, and clicking a bar shows that group's worst misclassified images. The
export button writes the same report as ``cliplab audit --out`` (report.html, metrics.json,
groups.csv, disparities.csv, predictions).
"""
from __future__ import annotations

from pathlib import Path

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go

from ..errors import CliplabError
from ..html import (
    FLAGGED_COLOUR,
    REFERENCE_COLOUR,
    esc,
    gallery_html,
    group_colours,
    message_html,
    number,
    ordered_values,
    table_html,
)
from ._figure import Figure

DISPARITY_COLUMNS = ["group", "reference", "n", "rate", "reference_rate", "difference", "ci_low", "ci_high",
                     "ratio", "p_adjusted", "flagged"]


class AuditDashboard(W.VBox):
    """Interactive view of an audit result (display it as a cell's last line)."""

    def __init__(self, result, out: str | Path = "audit-report", n_examples: int = 12):
        self.result, self.n_examples, self.message = result, n_examples, ""
        self.groups = result.groups[result.groups["attribute"] != "(all)"]
        if self.groups.empty:
            raise CliplabError("the audit result has no groups to show (no attribute had a usable value)")
        self.attribute = W.Dropdown(options=list(dict.fromkeys(self.groups["attribute"])), description="Attribute")
        metrics = list(dict.fromkeys(self.groups["metric"]))
        k = int(self.groups["k"].max()) if "k" in self.groups else result.spec.top_k
        names = {"flagged_rate": "top-1 prediction", "topk_flagged_rate": f"among the top {k}",
                 "accuracy": "top-1 accuracy"}
        self.metric = W.Dropdown(options=[(names.get(m, m.replace("_", " ")), m) for m in metrics],
                                 description="Metric",
                                 value="flagged_rate" if "flagged_rate" in metrics else metrics[0])
        self.category = W.Dropdown(description="Category")
        self.out = W.Text(str(out), description="Report to")
        self.export_button = W.Button(description="Export report", icon="download")
        self.status, self.table, self.examples = W.HTML(), W.HTML(), W.HTML()
        self.status.add_class("cliplab-status")
        self.figure = Figure(layout=go.Layout(height=400, margin=dict(l=70, r=20, t=60, b=80),
                                              yaxis=dict(tickformat=".0%", rangemode="tozero", title="share of images"),
                                              xaxis=dict(type="category"), showlegend=False))
        self.figure.add_trace(go.Bar(error_y=dict(type="data", symmetric=False, color="#222", thickness=1.3),
                                     hoverinfo="text", textposition="outside", cliponaxis=False))
        self.figure.data[0].on_click(self._on_click)
        self.metric.observe(lambda _c: self._categories(), names="value")
        self._quiet = False
        for w in (self.attribute, self.category):
            w.observe(lambda _c: None if self._quiet else self.update(), names="value")
        self.export_button.on_click(lambda _b: self.export(self.out.value))
        self._categories()
        wrap = W.Layout(flex_flow="row wrap")
        for html in (self.status, self.table, self.examples):  # wide tables scroll in their box, not the page
            html.layout = W.Layout(width="100%", margin="0")  # 100% plus the default 2 px margins would overflow
        super().__init__([W.HBox([self.attribute, self.metric, self.category], layout=wrap), self.status,
                          self.figure, self.table, self.examples,
                          W.HBox([self.out, self.export_button], layout=W.Layout(flex_flow="row wrap"))])
        self.add_class("cliplab-audit-dashboard")

    # ------------------------------------------------------------------ views
    def _categories(self) -> None:
        cats = list(dict.fromkeys(self.groups.loc[self.groups["metric"] == self.metric.value, "category"]))
        labels = [(c if c else "(all classes)", c) for c in cats]
        if list(self.category.options) != labels:
            self._quiet = True
            try:
                self.category.options = labels
                self.category.value = labels[0][1] if labels else None
            finally:
                self._quiet = False
        self.update()

    def selection(self) -> pd.DataFrame:
        """The rows of ``result.groups`` for the chosen attribute, metric and category, groups in natural order."""
        g = self.groups
        t = g[(g["attribute"] == self.attribute.value) & (g["metric"] == self.metric.value)
              & (g["category"] == (self.category.value or ""))].reset_index(drop=True)
        order = ordered_values(t["group"])  # light, medium, dark; child, adult
        return t.set_index("group").loc[order].reset_index() if order else t

    def update(self) -> None:
        """Redraw the bars and the disparity table for the current choice."""
        t = self.selection()
        if t.empty:
            return self._say("no groups for this attribute, metric and category", "warning")
        if t["group"].nunique() < 2:
            self._say(f"attribute {self.attribute.value!r} has a single group ({t['group'].iloc[0]!r}): "
                      "nothing to compare", "warning")
        else:
            small = int((t["status"] != "ok").sum())
            self._say(f"{small} group(s) below the audit's minimum size, shown in grey" if small else "")
        bar = self.figure.data[0]
        marks = self._marks()
        colours = group_colours(list(t["group"]))
        hover = [f"{esc(self.attribute.value)} = {esc(r.group)} {_tag(marks.get(r.group))}"
                 f"<br>{r.rate:.1%} [{r.ci_low:.1%}, {r.ci_high:.1%}]<br>{int(r['count'])} of {int(r.denominator)} "
                 f"images{'' if r.status == 'ok' else ' (too small to compare)'}" for _, r in t.iterrows()]
        what = self.metric.label + (f" {self.category.value}" if self.category.value else "")
        with self.figure.batch_update():
            bar.x, bar.y, bar.hovertext = [esc(g) for g in t["group"]], t["rate"].to_numpy(), hover
            bar.error_y.array = (t["ci_high"] - t["rate"]).to_numpy()
            bar.error_y.arrayminus = (t["rate"] - t["ci_low"]).to_numpy()
            bar.marker.color = [colours[str(g)] for g in t["group"]]
            bar.marker.opacity = [1.0 if s == "ok" else 0.35 for s in t["status"]]
            bar.marker.line.color = [FLAGGED_COLOUR if marks.get(g) == "flagged" else REFERENCE_COLOUR
                                     for g in t["group"]]
            bar.marker.line.width = [3 if g in marks else 0 for g in t["group"]]
            bar.text = [f"{r:.1%}" + {"flagged": " ▲", "reference": " (ref)"}.get(marks.get(g, ""), "")
                        for g, r in zip(t["group"], t["rate"])]
            bar.textposition = "outside"
            self.figure.layout.xaxis.title.text = esc(self.attribute.value)
            self.figure.layout.yaxis.title.text = f"share of images: {esc(what)}"
            self.figure.layout.title.text = (f"{esc(what)} by {esc(self.attribute.value)}, 95% Wilson intervals"
                                             "<br><sub>▲ red outline: flagged; dark outline: reference group; "
                                             "click a bar for examples</sub>")
        self.table.value = "<b>Disparities with the reference group</b>" + table_html(
            self.disparities(), columns=_DISPARITY_FORMAT, limit=50, more="comparisons")

    def _marks(self) -> dict[str, str]:
        """group -> "flagged" or "reference" for the current choice."""
        d = self.disparities()
        if d.empty:
            return {}
        marks = {str(g): "reference" for g in d["reference"]}
        marks.update({str(g): "flagged" for g in d.loc[d["flagged"].astype(bool), "group"]})
        return marks

    def disparities(self) -> pd.DataFrame:
        d = self.result.disparities
        if d is None or d.empty:
            return pd.DataFrame(columns=DISPARITY_COLUMNS)
        d = d[(d["attribute"] == self.attribute.value) & (d["metric"] == self.metric.value)
              & (d["category"] == (self.category.value or ""))]
        return d[[c for c in DISPARITY_COLUMNS if c in d.columns]].reset_index(drop=True)

    def _on_click(self, trace, points, state) -> None:
        if points.point_inds:
            self.show_group(self.selection()["group"].iloc[points.point_inds[0]])

    def show_group(self, group: str) -> pd.DataFrame:
        """Show (and return) the group's worst misclassified images: flagged first, most confident first."""
        table = self.worst_examples(group)
        if table.empty:
            self.examples.value = message_html(f"no misclassified images in group {group!r}")
            return table
        head = f"<b>{esc(self.attribute.value)} = {esc(group)}: {len(table)} worst misclassified image(s)</b>"
        captions = [f"{p} ({q:.2f})" for p, q in zip(table["prediction"].astype(str), table["probability"])]
        shown = table[[c for c in table.columns if c != "path"] + ["path"]]
        self.examples.value = head + gallery_html(table["path"].astype(str).tolist(), captions,
                                                  self.n_examples) + table_html(shown)
        return table

    def worst_examples(self, group: str) -> pd.DataFrame:
        from ..audit.definition import INTERSECTION_SEP

        p = self.result.predictions
        attrs = str(self.attribute.value).split(INTERSECTION_SEP)
        key = p[attrs[0]].astype("string").str.strip()
        for a in attrs[1:]:
            key = key + INTERSECTION_SEP + p[a].astype("string").str.strip()
        wrong = (p["correct"] == False) | (p["flagged_category"].astype(str) != "")  # noqa: E712 (NaN = no truth)
        pick = p[(key == group).fillna(False).to_numpy() & wrong.to_numpy()].copy()
        pick["_flagged"] = pick["flagged_category"].astype(str) != ""
        pick = pick.sort_values(["_flagged", "probability"], ascending=[False, False], kind="stable")
        return pick.drop(columns="_flagged").head(self.n_examples).reset_index(drop=True)

    def export(self, out: str | Path) -> Path | None:
        """Write the report as ``cliplab audit --out`` does; returns report.html (or None on error)."""
        from ..audit import write_report

        if not str(out).strip():
            self._say("type a folder to write the report into", "warning")
            return None
        try:
            path = write_report(self.result, Path(str(out)).expanduser())
        except CliplabError as e:
            self._say(f"export failed: {e}", "error")
            return None
        self._say(f"report written: {path}")
        return path

    def _say(self, text: str, kind: str = "info") -> None:
        self.message = text
        self.status.value = message_html(text, kind)



def _tag(mark: str | None) -> str:
    return f"({mark})" if mark else ""


def _pct(v) -> str:
    return number(v) if v is None or v != v else f"{100 * float(v):.1f}%"


def _pp(v) -> str:
    return number(v) if v is None or v != v else f"{100 * float(v):+.1f} pp"


def _p(v) -> str:
    return number(v) if v is None or v != v else (f"{float(v):.2g}" if float(v) >= 1e-4 else f"{float(v):.1e}")


_DISPARITY_FORMAT = [("group", "group", None), ("reference", "reference", None), ("n", "n", None),
                     ("rate", "rate", _pct), ("reference_rate", "reference rate", _pct),
                     ("difference", "difference", _pp), ("ci_low", "95% CI low", _pp), ("ci_high", "95% CI high", _pp),
                     ("ratio", "ratio", number), ("p_adjusted", "p (adjusted)", _p), ("flagged", "flagged", None)]
