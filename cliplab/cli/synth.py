"""``cliplab synth``: the synthetic figures data set with a known truth."""
from __future__ import annotations

import argparse

from .. import errors


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate the synthetic figures data set (with an optional planted bias)")
    p.add_argument("--out", required=True, help="output folder: images/ and metadata.csv")
    p.add_argument("--n", type=int, default=3000, help="number of images (train + test; default 3000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--bias", type=float, default=0.0, help="fraction of the bias group's train captions made harmful")
    p.add_argument("--size", type=int, default=32, help="image size in pixels (default 32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from ..synth import SynthConfig, synthesize

    cfg = SynthConfig(n=args.n, seed=args.seed, bias=args.bias, size=args.size)
    try:
        path = synthesize(args.out, cfg, progress=not args.quiet)
    except ValueError as e:
        raise errors.InputError(str(e)) from None
    print(f"wrote {path}")
    return 0
