"""Bias in text-to-image retrieval: who appears in the top k for a query such as "a criminal".

Geyik et al. (2019), used for CLIP by Berg et al. (2022). For an attribute with values a and
desired proportions p(a) (here: the proportions among the audited images that have a value):
- Skew@k(a) = ln(share of a in the top k / p(a)); MaxSkew@k = max over a (0 = representative;
  ln 2 = some group appears twice as often as its share). A value absent from the top k has
  Skew -inf; MinSkew@k is reported as that group's -inf (JSON null).
- NDKL = (1/Z) sum_{i=1..k} KL(D_i || D) / log2(i+1), Z = sum_{i=1..k} 1/log2(i+1), with D_i the
  attribute distribution of the top i; natural logarithms, 0 ln 0 = 0.
Images without a value for the attribute are left out of that attribute's ranking.
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


def retrieval_bias(features: np.ndarray, records: pd.DataFrame, queries: dict[str, np.ndarray],
                   attributes: list[str], k: int) -> pd.DataFrame:
    """MaxSkew@k, MinSkew@k and NDKL of each text query's top-k images, per attribute.

    ``queries`` maps each query text to its L2-normalised embedding [d]. Returns one row per
    (query, attribute) with the most over- and under-represented groups and the top-k shares.
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
            rows.append({"query": text, "attribute": attr, "k": len(ranked),
                         "max_skew": float(skew.max()), "max_skew_group": str(skew.idxmax()),
                         "min_skew": float(skew.min()), "min_skew_group": str(skew.idxmin()),
                         "ndkl": ndkl(ranked, desired, k),
                         "top_k_share": {str(a): float(v) for a, v in shares.items()},
                         "population_share": {str(a): float(v) for a, v in desired.items()}})
    return pd.DataFrame(rows, columns=["query", "attribute", "k", "max_skew", "max_skew_group", "min_skew",
                                       "min_skew_group", "ndkl", "top_k_share", "population_share"])
