"""Options several commands share, each defined once, and what commands print about their inputs.

Only argparse and the standard library at import time: building the parser must stay instant.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..data import ImageSet
    from ..models import LoadedModel

WHERE_METAVAR = "COLUMN=VALUE[,VALUE]"


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --pretrained or --random-init, --device."""
    g = p.add_argument_group("model")
    g.add_argument("--model", help="open_clip architecture (e.g. ViT-B-32, cliplab-tiny), hf-hub:ID or local-dir:PATH;"
                   " optional when --pretrained is a cliplab run directory")
    weights = g.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", help="open_clip pretrained tag (`cliplab models --all`), checkpoint file, "
                         "or run directory written by `cliplab train`")
    weights.add_argument("--random-init", action="store_true", help="run on randomly initialised weights on purpose "
                         "(a baseline); without it, a command that measures a model refuses to run on them")
    g.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")


def check_model_args(args: argparse.Namespace, measures: bool = True) -> None:
    """Fail before torch is imported: an unknown architecture or tag, a --pretrained that names
    nothing, and (for a command that ``measures`` the model) weights that would be random."""
    from ..errors import ModelError
    from ..registry import check_model_source, is_random_init

    check_model_source(args.model, args.pretrained)
    if measures and is_random_init(args.model, args.pretrained) and not args.random_init:
        raise ModelError(f"no weights given: --model {args.model} without --pretrained is a randomly initialised "
                         "model, whose results mean nothing; pass --pretrained TAG|CHECKPOINT|RUN_DIRECTORY, or "
                         "--random-init to run on random weights on purpose")


def load_model_from_args(args: argparse.Namespace) -> LoadedModel:
    """cliplab.load_model with the model options; says so first when the weights are random (on
    stdout, above the results: stderr keeps its one line per error)."""
    from ..models import load_model

    loaded = load_model(args.model, args.pretrained, args.device)
    if loaded.random_init:
        print(f"warning: RANDOM WEIGHTS: {loaded.identity} is an untrained, randomly initialised model "
              "(--random-init); its results say nothing about any trained model", flush=True)
    return loaded


def add_image_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--images and how they are read and embedded (the embedding cache included); a command
    that needs --images only in some modes passes ``required=False`` and checks it itself."""
    g = p.add_argument_group("images")
    g.add_argument("--images", required=required, help="a folder of images (recursive) or a CSV/TSV/Parquet "
                   "manifest" + ("" if required else " (required unless --plan)"))
    g.add_argument("--image-column", help="manifest column with image paths (default: image, filepath, path, ...)")
    g.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    g.add_argument("--workers", type=int, help="image decoding processes (default: up to 2)")
    g.add_argument("--max-pixels", type=int, help="refuse larger images as decompression bombs (default 64M)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("embedding cache")
    g.add_argument("--cache-dir", default=None, help="embedding cache folder (default: $CLIPLAB_CACHE or "
                   "~/.cache/cliplab)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    g.add_argument("--verify-cache", action="store_true", help="key the cache by file content (hashes every file), "
                   "not path+size+mtime: for files rewritten with the same size and mtime (copies that keep mtimes)")


def add_where_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--where", action="append", default=[], metavar=WHERE_METAVAR,
                   help="only the rows whose COLUMN holds one of the VALUEs, e.g. split=test (repeatable)")


def add_out_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str, required: bool = True) -> None:
    p.add_argument("--out", required=required, help=f"output folder: {what}" + ("" if required else
                                                                                 " (required unless --plan)"))


def check_exists(path: str, option: str) -> None:
    """A path that is not there, said before pandas and PIL are even imported (a second saved)."""
    if not Path(path).expanduser().exists():
        from ..errors import InputError

        raise InputError(f"{option} {path}: no such file or folder")


def read_selected_images(args: argparse.Namespace) -> ImageSet:
    """--images, --image-column and --where, checked (a --where typo names the column's values)."""
    check_exists(args.images, "--images")
    from ..data import check_where, parse_where, read_images, select
    from ..evalsets import eval_layout, read_eval_set

    # an ImageFolder tree or CLIP_benchmark webdataset shards carry their own class list
    images = read_eval_set(args.images) if eval_layout(args.images) else read_images(args.images, args.image_column)
    where = parse_where(args.where)
    check_where(images.records, where, images.source)
    return select(images, where)


def embed_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of cliplab.embed_images that the image options set."""
    from ..embed import DEFAULT_CACHE_DIR

    kw: dict[str, Any] = dict(batch_size=args.batch_size, workers=args.workers, progress=not args.quiet,
                              cache_dir=None if args.no_cache else (args.cache_dir or DEFAULT_CACHE_DIR),
                              verify_cache=args.verify_cache)
    if args.max_pixels is not None:
        kw["max_pixels"] = args.max_pixels
    return kw


def report_input_notes(n_duplicates: int, truncated: Sequence[str] = (), notes: Sequence[str] = ()) -> None:
    """Odd but accepted input, on stderr: the library's notes, duplicate manifest rows, prompts cut
    to the context."""
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
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
