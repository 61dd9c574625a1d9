"""The mitigation check: remove an attribute's directions from the text classifier, audit again.

Chuang et al. (2023), "Debiasing vision-language models via biased prompts": prompts that name
the attribute's values ("a photo of a dark-skinned person.", ...) span a bias subspace A of the
text embedding space. Two projections of the class embeddings (then renormalised):
- ``orthogonal``: P0 = I - A (A^T A)^+ A^T, the directions of A removed;
- ``calibrated``: P* = P0 (I + lambda M)^-1 with M = (1/|S|) sum (z_i - z_j)(z_i - z_j)^T over the
  pairs S of prompts that differ only in the attribute's value ("a photo of a dark-skinned
  thief." / "a photo of a light-skinned thief."): the closed-form minimiser of
  ||P - P0||^2 + lambda/|S| sum ||P z_i - P z_j||^2, so such pairs land close together.
No library offers these projections (open_clip, fairlearn and scikit-learn do not), so they are
written here in numpy. The audit reruns on the cached image embeddings with each projected
classifier (only the prompts are encoded); the report sets every disparity and every overall
rate before and after side by side, with the paired change of each overall rate (its cost).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations, product

import numpy as np
import pandas as pd

from ..configfile import did_you_mean
from ..errors import InputError
from .definition import AuditSpec
from .metrics import harm_membership
from .result import AuditResult
from .run import PreparedAudit, audit_features
from .stats import mcnemar_exact, paired_interval, wilson

METHODS = ("orthogonal", "calibrated")
KEY = ["attribute", "group", "metric", "category", "k"]
SHOWN = ["n", "rate", "reference_rate", "difference", "ci_low", "ci_high", "p_adjusted", "detected"]


# ------------------------------------------------------------------------------ projections
def orthogonal_projection(bias: np.ndarray, centre: bool = True) -> np.ndarray:
    """P0 = I - A (A^T A)^+ A^T, A [d, m] the bias prompts' embeddings ``bias`` [m, d] as columns.

    ``centre``: the prompts' mean is subtracted first, so only what differs between the values
    is removed, not what all prompts share ("a photo of a ... person"). The basis comes from an
    SVD (rank-revealing: centred prompts have rank m - 1 at most), which equals A (A^T A)^-1 A^T
    where A has full column rank.
    """
    a = np.asarray(bias, np.float64)
    if centre:
        a = a - a.mean(axis=0, keepdims=True)
    d = a.shape[1]
    u, s, _ = np.linalg.svd(a.T, full_matrices=False)
    basis = u[:, s > max(s.max(initial=0.0), 1e-12) * 1e-6] if len(s) else np.zeros((d, 0))
    return np.eye(d) - basis @ basis.T


def calibration_matrix(differences: np.ndarray) -> np.ndarray:
    """M = (1/|S|) sum over the pairs of (z_i - z_j)(z_i - z_j)^T; ``differences`` [S, d]."""
    diff = np.asarray(differences, np.float64)
    return diff.T @ diff / max(len(diff), 1)


def calibrated_projection(p0: np.ndarray, differences: np.ndarray, lam: float) -> np.ndarray:
    """P* = P0 (I + lambda M)^-1 (Chuang et al. 2023, the closed form of the calibration loss)."""
    g = np.eye(len(p0)) + lam * calibration_matrix(differences)
    return np.linalg.solve(g, p0.T).T  # G is symmetric: P0 G^-1 = (G^-1 P0^T)^T


def project_weights(weights: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Class weights [d, C] projected and each column renormalised to unit length."""
    w = projection @ np.asarray(weights, np.float64)
    norms = np.linalg.norm(w, axis=0, keepdims=True)
    if (norms < 1e-9).any():
        raise InputError("the projection removes a class's whole text embedding: the bias prompts span it")
    return (w / norms).astype(np.float32)


# ---------------------------------------------------------------------------------- prompts
@dataclass
class MitigationPrompts:
    """The texts of one mitigation: the biased prompts and the calibration pairs."""

    attribute: str
    values: list[str]
    bias: list[str]
    pairs: list[tuple[str, str]]


