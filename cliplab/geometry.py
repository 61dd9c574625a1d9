"""Embedding geometry: 2-D maps of image and text embeddings, and diagnostics of their shape.

``project`` puts several embedding sets (say images and prompts) into one 2-D map with UMAP
(umap-learn) or PCA, cached on disk by the content of the arrays and the settings, so the
same call in a later session returns at once. The diagnostics follow the papers that defined
them: the modality gap (Liang et al. 2022), alignment and uniformity (Wang and Isola 2020) and
effective rank (Roy and Vetterli 2007); see docs in /work/shared/reference/metrics.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .embed import DEFAULT_CACHE_DIR
from .errors import InputError

METHODS = ("umap", "pca")
PROJECTION_CACHE = DEFAULT_CACHE_DIR / "projections"
EXACT_KNN_MAX = 30_000  # above this, umap-learn's approximate NNDescent finds the neighbours
_NUMBA_CACHE_ON = False


@dataclass
class Projection:
    """2-D coordinates of the concatenated inputs; ``parts`` gives each input's row range."""

    coords: np.ndarray
    parts: list[tuple[int, int]]
    method: str
    key: str
    cached: bool = False
    seconds: float = 0.0
    normalized: bool = True  # rows were L2-normalised before projecting (place() does the same)
    pca_mean: np.ndarray | None = field(default=None, repr=False)  # set by method="pca": exact transform
    pca_components: np.ndarray | None = field(default=None, repr=False)

    def split(self) -> list[np.ndarray]:
        """The coordinates of each input, in the order they were given."""
        return [self.coords[a:b] for a, b in self.parts]


def _as_matrix(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"{what} must be a 2-D array [n, dim], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(f"{what} contains NaN or infinite values")
    return x


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1)


def content_key(arrays: Sequence[np.ndarray], settings: dict) -> str:
    """sha256 over each array's shape, dtype and bytes plus the settings: the cache key."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes() if a.size else b"")
    return h.hexdigest()[:32]


def project(*features: np.ndarray, method: str = "umap", n_components: int = 2, seed: int = 0,
            normalize: bool = True, pca_dims: int = 50, cache_dir: str | Path | None = PROJECTION_CACHE,
            **umap_kwargs) -> Projection:
    """Map the given embedding sets together to ``n_components`` dimensions.

    Rows are L2-normalised first (``normalize``), as CLIP compares them by cosine. UMAP runs on
    the first ``pca_dims`` principal components (fast and near-lossless for CLIP embeddings;
    ``pca_dims=0`` turns that off) with cosine metric unless ``umap_kwargs`` say otherwise. The
    result is cached in ``cache_dir`` (None = no cache) under a key of contents and settings.
    """
    if method not in METHODS:
        raise InputError(f"projection method must be one of {', '.join(METHODS)}, got {method!r}")
    if not features:
        raise InputError("nothing to project: pass at least one embedding array")
    mats = [_as_matrix(f, f"embedding set {i + 1}") for i, f in enumerate(features)]
    if len({m.shape[1] for m in mats}) > 1:
        raise InputError(f"embedding sets differ in dimension: {[m.shape[1] for m in mats]}")
    x = np.concatenate(mats)
    if len(x) < 3:
        raise InputError(f"need at least 3 points to project, got {len(x)}")
    parts, start = [], 0
    for m in mats:
        parts.append((start, start + len(m)))
        start += len(m)
    settings = {"method": method, "n_components": n_components, "seed": seed, "normalize": normalize,
                "pca_dims": pca_dims, "umap": {k: umap_kwargs[k] for k in sorted(umap_kwargs)}, "v": 1}
    key = content_key(mats, settings)
    t0 = time.perf_counter()
    hit = _cache_load(cache_dir, key)
    if hit is not None:
        return Projection(hit["coords"], parts, method, key, True, time.perf_counter() - t0, normalize,
                          hit.get("pca_mean"), hit.get("pca_components"))
    if normalize:
        x = _normalise(x)
    if method == "pca":
        coords, mean, comps = _pca(x, n_components)
        arrays = {"coords": coords, "pca_mean": mean, "pca_components": comps}
    else:
        arrays = {"coords": _umap(x, n_components, seed, pca_dims, umap_kwargs)}
    _cache_save(cache_dir, key, arrays)
    return Projection(arrays["coords"], parts, method, key, False, time.perf_counter() - t0, normalize,
                      arrays.get("pca_mean"), arrays.get("pca_components"))


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact PCA from the eigenvectors of the covariance (sign fixed so results are deterministic).

    The d x d eigen-decomposition runs on one BLAS thread: for d ~ 512 that is faster, and on a
    busy machine multi-threaded OpenBLAS was 30x slower on this small problem (4 s instead of 0.12 s).
    """
    from threadpoolctl import threadpool_limits

    mean = x.mean(axis=0, dtype=np.float64)
    xc = (x - mean).astype(np.float32)
    cov = (xc.T @ xc).astype(np.float64)  # float32 product: no float64 copy of a large x
    with threadpool_limits(1):
        _, vecs = np.linalg.eigh(cov)
    comps = vecs[:, ::-1][:, :k].T
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    comps = (comps * signs[:, None]).astype(np.float32)
    return xc @ comps.T, mean.astype(np.float32), comps


