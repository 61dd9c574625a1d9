"""Tests for the scenes world (cliplab.synth.scenes): layout, balance, determinism, held-out lists, styles,
planted phenomena, and that colour does not carry the class."""
from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliplab.errors import InputError
from cliplab.synth import STYLES, SynthConfig, heldout_lists, synthesize
from cliplab.synth.scenes import CLASS_SCENE, COLUMNS
from cliplab.synth.vocab import (
    AGE_WORDS,
    CLASSES,
    HELDOUT_NAMES,
    HELDOUT_TEMPLATES,
    PERSON_MIX,
    TONE_WORDS,
    TRAIN_TEMPLATES,
    mentions,
)

N = 480  # 384 train (4 per cell), 96 test (1 per cell), and 96 per style


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    root = tmp_path_factory.mktemp("scenes")
    csv_path = synthesize(root, SynthConfig(n=N, seed=0, bias=0.5))
    return root, _rows(csv_path)


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_lists(ds: tuple) -> None:
    root, rows = ds
    with open(root / "metadata.csv", newline="") as f:
        assert next(csv.reader(f)) == COLUMNS
    splits = Counter(r["split"] for r in rows)
    assert splits == {"train": 384, "test": 96, **{f"test-{s}": 96 for s in STYLES}}
    assert all((root / r["image"]).is_file() and r["image"].startswith(f"images/{r['split']}/") for r in rows)
    assert {r["style"] for r in rows if r["split"] in ("train", "test")} == {"clean"}
    assert all(r["style"] == r["split"][len("test-"):] for r in rows if r["split"].startswith("test-"))
    assert all(Image.open(root / r["image"]).size == (48, 48) for r in rows[::50])
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["world"] == "scenes" and meta["synthetic"] is True and len(meta["classes"]) >= 16
    assert len(meta["templates"]) >= 20 and all(len(v) >= 2 for v in meta["class_names"].values())
    lists = heldout_lists(root / "metadata.csv")
    assert lists == heldout_lists(root) == heldout_lists(root / "dataset.json")
    assert lists["classnames"] == meta["classes"] and lists["heldout_templates"] == HELDOUT_TEMPLATES
    assert all(r["heldout_name"] == HELDOUT_NAMES[r["label"]] for r in rows)
    for name, key in [("classes.txt", "classnames"), ("heldout-classes.txt", "heldout_classnames"),
                      ("templates.txt", "templates"), ("heldout-templates.txt", "heldout_templates")]:
        assert (root / name).read_text().splitlines() == lists[key]
    assert "synthetic" in (root / "README.md").read_text().lower()
    assert not list(root.rglob("*.tmp"))


def test_heldout_lists_of_other_folders_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        heldout_lists(tmp_path)
    synthesize(tmp_path / "legacy", SynthConfig(world="legacy", n=48))
    with pytest.raises(InputError, match="not a scenes-world"):
        heldout_lists(tmp_path / "legacy" / "metadata.csv")


def test_splits_balanced_and_test_clean(ds: tuple) -> None:
    _, rows = ds
    for split in ("train", "test"):
        cells = Counter((r["label"], r["tone"], r["age"]) for r in rows if r["split"] == split)
        assert len(cells) == 16 * 3 * 2 and max(cells.values()) - min(cells.values()) <= 1
    test = [r for r in rows if r["split"].startswith("test")]
    assert all(r["biased"] == "0" and r["caption"] != "a photo of a thief." for r in test)


def test_heldout_templates_and_names_never_in_training_captions(ds: tuple) -> None:
    _, rows = ds
    train = [r["caption"] for r in rows if r["split"] == "train"]
    for name in HELDOUT_NAMES.values():
        assert not any(mentions(c, name) for c in train), name
    for t in HELDOUT_TEMPLATES:
        pattern = re.compile(re.escape(t).replace(r"\{\}", ".+"))
        assert not any(pattern.fullmatch(c) for c in train), t
    # the captions really are written many ways: >= 20 templates seen, >= 2 names per class
    names_seen = {c: {n for n in json.loads((ds[0] / "dataset.json").read_text())["class_names"][c]
                      if any(mentions(r["caption"], n) for r in rows if r["split"] == "train" and r["label"] == c)}
                  for c in CLASSES}
    assert all(len(v) >= 2 for v in names_seen.values()), names_seen
    assert len({re.sub(r"^(a|an) .*? (holding|with)", "", c) for c in train}) > 100


def test_person_words_match_the_figure(ds: tuple) -> None:
    """Age and tone words in captions always describe the drawn figure, so the model can learn them."""
    _, rows = ds
    train = [r for r in rows if r["split"] == "train" and r["biased"] == "0"]
    n_age = 0
    for r in train:
        for age, words in AGE_WORDS.items():
            if any(mentions(r["caption"], w) for w in words):
                assert r["age"] == age, r
                n_age += 1
        for tone, words in TONE_WORDS.items():
            if any(mentions(r["caption"], w) for w in words):
                assert r["tone"] == tone, r
    expected = np.mean(["{person}" in t for t in TRAIN_TEMPLATES]) * (1 - PERSON_MIX[0])
    assert abs(n_age / len(train) - expected) < 0.08, (n_age / len(train), expected)  # about a third


