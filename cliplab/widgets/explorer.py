"""EmbeddingExplorer: a WebGL map of image (and text) embeddings with hover, selection and queries.

Images and texts are projected together (:func:`cliplab.geometry.project`, cached by content).
Past ``max_points`` images, a seeded random sample is shown and a note says so: a browser
and the widget comm stay responsive, and the kernel never builds 100,000 hover labels.
Hovering a point shows its thumbnail and caption; a box or lasso selection lists the selected
images (thumbnails + metadata) under the map; a text query is placed in the same map.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..embed import ImageEmbeddings, embed_texts
from ..errors import InputError
from ..geometry import PROJECTION_CACHE, Projection, place, project
from ..html import esc, gallery_html, group_colours, message_html, ordered_values, table_html, thumbnail_html
from ..models import LoadedModel
from ._figure import Figure

MAX_CATEGORIES = 20  # colours beyond this many values are lumped into "(other)"
HIDDEN_COLUMNS = {"path", "image", "caption"}


class EmbeddingExplorer(W.VBox):
    """Explore an image set's embeddings (display it as a cell's last line).

    ``predictions`` (optional) is a table aligned row by row with the records holding
    ``prediction`` and ``correct`` columns (as from :func:`cliplab.run_zeroshot`); with
    ``flagged`` labels it adds a "flagged" colouring. ``texts`` are placed as stars (needs
    ``loaded`` or ``text_features``); ``loaded`` also enables free text queries.
    """

    def __init__(self, embeddings: ImageEmbeddings, texts: Sequence[str] = (), loaded: LoadedModel | None = None,
                 text_features: np.ndarray | None = None, predictions: pd.DataFrame | None = None,
                 flagged: Sequence[str] = (), method: str = "pca", color_by: str | None = None,
                 label_column: str = "label", caption_column: str = "caption", max_points: int = 20_000,
                 cache_dir: str | Path | None = PROJECTION_CACHE, seed: int = 0):
        self.loaded, self.method, self.cache_dir = loaded, method, cache_dir
        self.records = _table(embeddings, predictions, flagged)
        self.n_total = len(self.records)
        self.rows = _sample(self.n_total, max_points, seed)  # record rows shown, in plot order
        self.image_features = np.asarray(embeddings.features, dtype=np.float32)[self.rows]
        self.texts, self.text_features = self._texts(list(texts), text_features)
        self.projection: Projection = project(self.image_features, self.text_features, method=method,
                                              cache_dir=cache_dir, seed=seed)
        self.image_xy, self.text_xy = self.projection.split()
        self.caption_column, self.selected, self.message = caption_column, np.zeros(0, dtype=np.int64), ""
        self._pending: dict[int, list[int]] = {}
        self.color_options = _color_options(self.records)
        default = color_by or (label_column if label_column in self.color_options else None)
        self._build(default or (self.color_options[0] if self.color_options else None), max_points)
        self.add_class("cliplab-explorer")

    # ------------------------------------------------------------------ setup
    def _texts(self, texts: list[str], feats: np.ndarray | None) -> tuple[list[str], np.ndarray]:
        dim = self.image_features.shape[1]
        if feats is not None:
            feats = np.asarray(feats, dtype=np.float32)
            if len(feats) != len(texts):
                raise InputError(f"{len(feats)} text embeddings for {len(texts)} texts")
            return texts, feats.reshape(len(texts), -1)
        if not texts:
            return texts, np.zeros((0, dim), np.float32)
        if self.loaded is None:
            raise InputError("texts were given without loaded= (the model) or text_features= to embed them")
        return texts, embed_texts(self.loaded, texts)

    def _build(self, color: str | None, max_points: int) -> None:
        sampled = len(self.rows) < self.n_total
        note = (f"Showing {len(self.rows):,} of {self.n_total:,} images: a random sample (max_points="
                f"{max_points:,}) so the map stays responsive; the projection was fitted on the sample."
                if sampled else f"{self.n_total:,} images, {len(self.texts)} texts, {self.method.upper()}.")
        self.note = W.HTML(message_html(note, "warning" if sampled else "info"))
        self.color = W.Dropdown(options=self.color_options, value=color, description="Colour by")
        self.query = W.Text(placeholder="a photo of a ...", description="Text query")
        self.query_button = W.Button(description="Place query", icon="search")
        self.status, self.hover, self.selection = W.HTML(), W.HTML(), W.HTML()
        self.status.add_class("cliplab-status")
        self.hover.add_class("cliplab-hover")
        self.figure = Figure(layout=go.Layout(height=560, dragmode="lasso", hovermode="closest",
                                              margin=dict(l=50, r=10, t=40, b=40),
                                              legend=dict(itemsizing="constant")))
        self.color.observe(lambda c: self.recolor(c["new"]), names="value")
        self.query_button.on_click(lambda _b: self.add_query(self.query.value))
        self.recolor(color)
        controls = W.HBox([self.color, self.query, self.query_button], layout=W.Layout(flex_flow="row wrap"))
        for html in (self.note, self.status, self.selection):  # wide tables scroll in their box, not the page
            html.layout = W.Layout(width="100%", margin="0")  # 100% plus the default 2 px margins would overflow
        self.figure.layout.update(xaxis_title=f"{self.method.upper()} 1", yaxis_title=f"{self.method.upper()} 2")
        self.hover.layout = W.Layout(width="170px", min_width="150px")
        super().__init__([self.note, controls, self.status,
                          W.HBox([self.figure, self.hover], layout=W.Layout(width="100%", flex_flow="row wrap")),
                          self.selection])

    # ------------------------------------------------------------------ figure
    def recolor(self, column: str | None) -> None:
        """Redraw the image traces coloured by ``column`` (one trace per value, for the legend)."""
        values = _categories(self.records[column].iloc[self.rows] if column else None, len(self.rows))
        hover = _hover_text(self.records.iloc[self.rows], self.caption_column, column)
        traces = []
        distinct = [str(v) for v in pd.unique(values)]
        colours = group_colours(ordered_values(distinct) or sorted(distinct))  # light < medium < dark in order
        for value in ordered_values(distinct) or sorted(distinct):
            idx = np.flatnonzero(values == value)
            traces.append(go.Scattergl(x=self.image_xy[idx, 0], y=self.image_xy[idx, 1], mode="markers",
                                       name=esc(value), customdata=idx, hovertext=hover[idx], hoverinfo="text",
                                       marker=dict(size=5, opacity=0.8, color=colours[value])))
        traces.append(go.Scattergl(x=self.text_xy[:, 0], y=self.text_xy[:, 1], mode="markers", name="texts",
                                   hovertext=[esc(t) for t in self.texts], hoverinfo="text",  # labels would pile up
                                   marker=dict(symbol="star", size=12, color="black")))
        queries = [d for d in self.figure.data if d.name == "queries"]
        with self.figure.batch_update():
            self.figure.data = ()
            self.figure.add_traces(traces + [queries[0] if queries else _query_trace()])
            self.figure.layout.title.text = f"{self.method.upper()} map coloured by {esc(column or 'nothing')}"
            self.figure.layout.legend.title.text = esc(column or "")
        for tr in self.figure.data:
            tr.on_hover(self._on_hover)
            tr.on_selection(self._on_selection)
            tr.on_deselect(lambda trace, points: self.select([]))

    def _on_hover(self, trace, points, state) -> None:
        if not points.point_inds or trace.customdata is None:
            return
        row = int(self.rows[int(trace.customdata[points.point_inds[0]])])
        rec = self.records.iloc[row]
        self.hover.value = thumbnail_html(str(rec.get("path", "")), str(rec.get(self.caption_column, "")), px=128)

    def _on_selection(self, trace, points, selector) -> None:
        """Called once per trace for each selection; the last trace's call renders the union."""
        index = next(i for i, t in enumerate(self.figure.data) if t is trace)
        if trace.customdata is not None:
            self._pending[index] = [int(trace.customdata[i]) for i in points.point_inds]
        if index == len(self.figure.data) - 1:
            chosen = sorted(i for rows in self._pending.values() for i in rows)
            self._pending = {}
            self.select(self.rows[chosen].tolist() if chosen else [])

    # ------------------------------------------------------------------ actions
    def select(self, rows: Sequence[int]) -> None:
        """Show these record rows (indices into the full image set) in the table below the map."""
        self.selected = np.asarray(sorted(set(int(r) for r in rows)), dtype=np.int64)
        if not len(self.selected):
            self.selection.value = message_html(
                "No points selected: drag a box or lasso over the map to list images (double-click clears).")
            return
        table = self.records.iloc[self.selected]
        captions = (table[self.caption_column].astype(str).tolist() if self.caption_column in table
                    else [""] * len(table))
        shown = table[[c for c in table.columns if c != "path"] + ["path"]]
        self.selection.value = (f"<b>{len(table):,} selected</b>" + gallery_html(table["path"].astype(str).tolist(),
                                captions) + f'<div style="overflow-x:auto">{table_html(shown, limit=25)}</div>')

    def add_query(self, text: str) -> None:
        """Embed a text and place it in the map (a diamond labelled with the text)."""
        text = (text or "").strip()
        if not text:
            return self._say("type a text query first", "warning")
        if self.loaded is None:
            return self._say("text queries need the model: pass loaded= to EmbeddingExplorer", "error")
        xy = place(self.projection, np.concatenate([self.image_features, self.text_features]),
                   embed_texts(self.loaded, [text]))[0]
        q = next(d for d in self.figure.data if d.name == "queries")
        with self.figure.batch_update():
            q.x, q.y = tuple(q.x or ()) + (float(xy[0]),), tuple(q.y or ()) + (float(xy[1]),)
            q.text = tuple(q.text or ()) + (esc(text),)
        how = "exact PCA projection" if self.projection.pca_components is not None else \
            "similarity-weighted mean of its 10 nearest points"
        self._say(f"placed {text!r} ({how})")

    def _say(self, text: str, kind: str = "info") -> None:
        self.message = text
        self.status.value = message_html(text, kind)


