"""PromptLab: edit class names and templates, watch per-class and per-group results update.

The image embeddings are computed once (and cached by :func:`cliplab.embed_images`); an edit
re-encodes only prompts the model has not seen (``loaded.text_cache``) and re-scores only new
templates (:class:`cliplab.sensitivity.PromptScorer`), so an update takes well under a second.
The two plotly ``FigureWidget``s are updated in place, never replaced.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ..embed import ImageEmbeddings
from ..errors import InputError
from ..html import esc, group_colours, message_html, ordered_values, table_html
from ..models import LoadedModel
from ..sensitivity import ENSEMBLE, PromptScorer, SensitivityResult
from ._figure import Figure

SEP = "="  # a class line is "label" or "label = prompt name"


def parse_classnames(text: str) -> dict[str, str]:
    """Lines of ``label`` or ``label = prompt name`` -> {label: prompt name}; blank lines ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        label, sep, name = line.partition(SEP)
        label, name = label.strip(), (name.strip() if sep else label.strip())
        if not label or not name:
            raise InputError(f"class line {line.strip()!r} needs a label and a name ('label = name')")
        if label in out:
            raise InputError(f"class {label!r} is listed twice")
        out[label] = name
    return out


def parse_templates(text: str) -> list[str]:
    return [t.strip() for t in text.splitlines() if t.strip()]


def _short(text: str, n: int = 44) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


HINT = "Edit the boxes, then press Apply; a new template is added with Enter."
PENDING = "Edits not applied yet: press Apply."