def mitigation_prompts(spec: AuditSpec, records: pd.DataFrame, attribute: str | None = None) -> MitigationPrompts:
    """The prompts of ``attribute`` (default: the audit file's ``mitigation.attribute``) from
    its values among ``records``, named by ``mitigation.words`` (default: the values themselves)."""
    m = spec.mitigation
    attribute = attribute or m.attribute
    if not attribute:
        raise InputError("the mitigation needs an attribute: --mitigate-attribute NAME or mitigation.attribute "
                         "in the audit file")
    if attribute not in spec.group_by:
        raise InputError(f"mitigation attribute {attribute!r} is not an audited attribute (group_by: "
                         f"{', '.join(spec.group_by)}){did_you_mean(attribute, spec.group_by)}")
    col = records[attribute].astype("string").str.strip().replace("", pd.NA).dropna() \
        if attribute in records.columns else pd.Series([], dtype="string")
    values = sorted(map(str, col.unique()))
    if len(values) < 2:
        shown = f" ({values[0]!r})" if values else ""
        raise InputError(f"mitigation attribute {attribute!r} has {len(values)} value{shown} among the "
                         f"{len(records)} audited images; a projection needs two or more")
    words = dict(m.words.get(attribute, {}))
    unknown = [v for v in words if v not in values]
    if unknown:
        raise InputError(f"mitigation.words[{attribute!r}] names {unknown[0]!r}, which is not a value of "
                         f"{attribute!r} ({', '.join(values)}){did_you_mean(unknown[0], values)}")
    named = {v: list(words.get(v, (v,))) for v in values}
    owner: dict[str, str] = {}
    for v, ws in named.items():
        for w in ws:
            if owner.setdefault(w.casefold(), v) != v:
                raise InputError(f"mitigation: the word {w!r} names both {owner[w.casefold()]!r} and {v!r}")
    bias = [p.replace("{value}", w) for v in values for w in named[v] for p in m.prompts]
    pairs = [(t.replace("{class}", c).replace("{value}", wi), t.replace("{class}", c).replace("{value}", wj))
             for c in spec.classnames for t in m.pairs for vi, vj in combinations(values, 2)
             for wi, wj in product(named[vi], named[vj])]
    return MitigationPrompts(attribute, values, list(dict.fromkeys(bias)), pairs)


# ----------------------------------------------------------------------------------- result
@dataclass
class MitigationResult:
    """The audit before and after each projection of one attribute's directions.

    ``disparities``: per (attribute, group, metric, category, k) the before values and those of
    each method (columns ``<value>_before``, ``<value>_orthogonal``, ``<value>_calibrated``).
    ``overall``: per method and overall rate (accuracy, flagged rates, ...): the rate with its
    Wilson interval and the paired change from before (Bonett-Price interval, exact McNemar p).
    ``diagnostics``: per method, ``pair_gap`` (mean |P (z_i - z_j)| over mean |z_i - z_j|: 1 =
    the pairs as far apart as before) and ``bias_residual`` (|P A| / |A|, centred prompts).
    """

    attribute: str
    lam: float
    centre: bool
    values: list[str]
    bias_prompts: list[str]
    n_pairs: int
    disparities: pd.DataFrame
    overall: pd.DataFrame
    diagnostics: dict[str, dict[str, float]]
    results: dict[str, AuditResult] = field(default_factory=dict, repr=False)

    def detected_counts(self) -> dict[str, int]:
        """Detected disparities before and under each method."""
        d = self.disparities
        return {m: int(d[f"detected_{m}"].fillna(False).astype(bool).sum()) for m in ("before", *METHODS)}


def mitigate(loaded, prepared: PreparedAudit, before: AuditResult, attribute: str | None = None,
             lam: float | None = None) -> MitigationResult:
    """Project ``attribute``'s directions out of the classifier of ``before`` (the audit of
    ``prepared`` with ``loaded``) by both methods, and audit each on the same embeddings (only
    the class prompts, the biased prompts and the pairs are encoded)."""
    from ..embed import embed_texts
    from ..zeroshot import ZeroShotClassifier

    spec = before.spec
    texts = mitigation_prompts(spec, before.records, attribute)
    clf = ZeroShotClassifier.build(loaded, spec.classnames, spec.templates, spec.class_prompts)
    ends = embed_texts(loaded, [t for pair in texts.pairs for t in pair]).reshape(len(texts.pairs), 2, -1)
    return mitigate_features(prepared, before, clf.weights, clf.logit_scale, texts, embed_texts(loaded, texts.bias),
                             ends[:, 0] - ends[:, 1], lam)


