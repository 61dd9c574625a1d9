"""Benchmark: do the audit's statistics hold? Coverage, false detections, shown bias, power.

    .venv/bin/python benchmarks/bench_audit_stats.py [--replicates 200] [--skip-audits]

1. Exact coverage (every outcome weighted by its binomial probability, no simulation noise) of
   the rate (Wilson + Clopper-Pearson ends), difference (Newcombe) and ratio (log-adjusted)
   intervals at base rates 0.5%, 2%, 10%, group sizes 30, 100, 1,000, equal groups and a
   reference 5x larger, with no true difference.
2. FairFace-shaped audits (7 race x 2 gender x 5 age groups, intersections on, the label set of
   audits/fairface-clip-paper.yaml, 1,000 images per race group) run through audit_features:
   with no true disparity, the share of audits with any detection and the mean shown
   difference, for reference_mode rest and overall; with a +5 pp crime-related top-1 rate in
   one race group, the share of audits that detect it (the power).
Prints tables; docs/audit.md ("Statistics") records the figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
from scipy.stats import binom

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cliplab.audit.definition import load_audit_spec
from cliplab.audit.run import audit_features
from cliplab.audit.stats import difference_interval, ratio_interval, wilson

RACES = ["White", "Black", "Indian", "East Asian", "Southeast Asian", "Middle Eastern", "Latino_Hispanic"]
AGES = ["10-19", "20-29", "30-39", "40-49", "50-59"]
SPEC = os.path.join(os.path.dirname(__file__), "..", "audits", "fairface-clip-paper.yaml")


def _support(n: int, p: float):
    x = np.arange(n + 1)
    w = binom.pmf(x, n, p)
    return x[w > 1e-12], w[w > 1e-12]


def coverage_table() -> pd.DataFrame:
    rows = []
    for p in (0.005, 0.02, 0.1):
        for n in (30, 100, 1000):
            x, w = _support(n, p)
            lo, hi = wilson(x, np.full(len(x), n))
            rate = float(w @ ((lo <= p) & (p <= hi)))
            for n0 in (n, 5 * n):
                (x1, w1), (x0, w0) = _support(n, p), _support(n0, p)
                X1, X0 = (a.ravel() for a in np.meshgrid(x1, x0, indexing="ij"))
                W = np.outer(w1, w0).ravel()
                dlo, dhi = difference_interval(X1, n, X0, n0)
                rlo, rhi = ratio_interval(X1, n, X0, n0)
                rows.append({"base rate": p, "n": n, "n reference": n0, "rate (Wilson+CP)": rate,
                             "difference (Newcombe)": float(W @ ((dlo <= 0) & (dhi >= 0))),
                             "ratio (log-adjusted)": float(W @ ((rlo <= 1) & (rhi >= 1)))})
    return pd.DataFrame(rows)


def fairface_audit(rng: np.random.Generator, spec, per_race: int = 1000, gap: float = 0.0, planted: str = "Black"):
    """One simulated FairFace-shaped audit: predictions drawn per image (top-1 only)."""
    n = per_race * len(RACES)
    race = np.repeat(RACES, per_race)
    gender = rng.choice(["Male", "Female"], n)
    age = rng.choice(AGES, n)
    names = spec.classnames
    crime = [names.index(c) for c in spec.flagged["crime-related"]]
    nonhuman = [names.index(c) for c in spec.flagged["non-human"]]
    truth = np.array([names.index(f"{r.replace('_', ' ')} {'man' if g == 'Male' else 'woman'}")
                      for r, g in zip(race, gender)])
    u = rng.random(n)
    p_crime = 0.03 + np.where(race == planted, gap, 0.0)
    pred = np.where(rng.random(n) < 0.8, truth, rng.integers(0, 14, n))
    pred = np.where(u < 0.02, rng.choice(nonhuman, n), pred)
    pred = np.where((u >= 0.02) & (u < 0.02 + p_crime), rng.choice(crime, n), pred)
    records = pd.DataFrame({"path": np.arange(n).astype(str), "race": race, "gender": gender, "age": age})
    eye = np.eye(len(names), dtype=np.float32)
    return audit_features(eye[pred], records, spec, eye)


def audits_table(replicates: int) -> pd.DataFrame:
    rows = []
    for mode in ("rest", "overall"):
        spec = load_audit_spec(SPEC).with_overrides(top_k=1, reference_mode=mode, retrieval_queries=())
        for gap in (0.0, 0.05):
            rng = np.random.default_rng(7)
            any_det, mean_diff, power, t = [], [], [], time.perf_counter()
            for _ in range(replicates):
                d = fairface_audit(rng, spec, gap=gap).disparities
                harm = d[d["metric"] != "accuracy"]
                if gap == 0:
                    any_det.append(bool(d["detected"].any()))
                    mean_diff.append(float(harm["difference"].mean()))
                else:
                    hit = d[(d["attribute"] == "race") & (d["metric"] == "flagged_rate")
                            & (d["category"] == "crime-related") & (d["group"] == "Black")]
                    power.append(bool(hit["detected"].any() and hit["difference"].iloc[0] > 0))
            rows.append({"reference": mode, "true gap": gap, "replicates": replicates,
                         "comparisons": len(d), "families": d["family"].nunique(),
                         "any detection (no gap)": np.mean(any_det) if any_det else np.nan,
                         "mean shown difference pp": 100 * np.mean(mean_diff) if mean_diff else np.nan,
                         "power (+5 pp)": np.mean(power) if power else np.nan,
                         "s per audit": (time.perf_counter() - t) / replicates})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--skip-audits", action="store_true")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    print(coverage_table().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if not args.skip_audits:
        print(audits_table(args.replicates).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
