"""Small inline thumbnails (data: URIs) and HTML helpers shared by the widgets.

Thumbnails are made on demand (a hover, a selection), never for a whole image set, and kept
in a bounded cache. Every user-supplied string that reaches HTML goes through ``esc``.
"""
from __future__ import annotations

import base64
import html
import io
from collections import OrderedDict

import pandas as pd

THUMB_PX = 96
_CACHE: OrderedDict[tuple[str, int], str] = OrderedDict()
_CACHE_MAX = 512
TABLE_STYLE = ("<style>.cliplab-table{border-collapse:collapse;margin:4px 0}.cliplab-table th,.cliplab-table td"
               "{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
               ".cliplab-table th{background:#f3f3f3}"
               "</style>")


def esc(value: object) -> str:
    """HTML-escape any value (quotes too): class names, captions and templates are user text."""
    return html.escape(str(value), quote=True)


def thumbnail_uri(path: str, px: int = THUMB_PX) -> str:
    """A PNG data: URI of the image at ``path`` shrunk to fit ``px``; "" if it cannot be read."""
    key = (str(path), px)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    from ..data import ImageError, load_image

    try:
        im = load_image(path)
    except ImageError:
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
    img = (f'<img src="{uri}" width="{px}" style="image-rendering:pixelated"/>' if uri
           else f"<i>cannot read {esc(path)}</i>")
    return (f'<div style="display:inline-block;margin:2px;text-align:center;max-width:{px + 40}px">'
            f'{img}<br/><small>{esc(caption)}</small></div>')


def gallery_html(paths: list[str], captions: list[str], limit: int = 12) -> str:
    """Thumbnails of the first ``limit`` images, with a note when there are more."""
    cells = "".join(thumbnail_html(p, c) for p, c in zip(paths[:limit], captions[:limit]))
    more = f"<div><small>showing {limit} of {len(paths)} images</small></div>" if len(paths) > limit else ""
    return f"<div>{cells}</div>{more}"


def table_html(table: pd.DataFrame, max_rows: int = 50, float_format: str = "{:.3f}") -> str:
    """An escaped HTML table of at most ``max_rows`` rows, with a note when it is cut."""
    shown = table.head(max_rows)
    body = TABLE_STYLE + shown.to_html(index=False, escape=True, border=0, na_rep="", classes="cliplab-table",
                                       float_format=lambda v: float_format.format(v))
    note = (f"<div><small>first {max_rows} of {len(table)} rows</small></div>"
            if len(table) > max_rows else "")
    return body + note


def message_html(text: str, kind: str = "info") -> str:
    """A one-line, escaped status message; kind is info, warning or error."""
    colour = {"info": "#555", "warning": "#a60", "error": "#b00"}.get(kind, "#555")
    return f'<div style="color:{colour}">{esc(text)}</div>' if text else ""
