"""Effective robustness (Taori et al. 2020) and the CLIP paper's share of the robustness gap closed.

Fit logit(OOD acc) = a * logit(ID acc) + b on the named baseline models (>= 3) and report each model's
OOD accuracy minus the line's value at its ID accuracy, with a bootstrap interval that resamples the
images (paired across models on the same set) and refits the line each time. Evaluations given only
as accuracies (a CSV of standard models) are redrawn as binomials when their image counts are known.
"Share of the robustness gap closed" (CLIP paper, sec. 3.3): 1 - (ID - OOD of the model) /
(ID - OOD of the named supervised baseline).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from .errors import InputError


@dataclass
class Evaluation:
    """One model (or probe) on the in-distribution set and on one shifted set.

    Either per-image correctness (``id_correct``/``ood_correct``, resampled by the bootstrap) or bare
    accuracies with optional image counts (redrawn as binomials when counts are given, else fixed).
    """

    name: str
    id_acc: float
    ood_acc: float
    id_correct: np.ndarray | None = None
    ood_correct: np.ndarray | None = None
    n_id: int | None = None
    n_ood: int | None = None
    kind: str = "model"

    @classmethod
    def from_correct(cls, name: str, id_correct: np.ndarray, ood_correct: np.ndarray,
                     kind: str = "model") -> Evaluation:
        id_c, ood_c = np.asarray(id_correct, bool), np.asarray(ood_correct, bool)
        return cls(name, float(id_c.mean()), float(ood_c.mean()), id_c, ood_c, len(id_c), len(ood_c), kind)


def _draws(acc: float, correct: np.ndarray | None, n: int | None, resamples: dict[int, np.ndarray],
           rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """[n_boot] bootstrap accuracies; models on one set share its resamples (a paired bootstrap)."""
    if correct is not None:
        if len(correct) not in resamples:
            resamples[len(correct)] = rng.integers(0, len(correct), (n_boot, len(correct)), dtype=np.int32)
        return correct[resamples[len(correct)]].mean(axis=1)
    return rng.binomial(n, acc, n_boot) / n if n else np.full(n_boot, acc)


def _logit(p):
    return logit(np.clip(p, 1e-4, 1 - 1e-4))  # keeps 0% and 100% finite


def fit_baseline(id_acc: Sequence[float], ood_acc: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of logit(OOD) on logit(ID), least squares; needs >= 3 baseline models."""
    if len(id_acc) < 3:
        raise InputError(f"the effective-robustness baseline needs at least 3 baseline models, got {len(id_acc)}")
    x, y = _logit(np.asarray(id_acc, dtype=float)), _logit(np.asarray(ood_acc, dtype=float))
    if np.ptp(x) < 1e-9:
        raise InputError("the baseline models all have the same in-distribution accuracy; no line can be fitted")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def predicted_ood(id_acc, slope, intercept):
    """The baseline line's OOD accuracy at ``id_acc`` (arrays broadcast)."""
    return expit(slope * _logit(np.asarray(id_acc, dtype=float)) + intercept)


@dataclass
class EffectiveRobustness:
    """The baseline line logit(OOD) = slope * logit(ID) + intercept and each evaluation against it.

    ``table`` holds one row per evaluation: its accuracies, the line's prediction, the effective robustness
    (OOD accuracy above the line) with its bootstrap interval and, given a supervised model, the share of
    the robustness gap closed; what a robustness study reports and plots.
    """

    table: pd.DataFrame  # per evaluation: id_acc, ood_acc, predicted, effective_robustness (+ CI), gap_closed
    slope: float
    intercept: float
    baselines: list[str] = field(default_factory=list)
    supervised: str | None = None


