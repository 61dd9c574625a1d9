"""Image sets: a folder or a CSV/Parquet manifest, read into paths plus metadata.

Every image that cannot be used (missing, empty, truncated, undecodable, too large) becomes a
`Skip` with its path and reason: counted and reported by the caller, never dropped silently.
"""
from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .errors import InputError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
IMAGE_COLUMNS = ("image", "image_path", "filepath", "path", "file", "filename")
DEFAULT_MAX_PIXELS = 64_000_000  # about 8000 x 8000; larger images are refused as decompression bombs


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

    @property
    def paths(self) -> list[str]:
        return self.records["path"].tolist()

    def __len__(self) -> int:
        return len(self.records)


class ImageError(Exception):
    """Why one image cannot be used (becomes a Skip)."""


def read_images(source: str | Path, image_column: str | None = None) -> ImageSet:
    """Read a folder of images (recursively) or a CSV/TSV/Parquet manifest."""
    path = Path(source).expanduser()
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        return read_manifest(path, image_column)
    raise InputError(f"{source}: no such file or folder")


def read_folder(folder: Path) -> ImageSet:
    base = os.path.abspath(folder)
    # plain strings, not pathlib: listing 100,000 files should take milliseconds, not seconds
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(base, followlinks=True) for name in names
                   if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"{folder}: no image files found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    records = pd.DataFrame({"path": files, "image": [f[len(base) + 1:] for f in files]})
    return _drop_unreadable(records, str(folder))


def read_table(path: Path) -> pd.DataFrame:
    """A CSV/TSV/Parquet table with clear errors for the usual ways it goes wrong."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", encoding="utf-8-sig",
                           keep_default_na=True, dtype=str)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the manifest is empty") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save the manifest as UTF-8") from None
    except pd.errors.ParserError as e:
        raise InputError(f"{path}: cannot parse as {suffix or 'csv'}: {str(e).strip().splitlines()[-1]}") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read manifest: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def read_manifest(path: Path, image_column: str | None = None) -> ImageSet:
    """Read a manifest; relative image paths are relative to the manifest's folder."""
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
        table = table.rename(columns={"path": "path_"})
    names = table[image_column]
    blank = names.isna() | (names.astype(str).str.strip() == "")
    skipped = [Skip(f"{path}:row {i + 2}", "empty image path") for i in np.flatnonzero(blank.to_numpy())]
    table = table[~blank].reset_index(drop=True)
    base = path.parent.absolute()
    table.insert(0, "path", [str(p if p.is_absolute() else base / p)
                             for p in map(Path, table[image_column].astype(str))])
    images = _drop_unreadable(table, str(path))
    images.skipped[:0] = skipped
    images.n_duplicates = int(images.records["path"].duplicated().sum())
    return images


def _drop_unreadable(records: pd.DataFrame, source: str) -> ImageSet:
    """Skip rows whose file is missing or empty now, before any decoding."""
    reasons = [_file_problem(p) for p in records["path"]]
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
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image as RGB, or raise ImageError saying why not.

    Transparency is composited on white; 16-bit and float images are scaled to 8 bits
    (PIL's own convert('RGB') would clip them); animated images give their first frame.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(f"{w}x{h} pixels exceeds the limit of {max_pixels} (decompression bomb?)")
                im.seek(0)
                im.load()
                return to_rgb(im)
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
    return ImageSet(kept, images.source, images.skipped, int(kept["path"].duplicated().sum()))


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
