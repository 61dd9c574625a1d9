"""``cliplab embed`` and ``cliplab zeroshot``: a model run over an image set."""
from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from .common import (
    add_image_args,
    add_model_args,
    add_out_arg,
    add_where_arg,
    check_model_args,
    embed_kwargs,
    load_model_from_args,
    read_selected_images,
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
    p.add_argument("--profile", action="store_true", help="print (and write profile.json) the share of wall time "
                   "spent reading, decoding, preprocessing, in the forward pass and writing")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder holding another run's results")
    p.set_defaults(func=cmd_embed, batch_size=None)  # None: 256 on a GPU, 64 on a CPU

    p = sub.add_parser("zeroshot", help="zero-shot classification with metrics")
    add_model_args(p)
    add_image_args(p)
    p.add_argument("--classes", help="class names: a file (one per line), 'a,b,c' or a JSON list; default: the "
                   "classnames.txt of an ImageFolder or CLIP_benchmark set")
    p.add_argument("--templates", help="templates: a file (one per line), a shipped set (default, openai-imagenet, "
                   "simple-imagenet), one template 'a photo of a {}, outdoors.' or a JSON list "
                   "'[\"a photo of a {}.\", \"a {}.\"]'; default: default")
    p.add_argument("--label-column", default="label", help="manifest column with the true class (default label)")
    add_where_arg(p)
    add_out_arg(p, "metrics.json, predictions.csv, skipped.csv")
    p.set_defaults(func=cmd_zeroshot)


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed (under torchrun: every rank its part, rank 0 writes the outputs in the input's order)."""
    check_model_args(args, measures=False)  # embeddings of a random model are a baseline, not a measurement
    from ..parallel import EmbedJob, run_embed

    job = EmbedJob(images=args.images, out=args.out, model=args.model, pretrained=args.pretrained,
                   device=args.device, image_column=args.image_column, where=args.where, dtype=args.dtype,
                   profile=args.profile, overwrite=args.overwrite, **embed_kwargs(args))
    done = run_embed(job)
    if done.result is None:  # a rank other than 0
        return 0
    result, out = done.result, done.out
    report_input_notes(done.n_duplicates, notes=done.notes)
    report_skips(result.skipped, out)
    if done.timer is not None:
        print(done.timer.report(), file=sys.stderr)
    ranks = f" on {done.world_size} ranks" if done.world_size > 1 else ""
    print(f"{result.summary()}{ranks} -> {out}")
    return 0


def cmd_zeroshot(args: argparse.Namespace) -> int:
    from ..prompts import load_classes, load_templates

    check_model_args(args)
    images = read_selected_images(args)
    own: list[str] | None = getattr(images, "classnames", None)
    if not args.classes and not own:
        raise InputError(f"pass --classes: {args.images} has no class list of its own (classnames.txt)")
    classnames = load_classes(args.classes or own or [])
    templates = load_templates(args.templates or getattr(images, "templates", None))
    from ..zeroshot import run_zeroshot

    loaded = load_model_from_args(args)
    result = run_zeroshot(loaded, images, classnames, templates, label_column=args.label_column, **embed_kwargs(args))
    out = result.write(args.out)
    report_input_notes(images.n_duplicates, result.metrics["truncated_prompts"], result.notes)
    report_skips(result.embeddings.skipped, out)
    print(result.summary())
    m = result.metrics
    big = not isinstance(m["confusion_matrix"], list)  # too large for metrics.json: a sparse sidecar
    print(f"wrote {out / 'metrics.json'} and {out / 'predictions.csv'}"
          + (f" (the {len(m['classnames'])}x{len(m['classnames'])} confusion matrix: {out / 'confusion_matrix.npz'})"
             if big else ""))
    return 0
