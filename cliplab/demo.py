"""The notebooks' shared set-up: synthetic data, a model trained on it, its embeddings, in one call.

``cliplab.demo.workspace()`` returns everything a notebook needs (data, run, model, settings), so
each notebook shows only its subject. The demo world is set in one place, the module constants
below (the synthetic data's settings and the training config), so it can be switched later.
The ``CLIPLAB_NB_*`` environment variables shorten it for the test suite:

- ``CLIPLAB_NB_WORKDIR``: the working folder (default ``./cliplab-notebooks``);
- ``CLIPLAB_NB_IMAGES``: synthetic images; ``CLIPLAB_NB_EPOCHS``: epochs of the training run;
- ``CLIPLAB_NB_TRAIN_CONFIG``: the training config file (default: ``TRAIN_CONFIG`` in the repository).

A training config that cannot be found is an error that says so, never a run with other settings.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError
from .synth import CLASSES as SCENE_CLASSES
from .synth import SynthConfig

if TYPE_CHECKING:  # pragma: no cover
    from .data import ImageSet
    from .embed import ImageEmbeddings
    from .models import LoadedModel
    from .train import TrainConfig

# ---- the demo world: change these to switch data or model for every notebook ----------------
SYNTH = SynthConfig(n=10000, seed=0, bias=0.2)  # the scenes world; 20% of dark-tone training captions "thief"
TRAIN_CONFIG = "training/configs/minilm-synthetic.yaml"  # relative to the repository (or an absolute path)
MODEL = "cliplab-minilm"  # a locked pretrained MiniLM text tower and a small image tower trained here
CLASSES = list(SCENE_CLASSES)
GROUP_BY = ["tone", "age"]
FLAGGED = ["thief"]  # harmful labels offered to the classifier next to the classes
TEMPLATE = "a photo of a person holding a {}."  # the zero-shot template ("{}" = class name)
LABEL_COLUMN = "label"
RUN_NAME = "run-minilm"


@dataclass
class Workspace:
    """What :func:`workspace` returns: paths, the audited images, the model and the demo's settings."""

    root: Path
    data_csv: Path | None
    run: Path | None
    images: ImageSet  # the synthetic test split, or the user's images
    loaded: LoadedModel
    classnames: list[str] = field(default_factory=lambda: list(CLASSES))
    group_by: list[str] = field(default_factory=lambda: list(GROUP_BY))
    flagged: list[str] = field(default_factory=lambda: list(FLAGGED))
    template: str = TEMPLATE
    label_column: str = LABEL_COLUMN

    @property
    def cache(self) -> Path:
        """The embedding and projection caches of this workspace."""
        return self.root / "cache"

    def embeddings(self) -> ImageEmbeddings:
        """The images' embeddings (computed once, then read from the workspace's cache)."""
        from .embed import embed_images

        return embed_images(self.loaded, self.images, cache_dir=self.cache, progress=False)


def workdir() -> Path:
    """The notebooks' working folder (created): ``CLIPLAB_NB_WORKDIR`` or ``./cliplab-notebooks``."""
    root = Path(os.environ.get("CLIPLAB_NB_WORKDIR", "cliplab-notebooks")).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def synth_config() -> SynthConfig:
    """``SYNTH``, with ``CLIPLAB_NB_IMAGES`` images when that is set."""
    n = os.environ.get("CLIPLAB_NB_IMAGES")
    return SynthConfig(**{**SYNTH.__dict__, "n": int(n)}) if n else SYNTH


def synthetic_data(root: Path | None = None) -> Path:
    """The synthetic data set's manifest in ``root`` (made on first use)."""
    from .synth import synthesize

    csv = (root or workdir()) / "data" / "metadata.csv"
    if not csv.is_file():
        synthesize(csv.parent, synth_config())
    return csv


def repo_file(relative: str) -> Path | None:
    """``relative`` (e.g. ``audits/synthetic-people.yaml``) in the working folder or a parent of it, else in the
    source tree this package was installed from; None when it is in none of them."""
    if Path(relative).is_absolute():
        return Path(relative) if Path(relative).is_file() else None
    here = Path.cwd()
    candidates = [p / relative for p in (here, *here.parents, Path(__file__).resolve().parents[1])]
    return next((p for p in candidates if p.is_file()), None)


