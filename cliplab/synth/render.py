"""Drawing one image of the scenes world: a cluttered scene, a person (tone, age) and a held shape.

All randomness comes from the generator the caller passes in, so an image depends only on its
seed. ``render`` returns the supersampled colour canvas and the person-and-object mask;
``finish`` turns them into the clean image or one of the shifted styles of the test split.
"""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .shapes import Color, Painter, ellipse, rect

SKIN: dict[str, Color] = {"light": (246, 206, 172), "medium": (189, 124, 78), "dark": (92, 56, 36)}
OUTLINE: Color = (45, 40, 40)
# the cartoon style maps every pixel to the nearest of these flat colours
CARTOON_PALETTE: list[Color] = [(0, 0, 0), (255, 255, 255), (220, 40, 40), (40, 170, 60), (40, 80, 220),
                                (250, 210, 40), (120, 120, 120), (240, 150, 180)]


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


def _scale(c: Color, f: float) -> Color:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


def _mix(c: Color, d: Color, t: float) -> Color:
    return (int(c[0] + (d[0] - c[0]) * t), int(c[1] + (d[1] - c[1]) * t), int(c[2] + (d[2] - c[2]) * t))


def _scene(p: Painter, scene: str, S: int, rng: np.random.Generator) -> None:
    """Fill the background of ``scene`` (drawn on the colour canvas only)."""
    horizon = S * rng.uniform(0.58, 0.74)
    sky = _hsv(rng.uniform(0.53, 0.6), rng.uniform(0.2, 0.45), rng.uniform(0.85, 0.97))
    if scene == "park":
        p.poly(rect(0, 0, S, horizon), sky, fg=False)
        p.poly(rect(0, horizon, S, S), _hsv(rng.uniform(0.25, 0.35), rng.uniform(0.45, 0.7), rng.uniform(0.5, 0.7)),
               fg=False)
    elif scene == "beach":
        p.poly(rect(0, 0, S, horizon), sky, fg=False)
        p.poly(rect(0, horizon - 0.1 * S, S, horizon), _hsv(0.58, 0.7, rng.uniform(0.55, 0.75)), fg=False)
        p.poly(rect(0, horizon, S, S), _hsv(rng.uniform(0.1, 0.14), rng.uniform(0.3, 0.5), rng.uniform(0.85, 0.95)),
               fg=False)
    elif scene == "room":
        p.poly(rect(0, 0, S, horizon), _hsv(rng.random(), rng.uniform(0.1, 0.3), rng.uniform(0.75, 0.92)), fg=False)
        p.poly(rect(0, horizon, S, S), _hsv(rng.uniform(0.05, 0.1), rng.uniform(0.4, 0.6), rng.uniform(0.35, 0.55)),
               fg=False)
        wx, wy = S * rng.uniform(0.05, 0.6), S * rng.uniform(0.05, 0.2)
        p.poly(rect(wx, wy, wx + 0.3 * S, wy + 0.25 * S), (90, 70, 50), fg=False)
        p.poly(rect(wx + 0.02 * S, wy + 0.02 * S, wx + 0.28 * S, wy + 0.23 * S), sky, fg=False)
    else:  # night
        p.poly(rect(0, 0, S, horizon), _hsv(rng.uniform(0.6, 0.7), rng.uniform(0.5, 0.8), rng.uniform(0.12, 0.25)),
               fg=False)
        p.poly(rect(0, horizon, S, S), _hsv(0.6, 0.1, rng.uniform(0.3, 0.42)), fg=False)
        for x, y in rng.uniform(0, 1, (8, 2)):
            p.poly(ellipse(x * S, y * horizon, 0.008 * S, 0.008 * S, n=6), (250, 250, 220), fg=False)


def _clutter(p: Painter, S: int, rng: np.random.Generator) -> None:
    """Small muted blobs, bars and strokes anywhere in the scene (never on the mask)."""
    for _ in range(int(rng.integers(3, 7))):
        x, y, r = rng.uniform(0, S), rng.uniform(0, S), S * rng.uniform(0.025, 0.06)
        col = _mix(_hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 1.0)), (150, 150, 150), 0.35)
        kind = int(rng.integers(0, 4))
        if kind == 0:
            p.poly(ellipse(x, y, r, r * rng.uniform(0.6, 1.0), n=12), col, fg=False)
        elif kind == 1:
            p.poly(rect(x - r, y - r * 0.4, x + r, y + r * 0.4), col, fg=False)
        elif kind == 2:
            p.poly([(x, y - r), (x + r, y + r), (x - r, y + r)], col, fg=False)
        else:
            p.line([(x - r, y), (x + r, y + rng.uniform(-r, r))], col, round(0.02 * S), fg=False)


