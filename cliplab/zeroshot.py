"""Zero-shot classification from class names and prompt templates, and its metrics.

The classifier is the CLIP paper's prompt ensemble: each class's prompts are encoded,
L2-normalised, averaged and re-normalised. Metrics follow CLIP_benchmark: acc1, acc5 and
mean per-class recall (balanced accuracy), plus the confusion matrix (in metrics.json up to
`MAX_JSON_CLASSES` classes; beyond, as a sparse sidecar file, confusion_matrix.npz).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .atomic import output_set, prepare_out_dir
from .data import ImageSet, read_images
from .embed import ImageEmbeddings, embed_images, embed_texts
from .errors import InputError
from .models import LoadedModel
from .prompts import fill, load_classes, load_templates, validate_classes, validate_templates

MAX_JSON_CLASSES = 100  # a larger confusion matrix goes to a sparse sidecar, not into metrics.json
CONFUSION_FILE = "confusion_matrix.npz"  # scipy.sparse.load_npz; rows true class, columns predicted
OUTPUT_COLUMNS = ("prediction", "probability", "correct", "top5")  # what predictions.csv adds to the manifest


def ensemble(text_features: np.ndarray, n_classes: int, n_templates: int) -> np.ndarray:
    """[C*T, d] class-major prompt embeddings -> [d, C] normalised class weights."""
    w = text_features.reshape(n_classes, n_templates, -1).mean(axis=1)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    return np.ascontiguousarray(w.T, dtype=np.float32)


def build_classifier(model: torch.nn.Module, tokenizer, classnames: Sequence[str], templates: Sequence[str],
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """[d, C] class weights straight from a torch model (for evaluation during training)."""
    import open_clip

    fillers = [lambda c, t=t: fill(t, c) for t in validate_templates(templates)]
    return open_clip.build_zero_shot_classifier(model, tokenizer, validate_classes(classnames), fillers,
                                                num_classes_per_batch=None, device=device)


@dataclass
class ZeroShotClassifier:
    """Class weights [d, C] built from class names and templates; scores image embeddings."""

    classnames: list[str]
    templates: list[str]
    weights: np.ndarray
    logit_scale: float = 100.0

    @classmethod
    def build(cls, loaded: LoadedModel, classnames: Sequence[str], templates: Sequence[str],
              class_prompts: dict[str, Sequence[str]] | None = None) -> ZeroShotClassifier:
        """``class_prompts`` gives some classes their own prompts instead of the templates."""
        classnames = validate_classes(classnames)
        templates = validate_templates(templates)
        # Encoded through embed_texts, not open_clip.build_zero_shot_classifier, so that each
        # prompt is encoded once per model: editing one template re-encodes only that template.
        prompts = [list((class_prompts or {}).get(c) or [fill(t, c) for t in templates]) for c in classnames]
        features = embed_texts(loaded, [p for ps in prompts for p in ps])
        ends = np.cumsum([len(ps) for ps in prompts])
        columns = [ensemble(features[end - len(ps):end], 1, len(ps))[:, 0] for ps, end in zip(prompts, ends)]
        logit_scale: torch.Tensor | None = getattr(loaded.model, "logit_scale", None)
        scale = float(logit_scale.exp().item()) if logit_scale is not None else 100.0
        return cls(classnames, templates, np.stack(columns, axis=1), min(scale, 100.0))

    def logits(self, image_features: np.ndarray) -> np.ndarray:
        return self.logit_scale * (np.asarray(image_features, dtype=np.float32) @ self.weights)

    def predict(self, image_features: np.ndarray, k: int = 5) -> Predictions:
        logits = self.logits(image_features)
        probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        k = min(k, len(self.classnames))
        topk = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        return Predictions(logits, probs, topk, self.classnames)


@dataclass
class Predictions:
    logits: np.ndarray
    probs: np.ndarray
    topk: np.ndarray
    classnames: list[str]

    @property
    def top1(self) -> np.ndarray:
        return self.topk[:, 0]

    @property
    def labels(self) -> list[str]:
        return [self.classnames[i] for i in self.top1]


def labels_to_indices(labels: Sequence[str], classnames: Sequence[str]) -> np.ndarray:
    """Map true labels to class indices; labels that are not classes are an input error.

    A label that matches a class only when case and surrounding spaces are ignored (`` Kite`` for
    ``kite``) is matched (class names are unique case-insensitively); `fold_matches` counts them.
    """
    index = {c: i for i, c in enumerate(classnames)}
    folded = {c.strip().casefold(): i for i, c in enumerate(classnames)}
    unknown = sorted({str(x) for x in labels if x not in index and str(x).strip().casefold() not in folded})
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise InputError(f"{len(unknown)} label value(s) are not among the classes: {shown}")
    return np.array([index[x] if x in index else folded[str(x).strip().casefold()] for x in labels], dtype=np.int64)


def fold_matches(labels: Sequence[str], classnames: Sequence[str]) -> dict[str, str]:
    """Labels that match a class only ignoring case and surrounding spaces: {label: class}."""
    exact = set(classnames)
    folded = {c.strip().casefold(): c for c in classnames}
    return {x: folded[x.strip().casefold()] for x in dict.fromkeys(labels) if x not in exact}


def zeroshot_metrics(logits: np.ndarray | torch.Tensor, y_true: np.ndarray, k: int = 5) -> dict:
    """acc1, acc{k}, mean_per_class_recall and the confusion matrix (rows true, columns predicted):
    a list of lists up to MAX_JSON_CLASSES classes, else a scipy.sparse CSR matrix (10,000 classes
    would be 10^8 cells; an image set fills at most one cell per image)."""
    logits = logits.detach().float().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    y_true = np.asarray(y_true, dtype=np.int64)
    n_classes = logits.shape[1]
    order = np.argsort(-logits, axis=1, kind="stable")
    pred = order[:, 0]
    in_topk = (order[:, :min(k, n_classes)] == y_true[:, None]).any(axis=1)
    if n_classes <= MAX_JSON_CLASSES:
        cm = np.bincount(y_true * n_classes + pred, minlength=n_classes ** 2).reshape(n_classes, n_classes).tolist()
    else:
        import scipy.sparse  # here, not at the top: a zero-shot run of a small class list need not load it

        cm = scipy.sparse.coo_matrix((np.ones(len(y_true), dtype=np.int64), (y_true, pred)),
                                     shape=(n_classes, n_classes)).tocsr()
    return {
        "acc1": float((pred == y_true).mean()),
        f"acc{k}": float(in_topk.mean()),
        "mean_per_class_recall": mean_per_class_recall(y_true, pred, n_classes),
        "n_images": len(y_true),
        "confusion_matrix": cm,
    }


def mean_per_class_recall(y_true: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Recall averaged over the classes present in ``y_true``: scikit-learn's balanced_accuracy_score (and so
    CLIP_benchmark's mean_per_class_recall), computed from two bincounts because importing sklearn.metrics
    costs a zero-shot run about a second of its start-up; tests/test_zeroshot.py checks it against sklearn."""
    support = np.bincount(y_true, minlength=n_classes)
    hits = np.bincount(y_true[pred == y_true], minlength=n_classes)
    present = support > 0
    return float((hits[present] / support[present]).mean())