class PromptLab(W.VBox):
    """A prompt-sensitivity lab over fixed image embeddings (display it as a cell's last line).

    ``lab.result`` is the current :class:`SensitivityResult`; ``lab.message`` the last status
    text; ``lab.class_figure`` and ``lab.group_figure`` the two FigureWidgets.
    """

    def __init__(self, loaded: LoadedModel, embeddings: ImageEmbeddings,
                 classnames: Sequence[str] | Mapping[str, str], templates: Sequence[str],
                 label_column: str = "label", group_by: Sequence[str] | str | None = None,
                 flagged: Sequence[str] | None = None):
        self.loaded, self.embeddings, self.label_column = loaded, embeddings, label_column
        self.group_by = [group_by] if isinstance(group_by, str) else list(group_by or [])
        self.flagged = list(flagged or [])
        self.result: SensitivityResult | None = None
        self.message = ""
        self.last_update_seconds = 0.0
        self._scorer: PromptScorer | None = None
        self._scorer_key: tuple | None = None
        names = dict(classnames) if isinstance(classnames, Mapping) else {str(c): str(c) for c in classnames}
        self._build_controls(names, list(templates))
        self.class_figure = Figure(layout=_class_layout())
        self.group_figure = Figure(layout=_group_layout(bool(self.flagged)))
        super().__init__([self._controls, self.status, self.summary, self.class_figure, self.group_figure])
        self.add_class("cliplab-prompt-lab")
        self.update()

    # ------------------------------------------------------------------ controls
    def _build_controls(self, names: dict[str, str], templates: list[str]) -> None:
        lines = "\n".join(k if k == v else f"{k} {SEP} {v}" for k, v in names.items())
        box = {"continuous_update": True, "layout": W.Layout(flex="1 1 200px", min_width="180px", height="160px")}
        self.classnames_box = W.Textarea(lines, description="Classes", **box)
        self.templates_box = W.Textarea("\n".join(templates), description="Templates",
                                        **{**box, "layout": W.Layout(flex="2 1 320px", min_width="240px",
                                                                     height="160px")})
        self.apply_button = W.Button(description="Apply", icon="check", button_style="primary",
                                     tooltip="re-score with the class names and templates in the boxes")
        self.hint = W.HTML(message_html(HINT))
        self.new_template = W.Text(placeholder="a photo of a {}.", description="New",
                                   layout=W.Layout(flex="1 1 300px"))
        self.add_button = W.Button(description="Add template", icon="plus")
        self.drop_select = W.Dropdown(options=templates, description="Template", layout=W.Layout(flex="1 1 300px"))
        self.drop_button = W.Button(description="Drop template", icon="minus")
        self.attribute = W.Dropdown(options=self.group_by, description="Groups by",
                                    layout=W.Layout(display="" if self.group_by else "none"))
        self.status, self.summary = W.HTML(), W.HTML()
        self.status.add_class("cliplab-status")
        self.attribute.observe(lambda _change: self.update(), names="value")
        for edited in (self.classnames_box, self.templates_box):  # the kernel has the edit: say it is not applied yet
            edited.observe(lambda _change: setattr(self.hint, "value", message_html(PENDING, "warning")),
                           names="value")
        self.apply_button.on_click(lambda _b: self.update())
        self.add_button.on_click(lambda _b: self.add_template(self.new_template.value))
        self.drop_button.on_click(lambda _b: self.drop_template(self.drop_select.value))
        with warnings.catch_warnings():  # on_submit is the only way to hear Enter in a Text (ipywidgets 8)
            warnings.simplefilter("ignore", DeprecationWarning)
            self.new_template.on_submit(lambda _w: self.add_template(self.new_template.value))
        wrap = W.Layout(flex_flow="row wrap", width="100%")
        self._controls = W.VBox([W.HBox([self.classnames_box, self.templates_box], layout=wrap),
                                 W.HBox([self.apply_button, self.hint], layout=wrap),
                                 W.HBox([self.new_template, self.add_button], layout=wrap),
                                 W.HBox([self.drop_select, self.drop_button], layout=wrap), self.attribute])

    def apply(self) -> None:
        """Re-score with the text boxes' contents (what the Apply button does)."""
        self.update()

    @property
    def templates(self) -> list[str]:
        return parse_templates(self.templates_box.value)

    def set_templates(self, templates: Sequence[str]) -> None:
        """Replace the templates (in the text box too) and update."""
        self.templates_box.value = "\n".join(templates)
        self.update()

    def add_template(self, template: str) -> None:
        template = (template or "").strip()
        if not template:
            return self._say("type a template first, with {} where the class name goes", "warning")
        if "{}" not in template:
            return self._say(f"template {template!r} has no {{}} to mark the class name; not added", "error")
        if template in self.templates:
            return self._say(f"template {template!r} is already in the list", "warning")
        self.new_template.value = ""
        self.set_templates(self.templates + [template])

    def drop_template(self, template: str | None) -> None:
        if template not in self.templates:
            return self._say("pick a template to drop", "warning")
        self.set_templates([t for t in self.templates if t != template])

    def _say(self, text: str, kind: str = "info") -> None:
        self.message = text
        self.status.value = message_html(text, kind)

    # ------------------------------------------------------------------ update
    def _scorer_for(self, names: dict[str, str]) -> PromptScorer:
        key = (tuple(names.items()), tuple(self.flagged))
        if self._scorer is None or key != self._scorer_key:
            self._scorer = PromptScorer(self.loaded, self.embeddings, names, self.label_column,
                                        self.group_by, self.flagged, drop_unknown_labels=True)
            self._scorer_key = key
        return self._scorer

    def update(self) -> None:
        """Re-score with the current text boxes; a bad input becomes a message, not an exception."""
        t0 = time.perf_counter()
        try:
            result = self._scorer_for(parse_classnames(self.classnames_box.value)).result(self.templates)
        except InputError as e:
            return self._say(f"{e} (the charts show the last valid state)", "error")
        self.result = result
        self.hint.value = message_html(HINT)
        self.drop_select.options = result.templates
        self._draw(result)
        self.last_update_seconds = time.perf_counter() - t0
        notes = result.warnings + [f"class {lbl!r} has no images" for lbl, r in
                                   result.per_class[ENSEMBLE].items() if np.isnan(r)]
        text = "; ".join(notes) if notes else f"updated in {self.last_update_seconds:.2f} s"
        self._say(text, "warning" if notes else "info")

    def _draw(self, r: SensitivityResult) -> None:
        labels = [f"{i + 1}: {_short(t)}" for i, t in enumerate(r.templates)] + [ENSEMBLE]
        full = list(r.templates) + ["average of the normalised prompt embeddings of all templates"]
        self.summary.value = _summary_html(r)
        _draw_classes(self.class_figure, r, labels, full)
        if r.per_group is not None and self.attribute.value in set(r.per_group["attribute"]):
            _draw_groups(self.group_figure, r, self.attribute.value, labels, full)
        else:
            with self.group_figure.batch_update():
                self.group_figure.data = ()
                self.group_figure.layout.title.text = "no attribute with two or more groups to compare"


# ---------------------------------------------------------------------- figures
def _class_layout() -> go.Layout:
    return go.Layout(title="Recall per class and template", height=380, margin=dict(l=120, r=20, t=50, b=120),
                     xaxis=dict(tickangle=-30, type="category", title="template (hover for the full text)"),
                     yaxis=dict(type="category", autorange="reversed", title="class"))


def _group_layout(flagged: bool) -> go.Layout:
    layout = go.Layout(title="Accuracy per group and template", height=520 if flagged else 360, barmode="group",
                       margin=dict(l=70, r=20, t=50, b=130), xaxis=dict(type="category", tickangle=-30),
                       yaxis=dict(title="top-1 accuracy", tickformat=".0%", rangemode="tozero"),
                       legend=dict(title=dict(text="group")))
    if flagged:
        layout.update(yaxis=dict(domain=[0.56, 1]), xaxis=dict(matches="x2", showticklabels=False),
                      yaxis2=dict(domain=[0, 0.42], tickformat=".0%", rangemode="tozero"),
                      xaxis2=dict(anchor="y2", type="category", tickangle=-30, title="template"))
    return layout


