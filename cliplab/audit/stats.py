"""The statistics of an audit: intervals, exact tests and multiple-comparison correction.

Everything here works on counts (successes out of trials), vectorised over many comparisons
at once, so an audit over a million images costs the same as one over a thousand:
- rates: Wilson score intervals (statsmodels), good also near 0 and 1;
- differences and ratios between two groups: parametric bootstrap of the two binomial counts
  (percentile intervals), and Fisher's exact test (two-sided, the same p-value as
  scipy.stats.fisher_exact, computed for all tables at once);
- paired changes (one image set, two label sets): bootstrap of the paired counts and the exact
  McNemar test;
- correction across all tests of an audit: Holm (default), Benjamini-Hochberg or Bonferroni
  (statsmodels.multipletests), with optional extra hypotheses counted as p = 1 (see
  :func:`adjust`).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import binom, hypergeom
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

Z95 = 1.959963984540054
REL_TOL = 1e-7  # tables whose probability is within this factor of the observed count as "as extreme"


def wilson(successes, trials, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for successes/trials (arrays); NaN where trials is 0."""
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    safe = np.where(n > 0, n, 1.0)
    lo, hi = proportion_confint(x, safe, alpha=alpha, method="wilson")
    lo = np.where(x <= 0, 0.0, np.clip(lo, 0.0, 1.0))  # exact ends, not 1 - 1e-16
    hi = np.where(x >= safe, 1.0, np.clip(hi, 0.0, 1.0))
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def bootstrap_two_groups(x1, n1, x0, n0, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
                         chunk: int = 512) -> dict[str, np.ndarray]:
    """Percentile bootstrap intervals of p1 - p0 and p1 / p0 for many pairs of binomial counts.

    Each group's count is redrawn from Binomial(n, observed rate), independently: the groups
    are disjoint sets of images. Ratios with a zero denominator are infinite (or undefined when
    both are zero) and their intervals use the order statistics, never interpolation.
    """
    x1, n1, x0, n0 = (np.asarray(a, dtype=np.int64) for a in (x1, n1, x0, n0))
    rng = np.random.default_rng(seed)
    q = [alpha / 2, 1 - alpha / 2]
    out = {k: np.full(len(x1), np.nan) for k in ("diff_low", "diff_high", "ratio_low", "ratio_high")}
    p1 = np.divide(x1, n1, out=np.zeros(len(x1)), where=n1 > 0)
    p0 = np.divide(x0, n0, out=np.zeros(len(x0)), where=n0 > 0)
    for s in range(0, len(x1), chunk):
        sl = slice(s, s + chunk)
        b1 = rng.binomial(n1[sl, None], p1[sl, None], size=(len(p1[sl]), n_boot)) / np.maximum(n1[sl, None], 1)
        b0 = rng.binomial(n0[sl, None], p0[sl, None], size=(len(p0[sl]), n_boot)) / np.maximum(n0[sl, None], 1)
        d = np.quantile(b1 - b0, q, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(b0 > 0, b1 / np.where(b0 > 0, b0, 1), np.where(b1 > 0, np.inf, np.nan))
        r = np.where(np.isnan(r), 1.0, r)  # 0/0: no difference; counted as ratio 1
        rq = np.quantile(r, q, axis=1, method="inverted_cdf")
        out["diff_low"][sl], out["diff_high"][sl] = d[0], d[1]
        out["ratio_low"][sl], out["ratio_high"][sl] = rq[0], rq[1]
    return out


def ratio(x1, n1, x0, n0) -> np.ndarray:
    """p1 / p0 with inf where p0 = 0 < p1 and 1 where both are 0."""
    p1 = np.asarray(x1, float) / np.maximum(np.asarray(n1, float), 1)
    p0 = np.asarray(x0, float) / np.maximum(np.asarray(n0, float), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(p0 > 0, p1 / np.where(p0 > 0, p0, 1), np.where(p1 > 0, np.inf, 1.0))
    return r


# ------------------------------------------------------------------------ Fisher's exact
def fisher_exact(x1, n1, x0, n0) -> np.ndarray:
    """Two-sided Fisher exact p-values of the 2x2 tables [[x1, n1-x1], [x0, n0-x0]], vectorised.

    Same definition as scipy.stats.fisher_exact (sum of the probabilities of all tables with the
    same margins that are no more likely than the observed one), but for thousands of tables in
    one pass: scipy's version costs about 2 ms per table, too slow for a large audit.
    """
    x1, n1, x0, n0 = (np.atleast_1d(np.asarray(a, dtype=np.int64)) for a in (x1, n1, x0, n0))
    M, K, N = n1 + n0, n1, x1 + x0  # population, row-1 size, successes: x1 ~ hypergeom(M, K, N)
    degenerate = (n1 == 0) | (n0 == 0) | (N == 0) | (N == M)
    Ms, Ks, Ns = np.where(degenerate, 2, M), np.where(degenerate, 1, K), np.where(degenerate, 1, N)
    lo_s, hi_s = np.maximum(0, Ns - (Ms - Ks)), np.minimum(Ns, Ks)
    mode = ((Ns + 1) * (Ks + 1)) // (Ms + 2)
    lp = lambda x: hypergeom.logpmf(x, Ms, Ks, Ns)
    x = np.where(degenerate, 0, x1)
    thr = lp(x) + np.log1p(REL_TOL)
    at_mode = lp(mode) <= thr
    below = x < mode
    # x below the mode: the other tail starts at the first y >= mode with pmf(y) <= pmf(x).
    lo, hi = mode.copy(), hi_s + 1
    while np.any(active := below & (lo < hi)):
        mid = (lo + hi) // 2
        ok = lp(np.minimum(mid, hi_s)) <= thr
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)
    p_below = hypergeom.cdf(x, Ms, Ks, Ns) + hypergeom.sf(lo - 1, Ms, Ks, Ns)
    # x above the mode: the other tail ends at the last y <= mode with pmf(y) <= pmf(x).
    lo, hi = lo_s - 1, mode.copy()
    while np.any(active := ~below & (lo < hi)):
        mid = (lo + hi + 1) // 2
        ok = lp(mid) <= thr
        lo = np.where(active & ok, mid, lo)
        hi = np.where(active & ~ok, mid - 1, hi)
    p_above = hypergeom.sf(x - 1, Ms, Ks, Ns) + hypergeom.cdf(lo, Ms, Ks, Ns)
    p = np.where(below, p_below, p_above)
    return np.clip(np.where(degenerate | at_mode, 1.0, p), 0.0, 1.0)


# ---------------------------------------------------------------------- paired (McNemar)
def mcnemar_exact(only_a, only_b) -> np.ndarray:
    """Exact McNemar p-values from the discordant counts (flagged under A only / B only)."""
    b, c = np.asarray(only_a, np.int64), np.asarray(only_b, np.int64)
    n, k = b + c, np.minimum(b, c)
    p = np.minimum(1.0, 2 * binom.cdf(k, np.maximum(n, 1), 0.5))
    return np.where(n == 0, 1.0, p)


def bootstrap_paired(n11, n10, n01, n00, n_boot: int = 2000, alpha: float = 0.05,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the paired change (n01 - n10) / n, resampling images (multinomial)."""
    counts = np.stack([np.asarray(a, np.int64) for a in (n11, n10, n01, n00)], axis=1)
    rng = np.random.default_rng(seed)
    lo, hi = np.full(len(counts), np.nan), np.full(len(counts), np.nan)
    for i, c in enumerate(counts):
        n = int(c.sum())
        if n == 0:
            continue
        draws = rng.multinomial(n, c / n, size=n_boot)
        change = (draws[:, 2] - draws[:, 1]) / n
        lo[i], hi[i] = np.quantile(change, [alpha / 2, 1 - alpha / 2])
    return lo, hi


# ------------------------------------------------------------------------------ correction
def adjust(p_values, method: str = "holm", n_extra: int = 0) -> np.ndarray:
    """Adjusted p-values of all tests of an audit together.

    ``n_extra`` hypotheses that were implicitly tested but not reported are added with p = 1.
    An audit that picks each reference group from the data (the best group) has implicitly
    compared every pair of groups; counting those pairs keeps the false-positive rate of the
    reported comparisons controlled. (Holm, Bonferroni and Benjamini-Hochberg are monotone in
    the p-values, so setting the unreported ones to 1 can only reject less.)
    """
    p = np.asarray(p_values, dtype=float)
    if len(p) == 0 or method == "none":
        return p.copy()
    padded = np.concatenate([p, np.ones(int(n_extra))])
    if method == "holm":
        return holm(padded)[: len(p)]
    return multipletests(padded, method=method)[1][: len(p)]


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values; equal to multipletests(method='holm'), which runs a full
    gc.collect() on every call (about 0.1 s in a process that has torch loaded)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
    out = np.empty_like(p)
    out[order] = np.minimum(steps, 1.0)
    return out
