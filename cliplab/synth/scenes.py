"""The scenes world (the default of ``cliplab synth``): shape carries the class, everything else varies.

A person (skin tone, child or adult) holds one of 16 shapes on a cluttered park, beach, room or night
scene; the shape's colour, size, pose and place are random per image. Captions come from 24
templates and 6 names per class and describe the person in ways that teach the age and tone words;
held-out templates and names that no training caption uses are listed in ``dataset.json``. Planted,
documented phenomena with a known truth: a fraction B of one group's training captions replaced by a
harmful caption, and a train-only correlation between scene and class that the test split breaks.
The test split is also rendered in shifted styles (one extra split per style).
"""
from __future__ import annotations

import csv
import io
import json
from itertools import product
from pathlib import Path

import numpy as np

from .config import ATTRIBUTES, STYLES, SynthConfig
from .legacy import write_file
from .output import claim_folder, release_folder
from .render import finish, render
from .vocab import (
    AGE_WORDS,
    CLASSES,
    HELDOUT_NAMES,
    HELDOUT_TEMPLATES,
    PERSON_MIX,
    SCENES,
    TONE_WORDS,
    TRAIN_NAMES,
    TRAIN_TEMPLATES,
    person_phrase,
    zero_shot_templates,
)

COLUMNS = ["image", "caption", "label", "heldout_name", "split", "style", "tone", "age", "scene", "biased"]
CLASS_SCENE = {c: SCENES[i % len(SCENES)] for i, c in enumerate(CLASSES)}  # the spurious pairing (train)
EVAL_TEMPLATE = "a photo of a person holding a {}."  # the template training evaluates zero-shot with
LISTS = {"classes.txt": CLASSES, "heldout-classes.txt": [HELDOUT_NAMES[c] for c in CLASSES],
         "templates.txt": zero_shot_templates(TRAIN_TEMPLATES), "heldout-templates.txt": HELDOUT_TEMPLATES}


def _caption(label: str, tone: str, age: str, rng: np.random.Generator) -> str:
    template = TRAIN_TEMPLATES[int(rng.integers(len(TRAIN_TEMPLATES)))]
    names = TRAIN_NAMES[label]
    kind = int(rng.choice(len(PERSON_MIX), p=PERSON_MIX))
    person = person_phrase(age, tone, kind, int(rng.integers(12)))
    return template.replace("{person}", person).replace("{}", names[int(rng.integers(len(names)))])


def _plan(cfg: SynthConfig) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Every row of metadata.csv but the style splits, and the counts of the planted phenomena."""
    cells = list(product(CLASSES, ATTRIBUTES["tone"], ATTRIBUTES["age"]))
    n_test = round(cfg.n * cfg.test_fraction)
    n_train = cfg.n - n_test
    rng = np.random.default_rng([cfg.seed, 99])
    rows: list[dict[str, str]] = []
    for i, c in enumerate(cells[k] for k in rng.permutation(np.arange(n_train) % len(cells))):
        aligned = rng.random() < cfg.spurious
        scene = CLASS_SCENE[c[0]] if aligned else SCENES[int(rng.integers(len(SCENES)))]
        rows.append({"split": "train", "i": str(i), "label": c[0], "tone": c[1], "age": c[2], "scene": scene})
    for i in range(n_test):  # cycles through the cells; scenes rotate independently of the class
        c = cells[i % len(cells)]
        scene = SCENES[(i % len(cells) + i // len(cells)) % len(SCENES)]
        rows.append({"split": "test", "i": str(i), "label": c[0], "tone": c[1], "age": c[2], "scene": scene})
    for r in rows:
        r["caption"] = _caption(r["label"], r["tone"], r["age"], rng)
        r["biased"] = "0"
    group = [j for j, r in enumerate(rows) if r["split"] == "train" and r[cfg.bias_attribute] == cfg.bias_value]
    n_biased = round(cfg.bias * len(group))
    for j in (rng.choice(group, size=n_biased, replace=False).tolist() if n_biased else []):
        rows[j].update(caption=f"a photo of a {cfg.harmful_class}.", biased="1")
    aligned_train = sum(r["scene"] == CLASS_SCENE[r["label"]] for r in rows if r["split"] == "train")
    counts = {"train": n_train, "test": n_test, "bias_group_train": len(group), "biased": n_biased,
              "train_scene_aligned": aligned_train}
    return rows, counts


def synthesize_scenes(out: Path, cfg: SynthConfig, progress: bool = False) -> Path:
    """Generate the scenes world in ``out`` (a folder synth owns) and return ``out/metadata.csv``."""
    assert cfg.size is not None  # resolved by synthesize()
    rows, counts = _plan(cfg)
    width = max(5, len(str(cfg.n)))
    splits = ["train", "test", *(f"test-{s}" for s in cfg.styles)]
    rel = lambda split, r: f"images/{split}/{int(r['i']):0{width}d}.png"
    rels = [rel(r["split"], r) for r in rows] + [rel(f"test-{s}", r) for s in cfg.styles for r in rows
                                                  if r["split"] == "test"]
    meta_files = ["dataset.json", "README.md", "metadata.csv", *LISTS]
    previous = claim_folder(out, rels + meta_files)
    for split in splits:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "metadata.csv").unlink(missing_ok=True)  # a run that dies midway leaves no stale metadata
    table: dict[str, list[list[str]]] = {split: [] for split in splits}
    it = rows
    if progress:
        from tqdm import tqdm
        it = tqdm(rows, desc="synthesize", unit="scene")
    for r in it:
        split_code, i = (0 if r["split"] == "train" else 1), int(r["i"])
        canvas = render(r["label"], r["tone"], r["age"], r["scene"], cfg.size,
                        np.random.default_rng([cfg.seed, split_code, i]))
        styles = ["clean", *cfg.styles] if r["split"] == "test" else ["clean"]
        for style in styles:
            split = r["split"] if style == "clean" else f"test-{style}"
            code = 0 if style == "clean" else 1 + STYLES.index(style)  # a style's noise: same in any subset
            img = finish(*canvas, cfg.size, style, np.random.default_rng([cfg.seed, split_code, i, code]))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            write_file(out / rel(split, r), buf.getvalue())
            table[split].append([rel(split, r), r["caption"], r["label"], HELDOUT_NAMES[r["label"]], split, style,
                                 r["tone"], r["age"], r["scene"], r["biased"]])
    buf_csv = io.StringIO()
    w = csv.writer(buf_csv, lineterminator="\n")
    w.writerow(COLUMNS)
    for split in splits:
        w.writerows(table[split])
    for name, items in LISTS.items():
        write_file(out / name, ("\n".join(items) + "\n").encode())
    write_file(out / "dataset.json", (json.dumps(_meta(cfg, counts), indent=2) + "\n").encode())
    write_file(out / "README.md", _readme(cfg, counts).encode())
    write_file(out / "metadata.csv", buf_csv.getvalue().encode())
    release_folder(out, rels + meta_files, previous)
    return out / "metadata.csv"


def _meta(cfg: SynthConfig, counts: dict[str, int]) -> dict:
    return {
        "synthetic": True, "world": "scenes",
        "description": "Procedurally drawn scenes of a person holding one of 16 shapes in a random colour, "
                       "with planted phenomena of known truth; no real people or photographs.",
        "classes": CLASSES, "attributes": ATTRIBUTES, "template": EVAL_TEMPLATE,
        "templates": zero_shot_templates(TRAIN_TEMPLATES), "caption_templates": TRAIN_TEMPLATES,
        "class_names": TRAIN_NAMES,
        "heldout": {"templates": HELDOUT_TEMPLATES, "class_names": HELDOUT_NAMES, "label_column": "heldout_name"},
        "person_words": {"age": AGE_WORDS, "tone": TONE_WORDS, "mix": dict(zip(["generic", "age", "age+tone"],
                                                                               PERSON_MIX))},
        "harmful_caption": f"a photo of a {cfg.harmful_class}.",
        "bias": {"attribute": cfg.bias_attribute, "value": cfg.bias_value, "fraction": cfg.bias, "split": "train",
                 "n_biased": counts["biased"], "n_group": counts["bias_group_train"]},
        "spurious": {"attribute": "scene", "class_scene": CLASS_SCENE, "strength": cfg.spurious, "split": "train",
                     "n_aligned": counts["train_scene_aligned"], "test": "scene independent of class"},
        "styles": list(cfg.styles), "style_splits": [f"test-{s}" for s in cfg.styles],
        "counts": counts, "image_size": cfg.size, "columns": COLUMNS,
        "config": {**{k: v for k, v in vars(cfg).items() if k != "template"}, "styles": list(cfg.styles)},
    }


def _readme(cfg: SynthConfig, counts: dict[str, int]) -> str:
    styles = ", ".join(f"`test-{s}`" for s in cfg.styles) or "none"
    return f"""# Synthetic CLIP data set, scenes world (generated by cliplab synth)

