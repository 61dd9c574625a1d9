"""Linear probes on cached image embeddings, as in the CLIP paper, and k-shot curves against zero-shot.

The probe is scikit-learn's logistic regression (L-BFGS) with the regularisation strength C swept on a
validation split of the training data (a coarse log grid, then a finer one around the best). k-shot probes
draw k examples per class from the rest of the training data (several seeds) and are tuned on the same
validation split, as CLIP_benchmark's few-shot probe does; all of them are fitted in parallel (joblib). The
zero-shot classifier is placed on the k-shot curve by log-linear interpolation: "zero-shot is worth k labelled
examples per class" (the paper's fig. 6).
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from .errors import InputError
from .zeroshot import zeroshot_metrics

KS = (1, 2, 4, 8, 16)
C_GRID = tuple(10.0 ** np.arange(-3, 6))  # L2-normalised features want weak regularisation (large C)


@dataclass
class ProbeConfig:
    """How `run_probes` fits: the k values and draws per k of the k-shot probes, the validation share of the
    training data used to choose C, the C grid, the seed, and how many probes are fitted at once; the defaults
    follow the CLIP paper's protocol."""

    ks: Sequence[int] = KS
    seeds: int = 5
    val_fraction: float = 0.2
    c_grid: Sequence[float] = C_GRID
    max_iter: int = 1000
    seed: int = 0  # the validation split and the k-shot draws
    n_jobs: int | None = 2  # probes fitted at once (joblib processes; 1: in this process, -1: every core)


@dataclass
class LinearProbe:
    """A fitted probe; ``logits`` gives [n, n_classes] scores (-inf for classes it never saw)."""

    model: LogisticRegression
    n_classes: int
    C: float
    val_acc: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        out = np.full((len(features), self.n_classes), -np.inf, dtype=np.float64)
        scores = self.model.decision_function(np.asarray(features, dtype=np.float64))
        if scores.ndim == 1:  # two classes seen: sklearn returns one column
            scores = np.stack([-scores, scores], axis=1)
        out[:, self.model.classes_] = scores
        return out


def _floats(x: np.ndarray) -> np.ndarray:
    """float32 stays float32 (cached embeddings are float32, and sklearn's L-BFGS loss runs in it, about 20 %
    faster on 10,000 x 512), anything else becomes float64."""
    x = np.asarray(x)
    return x if x.dtype == np.float32 else np.asarray(x, dtype=np.float64)


