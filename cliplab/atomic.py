"""Atomic output files: written to a temp file beside the target, fsynced, then renamed.

A reader (or a run killed mid-write) sees either the previous complete file or the new one.
Failures to write (read-only folder, full disk) become a one-line OutputError.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


def prepare_out_dir(path: str | Path) -> Path:
    """Create the output folder and check that it can be written to."""
    out = Path(path).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as e:
        raise OutputError(f"cannot write to output folder {out}: {describe_os_error(e, out)}") from None
    return out


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on failure it is removed."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would make results private to their writer
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {describe_os_error(e, target.parent)}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def describe_os_error(e: OSError, folder: Path) -> str:
    """errno's text; for writers that raise without one (numpy), say whether the disk is full."""
    if e.strerror:
        return e.strerror
    try:
        full = shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        full = False
    return f"No space left on device ({e})" if full else str(e)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def write_table(path: str | Path, table: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        if str(path).endswith(".parquet"):
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
    return Path(path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
