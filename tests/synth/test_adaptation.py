"""The CLIP paper's adaptation finding, reproduced in miniature (issue 15, item 4).

cliplab-minilm trained on a broad world (clean and styled images); a linear probe fitted on its
embeddings of the target world's training images (drawn on their class's scene 90% of the time)
gains in distribution over zero-shot and loses on every shift, while zero-shot's effective robustness
against the probes' line is above 0 on every shift. One run of about 2 minutes (12 epochs on
4,000 images, seed 0); `python -m cliplab.synth.adaptation` is the full-size version.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cliplab.errors import EXIT_INPUT
from cliplab.synth.adaptation import ADAPT, IN_DISTRIBUTION, SHIFT_COLUMN, UNCORRELATED, format_adaptation, main

pytestmark = pytest.mark.timeout(1200)
SHIFTS = ["sketch", "cartoon", "noise", "blur", "silhouette", UNCORRELATED]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory):
    from cliplab.synth.adaptation import run_adaptation

    root = tmp_path_factory.mktemp("adaptation")
    return root, run_adaptation(root, epochs=12, n_pretrain=2000, n_target=3000)


def test_the_worlds_are_laid_out_as_the_experiment_needs(experiment) -> None:
    root, _ = experiment
    pretrain = pd.read_csv(root / "pretrain.csv", dtype=str)
    assert set(pretrain["split"]) == {"train"} and len(pretrain) == 1600 + 6 * 400  # train + test x (clean + 5 styles)
    assert set(pretrain["style"]) == {"clean", "sketch", "cartoon", "noise", "blur", "silhouette"}
    target = pd.read_csv(root / "target.csv", dtype=str)
    counts = target[SHIFT_COLUMN].value_counts().to_dict()
    assert counts == {ADAPT: 1800, IN_DISTRIBUTION: 600, **{s: 600 for s in SHIFTS}}
    # the adapted-to cue: the in-distribution images share the probes' training scenes, the shifts do not
    on_own_scene = target.assign(own=target["scene"] == target["label"].map(
        target[target[SHIFT_COLUMN] == ADAPT].groupby("label")["scene"].agg(lambda s: s.mode()[0])))
    share = on_own_scene.groupby(SHIFT_COLUMN)["own"].mean()
    assert share[IN_DISTRIBUTION] > 0.8 and share[UNCORRELATED] < 0.35  # 4 scenes: chance is 0.25
    assert all((root / p).is_file() for p in target["image"].head(3))


def test_adapting_gains_in_distribution_and_loses_under_every_shift(experiment) -> None:
    _, result = experiment
    acc = result.shifts.pivot(index="classifier", columns="shift", values="acc1")
    zs, probe = acc.loc["zero-shot"], acc.loc["linear probe"]
    assert probe[IN_DISTRIBUTION] > zs[IN_DISTRIBUTION] + 0.03
    for shift in SHIFTS:
        assert probe[f"{SHIFT_COLUMN}={shift}"] < zs[f"{SHIFT_COLUMN}={shift}"], shift


def test_zero_shot_is_effectively_robust_against_the_probes_line(experiment) -> None:
    _, result = experiment
    er = result.effective.set_index(["shift", "name"])
    for shift in SHIFTS:
        zero_shot, probe = er.loc[(f"{SHIFT_COLUMN}={shift}", "zero-shot")], er.loc[(f"{SHIFT_COLUMN}={shift}",
                                                                                     "linear probe")]
        assert zero_shot["er_low"] > 0, shift
        assert probe["effective_robustness"] < zero_shot["effective_robustness"], shift
    text = format_adaptation(result)
    assert "in-distribution" in text and "uncorrelated scenes" in text


def test_the_report_is_written(experiment) -> None:
    root, _ = experiment
    out = Path(root) / "robustness"
    assert (out / "robustness.json").is_file() and (out / "report.html").is_file()
    assert (out / "effective_robustness.csv").is_file()


@pytest.mark.parametrize("args, message", [(["--seed", "-1"], "seed must be a non-negative integer"),
                                           (["--epochs", "0"], "'epochs' must be positive"),
                                           (["--config", "missing.yaml"], "no training config missing.yaml")])
def test_bad_settings_are_one_line_before_any_work(tmp_path: Path, capsys, args, message) -> None:
    assert main(["--out", str(tmp_path / "out"), *args]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
