"""Tests for cliplab.synth's legacy world (layout, balance, determinism, planted bias, learnability) and the
output folder rules; the scenes world: tests/synth/test_scenes.py."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliplab.errors import EXIT_OUTPUT, OutputError
from cliplab.synth import ATTRIBUTES, MARKER, SynthConfig, synthesize
from cliplab.synth.legacy import CLASSES

COLUMNS = ["image", "caption", "label", "split", "tone", "age", "biased"]
N = 480  # 384 train (8 per cell), 96 test (2 per cell)


def Legacy(**kwargs) -> SynthConfig:
    return SynthConfig(world="legacy", **kwargs)


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
    csv_path = synthesize(root, Legacy(n=N, seed=0, bias=0.5))
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
    tmpl = Legacy().template
    for split in ("train", "test"):
        cells = Counter((r["label"], r["tone"], r["age"]) for r in rows if r["split"] == split)
        assert len(cells) == 48
        assert max(cells.values()) - min(cells.values()) <= 1
    test = [r for r in rows if r["split"] == "test"]
    assert all(r["biased"] == "0" and r["caption"] == tmpl.format(r["label"]) for r in test)


def test_deterministic(tmp_path: Path) -> None:
    cfg = Legacy(n=96, seed=3)
    a, b, c = (synthesize(tmp_path / k, cfg if k != "c" else Legacy(n=96, seed=4)) for k in "abc")
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
    cfg = Legacy(n=96, bias=bias, bias_attribute=attr, bias_value=value, harmful_class="criminal")
    rows = _rows(synthesize(tmp_path, cfg))
    group = [r for r in rows if r["split"] == "train" and r[attr] == value]
    biased = [r for r in rows if r["biased"] == "1"]
    assert len(biased) == round(bias * len(group))
    assert all(r in group and r["caption"] == "a photo of a criminal." for r in biased)


def test_images_rgb_and_size(ds: tuple, tmp_path: Path) -> None:
    root, rows, imgs = ds
    assert imgs.shape == (N, 32, 32, 3) and imgs.dtype == np.uint8
    assert all(Image.open(root / r["image"]).mode == "RGB" for r in rows[:20])
    rows48 = _rows(synthesize(tmp_path, Legacy(n=48, size=48)))
    assert all(Image.open(tmp_path / r["image"]).size == (48, 48) for r in rows48)


def test_legacy_world_is_byte_identical_to_the_first_release() -> None:
    """Digest of every file of the first world's output for one config (taken from cliplab before the
    scenes world existed): tests and bars that use the legacy world keep their data."""
    import hashlib
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        synthesize(d, Legacy(n=96, seed=5, bias=0.5))
        h = hashlib.sha256()
        for f in sorted(Path(d).rglob("*")):
            if f.is_file() and f.name != MARKER:
                h.update(f.relative_to(d).as_posix().encode())
                h.update(f.read_bytes())
    assert h.hexdigest() == "b3a159bce8cb539a8f1d9a6831ae234bd3259378cb8a434e7c69e950660fafeb"


def test_regenerate_drops_stale_images(tmp_path: Path) -> None:
    synthesize(tmp_path, Legacy(n=120))
    rows = _rows(synthesize(tmp_path, Legacy(n=60)))
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
    ({"world": "mars"}, "world"), ({"spurious": 1.5}, "spurious"), ({"styles": ("oil",)}, "styles"),
    ({"styles": ("blur", "blur")}, "styles"), ({"world": "legacy", "n": 47}, "n must be >= 48"),
])
def test_bad_config_raises(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as exc:
        synthesize(tmp_path, SynthConfig(**kwargs))
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "metadata.csv").exists()


# ------------------------------------------------------------------ the output folder (issue 12 item 2)
def test_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "images" / "train" / "00000.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own picture")
    (tmp_path / "README.md").write_text("my notes")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(OutputError, match="not written by cliplab synth") as exc:
        synthesize(tmp_path, Legacy(n=48))
    assert "\n" not in str(exc.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert mine.read_bytes() == b"the user's own picture" and (tmp_path / "README.md").read_text() == "my notes"


@pytest.mark.parametrize("world", ["legacy", "scenes"])
def test_rerun_keeps_files_it_does_not_own(tmp_path: Path, world: str) -> None:
    synthesize(tmp_path, SynthConfig(world=world, n=200, styles=("blur",)))
    user_image = tmp_path / "images" / "train" / "my-photo.png"
    user_image.write_bytes(b"mine")
    (tmp_path / "notes.txt").write_text("keep me")
    rows = _rows(synthesize(tmp_path, SynthConfig(world=world, n=100, styles=())))
    assert user_image.read_bytes() == b"mine" and (tmp_path / "notes.txt").read_text() == "keep me"
    owned = {tmp_path / r["image"] for r in rows}
    assert set(tmp_path.glob("images/*/*.png")) == owned | {user_image}  # stale own images removed
    marker = json.loads((tmp_path / MARKER).read_text())
    assert marker["complete"] is True and "images/train/my-photo.png" not in marker["files"]


def test_a_marker_cannot_make_it_delete_outside_the_folder(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "precious.txt"
    outside.write_text("x")
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"files": ["../precious.txt", str(outside)]}))
    synthesize(out, Legacy(n=48))
    assert outside.read_text() == "x"


def test_out_under_a_regular_file_is_one_line_exit_5(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cliplab.cli import main

    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file" / "data", tmp_path / "file"):
        assert main(["synth", "--out", str(out), "--n", "96", "--quiet"]) == EXIT_OUTPUT
        err = capsys.readouterr().err.strip()
        assert err.startswith("cliplab: error: ") and "\n" not in err and "Traceback" not in err
    assert main(["synth", "--out", str(tmp_path / "new"), "--world", "legacy", "--n", "48", "--quiet"]) == 0
    assert json.loads((tmp_path / "new" / "dataset.json").read_text())["classes"] == CLASSES
