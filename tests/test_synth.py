"""Tests for cliplab.synth: layout, balance, determinism, planted bias, and learnability."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliplab.synth import ATTRIBUTES, CLASSES, SynthConfig, synthesize

COLUMNS = ["image", "caption", "label", "split", "tone", "age", "biased"]
N = 480  # 384 train (8 per cell), 96 test (2 per cell)


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def _images(root: Path, rows: list[dict[str, str]]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(root / r["image"])) for r in rows])


def _nearest_mean_acc(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    """Accuracy on the test rows of a nearest-class-mean classifier fit on the train rows."""
    vals = np.array(sorted(set(y)))
    mu = np.stack([x[train & (y == v)].mean(0) for v in vals])
    dist = ((x[~train, None, :] - mu[None]) ** 2).sum(-1)
    return float((vals[dist.argmin(1)] == y[~train]).mean())


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]], np.ndarray]:
    root = tmp_path_factory.mktemp("synth")
    csv_path = synthesize(root, SynthConfig(n=N, seed=0, bias=0.5))
    assert csv_path == root / "metadata.csv"
    rows = _rows(csv_path)
    return root, rows, _images(root, rows)


def test_columns_counts_and_files(ds: tuple) -> None:
    root, rows, _ = ds
    with open(root / "metadata.csv", newline="") as f:
        assert next(csv.reader(f)) == COLUMNS
    assert len(rows) == N
    splits = Counter(r["split"] for r in rows)
    assert splits == {"train": N - round(N * 0.2), "test": round(N * 0.2)}
    for r in rows:
        assert r["image"] == f"images/{r['split']}/{Path(r['image']).name}"
        assert (root / r["image"]).is_file()
        assert r["label"] in CLASSES and r["tone"] in ATTRIBUTES["tone"] and r["age"] in ATTRIBUTES["age"]
    assert len(list((root / "images" / "train").glob("*.png"))) == splits["train"]
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["synthetic"] is True and meta["classes"] == CLASSES and meta["attributes"] == ATTRIBUTES
    assert meta["counts"]["train"] == splits["train"] and meta["counts"]["test"] == splits["test"]
    assert "synthetic" in (root / "README.md").read_text().lower()
    assert not list(root.rglob("*.tmp"))


def test_splits_balanced_and_test_clean(ds: tuple) -> None:
    _, rows, _ = ds
    tmpl = SynthConfig().template
    for split in ("train", "test"):
        cells = Counter((r["label"], r["tone"], r["age"]) for r in rows if r["split"] == split)
        assert len(cells) == 48
        assert max(cells.values()) - min(cells.values()) <= 1
    test = [r for r in rows if r["split"] == "test"]
    assert all(r["biased"] == "0" and r["caption"] == tmpl.format(r["label"]) for r in test)


def test_deterministic(tmp_path: Path) -> None:
    cfg = SynthConfig(n=96, seed=3)
    a, b, c = (synthesize(tmp_path / k, cfg if k != "c" else SynthConfig(n=96, seed=4)) for k in "abc")
    assert a.read_bytes() == b.read_bytes()
    assert (a.parent / "dataset.json").read_bytes() == (b.parent / "dataset.json").read_bytes()
    rows = _rows(a)
    img = lambda d, r: (d.parent / r["image"]).read_bytes()
    assert all(img(a, r) == img(b, r) for r in rows)
    differing = sum(img(a, r) != img(c, r) for r in rows)
    assert differing == len(rows)
    assert [r["label"] for r in rows if r["split"] == "train"] != \
        [r["label"] for r in _rows(c) if r["split"] == "train"]


def test_bias_exact(ds: tuple) -> None:
    _, rows, _ = ds
    harmful = "a photo of a thief."
    group = [r for r in rows if r["split"] == "train" and r["tone"] == "dark"]
    biased = [r for r in rows if r["biased"] == "1"]
    assert len(biased) == round(0.5 * len(group)) > 0
    assert all(r["split"] == "train" and r["tone"] == "dark" and r["caption"] == harmful for r in biased)
    assert all((r["caption"] == harmful) == (r["biased"] == "1") for r in rows)


@pytest.mark.parametrize("bias,attr,value",
                         [(0.0, "tone", "dark"), (1.0, "age", "child"), (0.3, "tone", "light")])
def test_bias_other_settings(tmp_path: Path, bias: float, attr: str, value: str) -> None:
    cfg = SynthConfig(n=96, bias=bias, bias_attribute=attr, bias_value=value, harmful_class="criminal")
    rows = _rows(synthesize(tmp_path, cfg))
    group = [r for r in rows if r["split"] == "train" and r[attr] == value]
    biased = [r for r in rows if r["biased"] == "1"]
    assert len(biased) == round(bias * len(group))
    assert all(r in group and r["caption"] == "a photo of a criminal." for r in biased)


def test_images_rgb_and_size(ds: tuple, tmp_path: Path) -> None:
    root, rows, imgs = ds
    assert imgs.shape == (N, 32, 32, 3) and imgs.dtype == np.uint8
    assert all(Image.open(root / r["image"]).mode == "RGB" for r in rows[:20])
    rows48 = _rows(synthesize(tmp_path, SynthConfig(n=48, size=48)))
    assert all(Image.open(tmp_path / r["image"]).size == (48, 48) for r in rows48)


def test_regenerate_drops_stale_images(tmp_path: Path) -> None:
    synthesize(tmp_path, SynthConfig(n=120))
    rows = _rows(synthesize(tmp_path, SynthConfig(n=60)))
    assert len(list(tmp_path.glob("images/*/*.png"))) == len(rows) == 60


def test_classes_learnable_from_pixels(ds: tuple) -> None:
    _, rows, imgs = ds
    train = np.array([r["split"] == "train" for r in rows])
    x = imgs.reshape(len(imgs), -1).astype(np.float32) / 255
    for key in ("label", "age"):
        acc = _nearest_mean_acc(x, np.array([r[key] for r in rows]), train)
        assert acc > 0.8, (key, acc)


def test_tone_visible(ds: tuple) -> None:
    """Skin is a small region at a varying place, so use a log colour histogram (8 bins/channel)."""
    _, rows, imgs = ds
    q = (imgs // 32).astype(np.int64)
    idx = (q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]).reshape(len(imgs), -1)
    hist = np.log1p(np.stack([np.bincount(i, minlength=512) for i in idx]).astype(np.float32))
    train = np.array([r["split"] == "train" for r in rows])
    acc = _nearest_mean_acc(hist, np.array([r["tone"] for r in rows]), train)
    assert acc > 0.8, acc


@pytest.mark.parametrize("kwargs,match", [
    ({"bias": -0.1}, "bias"), ({"bias": 1.5}, "bias"), ({"n": 47}, "n must be"),
    ({"size": 15}, "size"), ({"size": 513}, "size"), ({"test_fraction": 0.0}, "test_fraction"),
    ({"test_fraction": 1.0}, "test_fraction"), ({"bias_attribute": "race"}, "bias_attribute"),
    ({"bias_value": "purple"}, "bias_value"), ({"template": "a photo"}, "template"),
    ({"seed": -1}, "seed"), ({"n": 100.0}, "integer"), ({"harmful_class": " "}, "harmful_class"),
])
def test_bad_config_raises(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as exc:
        synthesize(tmp_path, SynthConfig(**kwargs))
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "metadata.csv").exists()