@dataclass
class ZeroShotResult:
    """Metrics, per-image predictions, the classifier and the embeddings of one zero-shot run."""

    metrics: dict
    predictions: pd.DataFrame
    classifier: ZeroShotClassifier
    embeddings: ImageEmbeddings
    notes: list[str] = field(default_factory=list)  # odd but usable input, for the caller to report

    def write(self, out: str | Path) -> Path:
        """metrics.json, predictions.csv and skipped.csv in ``out`` (see :func:`write_zeroshot`)."""
        return write_zeroshot(self, out)

    def summary(self) -> str:
        """The metrics in one line, then a warning when accuracy is not above chance (1 / classes)."""
        from scipy.stats import binomtest

        m = self.metrics
        random = " (RANDOM WEIGHTS)" if m.get("random_init") else ""
        lines = [f"zero-shot of {m['model']}{random} on {m['n_images']} images, {len(m['classnames'])} classes, "
                 f"{len(m['templates'])} template(s): acc1 {m['acc1']:.3f}  acc5 {m['acc5']:.3f}  "
                 f"mean per-class recall {m['mean_per_class_recall']:.3f}"]
        n, chance = m["n_images"], 1 / len(m["classnames"])
        p = binomtest(round(m["acc1"] * n), n, chance, alternative="greater").pvalue if n else 1.0
        if p >= 0.05:
            lines.append(f"warning: accuracy {m['acc1']:.1%} is not above chance ({chance:.1%} for "
                         f"{len(m['classnames'])} classes; one-sided binomial p = {p:.2g}): check the weights, "
                         "the class names and the label column")
        return "\n".join(lines)


