"""cliplab.audit.stats: exactness against scipy, interval coverage, false positives under the null."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from cliplab.audit.definition import AuditSpec, ClassSpec
from cliplab.audit.run import audit_features
from cliplab.audit.stats import adjust, bootstrap_paired, bootstrap_two_groups, fisher_exact, mcnemar_exact, wilson

REPLICATES = 2000


@pytest.mark.parametrize("scale", [15, 300, 4000])
def test_fisher_exact_equals_scipy(scale):
    rng = np.random.default_rng(scale)
    n1, n0 = rng.integers(0, scale, 400), rng.integers(0, scale, 400)
    x1, x0 = rng.binomial(n1, rng.uniform(0, 0.4, 400)), rng.binomial(n0, rng.uniform(0, 0.4, 400))
    ours = fisher_exact(x1, n1, x0, n0)
    ref = [st.fisher_exact([[a, b - a], [c, d - c]])[1] for a, b, c, d in zip(x1, n1, x0, n0)]
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-300)


def test_wilson_matches_formula_and_handles_edges():
    lo, hi = wilson([0, 5, 20, 0], [20, 20, 20, 0])
    z = 1.959963984540054
    p, n = 5 / 20, 20
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert lo[1] == pytest.approx((centre - half) / (1 + z * z / n))
    assert hi[1] == pytest.approx((centre + half) / (1 + z * z / n))
    assert lo[0] == 0 and hi[0] > 0 and hi[2] == 1 and lo[2] < 1
    assert np.isnan(lo[3]) and np.isnan(hi[3])


@pytest.mark.parametrize("n,p", [(200, 0.3), (400, 0.05), (1000, 0.02)])
def test_wilson_coverage(n, p):
    x = np.random.default_rng(7).binomial(n, p, REPLICATES)
    lo, hi = wilson(x, np.full(REPLICATES, n))
    assert 0.93 <= np.mean((lo <= p) & (p <= hi)) <= 0.97


@pytest.mark.parametrize("n1,p1,n0,p0", [(300, 0.3, 300, 0.2), (500, 0.05, 400, 0.02), (100, 0.4, 150, 0.3)])
def test_bootstrap_difference_and_ratio_coverage(n1, p1, n0, p0):
    rng = np.random.default_rng(11)
    x1, x0 = rng.binomial(n1, p1, REPLICATES), rng.binomial(n0, p0, REPLICATES)
    b = bootstrap_two_groups(x1, np.full(REPLICATES, n1), x0, np.full(REPLICATES, n0), n_boot=1000, seed=3)
    d, r = p1 - p0, p1 / p0
    assert 0.93 <= np.mean((b["diff_low"] <= d) & (d <= b["diff_high"])) <= 0.97
    assert 0.93 <= np.mean((b["ratio_low"] <= r) & (r <= b["ratio_high"])) <= 0.97


def test_bootstrap_zero_rates_are_finite_or_infinite_not_nan():
    b = bootstrap_two_groups([0, 5], [50, 50], [0, 0], [50, 50], n_boot=200)
    assert b["diff_low"][0] == b["diff_high"][0] == 0
    assert b["ratio_low"][0] == b["ratio_high"][0] == 1
    assert b["ratio_high"][1] == np.inf


def test_paired_change_interval_and_mcnemar():
    lo, hi = bootstrap_paired([10], [30], [2], [58], n_boot=2000)
    assert lo[0] < -0.28 + 0.1 and hi[0] < 0  # change = (2 - 30) / 100
    assert mcnemar_exact([30], [2])[0] == pytest.approx(st.binomtest(2, 32, 0.5).pvalue)
    assert mcnemar_exact([0], [0])[0] == 1.0


def test_holm_equals_statsmodels():
    from statsmodels.stats.multitest import multipletests

    from cliplab.audit.stats import holm

    p = np.random.default_rng(5).uniform(0, 0.2, 300) ** 2
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])


def test_adjust_counts_implicit_hypotheses():
    p = np.array([0.01, 0.04])
    np.testing.assert_allclose(adjust(p, "holm"), [0.02, 0.04])
    np.testing.assert_allclose(adjust(p, "holm", n_extra=3), [0.05, 0.16])
    np.testing.assert_allclose(adjust(p, "none"), p)


def _null_audit(rng: np.random.Generator, n_groups: int = 4, n: int = 150, rates=(0.1, 0.05)) -> pd.DataFrame:
    """One audit where every group has the same true rates: any flag is a false positive."""
    c = 2 + len(rates)
    probs = np.array([1 - sum(rates) - 0.3, 0.3, *rates])
    pred = rng.choice(c, size=n_groups * n, p=probs)
    features = np.eye(c, dtype=np.float32)[pred]
    records = pd.DataFrame({"path": [f"{i}.png" for i in range(len(pred))],
                            "group": np.repeat([f"g{i}" for i in range(n_groups)], n)})
    spec = AuditSpec(classes=tuple(ClassSpec(x) for x in ["a", "b", "harm1", "harm2"]),
                     flagged={"h1": ("harm1",), "h2": ("harm2",)}, group_by=("group",), top_k=2, n_boot=200,
                     seed=int(rng.integers(1 << 30)))
    return audit_features(features, records, spec, np.eye(c, dtype=np.float32)).disparities


def test_corrected_false_positive_rate_under_no_disparity():
    """Family-wise: share of whole audits with at least one flag, with best-group references."""
    rng = np.random.default_rng(2024)
    audits = [_null_audit(rng) for _ in range(200)]
    any_flag = np.mean([d["flagged"].any() for d in audits])
    assert len(audits[0]) == 3 * 4  # 3 non-reference groups x (top-1, top-2) x (h1, h2)
    assert any_flag <= 0.05
