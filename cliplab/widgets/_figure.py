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

The fix, at the root: after each message this class also assigns the full state to the synced
traits. The browser keeps them whether or not the ESM has loaded, so a view created however
late renders the current figure; live views still get the cheap incremental messages.
"""
from __future__ import annotations

from copy import deepcopy
from typing import Any

import plotly.graph_objects as go


class Figure(go.FigureWidget):
    """A ``plotly.graph_objects.FigureWidget`` whose synced traits always hold the whole figure."""

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
