"""Prompt sensitivity: how much zero-shot results depend on the wording of the prompt.

For every template on its own, and for the ensemble of all of them (the CLIP paper's average
of normalised prompt embeddings), this scores a labelled image set: top-1 accuracy, mean
per-class recall, per-class recall, and, given attributes, per-group accuracy and the rate at
which each group is predicted into a *flagged* category (a harmful label such as "thief"
added to the candidates). That shows which wording hurts which class and which group.

Text is encoded through :func:`cliplab.embed.embed_texts`, so editing one template encodes
only that template's prompts; per-template predictions are cached by :class:`PromptScorer`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .embed import ImageEmbeddings, embed_texts
from .errors import InputError
from .models import LoadedModel
from .prompts import fill, validate_classes, validate_templates

ENSEMBLE = "ensemble"  # the name of the ensemble's row/column in every table


@dataclass
class SensitivityResult:
    """Tables of one prompt-sensitivity analysis (``ENSEMBLE`` rows hold the template ensemble)."""

    per_template: pd.DataFrame  # template, acc1, mean_per_class_recall, n_images
    summary: dict  # spread, std, ensemble gain over the best and the median template
    per_class: pd.DataFrame  # class x template recall (index: class labels; columns: templates + ensemble)
    class_extremes: pd.DataFrame  # class, best/worst template and recall, spread
    per_group: pd.DataFrame | None = None  # attribute, group, template, n, acc1, flagged_rate, flagged:<c>
    group_gaps: pd.DataFrame | None = None  # attribute, template, worst/best group, gaps
    warnings: list[str] = field(default_factory=list)
    classnames: dict[str, str] = field(default_factory=dict)  # label -> name used in the prompts
    templates: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.summary = SensitivitySummary(self.summary)

    def write(self, out: str | Path) -> Path:
        """The tables as CSV files and summary.json (summary, warnings, templates, classnames) in ``out``."""
        return write_sensitivity(self, out)


class SensitivitySummary(dict):
    """``result.summary``: the summary dict (``result.summary["acc1"]["spread"]``); calling it,
    ``result.summary()``, gives the same as text, like every other result's ``summary()``."""

    def __call__(self) -> str:
        lines = [f"prompt sensitivity of {self['n_templates']} template(s) on {self['n_images']} images:"]
        for metric in ("acc1", "mean_per_class_recall"):
            m = self[metric]
            lines.append(f"  {metric}: best {m['best']:.3f} ({m['best_template']!r}), worst {m['worst']:.3f} "
                         f"({m['worst_template']!r}), spread {m['spread']:.3f}, ensemble {m['ensemble']:.3f} "
                         f"({m['ensemble_gain_over_best']:+.3f} over the best)")
        return "\n".join(lines)


def write_sensitivity(result: SensitivityResult, out: str | Path) -> Path:
    """per_template.csv, per_class.csv, class_extremes.csv (and per_group.csv, group_gaps.csv with
    groups) and summary.json in ``out``, each written atomically."""
    from .atomic import prepare_out_dir, write_json, write_table

    folder = prepare_out_dir(out)
    tables = {"per_template": result.per_template, "per_class": result.per_class.reset_index(),
              "class_extremes": result.class_extremes, "per_group": result.per_group, "group_gaps": result.group_gaps}
    for name, table in tables.items():
        if table is not None:
            write_table(folder / f"{name}.csv", table)
    write_json(folder / "summary.json", {"summary": dict(result.summary), "warnings": result.warnings,
                                         "templates": result.templates, "classnames": result.classnames,
                                         "flagged": result.flagged})
    return folder


