"""Interchange with open_clip: it loads cliplab's final model; cliplab loads open_clip_train checkpoints."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch

from cliplab.models import load_model


@pytest.fixture
def run(trained_run):
    return trained_run


def saved_weights(run):
    return torch.load(run / "final" / "open_clip_pytorch_model.bin", map_location="cpu", weights_only=True)


def assert_same_weights(model: torch.nn.Module, expected: dict):
    got = model.state_dict()
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(got[k].cpu(), v), k


def test_final_weights_are_a_plain_state_dict(run):
    state = saved_weights(run)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not any(k.startswith("module.") for k in state)
    cfg = json.loads((run / "final" / "open_clip_config.json").read_text())
    assert cfg["model_name"] == "cliplab-tiny" and cfg["model_cfg"]["embed_dim"] == 128
    assert cfg["preprocess_cfg"]["size"] == [32, 32]


def test_open_clip_loads_local_dir(run):
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{run / 'final'}")
    assert_same_weights(model, saved_weights(run))
    assert "32" in repr(preprocess)


def test_open_clip_loads_weights_file_with_registered_config(run, tmp_path):
    cfg = json.loads((run / "final" / "open_clip_config.json").read_text())
    (tmp_path / "exported-tiny.json").write_text(json.dumps(cfg["model_cfg"]))
    open_clip.add_model_config(tmp_path / "exported-tiny.json")
    model, _, _ = open_clip.create_model_and_transforms(
        "exported-tiny", pretrained=str(run / "final" / "open_clip_pytorch_model.bin"))
    assert_same_weights(model, saved_weights(run))


def test_cliplab_loads_the_run_directory(run):
    loaded = load_model(pretrained=str(run), device="cpu")
    assert loaded.name == "cliplab-tiny"
    assert_same_weights(loaded.model, saved_weights(run))


def test_cliplab_loads_an_open_clip_train_checkpoint(run, tmp_path):
    """open_clip_train writes {'epoch', 'name', 'state_dict' (with 'module.' under DDP), 'optimizer', ...}."""
    weights = saved_weights(run)
    model = load_model("cliplab-tiny", device="cpu").model
    opt = torch.optim.AdamW(model.parameters())
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "name": "open_clip_train-run", "state_dict": {f"module.{k}": v for k, v in weights.items()},
                "optimizer": opt.state_dict()}, path)
    loaded = load_model("cliplab-tiny", pretrained=str(path), device="cpu")
    assert_same_weights(loaded.model, weights)