def mitigate_features(prepared: PreparedAudit, before: AuditResult, weights: np.ndarray, logit_scale: float,
                      texts: MitigationPrompts, bias: np.ndarray, differences: np.ndarray,
                      lam: float | None = None) -> MitigationResult:
    """:func:`mitigate` on embeddings in memory: class ``weights`` [d, C] (those of ``before``),
    the biased prompts' embeddings ``bias`` [len(texts.bias), d] and the pairs' differences
    z_i - z_j [len(texts.pairs), d]."""
    spec = before.spec
    lam = spec.mitigation.lam if lam is None else float(lam)
    if not lam >= 0:
        raise InputError(f"the mitigation's lambda must be 0 or more, got {lam}")
    p0 = orthogonal_projection(bias, spec.mitigation.centre)
    projections = {"orthogonal": p0, "calibrated": calibrated_projection(p0, differences, lam)}
    results = {m: audit_features(prepared.features, prepared.records, spec, project_weights(weights, p), logit_scale,
                                 model=before.model, counts=prepared.counts, skipped=prepared.skipped)
               for m, p in projections.items()}
    centred = bias - bias.mean(axis=0) if spec.mitigation.centre else bias
    gap = float(np.linalg.norm(differences, axis=1).mean()) if len(differences) else 0.0
    size = max(float(np.linalg.norm(centred)), 1e-12)
    diagnostics = {m: {"pair_gap": float(np.linalg.norm(differences @ p.T, axis=1).mean()) / gap if gap > 0 else 0.0,
                       "bias_residual": float(np.linalg.norm(centred @ p.T)) / size} for m, p in projections.items()}
    return MitigationResult(texts.attribute, lam, spec.mitigation.centre, texts.values, texts.bias, len(texts.pairs),
                            side_by_side(before, results), overall_changes(before, results), diagnostics, results)


def side_by_side(before: AuditResult, after: dict[str, AuditResult]) -> pd.DataFrame:
    """Every disparity before and after each method, one row per (attribute, group, metric, category, k)."""
    out = before.disparities[[*KEY, "reference", *SHOWN]].rename(columns={c: f"{c}_before" for c in SHOWN})
    for m, r in after.items():
        part = r.disparities[[*KEY, *SHOWN]].rename(columns={c: f"{c}_{m}" for c in SHOWN})
        out = out.merge(part, on=KEY, how="outer")
    return out.reset_index(drop=True)


def _indicators(result: AuditResult) -> dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]]:
    """Per overall rate (metric, category, k): (rows it counts, rows that hit), per image."""
    s, spec = result.scores, result.spec
    every = np.ones(len(s), bool)
    out = {}
    if (s.truth >= 0).any():
        out[("accuracy", "", 0)] = (s.truth >= 0, s.truth == s.top1)
    for name, d in s.derived.items():
        out[("derived_accuracy", name, 0)] = (d.truth >= 0, d.of_class[s.top1] == d.truth)
    index = {c: i for i, c in enumerate(s.classnames)}
    member = harm_membership(s, spec)
    for cat, classes in spec.flagged.items():
        out[("flagged_rate", cat, 1)] = (every, np.isin(s.top1, [index[c] for c in classes]))
        for c in classes if len(classes) > 1 else ():
            out[("class_rate", c, 1)] = (every, s.top1 == index[c])
        if s.topk.shape[1] > 1:
            out[("topk_flagged_rate", cat, s.topk.shape[1])] = (every, member[cat])
    return out


def overall_changes(before: AuditResult, after: dict[str, AuditResult]) -> pd.DataFrame:
    """Each overall rate before and under each method, with the paired change from before."""
    base = _indicators(before)
    rows = []
    for method, r in (("before", before), *after.items()):
        for key, (valid, hit) in _indicators(r).items():
            b_hit = base[key][1]
            n, x = int(valid.sum()), int((hit & valid).sum())
            lo, hi = wilson(np.array([x]), np.array([n]))
            only_before, only_after = int((b_hit & ~hit & valid).sum()), int((~b_hit & hit & valid).sum())
            clo, chi = paired_interval(np.array([only_before]), np.array([only_after]), np.array([max(n, 1)]))
            rows.append({"method": method, "metric": key[0], "category": key[1], "k": key[2], "n": n, "count": x,
                         "rate": x / n if n else np.nan, "ci_low": float(lo[0]), "ci_high": float(hi[0]),
                         "change": (only_after - only_before) / n if n else np.nan,
                         "change_ci_low": float(clo[0]) if method != "before" else 0.0,
                         "change_ci_high": float(chi[0]) if method != "before" else 0.0,
                         "p_value": float(mcnemar_exact(np.array([only_before]), np.array([only_after]))[0])
                         if method != "before" else np.nan})
    return pd.DataFrame(rows)
