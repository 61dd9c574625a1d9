"""Benchmark: how fast ``cliplab synth`` draws its worlds, on one core.

    .venv/bin/python benchmarks/bench_synth.py [--n 3000] [--sizes 32,48,64]

For each world and image size: CPU seconds (this process, one thread: drawing, PNG encoding and
writing), wall seconds, and images per CPU second. The scenes world writes the test split once
more per style (5 styles: n x (1 + 5 x test_fraction) images). Target: 3,000-6,000 images in well
under a minute of one core. On a shared machine trust the CPU column, not the wall clock.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cliplab.synth import SynthConfig, synthesize


def run(world: str, n: int, size: int) -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as d:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        synthesize(d, SynthConfig(world=world, n=n, size=size, bias=0.2))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        images = sum(1 for _ in Path(d).rglob("*.png"))
    return images, cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--sizes", default="32,48,64")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; n = {args.n}")
    print(f"{'world':8} {'px':>4} {'images':>7} {'cpu s':>7} {'wall s':>7} {'img/cpu s':>10}")
    for world in ("scenes", "legacy"):
        for size in (int(s) for s in args.sizes.split(",")):
            images, cpu, wall = run(world, args.n, size)
            print(f"{world:8} {size:>4} {images:>7} {cpu:>7.1f} {wall:>7.1f} {images / cpu:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
