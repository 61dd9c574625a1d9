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
from ._figure import Figure
from ..html import esc, gallery_html, message_html, table_html

DISPARITY_COLUMNS = ["group", "reference", "n", "rate", "reference_rate", "difference", "ci_low", "ci_high",
                     "ratio", "four_fifths_violation", "p_adjusted", "flagged"]
STATUS_COLOURS = {"ok": "#3366cc", "too_small": "#bbbbbb"}


class AuditDashboard(W.VBox):
    """Interactive view of an audit result (display it as a cell's last line)."""

    def __init__(self, result, out: str | Path = "audit-report", n_examples: int = 12):
        self.result, self.n_examples, self.message = result, n_examples, ""
        self.groups = result.groups[result.groups["attribute"] != "(all)"]
        if self.groups.empty:
            raise CliplabError("the audit result has no groups to show (no attribute had a usable value)")
        self.attribute = W.Dropdown(options=list(dict.fromkeys(self.groups["attribute"])), description="Attribute")
        metrics = list(dict.fromkeys(self.groups["metric"]))
        self.metric = W.Dropdown(options=metrics, description="Metric",
                                 value="flagged_rate" if "flagged_rate" in metrics else metrics[0])
        self.category = W.Dropdown(description="Category")
        self.out = W.Text(str(out), description="Report to")
        self.export_button = W.Button(description="Export report", icon="download")
        self.status, self.table, self.examples = W.HTML(), W.HTML(), W.HTML()
        self.status.add_class("cliplab-status")
        self.figure = Figure(layout=go.Layout(height=380, margin=dict(l=60, r=20, t=50, b=80),
                                                       yaxis=dict(range=[0, 1]), xaxis=dict(type="category")))
        self.figure.add_trace(go.Bar(error_y=dict(type="data", symmetric=False), hoverinfo="text"))
        self.figure.data[0].on_click(self._on_click)
        self.metric.observe(lambda _c: self._categories(), names="value")
        self._quiet = False
        for w in (self.attribute, self.category):
            w.observe(lambda _c: None if self._quiet else self.update(), names="value")
        self.export_button.on_click(lambda _b: self.export(self.out.value))
        self._categories()
        super().__init__([W.HBox([self.attribute, self.metric, self.category]), self.status, self.figure,
                          self.table, self.examples, W.HBox([self.out, self.export_button])])
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
        """The rows of ``result.groups`` for the chosen attribute, metric and category."""
        g = self.groups
        return g[(g["attribute"] == self.attribute.value) & (g["metric"] == self.metric.value)
                 & (g["category"] == (self.category.value or ""))].reset_index(drop=True)

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
        hover = [f"{esc(self.attribute.value)} = {esc(r.group)}<br>rate {r.rate:.3f} "
                 f"[{r.ci_low:.3f}, {r.ci_high:.3f}]<br>{int(r['count'])} of {int(r.denominator)} ({esc(r.status)})"
                 for _, r in t.iterrows()]
        with self.figure.batch_update():
            bar.x, bar.y, bar.hovertext = [esc(g) for g in t["group"]], t["rate"].to_numpy(), hover
            bar.error_y.array = (t["ci_high"] - t["rate"]).to_numpy()
            bar.error_y.arrayminus = (t["rate"] - t["ci_low"]).to_numpy()
            bar.marker.color = [STATUS_COLOURS.get(s, "#999") for s in t["status"]]
            cat = f" ({esc(self.category.value)})" if self.category.value else ""
            self.figure.layout.title.text = (f"{esc(self.metric.value)}{cat} by {esc(self.attribute.value)}, "
                                             "with 95% Wilson intervals (click a bar for examples)")
        self.table.value = "<b>Disparities with the reference group</b>" + table_html(self.disparities())

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
            return self._say("type a folder to write the report into", "warning")
        try:
            path = write_report(self.result, Path(str(out)).expanduser())
        except CliplabError as e:
            return self._say(f"export failed: {e}", "error")
        self._say(f"report written: {path}")
        return path

    def _say(self, text: str, kind: str = "info") -> None:
        self.message = text
        self.status.value = message_html(text, kind)

