"""``cliplab models``: the architectures cliplab can build and the pretrained tags open_clip knows."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model architectures and pretrained tags")
    p.add_argument("--all", action="store_true", help="also list every open_clip pretrained tag")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    import open_clip

    from ..models import tiny_model_names

    print("cliplab's tiny architectures:", ", ".join(tiny_model_names()))
    if args.all:
        for name, tag in open_clip.list_pretrained():
            print(f"{name}\t{tag}")
    else:
        print(f"{len(open_clip.list_models())} open_clip architectures; --all lists the pretrained tags")
    return 0
