"""CheckpointWriter: the file holds the state as it was at save(), whatever training does meanwhile."""
from __future__ import annotations

import torch

from cliplab.train.checkpoint import CheckpointWriter, list_checkpoints, load_checkpoint


def test_a_checkpoint_is_a_snapshot_of_the_state_at_save(tmp_path):
    weights = torch.arange(6, dtype=torch.float32)
    moments = {0: {"exp_avg": torch.ones(3), "step": torch.tensor(4.0)}}
    state = {"step": 7, "model": {"w": weights}, "optimizer": {"state": moments, "param_groups": [{"lr": 0.1}]},
             "rng": {"python": [3, [1, 2], None]}, "config": {"model": "cliplab-tiny"}}
    writer = CheckpointWriter(tmp_path, keep=2)
    path = writer.save(state)
    weights.add_(100.0)  # the training thread goes on updating in place while the writer thread works
    moments[0]["exp_avg"].zero_()
    state["model"]["w"] = torch.zeros(1)
    writer.wait()
    saved = load_checkpoint(path)
    assert torch.equal(saved["model"]["w"], torch.arange(6, dtype=torch.float32))
    assert torch.equal(saved["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    assert saved["optimizer"]["param_groups"] == [{"lr": 0.1}] and saved["rng"]["python"] == [3, [1, 2], None]
    assert saved["step"] == 7


def test_only_the_last_k_are_kept(tmp_path):
    writer = CheckpointWriter(tmp_path, keep=2)
    for step in (1, 2, 3):
        writer.save({"step": step, "model": {"w": torch.full((2,), float(step))}, "optimizer": {}, "config": {}})
    writer.wait()
    kept = list_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["step_00000002.pt", "step_00000003.pt"]
    assert torch.equal(load_checkpoint(kept[-1])["model"]["w"], torch.full((2,), 3.0))
