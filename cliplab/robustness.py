"""Accuracy under distribution shift, per classifier, shift and group: `cliplab robustness`.

Shifts are image sets scored against an in-distribution set: user sets (ImageNet-V2/-R/... laid out
locally), the values of any manifest column (``--shift-column style``), and ImageNet-C corruptions of the
in-distribution images (cliplab.corruptions). Classifiers: zero-shot, and linear probes fitted on clean
training embeddings (the full-data probe and one k-shot probe per k, which also serve as the baseline
models of the effective-robustness line). Per (classifier, shift): acc1, acc5 (Wilson 95%) and mean per-class
recall (bootstrap 95%); per group of an attribute: accuracy and flagged rate, and whether the gap between
groups widens under shift. Everything works on cached image embeddings.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from .baseline_fit import Evaluation, effective_robustness, read_baseline_csv
from .corruptions import SEVERITIES, corrupt_images
from .data import ImageSet
from .embed import embed_images
from .errors import InputError
from .models import LoadedModel
from .probe import C_GRID, KS, ProbeConfig, ProbeResult, fit_probe, run_probes, sample_k_shot, validation_split
from .prompts import load_classes, load_templates
from .zeroshot import ZeroShotClassifier, labels_to_indices, zeroshot_metrics

ID_SHIFT = "in-distribution"


# ------------------------------------------------------------------------------ metrics with intervals
def shift_metrics(logits: np.ndarray, y: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """acc1/acc5 (Wilson 95%) and mean per-class recall (percentile bootstrap over images, 95%)."""
    logits = np.nan_to_num(np.asarray(logits, dtype=np.float64), neginf=-1e30)
    m = zeroshot_metrics(logits, y)
    n = len(y)
    out: dict = {"n_images": n}
    for key in ("acc1", "acc5"):
        lo, hi = proportion_confint(round(m[key] * n), n, method="wilson")
        out |= {key: m[key], f"{key}_low": float(lo), f"{key}_high": float(hi)}
    lo, hi = _bootstrap_recall(y, logits.argmax(axis=1) == y, logits.shape[1], n_boot, seed)
    out |= {"mean_per_class_recall": m["mean_per_class_recall"], "mean_per_class_recall_low": lo,
            "mean_per_class_recall_high": hi}
    return out


def _bootstrap_recall(y: np.ndarray, correct: np.ndarray, n_classes: int, n_boot: int, seed: int
                      ) -> tuple[float, float]:
    """Percentile interval of the mean per-class recall; one bincount over all replicates at once."""
    if not n_boot or not len(y):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (n_boot, len(y)))
    codes = (np.arange(n_boot)[:, None] * n_classes + y[idx]).ravel()
    hits = np.bincount(codes, weights=correct[idx].ravel(), minlength=n_boot * n_classes).reshape(n_boot, -1)
    counts = np.bincount(codes, minlength=n_boot * n_classes).reshape(n_boot, -1)
    with np.errstate(invalid="ignore"):
        recall = np.nanmean(np.where(counts > 0, hits / np.maximum(counts, 1), np.nan), axis=1)
    lo, hi = np.percentile(recall, [2.5, 97.5])
    return float(lo), float(hi)


def group_metrics(pred: np.ndarray, y: np.ndarray, groups: pd.Series, flagged: Sequence[int] = ()) -> pd.DataFrame:
    """Per group: n, accuracy and (if flagged classes) the rate of predictions into them, Wilson 95%."""
    rows = []
    for g, idx in groups.groupby(groups.astype(str), sort=True).groups.items():
        i = np.asarray(list(idx))
        n = len(i)
        row: dict = {"group": g, "n": n}
        for metric, hits in (("accuracy", int((pred[i] == y[i]).sum())),
                             ("flagged_rate", int(np.isin(pred[i], flagged).sum()) if len(flagged) else None)):
            if hits is None:
                continue
            lo, hi = proportion_confint(hits, n, method="wilson")
            row |= {metric: hits / n, f"{metric}_low": float(lo), f"{metric}_high": float(hi), f"{metric}_hits": hits}
        rows.append(row)
    return pd.DataFrame(rows)


def group_gap(table: pd.DataFrame, metric: str = "accuracy") -> dict:
    """Largest minus smallest group value, with Newcombe's 95% interval for that difference."""
    if len(table) < 2 or metric not in table:
        return {"gap": np.nan, "gap_low": np.nan, "gap_high": np.nan, "high_group": None, "low_group": None}
    hi, lo = table.loc[table[metric].idxmax()], table.loc[table[metric].idxmin()]
    ci = confint_proportions_2indep(int(hi[f"{metric}_hits"]), int(hi["n"]), int(lo[f"{metric}_hits"]),
                                    int(lo["n"]), method="newcomb")
    return {"gap": float(hi[metric] - lo[metric]), "gap_low": float(ci[0]), "gap_high": float(ci[1]),
            "high_group": hi["group"], "low_group": lo["group"]}


