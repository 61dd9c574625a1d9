"""FigureWidget that always draws: its whole state reaches every view, however late it is created.

Why the charts came up empty (plotly 6-7 on anywidget 0.11): every ``FigureWidget`` carries
plotly.js (a 4.9 MB ESM) that the browser imports once *per figure*, and anywidget gives a model
2 seconds to import and initialise its ESM. Past that, the model's ``ready`` promise is rejected,
and anywidget's ``_handle_comm_msg`` awaits it before applying any message: from then on the model
silently drops every update from the kernel. Under Run All (several figures importing 4.9 MB each,
the kernel sending more) the 2 s pass easily: the view draws the state of the comm's opening message
(no traces, no title: empty axes -1..6) and never redraws. It also did not help that plotly syncs
its full state (``_widget_data``, ``_widget_layout``) only when built and when displayed itself,
not inside a ``VBox``; all later edits travel as one-time messages.

The fix, at the root:

1. the ESM of :class:`Figure` is tiny and its ``initialize`` does nothing, so it is never late;
   plotly's bundle (patched to export its figure model and view classes) travels as a synced
   trait and is imported once per page, by the first view that needs it;
2. after every edit the full state is assigned to the synced traits, so the browser's copy is
   always the whole figure, whatever was missed;
3. the view redraws (``Plotly.react``) from that state whenever it changes, and once after its
   first draw. Live views still get plotly's cheap incremental messages.
"""
from __future__ import annotations

import re
from copy import deepcopy
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
import traitlets

# plotly's widget bundle ends with this export; the names are minified and change by version.
_EXPORT = re.compile(r"export\{(\w+) as FigureModel,(\w+) as FigureView,(\w+) as default\};")
ESM = """/* cliplab Figure view: see cliplab/widgets/_figure.py */
function plotlyBundle(model) {
  if (!globalThis.__cliplabPlotly) {
    const url = URL.createObjectURL(new Blob([model.get("_plotly_bundle")], {type: "text/javascript"}));
    globalThis.__cliplabPlotly = import(url);
  }
  return globalThis.__cliplabPlotly;
}
export default {
  initialize() {},  // nothing to wait for: the whole state arrives in _widget_data / _widget_layout
  async render({model, el}) {
    const mod = await plotlyBundle(model);
    const state = new mod.FigureModel(model, mod.serializers);
    const view = new mod.FigureView(state, el);
    view.perform_render();
    let tries = 0;
    const redraw = () => {
      if (!el._fullLayout) { if (tries++ < 200) setTimeout(redraw, 50); return; }
      const layout = structuredClone(state.get("_widget_layout") || {});
      if (!layout.height) layout.height = 360;
      const config = Object.assign({}, state.get("_config") || {}, {editSelection: false});
      mod.plotly.default.react(el, structuredClone(state.get("_widget_data") || []), layout, config);
    };
    model.on("change:_widget_data", redraw);
    model.on("change:_widget_layout", redraw);
    redraw();
    return () => {
      model.off("change:_widget_data", redraw);
      model.off("change:_widget_layout", redraw);
      view.remove();
    };
  },
};
"""


def plotly_bundle() -> str:
    """plotly's widget ESM, exporting its figure model and view classes, serializers and plotly.js."""
    text = (Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").read_text(encoding="utf-8")
    export = _EXPORT.search(text)
    init = re.search(r"new (\w+)\(\w+\.model,([\w$]+)\)", text)
    plotly_js = set(re.findall(r"([\w$]+)\.default\.newPlot\(", text))
    if export is None or init is None or len(plotly_js) != 1:
        raise ImportError(f"plotly {plotly.__version__}'s widget bundle has an unknown shape; "
                          "cliplab.widgets._figure needs updating")
    model, view, default = export.groups()
    patch = (f"export{{{model} as FigureModel,{view} as FigureView,{default} as default,"
             f"{init.group(2)} as serializers,{plotly_js.pop()} as plotly}};")
    return text[:export.start()] + patch + text[export.end():]


class Figure(go.FigureWidget):
    """A ``plotly.graph_objects.FigureWidget`` that draws whenever and however late it is shown."""

    _esm = ESM
    _plotly_bundle = traitlets.Unicode(plotly_bundle()).tag(sync=True)

    def sync_full_state(self) -> None:
        """Send the current traces and layout as the widget's state (what a new view renders)."""
        self._widget_data = deepcopy(self._data)
        self._widget_layout = deepcopy(self._layout_obj._props)

    def _send_addTraces_msg(self, *args: Any, **kwargs: Any) -> None:
        super()._send_addTraces_msg(*args, **kwargs)
        self.sync_full_state()

    def _send_deleteTraces_msg(self, *args: Any, **kwargs: Any) -> None:
        super()._send_deleteTraces_msg(*args, **kwargs)
        self.sync_full_state()

    def _send_moveTraces_msg(self, *args: Any, **kwargs: Any) -> None:
        super()._send_moveTraces_msg(*args, **kwargs)
        self.sync_full_state()

    def _send_restyle_msg(self, *args: Any, **kwargs: Any) -> None:
        super()._send_restyle_msg(*args, **kwargs)
        self.sync_full_state()

    def _send_relayout_msg(self, *args: Any, **kwargs: Any) -> None:
        super()._send_relayout_msg(*args, **kwargs)
        self.sync_full_state()

    def _send_update_msg(self, *args: Any, **kwargs: Any) -> None:
        super()._send_update_msg(*args, **kwargs)
        self.sync_full_state()

    def _send_animate_msg(self, *args: Any, **kwargs: Any) -> None:
        super()._send_animate_msg(*args, **kwargs)
        self.sync_full_state()
