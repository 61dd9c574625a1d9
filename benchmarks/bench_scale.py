"""Data-parallel embedding on CPU: `cliplab embed` under torchrun with 1 and 2 gloo ranks (1 thread each).

For each world size: every rank's pure forward pass on pre-made tensors (run concurrently, as the
ranks run, so both see the same contention), then `torchrun -m cliplab.cli embed --profile` over
the same synthetic images (no cache). Reported: images/s of the encoding phase (rank 0's profile
wall time), scaling efficiency (rate with N ranks / (N x rate with 1)), each rank's ratio to its
forward pass, and the per-stage profile of the largest run, which names the next bottleneck.

    .venv/bin/python benchmarks/bench_scale.py [--images 3000] [--ranks 1,2] [--model cliplab-tiny]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).parents[1]


def torchrun(n: int, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return done


def forward_only(model: str, n: int, batch: int, out: str) -> None:
    """Under torchrun: this rank's forward-pass rate on pre-made tensors, written to ``out``-RANK.json."""
    import torch

    from cliplab import load_model

    torch.set_num_threads(1)
    loaded = load_model(model, device="cpu")
    size = loaded.preprocess.transforms[1].size[0]
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        loaded.model.encode_image(x)
        start = time.perf_counter()
        for _ in range(max(1, n // batch)):
            loaded.model.encode_image(x, normalize=True)
        rate = max(1, n // batch) * batch / (time.perf_counter() - start)
    Path(f"{out}-{os.environ.get('RANK', '0')}.json").write_text(json.dumps({"rate": rate}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000, help="synthetic images (32 px)")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--model", default="cliplab-tiny")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--forward-only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.forward_only:
        forward_only(args.model, args.images, args.batch, args.forward_only)
        return
    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.1f}")
    rows, profile = [], ""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "cliplab.cli", "synth", "--out", f"{tmp}/data", "--n", str(args.images),
                        "--quiet"], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        for n in map(int, args.ranks.split(",")):
            torchrun(n, __file__, "--images", str(args.images // n), "--model", args.model, "--batch", str(args.batch),
                     "--forward-only", f"{tmp}/fwd{n}")
            fwd = [json.loads(Path(f"{tmp}/fwd{n}-{r}.json").read_text())["rate"] for r in range(n)]
            start = time.perf_counter()
            done = torchrun(n, "-m", "cliplab.cli", "embed", "--model", args.model, "--device", "cpu",
                            "--images", f"{tmp}/data/metadata.csv", "--out", f"{tmp}/out{n}", "--no-cache",
                            "--workers", "0", "--batch-size", str(args.batch), "--quiet", "--profile")
            command_s = time.perf_counter() - start
            prof = json.loads(Path(f"{tmp}/out{n}/profile.json").read_text())
            rate = prof["images"] / prof["wall_s"]
            rows.append((n, rate, command_s, sum(fwd) / n, rate / n / (sum(fwd) / n)))
            profile = done.stderr.strip()
    base = rows[0][1]
    print("\n| ranks | embed img/s | efficiency | forward img/s per rank | rank / forward | command s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, rate, command_s, fwd, ratio in rows:
        print(f"| {n} | {rate:,.0f} | {rate / (n * base):.2f} | {fwd:,.0f} | {ratio:.2f} | {command_s:.1f} |")
    print(f"\nprofile of the {rows[-1][0]}-rank run:\n{profile}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
