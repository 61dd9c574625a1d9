"""DistributedDataParallel on CPU (gloo) under torchrun: 2 ranks equal 1 process with the same global batch."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).parents[2]
RUNNER = ("import sys; from cliplab.train import load_train_config, train; "
          "train(load_train_config(None, dict(a.split('=', 1) for a in sys.argv[1:])))\n")


def start(cmd: list[str], out: Path, data: Path, tmp_path: Path, *extra: str) -> subprocess.Popen:
    script = tmp_path / "runner.py"
    args = [f"data={data}", f"out={out}", "batch_size=32", "epochs=2", "warmup_steps=2", "threads=1",
            "workers=0", "log_every=1", "eval_every=0", "progress=false", "tensorboard=false", "device=cpu",
            "augment_shift=2", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([*cmd, str(script), *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def losses(out: Path) -> list[float]:
    with open(out / "metrics.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_two_ranks_match_one_process(train_data, tmp_path):
    (tmp_path / "runner.py").write_text(RUNNER)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ddp = start(torchrun, tmp_path / "ddp", train_data, tmp_path)
    single = start([sys.executable], tmp_path / "single", train_data, tmp_path)
    ddp_err, single_err = ddp.communicate(timeout=300)[1], single.communicate(timeout=300)[1]
    if ddp.returncode != 0 and "Address already in use" in ddp_err:
        pytest.skip("no free port for the gloo rendezvous")
    assert ddp.returncode == 0, ddp_err[-4000:]
    assert single.returncode == 0, single_err[-4000:]
    assert "x2" in (tmp_path / "ddp" / "train.log").read_text()  # rank 0 saw world size 2

    a, b = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert len(a) == len(b) == 8
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-5), (a, b)
    wa = torch.load(tmp_path / "single" / "final" / "open_clip_pytorch_model.bin", weights_only=True)
    wb = torch.load(tmp_path / "ddp" / "final" / "open_clip_pytorch_model.bin", weights_only=True)
    moved = sum((wa[k] - wb[k]).abs().max().item() > 1e-4 for k in wa)
    assert moved == 0, [(k, (wa[k] - wb[k]).abs().max().item()) for k in wa if (wa[k] - wb[k]).abs().max() > 1e-4][:5]
    # and the run really trained: weights moved away from the initialisation
    init = __import__("cliplab.models", fromlist=["load_model"]).load_model("cliplab-tiny", device="cpu", seed=0)
    assert not torch.allclose(init.model.state_dict()["visual.proj"], wa["visual.proj"])