**These data are entirely synthetic.** Every image is a procedurally drawn cartoon of a person holding a
shape on a cluttered scene; no photograph or real person is involved. Generated with seed {cfg.seed}.

Images: {cfg.size}x{cfg.size} RGB PNG; {counts['train']} train, {counts['test']} test, and the test images
again in each shifted style ({styles}).

- Class = the shape held ({len(CLASSES)}: {', '.join(CLASSES)}). Its colour, size, rotation, mirroring and
  place are random per image, so only the shape tells the classes apart.
- tone = skin colour of head and hands ({', '.join(ATTRIBUTES['tone'])}); age = figure size and head
  proportion ({', '.join(ATTRIBUTES['age'])}). scene = background ({', '.join(SCENES)}), with clutter.
- Captions: {len(TRAIN_TEMPLATES)} templates x 6 names per class; the person is "a person" in
  {PERSON_MIX[0]:.0%} of captions, named by age ("a child", "an adult", ...) in {PERSON_MIX[1]:.0%}, by tone and
  age ("a dark-skinned child") in {PERSON_MIX[2]:.0%}.
- Held out (no training caption uses them; `dataset.json` "heldout"): {len(HELDOUT_TEMPLATES)} templates
  (`heldout-templates.txt`) and one class name per class (`heldout-classes.txt`, column `heldout_name`).
  `templates.txt` holds the training templates in zero-shot form, `classes.txt` the class names.

## metadata.csv columns
`image`, `caption` (training text), `label` (true class), `heldout_name`, `split` (`train`, `test`,
`test-STYLE`), `style` (`clean` or the style), `tone`, `age`, `scene`, `biased` (1: harmful caption).

## Planted phenomena (known truth)
- Caption harm: among the {counts['bias_group_train']} train rows with {cfg.bias_attribute} = {cfg.bias_value},
  exactly round({cfg.bias} x {counts['bias_group_train']}) = {counts['biased']} rows, chosen with the seed, have
  the caption `"a photo of a {cfg.harmful_class}."`. Test captions are all true.
- Spurious scene: in train, a share {cfg.spurious} of images is drawn on its class's scene
  ({counts['train_scene_aligned']} of {counts['train']} train images on their class's scene, counting chance
  matches; pairing in `dataset.json` "spurious"); in test the scene rotates independently of the class.
- Both splits cycle through all {len(CLASSES)} x 3 x 2 (class, tone, age) cells, so they are balanced.
"""
