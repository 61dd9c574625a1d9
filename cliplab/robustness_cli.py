"""`cliplab robustness` and `cliplab probe`: argument parsing only; the work is in the library.

Registered in the CLI package as
``p = sub.add_parser("robustness", ...); add_robustness_arguments(p); p.set_defaults(func=cmd_robustness)``
(and likewise for probe).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import InputError


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="open_clip architecture, hf-hub:ID or local-dir:PATH (optional with a run dir)")
    g.add_argument("--pretrained", help="open_clip pretrained tag, checkpoint file, or cliplab run directory")
    g.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")
    g = p.add_argument_group("images")
    g.add_argument("--layout", default="auto", choices=["auto", "imagefolder", "wds"],
                   help="how --images is laid out: auto finds CLIP_benchmark wds shards or an ImageFolder with "
                   "classnames.txt, else a plain folder or manifest")
    g.add_argument("--class-subset", help="class indices to keep (a file or '1,5,9'), e.g. ImageNet-R's 200")
    g.add_argument("--label-column", default="label")
    g.add_argument("--classes", help="class names (a file or 'a,b,c'); default: the eval set's classnames.txt")
    g.add_argument("--templates", help="templates: a file, a shipped set or 'a photo of a {}.'; default: the "
                   "eval set's own, else cliplab's default")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--workers", type=int)
    g.add_argument("--cache-dir", help="embedding cache (default: $CLIPLAB_CACHE or ~/.cache/cliplab)")
    g.add_argument("--no-cache", action="store_true")
    g.add_argument("--quiet", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tables", choices=["csv", "parquet"], default="csv")
    p.add_argument("--out", required=True)


def add_robustness_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--images", required=True, help="the in-distribution set (folder, manifest, ImageFolder, wds)")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]")
    p.add_argument("--shift", action="append", default=[], metavar="NAME=PATH",
                   help="a shifted set (e.g. imagenet-v2=~/data/imagenetv2); repeatable")
    p.add_argument("--shift-column", help="a manifest column whose values define shifts (e.g. style)")
    p.add_argument("--id-value", default="clean", help="the --shift-column value that is in-distribution")
    p.add_argument("--corruptions", help="ImageNet-C corruptions of the in-distribution images: common (15), "
                   "all (19) or names")
    p.add_argument("--severities", default="1-5")
    p.add_argument("--corruption-limit", type=int, help="corrupt only the first N in-distribution images")
    p.add_argument("--attribute", action="append", default=[], help="group column (repeatable), e.g. tone")
    p.add_argument("--flag", action="append", default=[], help="a class whose prediction is flagged, e.g. thief")
    p.add_argument("--train-images", help="training images for the linear probes (clean)")
    p.add_argument("--train-where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]")
    p.add_argument("--probe-k", default="1,2,4,8,16", help="k-shot probes fitted as baseline models")
    p.add_argument("--baseline-csv", help="accuracies of standard models: name,id_acc,ood_acc[,shift,n_id,n_ood]")
    p.add_argument("--baselines", help="names of the baseline evaluations (default: the probes)")
    p.add_argument("--supervised", help="the supervised model for the share of the robustness gap closed")
    p.add_argument("--n-boot", type=int, default=1000)


def add_probe_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--train-images", required=True)
    p.add_argument("--train-where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]")
    p.add_argument("--test-images", required=True)
    p.add_argument("--test-where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]")
    p.add_argument("--k", default="1,2,4,8,16", help="shots per class")
    p.add_argument("--seeds", type=int, default=5, help="draws per k (>= 5 for an interval worth reading)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--no-zeroshot", action="store_true", help="skip placing zero-shot on the curve")


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"{what}: expected integers like 1,2,4, got {text!r}") from None


def _read(args, path: str, where):
    from .data import parse_where, select
    from .evalsets import EvalImageSet, read_eval_set, subset_classes

    images = read_eval_set(path, args.layout)
    if args.class_subset:
        if not isinstance(images, EvalImageSet):
            raise InputError(f"--class-subset needs an ImageFolder or CLIP_benchmark wds set, not {path}")
        images = subset_classes(images, args.class_subset)
    picked = select(images, parse_where(where))
    if isinstance(images, EvalImageSet) and picked is not images:
        picked = EvalImageSet(picked.records, picked.source, picked.skipped, picked.n_duplicates,
                              images.classnames, images.templates, images.layout, images.empty_classes)
    return picked


def _embed_kwargs(args) -> dict:
    from .embed import DEFAULT_CACHE_DIR

    return dict(batch_size=args.batch_size, workers=args.workers, progress=not args.quiet,
                cache_dir=None if args.no_cache else (args.cache_dir or DEFAULT_CACHE_DIR))


def _notes(images) -> None:
    for attr, what in (("empty_classes", "class(es) with no images"), ("n_outside_subset", "image(s) outside the "
                       "class subset left out")):
        value = getattr(images, attr, None)
        if value:
            print(f"note: {len(value) if isinstance(value, list) else value} {what}", file=sys.stderr)
    if images.skipped:
        print(f"skipped {len(images.skipped)} file(s) of {images.source}, e.g. {images.skipped[0].path}: "
              f"{images.skipped[0].reason}", file=sys.stderr)


def cmd_robustness(args) -> int:
    from .models import load_model
    from .robustness import RobustnessConfig, run_robustness, write_robustness

    loaded = load_model(args.model, args.pretrained, args.device)
    images = _read(args, args.images, args.where)
    shifts = {}
    for item in args.shift:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--shift takes NAME=PATH, got {item!r}")
        shifts[name] = _read(args, path, [])
    train = _read(args, args.train_images, args.train_where) if args.train_images else None
    for s in [images, *shifts.values(), *([train] if train else [])]:
        _notes(s)
    cfg = RobustnessConfig(args.classes, args.templates, args.label_column, args.shift_column, args.id_value,
                           args.attribute, args.flag, args.corruptions, args.severities, args.corruption_limit,
                           args.seed, _ints(args.probe_k, "--probe-k"),
                           args.baselines.split(",") if args.baselines else None, args.supervised, args.n_boot)
    kw = _embed_kwargs(args)
    work = Path(kw["cache_dir"]) / "corrupted" if kw["cache_dir"] else None  # None: a temporary folder
    result = run_robustness(loaded, images, cfg, shifts, train, args.baseline_csv, work, **kw)
    out = write_robustness(result, args.out, loaded.identity, args.pretrained or "", args.tables)
    for n in result.notes:
        print(f"note: {n}", file=sys.stderr)
    zs = result.shifts[result.shifts["classifier"] == "zero-shot"]
    for r in zs.itertuples():
        print(f"zero-shot {r.shift}: acc1 {r.acc1:.3f} [{r.acc1_low:.3f}, {r.acc1_high:.3f}]  acc5 {r.acc5:.3f}  "
              f"mean per-class recall {r.mean_per_class_recall:.3f}")
    print(f"wrote {out / 'robustness.json'} and {out / 'report.html'}")
    return 0


def cmd_probe(args) -> int:
    from .embed import embed_images
    from .models import load_model
    from .probe import ProbeConfig, run_probes, write_probe
    from .prompts import load_classes, load_templates
    from .robustness import _labelled
    from .zeroshot import ZeroShotClassifier

    loaded = load_model(args.model, args.pretrained, args.device)
    train = _read(args, args.train_images, args.train_where)
    test = _read(args, args.test_images, args.test_where)
    names = load_classes(args.classes or getattr(test, "classnames", None) or [])
    notes: list[str] = []
    kw = _embed_kwargs(args)
    x_tr, _, y_tr = _labelled(embed_images(loaded, train, **kw), args.label_column, names, notes, "train")
    x_te, _, y_te = _labelled(embed_images(loaded, test, **kw), args.label_column, names, notes, "test")
    zs = None
    if not args.no_zeroshot:
        templates = load_templates(args.templates or getattr(test, "templates", None))
        zs = ZeroShotClassifier.build(loaded, names, templates).logits(x_te)
    cfg = ProbeConfig(ks=_ints(args.k, "--k"), seeds=args.seeds, val_fraction=args.val_fraction, seed=args.seed)
    result = run_probes(x_tr, y_tr, x_te, y_te, names, cfg, zs)
    out = write_probe(result, args.out, args.tables)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if len(result.short_classes):
        print(f"note: {len(result.short_classes)} (k, class) pair(s) with fewer than k training examples "
              f"(all used; listed in {out / f'short_classes.{args.tables}'})", file=sys.stderr)
    for r in result.summary.itertuples():
        print(f"{r.k:>3}-shot: acc1 {r.acc1:.3f} [{r.acc1_low:.3f}, {r.acc1_high:.3f}] over {r.n_seeds} seeds")
    print(f"all-data probe: acc1 {result.full['acc1']:.3f} (C={result.full['C']:.3g}); {result.zeroshot_worth}")
    print(f"wrote {out / 'probe.json'} and {out / 'report.html'}")
    return 0
