"""``cliplab robustness`` and ``cliplab probe``: accuracy under distribution shift, effective
robustness, and linear / k-shot probes against zero-shot (the work is in cliplab.robustness)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from .common import add_model_args, check_model_args, load_model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robustness", help="zero-shot and probe accuracy under distribution shift; effective "
                       "robustness")
    add_robustness_arguments(p)
    p.set_defaults(func=cmd_robustness)
    p = sub.add_parser("probe", help="linear and k-shot probes on cached embeddings, against zero-shot")
    add_probe_arguments(p)
    p.set_defaults(func=cmd_probe)


def _common(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    g = p.add_argument_group("images")
    g.add_argument("--layout", default="auto", choices=["auto", "imagefolder", "wds"],
                   help="how --images is laid out: auto finds CLIP_benchmark wds shards or an ImageFolder with "
                   "classnames.txt, else a plain folder or manifest")
    g.add_argument("--class-subset", help="class indices to keep (a file or '1,5,9'), e.g. ImageNet-R's 200")
    g.add_argument("--label-column", default="label", help="manifest column with the true class (default label)")
    g.add_argument("--classes", help="class names (a file or 'a,b,c'); default: the eval set's classnames.txt")
    g.add_argument("--templates", help="templates: a file, a shipped set or 'a photo of a {}.'; default: the "
                   "eval set's own, else cliplab's default")
    g.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    g.add_argument("--workers", type=int, help="image decoding processes (default: up to 2)")
    g.add_argument("--cache-dir", help="embedding cache (default: $CLIPLAB_CACHE or ~/.cache/cliplab)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--seed", type=int, default=0, help="seed of corruptions, probes and bootstraps (default 0)")
    p.add_argument("--tables", choices=["csv", "parquet"], default="csv", help="format of the tables (default csv)")
    p.add_argument("--out", required=True, help="output folder: JSON, tables and report.html")


def add_robustness_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--images", required=True, help="the in-distribution set (folder, manifest, ImageFolder, wds)")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]",
                   help="only the rows whose COLUMN holds one of the VALUEs (repeatable)")
    p.add_argument("--shift", action="append", default=[], metavar="NAME=PATH",
                   help="a shifted set (e.g. imagenet-v2=~/data/imagenetv2); repeatable")
    p.add_argument("--shift-column", help="a manifest column whose values define shifts (e.g. style)")
    p.add_argument("--id-value", default="clean", help="the --shift-column value that is in-distribution")
    p.add_argument("--corruptions", help="ImageNet-C corruptions of the in-distribution images: common (15), "
                   "all (19) or names")
    p.add_argument("--severities", default="1-5", help="corruption severities (1-5): a range '1-5' or a list "
                   "'1,3,5' (default 1-5)")
    p.add_argument("--corruption-limit", type=int, help="corrupt only the first N in-distribution images")
    p.add_argument("--attribute", action="append", default=[], help="group column (repeatable), e.g. tone")
    p.add_argument("--flag", action="append", default=[], help="a class whose prediction is flagged, e.g. thief")
    p.add_argument("--train-images", help="training images for the linear probes (clean)")
    p.add_argument("--train-where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]",
                   help="only the rows whose COLUMN holds one of the VALUEs (repeatable)")
    p.add_argument("--probe-k", default="1,2,4,8,16", help="k-shot probes fitted as baseline models")
    p.add_argument("--baseline-csv", help="accuracies of standard models: name,id_acc,ood_acc[,shift,n_id,n_ood]")
    p.add_argument("--baselines", help="names of the baseline evaluations (default: the probes)")
    p.add_argument("--supervised", help="the supervised model for the share of the robustness gap closed")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates for the intervals of mean "
                   "per-class recall and effective robustness (default 1000)")


def add_probe_arguments(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--train-images", required=True, help="labelled images the probes are fitted on (a share "
                   "held out to choose C); folder, manifest, ImageFolder or wds")
    p.add_argument("--train-where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]",
                   help="only the rows whose COLUMN holds one of the VALUEs (repeatable)")
    p.add_argument("--test-images", required=True, help="labelled images the probes and zero-shot are scored "
                   "on; its class list is the default --classes")
    p.add_argument("--test-where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]",
                   help="only the rows whose COLUMN holds one of the VALUEs (repeatable)")
    p.add_argument("--k", default="1,2,4,8,16", help="shots per class")
    p.add_argument("--seeds", type=int, default=5, help="draws per k (>= 5 for an interval worth reading)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of the training images held out to "
                   "choose the regularisation strength C (default 0.2)")
    p.add_argument("--jobs", type=int, default=2, help="probes fitted at once, in worker processes (default 2; "
                   "1: in this process, -1: every core)")
    p.add_argument("--no-zeroshot", action="store_true", help="skip placing zero-shot on the curve")


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"{what}: expected integers like 1,2,4, got {text!r}") from None


def _read(args: argparse.Namespace, path: str, where: list[str]):
    from ..evalsets import input_notes, read_selected

    images = read_selected(path, args.layout, args.class_subset, where)
    for note in input_notes(images):
        print(f"note: {note}", file=sys.stderr)
    return images


def _embed_kwargs(args: argparse.Namespace) -> dict:
    from ..embed import DEFAULT_CACHE_DIR

    return dict(batch_size=args.batch_size, workers=args.workers, progress=not args.quiet,
                cache_dir=None if args.no_cache else (args.cache_dir or DEFAULT_CACHE_DIR))


def _shifts(items: list[str]) -> dict[str, str]:
    shifts = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--shift takes NAME=PATH, got {item!r}")
        shifts[name] = path
    return shifts


def cmd_robustness(args: argparse.Namespace) -> int:
    check_model_args(args)
    shift_paths = _shifts(args.shift)
    images = _read(args, args.images, args.where)
    shifts = {name: _read(args, path, []) for name, path in shift_paths.items()}
    train = _read(args, args.train_images, args.train_where) if args.train_images else None
    from ..robustness import RobustnessConfig, run_robustness, write_robustness

    cfg = RobustnessConfig(args.classes, args.templates, args.label_column, args.shift_column, args.id_value,
                           args.attribute, args.flag, args.corruptions, args.severities, args.corruption_limit,
                           args.seed, _ints(args.probe_k, "--probe-k"),
                           args.baselines.split(",") if args.baselines else None, args.supervised, args.n_boot)
    loaded = load_model_from_args(args)
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


def cmd_probe(args: argparse.Namespace) -> int:
    check_model_args(args)
    train = _read(args, args.train_images, args.train_where)
    test = _read(args, args.test_images, args.test_where)
    from ..probe import ProbeConfig, write_probe
    from ..robustness import probe_image_sets

    cfg = ProbeConfig(ks=_ints(args.k, "--k"), seeds=args.seeds, val_fraction=args.val_fraction, seed=args.seed,
                      n_jobs=args.jobs)
    loaded = load_model_from_args(args)
    result, notes = probe_image_sets(loaded, train, test, cfg, args.classes, args.templates, args.label_column,
                                     zeroshot=not args.no_zeroshot, **_embed_kwargs(args))
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
