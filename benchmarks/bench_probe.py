"""Probes on cached embeddings: the full-data probe plus k-shot probes (k = 1..16, several seeds).

Synthetic L2-normalised clustered embeddings stand in for cached image embeddings (the probes see only
the matrix), so this measures the probe code alone. Target: 10,000 x 512, all k and 5 seeds, < 60 s.

    .venv/bin/python benchmarks/bench_probe.py [--n 10000] [--dim 512] [--classes 100] [--seeds 5] [--jobs 2]
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
from joblib.externals.loky import get_reusable_executor

from cliplab.probe import ProbeConfig, run_probes


def clusters(n: int, n_classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    means = np.random.default_rng(1234).normal(size=(n_classes, dim))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = means[y] + 3.0 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=ProbeConfig.n_jobs, help="probes fitted at once (ProbeConfig.n_jobs)")
    a = ap.parse_args()
    x_tr, y_tr = clusters(a.n, a.classes, a.dim, 0)
    x_te, y_te = clusters(a.n // 5, a.classes, a.dim, 1)
    start, cpu = time.perf_counter(), cpu_seconds()
    r = run_probes(x_tr, y_tr, x_te, y_te, [f"c{i}" for i in range(a.classes)],
                   ProbeConfig(seeds=a.seeds, n_jobs=a.jobs))
    wall = time.perf_counter() - start
    get_reusable_executor().shutdown(wait=True)  # joblib's workers, reaped: their CPU time counts below
    cpu = cpu_seconds() - cpu
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print("| train x dim | classes | jobs | probes fitted | wall s | cpu s | full-probe acc1 | 16-shot acc1 |")
    print(f"| {a.n} x {a.dim} | {a.classes} | {a.jobs} | 1 + {len(r.curve)} | {wall:.1f} | {cpu:.1f} | "
          f"{r.full['acc1']:.3f} | {r.summary['acc1'].iloc[-1]:.3f} |")


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (the probe workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