def render(label: str, tone: str, age: str, scene: str, size: int,
           rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """The supersampled colour canvas and foreground mask of one image."""
    S = size * 4
    img, mask = Image.new("RGB", (S, S), (0, 0, 0)), Image.new("L", (S, S), 0)
    p = Painter(ImageDraw.Draw(img), ImageDraw.Draw(mask))
    _scene(p, scene, S, rng)
    _clutter(p, S, rng)
    flip = bool(rng.random() < 0.5)
    mx = (lambda x: S - x) if flip else (lambda x: x)
    H = S * (rng.uniform(0.45, 0.56) if age == "child" else rng.uniform(0.76, 0.9))
    fx, fb = S * rng.uniform(0.2, 0.36), S * rng.uniform(0.94, 0.99)
    cloth = _hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.75))
    jitter = rng.integers(-10, 11, 3)
    skin = (int(np.clip(SKIN[tone][0] + jitter[0], 0, 255)), int(np.clip(SKIN[tone][1] + jitter[1], 0, 255)),
            int(np.clip(SKIN[tone][2] + jitter[2], 0, 255)))
    hr = H * (0.16 if age == "child" else 0.115)
    sy = fb - H + 2 * hr + 0.02 * H  # shoulder line
    hip = sy + 0.45 * (fb - sy)
    for dx in (-0.06, 0.06):  # legs
        p.poly([(mx(fx + (dx - 0.045) * H), hip - 1), (mx(fx + (dx + 0.045) * H), hip - 1),
                (mx(fx + (dx + 0.045) * H), fb), (mx(fx + (dx - 0.045) * H), fb)], _scale(cloth, 0.7))
    p.poly([(mx(fx - 0.15 * H), sy), (mx(fx + 0.15 * H), sy), (mx(fx + 0.12 * H), hip), (mx(fx - 0.12 * H), hip)],
           cloth)
    hands = [(fx - 0.2 * H, sy + rng.uniform(0.25, 0.38) * H), (fx + 0.3 * H, sy + rng.uniform(0.02, 0.3) * H)]
    for (hx, hy), dx in zip(hands, (-0.13, 0.13)):
        p.line([(mx(fx + dx * H), sy + 0.03 * H), (mx(hx), hy)], cloth, round(0.07 * H))
    head = ellipse(mx(fx), sy - 0.02 * H - hr, hr, hr)
    p.poly(head, OUTLINE)
    p.poly(ellipse(mx(fx), sy - 0.02 * H - hr, hr * 0.86, hr * 0.86), skin)
    s = S * rng.uniform(0.4, 0.52)
    (hx, hy), hr2 = hands[1], 0.06 * H
    ox = float(np.clip(mx(hx + 0.42 * s), 0.45 * s, S - 0.45 * s))
    oy = float(np.clip(hy - 0.1 * s, 0.5 * s, S - 0.5 * s))
    main = _hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
    colors = {"main": main, "dark": _scale(main, 0.5), "light": _mix(main, (255, 255, 255), 0.65)}
    p.shape(label, ox, oy, s, float(rng.uniform(-30, 30)), bool(rng.random() < 0.5), colors)
    for hx, hy in hands:
        p.poly(ellipse(mx(hx), hy, hr2, hr2, n=10), skin)
    return img, mask


def finish(img: Image.Image, mask: Image.Image, size: int, style: str, rng: np.random.Generator) -> Image.Image:
    """The ``size`` px image of a canvas in ``style`` ('clean' or one of config.STYLES)."""
    if style == "sketch":  # dark outlines of everything on white paper
        edges = img.convert("L").filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 24 else 0)
        ink = edges.filter(ImageFilter.MaxFilter(5))
        small = Image.eval(ink, lambda v: 255 - v).resize((size, size), Image.Resampling.LANCZOS)
        return small.convert("RGB")
    if style == "silhouette":  # the person and the object in black on white, no scene
        return Image.eval(mask, lambda v: 255 - v).resize((size, size), Image.Resampling.LANCZOS).convert("RGB")
    small = img.resize((size, size), Image.Resampling.LANCZOS)
    if style == "cartoon":
        pal = Image.new("P", (1, 1))
        pal.putpalette([v for c in CARTOON_PALETTE for v in c] * (256 // len(CARTOON_PALETTE)))
        return small.quantize(palette=pal, dither=Image.Dither.NONE).convert("RGB")
    if style == "blur":
        return small.filter(ImageFilter.GaussianBlur(radius=size / 20))
    sigma = 40.0 if style == "noise" else rng.uniform(0, 4)
    arr = np.asarray(small, dtype=np.float32) + rng.normal(0, sigma, (size, size, 1 if style == "clean" else 3))
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")
