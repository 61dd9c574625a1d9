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


def test_the_view_redraws_from_the_synced_state():
    """The installed plotly's bundle has the shape the patch expects (else an upgrade must be looked at)."""
    from cliplab.widgets._figure import patched_bundle

    esm = patched_bundle()
    assert esm is not None and Figure._esm == esm
    assert ".default.react(el, structuredClone(state.get(\"_widget_data\")" in esm
    assert 'ctx.model.on("change:_widget_data", redraw)' in esm and esm.count("export default") == 1