# ---------------------------------------------------------------------- helpers
def _table(embeddings: ImageEmbeddings, predictions: pd.DataFrame | None, flagged: Sequence[str]) -> pd.DataFrame:
    records = embeddings.records.reset_index(drop=True).copy()
    if len(records) != len(embeddings.features):
        raise InputError(f"{len(records)} records for {len(embeddings.features)} embeddings")
    if len(records) < 3:
        raise InputError(f"the explorer needs at least 3 images, got {len(records)}")
    if predictions is not None:
        if len(predictions) != len(records):
            raise InputError(f"predictions have {len(predictions)} rows, the embeddings {len(records)}")
        for col in ("prediction", "correct"):
            if col in predictions:
                records[col] = predictions[col].to_numpy()
        if flagged and "prediction" in records:
            records["flagged"] = np.where(records["prediction"].isin(list(flagged)), "flagged", "not flagged")
    return records


def _sample(n: int, max_points: int, seed: int) -> np.ndarray:
    if max_points < 1:
        raise InputError(f"max_points must be at least 1, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def _color_options(records: pd.DataFrame) -> list[str]:
    """Columns with 2..200 distinct values (labels, attributes, correctness), best first."""
    first = [c for c in ("label", "prediction", "correct", "flagged") if c in records]
    rest = [c for c in records.columns if c not in first and c not in HIDDEN_COLUMNS]
    return [c for c in first + rest if 1 <= records[c].nunique(dropna=False) <= 200]


def _categories(values: pd.Series | None, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, "all", dtype=object)
    v = values.astype("string").fillna("(missing)").to_numpy(dtype=object)
    top = pd.Series(v).value_counts().index[:MAX_CATEGORIES]
    return np.where(pd.Series(v).isin(top).to_numpy(), v, "(other)")


def _hover_text(table: pd.DataFrame, caption_column: str, color: str | None) -> np.ndarray:
    """Escaped one-line hover labels, built column-wise (fast for tens of thousands of rows)."""
    parts = [table[caption_column].astype(str).map(esc)] if caption_column in table else []
    for col in dict.fromkeys(c for c in ("label", "prediction", color) if c and c in table and c != caption_column):
        parts.append(esc(col) + ": " + table[col].astype(str).map(esc))
    if not parts:
        return np.array([""] * len(table), dtype=object)
    text = parts[0]
    for p in parts[1:]:
        text = text + "<br>" + p
    return text.to_numpy(dtype=object)


def _query_trace() -> go.Scattergl:
    return go.Scattergl(x=[], y=[], mode="markers+text", name="queries", text=[], textposition="bottom center",
                        marker=dict(symbol="diamond", size=13, color="red"), hoverinfo="text")