def audit_file(name: str) -> Path:
    """A label set shipped in the repository's ``audits/`` folder (``"synthetic-people.yaml"``)."""
    found = repo_file(f"audits/{name}")
    if found is None:
        raise InputError(f"cannot find audits/{name} (looked in {Path.cwd()}, its parents and the cliplab source "
                         "tree): start JupyterLab from the repository")
    return found


def train_config_path() -> Path:
    """The training config: ``CLIPLAB_NB_TRAIN_CONFIG``, else ``TRAIN_CONFIG`` found from here or the package."""
    given = os.environ.get("CLIPLAB_NB_TRAIN_CONFIG")
    if given:
        if not Path(given).is_file():
            raise InputError(f"CLIPLAB_NB_TRAIN_CONFIG={given} is not a file")
        return Path(given)
    found = repo_file(TRAIN_CONFIG)
    if found is None:
        raise InputError(f"cannot find the training config {TRAIN_CONFIG} (looked in {Path.cwd()}, its parents "
                         "and the cliplab source tree): start JupyterLab from the repository or set "
                         "CLIPLAB_NB_TRAIN_CONFIG; not training with other settings")
    return found


def train_config(data_csv: Path, run: Path) -> TrainConfig:
    """The demo's :class:`cliplab.TrainConfig` (``TRAIN_CONFIG`` plus data, output, quiet progress)."""
    from .train import load_train_config

    epochs = os.environ.get("CLIPLAB_NB_EPOCHS")
    overrides = {"data": str(data_csv), "out": str(run), "model": MODEL, "progress": "false",
                 "tensorboard": "false", **({"epochs": epochs} if epochs else {})}
    return load_train_config(train_config_path(), overrides)


def log_to_output() -> contextlib.AbstractContextManager:
    """Show the trainer's log (written to stderr) as normal cell output, not as a red warning box."""
    return contextlib.redirect_stderr(sys.stdout)


def demo_run(root: Path | None = None) -> Path:
    """The demo model's run folder in ``root``, trained on first use (the log goes to normal output)."""
    from .train import train

    root = root or workdir()
    run = root / RUN_NAME
    if not (run / "final").is_dir():
        config = train_config(synthetic_data(root), run)
        print(f"training {config.model} for {config.epochs} epochs ({train_config_path()}) into {run}")
        with log_to_output():
            train(config)
    return run


def projection_method() -> str:
    """The map's projection: ``umap``, or ``CLIPLAB_NB_PROJECTION`` (``pca`` is instant)."""
    return os.environ.get("CLIPLAB_NB_PROJECTION", "umap")


def held_out(csv: Path) -> ImageSet:
    """The ``split == test`` rows of a synthetic manifest as an ImageSet."""
    from .data import ImageSet, read_images

    everything = read_images(csv)
    recs = everything.records
    return ImageSet(recs[recs["split"] == "test"].reset_index(drop=True), everything.source)


def workspace(model: str | None = None, pretrained: str | None = None, images: str | Path | None = None,
              root: str | Path | None = None) -> Workspace:
    """Data, run and model for a notebook: the demo's (made on first use) or the ones given.

    ``model``/``pretrained``: a CLIP to load (``"ViT-B-32", "laion2b_s34b_b79k"``); None: the demo
    model (``MODEL``) trained on the synthetic data. ``images``: a folder or manifest; None: the synthetic test split.
    """
    from .data import read_images
    from .models import load_model

    base = Path(root).expanduser().resolve() if root else workdir()
    base.mkdir(parents=True, exist_ok=True)
    data_csv = synthetic_data(base) if images is None else None
    image_set = read_images(images) if images is not None else held_out(synthetic_data(base))
    run = None if pretrained else demo_run(base)
    loaded = load_model(model, pretrained) if pretrained else load_model(pretrained=str(run))
    ws = Workspace(base, data_csv, run, image_set, loaded)
    print(f"{len(image_set)} images; model {loaded.identity}; working in {base}")
    return ws