def _fit(x, y, C, max_iter, warm: LogisticRegression | None = None) -> LogisticRegression:
    """Fit at C, starting from ``warm``'s solution when given (a copy: ``warm`` is left as it was)."""
    model = copy.deepcopy(warm) if warm is not None else LogisticRegression(max_iter=max_iter, solver="lbfgs",
                                                                            warm_start=True)
    model.set_params(C=C)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # large C on separable data: the sweep decides
        warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)  # 1-shot: expected
        model.fit(x, y)
    return model


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int,
              c_grid: Sequence[float] = C_GRID, max_iter: int = 1000) -> LinearProbe:
    """Sweep C on the validation split (coarse grid, then half-decades around the best); keep the best fit.

    Fits run in ascending C, each warm-started from the previous solution, and the sweep stops once two
    successive C values fail to beat the best so far (the CLIP paper searched C similarly, not exhaustively).
    """
    if len(np.unique(y_train)) < 2:
        raise InputError("a linear probe needs training examples of at least 2 classes")
    x_train, x_val = _floats(x_train), _floats(x_val)
    fits: dict[float, tuple[float, LogisticRegression]] = {}
    warm, worse = None, 0
    for C in sorted(c_grid):
        warm = _fit(x_train, y_train, C, max_iter, warm)
        fits[C] = (float((warm.predict(x_val) == y_val).mean()), warm)
        best_so_far = max(v for c, (v, _) in fits.items() if c != C) if len(fits) > 1 else -1.0
        worse = worse + 1 if fits[C][0] <= best_so_far else 0
        if worse == 2:  # no gain twice running: larger C (the slowest fits) would not win (ties go to small C)
            break
    best = max(fits, key=lambda c: (fits[c][0], -c))
    for C in (best / 10 ** 0.5, best * 10 ** 0.5):
        model = _fit(x_train, y_train, C, max_iter, fits[best][1])
        fits[C] = (float((model.predict(x_val) == y_val).mean()), model)
    best = max(fits, key=lambda c: (fits[c][0], -c))
    return LinearProbe(fits[best][1], n_classes, best, fits[best][0])


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, val) index arrays; classes with one example stay in train."""
    idx = np.arange(len(y))
    counts = pd.Series(y).value_counts()
    strat = y if counts.min() >= 2 else None
    if strat is None:
        single = np.isin(y, counts[counts < 2].index)
        tr, va = train_test_split(idx[~single], test_size=fraction, random_state=seed, stratify=y[~single])
        return np.concatenate([tr, idx[single]]), va
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=strat)
    return tr, va


def sample_k_shot(y: np.ndarray, pool: np.ndarray, k: int, n_classes: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """k indices per class from ``pool``; classes with fewer get all they have, listed as (class, available)."""
    chosen, short = [], []
    for c in range(n_classes):
        members = pool[y[pool] == c]
        if len(members) < k:
            short.append((c, len(members)))
        chosen.append(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.concatenate(chosen), short


@dataclass
class ProbeResult:
    """The k-shot curve (per draw and per k, with intervals), the all-data probe and, when given, zero-shot
    placed on the curve ("worth k labelled examples per class"); `write_probe` writes it with a report."""

    curve: pd.DataFrame  # one row per (k, seed): C, acc1, acc5, mean_per_class_recall
    summary: pd.DataFrame  # one row per k: mean and 95% t-interval over seeds
    full: dict  # the probe on all training data
    zeroshot: dict | None
    zeroshot_worth_k: float | None
    zeroshot_worth: str
    short_classes: pd.DataFrame  # (k, class, available) for classes with fewer than k training examples
    classnames: list[str] = field(default_factory=list)
    probe: LinearProbe | None = None

    def to_json(self) -> dict:
        return {"full_probe": self.full, "zeroshot": self.zeroshot, "zeroshot_worth_k": self.zeroshot_worth_k,
                "zeroshot_worth": self.zeroshot_worth, "summary": self.summary.to_dict("records"),
                "short_classes": self.short_classes.to_dict("records"), "classnames": self.classnames}


def _scores(logits: np.ndarray, y: np.ndarray) -> dict:
    m = zeroshot_metrics(np.nan_to_num(logits, neginf=-1e30), y)
    return {k: m[k] for k in ("acc1", "acc5", "mean_per_class_recall", "n_images")}


def run_probes(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
               classnames: Sequence[str], config: ProbeConfig | None = None,
               zeroshot_logits: np.ndarray | None = None) -> ProbeResult:
    """The full-data probe and k-shot probes (each k x seeds), scored on the test embeddings."""
    cfg = config or ProbeConfig()
    n_classes = len(classnames)
    if cfg.seeds < 1 or not cfg.ks or min(cfg.ks) < 1:
        raise InputError("probes need at least one seed and k values >= 1")
    if cfg.n_jobs == 0:
        raise InputError("n_jobs (--jobs) is the number of probes fitted at once: 1 or more, or -1 for every core")
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    tr, va = validation_split(y_train, cfg.val_fraction, cfg.seed)
    draws, short_rows = [], []
    for k in cfg.ks:
        for s in range(cfg.seeds):
            rng = np.random.default_rng([cfg.seed, k, s])
            shots, short = sample_k_shot(y_train, tr, k, n_classes, rng)
            if s == 0:
                short_rows += [(k, classnames[c], n) for c, n in short]
            if len(np.unique(y_train[shots])) < 2:
                raise InputError(f"{k}-shot: the training data have examples of fewer than 2 classes")
            draws.append((k, s, shots))
    # the probes are independent: joblib fits them in worker processes, the slowest (the full probe, then
    # the largest k) dispatched first so that no worker is left with a long fit at the end
    order = sorted(range(len(draws)), key=lambda i: -draws[i][0])
    x_train = _floats(x_train)
    x_val, y_val = x_train[va], y_train[va]
    fitted = Parallel(n_jobs=cfg.n_jobs, batch_size=1)(
        delayed(fit_probe)(x_train[idx], y_train[idx], x_val, y_val, n_classes, cfg.c_grid, cfg.max_iter)
        for idx in [tr] + [draws[i][2] for i in order])
    full, probes = fitted[0], dict(zip(order, fitted[1:]))
    full_scores = {**_scores(full.logits(x_test), y_test), "C": full.C, "val_acc": full.val_acc,
                   "n_train": len(tr), "n_val": len(va)}
    rows = [{"k": k, "seed": s, "C": probes[i].C, "n_train": len(shots), **_scores(probes[i].logits(x_test), y_test)}
            for i, (k, s, shots) in enumerate(draws)]
    curve = pd.DataFrame(rows)
    summary = summarise(curve)
    zs = _scores(zeroshot_logits, y_test) if zeroshot_logits is not None else None
    worth, text = worth_k(summary, zs["acc1"]) if zs else (None, "no zero-shot classifier given")
    return ProbeResult(curve, summary, full_scores, zs, worth, text,
                       pd.DataFrame(short_rows, columns=["k", "class", "available"]), list(classnames), full)


def summarise(curve: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean over seeds per k with a t-interval (NaN-free: one seed gives a zero-width interval)."""
    out = []
    for k, g in curve.groupby("k", sort=True):
        row: dict = {"k": int(k), "n_seeds": len(g)}
        for m in ("acc1", "acc5", "mean_per_class_recall"):
            v = g[m].to_numpy(dtype=float)
            half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) \
                if len(v) > 1 else 0.0
            row |= {m: float(v.mean()), f"{m}_low": max(0.0, float(v.mean()) - half),
                    f"{m}_high": min(1.0, float(v.mean()) + half)}  # a t-interval can cross 0 or 1: clipped
        out.append(row)
    return pd.DataFrame(out)


