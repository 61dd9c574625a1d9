"""``cliplab models``: the architectures cliplab can build and the pretrained tags open_clip knows.

Read from open_clip's registry files by cliplab.registry, so this never imports torch.
"""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model architectures and pretrained tags")
    p.add_argument("--all", action="store_true", help="list every (architecture, pretrained tag) pair, one per line")
    p.add_argument("--json", action="store_true", help="everything as one JSON document: tiny, architectures, "
                   "pretrained (architecture -> tags)")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from ..registry import architectures, pretrained_tags, tiny_model_names

    tags = pretrained_tags()
    if args.json:
        print(json.dumps({"tiny": tiny_model_names(), "architectures": architectures(), "pretrained": tags}, indent=2))
    elif args.all:
        for name, names in tags.items():
            for tag in names:
                print(f"{name}\t{tag}")
    else:
        print("cliplab's tiny architectures:", ", ".join(tiny_model_names()))
        print(f"{len(architectures())} architectures, {sum(map(len, tags.values()))} pretrained weights "
              f"for {len(tags)} of them; --all lists the pretrained tags, --json both")
    return 0
