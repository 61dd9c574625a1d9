"""What cliplab's HTML (the audit report and the Jupyter widgets) is made of: escaping, tables,
thumbnails, status messages and group colours, in one place so the two agree.

Every user string that reaches HTML goes through :func:`esc` (``None`` is shown as nothing);
JSON placed inside ``<script>`` goes through :func:`script_json`. Thumbnails are read with
:func:`cliplab.data.load_image`, made on demand and kept in a bounded cache.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

THUMB_PX = 96
_CACHE: OrderedDict[tuple[str, int], str] = OrderedDict()
_CACHE_MAX = 512
Column = tuple[str, str, Callable[[Any], str] | None]  # (column, header, formatter)
TABLE_CSS = (".cliplab-scroll{overflow-x:auto;max-width:100%}.cliplab-table{border-collapse:collapse;margin:4px 0}"
             ".cliplab-table th,.cliplab-table td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;"
             "white-space:nowrap}.cliplab-table th{background:#f3f3f3}.cliplab-table tr.flag td{background:#fde8e8}"
             ".cliplab-gallery{display:flex;flex-wrap:wrap;gap:4px;max-width:100%}")
REFERENCE_COLOUR, FLAGGED_COLOUR = "#444444", "#c0392b"  # outlines marking the reference and flagged groups
# Attributes whose values have an order: a sequential palette follows it (light to dark, young to old).
ORDERS = [["light", "medium", "dark"], ["lighter", "light", "medium", "dark", "darker"],
          ["child", "teen", "adult", "senior"], ["young", "middle", "old"], ["child", "adult"],
          ["low", "medium", "high"]]
QUALITATIVE = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#eeca3b", "#9d755d", "#ff9da6", "#bab0ac",
               "#e45756"]


def esc(value: object) -> str:
    """HTML-escape any value, quotes included (safe inside attributes too); ``None`` becomes ""."""
    return "" if value is None else html.escape(str(value), quote=True)


def script_json(value: Any) -> str:
    """JSON safe to place inside a <script> element (no value can close it or start markup)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, allow_nan=False)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, rep)
    return text


def number(x: Any, digits: int = 3) -> str:
    """A short number for people: ``n/a`` for missing, ``∞`` never (unbounded values read 'unbounded')."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "n/a"
    if isinstance(x, (bool,)):
        return "yes" if x else "no"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isinf(f):
        return "unbounded"
    return f"{f:.{digits}g}" if not f.is_integer() or abs(f) >= 1e6 else str(int(f))


def _cell(value: Any) -> str:
    if isinstance(value, (bool, float, int)) or value is None or value is pd.NA:
        return number(value)
    try:
        if pd.isna(value):
            return "n/a"
    except (TypeError, ValueError):
        pass
    return str(value)


def table_html(df: pd.DataFrame, columns: Sequence[Column] | None = None,
               row_class: Callable[[pd.Series], str] | None = None, limit: int | None = 50,
               more: str = "rows") -> str:
    """An escaped HTML table (in a sideways-scrolling box) of ``columns`` (all by default), cut at ``limit``.

    Booleans read yes/no, missing values n/a, infinities 'unbounded'; a note says how many rows were cut.
    """
    cols = list(columns) if columns is not None else [(str(c), str(c), None) for c in df.columns]
    head = "".join(f"<th>{esc(h)}</th>" for _, h, _ in cols)
    rows = []
    for _, row in (df.head(limit) if limit else df).iterrows():
        cls = row_class(row) if row_class else ""
        cells = "".join(f"<td>{esc(fmt(row[c]) if fmt else _cell(row[c]))}</td>" for c, _, fmt in cols)
        rows.append(f'<tr class="{esc(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    note = (f"<div><small>first {limit} of {len(df)} {esc(more)}</small></div>"
            if limit and len(df) > limit else "")
    return (f'<style>{TABLE_CSS}</style><div class="cliplab-scroll"><table class="cliplab-table">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{note}")


def thumbnail_uri(path: str, px: int = THUMB_PX) -> str:
    """A PNG data: URI of the image at ``path`` shrunk to fit ``px``; "" if it cannot be read."""
    key = (str(path), px)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    from .data import ImageError, load_image

    try:
        im = load_image(path)
    except (ImageError, OSError):
        return ""
    im.thumbnail((px, px))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    _CACHE[key] = uri
    if len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return uri


def thumbnail_html(path: str, caption: str = "", px: int = THUMB_PX) -> str:
    """An <img> with an escaped caption under it (or a note when the image cannot be read)."""
    uri = thumbnail_uri(path, px)
    img = (f'<img src="{uri}" width="{px}" alt="{esc(caption)}" style="image-rendering:pixelated"/>' if uri
           else f"<i>cannot read {esc(path)}</i>")
    return (f'<div style="display:inline-block;margin:2px;text-align:center;max-width:{px + 40}px;'
            f'overflow-wrap:anywhere">{img}<br/><small>{esc(caption)}</small></div>')


def gallery_html(paths: list[str], captions: list[str], limit: int = 12) -> str:
    """Thumbnails of the first ``limit`` images, wrapping to the width, with a note when there are more."""
    cells = "".join(thumbnail_html(p, c) for p, c in zip(paths[:limit], captions[:limit]))
    more = f"<div><small>showing {limit} of {len(paths)} images</small></div>" if len(paths) > limit else ""
    return f'<style>{TABLE_CSS}</style><div class="cliplab-gallery">{cells}</div>{more}'


def message_html(text: str, kind: str = "info") -> str:
    """A one-line, escaped status message; kind is info, warning or error."""
    colour = {"info": "#555", "warning": "#a60", "error": "#b00"}.get(kind, "#555")
    return f'<div style="color:{colour}">{esc(text)}</div>' if text else ""


# ------------------------------------------------------------------ colours
def ordered_values(values: Sequence[str]) -> list[str] | None:
    """The values in their natural order (light < medium < dark, child < adult, numbers), or None."""
    vals = [str(v) for v in dict.fromkeys(values)]
    low = [v.strip().lower() for v in vals]
    for order in ORDERS:
        if set(low) <= set(order) and len(set(low)) > 1:
            return [v for _, v in sorted(zip(low, vals), key=lambda p: order.index(p[0]))]
    nums = [re.match(r"^\s*(\d+(?:\.\d+)?)", v) for v in vals]  # age bins such as "18-29", "30-39"
    if len(vals) > 1 and all(nums):
        return [v for _, v in sorted(zip((float(m.group(1)) for m in nums if m), vals))]
    return None


def group_colours(values: Sequence[str]) -> dict[str, str]:
    """A colour per value: a sequential palette in order for ordered values, else a qualitative one."""
    from plotly.colors import sample_colorscale

    order = ordered_values(values)
    if order is None:
        vals = list(dict.fromkeys(str(v) for v in values))
        return {v: QUALITATIVE[i % len(QUALITATIVE)] for i, v in enumerate(vals)}
    scale = "YlOrBr" if {v.lower() for v in order} & {"light", "dark"} else "Blues"
    points = [0.3 + 0.65 * i / max(len(order) - 1, 1) for i in range(len(order))]
    return dict(zip(order, sample_colorscale(scale, points, colortype="rgb")))
