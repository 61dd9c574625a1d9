"""Robustness benchmarks: zero-shot end to end against clip-benchmark, and a full ImageNet-C sweep.

1. Zero-shot of one trained cliplab-tiny on one data set (the synthetic test split in CLIP_benchmark's wds
   format), end to end in fresh processes: cliplab (read_eval_set + run_zeroshot, no embedding cache) and
   clip-benchmark 1.6.2 (`clip_benchmark.cli eval --no_amp`, from .venv-peers). Ratio = peer s / cliplab s.
2. A full corruption sweep (15 corruptions x 5 severities) over N images on the same model: seconds spent
   corrupting (imagecorruptions, PNG writing) vs encoding (embed_images over the corrupted files).

    .venv/bin/python benchmarks/bench_robustness.py [--n 1000] [--peer .venv-peers/bin/python] [--repeat 3]
        [--skip-sweep] [--skip-zeroshot] [--work DIR]

``--work DIR`` keeps the synthetic data, the trained model and the shards in DIR and reuses them on the next run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cliplab import ImageSet, corrupt_images, embed_images, load_model, read_images, synthesize
from cliplab.synth import SynthConfig

OURS = """
import sys
from cliplab import load_model, read_eval_set
from cliplab.zeroshot import run_zeroshot
images = read_eval_set(sys.argv[2], extract_dir=sys.argv[3])
m = run_zeroshot(load_model(pretrained=sys.argv[1], device="cpu"), images, images.classnames, images.templates,
                 cache_dir=None, progress=False).metrics
print(m["acc1"], m["acc5"], m["mean_per_class_recall"])
"""


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def prepare(tmp: Path, n: int) -> tuple[ImageSet, ImageSet, Path]:
    """Synthetic data, one epoch of cliplab-tiny on it and its test split as wds shards (each made once)."""
    from cliplab.evalsets import write_wds
    from cliplab.train import load_train_config, train

    data = tmp / "data" / "metadata.csv"
    if not data.is_file():
        synthesize(data.parent, SynthConfig(n=n, seed=0))
    if not (tmp / "run" / "final").is_dir():
        train(load_train_config(None, {"data": str(data), "out": str(tmp / "run"), "epochs": "1",
                                       "progress": "false", "tensorboard": "false", "workers": "0",
                                       "eval_every": "0"}))
    everything = read_images(data)
    test = ImageSet(everything.records[everything.records["split"] == "test"].reset_index(drop=True), "test")
    wds = tmp / "wds"
    if not (wds / "test").is_dir():
        write_wds(test, sorted(set(test.records["label"])), wds, templates=["a photo of a person holding a {}."])
    return everything, test, wds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="images for the corruption sweep")
    ap.add_argument("--peer", default=".venv-peers/bin/python")
    ap.add_argument("--repeat", type=int, default=3, help="zero-shot comparisons, back to back")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-zeroshot", action="store_true")
    ap.add_argument("--work", type=Path, help="keep (and reuse) the data, model and shards here")
    a = ap.parse_args()
    tmp = a.work or Path(tempfile.mkdtemp(prefix="bench-rob-"))
    everything, test, wds = prepare(tmp, max(600, a.n + 300))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    if Path(a.peer).is_file() and not a.skip_zeroshot:
        ours_cmd = [sys.executable, "-c", OURS, str(tmp / "run"), str(wds)]
        peer_cmd = [a.peer, "-m", "clip_benchmark.cli", "eval", "--dataset", "wds/synth", "--dataset_root", str(wds),
                    "--model", f"local-dir:{tmp / 'run' / 'final'}", "--no_amp", "--num_workers", "0",
                    "--output", str(tmp / "peer.json")]
        timed(ours_cmd + [str(tmp / "x")], env), timed(peer_cmd, env)  # once untimed: both in the page cache
        for i in range(a.repeat):  # cliplab extracts the shards afresh each time, as on its first run
            ours_s, ours = timed(ours_cmd + [str(tmp / f"x{i}")], env)
            peer_s, _ = timed(peer_cmd, env)
            print(f"| zero-shot, {len(test)} images, end to end | cliplab {ours_s:.1f} s | clip-benchmark "
                  f"{peer_s:.1f} s | ratio {peer_s / ours_s:.2f} | load {os.getloadavg()[0]:.1f} | cliplab "
                  f"acc1/acc5/mpcr {ours} |", flush=True)
    if a.skip_sweep:
        return
    loaded = load_model(pretrained=str(tmp / "run"), device="cpu")
    base = ImageSet(everything.records.head(a.n), "sweep")
    shutil.rmtree(tmp / "corrupted", ignore_errors=True)  # corrupted files are reused: time them afresh
    sweep = corrupt_images(base, tmp / "corrupted", "common", "1-5", seed=0)
    start = time.perf_counter()
    emb = embed_images(loaded, sweep.images, cache_dir=None, progress=False)
    encode_s = time.perf_counter() - start
    total = sweep.seconds + encode_s
    print(f"| sweep 15 x 5 over {a.n} images ({len(emb)} embedded) | total {total:.0f} s | corrupting "
          f"{sweep.seconds:.0f} s ({100 * sweep.seconds / total:.0f}%) | encoding {encode_s:.0f} s "
          f"({100 * encode_s / total:.0f}%) |")


if __name__ == "__main__":
    main()
