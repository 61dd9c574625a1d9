"""``cliplab embed`` and ``cliplab zeroshot``: a model run over an image set."""
from __future__ import annotations

import argparse

from .common import (
    add_image_args,
    add_model_args,
    add_out_arg,
    add_where_arg,
    embed_kwargs,
    report_input_notes,
    report_skips,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed images (cached) and write embeddings.npy + records.csv")
    add_model_args(p)
    add_image_args(p)
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="dtype of embeddings.npy (default float32)")
    add_where_arg(p)
    add_out_arg(p, "embeddings.npy, records.csv, skipped.csv, embed.json")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("zeroshot", help="zero-shot classification with metrics")
    add_model_args(p)
    add_image_args(p)
    p.add_argument("--classes", required=True, help="class names: a file (one per line) or 'a,b,c'")
    p.add_argument("--templates", help="templates: a file, a shipped set (default, openai-imagenet, "
                   "simple-imagenet) or 'a photo of a {}.'; default: default")
    p.add_argument("--label-column", default="label", help="manifest column with the true class (default label)")
    add_where_arg(p)
    add_out_arg(p, "metrics.json, predictions.csv, skipped.csv")
    p.set_defaults(func=cmd_zeroshot)


def cmd_embed(args: argparse.Namespace) -> int:
    from ..data import parse_where, read_images, select
    from ..embed import embed_images, write_embeddings
    from ..models import load_model

    loaded = load_model(args.model, args.pretrained, args.device)
    images = select(read_images(args.images, args.image_column), parse_where(args.where))
    result = embed_images(loaded, images, dtype=args.dtype, **embed_kwargs(args))
    out = write_embeddings(result, args.out)
    report_input_notes(images.n_duplicates)
    report_skips(result.skipped, out)
    print(f"embedded {len(result)} images ({result.n_cached} from cache, {result.n_encoded} encoded, "
          f"{len(result.skipped)} skipped) with {loaded.identity} -> {out}")
    return 0


def cmd_zeroshot(args: argparse.Namespace) -> int:
    from ..data import parse_where, read_images, select
    from ..models import load_model
    from ..zeroshot import run_zeroshot, write_zeroshot

    loaded = load_model(args.model, args.pretrained, args.device)
    images = select(read_images(args.images, args.image_column), parse_where(args.where))
    result = run_zeroshot(loaded, images, args.classes, args.templates, label_column=args.label_column,
                          **embed_kwargs(args))
    out = write_zeroshot(result, args.out)
    report_input_notes(images.n_duplicates, result.metrics["truncated_prompts"])
    report_skips(result.embeddings.skipped, out)
    m = result.metrics
    print(f"zero-shot on {m['n_images']} images, {len(m['classes'])} classes, {len(m['templates'])} template(s): "
          f"acc1 {m['acc1']:.3f}  acc5 {m['acc5']:.3f}  mean per-class recall {m['mean_per_class_recall']:.3f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'predictions.csv'}")
    return 0