def normalise_classnames(classnames: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """A list of names (names = labels) or a {label: prompt name} mapping, validated."""
    if isinstance(classnames, Mapping):
        labels = validate_classes(list(classnames.keys()))
        names = validate_classes([classnames[k] for k in classnames])
        return dict(zip(labels, names))
    names = validate_classes(classnames)
    return dict(zip(names, names))


class PromptScorer:
    """Scores templates on fixed image embeddings; caches each template's predictions.

    Built once per (model, images, labels, classes, flagged); ``result(templates)`` is cheap for
    templates already seen, and encodes only new prompts for new ones.
    """

    def __init__(self, loaded: LoadedModel, embeddings: ImageEmbeddings,
                 classnames: Sequence[str] | Mapping[str, str], label_column: str = "label",
                 group_by: Sequence[str] | str | None = None, flagged: Sequence[str] | None = None,
                 drop_unknown_labels: bool = False):
        self.loaded = loaded
        self.classnames = normalise_classnames(classnames)
        self.flagged = _check_flagged(flagged, self.classnames)
        self.warnings: list[str] = []
        records = embeddings.records
        if label_column not in records.columns:
            cols = ", ".join(str(c) for c in records.columns if c != "path")
            raise InputError(f"no label column {label_column!r} in the image records (columns: {cols})")
        keep, self.y = self._labels(records[label_column], drop_unknown_labels)
        self.features = np.ascontiguousarray(np.asarray(embeddings.features, dtype=np.float32)[keep])
        self.records = records[keep].reset_index(drop=True)
        self.groups = self._groups(group_by)
        self._preds: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ setup
    def _labels(self, labels: pd.Series, drop_unknown: bool) -> tuple[np.ndarray, np.ndarray]:
        index = {c: i for i, c in enumerate(self.classnames)}
        has = labels.notna().to_numpy()
        if (~has).any():
            self.warnings.append(f"{int((~has).sum())} image(s) without a label are left out")
        known = np.array([str(v) in index for v in labels.astype(str)]) & has
        unknown = sorted({str(v) for v in labels[has & ~known]})
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            msg = f"{int((has & ~known).sum())} image(s) have labels that are not among the classes: {shown}"
            if not drop_unknown:
                raise InputError(msg)
            self.warnings.append(msg + "; they are left out")
        if not known.any():
            raise InputError("no image has a label among the classes: nothing to score")
        y = np.array([index[str(v)] for v in labels[known]], dtype=np.int64)
        return known, y

    def _groups(self, group_by: Sequence[str] | str | None) -> dict[str, pd.Series]:
        """Attribute -> string values per image; single-valued attributes are noted and skipped."""
        if not group_by:
            return {}
        attrs = [group_by] if isinstance(group_by, str) else list(group_by)
        missing = [a for a in attrs if a not in self.records.columns]
        if missing:
            cols = ", ".join(str(c) for c in self.records.columns if c != "path")
            raise InputError(f"no attribute column {missing[0]!r} in the image records (columns: {cols})")
        out = {}
        for a in attrs:
            values = self.records[a].astype("string").fillna("(missing)")
            if values.nunique() < 2:
                self.warnings.append(f"attribute {a!r} has a single value ({values.iloc[0]!r}) in the scored "
                                     "images: no groups to compare, so it is left out")
                continue
            out[a] = values
        return out

    # ---------------------------------------------------------------- scoring
    @property
    def candidates(self) -> list[str]:
        """Prompt names of the classifier's columns: the classes, then the flagged categories."""
        return list(self.classnames.values()) + self.flagged

    def template_weights(self, template: str) -> np.ndarray:
        """[d, C+F] normalised text embeddings of one template filled with every candidate."""
        w = embed_texts(self.loaded, [fill(template, c) for c in self.candidates]).T
        return w / np.linalg.norm(w, axis=0, keepdims=True)

    def predictions(self, templates: Sequence[str]) -> dict[str, np.ndarray]:
        """Top-1 candidate index per image for each template and for the ensemble."""
        new = [t for t in templates if t not in self._preds]
        if new:
            weights = [self.template_weights(t) for t in new]
            for t, w in zip(new, weights):
                self._preds[t] = (self.features @ w).argmax(axis=1)
        ens = np.mean([self.template_weights(t) for t in templates], axis=0)
        ens /= np.linalg.norm(ens, axis=0, keepdims=True)
        out = {t: self._preds[t] for t in templates}
        out[ENSEMBLE] = (self.features @ ens).argmax(axis=1)
        return out

    def result(self, templates: Sequence[str]) -> SensitivityResult:
        """The full analysis for ``templates`` (validated: non-empty, each with ``{}``, no repeats)."""
        templates = validate_templates(templates)
        preds = self.predictions(templates)
        per_template = _per_template(preds, self.y, len(self.classnames))
        per_class = _per_class(preds, self.y, list(self.classnames))
        per_group = gaps = None
        if self.groups:
            per_group = _per_group(preds, self.y, self.groups, self.flagged, len(self.classnames))
            gaps = _group_gaps(per_group, bool(self.flagged))
        return SensitivityResult(per_template, _summary(per_template), per_class,
                                 _class_extremes(per_class), per_group, gaps, list(self.warnings),
                                 dict(self.classnames), list(templates), list(self.flagged))


def _check_flagged(flagged: Sequence[str] | None, classnames: dict[str, str]) -> list[str]:
    flagged = [str(f).strip() for f in (flagged or [])]
    if any(not f for f in flagged):
        raise InputError("a flagged category is empty")
    folded = {c.casefold() for c in classnames.values()}
    clash = [f for f in flagged if f.casefold() in folded]
    if clash:
        raise InputError(f"flagged category {clash[0]!r} is also a class; flagged categories must be extra labels")
    if len({f.casefold() for f in flagged}) < len(flagged):
        raise InputError("a flagged category is given twice")
    return flagged


def prompt_sensitivity(loaded: LoadedModel, embeddings: ImageEmbeddings,
                       classnames: Sequence[str] | Mapping[str, str], templates: Sequence[str],
                       label_column: str = "label", group_by: Sequence[str] | str | None = None,
                       flagged: Sequence[str] | None = None, drop_unknown_labels: bool = False
                       ) -> SensitivityResult:
    """Score every template alone and in the ensemble on labelled image embeddings.

    ``classnames`` is a list (labels used as prompt names) or a ``{label: prompt name}`` mapping.
    ``flagged`` names extra candidate labels (e.g. ``["thief"]``), filled into each template like
    the classes: a prediction into one counts as an error and as a flagged prediction of the
    image's groups (``group_by`` attributes). Labels outside the classes are an error unless
    ``drop_unknown_labels``. The std across templates is the population std (0 for one template).
    """
    scorer = PromptScorer(loaded, embeddings, classnames, label_column, group_by, flagged, drop_unknown_labels)
    return scorer.result(templates)


# ------------------------------------------------------------------ tables
def _recalls(pred: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class (NaN for a class without images)."""
    n = np.bincount(y, minlength=n_classes).astype(float)
    hit = np.bincount(y[pred == y], minlength=n_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hit / np.maximum(n, 1), np.nan)


def _per_template(preds: dict[str, np.ndarray], y: np.ndarray, n_classes: int) -> pd.DataFrame:
    rows = [{"template": t, "acc1": float((p == y).mean()),
             "mean_per_class_recall": float(np.nanmean(_recalls(p, y, n_classes))), "n_images": len(y)}
            for t, p in preds.items()]
    return pd.DataFrame(rows)


def _summary(per_template: pd.DataFrame) -> dict:
    single = per_template[per_template["template"] != ENSEMBLE]
    ens = per_template[per_template["template"] == ENSEMBLE].iloc[0]
    out: dict = {"n_templates": len(single), "n_images": int(ens["n_images"])}
    for m in ("acc1", "mean_per_class_recall"):
        v = single[m].to_numpy()
        best = int(np.argmax(v))
        out[m] = {"best_template": single["template"].iloc[best], "best": float(v[best]),
                  "worst_template": single["template"].iloc[int(np.argmin(v))], "worst": float(v.min()),
                  "median": float(np.median(v)), "spread": float(v.max() - v.min()), "std": float(v.std()),
                  "ensemble": float(ens[m]), "ensemble_gain_over_best": float(ens[m] - v[best]),
                  "ensemble_gain_over_median": float(ens[m] - np.median(v))}
    return out


def _per_class(preds: dict[str, np.ndarray], y: np.ndarray, labels: list[str]) -> pd.DataFrame:
    table = pd.DataFrame({t: _recalls(p, y, len(labels)) for t, p in preds.items()}, index=labels)
    table.index.name = "class"
    return table


def _class_extremes(per_class: pd.DataFrame) -> pd.DataFrame:
    single = per_class.drop(columns=[ENSEMBLE])
    rows = []
    for label, r in single.iterrows():
        if r.isna().all():
            rows.append({"class": label, "best_template": None, "best_recall": np.nan,
                         "worst_template": None, "worst_recall": np.nan, "spread": np.nan})
            continue
        rows.append({"class": label, "best_template": r.idxmax(), "best_recall": float(r.max()),
                     "worst_template": r.idxmin(), "worst_recall": float(r.min()),
                     "spread": float(r.max() - r.min())})
    return pd.DataFrame(rows)


def _per_group(preds: dict[str, np.ndarray], y: np.ndarray, groups: dict[str, pd.Series],
               flagged: list[str], n_classes: int) -> pd.DataFrame:
    rows = []
    for attr, values in groups.items():
        v = values.to_numpy()
        for g in sorted(pd.unique(v)):
            mask = v == g
            for t, p in preds.items():
                pg = p[mask]
                row = {"attribute": attr, "group": g, "template": t, "n": int(mask.sum()),
                       "acc1": float((pg == y[mask]).mean())}
                if flagged:
                    row["flagged_rate"] = float((pg >= n_classes).mean())
                    for j, f in enumerate(flagged):
                        row[f"flagged:{f}"] = float((pg == n_classes + j).mean())
                rows.append(row)
    return pd.DataFrame(rows)


def _group_gaps(per_group: pd.DataFrame, with_flagged: bool) -> pd.DataFrame:
    """Per attribute and template: the worst and best group by accuracy (and by flagged rate)."""
    rows = []
    for (attr, t), g in per_group.groupby(["attribute", "template"], sort=False):
        worst, best = g.loc[g["acc1"].idxmin()], g.loc[g["acc1"].idxmax()]
        row = {"attribute": attr, "template": t, "worst_group": worst["group"], "worst_acc1": worst["acc1"],
               "best_group": best["group"], "best_acc1": best["acc1"], "acc1_gap": best["acc1"] - worst["acc1"]}
        if with_flagged:
            hi, lo = g.loc[g["flagged_rate"].idxmax()], g.loc[g["flagged_rate"].idxmin()]
            row.update(most_flagged_group=hi["group"], most_flagged_rate=hi["flagged_rate"],
                       flagged_rate_gap=hi["flagged_rate"] - lo["flagged_rate"])
        rows.append(row)
    return pd.DataFrame(rows)
