"""``cliplab synth``: the synthetic figures data set with a known truth."""
from __future__ import annotations

import argparse

from .. import errors


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate the synthetic figures data set (with an optional planted bias)")
    p.add_argument("--out", required=True, help="a new or empty folder, or one an earlier synth wrote")
    p.add_argument("--world", choices=["scenes", "legacy"], default="scenes",
                   help="scenes: 16 shapes on cluttered scenes, many captions (default); legacy: the first world")
    p.add_argument("--n", type=int, default=3000, help="number of images (train + test; default 3000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--bias", type=float, default=0.0, help="fraction of the bias group's train captions made harmful")
    p.add_argument("--size", type=int, default=None, help="image size in pixels (default: scenes 48, legacy 32)")
    p.add_argument("--spurious", type=float, default=0.5,
                   help="scenes: share of train images drawn on their class's scene (test: independent)")
    p.add_argument("--styles", default=None, metavar="A,B",
                   help="scenes: shifted renderings of the test split (default: all of sketch,cartoon,noise,blur,"
                        "silhouette; '' for none)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from ..synth import STYLES, SynthConfig, synthesize

    styles = tuple(s.strip() for s in args.styles.split(",") if s.strip()) if args.styles is not None else STYLES
    cfg = SynthConfig(world=args.world, n=args.n, seed=args.seed, bias=args.bias, size=args.size,
                      spurious=args.spurious, styles=styles)
    try:
        path = synthesize(args.out, cfg, progress=not args.quiet)
    except ValueError as e:
        raise errors.InputError(str(e)) from None
    print(f"wrote {path}")
    return 0
