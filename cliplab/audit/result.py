"""AuditResult: one small object that answers the questions asked of an audit.

Modelled on fairlearn's MetricFrame: ``by_group()`` (rates per group as a wide table),
``disparities`` / ``flagged()`` (comparisons with the reference group), ``overall()``,
``to_frame()`` (the tidy long table), ``metric_frame()`` (a real fairlearn MetricFrame),
``worst_examples()``, ``summary()`` and ``write()`` (report.html, metrics.json, groups.csv,
predictions.parquet). Tables are plain pandas DataFrames; nothing needs the model any more.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .definition import AuditSpec, group_key, split_key
from .metrics import OVERALL, Scores

if TYPE_CHECKING:  # pragma: no cover - type names only (the mitigation sits above the result)
    from .mitigation import MitigationResult

METRIC_LABELS = {"accuracy": "top-1 accuracy", "flagged_rate": "top-1 rate", "class_rate": "top-1 rate",
                 "topk_flagged_rate": "top-k rate"}


@dataclass
class AuditCounts:
    """How many images and metadata rows the audit saw, and why some were not audited."""

    n_images: int = 0  # images (files or manifest rows) read
    n_metadata_rows: int = 0
    images_without_metadata: int = 0
    metadata_without_image: int = 0
    duplicate_rows: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    n_selected: int = 0  # after the audit's where filter
    where: dict[str, list[str]] = field(default_factory=dict)
    n_cached: int = 0  # embeddings read from the cache
    n_encoded: int = 0  # embeddings computed now
    n_not_embedded: int = 0
    n_audited: int = 0
    missing_attribute_values: dict[str, int] = field(default_factory=dict)
    truth: dict[str, int] = field(default_factory=dict)  # with_truth, missing_truth_value, ...

    def to_dict(self) -> dict:
        return asdict(self)

    def get(self, key: str, default=None):
        """Dict-style read of a count (the report page reads them by name)."""
        return getattr(self, key, default)


@dataclass
class AuditResult:
    """The outcome of :func:`cliplab.audit.run_audit`.

    Attributes:
        spec: the audit definition that was run (label set, templates, flagged classes, ...).
        groups: tidy table, one row per (attribute, group, metric, category, k); see
            :func:`cliplab.audit.metrics.disaggregate` for the columns. Attribute ``metrics.OVERALL``
            holds the overall rates.
        disparities: one row per comparison of a group with its reference group; see
            :mod:`cliplab.audit.disparities` for the columns and the meaning of ``flagged``.
        retrieval: MaxSkew@k / NDKL per (query, attribute); empty without queries.
        data: counts of images, skips, unmatched metadata, missing attribute values, truth.
        model: ``identity`` and ``name`` of the model.
        fairness: fairlearn-style summary per (attribute, category): demographic parity
            difference and ratio, and equalized odds difference where the task is binary.
        mitigation: the mitigation check (:func:`cliplab.audit.mitigate`), when one was run;
            ``summary()``, ``to_dict()`` and ``write()`` include it.
    """

    spec: AuditSpec
    groups: pd.DataFrame
    disparities: pd.DataFrame
    retrieval: pd.DataFrame
    data: AuditCounts
    model: dict
    fairness: pd.DataFrame
    records: pd.DataFrame = field(repr=False)
    scores: Scores = field(repr=False)
    created: str = ""
    version: str = ""
    skipped: list = field(default_factory=list, repr=False)
    mitigation: MitigationResult | None = field(default=None, repr=False)

    # ----------------------------------------------------------------- questions
    @property
    def attributes(self) -> list[str]:
        return [a for a in self.groups["attribute"].unique() if a != OVERALL]

    @property
    def categories(self) -> list[str]:
        return list(self.spec.flagged)

    @property
    def metrics(self) -> list[str]:
        """The metrics the audit computed (accuracy only with a truth; class_rate only for
        categories of two or more classes)."""
        return list(dict.fromkeys(self.groups["metric"]))

    def to_frame(self) -> pd.DataFrame:
        """The tidy per-group table (a copy)."""
        return self.groups.copy()

    def overall(self) -> pd.DataFrame:
        """Rates over all audited images, one row per metric/category."""
        return self.groups[self.groups["attribute"] == OVERALL].drop(
            columns=["attribute", "group", "status", "rank", "attributes", "group_values"])

    def by_group(self, metric: str = "flagged_rate", category: str | None = None, attribute: str | None = None,
                 column: str = "rate") -> pd.DataFrame:
        """A wide table: rows (attribute, group, n, status), one column per category of ``metric``.

        ``column`` picks what fills the cells: rate (default), ci_low, ci_high, count or rank.
        """
        t = self.groups[(self.groups["metric"] == metric) & (self.groups["attribute"] != OVERALL)]
        if category is not None:
            t = t[t["category"] == category]
        if attribute is not None:
            t = t[t["attribute"] == attribute]
        if t.empty:
            return pd.DataFrame()
        label = t["category"].where(t["category"] != "", metric)
        wide = t.assign(_c=label).pivot(index=["attribute", "group"], columns="_c", values=column)
        sizes = t.groupby(["attribute", "group"], sort=False).agg(n=("n", "first"), status=("status", "first"))
        out = sizes.join(wide.rename_axis(columns=None)).reset_index()
        return out

    def detected(self) -> pd.DataFrame:
        """Detected disparities: single attributes before intersections, then largest |difference| first."""
        f = self.disparities[self.disparities["detected"].astype(bool)]
        order = f.assign(_depth=f["attributes"].map(len), _size=-f["difference"].abs())
        return f.loc[order.sort_values(["_depth", "_size"], kind="stable").index]

    def flagged(self) -> pd.DataFrame:
        """Deprecated name of :meth:`detected` ('flagged' now names only the harmful classes)."""
        return self.detected()

    def not_detected(self) -> pd.DataFrame:
        """Comparisons without a detection, with the smallest difference each could have detected
        (``detectable_difference``, 80% power at the audit's alpha and correction)."""
        return self.disparities[~self.disparities["detected"].astype(bool)]

    def exceeding(self, threshold: float) -> pd.DataFrame:
        """Detected disparities with |difference| >= threshold (what --fail-on-disparity checks)."""
        f = self.detected()
        return f[f["difference"].abs() >= threshold]

    def metric_frame(self, attribute: str | list[str], metric: str = "flagged_rate", category: str = ""):
        """The same numbers as a fairlearn MetricFrame (``attribute``: a name or a list for an intersection)."""
        from .metrics import metric_frame

        attrs = list(split_key(attribute)) if isinstance(attribute, str) else list(attribute)
        return metric_frame(self.predictions, attrs, metric, category)

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """Per-image table: path, the attributes, truth, prediction, probability, correct,
        flagged_category (harm category of the top-1 class or empty), topk ('a|b|c'), one
        boolean ``topk_<category>`` column per harm category, and per derived grouping its coarse
        ``prediction_<name>`` and ``truth_<name>`` (empty where the class or truth has none)."""
        s, names = self.scores, self.scores.classnames
        cat_of = {c: cat for cat, cls in self.spec.flagged.items() for c in cls}
        cols = [c for c in ("path", *self.spec.group_by) if c in self.records.columns]
        t = self.records[cols].copy()
        t["truth"] = pd.Categorical.from_codes(s.truth, categories=names) if len(names) else pd.NA
        t["prediction"] = pd.Categorical.from_codes(s.top1, categories=names)
        t["probability"] = s.top1_prob
        t["correct"] = np.where(s.truth >= 0, s.truth == s.top1, np.nan)
        t["flagged_category"] = np.array([cat_of.get(c, "") for c in names], dtype=object)[s.top1]
        t["topk"] = ["|".join(names[j] for j in row) for row in s.topk]
        from .metrics import harm_membership

        for cat, member in harm_membership(s, self.spec).items():
            t[f"topk_{cat}"] = member
        for name, d in s.derived.items():  # coarse prediction and truth of each derived grouping
            t[f"prediction_{name}"] = pd.Categorical.from_codes(d.of_class[s.top1], categories=d.labels)
            t[f"truth_{name}"] = pd.Categorical.from_codes(d.truth, categories=d.labels)
        return t

    @cached_property
    def error_rates(self) -> pd.DataFrame:
        """Per (attribute set, group, true class): false negative and false positive rates with
        intervals (:func:`cliplab.audit.metrics.error_rates`); empty without a truth."""
        from .metrics import ERROR_COLUMNS, error_rates

        if not (self.scores.truth >= 0).any():
            return pd.DataFrame(columns=ERROR_COLUMNS)
        return error_rates(self.records, self.scores, self.spec)

    def confusion(self, attribute: str, group: str) -> pd.DataFrame:
        """The confusion matrix of one group (rows: true class, columns: predicted class), from
        the images with a known true class; ``attribute`` and ``group`` as named in the tables."""
        p = self.predictions
        attrs = list(split_key(attribute))
        p = p[p["truth"].notna()].dropna(subset=attrs)
        key = p[attrs].astype("string").apply(lambda c: c.str.strip()).agg(group_key, axis=1)
        sub = p[(key == group).to_numpy()]
        return pd.crosstab(sub["truth"], sub["prediction"], dropna=False)

    def worst_examples(self, n: int = 12) -> pd.DataFrame:
        """The images put into a flagged class with the highest confidence (else: the most
        confident misclassifications), with their attributes."""
        s = self.scores
        flagged = np.isin(np.array(s.classnames)[s.top1], self.spec.flagged_classes)
        pool = np.flatnonzero(flagged)
        if not len(pool):
            pool = np.flatnonzero((s.truth >= 0) & (s.truth != s.top1))
        pick = pool[np.argsort(-s.top1_prob[pool], kind="stable")[:n]]
        cols = [c for c in ("path", *self.spec.group_by) if c in self.records.columns]
        out = self.records.iloc[pick][cols].reset_index(drop=True)
        out["prediction"] = [s.classnames[i] for i in s.top1[pick]]
        out["probability"] = s.top1_prob[pick]
        out["truth"] = [s.classnames[i] if i >= 0 else "" for i in s.truth[pick]]
        return out

    # --------------------------------------------------------------- output
    def summary(self, max_rows: int = 10) -> str:
        """A short plain-text summary for the terminal."""
        from .mitigation_report import mitigation_text
        from .text import summary_text

        return "\n".join(filter(None, [summary_text(self, max_rows), mitigation_text(self.mitigation, max_rows)]))

    def to_dict(self) -> dict:
        """The metrics.json document (see docs/audit.md for the schema)."""
        from .outputs import metrics_document

        return metrics_document(self)

    def write(self, out: str | Path, thumbnails: int = 12, predictions_format: str = "parquet") -> Path:
        """Write report.html, metrics.json, groups.csv and predictions.parquet into ``out``."""
        from .outputs import write_report

        return write_report(self, out, thumbnails=thumbnails, predictions_format=predictions_format)