def run_zeroshot(loaded: LoadedModel, images: ImageSet | str | Path, classnames: Sequence[str] | str,
                 templates: Sequence[str] | str | None = None, label_column: str = "label",
                 **embed_kwargs) -> ZeroShotResult:
    """Embed an image set (cached), classify it zero-shot and score it against ``label_column``."""
    if not isinstance(images, ImageSet):
        images = read_images(images)
    columns = images.records.columns
    if label_column not in columns:
        cols = ", ".join(c for c in columns if c != "path")
        raise InputError(f"no label column {label_column!r} in {images.source} (columns: {cols})")
    clash = [c for c in OUTPUT_COLUMNS if c in columns]
    if clash:
        raise InputError(f"{images.source} has a column {clash[0]!r}, which predictions.csv uses for its own "
                         f"output ({', '.join(OUTPUT_COLUMNS)}); rename that column")
    if images.records[label_column].isna().all():
        raise InputError(f"label column {label_column!r} of {images.source} is empty in all {len(images)} rows: "
                         "nothing to score (pass --label-column, or fill in the labels)")
    clf = ZeroShotClassifier.build(loaded, load_classes(classnames), load_templates(templates))
    emb = embed_images(loaded, images, **embed_kwargs)
    labels = emb.records[label_column]
    has_label = labels.notna().to_numpy()
    if not has_label.any():
        raise InputError(f"none of the {len(emb)} embedded images has a {label_column!r} label: nothing to score")
    pred = clf.predict(emb.features)
    given = labels[has_label].astype(str).tolist()
    y = labels_to_indices(given, clf.classnames)
    metrics = {"random_init": loaded.random_init} | zeroshot_metrics(pred.logits[has_label], y)
    prompts = {fill(t, c) for t in clf.templates for c in clf.classnames}
    folded = fold_matches(given, clf.classnames)
    metrics.update(n_skipped=len(emb.skipped), n_unlabelled=int((~has_label).sum()), n_cached=emb.n_cached,
                   n_duplicate_rows=images.n_duplicates, n_labels_matched_ignoring_case=sum(x in folded for x in given),
                   truncated_prompts=sorted(prompts & loaded.truncated_texts),
                   model=loaded.identity, classnames=clf.classnames, templates=clf.templates,
                   skipped=[{"path": s.path, "reason": s.reason} for s in emb.skipped])
    notes = list(images.notes)
    if folded:
        first = next(iter(folded.items()))
        notes.append(f"{metrics['n_labels_matched_ignoring_case']} label(s) match a class only ignoring case or "
                     f"surrounding spaces and were scored as that class (e.g. {first[0]!r} as {first[1]!r})")
    if metrics["n_unlabelled"]:
        notes.append(f"{metrics['n_unlabelled']} image(s) have an empty {label_column!r} and are not scored")
    table = emb.records.drop(columns=["path"]).copy()
    table.insert(0, "path", emb.records["path"])
    table["prediction"] = pred.labels
    table["probability"] = pred.probs[np.arange(len(pred.top1)), pred.top1]
    truth = np.full(len(table), -1)
    truth[has_label] = y
    table["correct"] = np.where(has_label, pred.top1 == truth, np.nan)
    table["top5"] = ["|".join(clf.classnames[j] for j in row) for row in pred.topk]
    return ZeroShotResult(metrics, table, clf, emb, notes)


def write_zeroshot(result: ZeroShotResult, out: str | Path) -> Path:
    """predictions.csv, skipped.csv (and a large confusion matrix's sidecar) with metrics.json written
    last as their manifest (atomic.output_set): never a new metrics.json beside old predictions."""
    out = prepare_out_dir(out)
    metrics = dict(result.metrics)  # serialised when the set is complete: the sidecar's name goes in first
    with output_set(out, "metrics.json", metrics) as files:
        if not isinstance(metrics["confusion_matrix"], list):  # a scipy.sparse matrix (MAX_JSON_CLASSES)
            import scipy.sparse

            with open(files.path(CONFUSION_FILE), "wb") as f:
                scipy.sparse.save_npz(f, metrics["confusion_matrix"])
            metrics["confusion_matrix"] = CONFUSION_FILE
        files.table("predictions.csv", result.predictions)
        files.table("skipped.csv", pd.DataFrame(result.metrics["skipped"], columns=["path", "reason"]))
    return out
