"""Image sets: a folder or a CSV/Parquet manifest, read into paths plus metadata.

Every image that cannot be used (missing, empty, truncated, undecodable, too large) becomes a
`Skip` with its path and reason: counted and reported by the caller, never dropped silently.
"""
from __future__ import annotations

import contextlib
import os
import stat
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

Image.init()
# Raster formats PIL decodes itself (intersected with the plugins this PIL has); a folder is listed by these.
IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff",
    ".ppm", ".pgm", ".pbm", ".pnm", ".pfm", ".ico", ".icns", ".tga", ".pcx", ".qoi", ".sgi", ".jp2", ".j2k",
    ".jpx", ".avif", ".psd", ".dds", ".ras", ".xbm", ".xpm",
} & {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
# Image formats this PIL cannot read: listed in a folder as skips (counted), not passed over in silence.
UNREADABLE_IMAGE_EXTENSIONS = {".heic", ".heif", ".svg", ".svgz", ".jxl", ".eps", ".ps", ".cr2", ".cr3",
                               ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf", ".emf", ".wmf"} - IMAGE_EXTENSIONS
IMAGE_COLUMNS = ("image", "image_path", "filepath", "path", "file", "filename")
DEFAULT_MAX_PIXELS = 64_000_000  # about 8000 x 8000; larger images are refused as decompression bombs
# How images are decoded, beyond the model's preprocess: part of the embedding cache's key, so a
# change here (v2: EXIF orientation applied) is never served embeddings decoded the old way.
DECODE_VERSION = "rgb-exif-transpose-v2"
SPREADSHEET_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".ods", ".numbers"}


@dataclass(frozen=True)
class Skip:
    """An image that cannot be used and why (counted and reported, never dropped silently)."""

    path: str
    reason: str


@dataclass
class ImageSet:
    """Images as a table: column ``path`` (absolute) plus the manifest's metadata columns."""

    records: pd.DataFrame
    source: str
    skipped: list[Skip] = field(default_factory=list)
    n_duplicates: int = 0  # manifest rows naming an image an earlier row names too (kept, reported)
    notes: list[str] = field(default_factory=list)  # odd but usable input, for the caller to report

    @property
    def paths(self) -> list[str]:
        return self.records["path"].tolist()

    def __len__(self) -> int:
        return len(self.records)

    def where(self, conditions: Mapping[str, str | Sequence[str]] | None = None, /,
              **columns: str | Sequence[str]) -> ImageSet:
        """The rows whose metadata matches: ``images.where(split="test", tone=["dark", "light"])``.

        Values are compared as text; an unknown column or an empty selection is an InputError.
        """
        merged = {**(conditions or {}), **columns}
        return select(self, {c: (v,) if isinstance(v, str) else tuple(map(str, v)) for c, v in merged.items()})


class ImageError(Exception):
    """Why one image cannot be used (becomes a Skip)."""


def read_images(source: str | Path | Sequence[str | Path], image_column: str | None = None) -> ImageSet:
    """Read a folder of images (recursively), a CSV/TSV/Parquet manifest, or a list of image paths."""
    if not isinstance(source, (str, Path)):
        return from_paths(source)
    path = Path(source).expanduser()
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        return read_manifest(path, image_column)
    raise InputError(f"{source}: no such file or folder")


def from_paths(paths: Sequence[str | Path]) -> ImageSet:
    """An image set of the given files (relative paths are relative to the current folder)."""
    files = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
    if not files:
        raise InputError("no image paths given")
    records = pd.DataFrame({"path": files, "image": [os.fspath(p) for p in paths]})
    images = _drop_unreadable(records, f"a list of {len(files)} paths")
    images.n_duplicates = _n_duplicates(images.records["path"])
    return images


def read_folder(folder: Path) -> ImageSet:
    """Every image under ``folder``; each real folder is walked once (symlink cycles and aliases)."""
    base = os.path.abspath(folder)
    files, unreadable, others = _list_folder(base)
    if not files:
        also = f"; {len(unreadable)} in formats PIL cannot read, e.g. {unreadable[0]}" if unreadable else ""
        raise InputError(f"{folder}: no image files found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}){also}")
    records = pd.DataFrame({"path": files, "image": [f[len(base) + 1:] for f in files]})
    images = _drop_unreadable(records, str(folder))
    images.skipped += [Skip(f, f"image format PIL cannot read ({os.path.splitext(f)[1].lower()}); convert it "
                               "to PNG or JPEG") for f in unreadable]
    if others:
        kinds = pd.Series([os.path.splitext(f)[1].lower() or "(no extension)" for f in others]).value_counts()
        shown = ", ".join(f"{n} {ext}" for ext, n in kinds.head(5).items())
        images.notes.append(f"{len(others)} file(s) in {folder} are not images and were not read ({shown})")
    return images


def _list_folder(base: str) -> tuple[list[str], list[str], list[str]]:
    """(image files, image files PIL cannot read, other files), sorted; plain strings, not pathlib:
    listing 100,000 files should take milliseconds, not seconds."""
    images: list[str] = []
    unreadable: list[str] = []
    others: list[str] = []
    seen: set[tuple[int, int]] = set()
    for root, dirs, names in os.walk(base, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # a symlink back up (a cycle) or a second link to a folder
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort(key=lambda d: (os.path.islink(os.path.join(root, d)), d))  # a folder by its own name first
        for name in names:
            ext = os.path.splitext(name)[1].lower()
            bucket = images if ext in IMAGE_EXTENSIONS else unreadable if ext in UNREADABLE_IMAGE_EXTENSIONS else others
            bucket.append(os.path.join(root, name))
    return sorted(images), sorted(unreadable), sorted(others)


def read_table(path: Path) -> pd.DataFrame:
    """A CSV/TSV/Parquet table with clear errors for the usual ways it goes wrong.

    Text cells are read as text: only an empty cell is missing (``NA``, ``None``, ``null`` are
    values, e.g. labels); a column name given twice is an error, not pandas' silent ``label.1``.
    """
    suffix = path.suffix.lower()
    if suffix in SPREADSHEET_SUFFIXES or _is_spreadsheet(path):
        raise InputError(f"{path}: a spreadsheet (Excel/OpenDocument), not a CSV; save it as CSV (UTF-8) or Parquet")
    try:
        if suffix in (".parquet", ".pq"):
            table = pd.read_parquet(path)
            header = [str(c) for c in table.columns]
        else:
            kw = dict(sep="\t" if suffix == ".tsv" else ",", encoding="utf-8-sig", dtype=str)
            header = [str(c) for c in pd.read_csv(path, header=None, nrows=1, keep_default_na=False, **kw).iloc[0]]
            table = pd.read_csv(path, keep_default_na=False, na_values=[""], **kw)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the manifest is empty") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save the manifest as UTF-8") from None
    except pd.errors.ParserError as e:
        raise InputError(f"{path}: cannot parse as {suffix or 'csv'}: {str(e).strip().splitlines()[-1]}") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read manifest: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    twice = [c for i, c in enumerate(header) if c in header[:i]]
    if twice:
        where = ", ".join(str(i + 1) for i, c in enumerate(header) if c == twice[0])
        raise InputError(f"{path}: column {twice[0]!r} appears more than once (columns {where}); "
                         "give each column its own name")
    return table


def _is_spreadsheet(path: Path) -> bool:
    """xlsx/ods (zip) or xls (OLE2) bytes, whatever the file is called."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") or (head.startswith(b"PK\x03\x04")
                                                                   and path.suffix.lower() not in (".parquet", ".pq"))


def missing_counts(table: pd.DataFrame) -> dict[str, int]:
    """Empty cells per column (columns that have some)."""
    counts = table.isna().sum()
    return {str(c): int(n) for c, n in counts.items() if n}


def read_manifest(path: Path, image_column: str | None = None) -> ImageSet:
    """Read a manifest; relative image paths are relative to the manifest's folder.

    cliplab adds the resolved image path as column ``path``; a manifest whose own ``path`` column
    is not its image column is refused (naming it) rather than renamed behind the user's back.
    """
    table = read_table(path)
    if image_column is None:
        image_column = next((c for c in IMAGE_COLUMNS if c in table.columns), None)
        if image_column is None:
            raise InputError(f"{path}: no image column (looked for {', '.join(IMAGE_COLUMNS)}; "
                             f"columns are {', '.join(map(str, table.columns))}); pass --image-column")
    elif image_column not in table.columns:
        raise InputError(f"{path}: no column {image_column!r}; columns are {', '.join(map(str, table.columns))}")
    if table.empty:
        raise InputError(f"{path}: the manifest has a header but no rows")
    if "path" in table.columns and image_column != "path":
        raise InputError(f"{path}: column 'path' clashes with the column cliplab adds (each image's resolved path) "
                         f"while the images are read from {image_column!r}; rename 'path', or pass "
                         "--image-column path if it holds the images")
    names = table[image_column]
    blank = names.isna() | (names.astype(str).str.strip() == "")
    skipped = [Skip(f"{path}:row {i + 2}", "empty image path") for i in np.flatnonzero(blank.to_numpy())]
    table = table[~blank].reset_index(drop=True)
    base = path.parent.absolute()
    names = table[image_column].astype(str)
    by_name = {n: str(p if p.is_absolute() else base / p) for n, p in zip(names.unique(), map(Path, names.unique()))}
    resolved = names.map(by_name).tolist()  # once per distinct name: 200,000 rows may name 10 files
    if image_column == "path":
        table["path"] = resolved  # the image column itself: its relative entries become absolute
        table = table[["path", *[c for c in table.columns if c != "path"]]]
    else:
        table.insert(0, "path", resolved)
    images = _drop_unreadable(table, str(path))
    images.skipped[:0] = skipped
    images.n_duplicates = _n_duplicates(images.records["path"])
    missing = {c: n for c, n in missing_counts(table).items() if c not in ("path", image_column)}
    if missing:
        shown = ", ".join(f"{c}: {n}" for c, n in list(missing.items())[:6])
        images.notes.append(f"empty cells (missing values) in {path.name}: {shown}")
    return images


def _n_duplicates(paths: pd.Series) -> int:
    """Rows naming a file an earlier row names, however spelled (``a/./x.png``, ``b/../a/x.png``)."""
    return int(paths.map(os.path.normpath).duplicated().sum())


def _drop_unreadable(records: pd.DataFrame, source: str) -> ImageSet:
    """Skip rows whose file is missing or empty now, before any decoding."""
    problems = {p: _file_problem(p) for p in records["path"].unique()}  # once per distinct file
    reasons = [problems[p] for p in records["path"]]
    bad = np.array([r is not None for r in reasons], dtype=bool)
    skipped = [Skip(p, r) for p, r in zip(records["path"], reasons) if r is not None]
    kept = records[~bad].reset_index(drop=True)
    if kept.empty:
        first = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        raise InputError(f"{source}: none of the {len(records)} images can be read ({first})")
    return ImageSet(kept, source, skipped)


def _file_problem(path: str) -> str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken symlink" if os.path.islink(path) else "missing file"
    except OSError as e:
        return f"cannot stat: {e.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        kind = ("FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
                else "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "special file")
        return f"not a regular file ({kind})"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def load_image(path: str | Path | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image (a file, or a binary file object such as a webdataset
    sample's bytes) as RGB, upright, or raise ImageError saying why not.

    Transparency is composited on white; 16-bit and float images are scaled to 8 bits
    (PIL's own convert('RGB') would clip them); animated images give their first frame.
    """
    if isinstance(path, (str, Path)):
        problem = _file_problem(os.fspath(path))  # also: deleted since listing; a FIFO would block open()
        if problem:
            raise ImageError(problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(f"{w}x{h} pixels exceeds the limit of {max_pixels} (decompression bomb?)")
                im.seek(0)
                im.load()
                return to_rgb(_upright(im))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"refused as a decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except FileNotFoundError:
        raise ImageError("missing file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        text = str(e) or type(e).__name__
        raise ImageError("truncated image" if "truncated" in text else f"cannot decode: {text}") from None


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag (a phone's sideways JPEG), as image viewers do."""
    # an unparseable EXIF block: the pixels as stored, as viewers that cannot read it show them
    with contextlib.suppress(SyntaxError, ValueError, OSError, KeyError, TypeError):
        ImageOps.exif_transpose(im, in_place=True)
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(a.max()), 1.0)
        return Image.fromarray(np.clip(a / hi * 255.0, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def parse_where(items: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``["split=test", "tone=dark,light"]`` -> ``{"split": ("test",), "tone": ("dark", "light")}``."""
    where: dict[str, tuple[str, ...]] = {}
    for item in items:
        column, sep, values = item.partition("=")
        if not sep or not column.strip() or not values.strip():
            raise InputError(f"--where takes COLUMN=VALUE[,VALUE], got {item!r}")
        where[column.strip()] = tuple(v.strip() for v in values.split(","))
    return where


def where_mask(records: pd.DataFrame, where: Mapping[str, Sequence[str]]) -> pd.Series:
    """Rows whose every ``where`` column holds one of its allowed values (compared as text)."""
    mask = pd.Series(True, index=records.index)
    for column, allowed in where.items():
        mask &= records[column].astype("string").isin(list(allowed)).fillna(False).astype(bool)
    return mask


def select(images: ImageSet, where: Mapping[str, Sequence[str]]) -> ImageSet:
    """The images whose metadata matches ``where``; an unknown column or an empty result is an error."""
    if not where:
        return images
    missing = [c for c in where if c not in images.records.columns]
    if missing:
        cols = ", ".join(c for c in images.records.columns if c != "path")
        raise InputError(f"--where column {missing[0]!r} is not in {images.source} (columns: {cols})")
    kept = images.records[where_mask(images.records, where)].reset_index(drop=True)
    if kept.empty:
        raise InputError(f"--where {dict(where)} selects none of the {len(images)} images in {images.source}")
    return ImageSet(kept, images.source, images.skipped, _n_duplicates(kept["path"]), list(images.notes))


def check_where(records: pd.DataFrame, where: Mapping[str, Sequence[str]], source: str) -> None:
    """Raise InputError for a ``where`` column that ``records`` lacks or a value no row holds,
    naming the column's values and the closest one: a typo is an error, not a smaller selection."""
    from .configfile import did_you_mean

    for column, allowed in where.items():
        if column not in records.columns:
            cols = [str(c) for c in records.columns if c != "path"]
            raise InputError(f"where column {column!r} is not in {source}{did_you_mean(column, cols)}; "
                             f"columns: {', '.join(cols)}")
        present = sorted(set(records[column].dropna().astype("string")))
        for value in allowed:
            if value not in present:
                shown = ", ".join(present[:20]) + (f" ... ({len(present)} values)" if len(present) > 20 else "")
                raise InputError(f"where {column}={value}: no image in {source} has {column} {value!r}"
                                 f"{did_you_mean(value, present)}; values: {shown or '(none)'}")
