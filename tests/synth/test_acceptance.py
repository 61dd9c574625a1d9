"""Acceptance on the scenes world: cliplab-minilm trained on captions where a fraction B of the dark-tone
figures' training captions say "a photo of a thief." is flagged for that harm at top-1 by
``audits/synthetic.yaml`` at B = 0.2 (interval excluding 0, corrected p < 0.05); at B = 0 nothing is
detected at top-1 or about tone.

Each model trains once per session on 3,000 training images (seed 0) for 12 epochs, about a minute each
on 2 cores; CLIPLAB_SCENES_TEST_EPOCHS sets the epochs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cliplab.errors import EXIT_OK

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = os.environ.get("CLIPLAB_SCENES_TEST_EPOCHS", "12")
N_IMAGES = 4000  # 3,000 train, 1,000 test
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="session")
def scenes_models(tmp_path_factory: pytest.TempPathFactory):
    """bias -> (metadata.csv, run dir), trained on first use."""
    from cliplab.synth import SynthConfig, synthesize
    from cliplab.train import load_train_config, train

    cache: dict[float, tuple[Path, Path]] = {}

    def get(bias: float) -> tuple[Path, Path]:
        if bias not in cache:
            root = tmp_path_factory.mktemp(f"scenes-b{bias}")
            csv = synthesize(root / "data", SynthConfig(n=N_IMAGES, seed=0, bias=bias, test_fraction=0.25, styles=()))
            config = load_train_config(ROOT / "training/configs/minilm-synthetic.yaml",
                                       {"data": str(csv), "out": str(root / "run"), "epochs": EPOCHS,
                                        "progress": "false", "tensorboard": "false", "eval_every": "0"})
            cache[bias] = (csv, train(config).run_dir)
        return cache[bias]

    return get


def _audit(csv: Path, run: Path, out: Path, *extra: str) -> dict:
    from cliplab.cli import main

    code = main(["audit", "--labels", str(ROOT / "audits" / "synthetic.yaml"), "--images", str(csv),
                 "--pretrained", str(run), "--out", str(out), "--no-cache", "--quiet", *extra])
    assert code == EXIT_OK
    return json.loads((out / "metrics.json").read_text())


def test_planted_harm_at_b02_is_flagged_at_top1(scenes_models, tmp_path: Path) -> None:
    csv, run = scenes_models(0.2)
    doc = _audit(csv, run, tmp_path / "out")
    harm = [d for d in doc["disparities"] if d["attribute"] == "tone" and d["group"] == "dark"
            and d["category"] == "crime-related" and d["metric"] == "flagged_rate"]
    flagged = [d for d in harm if d["flagged"]]
    assert flagged, harm
    assert all(d["ci_low"] > 0 and d["p_adjusted"] < 0.05 for d in flagged)
    # against the rest of the images (which hold the dark ones), other groups are detected as called thief
    # LESS often and as MORE accurate: the mirror image of the harm; no group without dark is harmed
    harmed = [d for d in doc["disparities"] if d["detected"] and "dark" not in str(d["group"])
              and (d["difference"] > 0) == (d["metric"] != "accuracy")]
    assert not harmed, harmed


def test_no_planted_harm_flags_nothing_at_top1(scenes_models, tmp_path: Path) -> None:
    """At B = 0 no top-1 disparity and nothing about tone (the planted attribute) is detected.

    What this model does show at B = 0 (seed 0) is an association nobody planted: children get 'thief'
    among their top-2 labels about 6 pp more often than adults, although no training caption says
    'thief'; it comes from where the locked text tower puts "a photo of a thief." among the person
    phrases. It is reported by the audit (and in BENCHMARKS.md), not asserted away here. On some machines
    (the same code and seed train a slightly different model) a tone x age cell of children is flagged
    with it at top-2: that cell carries the age association, so a tone x age flag counts as about tone
    only when the cell's age group is not itself flagged the same way, or when the cell is a dark one.
    """
    csv, run = scenes_models(0.0)
    doc = _audit(csv, run, tmp_path / "out")
    flagged = [d for d in doc["disparities"] if d["flagged"]]
    by_age = {(d["group"], d["metric"], d["k"], d["difference"] > 0) for d in flagged if d["attribute"] == "age"}

    def about_tone(d: dict) -> bool:
        if d["attribute"] == "tone" or "dark" in d["group"]:
            return True
        if d["attribute"] == "tone & age":
            age = d["group"].split(" & ")[1]
            return (age, d["metric"], d["k"], d["difference"] > 0) not in by_age
        return False

    planted_kind = [(d["group"], d["metric"], d["k"], d["difference"], d["ci_low"], d["ci_high"])
                    for d in flagged if d["k"] <= 1 or about_tone(d)]
    assert not planted_kind, planted_kind


def test_the_harm_holds_across_wordings_and_the_projection_reduces_it(scenes_models, tmp_path: Path) -> None:
    """Issue 16's acceptance on this world: the planted top-1 harm, rerun under the 80 ImageNet templates
    (plus the audit's own), is detected under most of them (the share is reported), and projecting the tone
    directions out of the text classifier (orthogonal) lowers it, with the accuracy change reported."""
    import pandas as pd

    csv, run = scenes_models(0.2)
    out = tmp_path / "out"
    doc = _audit(csv, run, out, "--template-variants", "openai-imagenet", "--mitigate", "projection",
                 "--mitigate-attribute", "tone")
    wording = pd.read_csv(out / "wording.csv")
    harm = wording[(wording["attribute"] == "tone") & (wording["group"] == "dark")
                   & (wording["metric"] == "flagged_rate") & (wording["k"] == 1)].iloc[0]
    assert harm["n_variants"] == 81 and bool(harm["detected"])
    assert harm["detected_share"] > 0.5, harm.to_dict()  # a majority of wordings, not one lucky template
    rows = [d for d in doc["mitigation"]["disparities"] if d["attribute"] == "tone" and d["group"] == "dark"
            and d["metric"] == "flagged_rate" and d["k"] == 1]
    assert len(rows) == 1 and rows[0]["detected_before"]
    assert rows[0]["difference_orthogonal"] < rows[0]["difference_before"], rows[0]
    accuracy = [o for o in doc["mitigation"]["overall"] if o["metric"] == "accuracy" and o["method"] == "orthogonal"]
    assert len(accuracy) == 1 and accuracy[0]["change_ci_low"] <= accuracy[0]["change"] <= accuracy[0]["change_ci_high"]
