"""The legacy world (``SynthConfig(world="legacy")``): a person holding one of 8 coloured objects.

The project's first stand-in for FairFace-style data, kept byte-identical for the tests and bars
that use it: every image is drawn from code, the ground truth (class, tone, age) is known exactly,
and a controllable fraction of one group's training captions is replaced by a harmful caption.
Colour alone tells the classes apart and one template writes every caption; the default world
(cliplab/synth/scenes.py) is the harder one.
"""
from __future__ import annotations

import colorsys
import csv
import io
import json
import os
from itertools import product
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import describe_os_error
from ..errors import OutputError
from .config import ATTRIBUTES, SynthConfig
from .output import claim_folder, release_folder

CLASSES: list[str] = ["kite", "guitar", "book", "flower", "ball", "cup", "key", "phone"]
COLUMNS: list[str] = ["image", "caption", "label", "split", "tone", "age", "biased"]

Color = tuple[int, int, int]
SKIN: dict[str, Color] = {"light": (246, 206, 172), "medium": (189, 124, 78), "dark": (92, 56, 36)}
OBJECT_COLORS: dict[str, Color] = {
    "kite": (35, 70, 235), "guitar": (255, 125, 0), "book": (225, 20, 30), "flower": (240, 0, 170),
    "ball": (20, 180, 40), "cup": (0, 205, 225), "key": (250, 215, 0), "phone": (125, 30, 200),
}
OUTLINE: Color = (45, 40, 40)


def _dark(c: Color, f: float = 0.55) -> Color:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


