"""Errors a user can cause, each with a documented process exit code.

The CLI turns a `CliplabError` into one line on stderr and its `exit_code`;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

# Exit codes (README: "Errors and exit codes").
EXIT_OK = 0
EXIT_INTERNAL = 1   # a bug: unexpected exception, traceback printed
EXIT_USAGE = 2      # bad command-line usage (argparse's own code)
EXIT_INPUT = 3      # bad input data: manifest, images, label set, config
EXIT_MODEL = 4      # model or weights cannot be loaded
EXIT_OUTPUT = 5     # output cannot be written (read-only folder, disk full)
EXIT_DISPARITY = 6  # audit --fail-on-disparity: a disparity crossed the threshold
EXIT_INTERRUPTED = 130


class CliplabError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code = EXIT_INPUT


class InputError(CliplabError, ValueError):
    """Bad input data: a manifest, image set, label set, config or option value."""

    exit_code = EXIT_INPUT


class ModelError(CliplabError):
    """A model or weights that cannot be found, fetched or loaded."""

    exit_code = EXIT_MODEL


class OutputError(CliplabError, OSError):
    """An output that cannot be written (read-only folder, disk full, a file in the way)."""

    exit_code = EXIT_OUTPUT
