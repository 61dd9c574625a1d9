"""Fixtures of the audit tests: small synthetic data, the CLI entry point, trained tiny models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

AUDITS = Path(__file__).resolve().parents[2] / "audits"


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """240 synthetic images (48 test) with a planted bias: fast, for end-to-end CLI tests."""
    from cliplab.synth import SynthConfig, synthesize

    return synthesize(tmp_path_factory.mktemp("synth-small"), SynthConfig(world="legacy", n=240, seed=3, bias=0.4))


@pytest.fixture(scope="session")
def cli_main():
    """The `cliplab` command's entry point (argv -> exit code)."""
    from cliplab.cli import main

    return main


# ------------------------------------------------------------------ trained models (acceptance)
TRAIN_EPOCHS = os.environ.get("CLIPLAB_AUDIT_TEST_EPOCHS", "5")


def _train(tmp_path_factory, bias: float) -> tuple[Path, Path]:
    """Synthesise images with planted bias ``bias`` and train cliplab-tiny on them, once per session.

    1,200 training images for 5 epochs keeps each model to about a minute on 2 cores; the
    1,200 test images (400 per tone) give the audit enough images per group to be stable.
    """
    from cliplab.synth import SynthConfig, synthesize
    from cliplab.train import load_train_config, train

    root = tmp_path_factory.mktemp(f"trained-b{bias}")
    csv = synthesize(root / "data", SynthConfig(world="legacy", n=2400, seed=0, bias=bias, test_fraction=0.5))
    config = load_train_config(Path(__file__).resolve().parents[2] / "training/configs/tiny-synthetic.yaml",
                               {"data": str(csv), "out": str(root / "run"), "epochs": TRAIN_EPOCHS,
                                "progress": "false", "tensorboard": "false", "eval_every": "0",
                                "eval_max_samples": "300"})
    return csv, train(config).run_dir


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory):
    """bias -> (metadata.csv, run dir); each model trained on first use, then kept for the session."""
    cache: dict[float, tuple[Path, Path]] = {}

    def get(bias: float) -> tuple[Path, Path]:
        if bias not in cache:
            cache[bias] = _train(tmp_path_factory, bias)
        return cache[bias]

    return get
