"""EmbeddingExplorer driven from Python: colouring, hover, selection (as the browser sends it),
text queries, downsampling of large sets, and bad input explained in the widget."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

from cliplab.embed import ImageEmbeddings, embed_images
from cliplab.errors import InputError
from cliplab.widgets import EmbeddingExplorer

CLASSES = ["kite", "guitar", "book", "flower", "ball", "cup", "key", "phone"]


@pytest.fixture(scope="module")
def emb(tiny, synth_data):
    e = embed_images(tiny, synth_data, cache_dir=None, progress=False)
    e.records.loc[0, "caption"] = '<img src=x onerror="alert(1)"> a "kite"'
    return e


@pytest.fixture
def explorer(tiny, emb, tmp_path):
    preds = pd.DataFrame({"prediction": ["thief"] * 10 + ["kite"] * (len(emb) - 10)})
    preds["correct"] = preds["prediction"].to_numpy() == emb.records["label"].to_numpy()
    return EmbeddingExplorer(emb, texts=[f"a photo of a {c}." for c in CLASSES], loaded=tiny, predictions=preds,
                             flagged=["thief"], cache_dir=tmp_path)


def _event(fig, kind, points):
    """What the browser sends for a hover/selection: (trace index, point index) pairs."""
    data = {"event_type": kind, "points": {"xs": [0] * len(points), "ys": [0] * len(points),
                                           "trace_indexes": [t for t, _ in points],
                                           "point_indexes": [p for _, p in points]}}
    if kind == "plotly_selected":
        data["selector"] = {"type": "lasso", "selector_state": {"xs": [0, 1, 1], "ys": [0, 0, 1]}}
    fig._handler_js2py_pointsCallback({"new": data})


def test_scatter_colours_and_texts(explorer, emb):
    names = [d.name for d in explorer.figure.data]
    assert names[-2:] == ["texts", "queries"] and all(d.type == "scattergl" for d in explorer.figure.data)
    assert sum(len(d.x) for d in explorer.figure.data[:-2]) == len(emb)
    assert {"label", "correct", "flagged", "tone"} <= set(explorer.color_options)
    explorer.color.value = "flagged"
    assert sorted(d.name for d in explorer.figure.data[:-2]) == ["flagged", "not flagged"]
    hover = " ".join(" ".join(d.hovertext) for d in explorer.figure.data[:-2])
    assert "<img" not in hover and "&lt;img src=x" in hover  # captions are escaped


def test_selection_lists_images_and_zero_selection_says_why(explorer):
    fig = explorer.figure
    first = fig.data[0]
    _event(fig, "plotly_selected", [(0, 0), (0, 1), (1, 0)])
    rows = {int(explorer.rows[first.customdata[0]]), int(explorer.rows[first.customdata[1]]),
            int(explorer.rows[fig.data[1].customdata[0]])}
    assert set(explorer.selected.tolist()) == rows
    html = explorer.selection.value
    assert "3 selected" in html and "data:image/png;base64," in html and "<td>" in html
    _event(fig, "plotly_selected", [])
    assert len(explorer.selected) == 0 and "No points selected" in explorer.selection.value


def test_hover_shows_thumbnail_and_escaped_caption(explorer):
    fig = explorer.figure
    row0_trace = next(i for i, d in enumerate(fig.data[:-2]) if 0 in set(explorer.rows[np.asarray(d.customdata)]))
    pos = list(explorer.rows[np.asarray(fig.data[row0_trace].customdata)]).index(0)
    _event(fig, "plotly_hover", [(row0_trace, pos)])
    assert "data:image/png;base64," in explorer.hover.value
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in explorer.hover.value


def test_text_query_is_placed_and_escaped(explorer):
    explorer.query.value = "a <b>kite</b>"
    explorer.query_button.click()
    q = explorer.figure.data[-1]
    assert len(q.x) == 1 and q.text == ("a &lt;b&gt;kite&lt;/b&gt;",) and "placed" in explorer.message
    explorer.add_query("   ")
    assert "type a text query" in explorer.message


def test_large_sets_are_downsampled_with_a_visible_note(tmp_path):
    rng = np.random.default_rng(0)
    n = 5000
    records = pd.DataFrame({"path": ["/missing.png"] * n, "label": rng.choice(CLASSES, n)})
    ex = EmbeddingExplorer(ImageEmbeddings(rng.normal(size=(n, 16)).astype(np.float32), records),
                           max_points=800, cache_dir=tmp_path)
    assert sum(len(d.x) for d in ex.figure.data[:-2]) == 800
    assert "Showing 800 of 5,000 images" in ex.note.value
    assert "text queries need the model" in (ex.add_query("a kite") or ex.message)


def test_bad_inputs(emb, tmp_path):
    with pytest.raises(InputError, match="at least 3 images"):
        EmbeddingExplorer(ImageEmbeddings(emb.features[:2], emb.records[:2]), cache_dir=tmp_path)
    with pytest.raises(InputError, match="without loaded="):
        EmbeddingExplorer(emb, texts=["a kite"], cache_dir=tmp_path)
    with pytest.raises(InputError, match="predictions have 3 rows"):
        EmbeddingExplorer(emb, predictions=pd.DataFrame({"prediction": ["a"] * 3}), cache_dir=tmp_path)
