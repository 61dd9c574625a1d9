"""The CLIP paper's adaptation experiment in miniature: a broad pretraining set and a narrow target.

CLIP was pretrained on web images of every rendering; a logistic regression fitted on its ImageNet
features raised ImageNet accuracy but lowered effective robustness: the probe learns what is peculiar
to ImageNet, zero-shot does not. Here the pretraining manifest mixes clean images with all five styles
(world ``seed + 1``, every split), and the target world (``seed``) draws most training images on their
class's scene, a cue that holds in its own held-out training images (in-distribution) and in no shift:
its test split (scenes independent of the class) and the styled copies of that split.

    python -m cliplab.synth.adaptation --out DIR [--epochs 24]   # about 5 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..atomic import write_table
from ..errors import InputError
from .config import SynthConfig
from .scenes import synthesize_scenes

if TYPE_CHECKING:
    from ..robustness import RobustnessResult

ADAPT, IN_DISTRIBUTION, UNCORRELATED = "adapt", "in-distribution", "uncorrelated scenes"
SHIFT_COLUMN = "shift"
SPURIOUS, ADAPT_SHARE = 0.9, 0.75  # the target's scene cue; the share of its training images the probes fit on
TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "training" / "configs" / "minilm-synthetic.yaml"


@dataclass(frozen=True)
class AdaptationData:
    """Where :func:`adaptation_data` put its manifests (image paths relative to their folder)."""

    pretrain: Path  # every image of the broad world, clean and styled, as split=train
    target: Path  # the target world with a 'shift' column: adapt, in-distribution, uncorrelated scenes, a style
    classes: Path  # the target's class names, one per line


def adaptation_data(out: str | Path, seed: int = 0, n_pretrain: int = 3000, n_target: int = 5000,
                    spurious: float = SPURIOUS, adapt_share: float = ADAPT_SHARE,
                    progress: bool = False) -> AdaptationData:
    """Write both worlds under ``out`` (``pretrain/``, ``target/``) and the two manifests beside them.

    ``adapt_share`` of the target's training images (in file order) are the probes' training rows
    (shift ``adapt``); the rest are the in-distribution test set. A setting out of range is an InputError,
    raised before anything is written.
    """
    broad_cfg, target_cfg = _configs(seed, n_pretrain, n_target, spurious, adapt_share)
    root = Path(out).expanduser()
    broad = _read(synthesize_scenes(root / "pretrain", broad_cfg, progress), "pretrain")
    broad["split"] = "train"
    target = _read(synthesize_scenes(root / "target", target_cfg, progress), "target")
    train = (target["split"] == "train").to_numpy()
    shift = np.where(target["split"] == "test", UNCORRELATED, target["style"]).astype(object)
    n_adapt = round(int(train.sum()) * adapt_share)
    shift[train] = np.where(np.arange(int(train.sum())) < n_adapt, ADAPT, IN_DISTRIBUTION)
    target[SHIFT_COLUMN] = shift
    return AdaptationData(write_table(root / "pretrain.csv", broad), write_table(root / "target.csv", target),
                          root / "target" / "classes.txt")


def _configs(seed: int, n_pretrain: int, n_target: int, spurious: float,
             adapt_share: float) -> tuple[SynthConfig, SynthConfig]:
    """The two worlds' settings, validated (one-line InputError)."""
    if not 0.0 < adapt_share < 1.0:
        raise InputError(f"adapt_share must be in (0, 1), got {adapt_share}")
    try:
        return (SynthConfig(n=n_pretrain, seed=seed + 1).resolved(),
                SynthConfig(n=n_target, seed=seed, spurious=spurious).resolved())
    except ValueError as e:
        raise InputError(str(e)) from None


def _read(manifest: Path, folder: str) -> pd.DataFrame:
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    table["image"] = folder + "/" + table["image"]
    return table


def run_adaptation(out: str | Path, epochs: int = 24, seed: int = 0, n_pretrain: int = 3000, n_target: int = 5000,
                   progress: bool = False, train_config: str | Path = TRAIN_CONFIG) -> RobustnessResult:
    """The whole experiment: both worlds, cliplab-minilm trained on the broad one (``train_config``, default
    the repository's minilm-synthetic.yaml), then `cliplab robustness` on the target (zero-shot against the
    probes fitted on its ``adapt`` rows); outputs in ``out/robustness``."""
    from ..data import read_images
    from ..models import load_model
    from ..robustness import RobustnessConfig, run_robustness, write_robustness
    from ..train import load_train_config, train

    if not Path(train_config).is_file():
        raise InputError(f"no training config {train_config} (it ships in the repository's training/configs/)")
    root = Path(out).expanduser()
    _configs(seed, n_pretrain, n_target, SPURIOUS, ADAPT_SHARE)  # every setting checked before any work
    overrides = {"data": str(root / "pretrain.csv"), "out": str(root / "run"), "epochs": str(epochs),
                 "seed": str(seed), "progress": str(progress).lower(), "tensorboard": "false"}
    config = load_train_config(train_config, overrides)
    data = adaptation_data(root, seed, n_pretrain, n_target, progress=progress)
    run = train(config).run_dir
    loaded = load_model(pretrained=str(run), device="cpu")
    target = read_images(data.target)
    evaluated = target.where(shift=[v for v in target.records[SHIFT_COLUMN].unique() if v != ADAPT])
    cfg = RobustnessConfig(classnames=str(data.classes), shift_column=SHIFT_COLUMN, id_value=IN_DISTRIBUTION,
                           seed=seed)
    result = run_robustness(loaded, evaluated, cfg, train=target.where(shift=ADAPT), progress=progress,
                            cache_dir=root / "cache")
    write_robustness(result, root / "robustness", pretrained=str(run))
    return result


def format_adaptation(result: RobustnessResult) -> str:
    """Top-1 per classifier and shift, and zero-shot's and the linear probe's effective robustness."""
    acc = result.shifts.pivot(index="classifier", columns="shift", values="acc1")
    acc = acc[[IN_DISTRIBUTION, *[c for c in acc.columns if c != IN_DISTRIBUTION]]]
    acc.columns = [c.removeprefix(f"{SHIFT_COLUMN}=") for c in acc.columns]
    order = list(result.shifts["classifier"].unique())
    lines = ["top-1 (adapt rows: the probes' training images; in-distribution: held-out images of the same kind)",
             acc.loc[order].to_string(float_format=lambda v: f"{v:.3f}"), "",
             "effective robustness against the probes' baseline line (95% bootstrap interval)"]
    for row in result.effective[result.effective["name"].isin(["zero-shot", "linear probe"])].itertuples():
        shift = str(row.shift).removeprefix(f"{SHIFT_COLUMN}=")
        lines.append(f"  {shift:22s} {row.name:13s} {row.effective_robustness:+.3f} "
                     f"[{row.er_low:+.3f}, {row.er_high:+.3f}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..errors import CliplabError

    ap = argparse.ArgumentParser(prog="python -m cliplab.synth.adaptation", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="a new folder for the worlds, the trained run and the results")
    ap.add_argument("--epochs", type=int, default=24, help="training epochs on the broad world (default 24)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=str(TRAIN_CONFIG), help="training config (default: minilm-synthetic.yaml)")
    args = ap.parse_args(argv)
    try:
        print(format_adaptation(run_adaptation(args.out, args.epochs, args.seed, progress=True,
                                               train_config=args.config)))
    except CliplabError as e:
        print(f"cliplab: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
