"""cliplab.audit.retrieval: MaxSkew@k and NDKL against hand computations."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cliplab.audit.retrieval import chance_band, ndkl, retrieval_bias, skew_at_k, top_k_indices

DESIRED = pd.Series({"A": 0.5, "B": 0.5})
RANKED = np.array(["A", "A", "B", "A", "B", "B"])


def test_skew_at_k_by_hand():
    skew = skew_at_k(RANKED, DESIRED, 4)  # top 4: 3 A, 1 B
    assert skew["A"] == pytest.approx(math.log(0.75 / 0.5))
    assert skew["B"] == pytest.approx(math.log(0.25 / 0.5))
    assert skew_at_k(RANKED, DESIRED, 6).abs().max() == pytest.approx(0.0)  # 3 and 3: representative
    assert skew_at_k(RANKED, DESIRED, 2)["B"] == -math.inf


def test_ndkl_by_hand():
    kl = lambda p: sum(x * math.log(x / 0.5) for x in p if x > 0)
    dists = [(1, 0), (1, 0), (2 / 3, 1 / 3), (3 / 4, 1 / 4)]
    w = [1 / math.log2(i + 1) for i in range(1, 5)]
    expected = sum(wi * kl(d) for wi, d in zip(w, dists)) / sum(w)
    assert ndkl(RANKED, DESIRED, 4) == pytest.approx(expected)
    assert ndkl(np.array(["A", "B"] * 5), DESIRED, 10) < ndkl(RANKED, DESIRED, 4)


def test_ndkl_is_zero_only_when_every_prefix_is_representative():
    desired = pd.Series({"A": 1.0})
    assert ndkl(np.array(["A"] * 5), desired, 5) == 0.0


def test_top_k_indices_order_and_ties():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.2])
    assert top_k_indices(s, 3).tolist() == [1, 3, 2]
    assert top_k_indices(s, 10).tolist() == [1, 3, 2, 4, 0]


def test_retrieval_bias_over_embeddings():
    # 8 images; the query direction e0 ranks them by their first coordinate: A, A, B, A, B, B, B, A
    order_values = ["A", "A", "B", "A", "B", "B", "B", "A"]
    first = np.linspace(1.0, 0.3, 8)
    feats = np.stack([first, np.sqrt(1 - first ** 2)], axis=1).astype(np.float32)
    records = pd.DataFrame({"path": [f"{i}.png" for i in range(8)], "g": order_values,
                            "h": ["x"] * 7 + [None]})
    out = retrieval_bias(feats, records, {"a query": np.array([1.0, 0.0])}, ["g", "h"], k=4)
    row = out[out["attribute"] == "g"].iloc[0]
    assert row["max_skew"] == pytest.approx(math.log(1.5)) and row["max_skew_group"] == "A"
    assert row["min_skew"] == pytest.approx(math.log(0.5)) and row["min_skew_group"] == "B"
    assert row["ndkl"] == pytest.approx(ndkl(RANKED, DESIRED, 4))
    assert row["top_k_share"] == {"A": 0.75, "B": 0.25}
    h = out[out["attribute"] == "h"].iloc[0]  # one image without a value is left out; one group only
    assert h["max_skew"] == 0.0 and h["ndkl"] == 0.0


def test_chance_band_contains_random_rankings_and_excludes_a_skewed_one():
    """With 1,000 images 30% A, a random top 50 falls inside the band; a top 50 of only A does not."""
    rng = np.random.default_rng(3)
    vals = np.where(rng.random(1000) < 0.3, "A", "B")
    desired = pd.Series(vals).value_counts(normalize=True).sort_index()
    random_top = vals[rng.choice(1000, 50, replace=False)]
    obs = (float(skew_at_k(random_top, desired, 50).max()), ndkl(random_top, desired, 50))
    band = chance_band(pd.Series(vals).value_counts().sort_index(), 50, obs, permutations=400, seed=1)
    assert band["max_skew_chance_low"] <= obs[0] <= band["max_skew_chance_high"] and band["max_skew_p"] > 0.05
    assert band["max_skew_chance_high"] > 0.1 and band["ndkl_chance_low"] > 0  # chance alone is not 0
    skewed = np.array(["A"] * 50)
    obs = (float(skew_at_k(skewed, desired, 50).max()), ndkl(skewed, desired, 50))
    band = chance_band(pd.Series(vals).value_counts().sort_index(), 50, obs, permutations=400, seed=1)
    assert obs[0] > band["max_skew_chance_high"] and obs[1] > band["ndkl_chance_high"] and band["ndkl_p"] < 0.01
