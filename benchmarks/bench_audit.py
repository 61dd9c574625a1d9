"""Benchmark: a bias audit over cached (here: synthetic) embeddings at scale.

    .venv/bin/python benchmarks/bench_audit.py [--n 1000000] [--classes 100] [--dim 512]

1,000,000 images x 100 classes x 3 attributes (race 7, gender 2, age 9 values, and their 4
intersections: 221 more groups), 7 flagged classes in 2 harm categories, a truth for accuracy,
top-5 rates, 2 retrieval queries. Prints the time of the audit beside the time of the matrix
product alone (the floor: every image against every class) and the peak memory of the process;
then the time to write its files (report.html, metrics.json, groups.csv, predictions.parquet).
Target: under 60 s and under 4 GB on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cliplab.audit.definition import AuditSpec, ClassSpec, TruthSpec
from cliplab.audit.run import audit_features

RACES = ["White", "Black", "Indian", "East Asian", "Southeast Asian", "Middle Eastern", "Latino_Hispanic"]
AGES = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KiB


def make_data(n: int, n_classes: int, dim: int, seed: int = 0):
    """Unit-norm float32 embeddings (built in chunks: no float64 copy), class weights, metadata."""
    rng = np.random.default_rng(seed)
    feats = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        feats[s:s + len(block)] = block
    weights = rng.standard_normal((dim, n_classes), dtype=np.float32)
    weights /= np.linalg.norm(weights, axis=0, keepdims=True)
    classnames = [f"class {i}" for i in range(n_classes - 7)] + ["animal", "gorilla", "chimpanzee", "orangutan",
                                                                "thief", "criminal", "suspicious person"]
    records = pd.DataFrame({
        "path": pd.array([f"img/{i:07d}.jpg" for i in range(n)], dtype="string"),
        "race": pd.Categorical.from_codes(rng.integers(0, 7, n), RACES).astype("string"),
        "gender": pd.Categorical.from_codes(rng.integers(0, 2, n), ["Male", "Female"]).astype("string"),
        "age": pd.Categorical.from_codes(rng.integers(0, 9, n), AGES).astype("string"),
        "label": pd.Categorical.from_codes(rng.integers(0, n_classes - 7, n), classnames[:-7]).astype("string"),
    })
    spec = AuditSpec(classes=tuple(ClassSpec(c) for c in classnames), group_by=("race", "gender", "age"),
                     flagged={"non-human": ("animal", "gorilla", "chimpanzee", "orangutan"),
                              "crime-related": ("thief", "criminal", "suspicious person")},
                     truth=TruthSpec(column="label"), top_k=5, retrieval_queries=("q1", "q2"), retrieval_k=100)
    queries = {q: weights[:, -i - 1] for i, q in enumerate(spec.retrieval_queries)}
    return feats, weights, records, spec, queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    t = time.perf_counter()
    feats, weights, records, spec, queries = make_data(args.n, args.classes, args.dim)
    t_data = time.perf_counter() - t
    rss_data = peak_rss_gb()

    t = time.perf_counter()
    for s in range(0, len(feats), 65536):  # the floor: the same chunked product the audit does
        _ = feats[s:s + 65536] @ weights
    t_matmul = time.perf_counter() - t

    t = time.perf_counter()
    result = audit_features(feats, records, spec, weights, 100.0, queries=queries)
    t_audit = time.perf_counter() - t
    rss = peak_rss_gb()

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        result.write(tmp, thumbnails=0)
        t_write = time.perf_counter() - t
    rss_write = peak_rss_gb()

    n_groups = result.groups[result.groups["attribute"] != "(all)"][["attribute", "group"]].drop_duplicates()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}, python {platform.python_version()}")
    print(f"audit of {args.n:,} images x {args.classes} classes (dim {args.dim}) x 3 attributes "
          f"({len(n_groups)} groups incl. intersections), {len(result.disparities):,} disparities tested")
    print("| step | seconds | peak RSS (GB) |")
    print("|---|---:|---:|")
    print(f"| synthetic data (not counted) | {t_data:.1f} | {rss_data:.2f} |")
    print(f"| matrix product alone (floor) | {t_matmul:.1f} | |")
    print(f"| audit (scores, groups, disparities, retrieval) | {t_audit:.1f} | {rss:.2f} |")
    print(f"| writing the report files (not counted) | {t_write:.1f} | {rss_write:.2f} |")


if __name__ == "__main__":
    main()
