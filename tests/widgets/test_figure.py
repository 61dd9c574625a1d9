"""The widgets' figures carry their whole state in the synced traits, so a view created late draws it
(the cause of the empty charts: plotly syncs ``_widget_data`` only at construction and display)."""
from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

import ipywidgets as W
import plotly.graph_objects as go

from cliplab.widgets._figure import Figure


def _state(fig) -> tuple[list, dict]:
    """The traces and layout a new browser view would render: the synced traits' serialised values."""
    state = fig.get_state(["_widget_data", "_widget_layout"])
    return state["_widget_data"], state["_widget_layout"]


def test_plain_figure_widget_in_a_box_keeps_a_stale_state():
    """The bug this module works around: plotly's own FigureWidget, filled after construction inside a box."""
    fig = go.FigureWidget()
    W.VBox([fig])
    fig.add_trace(go.Bar(x=["a", "b"], y=[1, 2]))
    assert _state(fig)[0] == []  # what the browser had: no trace


def test_added_traces_and_edits_reach_the_synced_state():
    fig = Figure(layout=go.Layout(title="t"))
    W.VBox([fig])
    fig.add_trace(go.Bar(x=["a", "b"], y=[1, 2]))
    data, _ = _state(fig)
    assert len(data) == 1 and list(data[0]["x"]) == ["a", "b"]
    with fig.batch_update():
        fig.data[0].y = [3, 4]
        fig.layout.title.text = "new title"
    data, layout = _state(fig)
    assert list(data[0]["y"]) == [3, 4] and layout["title"]["text"] == "new title"
    fig.data = ()
    assert _state(fig)[0] == []


def test_the_view_is_light_and_redraws_from_the_synced_state():
    """A tiny ESM with a no-op initialize (never past anywidget's 2 s), plotly's bundle as a trait."""
    from cliplab.widgets._figure import ESM, plotly_bundle

    fig = Figure()
    assert fig._esm == ESM and len(ESM) < 5_000 and "initialize() {}" in ESM
    assert 'model.on("change:_widget_data", redraw)' in ESM and ".default.react(el" in ESM
    bundle = fig.get_state(["_plotly_bundle"])["_plotly_bundle"]
    assert bundle == plotly_bundle() and " as serializers," in bundle and bundle.count("export{") >= 1