def _draw_classes(fig: go.FigureWidget, r: SensitivityResult, labels: list[str], full: list[str]) -> None:
    names = [esc(f"{lbl} ({name})" if lbl != name else lbl) for lbl, name in r.classnames.items()]
    z = r.per_class.to_numpy()
    hover = [[f"{n}<br>{esc(t)}" for t in full] for n in names]
    x = [esc(v) for v in labels]
    with fig.batch_update():
        if not fig.data:
            fig.add_trace(go.Heatmap(colorscale="Blues", zmin=0, zmax=1, texttemplate="%{z:.0%}",
                                     colorbar=dict(title="recall", tickformat=".0%")))
        trace = fig.data[0]
        trace.z, trace.x, trace.y = z, x, names
        trace.text = hover
        trace.hovertemplate = "%{text}<br>recall %{z:.1%}<extra></extra>"
        fig.layout.xaxis.update(categoryorder="array", categoryarray=x)  # ensemble last, always


def _draw_groups(fig: go.FigureWidget, r: SensitivityResult, attr: str, labels: list[str],
                 full: list[str]) -> None:
    assert r.per_group is not None  # the caller checked
    table = r.per_group[r.per_group["attribute"] == attr]
    groups = ordered_values(table["group"]) or list(dict.fromkeys(table["group"]))
    colours = group_colours(groups)
    order = {t: i for i, t in enumerate(r.templates + [ENSEMBLE])}
    rows = [("acc1", "x", "y")] + ([("flagged_rate", "x2", "y2")] if r.flagged else [])
    wanted = [(m, g) for m, _, _ in rows for g in groups]
    rebuild = [(tr.meta or {}).get("key") for tr in fig.data] != [f"{m}|{g}" for m, g in wanted]
    xs = [esc(v) for v in labels]
    with fig.batch_update():
        if rebuild:
            fig.data = ()
        for i, (metric, g) in enumerate(wanted):
            part = table[table["group"] == g].sort_values("template", key=lambda s: s.map(order))
            x = [esc(labels[order[t]]) for t in part["template"]]
            low, high = _wilson(part[metric].to_numpy(), part["n"].to_numpy())
            text = [f"{esc(attr)} = {esc(g)}<br>{esc(full[order[t]])}<br>{_NAMES[metric]} {v:.1%} "
                    f"[{lo:.1%}, {hi:.1%}], n = {n}"
                    for t, v, lo, hi, n in zip(part["template"], part[metric], low, high, part["n"])]
            axes = next((xa, ya) for m, xa, ya in rows if m == metric)
            if rebuild:
                fig.add_trace(go.Bar(name=esc(g), legendgroup=esc(g), showlegend=metric == "acc1",
                                     xaxis=axes[0], yaxis=axes[1], meta={"key": f"{metric}|{g}"},
                                     marker_color=colours[g], textposition="none",
                                     error_y=dict(type="data", symmetric=False, color="#333", thickness=1),
                                     hovertemplate="%{hovertext}<extra></extra>"))
            tr = fig.data[i]
            tr.x, tr.y, tr.hovertext = x, part[metric].to_numpy(), text
            tr.error_y.array, tr.error_y.arrayminus = high - part[metric].to_numpy(), part[metric].to_numpy() - low
        for axis in ("xaxis", "xaxis2") if r.flagged else ("xaxis",):
            fig.layout[axis].update(categoryorder="array", categoryarray=xs)
        if r.flagged:
            fig.layout.yaxis2.title.text = f"predicted {', '.join(map(esc, r.flagged))}"
        flag = f" (lower: share predicted as {', '.join(map(esc, r.flagged))})" if r.flagged else ""
        fig.layout.title.text = f"Top-1 accuracy per {esc(attr)} group, 95% Wilson intervals{flag}"


_NAMES = {"acc1": "top-1 accuracy", "flagged_rate": "flagged"}


def _wilson(rate: np.ndarray, n: np.ndarray, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score intervals of rates over n images.

    The textbook formula by hand (it is statsmodels' ``proportion_confint(method="wilson")``): importing
    statsmodels and scipy costs 6-7 s, most of the widget's creation time.
    """
    n = np.maximum(np.asarray(n, dtype=float), 1)
    p = np.asarray(rate, dtype=float)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def _summary_html(r: SensitivityResult) -> str:
    s = r.summary["acc1"]
    m = r.summary["mean_per_class_recall"]
    line = (f"<b>top-1</b>: best {s['best']:.1%} ({esc(_short(s['best_template']))}), "
            f"worst {s['worst']:.1%}, spread {100 * s['spread']:.1f} pp, std {100 * s['std']:.1f} pp; "
            f"ensemble {s['ensemble']:.1%} ({100 * s['ensemble_gain_over_best']:+.1f} pp over the best, "
            f"{100 * s['ensemble_gain_over_median']:+.1f} pp over the median). "
            f"<b>mean per-class recall</b>: spread {100 * m['spread']:.1f} pp, ensemble {m['ensemble']:.1%}.")
    return f"<div>{line}</div>" + table_html(r.per_template) + table_html(r.class_extremes)