# ------------------------------------------------------------------------------ the run
@dataclass
class RobustnessConfig:
    """What `cliplab robustness` evaluates; classnames/templates default to an eval set's own."""

    classnames: Sequence[str] | str | None = None
    templates: Sequence[str] | str | None = None
    label_column: str = "label"
    shift_column: str | None = None  # any manifest column: its values other than ``id_value`` are shifts
    id_value: str = "clean"
    attributes: Sequence[str] = ()  # group columns (e.g. tone)
    flagged: Sequence[str] = ()  # classes whose prediction counts as flagged (e.g. thief)
    corruptions: Sequence[str] | str | None = None  # 'common', 'all' or names; None: no corruptions
    severities: Sequence[int] | str = SEVERITIES
    corruption_limit: int | None = None  # corrupt the first N in-distribution images only
    seed: int = 0  # corruptions, probes and bootstraps
    probe_ks: Sequence[int] = KS  # k-shot probes (one seed each), the default baseline models
    baselines: Sequence[str] | None = None  # names of baseline evaluations; None: the probes
    supervised: str | None = None  # the supervised model for the share of the gap closed
    n_boot: int = 1000


@dataclass
class RobustnessResult:
    """Everything `run_robustness` measured, as tables: accuracy per (classifier, shift), per group and the
    group gaps with their change under shift, and effective robustness against the baseline line; with
    the notes and skips a reader needs to trust them. `write_robustness` writes it with a report."""

    shifts: pd.DataFrame  # one row per (classifier, shift)
    groups: pd.DataFrame  # one row per (classifier, shift, attribute, group)
    gaps: pd.DataFrame  # one row per (classifier, shift, attribute, metric): gap and its change vs ID
    effective: pd.DataFrame  # one row per (shift, evaluation)
    lines: pd.DataFrame  # the baseline line per shift
    classnames: list[str]
    notes: list[str] = field(default_factory=list)
    skipped: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


def _labelled(emb, label_column: str, classnames: list[str], notes: list[str], name: str):
    if label_column not in emb.records:
        raise InputError(f"{name}: no label column {label_column!r} (columns: {', '.join(emb.records.columns)})")
    labels = emb.records[label_column]
    keep = labels.notna().to_numpy()
    if (~keep).any():
        notes.append(f"{name}: {int((~keep).sum())} unlabelled image(s) left out")
    return emb.features[keep], emb.records[keep].reset_index(drop=True), \
        labels_to_indices(labels[keep].astype(str).tolist(), classnames)


def split_by_column(images: ImageSet, column: str, id_value: str) -> tuple[ImageSet, dict[str, ImageSet]]:
    """The rows whose ``column`` is ``id_value`` (in-distribution) and one set per other value."""
    if column not in images.records:
        raise InputError(f"--shift-column {column!r} is not in {images.source} (columns: "
                         f"{', '.join(c for c in images.records.columns if c != 'path')})")
    values = images.records[column].astype(str)
    if id_value not in set(values):
        raise InputError(f"--shift-column {column}: no row has the in-distribution value {id_value!r} "
                         f"(values: {', '.join(sorted(set(values)))}); pass --id-value")
    part = lambda v: ImageSet(images.records[values == v].reset_index(drop=True), f"{images.source} {column}={v}")
    return part(id_value), {f"{column}={v}": part(v) for v in sorted(set(values) - {id_value})}