def worth_k(summary: pd.DataFrame, zeroshot_acc: float) -> tuple[float | None, str]:
    """Where zero-shot accuracy meets the k-shot curve, interpolating linearly in log2(k)."""
    ks, acc = summary["k"].to_numpy(dtype=float), summary["acc1"].to_numpy(dtype=float)
    if zeroshot_acc < acc[0]:
        return None, f"zero-shot ({zeroshot_acc:.3f}) is below the {int(ks[0])}-shot probe ({acc[0]:.3f})"
    for i in range(len(ks) - 1):
        lo, hi = acc[i], acc[i + 1]
        if lo <= zeroshot_acc <= hi and hi > lo:
            t = (zeroshot_acc - lo) / (hi - lo)
            k = float(2 ** (np.log2(ks[i]) + t * (np.log2(ks[i + 1]) - np.log2(ks[i]))))
            return k, f"zero-shot is worth about {k:.1f} labelled examples per class"
    if zeroshot_acc <= acc[0] or (zeroshot_acc <= acc.max()):
        k = float(ks[int(np.argmax(acc >= zeroshot_acc))])
        return k, f"zero-shot is worth about {k:.0f} labelled examples per class"
    return None, f"zero-shot ({zeroshot_acc:.3f}) beats the {int(ks[-1])}-shot probe ({acc[-1]:.3f})"


def write_probe(result: ProbeResult, out, tables: str = "csv"):
    """probe.json, curve/summary/short_classes tables and report.html in ``out``."""
    from .atomic import prepare_out_dir, write_json, write_table, write_text
    from .robustness_html import probe_page

    out = prepare_out_dir(out)
    for name, frame in (("curve", result.curve), ("summary", result.summary), ("short_classes", result.short_classes)):
        write_table(out / f"{name}.{tables}", frame)
    write_json(out / "probe.json", result.to_json())
    write_text(out / "report.html", probe_page(result))
    return out
