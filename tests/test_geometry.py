"""cliplab.geometry: diagnostics against hand-computed values; projections, their cache and placement."""
from __future__ import annotations

import math

import numpy as np
import pytest

import cliplab.geometry as geo
from cliplab.errors import InputError


def test_modality_gap_by_hand():
    img = np.array([[2.0, 0.0], [1.0, 0.0]])  # normalised: both (1, 0)
    txt = np.array([[0.0, 3.0]])
    assert geo.modality_gap(img, txt) == pytest.approx(math.sqrt(2))
    assert geo.modality_gap(img, img) == pytest.approx(0.0)


def test_alignment_by_hand():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[0.0, 1.0], [0.0, 2.0]])  # pair 1: ||(1,-1)||^2 = 2; pair 2: 0
    assert geo.alignment(x, y) == pytest.approx(1.0)
    assert geo.alignment(x, y, alpha=1) == pytest.approx(math.sqrt(2) / 2)
    with pytest.raises(InputError, match="matched"):
        geo.alignment(x, y[:1])


def test_uniformity_by_hand():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # squared distances 2, 4, 2
    expected = math.log((math.exp(-4) + math.exp(-8) + math.exp(-4)) / 3)
    assert geo.uniformity(x) == pytest.approx(expected)
    assert geo.uniformity(np.ones((5, 3))) == pytest.approx(0.0, abs=1e-6)  # all equal: log mean exp(0)
    with pytest.raises(InputError, match="at least 2"):
        geo.uniformity(x[:1])


def test_uniformity_subsamples_large_sets_deterministically():
    x = np.random.default_rng(0).normal(size=(300, 8))
    a, b = geo.uniformity(x, max_samples=100), geo.uniformity(x, max_samples=100)
    assert a == b and abs(a - geo.uniformity(x)) < 0.2


def test_effective_rank_by_hand():
    assert geo.effective_rank(np.eye(4)) == pytest.approx(4.0)
    assert geo.effective_rank(np.outer(np.arange(1, 6), np.arange(1, 4))) == pytest.approx(1.0)
    p = np.array([0.75, 0.25])  # singular values 3 and 1
    assert geo.effective_rank(np.diag([3.0, 1.0])) == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    with pytest.raises(InputError, match="all-zero"):
        geo.effective_rank(np.zeros((3, 3)))


def test_class_centroid_similarity_by_hand():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sim = geo.class_centroid_similarity(x, ["a", "a", "b", "c"])
    assert sim.loc["a", "b"] == pytest.approx(0.0) and sim.loc["a", "c"] == pytest.approx(math.sqrt(0.5))
    assert np.allclose(np.diag(sim), 1.0)
    with pytest.raises(InputError, match="no embeddings"):
        geo.class_centroid_similarity(x, ["a", "a", "b", "c"], classnames=["a", "z"])


def test_pca_projection_matches_svd_and_splits_inputs(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 6)), rng.normal(size=(5, 6)) + 3
    p = geo.project(a, b, method="pca", cache_dir=tmp_path, normalize=False)
    x = np.concatenate([a, b])
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    ref = xc @ vt[:2].T
    assert np.allclose(np.abs(p.coords), np.abs(ref), atol=1e-4)
    first, second = p.split()
    assert first.shape == (20, 2) and second.shape == (5, 2)
    assert np.allclose(geo.place(p, x, x[:3]), p.coords[:3], atol=1e-4)  # PCA placement is exact


def test_cached_projection_is_identical_and_not_recomputed(tmp_path, monkeypatch):
    x = np.random.default_rng(2).normal(size=(50, 16)).astype(np.float32)
    calls = []

    def fake_umap(data, k, seed, pca_dims, kwargs):
        calls.append(len(data))
        return np.random.default_rng(len(calls)).normal(size=(len(data), k)).astype(np.float32)

    monkeypatch.setattr(geo, "_umap", fake_umap)
    first = geo.project(x, method="umap", cache_dir=tmp_path)
    second = geo.project(x.copy(), method="umap", cache_dir=tmp_path)
    assert calls == [50] and not first.cached and second.cached
    assert np.array_equal(first.coords, second.coords)
    geo.project(x, method="umap", cache_dir=tmp_path, n_neighbors=5)  # other settings: another key
    geo.project(x + 1e-3, method="umap", cache_dir=tmp_path)  # other contents: another key
    assert calls == [50, 50, 50]


def test_damaged_cache_file_is_recomputed(tmp_path):
    x = np.random.default_rng(3).normal(size=(10, 4))
    p = geo.project(x, method="pca", cache_dir=tmp_path)
    (tmp_path / f"{p.key}.npz").write_bytes(b"not an npz")
    again = geo.project(x, method="pca", cache_dir=tmp_path)
    assert not again.cached and np.array_equal(again.coords, p.coords)


def test_real_umap_small(tmp_path):
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(3, 32)) * 4
    x = np.concatenate([c + rng.normal(size=(60, 32)) for c in centres]).astype(np.float32)
    p = geo.project(x, method="umap", cache_dir=tmp_path, n_epochs=50)
    assert p.coords.shape == (180, 2) and np.isfinite(p.coords).all()
    # clusters stay apart: each point's nearest map neighbour is from its own cluster
    d = ((p.coords[:, None] - p.coords[None]) ** 2).sum(-1) + np.eye(180) * 1e9
    assert (d.argmin(1) // 60 == np.arange(180) // 60).mean() > 0.95
    q = geo.place(p, x, x[:1] + 0.01)
    assert np.linalg.norm(q - p.coords[:1]) < np.ptp(p.coords[:, 0])


def test_exact_knn_includes_self_first():
    x = np.random.default_rng(5).normal(size=(30, 8)).astype(np.float32)
    idx, dist = geo.exact_knn(x, 4, chunk=7)
    assert (idx[:, 0] == np.arange(30)).all() and np.allclose(dist[:, 0], 0, atol=1e-5)
    assert (np.diff(dist, axis=1) >= -1e-6).all()


@pytest.mark.parametrize("args, kwargs, match", [
    ((), {}, "nothing to project"),
    ((np.zeros((5, 3)), np.zeros((5, 4))), {}, "differ in dimension"),
    ((np.zeros((2, 3)),), {}, "at least 3 points"),
    ((np.full((5, 3), np.nan),), {}, "NaN"),
    ((np.zeros((5, 3)),), {"method": "tsne"}, "must be one of"),
])
def test_bad_projection_inputs_say_why(args, kwargs, match):
    with pytest.raises(InputError, match=match):
        geo.project(*args, cache_dir=None, **kwargs)