def run_robustness(loaded: LoadedModel, images: ImageSet, config: RobustnessConfig | None = None,
                   shifts: Mapping[str, ImageSet] | None = None, train: ImageSet | None = None,
                   baseline_table: str | Path | None = None, work_dir: str | Path | None = None,
                   **embed_kwargs) -> RobustnessResult:
    """Score zero-shot (and, given ``train``, linear probes) on ``images`` and every shift; see the module doc.

    ``work_dir`` keeps the corrupted images (reused by later runs); default: a new temporary folder.
    """
    import tempfile
    import time

    cfg = config or RobustnessConfig()
    names = load_classes(cfg.classnames if cfg.classnames is not None else getattr(images, "classnames", None) or [])
    templates = load_templates(cfg.templates if cfg.templates is not None else getattr(images, "templates", None))
    notes: list[str] = []
    sets: dict[str, ImageSet] = {ID_SHIFT: images}
    if cfg.shift_column:
        sets[ID_SHIFT], by_value = split_by_column(images, cfg.shift_column, cfg.id_value)
        sets.update(by_value)
    sets.update(shifts or {})
    timings: dict[str, float] = {}
    if cfg.corruptions:
        base = sets[ID_SHIFT]
        if cfg.corruption_limit:
            base = ImageSet(base.records.head(cfg.corruption_limit), base.source)
        folder = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="cliplab-corrupted-"))
        corrupted = corrupt_images(base, folder, cfg.corruptions, cfg.severities, cfg.seed)
        timings["corrupt_s"] = corrupted.seconds
        recs = corrupted.images.records
        for (c, s), part in recs.groupby(["corruption", "severity"], sort=False):
            sets[f"{c}/{s}"] = ImageSet(part.reset_index(drop=True), f"{c} severity {s}")
    t0 = time.perf_counter()
    clf = ZeroShotClassifier.build(loaded, names, templates)
    data, skipped = {}, []
    for name, s in sets.items():
        emb = embed_images(loaded, s, **embed_kwargs)
        skipped += emb.skipped
        data[name] = _labelled(emb, cfg.label_column, names, notes, name)
    classifiers = {"zero-shot": clf.logits}
    if train is not None:
        classifiers |= _probes(loaded, train, cfg, names, notes, embed_kwargs)
    timings["embed_and_fit_s"] = time.perf_counter() - t0
    flagged = [names.index(f) for f in cfg.flagged if f in names]
    if len(flagged) != len(cfg.flagged):
        raise InputError(f"flagged classes {[f for f in cfg.flagged if f not in names]} are not among the classes")
    rows, group_rows, gap_rows, correct = [], [], [], {}
    for cname, score in classifiers.items():
        for sname, (x, recs, y) in data.items():
            logits = score(x)
            rows.append({"classifier": cname, "shift": sname, **shift_metrics(logits, y, cfg.n_boot, cfg.seed)})
            pred = np.nan_to_num(logits, neginf=-1e30).argmax(axis=1)
            correct[cname, sname] = pred == y
            for attr in cfg.attributes:
                if attr not in recs:
                    raise InputError(f"--attribute {attr!r} is not a column of {sname}")
                g = group_metrics(pred, y, recs[attr], flagged)
                group_rows += [{"classifier": cname, "shift": sname, "attribute": attr, **r}
                               for r in g.to_dict("records")]
                for metric in ("accuracy", "flagged_rate") if flagged else ("accuracy",):
                    gap_rows.append({"classifier": cname, "shift": sname, "attribute": attr, "metric": metric,
                                     **group_gap(g, metric)})
    gaps = pd.DataFrame(gap_rows)
    if len(gaps):
        ref = gaps[gaps["shift"] == ID_SHIFT].set_index(["classifier", "attribute", "metric"])["gap"]
        gaps["gap_change"] = gaps["gap"] - [ref.get((c, a, m), np.nan) for c, a, m in
                                            zip(gaps["classifier"], gaps["attribute"], gaps["metric"])]
    effective, lines = _effective(correct, classifiers, data, cfg, baseline_table, notes)
    return RobustnessResult(pd.DataFrame(rows), pd.DataFrame(group_rows), gaps, effective, lines, names, notes,
                            skipped, timings)


def _probes(loaded, train: ImageSet, cfg: RobustnessConfig, names: list[str], notes: list[str], embed_kwargs):
    """The full-data linear probe and one k-shot probe per k, fitted on the clean training embeddings."""
    x, _, y = _labelled(embed_images(loaded, train, **embed_kwargs), cfg.label_column, names, notes, "train")
    tr, va = validation_split(y, 0.2, cfg.seed)
    out = {"linear probe": fit_probe(x[tr], y[tr], x[va], y[va], len(names), C_GRID).logits}
    absent = sorted(set(range(len(names))) - set(y[tr].tolist()))
    if absent:
        notes.append(f"{len(absent)} class(es) have no training examples, so no probe predicts them: "
                     + ", ".join(names[c] for c in absent[:5]))
    for k in cfg.probe_ks:
        shots, short = sample_k_shot(y, tr, k, len(names), np.random.default_rng([cfg.seed, k]))
        short = [(c, n) for c, n in short if n > 0]
        if short:
            notes.append(f"{k}-shot probe: {len(short)} class(es) have fewer than {k} training examples "
                         f"(used all they have): " + ", ".join(f"{names[c]} ({n})" for c, n in short[:5]))
        out[f"{k}-shot probe"] = fit_probe(x[shots], y[shots], x[va], y[va], len(names), C_GRID).logits
    return out