def _draw_object(d: ImageDraw.ImageDraw, label: str, cx: float, cy: float, s: float, col: Color) -> None:
    """Draw object ``label`` centred at (cx, cy) inside an s x s box."""
    dk, w = _dark(col), max(1, round(s * 0.06))
    box = lambda x0, y0, x1, y1: [cx + x0 * s, cy + y0 * s, cx + x1 * s, cy + y1 * s]
    pts = lambda *xy: [(cx + x * s, cy + y * s) for x, y in xy]
    if label == "kite":
        d.line(pts((0, 0.3), (0.06, 0.4), (-0.08, 0.45), (-0.35, 0.5)), fill=OUTLINE, width=max(1, w // 2))
        d.polygon(pts((0, -0.5), (0.4, -0.1), (0, 0.32), (-0.4, -0.1)), fill=col)
        d.line(box(0, -0.5, 0, 0.32), fill=dk, width=max(1, w // 2))
        d.line(box(-0.4, -0.1, 0.4, -0.1), fill=dk, width=max(1, w // 2))
    elif label == "guitar":
        d.rectangle(box(-0.05, -0.5, 0.05, 0.0), fill=(90, 50, 20))
        d.ellipse(box(-0.24, -0.24, 0.24, 0.16), fill=col)
        d.ellipse(box(-0.33, -0.02, 0.33, 0.5), fill=col)
        d.ellipse(box(-0.09, 0.0, 0.09, 0.18), fill=(40, 20, 10))
    elif label == "book":
        d.rectangle(box(-0.3, -0.4, 0.3, 0.4), fill=col, outline=dk, width=w)
        d.rectangle(box(-0.3, -0.4, -0.18, 0.4), fill=dk)
    elif label == "flower":
        d.line(box(0, -0.1, 0, 0.5), fill=(60, 100, 50), width=w)
        for a in np.linspace(0, 2 * np.pi, 6)[:-1]:
            px, py = 0.2 * np.cos(a), -0.18 + 0.2 * np.sin(a)
            d.ellipse(box(px - 0.15, py - 0.15, px + 0.15, py + 0.15), fill=col)
        d.ellipse(box(-0.09, -0.27, 0.09, -0.09), fill=(255, 255, 255))
    elif label == "ball":
        d.ellipse(box(-0.36, -0.36, 0.36, 0.36), fill=col, outline=dk, width=w)
        d.arc(box(-0.6, -0.2, 0.1, 0.6), 270, 360, fill=(255, 255, 255), width=w)
    elif label == "cup":
        d.ellipse(box(0.1, -0.2, 0.45, 0.2), outline=col, width=2 * w)
        d.polygon(pts((-0.32, -0.32), (0.28, -0.32), (0.2, 0.35), (-0.24, 0.35)), fill=col)
    elif label == "key":
        d.ellipse(box(-0.45, -0.22, -0.05, 0.18), outline=col, width=3 * w)
        d.rectangle(box(-0.1, -0.08, 0.48, 0.06), fill=col)
        d.rectangle(box(0.22, 0.0, 0.3, 0.2), fill=col)
        d.rectangle(box(0.38, 0.0, 0.46, 0.24), fill=col)
    elif label == "phone":
        d.rounded_rectangle(box(-0.22, -0.42, 0.22, 0.42), radius=0.08 * s, fill=col)
        d.rectangle(box(-0.15, -0.33, 0.15, 0.25), fill=(25, 25, 40))
        d.ellipse(box(-0.04, 0.29, 0.04, 0.37), fill=(230, 230, 230))
    else:  # pragma: no cover - CLASSES is fixed
        raise ValueError(f"unknown class {label!r}")


def _render(label: str, tone: str, age: str, size: int, rng: np.random.Generator) -> Image.Image:
    """Render one RGB image of a person of the given tone/age holding ``label``."""
    ss = 4 if size <= 128 else 2
    S = size * ss
    bg = tuple(int(v) for v in np.array(colorsys.hls_to_rgb(rng.random(), rng.uniform(0.86, 0.94),
                                                             rng.uniform(0.3, 0.8))) * 255)
    img = Image.new("RGB", (S, S), bg)
    d = ImageDraw.Draw(img)
    child = age == "child"
    H = S * (0.6 if child else 0.9) * rng.uniform(0.96, 1.04)
    fx, fb = S * (0.3 + rng.uniform(-0.04, 0.04)), S * rng.uniform(0.95, 0.985)
    cloth = cast(Color, tuple(int(v * 255) for v in colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.35),
                                                             rng.uniform(0.35, 0.75))))
    skin, lw = SKIN[tone], max(1, round(S / 64))
    hr = H * (0.16 if child else 0.12)
    sy = fb - H + 2 * hr + 0.02 * H  # shoulder line
    hip = sy + 0.45 * (fb - sy)
    for sx in (-0.06, 0.06):  # legs
        d.rectangle([fx + (sx - 0.045) * H, hip - 1, fx + (sx + 0.045) * H, fb], fill=_dark(cloth, 0.7))
    torso = [(fx - 0.15 * H, sy), (fx + 0.15 * H, sy), (fx + 0.12 * H, hip), (fx - 0.12 * H, hip)]
    d.polygon(torso, fill=cloth)
    hands = [(fx - 0.2 * H, sy + 0.33 * H), (fx + 0.3 * H, sy + 0.2 * H)]
    for (hx, hy), sx in zip(hands, (-0.13, 0.13)):
        d.line([(fx + sx * H, sy + 0.03 * H), (hx, hy)], fill=cloth, width=max(1, round(0.07 * H)))
    d.ellipse([fx - hr, sy - 0.02 * H - 2 * hr, fx + hr, sy - 0.02 * H], fill=skin, outline=OUTLINE, width=lw)
    s = S * 0.38 * rng.uniform(0.92, 1.08)
    col = cast(Color, tuple(int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in OBJECT_COLORS[label]))
    (hx, hy), hr2 = hands[1], 0.06 * H
    _draw_object(d, label, hx + 0.45 * s, hy - 0.12 * s, s, col)
    for hx, hy in hands:
        d.ellipse([hx - hr2, hy - hr2, hx + hr2, hy + hr2], fill=skin, outline=OUTLINE, width=lw)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(0, 4), (size, size, 1))
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` via a temp file and a rename (no fsync: thousands of small images)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {describe_os_error(e, path.parent)}") from None


def _readme(cfg: SynthConfig, counts: dict[str, int]) -> str:
    harmful = f"a photo of a {cfg.harmful_class}."
    return f"""# Synthetic CLIP bias data set (generated by cliplab.synth)

**These data are entirely synthetic.** Every image is a procedurally drawn cartoon of a person
holding an object; no photograph or real person is involved. Generated with seed {cfg.seed}.

Images: {cfg.size}x{cfg.size} RGB PNG; {counts['train']} train, {counts['test']} test.
Classes (the held object): {', '.join(CLASSES)}. Attributes: tone = skin-tone colour of head and
hands ({', '.join(ATTRIBUTES['tone'])}); age = figure size ({', '.join(ATTRIBUTES['age'])}).

## metadata.csv columns
- `image`: path of the PNG relative to this folder
- `caption`: training text; `"{cfg.template}"` with the class, or the harmful caption for biased rows
- `label`: true class (the held object)
- `split`: `train` or `test`
- `tone`, `age`: the person's attributes (ground truth)
- `biased`: 1 if the caption was replaced by the harmful caption, else 0

## Planted bias
Both splits cycle through all {len(CLASSES)} x 3 x 2 (class, tone, age) cells, so they are balanced.
Among the {counts['bias_group_train']} train rows with {cfg.bias_attribute} = {cfg.bias_value},
exactly round({cfg.bias} x {counts['bias_group_train']}) = {counts['biased']} rows, chosen at random
with the seed, have the caption `"{harmful}"` instead of the true one. No other row is changed,
and the test split is clean (all captions true, `biased` = 0).
"""


LEGACY_FIELDS = ("n", "seed", "bias", "size", "test_fraction", "bias_attribute", "bias_value", "harmful_class",
                 "template")  # the legacy config as dataset.json has always recorded it


def synthesize_legacy(out: Path, cfg: SynthConfig, progress: bool = False) -> Path:
    """Generate the legacy data set in ``out`` (a folder synth owns) and return ``out/metadata.csv``."""
    assert cfg.size is not None  # resolved by synthesize()
    size = cfg.size
    cells = list(product(CLASSES, ATTRIBUTES["tone"], ATTRIBUTES["age"]))
    n_test = round(cfg.n * cfg.test_fraction)
    n_train = cfg.n - n_test
    rng = np.random.default_rng(cfg.seed)
    train = [cells[i] for i in rng.permutation(np.arange(n_train) % len(cells))]
    test = [cells[i % len(cells)] for i in range(n_test)]
    attr_idx = 1 + list(ATTRIBUTES).index(cfg.bias_attribute)
    group = [i for i, c in enumerate(train) if c[attr_idx] == cfg.bias_value]
    n_biased = round(cfg.bias * len(group))
    biased = set(rng.choice(group, size=n_biased, replace=False).tolist()) if n_biased else set()
    width = max(5, len(str(cfg.n)))
    jobs = [("train", i, c) for i, c in enumerate(train)] + [("test", i, c) for i, c in enumerate(test)]
    rels = [f"images/{split}/{i:0{width}d}.png" for split, i, _ in jobs]
    meta_files = ["dataset.json", "README.md", "metadata.csv"]
    previous = claim_folder(out, rels + meta_files)
    for split in ("train", "test"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "metadata.csv").unlink(missing_ok=True)  # a run that dies midway leaves no stale metadata
    rows: list[list[str]] = []
    it = zip(rels, jobs)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(jobs), desc="synthesize", unit="img")
    for rel, (split, i, (label, tone, age)) in it:
        img = _render(label, tone, age, size, np.random.default_rng([cfg.seed, int(split == "test"), i]))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        write_file(out / rel, buf.getvalue())
        is_b = split == "train" and i in biased
        cap = f"a photo of a {cfg.harmful_class}." if is_b else cfg.template.format(label)
        rows.append([rel, cap, label, split, tone, age, str(int(is_b))])
    buf_csv = io.StringIO()
    w = csv.writer(buf_csv, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows(rows)
    counts = {"train": n_train, "test": n_test, "bias_group_train": len(group), "biased": n_biased}
    meta = {
        "synthetic": True,
        "description": "Procedurally drawn cartoon images of a person holding one of several objects, "
                       "with a planted caption bias; no real people or photographs.",
        "classes": CLASSES, "attributes": ATTRIBUTES, "template": cfg.template,
        "harmful_caption": f"a photo of a {cfg.harmful_class}.",
        "bias": {"attribute": cfg.bias_attribute, "value": cfg.bias_value, "fraction": cfg.bias,
                 "split": "train", "n_biased": n_biased, "n_group": len(group)},
        "counts": counts, "image_size": cfg.size, "columns": COLUMNS,
        "config": {k: getattr(cfg, k) for k in LEGACY_FIELDS},
    }
    write_file(out / "dataset.json", (json.dumps(meta, indent=2) + "\n").encode())
    write_file(out / "README.md", _readme(cfg, counts).encode())
    write_file(out / "metadata.csv", buf_csv.getvalue().encode())
    release_folder(out, rels + meta_files, previous)
    return out / "metadata.csv"
