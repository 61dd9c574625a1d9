"""FigureWidget that always carries its whole state, so a view created at any time draws it.

Why the charts came up empty (plotly 6-7 on anywidget): a ``FigureWidget`` syncs its full state
(the ``_widget_data`` and ``_widget_layout`` traits) only when it is built and when it is itself
displayed (its ``_repr_mimebundle_``). Every later edit (``add_trace``, ``batch_update``,
restyle, relayout) travels only as a one-time ``_py2js_*`` message, which the browser applies
to its copy of the state from the figure's ESM ``initialize`` on. That ESM is a 4.9 MB bundle
loaded asynchronously per figure, so messages that arrive before it is evaluated (a busy page
under Run All, a figure inside a VBox that is created, filled and shown in one cell) are lost,
and a view rendered later reads the stale state: for our widgets, which build an empty figure
inside a container and fill it afterwards, an empty ``_widget_data`` (empty axes -1..6). Edits
after that restyle traces the view does not have, so nothing ever redraws.

A view can also render before queued state updates are applied (the browser deserialises a
widget's messages in order, the 4.9 MB ESM update among them), and plotly's view never redraws
when ``_widget_data`` changes: it stays empty for good.

The fix, at the root, in two parts:

1. after each message this class also assigns the full state to the synced traits, so the
   browser's copy of the state is always the whole figure, whatever messages were missed;
2. its ESM is plotly's own bundle with a small wrapper around the view (``_VIEW_PATCH``): the
   view redraws (``Plotly.react``) from that state whenever it changes, and once after its
   first draw. A view created however late, or drawn from a stale state, catches up.

Live views still get plotly's cheap incremental messages; the redraw is a no-op diff for them.
"""
from __future__ import annotations

import re
from copy import deepcopy
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go

# plotly's widget bundle ends with this export; the three names are minified and change by version.
_EXPORT = re.compile(r"export\{(\w+) as FigureModel,(\w+) as FigureView,(\w+) as default\};")
_VIEW_PATCH = """export{%(model)s as FigureModel,%(view)s as FigureView};
/* cliplab: redraw the view from the synced state whenever it changes (see cliplab/widgets/_figure.py) */
export default () => {
  const base = %(default)s();
  let state = null;
  return {
    initialize(ctx) { state = new %(model)s(ctx.model, %(serializers)s); return base.initialize(ctx); },
    render(ctx) {
      const cleanup = base.render(ctx);
      const el = ctx.el;
      let tries = 0;
      const redraw = () => {
        if (!state) return;
        if (!el._fullLayout) { if (tries++ < 200) setTimeout(redraw, 50); return; }
        const layout = structuredClone(state.get("_widget_layout") || {});
        if (!layout.height) layout.height = 360;
        const config = Object.assign({}, state.get("_config") || {}, {editSelection: false});
        %(plotly)s.default.react(el, structuredClone(state.get("_widget_data") || []), layout, config);
      };
      ctx.model.on("change:_widget_data", redraw);
      ctx.model.on("change:_widget_layout", redraw);
      redraw();
      return () => {
        ctx.model.off("change:_widget_data", redraw);
        ctx.model.off("change:_widget_layout", redraw);
        if (typeof cleanup === "function") cleanup();
      };
    },
  };
};
"""


def patched_bundle() -> str | None:
    """plotly's widget ESM with the redrawing view, or None when this plotly's bundle has another shape."""
    text = (Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").read_text(encoding="utf-8")
    export = _EXPORT.search(text)
    if export is None:
        return None
    model, view, default = export.groups()
    init = re.search(re.escape(default) + r"=\(\)=>\{let (\w+);return\{initialize\((\w+)\)\{\1=new "
                     + re.escape(model) + r"\(\2\.model,([\w$]+)\)", text)
    plotly_js = set(re.findall(r"([\w$]+)\.default\.newPlot\(", text))
    if init is None or len(plotly_js) != 1:
        return None
    patch = _VIEW_PATCH % {"model": model, "view": view, "default": default, "serializers": init.group(3),
                           "plotly": plotly_js.pop()}
    return text[:export.start()] + patch + text[export.end():]


_ESM = patched_bundle()


class Figure(go.FigureWidget):
    """A ``plotly.graph_objects.FigureWidget`` whose synced traits always hold the whole figure,
    and whose browser view redraws from them."""

    if _ESM is not None:  # else plotly's own view (part 1 of the fix still holds)
        _esm = _ESM

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