def _effective(correct, classifiers, data, cfg: RobustnessConfig, baseline_table, notes):
    probes = [c for c in classifiers if c.endswith("probe")]
    baselines = list(cfg.baselines) if cfg.baselines else probes
    rows, lines = [], []
    for sname in data:
        if sname == ID_SHIFT:
            continue
        evals = [Evaluation.from_correct(c, correct[c, ID_SHIFT], correct[c, sname],
                                         "probe" if c in probes else "zero-shot") for c in classifiers]
        if baseline_table:
            evals += read_baseline_csv(baseline_table, sname)
        if len(baselines) < 3 and not cfg.baselines:
            notes.append("effective robustness not computed: it needs >= 3 baseline models (give training "
                         "images for probes, or --baselines from a --baseline-csv)")
            return pd.DataFrame(), pd.DataFrame()
        er = effective_robustness(evals, baselines, cfg.supervised, cfg.n_boot, cfg.seed)
        rows += [{"shift": sname, **r} for r in er.table.to_dict("records")]
        lines.append({"shift": sname, "slope": er.slope, "intercept": er.intercept, "baselines": "|".join(baselines)})
    return pd.DataFrame(rows), pd.DataFrame(lines)


def write_robustness(result: RobustnessResult, out: str | Path, model: str = "", pretrained: str = "",
                     tables: str = "csv") -> Path:
    """robustness.json, the tables (CSV or Parquet), clip_benchmark/*.json and report.html in ``out``."""
    from .atomic import prepare_out_dir, write_json, write_table, write_text
    from .evalsets import clip_benchmark_record, write_clip_benchmark_json
    from .robustness_html import robustness_page

    out = prepare_out_dir(out)
    frames = {"shifts": result.shifts, "groups": result.groups, "gaps": result.gaps,
              "effective_robustness": result.effective, "baseline_lines": result.lines,
              "skipped": pd.DataFrame([(s.path, s.reason) for s in result.skipped], columns=["path", "reason"])}
    for name, frame in frames.items():
        write_table(out / f"{name}.{tables}", frame)
    (out / "clip_benchmark").mkdir(exist_ok=True)
    for r in result.shifts.to_dict("records"):
        if r["classifier"] == "zero-shot":
            write_clip_benchmark_json(out / "clip_benchmark", clip_benchmark_record(r["shift"], model, pretrained, r))
    summary = {name: frame.to_dict("records") for name, frame in frames.items() if name != "skipped"}
    write_json(out / "robustness.json", {"model": model, "pretrained": pretrained, "classnames": result.classnames,
                                         "notes": result.notes, "n_skipped": len(result.skipped),
                                         "timings": result.timings, **summary})
    write_text(out / "report.html", robustness_page(result))
    return out


def probe_image_sets(loaded: LoadedModel, train: ImageSet, test: ImageSet, config: ProbeConfig,
                     classnames: Sequence[str] | str | None = None, templates: Sequence[str] | str | None = None,
                     label_column: str = "label", zeroshot: bool = True,
                     **embed_kwargs) -> tuple[ProbeResult, list[str]]:
    """Linear and k-shot probes of ``loaded``'s cached image embeddings, fitted on ``train`` and scored
    on ``test``, with the zero-shot classifier placed on the same curve; returns (result, notes).

    ``classnames`` default to the test set's class list (an ImageFolder / CLIP_benchmark set), ``templates``
    to its own templates, else cliplab's default."""
    names = load_classes(classnames or getattr(test, "classnames", None) or [])
    notes: list[str] = []
    x_tr, _, y_tr = _labelled(embed_images(loaded, train, **embed_kwargs), label_column, names, notes, "train")
    x_te, _, y_te = _labelled(embed_images(loaded, test, **embed_kwargs), label_column, names, notes, "test")
    logits = None
    if zeroshot:
        clf = ZeroShotClassifier.build(loaded, names, load_templates(templates or getattr(test, "templates", None)))
        logits = clf.logits(x_te)
    return run_probes(x_tr, y_tr, x_te, y_te, names, config, logits), notes
