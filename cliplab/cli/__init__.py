"""The ``cliplab`` command: parses arguments and calls the library, nothing more.

One module per command family (models, synth, inference, train, audit), the options they share
in common.py. Expected failures print one line and exit with a documented code (cliplab.errors);
a misspelt command, option or choice is named, with the closest valid one.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import errors
from ..configfile import did_you_mean
from ..errors import CliplabError
from . import audit, inference, models, robustness, synth, train


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name the misspelt command, option or choice."""

    def error(self, message: str) -> NoReturn:
        self.exit(errors.EXIT_USAGE, f"cliplab: error: {message}; see `{self.prog} --help`\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            raise argparse.ArgumentError(action, f"invalid choice {value!r}{did_you_mean(value, choices)}; "
                                                 f"choose from {', '.join(choices)}")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]  # same as argparse's
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        tokens = list(sys.argv[1:] if args is None else args)
        self._check_options(tokens)
        return super().parse_known_args(tokens, namespace)

    def _check_options(self, tokens: list[str]) -> None:
        """An unknown ``--option`` is an error here, before argparse reports missing required ones
        instead; a parser with subcommands checks only the tokens before the subcommand."""
        known = list(self._option_string_actions)
        for token in tokens:
            if token == "--" or (self._subparsers is not None and not token.startswith("-")):
                return
            name = token.split("=", 1)[0]
            if name.startswith("--") and not any(k.startswith(name) for k in known):
                self.error(f"unrecognized option {name}{did_you_mean(name, known)}")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (building it imports neither torch nor open_clip)."""
    from .. import __version__

    parser = Parser(prog="cliplab", description="Train, probe and audit CLIP models.")
    parser.add_argument("--version", action="version", version=f"cliplab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
    for family in (models, synth, inference, train, audit, robustness):
        family.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``cliplab ARGV``; returns the exit code (see README, "Errors and exit codes")."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliplabError as e:
        print(f"cliplab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cliplab: interrupted", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`cliplab models --all | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return errors.EXIT_OK


def run() -> NoReturn:
    """The ``cliplab`` command (console script and ``python -m cliplab.cli``): main() in a process of its own.

    torch, open_clip and transformers leave ~450,000 long-lived objects, nearly none of them garbage,
    which every full collection of the cyclic garbage collector walks: seven full collections during the
    imports (0.6 s) and the interpreter's final ones at exit (0.8 s), on every command (BENCHMARKS.md).
    So full collections run ten times less often (younger generations are collected as usual), and at
    exit, with everything written and closed, the survivors are frozen out of the final walk.
    """
    gc.set_threshold(700, 10, 100)  # CPython's defaults are (700, 10, 10)
    code = main()
    gc.freeze()
    sys.exit(code)
