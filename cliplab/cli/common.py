"""Options several commands share, each defined once, and what commands print about their inputs.

Only argparse and the standard library at import time: building the parser must stay instant.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WHERE_METAVAR = "COLUMN=VALUE[,VALUE]"


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --pretrained, --device."""
    g = p.add_argument_group("model")
    g.add_argument("--model", help="open_clip architecture (e.g. ViT-B-32, cliplab-tiny), hf-hub:ID or local-dir:PATH;"
                   " optional when --pretrained is a cliplab run directory")
    g.add_argument("--pretrained", help="open_clip pretrained tag, checkpoint file, or run directory; "
                   "omitted: random initialisation")
    g.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")


def add_image_args(p: argparse.ArgumentParser) -> None:
    """--images and how they are read and embedded (the embedding cache included)."""
    g = p.add_argument_group("images")
    g.add_argument("--images", required=True, help="a folder of images (recursive) or a CSV/TSV/Parquet manifest")
    g.add_argument("--image-column", help="manifest column with image paths (default: image, filepath, path, ...)")
    g.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    g.add_argument("--workers", type=int, help="image decoding processes (default: up to 2)")
    g.add_argument("--max-pixels", type=int, help="refuse larger images as decompression bombs (default 64M)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("embedding cache")
    g.add_argument("--cache-dir", default=None, help="embedding cache folder (default: $CLIPLAB_CACHE or "
                   "~/.cache/cliplab)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")


def add_where_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--where", action="append", default=[], metavar=WHERE_METAVAR,
                   help="only the rows whose COLUMN holds one of the VALUEs, e.g. split=test (repeatable)")


def add_out_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str) -> None:
    p.add_argument("--out", required=True, help=f"output folder: {what}")


def embed_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of cliplab.embed_images that the image options set."""
    from ..embed import DEFAULT_CACHE_DIR

    kw: dict[str, Any] = dict(batch_size=args.batch_size, workers=args.workers, progress=not args.quiet,
                              cache_dir=None if args.no_cache else (args.cache_dir or DEFAULT_CACHE_DIR))
    if args.max_pixels:
        kw["max_pixels"] = args.max_pixels
    return kw


def report_input_notes(n_duplicates: int, truncated: Sequence[str] = ()) -> None:
    """Odd but accepted input, on stderr: duplicate manifest rows, prompts cut to the context."""
    if n_duplicates:
        print(f"note: {n_duplicates} manifest row(s) name an image an earlier row names too (kept)", file=sys.stderr)
    if truncated:
        print(f"note: {len(truncated)} prompt(s) longer than the model's context were truncated, e.g. "
              f"{truncated[0][:80]!r}", file=sys.stderr)


def report_skips(skipped: Sequence[Any], out: Path | None = None) -> None:
    """The skipped images (first ten) on stderr, and where all of them are listed."""
    if not skipped:
        return
    where = f" (all listed in {out / 'skipped.csv'})" if out else ""
    print(f"skipped {len(skipped)} image(s){where}:", file=sys.stderr)
    for s in skipped[:10]:
        print(f"  {s.path}: {s.reason}", file=sys.stderr)
    if len(skipped) > 10:
        print(f"  ... and {len(skipped) - 10} more", file=sys.stderr)
