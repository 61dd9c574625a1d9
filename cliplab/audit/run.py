"""Running an audit: images -> (cached) embeddings -> zero-shot scores -> groups, disparities.

``run_audit`` is the one-call entry point. ``audit_features`` is the same audit on embeddings
already in memory (no model needed: the benchmark and the label-set what-if use it), so a new
label set re-encodes only its texts; the image embeddings come from the cache.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import ImageSet, Skip
from ..errors import InputError
from .compare import AuditComparison, align_spec, compare_audits
from .definition import AuditSpec, load_audit_spec, select_rows, true_classes
from .disparities import check_references, compute_disparities
from .metadata import AuditImages, load_audit_images
from .metrics import derived_codes, disaggregate, fairness_summary, missing_counts, score_images
from .result import AuditCounts, AuditResult
from .retrieval import retrieval_bias


@dataclass
class PreparedAudit:
    """An audit's image side, ready for one or more label sets: the embeddings of the selected
    images, their metadata rows, the audit definition, the counts and the skipped files."""

    features: np.ndarray  # [N, d] L2-normalised; row i = records row i
    records: pd.DataFrame
    spec: AuditSpec
    counts: AuditCounts
    skipped: list[Skip] = field(default_factory=list)


def run_audit(loaded, images: str | Path | ImageSet | AuditImages, spec: str | Path | AuditSpec | Mapping,
              group_by: str | Sequence[str] | None = None, *, metadata: str | Path | None = None,
              format: str = "auto", image_column: str | None = None, embeddings=None, **embed_kwargs) -> AuditResult:
    """Audit ``loaded`` (a :class:`cliplab.LoadedModel`) on ``images`` with the label set ``spec``.

    ``images``: a manifest, an image folder (with ``metadata`` to join, or UTKFace names), an
    ImageSet or AuditImages. ``spec``: a file, a dict in the file format or an AuditSpec.
    ``group_by`` (a column name, 'a,b' or a list) overrides the spec's attributes. ``embeddings``:
    an :class:`cliplab.ImageEmbeddings` of the same images to reuse (else they are embedded, using
    the on-disk cache; ``embed_kwargs`` go to :func:`cliplab.embed_images`).
    """
    prepared = prepare_audit(loaded, images, spec, group_by, metadata=metadata, format=format,
                             image_column=image_column, embeddings=embeddings, **embed_kwargs)
    return audit_loaded(loaded, prepared)


def compare_label_sets(loaded, images, spec_a: str | Path | AuditSpec | Mapping,
                       spec_b: str | Path | AuditSpec | Mapping, group_by: str | Sequence[str] | None = None,
                       **kwargs) -> AuditComparison:
    """Audit A, then B on the same embeddings (only B's texts are encoded), and compare.

    ``kwargs`` are those of :func:`run_audit` (metadata, format, embed settings).
    """
    prepared = prepare_audit(loaded, images, spec_a, group_by, **kwargs)
    return compare_prepared(loaded, prepared, audit_loaded(loaded, prepared), spec_b)


def compare_prepared(loaded, prepared: PreparedAudit, a: AuditResult,
                     spec_b: str | Path | AuditSpec | Mapping) -> AuditComparison:
    """Label set B on the images of ``prepared`` (only B's texts are encoded), compared with
    ``a``, the audit of ``prepared``."""
    b = audit_loaded(loaded, replace(prepared, spec=align_spec(load_audit_spec(spec_b), a.spec)))
    return compare_audits(a, b)


def _group_by(group_by: str | Sequence[str]) -> tuple[str, ...]:
    """A column name, 'a,b', or a list of names (a string is never split into characters)."""
    items = group_by.split(",") if isinstance(group_by, str) else list(group_by)
    return tuple(str(c).strip() for c in items if str(c).strip())


def prepare_audit(loaded, images, spec, group_by: str | Sequence[str] | None = None, *, metadata=None,
                  format="auto", image_column=None, embeddings=None, **embed_kwargs) -> PreparedAudit:
    """Read the images and metadata, apply the spec's filter and embed (cached)."""
    from ..embed import embed_images

    spec = load_audit_spec(spec)
    if group_by:
        spec = spec.with_overrides(group_by=_group_by(group_by))
    if not spec.group_by:
        raise InputError("no attributes to group by: set group_by in the audit file or pass --group-by")
    source = images if isinstance(images, AuditImages) else load_audit_images(images, metadata, format, image_column)
    records = source.images.records
    spec.check_columns(records.columns, source.images.source)
    selected = ImageSet(records[select_rows(records, spec)].reset_index(drop=True), source.images.source,
                        list(source.images.skipped))
    if selected.records.empty:
        raise InputError(f"the audit's where filter {dict(spec.where)} selects none of the {len(records)} images")
    emb = embeddings if embeddings is not None else embed_images(loaded, selected, **embed_kwargs)
    counts = AuditCounts(**source.counts(), n_selected=len(selected),
                         where={k: list(v) for k, v in spec.where.items()},
                         n_cached=int(getattr(emb, "n_cached", 0)), n_encoded=int(getattr(emb, "n_encoded", 0)),
                         n_not_embedded=max(0, len(emb.skipped) - len(source.images.skipped)))
    return PreparedAudit(emb.features, emb.records, spec, counts, list(emb.skipped) + list(source.unmatched_images))


def audit_loaded(loaded, prepared: PreparedAudit) -> AuditResult:
    """The text side with ``loaded`` (class weights, query embeddings), then :func:`audit_features`."""
    from ..embed import embed_texts
    from ..zeroshot import ZeroShotClassifier

    spec = prepared.spec
    clf = ZeroShotClassifier.build(loaded, spec.classnames, spec.templates, spec.class_prompts)
    queries = dict(zip(spec.retrieval_queries, embed_texts(loaded, list(spec.retrieval_queries)))) \
        if spec.retrieval_queries else {}
    model = {"identity": loaded.identity, "name": loaded.name, "logit_scale": clf.logit_scale,
             "random_init": bool(getattr(loaded, "random_init", False))}
    return audit_features(prepared.features, prepared.records, spec, clf.weights, clf.logit_scale, queries=queries,
                          model=model, counts=prepared.counts, skipped=prepared.skipped)


def audit_features(features: np.ndarray, records: pd.DataFrame, spec: AuditSpec | str | Path | Mapping,
                   weights: np.ndarray, logit_scale: float = 100.0, *, queries: dict[str, np.ndarray] | None = None,
                   model: dict | None = None, counts: AuditCounts | None = None,
                   skipped: list | None = None) -> AuditResult:
    """Audit image ``features`` [N, d] (L2-normalised; row i = ``records`` row i) against class
    ``weights`` [d, C] (columns in ``spec.classnames`` order)."""
    from .. import __version__

    spec = load_audit_spec(spec)
    if len(features) != len(records):
        raise ValueError(f"{len(features)} embeddings but {len(records)} metadata rows")
    if weights.shape[1] != len(spec.classes):
        raise ValueError(f"weights have {weights.shape[1]} columns for {len(spec.classes)} classes")
    spec.check_columns(records.columns)
    keep = select_rows(records, spec).to_numpy()
    if not keep.all():
        features, records = features[keep], records[keep].reset_index(drop=True)
    check_references(records, spec)
    truth, truth_counts = _truth(records, spec)
    codes = pd.Categorical(truth, categories=spec.classnames).codes
    scores = score_images(features, weights, logit_scale, spec.top_k, codes, spec.classnames)
    scores.derived = derived_codes(records, spec, truth)
    for name, d in scores.derived.items():
        truth_counts[f"with_truth ({name})"] = int((d.truth >= 0).sum())
        if not (d.truth >= 0).any() and len(records):
            raise InputError(f"derived grouping {name!r}: no image has a coarse true label among "
                             f"{', '.join(d.labels)}; check its truth (or the audit's truth)")
    groups = disaggregate(records, scores, spec)
    retrieval = retrieval_bias(features, records, queries or {}, list(spec.group_by), spec.retrieval_k,
                               seed=spec.seed)
    counts = replace(counts or AuditCounts(n_images=len(records), n_selected=len(records)), n_audited=len(records),
                     missing_attribute_values=missing_counts(records, spec), truth=truth_counts)
    return AuditResult(spec=spec, groups=groups, disparities=compute_disparities(groups, spec), retrieval=retrieval,
                       data=counts, model=dict(model or {"identity": "(embeddings)", "name": ""}),
                       fairness=fairness_summary(groups, scores, records, spec), records=records, scores=scores,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"), version=__version__,
                       skipped=list(skipped or []))


def _truth(records: pd.DataFrame, spec: AuditSpec) -> tuple[pd.Series, dict]:
    truth, counts = true_classes(records, spec)
    counts["with_truth"] = int(truth.notna().sum())
    if spec.truth is not None and counts["with_truth"] == 0 and counts.get("truth_not_in_label_set", 0):
        raw = spec.truth.column or spec.truth.format
        raise InputError(f"no image's true class (from {raw!r}) is one of the audit's classes; "
                         f"check the truth mapping (classes: {', '.join(spec.classnames[:8])} ...)")
    return truth, counts
