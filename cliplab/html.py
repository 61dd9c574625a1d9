"""What cliplab's HTML (the reports and the Jupyter widgets) is made of: escaping, tables,
thumbnails, status messages and group colours, in one place so they agree.

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
TABLE_CSS = (".widget-html,.widget-html-content{min-width:0;max-width:100%}"  # let an ipywidgets HTML shrink
             ".cliplab-scroll{overflow-x:auto;max-width:100%}.cliplab-table{border-collapse:collapse;margin:4px 0}"
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


# ------------------------------------------------------------------ static charts
def _nice_max(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above x (an axis end that reads well)."""
    if not x > 0:
        return 0.01
    k = 10 ** math.floor(math.log10(x))
    return next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= x * 0.999)


def bars_svg(title: str, rows: Sequence[dict[str, Any]], axis_title: str, note: str = "") -> str:
    """A static, responsive horizontal bar chart (SVG) of rates with 95% intervals, one row per bar.

    Each row: ``label``, ``rate``, ``low``, ``high`` (0-1), ``colour``, optional ``tip`` (hover
    text), ``mark`` ("reference" / "flagged" / "small"). Written by hand: plotly draws this only
    with its 4.8 MB script, and the report must paint its text before any script runs. The x axis
    is autoscaled to the largest interval end, in percent.
    """
    row_h, left, right, top = 26, 190, 150, 34
    width = 720
    height = top + row_h * len(rows) + 44
    scale_max = _nice_max(max([float(r.get("high", r["rate"]) or 0) for r in rows] + [0.0]))
    plot_w = width - left - right
    x = lambda v: left + plot_w * min(max(float(v), 0.0), scale_max) / scale_max
    parts = [f'<svg class="cliplab-chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="{esc(title)}" font-family="system-ui,sans-serif" '
             f'font-size="12"><text x="4" y="18" font-size="14" font-weight="600">{esc(title)}</text>']
    for i in range(5):
        v = scale_max * i / 4
        parts.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top - 4}" y2="{height - 40}" stroke="#e3e3e3"/>'
                     f'<text x="{x(v):.1f}" y="{height - 26}" text-anchor="middle" fill="#555">'
                     f"{100 * v:.{0 if scale_max >= 0.04 else 1}f}%</text>")
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle" fill="#333">'
                 f"{esc(axis_title)}</text>")
    for i, r in enumerate(rows):
        y = top + i * row_h
        mark = r.get("mark", "")
        stroke = {"reference": REFERENCE_COLOUR, "flagged": FLAGGED_COLOUR}.get(mark, "none")
        opacity = 0.35 if mark == "small" else 1.0
        lo, hi, rate = float(r.get("low", r["rate"])), float(r.get("high", r["rate"])), float(r["rate"])
        label = esc(r["label"])
        tag = {"reference": "reference", "flagged": "▲ flagged", "small": "too small"}.get(mark, "")
        parts.append(
            f"<g><title>{esc(r.get('tip', ''))}</title>"
            f'<text x="{left - 6}" y="{y + 16}" text-anchor="end">{label}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{max(x(rate) - left, 0.5):.1f}" height="{row_h - 10}" '
            f'fill="{esc(r.get("colour", "#4c78a8"))}" fill-opacity="{opacity}" stroke="{stroke}" '
            f'stroke-width="{2 if stroke != "none" else 0}"/>'
            f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y + row_h / 2 - 1}" y2="{y + row_h / 2 - 1}" '
            f'stroke="#222" stroke-width="1.3"/>'
            f'<line x1="{x(lo):.1f}" x2="{x(lo):.1f}" y1="{y + 8}" y2="{y + row_h - 10}" stroke="#222"/>'
            f'<line x1="{x(hi):.1f}" x2="{x(hi):.1f}" y1="{y + 8}" y2="{y + row_h - 10}" stroke="#222"/>'
            f'<text x="{x(hi) + 6:.1f}" y="{y + 16}" fill="#222">{100 * rate:.1f}%'
            f'<tspan fill="{stroke if stroke != "none" else "#777"}"> {tag}</tspan></text></g>')
    parts.append("</svg>")
    return "".join(parts) + (f'<p class="muted">{esc(note)}</p>' if note else "")