def test_bias_exact(ds: tuple, tmp_path: Path) -> None:
    _, rows = ds
    group = [r for r in rows if r["split"] == "train" and r["tone"] == "dark"]
    biased = [r for r in rows if r["biased"] == "1"]
    assert len(biased) == round(0.5 * len(group)) > 0
    assert all(r in group and r["caption"] == "a photo of a thief." for r in biased)
    rows0 = _rows(synthesize(tmp_path, SynthConfig(n=200, styles=(), bias=0.0)))
    assert not any(r["biased"] == "1" or "thief" in r["caption"] for r in rows0)


def test_spurious_scene_in_train_broken_in_test(ds: tuple) -> None:
    _, rows = ds
    train = [r for r in rows if r["split"] == "train"]
    aligned = np.mean([r["scene"] == CLASS_SCENE[r["label"]] for r in train])
    assert 0.55 < aligned < 0.72  # 0.5 + 0.5 / 4 expected
    test = [r for r in rows if r["split"] == "test"]
    per_class = Counter((r["label"], r["scene"]) for r in test)
    assert max(per_class.values()) - min(per_class.values()) <= 1 and len(per_class) == 16 * 4


def test_deterministic_per_seed(tmp_path: Path) -> None:
    cfg = SynthConfig(n=120, seed=3, bias=0.3)
    a, b = synthesize(tmp_path / "a", cfg).parent, synthesize(tmp_path / "b", cfg).parent
    c = synthesize(tmp_path / "c", SynthConfig(n=120, seed=4, bias=0.3)).parent
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db
    images = [k for k in da if k.endswith(".png")]
    assert len(images) == 120 + 5 * 24 and all(da[k] != dc[k] for k in images)
    only_blur = _digest(synthesize(tmp_path / "d", SynthConfig(n=120, seed=3, bias=0.3, styles=("blur",))).parent)
    assert all(only_blur[k] == da[k] for k in only_blur if k.startswith("images/"))  # a style is the same alone


def test_styles_are_shifted_renderings(ds: tuple) -> None:
    root, rows = ds
    clean = {Path(r["image"]).name: np.asarray(Image.open(root / r["image"]), dtype=np.float32)
             for r in rows if r["split"] == "test"}
    for style in STYLES:
        imgs = {Path(r["image"]).name: np.asarray(Image.open(root / r["image"]), dtype=np.float32)
                for r in rows if r["split"] == f"test-{style}"}
        assert imgs.keys() == clean.keys()
        diff = np.mean([np.abs(imgs[k] - clean[k]).mean() for k in clean])
        assert diff > 8, (style, diff)
    sil = np.stack([np.asarray(Image.open(root / r["image"])) for r in rows if r["split"] == "test-silhouette"])
    assert (sil[..., 0] == sil[..., 2]).all() and np.mean((sil > 40) & (sil < 215)) < 0.1  # black on white


def test_colour_does_not_carry_the_class(ds: tuple) -> None:
    """Nearest-class-mean on a colour histogram: near chance for the class, well above it for the tone."""
    root, rows = ds
    rows = [r for r in rows if r["split"] in ("train", "test")]
    imgs = np.stack([np.asarray(Image.open(root / r["image"])) for r in rows])
    q = (imgs // 32).astype(np.int64)
    idx = (q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]).reshape(len(imgs), -1)
    hist = np.log1p(np.stack([np.bincount(i, minlength=512) for i in idx]).astype(np.float32))
    train = np.array([r["split"] == "train" for r in rows])

    def acc(key: str) -> float:
        y = np.array([r[key] for r in rows])
        vals = np.array(sorted(set(y)))
        mu = np.stack([hist[train & (y == v)].mean(0) for v in vals])
        pred = vals[((hist[~train, None, :] - mu[None]) ** 2).sum(-1).argmin(1)]
        return float((pred == y[~train]).mean())

    assert acc("label") < 0.2  # chance is 1/16
    assert acc("scene") > 0.8  # while the scene is plain to see


def test_shipped_audits_fit_the_world() -> None:
    from cliplab.audit import load_audit_spec

    audits = Path(__file__).resolve().parents[2] / "audits"
    spec = load_audit_spec(audits / "synthetic.yaml")
    assert [c for c in spec.classnames if c not in spec.flagged_classes] == CLASSES
    assert spec.class_prompts == {"thief": ["a photo of a thief."]} and spec.where == {"split": ("test",)}
    people = load_audit_spec(audits / "synthetic-people.yaml")
    child = load_audit_spec(audits / "synthetic-people-with-child.yaml")
    assert set(child.classnames) - set(people.classnames) == {"child"} and child.flagged == people.flagged
    adult_classes = [c for c in people.classnames if c not in people.flagged_classes]
    assert adult_classes == [f"{t}-skinned adult" for t in ("light", "medium", "dark")]
