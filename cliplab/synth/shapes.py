"""The 16 object shapes of the scenes world, as polygons and lines in a unit box, and a painter.

Every shape is drawn from polygons so it can be rotated; its colour is chosen per image by the
caller, so only the outline tells the classes apart. The painter draws each primitive on the colour
image and, for the foreground, on a mask (the silhouette style).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import ImageDraw

Color = tuple[int, int, int]
Points = list[tuple[float, float]]
# (kind, points, colour role, line width as a fraction of the box); kind: "poly" or "line"
Prim = tuple[str, Points, str, float]


def ellipse(cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 360.0, n: int = 20) -> Points:
    t = np.radians(np.linspace(a0, a1, n))
    return [(cx + rx * float(np.cos(a)), cy + ry * float(np.sin(a))) for a in t]


def rect(x0: float, y0: float, x1: float, y1: float) -> Points:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _kite() -> list[Prim]:
    return [("line", [(0, 0.45), (0.08, 0.5), (-0.06, 0.55), (0.04, 0.62)], "dark", 0.04),
            ("poly", [(0, -0.5), (0.34, -0.12), (0, 0.45), (-0.34, -0.12)], "main", 0),
            ("line", [(0, -0.5), (0, 0.45)], "dark", 0.04), ("line", [(-0.34, -0.12), (0.34, -0.12)], "dark", 0.04)]


def _guitar() -> list[Prim]:
    return [("poly", rect(-0.05, -0.55, 0.05, 0.0), "wood", 0), ("poly", ellipse(0, -0.02, 0.2, 0.18), "main", 0),
            ("poly", ellipse(0, 0.25, 0.28, 0.24), "main", 0), ("poly", ellipse(0, 0.1, 0.08, 0.08), "dark", 0),
            ("poly", rect(-0.08, -0.62, 0.08, -0.52), "wood", 0)]


def _book() -> list[Prim]:
    return [("poly", rect(-0.3, -0.4, 0.3, 0.4), "main", 0), ("poly", rect(-0.3, -0.4, -0.18, 0.4), "dark", 0),
            ("line", [(-0.08, -0.2), (0.2, -0.2)], "light", 0.05),
            ("line", [(-0.08, -0.05), (0.2, -0.05)], "light", 0.05)]


def _flower() -> list[Prim]:
    petals = [("poly", ellipse(0.2 * float(np.cos(a)), -0.18 + 0.2 * float(np.sin(a)), 0.14, 0.14), "main", 0.0)
              for a in np.linspace(0, 2 * np.pi, 6)[:-1]]
    return [("line", [(0, -0.1), (0, 0.55)], "stem", 0.07), ("poly", ellipse(0.1, 0.3, 0.1, 0.04), "stem", 0),
            *petals, ("poly", ellipse(0, -0.18, 0.09, 0.09), "light", 0)]


def _ball() -> list[Prim]:
    return [("poly", ellipse(0, 0, 0.38, 0.38), "main", 0),
            ("line", ellipse(-0.38, 0, 0.3, 0.36, -70, 70), "light", 0.06),
            ("line", ellipse(0.38, 0, 0.3, 0.36, 110, 250), "light", 0.06)]


def _cup() -> list[Prim]:
    return [("line", ellipse(0.28, 0, 0.16, 0.16, -90, 90), "main", 0.09),
            ("poly", [(-0.32, -0.32), (0.28, -0.32), (0.2, 0.35), (-0.24, 0.35)], "main", 0),
            ("poly", ellipse(-0.02, -0.32, 0.3, 0.05), "dark", 0)]


def _key() -> list[Prim]:
    return [("line", ellipse(-0.28, -0.02, 0.17, 0.17), "main", 0.1),
            ("poly", rect(-0.12, -0.06, 0.5, 0.06), "main", 0),
            ("poly", rect(0.22, 0.0, 0.3, 0.2), "main", 0), ("poly", rect(0.38, 0.0, 0.46, 0.24), "main", 0)]


def _phone() -> list[Prim]:
    return [("poly", rect(-0.22, -0.42, 0.22, 0.42), "main", 0), ("poly", rect(-0.16, -0.34, 0.16, 0.24), "screen", 0),
            ("poly", ellipse(0, 0.33, 0.04, 0.04), "light", 0)]


def _umbrella() -> list[Prim]:
    scallops = [(0.33, 0.02), (0.17, -0.04), (0, 0.02), (-0.17, -0.04), (-0.33, 0.02)]
    return [("line", [(0, -0.05), (0, 0.42)], "dark", 0.05),
            ("line", ellipse(-0.08, 0.42, 0.08, 0.08, 0, 180), "dark", 0.05),
            ("poly", ellipse(0, 0, 0.5, 0.38, 180, 360) + scallops, "main", 0)]


def _star() -> list[Prim]:
    a = np.radians(np.arange(10) * 36 - 90)
    r = np.where(np.arange(10) % 2 == 0, 0.5, 0.2)
    return [("poly", [(float(ri * np.cos(ai)), float(ri * np.sin(ai)) + 0.04) for ri, ai in zip(r, a)], "main", 0)]


def _heart() -> list[Prim]:
    t = np.linspace(0, 2 * np.pi, 32)
    x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return [("poly", [(float(u) / 34, -float(v) / 34 - 0.03) for u, v in zip(x, y)], "main", 0)]


def _fish() -> list[Prim]:
    return [("poly", [(0.22, 0), (0.5, -0.22), (0.46, 0), (0.5, 0.22)], "main", 0),
            ("poly", ellipse(-0.05, 0, 0.32, 0.18), "main", 0), ("poly", ellipse(-0.22, -0.04, 0.04, 0.04), "light", 0),
            ("poly", [(-0.05, -0.16), (0.1, -0.3), (0.12, -0.14)], "dark", 0)]


def _hammer() -> list[Prim]:
    return [("poly", rect(-0.05, -0.25, 0.05, 0.55), "wood", 0), ("poly", rect(-0.34, -0.45, 0.24, -0.22), "main", 0),
            ("poly", [(0.24, -0.45), (0.4, -0.52), (0.36, -0.34), (0.24, -0.3)], "main", 0)]


def _bottle() -> list[Prim]:
    return [("poly", rect(-0.18, -0.12, 0.18, 0.5), "main", 0),
            ("poly", [(-0.18, -0.12), (-0.07, -0.3), (0.07, -0.3), (0.18, -0.12)], "main", 0),
            ("poly", rect(-0.07, -0.46, 0.07, -0.3), "main", 0), ("poly", rect(-0.09, -0.54, 0.09, -0.44), "dark", 0),
            ("poly", rect(-0.18, 0.05, 0.18, 0.25), "light", 0)]


def _apple() -> list[Prim]:
    return [("poly", ellipse(-0.13, 0.05, 0.24, 0.3), "main", 0), ("poly", ellipse(0.13, 0.05, 0.24, 0.3), "main", 0),
            ("line", [(0, -0.2), (0.04, -0.42)], "wood", 0.06), ("poly", ellipse(0.14, -0.36, 0.11, 0.05), "stem", 0)]


def _bell() -> list[Prim]:
    body = [(-0.38, 0.3), (-0.3, 0.2), (-0.24, -0.18)] + ellipse(0, -0.18, 0.24, 0.24, 180, 360) + \
        [(0.24, -0.18), (0.3, 0.2), (0.38, 0.3)]
    return [("line", ellipse(0, -0.46, 0.07, 0.07), "dark", 0.05), ("poly", body, "main", 0),
            ("poly", ellipse(0, 0.34, 0.08, 0.08), "dark", 0)]


SHAPES: dict[str, Callable[[], list[Prim]]] = {
    "kite": _kite, "guitar": _guitar, "book": _book, "flower": _flower, "ball": _ball, "cup": _cup, "key": _key,
    "phone": _phone, "umbrella": _umbrella, "star": _star, "heart": _heart, "fish": _fish, "hammer": _hammer,
    "bottle": _bottle, "apple": _apple, "bell": _bell,
}
FIXED_COLORS: dict[str, Color] = {"wood": (110, 70, 35), "stem": (55, 120, 45), "screen": (25, 25, 40)}


class Painter:
    """Draws primitives on an RGB canvas and, for foreground parts, on an L-mode mask."""

    def __init__(self, draw: ImageDraw.ImageDraw, mask: ImageDraw.ImageDraw):
        self.draw, self.mask = draw, mask

    def poly(self, pts: Points, fill: Color, fg: bool = True) -> None:
        self.draw.polygon(pts, fill=fill)
        if fg:
            self.mask.polygon(pts, fill=255)

    def line(self, pts: Points, fill: Color, width: int, fg: bool = True) -> None:
        self.draw.line(pts, fill=fill, width=max(1, width), joint="curve")
        if fg:
            self.mask.line(pts, fill=255, width=max(1, width), joint="curve")

    def shape(self, label: str, cx: float, cy: float, s: float, angle: float, flip: bool,
              colors: dict[str, Color]) -> None:
        """Shape ``label`` centred at (cx, cy), ``s`` px wide, rotated by ``angle`` degrees."""
        c, sn = float(np.cos(np.radians(angle))), float(np.sin(np.radians(angle)))
        fx = -1.0 if flip else 1.0

        def place(pts: Points) -> Points:
            return [(cx + s * (c * fx * x - sn * y), cy + s * (sn * fx * x + c * y)) for x, y in pts]

        for kind, pts, role, width in SHAPES[label]():
            col = colors.get(role) or FIXED_COLORS[role]
            if kind == "poly":
                self.poly(place(pts), col)
            else:
                self.line(place(pts), col, round(width * s))
