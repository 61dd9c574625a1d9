"""Bias in text-to-image retrieval: who appears in the top k for a query such as "a criminal".

Geyik et al. (2019), used for CLIP by Berg et al. (2022). For an attribute with values a and
desired proportions p(a) (here: the proportions among the audited images that have a value):
- Skew@k(a) = ln(share of a in the top k / p(a)); MaxSkew@k = max over a (0 = representative;
  ln 2 = some group appears twice as often as its share). A value absent from the top k has
  Skew -inf; MinSkew@k is reported as that group's -inf (JSON null).
- NDKL = (1/Z) sum_{i=1..k} KL(D_i || D) / log2(i+1), Z = sum_{i=1..k} 1/log2(i+1), with D_i the
  attribute distribution of the top i; natural logarithms, 0 ln 0 = 0.
Images without a value for the attribute are left out of that attribute's ranking.

Neither number is 0 by chance alone: k images drawn at random from the population still skew.
Each row therefore carries a permutation band: the attribute values shuffled over the same
images (same groups, same proportions, no link to the query) ``PERMUTATIONS`` times; the band
is the 2.5-97.5% range of MaxSkew@k and NDKL under that shuffle, and ``*_p`` the share of
shuffles at least as extreme as the observed value (with the observed one counted).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first (ties by index)."""
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


def skew_at_k(ranked_values: np.ndarray, desired: pd.Series, k: int) -> pd.Series:
    """Skew@k per attribute value for a ranked list of attribute values."""
    top = pd.Series(ranked_values[:k]).value_counts(normalize=True).reindex(desired.index, fill_value=0.0)
    with np.errstate(divide="ignore"):
        return np.log(top / desired)


def ndkl(ranked_values: np.ndarray, desired: pd.Series, k: int) -> float:
    """Normalised discounted cumulative KL divergence of a ranked list from ``desired``."""
    k = min(k, len(ranked_values))
    codes = pd.Categorical(ranked_values[:k], categories=desired.index).codes
    onehot = np.zeros((k, len(desired)))
    onehot[np.arange(k), codes] = 1.0
    dist = np.cumsum(onehot, axis=0) / np.arange(1, k + 1)[:, None]
    d = desired.to_numpy(float)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(dist > 0, dist * np.log(dist / d), 0.0).sum(axis=1)
    weights = 1.0 / np.log2(np.arange(1, k + 1) + 1)
    return float((kl * weights).sum() / weights.sum())


PERMUTATIONS = 500
COLUMNS = ["query", "attribute", "k", "max_skew", "max_skew_group", "min_skew", "min_skew_group", "ndkl",
           "top_k_share", "population_share", "max_skew_chance_low", "max_skew_chance_high", "max_skew_p",
           "ndkl_chance_low", "ndkl_chance_high", "ndkl_p"]


def chance_band(counts: pd.Series, k: int, observed: tuple[float, float], permutations: int = PERMUTATIONS,
                seed: int = 0) -> dict[str, float]:
    """Permutation band of (MaxSkew@k, NDKL) for a population with ``counts`` images per value:
    the top k replaced by k images drawn without replacement (what shuffling the attribute over
    the same images gives): the values drawn (multivariate hypergeometric) in a random order."""
    rng = np.random.default_rng(seed)
    k = min(k, int(counts.sum()))
    desired = counts / counts.sum()
    draws = rng.multivariate_hypergeometric(counts.to_numpy(np.int64), k, size=permutations)  # [P, G]
    drawn = rng.permuted(np.stack([np.repeat(np.arange(len(counts)), row) for row in draws]), axis=1)  # [P, k]
    onehot = np.eye(len(desired))[drawn]  # [P, k, G]
    dist = np.cumsum(onehot, axis=1) / np.arange(1, k + 1)[None, :, None]
    d = desired.to_numpy(float)[None, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(dist > 0, dist * np.log(dist / d), 0.0).sum(axis=2)
        skews = np.log(dist[:, -1, :] / d[0]).max(axis=1)
    weights = 1.0 / np.log2(np.arange(1, k + 1) + 1)
    ndkls = (kl * weights).sum(axis=1) / weights.sum()
    (s_lo, s_hi), (n_lo, n_hi) = np.quantile(skews, [0.025, 0.975]), np.quantile(ndkls, [0.025, 0.975])
    return {"max_skew_chance_low": float(s_lo), "max_skew_chance_high": float(s_hi),
            "max_skew_p": float((1 + np.sum(skews >= observed[0] - 1e-12)) / (1 + permutations)),
            "ndkl_chance_low": float(n_lo), "ndkl_chance_high": float(n_hi),
            "ndkl_p": float((1 + np.sum(ndkls >= observed[1] - 1e-12)) / (1 + permutations))}


def retrieval_bias(features: np.ndarray, records: pd.DataFrame, queries: dict[str, np.ndarray],
                   attributes: list[str], k: int, permutations: int = PERMUTATIONS, seed: int = 0) -> pd.DataFrame:
    """MaxSkew@k, MinSkew@k and NDKL of each text query's top-k images, per attribute.

    ``queries`` maps each query text to its L2-normalised embedding [d]. Returns one row per
    (query, attribute) with the most over- and under-represented groups, the top-k shares and
    the chance band of both numbers (:func:`chance_band`).
    """
    rows = []
    for text, q in queries.items():
        sims = np.asarray(features, np.float32) @ np.asarray(q, np.float32)
        for attr in attributes:
            values = records[attr].astype("string").str.strip().replace("", pd.NA)
            have = values.notna().to_numpy()
            if not have.any():
                continue
            vals = values.to_numpy()[have].astype(str)
            desired = pd.Series(vals).value_counts(normalize=True).sort_index()
            ranked = vals[top_k_indices(sims[have], k)]
            skew = skew_at_k(ranked, desired, k)
            shares = pd.Series(ranked).value_counts(normalize=True).reindex(desired.index, fill_value=0.0)
            observed = (float(skew.max()), ndkl(ranked, desired, k))
            counts = pd.Series(vals).value_counts().sort_index()
            rows.append({"query": text, "attribute": attr, "k": len(ranked),
                         "max_skew": observed[0], "max_skew_group": str(skew.idxmax()),
                         "min_skew": float(skew.min()), "min_skew_group": str(skew.idxmin()),
                         "ndkl": observed[1],
                         "top_k_share": {str(a): float(v) for a, v in shares.items()},
                         "population_share": {str(a): float(v) for a, v in desired.items()},
                         **chance_band(counts, k, observed, permutations, seed)})
    return pd.DataFrame(rows, columns=COLUMNS)
