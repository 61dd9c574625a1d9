"""Fixtures for the trainer tests: a small synthetic data set and a fast tiny-run config."""
from __future__ import annotations

from pathlib import Path

import pytest

from cliplab.synth import SynthConfig, synthesize
from cliplab.train import TrainConfig, load_train_config


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """metadata.csv of 160 synthetic 32 px images (128 train, 32 test), no bias."""
    return synthesize(tmp_path_factory.mktemp("train-synth"), SynthConfig(n=160, seed=1))


@pytest.fixture(scope="session")
def tiny_config():
    """A factory of fast configs: ``tiny_config(data, out, **overrides)``."""
    return make_tiny_config


def make_tiny_config(data: Path | str, out: Path | str, **overrides) -> TrainConfig:
    """A run of a few steps: batch 32, 1 epoch, no progress bar, no TensorBoard."""
    values = {"data": str(data), "out": str(out), "batch_size": "32", "epochs": "1", "warmup_steps": "2",
              "progress": "false", "tensorboard": "false", "workers": "0", "log_every": "1"}
    values.update({k: str(v) for k, v in overrides.items()})
    return load_train_config(None, values)
