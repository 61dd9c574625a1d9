"""The ``cliplab`` command: parses arguments and calls the library, nothing more.

Expected failures print one line and exit with a documented code (see cliplab.errors).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import errors
from .errors import CliplabError


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="open_clip architecture (e.g. ViT-B-32, cliplab-tiny), hf-hub:ID or local-dir:PATH;"
                   " optional when --pretrained is a cliplab run directory")
    g.add_argument("--pretrained", help="open_clip pretrained tag, checkpoint file, or run directory; "
                   "omitted: random initialisation")
    g.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")


def _image_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("images")
    g.add_argument("--images", required=True, help="a folder of images (recursive) or a CSV/TSV/Parquet manifest")
    g.add_argument("--image-column", help="manifest column with image paths (default: image, filepath, path, ...)")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--workers", type=int, help="image decoding processes (default: up to 2)")
    g.add_argument("--cache-dir", default=None, help="embedding cache folder (default: $CLIPLAB_CACHE or "
                   "~/.cache/cliplab)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    g.add_argument("--max-pixels", type=int, help="refuse larger images as decompression bombs (default 64M)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _embed_kwargs(args) -> dict:
    from .embed import DEFAULT_CACHE_DIR

    kw = dict(batch_size=args.batch_size, workers=args.workers, progress=not args.quiet,
              cache_dir=None if args.no_cache else (args.cache_dir or DEFAULT_CACHE_DIR))
    if args.max_pixels:
        kw["max_pixels"] = args.max_pixels
    return kw


def _report_input_notes(n_duplicates: int, truncated=()) -> None:
    if n_duplicates:
        print(f"note: {n_duplicates} manifest row(s) name an image an earlier row names too (kept)", file=sys.stderr)
    if truncated:
        print(f"note: {len(truncated)} prompt(s) longer than the model's context were truncated, e.g. "
              f"{truncated[0][:80]!r}", file=sys.stderr)


def _report_skips(skipped, out: Path | None = None) -> None:
    if not skipped:
        return
    where = f" (all listed in {out / 'skipped.csv'})" if out else ""
    print(f"skipped {len(skipped)} image(s){where}:", file=sys.stderr)
    for s in skipped[:10]:
        print(f"  {s.path}: {s.reason}", file=sys.stderr)
    if len(skipped) > 10:
        print(f"  ... and {len(skipped) - 10} more", file=sys.stderr)


def cmd_models(args) -> int:
    import open_clip

    from .models import tiny_model_names

    print("cliplab's tiny architectures:", ", ".join(tiny_model_names()))
    if args.all:
        for name, tag in open_clip.list_pretrained():
            print(f"{name}\t{tag}")
    else:
        print(f"{len(open_clip.list_models())} open_clip architectures; --all lists the pretrained tags")
    return 0


def cmd_synth(args) -> int:
    from .synth import SynthConfig, synthesize

    cfg = SynthConfig(n=args.n, seed=args.seed, bias=args.bias, size=args.size)
    try:
        path = synthesize(args.out, cfg, progress=not args.quiet)
    except ValueError as e:
        raise errors.InputError(str(e)) from None
    print(f"wrote {path}")
    return 0


def cmd_embed(args) -> int:
    from .parallel import EmbedJob, run_embed

    kw = _embed_kwargs(args)
    job = EmbedJob(images=args.images, out=args.out, model=args.model, pretrained=args.pretrained,
                   device=args.device, image_column=args.image_column, where=args.where, dtype=args.dtype,
                   profile=args.profile, overwrite=args.overwrite, **kw)
    done = run_embed(job)  # under torchrun: every rank embeds its part, rank 0 writes
    if done.result is None:
        return 0
    result, out = done.result, done.out
    _report_input_notes(done.n_duplicates)
    _report_skips(result.skipped, out)
    if done.timer is not None:
        print(done.timer.report(), file=sys.stderr)
    ranks = f" on {done.world_size} ranks" if done.world_size > 1 else ""
    print(f"embedded {len(result)} images ({result.n_cached} from cache, {result.n_encoded} encoded, "
          f"{len(result.skipped)} skipped) with {result.model_identity}{ranks} -> {out}")
    return 0


def cmd_zeroshot(args) -> int:
    from .data import parse_where, read_images, select
    from .models import load_model
    from .zeroshot import run_zeroshot, write_zeroshot

    loaded = load_model(args.model, args.pretrained, args.device)
    images = select(read_images(args.images, args.image_column), parse_where(args.where))
    result = run_zeroshot(loaded, images, args.classes, args.templates, label_column=args.label_column,
                          **_embed_kwargs(args))
    out = write_zeroshot(result, args.out)
    _report_input_notes(images.n_duplicates, result.metrics["truncated_prompts"])
    _report_skips(result.embeddings.skipped, out)
    m = result.metrics
    print(f"zero-shot on {m['n_images']} images, {len(m['classes'])} classes, {len(m['templates'])} template(s): "
          f"acc1 {m['acc1']:.3f}  acc5 {m['acc5']:.3f}  mean per-class recall {m['mean_per_class_recall']:.3f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'predictions.csv'}")
    return 0


def cmd_train(args) -> int:
    from .train import train
    from .train.cli_args import config_from_args

    result = train(config_from_args(args))
    print(f"trained model in {result.run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cliplab", description="Train, probe and audit CLIP models.")
    parser.add_argument("--version", action="version", version=f"cliplab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list model architectures")
    p.add_argument("--all", action="store_true", help="also list every open_clip pretrained tag")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("synth", help="generate the synthetic figures data set (with an optional planted bias)")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=3000, help="number of images (train + test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bias", type=float, default=0.0, help="fraction of the bias group's train captions made harmful")
    p.add_argument("--size", type=int, default=32, help="image size in pixels")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("embed", help="embed images (cached) and write embeddings.npy + records.csv")
    _model_args(p)
    _image_args(p)
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]",
                   help="only the manifest rows whose COLUMN holds one of the VALUEs (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--profile", action="store_true", help="print (and write profile.json) the share of wall time "
                   "spent reading, decoding, preprocessing, in the forward pass and writing")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder holding another run's results")
    p.set_defaults(func=cmd_embed, batch_size=None)  # None: 256 on a GPU, 64 on a CPU
    # --images also takes webdataset shards ('/data/{00000..01023}.tar'); run under torchrun for many GPUs

    p = sub.add_parser("zeroshot", help="zero-shot classification with metrics")
    _model_args(p)
    _image_args(p)
    p.add_argument("--classes", required=True, help="class names: a file (one per line) or 'a,b,c'")
    p.add_argument("--templates", help="templates: a file, a shipped set (default, openai-imagenet, "
                   "simple-imagenet) or 'a photo of a {}.'; default: default")
    p.add_argument("--label-column", default="label")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]",
                   help="only the manifest rows whose COLUMN holds one of the VALUEs, e.g. split=test")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_zeroshot)

    p = sub.add_parser("train", help="train or fine-tune a CLIP model")
    from .train.cli_args import add_train_arguments

    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("audit", help="audit a zero-shot label set for demographic misclassification")
    from .audit.cli_args import add_audit_arguments, run_audit_from_args

    add_audit_arguments(p)
    p.set_defaults(func=run_audit_from_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliplabError as e:
        print(f"cliplab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cliplab: interrupted", file=sys.stderr)
        return errors.EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
