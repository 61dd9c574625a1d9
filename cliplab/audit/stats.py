"""The statistics of an audit: intervals, exact tests and multiple-comparison correction.

Everything here works on counts (successes out of trials), vectorised over many comparisons
at once, so an audit over a million images costs the same as one over a thousand. Methods
(docs/audit.md, "Statistics", has the coverage each reaches in simulation):
- rates: Wilson score intervals, with the Clopper-Pearson end where the count is within 2 of
  0 or n (Wilson alone covers 86% at 1 event in 30 images, a rate of 0.5%);
- differences between two groups: Newcombe's hybrid score interval (statsmodels
  ``confint_proportions_2indep(method="newcomb")``, vectorised there); ratios: the log interval
  with 0.5 added to each count ("log-adjusted"), finite and non-degenerate at zero counts;
  Fisher's exact test (two-sided, the same p-value as scipy.stats.fisher_exact, for all tables
  at once); alpha may differ per row, for simultaneous intervals;
- paired changes (one image set, two label sets): Bonett-Price adjusted Wald interval (does not
  collapse at zero discordant counts) and the exact McNemar test;
- power: the minimum detectable difference of a two-sided test (normal approximation);
- correction within families behind a gate per family (:func:`family_adjust`): Holm
  (default), Benjamini-Hochberg or Bonferroni (statsmodels.multipletests).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binom, hypergeom, norm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

REL_TOL = 1e-7  # tables whose probability is within this factor of the observed count as "as extreme"


EXACT_ENDS = 2  # counts within this of 0 (or of n) take the Clopper-Pearson lower (upper) end


def wilson(successes, trials, alpha=0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for successes/trials (arrays), with Clopper-Pearson ends near 0 and
    n (see EXACT_ENDS); NaN where trials is 0. ``alpha`` may be an array (one per row)."""
    x = np.atleast_1d(np.asarray(successes, dtype=float))
    n = np.atleast_1d(np.asarray(trials, dtype=float))
    safe = np.where(n > 0, n, 1.0)
    lo, hi = proportion_confint(x, safe, alpha=alpha, method="wilson")
    cp_lo, cp_hi = proportion_confint(x, safe, alpha=alpha, method="beta")
    lo = np.where(x <= EXACT_ENDS, np.nan_to_num(cp_lo), lo)
    hi = np.where(x >= safe - EXACT_ENDS, np.nan_to_num(cp_hi, nan=1.0), hi)
    lo = np.where(x <= 0, 0.0, np.clip(lo, 0.0, 1.0))  # exact ends, not 1 - 1e-16
    hi = np.where(x >= safe, 1.0, np.clip(hi, 0.0, 1.0))
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def difference_interval(x1, n1, x0, n0, alpha=0.05) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval of p1 - p0 (independent groups); NaN where a group is empty."""
    x1, n1, x0, n0 = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (x1, n1, x0, n0))
    ok = (n1 > 0) & (n0 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = confint_proportions_2indep(x1, np.where(ok, n1, 1), x0, np.where(ok, n0, 1), method="newcomb",
                                            compare="diff", alpha=alpha)
    return np.where(ok, np.clip(lo, -1, 1), np.nan), np.where(ok, np.clip(hi, -1, 1), np.nan)


def ratio_interval(x1, n1, x0, n0, alpha=0.05) -> tuple[np.ndarray, np.ndarray]:
    """Log interval of p1 / p0 with 0.5 added to every count (statsmodels "log-adjusted"):
    finite at zero counts (4/100 vs 0/100 gives about [0.5, 165], not [inf, inf])."""
    x1, n1, x0, n0 = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (x1, n1, x0, n0))
    ok = (n1 > 0) & (n0 > 0)
    with np.errstate(invalid="ignore"):  # rounding can make the variance -1e-17 when every image counts
        lo, hi = confint_proportions_2indep(x1, np.where(ok, n1, 1), x0, np.where(ok, n0, 1),
                                            method="log-adjusted", compare="ratio", alpha=alpha)
    return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)


def paired_interval(only_a, only_b, n, alpha=0.05) -> tuple[np.ndarray, np.ndarray]:
    """Bonett-Price (2012) adjusted Wald interval of the paired change (only_b - only_a) / n:
    one is added to each discordant count, so zero discordant pairs give a real interval."""
    b, c, n = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (only_a, only_b, n))
    pb, pc = (b + 1) / (n + 2), (c + 1) / (n + 2)
    z = norm.isf(np.asarray(alpha) / 2)
    half = z * np.sqrt(np.maximum(pb + pc - (pc - pb) ** 2, 0) / (n + 2))
    ok = n > 0
    return np.where(ok, np.clip(pc - pb - half, -1, 1), np.nan), np.where(ok, np.clip(pc - pb + half, -1, 1), np.nan)


def detectable_difference(n1, n0, p0, alpha, power: float = 0.8, direction=1) -> np.ndarray:
    """The smallest |p1 - p0| a two-sided level-``alpha`` test of two proportions detects with
    probability ``power`` (normal approximation, pooled variance under the null), for a group of
    ``n1`` against a reference of ``n0`` images at rate ``p0``; ``direction`` +1 looks for a
    higher p1 (harm), -1 for a lower one (accuracy). NaN where no difference inside [0, 1] is
    detectable. Solved by fixed-point iteration, for all rows at once."""
    n1, n0, p0 = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (n1, n0, p0))
    za, zb = norm.isf(np.asarray(alpha, dtype=float) / 2), norm.isf(1 - power)
    d = np.full(np.broadcast(n1, n0, p0).shape, 0.01)
    n1, n0 = np.where(n1 > 0, n1, np.nan), np.where(n0 > 0, n0, np.nan)  # empty groups: NaN, no warning
    for _ in range(60):
        p1 = np.clip(p0 + direction * d, 1e-9, 1 - 1e-9)
        pbar = (n1 * p1 + n0 * p0) / (n1 + n0)
        d = za * np.sqrt(pbar * (1 - pbar) * (1 / n1 + 1 / n0)) + zb * np.sqrt(p1 * (1 - p1) / n1
                                                                               + p0 * (1 - p0) / n0)
    room = np.where(np.asarray(direction) > 0, 1 - p0, p0)
    return np.where(d <= room, d, np.nan)


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


# ------------------------------------------------------------------------------ correction
def adjust(p_values, method: str = "holm") -> np.ndarray:
    """Adjusted p-values of a set of tests (Holm, Bonferroni, Benjamini-Hochberg or none)."""
    p = np.asarray(p_values, dtype=float)
    if len(p) == 0 or method == "none":
        return p.copy()
    if method == "holm":
        return holm(p)
    return multipletests(p, method=method)[1]


def family_adjust(p_values, families, method: str = "holm") -> tuple[np.ndarray, np.ndarray]:
    """Adjusted p-values within families, behind a gate per family; -> (p_adjusted, gate).

    Each family's gate is its global null ("no comparison of the family differs"), tested by
    Bonferroni's union-intersection test (min p x family size, exact-test based, so valid at any
    count) and Holm-corrected across families: an audit with no disparity anywhere shows a
    detection with probability at most alpha however many families it has. Within a family the
    p-values are corrected with ``method``; a comparison's adjusted p-value is the larger of the
    two, so it is below alpha only when its family's gate and its own test both are.
    """
    p = np.asarray(p_values, dtype=float)
    fam = pd.factorize(pd.Series(np.asarray(families, dtype=object)))[0] if len(p) else np.zeros(0, int)
    within = np.empty_like(p)
    gate_f = np.ones(fam.max() + 1 if len(fam) else 0)
    for f in range(len(gate_f)):
        idx = np.flatnonzero(fam == f)
        within[idx] = adjust(p[idx], method)
        gate_f[f] = min(1.0, float(p[idx].min()) * len(idx))
    gate = (adjust(gate_f, "holm") if method != "none" else gate_f)[fam] if len(p) else p.copy()
    return np.maximum(within, gate), gate


def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values; equal to multipletests(method='holm'), which runs a full
    gc.collect() on every call (about 0.1 s in a process that has torch loaded)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
    out = np.empty_like(p)
    out[order] = np.minimum(steps, 1.0)
    return out
