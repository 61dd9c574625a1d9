"""Tests for cliplab.synth.evaluate: the demo's zero-shot and prompt-sensitivity figures of a world."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cliplab.errors import EXIT_INPUT
from cliplab.synth import STYLES, SynthConfig, synthesize
from cliplab.synth.evaluate import main


@pytest.fixture(scope="module")
def weights(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("eval-weights") / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    return path


def test_scores_every_view_of_the_world(weights: Path, tmp_path: Path, capsys) -> None:
    data = synthesize(tmp_path / "data", SynthConfig(n=120, seed=1))
    out = tmp_path / "scores.json"
    assert main(["--model", "cliplab-tiny", "--pretrained", str(weights), "--data", str(data), "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["n_test"] == 24
    assert list(scores["zeroshot"]) == ["training templates", "held-out templates", "held-out class names"]
    assert sorted(scores["styles"]) == sorted(STYLES)
    assert all(0 <= v <= 1 for v in [*scores["zeroshot"].values(), *scores["styles"].values()])
    acc = scores["sensitivity"]["acc1"]
    assert scores["sensitivity"]["n_templates"] == 80 and acc["spread"] == pytest.approx(acc["best"] - acc["worst"])
    printed = capsys.readouterr().out
    assert "held-out class names" in printed and "80 ImageNet templates" in printed


def test_refuses_a_legacy_world(weights: Path, tmp_path: Path, capsys) -> None:
    legacy = synthesize(tmp_path / "legacy", SynthConfig(world="legacy", n=48))
    code = main(["--model", "cliplab-tiny", "--pretrained", str(weights), "--data", str(legacy)])
    assert code == EXIT_INPUT and "not a scenes-world" in capsys.readouterr().err