def effective_robustness(evaluations: Sequence[Evaluation], baselines: Sequence[str], supervised: str | None = None,
                         n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> EffectiveRobustness:
    """Each evaluation's effective robustness against the line fitted on ``baselines``, with bootstrap CIs."""
    by_name = {e.name: e for e in evaluations}
    missing = [b for b in [*baselines, *([supervised] if supervised else [])] if b not in by_name]
    if missing:
        raise InputError(f"baseline model {missing[0]!r} is not among the evaluations ({', '.join(by_name)})")
    base = [by_name[b] for b in dict.fromkeys(baselines)]
    slope, intercept = fit_baseline([e.id_acc for e in base], [e.ood_acc for e in base])
    rng = np.random.default_rng(seed)
    id_res: dict[int, np.ndarray] = {}
    ood_res: dict[int, np.ndarray] = {}
    bid = {e.name: _draws(e.id_acc, e.id_correct, e.n_id, id_res, rng, n_boot) for e in evaluations}
    bood = {e.name: _draws(e.ood_acc, e.ood_correct, e.n_ood, ood_res, rng, n_boot) for e in evaluations}
    x = _logit(np.stack([bid[e.name] for e in base], axis=1))  # [n_boot, n_baselines]: one line per replicate
    y = _logit(np.stack([bood[e.name] for e in base], axis=1))
    xc = x - x.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        b_slope = (xc * (y - y.mean(axis=1, keepdims=True))).sum(axis=1) / (xc ** 2).sum(axis=1)
    b_icept = y.mean(axis=1) - b_slope * x.mean(axis=1)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    rows = []
    for e in evaluations:
        pred = float(predicted_ood(e.id_acc, slope, intercept))
        er = bood[e.name] - predicted_ood(bid[e.name], b_slope, b_icept)
        lo, hi = np.nanpercentile(er, q)
        row = {"name": e.name, "kind": e.kind, "baseline": e.name in baselines, "id_acc": e.id_acc,
               "ood_acc": e.ood_acc, "predicted_ood_acc": pred, "effective_robustness": e.ood_acc - pred,
               "er_low": float(lo), "er_high": float(hi)}
        if supervised:
            s = by_name[supervised]
            with np.errstate(invalid="ignore", divide="ignore"):
                gap = bid[supervised] - bood[supervised]
                closed = np.where(gap > 0, 1 - (bid[e.name] - bood[e.name]) / gap, np.nan)
            g_lo, g_hi = np.nanpercentile(closed, q) if np.isfinite(closed).any() else (np.nan, np.nan)
            row |= {"gap_closed": _gap_closed(e.id_acc, e.ood_acc, s.id_acc, s.ood_acc),
                    "gap_closed_low": float(g_lo), "gap_closed_high": float(g_hi)}
        rows.append(row)
    return EffectiveRobustness(pd.DataFrame(rows), slope, intercept, list(baselines), supervised)


def _gap_closed(id_acc: float, ood_acc: float, sup_id: float, sup_ood: float) -> float:
    gap = sup_id - sup_ood
    return float(1 - (id_acc - ood_acc) / gap) if gap > 0 else float("nan")


def read_baseline_csv(path, shift: str | None = None) -> list[Evaluation]:
    """Accuracies of standard models: columns name, id_acc, ood_acc [, shift, n_id, n_ood] (0-1 or percent)."""
    from pathlib import Path

    from .data import read_table

    table = read_table(Path(path))
    need = {"name", "id_acc", "ood_acc"}
    if not need <= set(table.columns):
        raise InputError(f"{path}: a baseline table needs columns {', '.join(sorted(need))} "
                         f"(has {', '.join(map(str, table.columns))})")
    if shift is not None and "shift" in table.columns:
        table = table[table["shift"].astype(str) == shift]
    out = []
    for r in table.to_dict("records"):
        try:
            accs = [float(r["id_acc"]), float(r["ood_acc"])]
        except (TypeError, ValueError):
            raise InputError(f"{path}: accuracy of {r['name']!r} is not a number") from None
        if any(a > 1 for a in accs):
            accs = [a / 100 for a in accs]
        if not all(0 <= a <= 1 for a in accs):
            raise InputError(f"{path}: accuracy of {r['name']!r} outside 0-1 (or 0-100%)")
        n = [int(float(r[c])) if c in r and pd.notna(r[c]) else None for c in ("n_id", "n_ood")]
        out.append(Evaluation(str(r["name"]), accs[0], accs[1], n_id=n[0], n_ood=n[1], kind="table"))
    return out
