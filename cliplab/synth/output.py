"""The output folder of ``cliplab synth``: it writes only into folders it owns, and deletes only its own files.

A folder is owned when it is new, empty, or holds the marker file ``.cliplab-synth.json`` that lists
the files an earlier run wrote. A re-run replaces those files and removes the ones it no longer
writes (a smaller ``--n``); anything else in the folder (a user's own image, notes) is left alone.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ..atomic import describe_os_error, write_json
from ..errors import OutputError

MARKER = ".cliplab-synth.json"


def claim_folder(out: Path, planned: Iterable[str]) -> set[str]:
    """Create ``out`` (or check it is ours) and return the files an earlier run wrote there.

    The marker is written before any data file, listing the earlier and the planned files, so a run
    killed midway still leaves a folder that a later run recognises and cleans up.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        entries = [p.name for p in out.iterdir()]
    except OSError as e:
        raise OutputError(f"cannot write to output folder {out}: {describe_os_error(e, out)}") from None
    previous: set[str] = set()
    if MARKER in entries:
        previous = _owned(out / MARKER)
    elif entries:
        raise OutputError(f"{out} is not empty and was not written by cliplab synth (no {MARKER}); "
                          "choose a new or empty folder")
    write_json(out / MARKER, {"written_by": "cliplab synth", "complete": False,
                              "files": sorted(previous | set(planned))})
    return previous


def release_folder(out: Path, written: list[str], previous: set[str]) -> None:
    """Remove files of an earlier run that this run did not write; record what this run owns."""
    keep = set(written)
    for rel in sorted(previous - keep):
        path = out / rel
        if path.is_file() and not path.is_symlink():
            path.unlink()
    write_json(out / MARKER, {"written_by": "cliplab synth", "complete": True, "files": sorted(keep)})


def _owned(marker: Path) -> set[str]:
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
        files = doc["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise OutputError(f"{marker}: unreadable marker file; remove it or choose a new folder") from None
    root = marker.parent.resolve()
    # only relative paths inside the folder: a hand-edited marker cannot make synth delete elsewhere
    return {str(f) for f in files if isinstance(f, str) and (root / f).resolve().is_relative_to(root)}
