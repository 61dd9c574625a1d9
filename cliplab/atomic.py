"""Atomic output files: written to a temp file beside the target, fsynced, then renamed.

A reader (or a run killed mid-write) sees either the previous complete file or the new one.
Failures to write (read-only folder, full disk) become a one-line OutputError. Files that
belong together (embeddings.npy + records.csv + embed.json) are written as a set: see
`output_set`. Temp files are named ``.NAME.HOST-PID.RANDOM.tmp`` so that the next run can
remove those a dead writer left behind (`clean_stale_temps`) without touching a live one's.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[^.]+\.tmp$")
STALE_TEMP_SECONDS = 24 * 3600  # a temp file of another host (or unnamed writer) untouched this long is dead


def prepare_out_dir(path: str | Path) -> Path:
    """Create the output folder, check that it can be written to, and remove dead writers' temp files."""
    out = Path(path).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-", delete=True):
            pass
    except OSError as e:
        raise OutputError(f"cannot write to output folder {out}: {describe_os_error(e, out)}") from None
    clean_stale_temps(out, depth=1)
    return out


def clean_stale_temps(folder: str | Path, depth: int = 0) -> list[Path]:
    """Remove temp files (``.NAME.HOST-PID.X.tmp``) whose writer is dead: a process of this host
    that no longer runs, or, for another host's, untouched for a day. A live writer's stay.
    ``depth`` 1 also cleans the folder's subfolders (a run's final/ and checkpoints/)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if depth > 0 and entry.is_dir(follow_symlinks=False):
            removed += clean_stale_temps(entry.path, depth - 1)
        elif entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False) and _writer_is_dead(entry):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass  # gone already (another cleaner), or not ours to remove
    return removed


def _writer_is_dead(entry: os.DirEntry) -> bool:
    m = _TEMP.match(entry.name)
    if m is None:
        return False  # not an atomic_path temp file
    if m["host"] == _HOST:
        pid = int(m["pid"])
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS
    except OSError:
        return False


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on failure it is removed."""
    with staged_path(path) as (tmp, commit):
        yield tmp
        commit()


@contextmanager
def staged_path(path: str | Path) -> Iterator[tuple[Path, Any]]:
    """A temp path and a ``commit()`` that fsyncs it and renames it onto ``path``; not committed
    (an exception, or commit never called): removed."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{_HOST}-{os.getpid()}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {target}: {describe_os_error(e, target.parent)}") from None
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would make results private to their writer
    os.close(fd)
    tmp_path = Path(tmp)

    def commit() -> None:
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)

    try:
        yield tmp_path, commit
    except OutputError:
        tmp_path.unlink(missing_ok=True)
        raise
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {describe_os_error(e, target.parent)}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    tmp_path.unlink(missing_ok=True)  # not committed


class OutputSet:
    """Files of one output folder that belong together (see `output_set`)."""

    def __init__(self, folder: Path, stack: ExitStack):
        self.folder, self._stack = folder, stack
        self._staged: list[tuple[Path, Path, Any]] = []

    def path(self, name: str) -> Path:
        """A temp path to write ``name`` to; it takes its place only when the whole set is written."""
        tmp, commit = self._stack.enter_context(staged_path(self.folder / name))
        self._staged.append((self.folder / name, tmp, commit))
        return tmp

    def text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def table(self, name: str, table: pd.DataFrame) -> None:
        _to_file(self.path(name), name, table)


@contextmanager
def output_set(folder: str | Path, manifest: str, data: dict[str, Any]) -> Iterator[OutputSet]:
    """Write several files of ``folder`` as one set, with the JSON ``manifest`` written last.

    Every file is first written whole as a temp file (a full disk or a crash here leaves the old
    set untouched); then the old manifest is removed, the files are renamed into place and the
    new manifest, listing each file's size under ``"files"``, is renamed in last. A reader that
    calls `check_output_set` sees a complete set or an error, never old and new files mixed.
    """
    out = Path(folder)
    with ExitStack() as stack:
        files = OutputSet(out, stack)
        try:
            yield files
        except OutputError:
            raise
        except OSError as e:
            raise OutputError(f"cannot write the outputs in {out}: {describe_os_error(e, out)}") from None
        sizes = {target.name: tmp.stat().st_size for target, tmp, _ in files._staged}
        text = json.dumps({**data, "files": sizes}, indent=2, ensure_ascii=False, default=_jsonable) + "\n"
        mtmp, mcommit = stack.enter_context(staged_path(out / manifest))
        mtmp.write_text(text, encoding="utf-8")
        with open(mtmp, "rb+") as f:
            os.fsync(f.fileno())
        blocked = [t.name for t in [*(t for t, _, _ in files._staged), out / manifest] if t.is_dir()]
        if blocked:  # found before anything of the old set is touched
            raise OutputError(f"cannot write {out / blocked[0]}: a folder of that name is in the way")
        try:
            (out / manifest).unlink(missing_ok=True)
            for _, _, commit in files._staged:
                commit()
            mcommit()
        except OSError as e:
            raise OutputError(f"cannot write {out}: {describe_os_error(e, out)}") from None
        fsync_dir(out)


def check_output_set(folder: str | Path, manifest: str) -> dict[str, Any]:
    """The manifest of a set written by `output_set`, after checking that every file it lists is there
    with its size; an InputError says which is not (an interrupted or mixed write)."""
    from .errors import InputError

    out = Path(folder)
    try:
        data = json.loads((out / manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{out}: no complete output set ({manifest} unreadable: {e}); run the command again") from None
    for name, size in data.get("files", {}).items():
        try:
            actual = (out / name).stat().st_size
        except OSError:
            actual = -1
        if actual != size:
            raise InputError(f"{out}: {name} does not belong to {manifest} (an interrupted write?); "
                             "run the command again")
    return data


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort: some file systems refuse a folder fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    """CSV (formula-like text cells neutralised, see `neutralise_formulas`) or, for .parquet, Parquet as is."""
    with atomic_path(path) as tmp:
        _to_file(tmp, str(path), table)
    return Path(path)


def _to_file(tmp: Path, name: str, table: pd.DataFrame) -> None:
    if name.endswith(".parquet"):
        table.to_parquet(tmp, index=False)
    else:
        neutralise_formulas(table).to_csv(tmp, index=False)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutral(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value  # "-0.5", "+3": a number written as text, not a formula
    except ValueError:
        return "'" + value


def neutralise_formulas(table: pd.DataFrame) -> pd.DataFrame:
    """Text cells (and column names) that a spreadsheet would run as a formula (``=``, ``+``, ``-``,
    ``@``, tab, CR first; OWASP's CSV-injection rule) get a leading ``'``. Numbers, including
    negative ones, and numbers stored as text are left alone. Returns a copy when anything changed."""
    text = [c for c in table.columns if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])]
    columns = [_neutral(c) for c in table.columns]
    changed = {c: table[c].map(_neutral) for c in text}
    changed = {c: v for c, v in changed.items() if not v.equals(table[c])}
    if not changed and columns == list(table.columns):
        return table
    out = table.copy()
    for c, v in changed.items():
        out[c] = v
    out.columns = columns
    return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
