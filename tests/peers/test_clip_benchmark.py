"""Peer check: LAION's clip-benchmark and cliplab give the same zero-shot metrics on the same model and data.

clip-benchmark 1.6.2 needs numpy < 2.4 and imports `requests` without declaring it, so it lives in its own
venv (`make test-peers` builds .venv-peers and sets CLIPLAB_PEER_PYTHON). The model is a cliplab-tiny run
trained here, handed to clip-benchmark as open_clip's ``local-dir:RUN/final`` (no weights downloaded); the
data are the synthetic test split written in CLIP_benchmark's wds format, read by both tools.
Both run in fp32 (clip-benchmark's --no_amp); both use the model's own open_clip preprocessing.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from cliplab.data import read_images, select
from cliplab.evalsets import read_eval_set, write_wds
from cliplab.synth import SynthConfig, synthesize

PEER = os.environ.get("CLIPLAB_PEER_PYTHON")
if not PEER:
    pytest.skip("peer checks run by `make test-peers` (sets CLIPLAB_PEER_PYTHON)", allow_module_level=True)
pytestmark = pytest.mark.timeout(1800)  # two model loads, a short training run and two evaluations


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from cliplab.train import load_train_config, train

    root = tmp_path_factory.mktemp("peer")
    data = synthesize(root / "data", SynthConfig(n=240, seed=5))
    cfg = {"data": str(data), "out": str(root / "run"), "batch_size": "64", "epochs": "1", "warmup_steps": "2",
           "progress": "false", "tensorboard": "false", "workers": "0", "threads": "1", "eval_every": "0"}
    train(load_train_config(None, cfg))
    test = select(read_images(data), {"split": ("test",)})
    classnames = sorted(set(test.records["label"]))
    wds = write_wds(test, classnames, root / "wds", templates=["a photo of a person holding a {}.", "a {}."],
                    shard_size=30)
    return root, wds


def test_peer_python_is_there():
    assert Path(PEER).is_file(), f"CLIPLAB_PEER_PYTHON={PEER} does not exist (make test-peers builds it)"


def test_clip_benchmark_gives_the_same_metrics(setup):
    from cliplab.models import load_model
    from cliplab.zeroshot import run_zeroshot

    root, wds = setup
    images = read_eval_set(wds, extract_dir=root / "extract")
    ours = run_zeroshot(load_model(pretrained=str(root / "run"), device="cpu"), images, images.classnames,
                        images.templates, cache_dir=None, progress=False).metrics
    out = root / "peer.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([PEER, "-m", "clip_benchmark.cli", "eval", "--dataset", "wds/synth",
                           "--dataset_root", str(wds), "--model", f"local-dir:{root / 'run' / 'final'}",
                           "--task", "zeroshot_classification", "--no_amp", "--batch_size", "32",
                           "--num_workers", "0", "--output", str(out)], capture_output=True, text=True, env=env,
                          timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peer = json.loads(out.read_text())
    assert peer["dataset"] == "wds/synth" and peer["task"] == "zeroshot_classification"
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert ours[key] == pytest.approx(peer["metrics"][key], abs=1e-9), key
    assert ours["n_images"] == len(images) == 48
