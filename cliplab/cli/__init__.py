"""The ``cliplab`` command: parses arguments and calls the library, nothing more.

One module per command family (models, synth, inference, train, audit), the options they share
in common.py. Expected failures print one line and exit with a documented code (cliplab.errors).
"""
from __future__ import annotations

import argparse
import sys

from .. import errors
from ..errors import CliplabError
from . import audit, inference, models, synth, train


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (building it imports neither torch nor open_clip)."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="cliplab", description="Train, probe and audit CLIP models.")
    parser.add_argument("--version", action="version", version=f"cliplab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for family in (models, synth, inference, train, audit):
        family.register(sub)
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
