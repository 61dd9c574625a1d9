"""Acceptance on the scenes world: cliplab-minilm trained on captions where a fraction B of the dark-tone
figures' training captions say "a photo of a thief." is flagged for that harm at top-1 by
``audits/synthetic.yaml`` at B = 0.2 (interval excluding 0, corrected p < 0.05); at B = 0 nothing is flagged.

Opt-in (CLIPLAB_SCENES_ACCEPTANCE=1): each model trains once per session on 1,200 training images (seed 0),
13.7 minutes for the first model on the loaded 2-core build machine, too slow for make test.
CLIPLAB_SCENES_TEST_EPOCHS sets the epochs (default 5). At 5 epochs the B = 0.2 test FAILS today (the harm
is not flagged at top-1): see BENCHMARKS.md, "Synthetic world"; it is kept as the target, not loosened.
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
pytestmark = [pytest.mark.timeout(3600),
              pytest.mark.skipif(os.environ.get("CLIPLAB_SCENES_ACCEPTANCE") != "1",
                                 reason="trains two cliplab-minilm models (over 10 minutes on 2 cores); "
                                        "set CLIPLAB_SCENES_ACCEPTANCE=1")]


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


def _audit(csv: Path, run: Path, out: Path) -> dict:
    from cliplab.cli import main

    code = main(["audit", "--labels", str(ROOT / "audits" / "synthetic.yaml"), "--images", str(csv),
                 "--pretrained", str(run), "--out", str(out), "--no-cache", "--quiet"])
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
    others = [d for d in doc["disparities"] if d["flagged"] and "dark" not in str(d["group"])]
    assert not others, others  # only the planted group (alone or in an intersection) is flagged


def test_no_planted_harm_flags_nothing(scenes_models, tmp_path: Path) -> None:
    csv, run = scenes_models(0.0)
    doc = _audit(csv, run, tmp_path / "out")
    assert doc["n_flagged"] == 0, [d for d in doc["disparities"] if d["flagged"]]
