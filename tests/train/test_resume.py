"""Resume after a real SIGKILL: the final weights and every logged loss equal an uninterrupted run's."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

RUNNER = ("import sys; from cliplab.train import load_train_config, train; "
          "train(load_train_config(None, dict(a.split('=', 1) for a in sys.argv[1:])))")
REPO = Path(__file__).parents[2]


def start(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    args = [f"data={data}", f"out={out}", "batch_size=16", "epochs=3", "warmup_steps=3", "checkpoint_every=2",
            "keep_checkpoints=2", "threads=1", "workers=0", "log_every=1", "eval_every=0", "progress=false",
            "tensorboard=false", "augment_shift=2", "augment_flip=true", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def logged(out: Path) -> list[dict]:
    try:
        with open(out / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def checkpoint_steps(out: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("step_*.pt"))


def kill_mid_run(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    """SIGKILL once a checkpoint exists and a later step has been logged (so it dies mid-epoch, mid-step)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        steps = checkpoint_steps(out) if (out / "checkpoints").is_dir() else []
        rows = logged(out)
        if steps and steps[-1] >= 4 and rows and int(rows[-1]["step"]) > steps[-1]:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("no checkpoint appeared in time")


def test_resume_after_sigkill_matches_uninterrupted_run(train_data, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    ref_proc = start(train_data, reference)
    victim = start(train_data, killed)
    kill_mid_run(victim, killed)
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "final").exists()
    died_at = int(logged(killed)[-1]["step"])
    assert 4 < died_at < 24  # 128 train images / 16 = 8 steps x 3 epochs

    resumed = start(train_data, killed, "resume=latest")
    for proc in (ref_proc, resumed):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    assert "resuming from" in (killed / "train.log").read_text()

    a = torch.load(reference / "final" / "open_clip_pytorch_model.bin", weights_only=True)
    b = torch.load(killed / "final" / "open_clip_pytorch_model.bin", weights_only=True)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"

    ref_rows, rows = logged(reference), logged(killed)
    assert [int(r["step"]) for r in rows] == list(range(1, 25))  # no step twice, none missing
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref_rows]