def exact_knn(x: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k nearest neighbours (self included, as umap-learn expects) by blocked matmul."""
    import torch

    z = torch.from_numpy(np.ascontiguousarray(_normalise(x), dtype=np.float32))
    idx = np.empty((len(z), k), dtype=np.int64)
    dist = np.empty((len(z), k), dtype=np.float32)
    with torch.inference_mode():
        for a in range(0, len(z), chunk):
            sims, nn = torch.topk(z[a:a + chunk] @ z.T, k, dim=1)
            idx[a:a + chunk], dist[a:a + chunk] = nn.numpy(), np.clip(1.0 - sims.numpy(), 0.0, 2.0)
    return idx, dist


def _umap(x: np.ndarray, k: int, seed: int, pca_dims: int, kwargs: dict) -> np.ndarray:
    """UMAP on PCA-reduced data; exact kNN up to EXACT_KNN_MAX points (skips pynndescent's compile)."""
    import warnings

    _enable_numba_cache()
    import umap

    if pca_dims and x.shape[1] > pca_dims and len(x) > pca_dims:
        x = _pca(x, pca_dims)[0]
    params: dict[str, Any] = {"n_neighbors": min(15, len(x) - 1), "metric": "cosine", "min_dist": 0.1, "init": "pca"}
    params.update(kwargs)
    if params["metric"] == "cosine" and len(x) <= EXACT_KNN_MAX and "precomputed_knn" not in params:
        params["precomputed_knn"] = exact_knn(x, params["n_neighbors"])
    with warnings.catch_warnings():  # n_jobs overridden by random_state; no transform without an index
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(n_components=k, random_state=seed, **params)
        return reducer.fit_transform(x).astype(np.float32)


def _enable_numba_cache() -> None:
    """Ask numba to keep umap-learn's compiled functions on disk (it does not by default).

    The first UMAP in a process otherwise spends 40-50 s compiling the same functions again;
    with the disk cache that is paid once per machine. CLIPLAB_NUMBA_CACHE=0 turns this off.
    """
    global _NUMBA_CACHE_ON
    if _NUMBA_CACHE_ON or os.environ.get("CLIPLAB_NUMBA_CACHE", "1") == "0":
        return
    _NUMBA_CACHE_ON = True
    try:
        import importlib
        import warnings

        from numba.core.errors import NumbaWarning
        from numba.core.registry import CPUDispatcher

        warnings.filterwarnings("ignore", category=NumbaWarning)  # "cannot cache ... dynamic globals"
        for name in ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances",
                     "umap.sparse"):
            for v in vars(importlib.import_module(name)).values():
                if isinstance(v, CPUDispatcher) and type(getattr(v, "_cache", None)).__name__ == "NullCache":
                    v.enable_caching()
    except Exception:  # an optimisation only: any change in numba's internals just means no cache
        pass


def warm_up_umap() -> float:
    """Compile umap-learn's numba functions into the disk cache once (seconds taken).

    Meant for an install step: afterwards the first UMAP of a process skips the compilation.
    """
    t0 = time.perf_counter()
    x = np.random.default_rng(0).normal(size=(200, 64)).astype(np.float32)
    _umap(_normalise(x), 2, 0, 50, {"n_epochs": 10})
    return time.perf_counter() - t0


def _cache_load(cache_dir: str | Path | None, key: str) -> dict | None:
    if cache_dir is None:
        return None
    path = Path(cache_dir).expanduser() / f"{key}.npz"
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return None  # absent or damaged: recompute


def _cache_save(cache_dir: str | Path | None, key: str, arrays: dict) -> None:
    if cache_dir is None:
        return
    folder = Path(cache_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a cache that cannot be written is only slower, never an error
    try:
        with atomic_path(folder / f"{key}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError:
        pass


def place(projection: Projection, fitted: np.ndarray, new: np.ndarray, k: int = 10) -> np.ndarray:
    """Coordinates for new embeddings (e.g. a text query) in an existing map.

    PCA maps are exact (the stored components). For UMAP, a new point goes to the
    similarity-weighted mean of its ``k`` nearest fitted points, which is how umap-learn's
    own ``transform`` initialises new points. ``fitted`` are the rows the map was made from.
    """
    new = _as_matrix(np.atleast_2d(new), "new embeddings")
    if projection.normalized:
        new = _normalise(new)
    if projection.pca_components is not None:
        return ((new - projection.pca_mean) @ projection.pca_components.T).astype(np.float32)
    sims = new @ _normalise(_as_matrix(fitted, "fitted embeddings")).T
    k = min(k, sims.shape[1])
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = np.exp(10 * np.take_along_axis(sims, idx, axis=1))
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", w, projection.coords[idx]).astype(np.float32)


# -------------------------------------------------------------------- diagnostics
def modality_gap(image_features: np.ndarray, text_features: np.ndarray) -> float:
    """||mean(normalised images) - mean(normalised texts)|| (Liang et al. 2022; about 0.82 for CLIP)."""
    img = _normalise(_as_matrix(image_features, "image features"))
    txt = _normalise(_as_matrix(text_features, "text features"))
    if not len(img) or not len(txt):
        raise InputError("the modality gap needs at least one image and one text embedding")
    return float(np.linalg.norm(img.mean(axis=0) - txt.mean(axis=0)))


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2.0) -> float:
    """Mean ||x_i - y_i||^alpha over matched pairs of normalised rows (Wang and Isola 2020)."""
    x, y = _normalise(_as_matrix(x, "x")), _normalise(_as_matrix(y, "y"))
    if x.shape != y.shape or not len(x):
        raise InputError(f"alignment needs matched, non-empty pairs: got shapes {x.shape} and {y.shape}")
    return float((np.linalg.norm(x - y, axis=1) ** alpha).mean())


def uniformity(x: np.ndarray, t: float = 2.0, max_samples: int = 5000, seed: int = 0) -> float:
    """log mean exp(-t ||u - v||^2) over all distinct pairs of normalised rows (Wang and Isola 2020).

    Past ``max_samples`` rows, a seeded random subset of that size is used (pairs grow as n^2).
    """
    x = _normalise(_as_matrix(x, "x"))
    if len(x) < 2:
        raise InputError(f"uniformity needs at least 2 embeddings, got {len(x)}")
    if len(x) > max_samples:
        x = x[np.random.default_rng(seed).choice(len(x), max_samples, replace=False)]
    x = x.astype(np.float64)
    total = 0.0  # sum of exp(-t ||u - v||^2) over ordered pairs u != v, in row blocks (bounded memory)
    for a in range(0, len(x), 1024):
        sq = np.clip(2.0 - 2.0 * (x[a:a + 1024] @ x.T), 0.0, None)  # ||u - v||^2 for unit vectors
        e = np.exp(-t * sq)
        e[np.arange(len(e)), np.arange(a, a + len(e))] = 0.0
        total += e.sum()
    n = len(x)
    return float(np.log(total) - np.log(n * (n - 1)))


def effective_rank(x: np.ndarray, center: bool = False) -> float:
    """exp(entropy of the normalised singular values) (Roy and Vetterli 2007); 1..min(n, dim)."""
    x = _as_matrix(x, "x").astype(np.float64)
    if center:
        x = x - x.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False)
    if s.sum() <= 0:
        raise InputError("effective rank of an all-zero matrix is undefined")
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def class_centroid_similarity(features: np.ndarray, labels: Sequence, classnames: Sequence | None = None
                              ) -> pd.DataFrame:
    """Cosine similarity between the normalised centroids of each class's normalised embeddings."""
    x = _normalise(_as_matrix(features, "features"))
    names = np.asarray([str(v) for v in labels])
    if len(names) != len(x):
        raise InputError(f"{len(names)} labels for {len(x)} embeddings")
    classnames = [str(c) for c in (classnames if classnames is not None else sorted(set(names)))]
    empty = [c for c in classnames if not (names == c).any()]
    if empty:
        raise InputError(f"class {empty[0]!r} has no embeddings")
    cents = _normalise(np.stack([x[names == c].mean(axis=0) for c in classnames]))
    return pd.DataFrame(cents @ cents.T, index=classnames, columns=classnames)


def embedding_diagnostics(image_features: np.ndarray, text_features: np.ndarray | None = None,
                pairs: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """The scalar diagnostics in one dict (those whose inputs are given)."""
    out = {"n_images": len(image_features), "image_uniformity": uniformity(image_features),
           "image_effective_rank": effective_rank(image_features)}
    if text_features is not None and len(text_features):
        out["modality_gap"] = modality_gap(image_features, text_features)
        if len(text_features) >= 2:
            out["text_uniformity"] = uniformity(text_features)
        out["text_effective_rank"] = effective_rank(text_features)
    if pairs is not None:
        out["alignment"] = alignment(*pairs)
    return out
