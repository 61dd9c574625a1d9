"""Shared fixtures: a small synthetic data set and a randomly initialised tiny model."""
from __future__ import annotations

from pathlib import Path

import pytest

from cliplab.synth import SynthConfig, synthesize


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """metadata.csv of 192 legacy-world synthetic 32 px images (154 train, 38 test), bias 0.5 on tone=dark."""
    return synthesize(tmp_path_factory.mktemp("synth"), SynthConfig(world="legacy", n=192, seed=3, bias=0.5))


@pytest.fixture(scope="session")
def tiny():
    from cliplab.models import load_model

    return load_model("cliplab-tiny", device="cpu", seed=0)
