"""Synthetic data with a known truth (``cliplab synth``): procedurally drawn people holding things.

The project's stand-in for FairFace-style data: every image is drawn from code, the ground truth
is known exactly, and harms are planted on purpose so audits have a known answer. Two worlds:
``scenes`` (the default; cliplab/synth/scenes.py) and ``legacy`` (the first one, kept byte-identical).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .config import ATTRIBUTES, STYLES, WORLDS, SynthConfig
from .legacy import CLASSES as LEGACY_CLASSES
from .legacy import synthesize_legacy
from .output import MARKER
from .scenes import EVAL_TEMPLATE, synthesize_scenes
from .vocab import CLASSES

__all__ = ["ATTRIBUTES", "CLASSES", "EVAL_TEMPLATE", "LEGACY_CLASSES", "MARKER", "STYLES", "WORLDS", "SynthConfig",
           "heldout_lists", "synthesize"]


def synthesize(out_dir: str | Path, config: SynthConfig | None = None, progress: bool = False) -> Path:
    """Generate the data set in ``out_dir`` and return the path to ``out_dir/metadata.csv``.

    ``config`` defaults to ``SynthConfig()`` (the scenes world, 3,000 images, seed 0, no planted bias).
    Refuses (OutputError) a non-empty folder that an earlier ``cliplab synth`` did not write; in one it
    did, it replaces its own files and leaves any other file alone.
    """
    cfg = (config or SynthConfig()).resolved()
    out = Path(out_dir).expanduser()
    if cfg.world == "legacy":
        return synthesize_legacy(out, cfg, progress)
    return synthesize_scenes(out, cfg, progress)


def heldout_lists(dataset: str | Path) -> dict[str, list[str]]:
    """The zero-shot lists of a scenes-world data set: class names, templates and their held-out versions.

    ``dataset`` is the data folder, its metadata.csv or its dataset.json. Keys: ``classnames``,
    ``templates`` (training templates), ``heldout_classnames`` (in class order; the truth is the
    ``heldout_name`` column) and ``heldout_templates``.
    """
    path = Path(dataset).expanduser()
    path = path if path.name == "dataset.json" else (path if path.is_dir() else path.parent) / "dataset.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        held = meta["heldout"]
        return {"classnames": list(meta["classes"]), "templates": list(meta["templates"]),
                "heldout_classnames": [held["class_names"][c] for c in meta["classes"]],
                "heldout_templates": list(held["templates"])}
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (written by cliplab synth beside metadata.csv)") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a scenes-world dataset.json (no held-out lists); "
                         "generate the data with `cliplab synth` (world scenes)") from None
