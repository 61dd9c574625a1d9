"""Score a model on a scenes-world data set: the figures ``make demo`` prints and BENCHMARKS.md records.

Zero-shot top-1 on the clean test split three ways (the training templates, the held-out templates,
the held-out class names, each as a template ensemble), top-1 on every styled test split, and the
prompt sensitivity over the CLIP paper's 80 ImageNet templates (spread and ensemble gain). The
held-out lists come from the data set's ``dataset.json``; images are embedded once (cached).

    python -m cliplab.synth.evaluate --pretrained RUN --data DATA/metadata.csv [--out scores.json]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import heldout_lists


@dataclass
class WorldScores:
    """Top-1 accuracies (0-1) and the prompt-sensitivity summary of one model on one data set."""

    zeroshot: dict[str, float]  # "training templates" / "held-out templates" / "held-out class names"
    styles: dict[str, float]  # style -> top-1 with the training templates
    sensitivity: dict  # cliplab.sensitivity summary over the 80 ImageNet templates ("acc1": spread, gains)
    n_test: int


def evaluate_world(loaded, data: str | Path, cache_dir: str | Path | None = None,
                   progress: bool = False) -> WorldScores:
    """Score ``loaded`` (a :class:`cliplab.LoadedModel`) on the test splits of a scenes-world data set."""
    from ..data import read_images, select
    from ..embed import ImageEmbeddings, embed_images
    from ..prompts import load_templates
    from ..sensitivity import prompt_sensitivity
    from ..zeroshot import ZeroShotClassifier

    lists = heldout_lists(data)
    images = read_images(Path(data) if Path(data).suffix else Path(data) / "metadata.csv")
    test_splits = sorted({s for s in images.records["split"].astype(str) if s.startswith("test")})
    emb = embed_images(loaded, select(images, {"split": tuple(test_splits)}), cache_dir=cache_dir, progress=progress)
    split = emb.records["split"].astype(str).to_numpy()

    def top1(mask: np.ndarray, classnames: list[str], templates: list[str], column: str = "label") -> float:
        pred = ZeroShotClassifier.build(loaded, classnames, templates).predict(emb.features[mask], k=1)
        truth = emb.records.loc[mask, column].astype(str).to_numpy()
        return float((np.array(pred.labels) == truth).mean())

    clean = split == "test"
    zeroshot = {
        "training templates": top1(clean, lists["classnames"], lists["templates"]),
        "held-out templates": top1(clean, lists["classnames"], lists["heldout_templates"]),
        "held-out class names": top1(clean, lists["heldout_classnames"], lists["templates"], "heldout_name"),
    }
    styles = {s[len("test-"):]: top1(split == s, lists["classnames"], lists["templates"])
              for s in test_splits if s != "test"}
    clean_emb = ImageEmbeddings(emb.features[clean], emb.records[clean].reset_index(drop=True))
    sens = prompt_sensitivity(loaded, clean_emb, lists["classnames"], load_templates("openai-imagenet"))
    return WorldScores(zeroshot, styles, sens.summary, int(clean.sum()))


def format_scores(scores: WorldScores) -> str:
    """The table ``make demo`` prints."""
    lines = [f"zero-shot top-1 on the clean test split ({scores.n_test} images, 16 classes):"]
    lines += [f"  {k:<22} {v:6.1%}" for k, v in scores.zeroshot.items()]
    if scores.styles:
        lines.append("  shifted test splits (training templates): "
                     + ", ".join(f"{k} {v:.1%}" for k, v in scores.styles.items()))
    a = scores.sensitivity["acc1"]
    lines.append(f"prompt sensitivity over the {scores.sensitivity['n_templates']} ImageNet templates: "
                 f"top-1 {a['worst']:.1%} .. {a['best']:.1%} (spread {a['spread']:.1%}, median {a['median']:.1%}); "
                 f"ensemble {a['ensemble']:.1%} (gain {a['ensemble_gain_over_median']:+.1%} over the median, "
                 f"{a['ensemble_gain_over_best']:+.1%} over the best)")
    lines.append(f"  best:  {a['best_template']!r}\n  worst: {a['worst_template']!r}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..atomic import write_json
    from ..errors import CliplabError
    from ..models import load_model

    ap = argparse.ArgumentParser(prog="python -m cliplab.synth.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--pretrained", required=True, help="a training run folder (or weights) to load")
    ap.add_argument("--model", help="architecture, when --pretrained does not name it")
    ap.add_argument("--data", required=True, help="a scenes-world metadata.csv (or its folder)")
    ap.add_argument("--cache-dir", help="embedding cache (default: none)")
    ap.add_argument("--out", help="also write the scores to this JSON file")
    args = ap.parse_args(argv)
    try:
        loaded = load_model(args.model, args.pretrained, "cpu")
        scores = evaluate_world(loaded, args.data, args.cache_dir)
        print(format_scores(scores))
        if args.out:
            write_json(args.out, asdict(scores))
    except CliplabError as e:
        print(f"cliplab: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
