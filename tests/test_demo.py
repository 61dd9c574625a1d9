"""cliplab.demo: the notebooks' set-up; a missing training config is an error, never other settings."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cliplab import demo
from cliplab.errors import InputError
from cliplab.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_missing_training_config_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPLAB_NB_TRAIN_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "TRAIN_CONFIG", "training/configs/no-such.yaml")
    with pytest.raises(InputError, match=r"cannot find the training config .*not training with other settings"):
        demo.train_config(tmp_path / "data.csv", tmp_path / "run")
    monkeypatch.setenv("CLIPLAB_NB_TRAIN_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(InputError, match="is not a file"):
        demo.train_config_path()


def test_config_found_from_outside_the_repository(tmp_path, monkeypatch):
    """A notebook started elsewhere still trains with the demo's config (found via the source tree)."""
    monkeypatch.delenv("CLIPLAB_NB_TRAIN_CONFIG", raising=False)
    monkeypatch.delenv("CLIPLAB_NB_EPOCHS", raising=False)
    monkeypatch.chdir(tmp_path)
    config = demo.train_config(tmp_path / "data.csv", tmp_path / "run")
    written = yaml.safe_load((ROOT / demo.TRAIN_CONFIG).read_text())["epochs"]
    assert config.epochs == written and config.model == demo.MODEL  # the config's epochs, not the trainer's default
    assert written != TrainConfig().epochs


def test_settings_come_from_the_module_constants(monkeypatch):
    monkeypatch.setenv("CLIPLAB_NB_IMAGES", "480")
    assert demo.synth_config().n == 480 and demo.synth_config().bias == demo.SYNTH.bias
    monkeypatch.delenv("CLIPLAB_NB_IMAGES")
    assert demo.synth_config() == demo.SYNTH
