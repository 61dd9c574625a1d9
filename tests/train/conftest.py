"""Fixtures for the trainer tests: a small synthetic data set and a fast tiny-run config."""
from __future__ import annotations

from pathlib import Path

import pytest

from cliplab.synth import SynthConfig, synthesize
from cliplab.train import TrainConfig, load_train_config


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """metadata.csv of 160 synthetic 32 px images (128 train, 32 test), no bias."""
    return synthesize(tmp_path_factory.mktemp("train-synth"), SynthConfig(world="legacy", n=160, seed=1))


@pytest.fixture(scope="session")
def tiny_config():
    """A factory of fast configs: ``tiny_config(data, out, **overrides)``."""
    return make_tiny_config


def make_tiny_config(data: Path | str, out: Path | str, **overrides) -> TrainConfig:
    """A run of a few steps: batch 32, 1 epoch, no progress bar, no TensorBoard."""
    values = {"data": str(data), "out": str(out), "batch_size": "32", "epochs": "1", "warmup_steps": "2",
              "progress": "false", "tensorboard": "false", "workers": "0", "log_every": "1",
              "threads": "1"}  # 1 thread: fast and steady on a shared 2-core machine
    values.update({k: str(v) for k, v in overrides.items()})
    return load_train_config(None, values)


@pytest.fixture(scope="session")
def trained_run(train_data, tmp_path_factory) -> Path:
    """A finished 1-epoch cliplab-tiny run folder (shared: tests must not change it)."""
    from cliplab.train import train

    out = tmp_path_factory.mktemp("trained") / "run"
    train(make_tiny_config(train_data, out, eval_every=0))
    return out
