"""Attribute metadata as users have it on disk, joined to their images and reconciled.

Formats: FairFace label CSVs (file, age, gender, race), UTKFace file names
([age]_[gender]_[race]_[date].jpg), CelebA's list_attr_celeba.txt, and any CSV/Parquet with
user-named attribute columns (a manifest, or a table joined to a folder of images).
Every mismatch is counted and listed, never dropped silently: images without a metadata row,
metadata rows without an image, files that cannot be read, malformed names or lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from ..data import IMAGE_COLUMNS, ImageSet, Skip, read_images, read_table
from ..errors import InputError

FORMATS = ("auto", "table", "fairface", "utkface", "celeba")
FAIRFACE_COLUMNS = ("file", "age", "gender", "race")
UTK_GENDER = {"0": "Male", "1": "Female"}
UTK_RACE = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}
UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)\.(?:jpg|jpeg|png)(?:\.chip\.jpg)?$", re.IGNORECASE)
AGE_BANDS = [(0, 2, "0-2"), (3, 9, "3-9"), (10, 19, "10-19"), (20, 29, "20-29"), (30, 39, "30-39"),
             (40, 49, "40-49"), (50, 59, "50-59"), (60, 69, "60-69"), (70, 10_000, "more than 70")]
NO_METADATA = "image has no metadata row"
NO_IMAGE = "metadata row has no image file"


@dataclass
class AuditImages:
    """Images with their attribute columns, plus everything that did not line up.

    ``images.skipped`` lists unusable images and metadata rows without images (with reasons);
    ``unmatched_images`` lists image files that had no metadata row.
    """

    images: ImageSet
    format: str
    metadata_source: str = ""
    unmatched_images: list[Skip] = field(default_factory=list)
    n_metadata_rows: int = 0

    def counts(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for s in self.images.skipped + self.unmatched_images:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        return {"n_images": len(self.images), "n_metadata_rows": self.n_metadata_rows,
                "images_without_metadata": len(self.unmatched_images),
                "metadata_without_image": sum(1 for s in self.images.skipped if s.reason in (NO_IMAGE, "missing file")),
                "duplicate_rows": int(self.images.records["path"].duplicated().sum()),
                "skip_reasons": reasons}


def load_audit_images(images: str | Path | ImageSet, metadata: str | Path | None = None, format: str = "auto",
                      image_column: str | None = None) -> AuditImages:
    """Read images and their attributes in one of the supported on-disk formats."""
    if format not in FORMATS:
        raise InputError(f"unknown metadata format {format!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(images, ImageSet):
        if metadata is not None:
            raise InputError("pass metadata with an image folder or manifest path, not with a loaded ImageSet")
        return AuditImages(images, "table", images.source, n_metadata_rows=len(images) + len(images.skipped))
    path = Path(images).expanduser()
    fmt = detect_format(path, metadata) if format == "auto" else format
    if fmt == "utkface":
        if metadata is not None:
            raise InputError("UTKFace keeps its attributes in the file names: pass the image folder, no metadata")
        return read_utkface(path)
    if metadata is None:
        if path.is_dir():
            if fmt == "celeba":
                raise InputError("CelebA needs its attribute list: pass --metadata list_attr_celeba.txt")
            return AuditImages(read_images(path), "folder", str(path), n_metadata_rows=0)
        return _from_manifest(path, fmt, image_column)
    if not path.is_dir():
        raise InputError(f"--metadata is joined to a folder of images, but {path} is not a folder")
    table = read_celeba_attributes(Path(metadata)) if fmt == "celeba" else _read_metadata(Path(metadata), fmt)
    return join_folder(path, table, image_column or _image_column(table, Path(metadata)), fmt, str(metadata))


def detect_format(images: Path, metadata: str | Path | None) -> str:
    """Guess the format: UTKFace file names, FairFace columns, a CelebA attribute list, or a plain table."""
    if metadata is None and images.is_dir():
        names = [p.name for _, p in zip(range(200), images.rglob("*.jp*g"))]
        if names and sum(bool(UTK_NAME.match(n)) for n in names) >= 0.5 * len(names):
            return "utkface"
    probe = Path(metadata) if metadata is not None else images
    if probe.is_file() and probe.suffix.lower() == ".txt" and metadata is not None:
        return "celeba"
    if probe.is_file() and probe.suffix.lower() in (".csv", ".tsv"):
        try:
            head = pd.read_csv(probe, nrows=0, sep="\t" if probe.suffix.lower() == ".tsv" else ",",
                               encoding="utf-8-sig").columns
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError):
            return "table"  # unreadable: the table reader says why, in one line
        if set(FAIRFACE_COLUMNS) <= set(head):
            return "fairface"
    return "table"


def _from_manifest(path: Path, fmt: str, image_column: str | None) -> AuditImages:
    images = read_images(path, image_column or ("file" if fmt == "fairface" else None))
    images.skipped = [Skip(s.path, NO_IMAGE) if s.reason == "missing file" else s for s in images.skipped]
    if fmt == "fairface":
        images.records = normalise_fairface(images.records)
    return AuditImages(images, fmt, str(path), n_metadata_rows=len(images) + len(images.skipped))


def normalise_fairface(records: pd.DataFrame) -> pd.DataFrame:
    """FairFace's own spelling, checked; ``service_test`` becomes a clean true/false string."""
    out = records.copy()
    if "service_test" in out.columns:
        out["service_test"] = out["service_test"].astype("string").str.strip().str.lower()
    for col in ("age", "gender", "race"):
        out[col] = out[col].astype("string").str.strip().replace("", pd.NA)
    return out


def _read_metadata(path: Path, fmt: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"--metadata {path}: no such file")
    table = read_table(path)
    if fmt == "fairface":
        missing = [c for c in FAIRFACE_COLUMNS if c not in table.columns]
        if missing:
            raise InputError(f"{path}: not a FairFace label CSV (missing {', '.join(missing)})")
        table = normalise_fairface(table)
    return table


def _image_column(table: pd.DataFrame, source: Path) -> str:
    col = next((c for c in IMAGE_COLUMNS if c in table.columns), None)
    if col is None:
        raise InputError(f"{source}: no image column (looked for {', '.join(IMAGE_COLUMNS)}); pass --image-column")
    return col


# ------------------------------------------------------------------------ joining a folder
def join_folder(folder: Path, table: pd.DataFrame, key: str, fmt: str, source: str) -> AuditImages:
    """Join metadata rows to the image files of ``folder`` by relative path, else by file name."""
    if key not in table.columns:
        raise InputError(f"{source}: no column {key!r}; columns: {', '.join(map(str, table.columns))}")
    files = read_images(folder)
    rel = files.records["image"].map(lambda p: PurePosixPath(Path(p).as_posix()).as_posix())
    by_rel = dict(zip(rel, files.records.index))
    base = rel.map(lambda p: PurePosixPath(p).name)
    dup = set(base[base.duplicated()])
    by_name = {b: i for b, i in zip(base, files.records.index) if b not in dup}
    keys = table[key].astype("string").fillna("").str.strip().str.replace("\\", "/", regex=False)
    matched = [by_rel.get(k, by_name.get(PurePosixPath(k).name) if k else None) for k in keys]
    idx = np.array([-1 if m is None else m for m in matched])
    skipped = list(files.skipped)
    skipped += [Skip(f"{source}:{k or '(empty)'}", NO_IMAGE) for k, m in zip(keys, matched) if m is None]
    hit = idx >= 0
    dupe_rows = pd.Series(idx[hit]).duplicated().to_numpy()
    skipped += [Skip(f"{source}:{k}", "second metadata row for the same image")
                for k in keys[hit][dupe_rows]]
    meta = table[hit].iloc[~dupe_rows].drop(columns=[c for c in ("path",) if c in table.columns])
    img = files.records.loc[idx[hit][~dupe_rows], ["path"]].reset_index(drop=True)
    records = pd.concat([img, meta.reset_index(drop=True)], axis=1)
    used = set(idx[hit].tolist())
    unmatched = [Skip(p, NO_METADATA) for i, p in zip(files.records.index, files.records["path"]) if i not in used]
    if records.empty:
        raise InputError(f"{source}: none of its {len(table)} rows matched an image in {folder} "
                         f"(by relative path or file name of column {key!r})")
    return AuditImages(ImageSet(records, str(folder), skipped), fmt, source, unmatched, n_metadata_rows=len(table))


# ------------------------------------------------------------------------------- UTKFace
def age_band(age: int) -> str:
    """FairFace's age band of an integer age (so UTKFace and FairFace audits share groups)."""
    return next(label for lo, hi, label in AGE_BANDS if lo <= age <= hi)


def parse_utkface_name(name: str) -> dict[str, str] | None:
    """Attributes from a UTKFace file name, or None when the name is malformed."""
    m = UTK_NAME.match(name)
    if not m:
        return None
    age = int(m.group(1))
    return {"age": str(age), "age_band": age_band(age), "gender": UTK_GENDER[m.group(2)],
            "race": UTK_RACE[m.group(3)]}


def read_utkface(folder: Path) -> AuditImages:
    """A UTKFace folder; files whose names do not parse are reported as having no metadata."""
    files = read_images(folder)
    rows, keep, unmatched = [], [], []
    for i, (p, rel) in enumerate(zip(files.records["path"], files.records["image"])):
        attrs = parse_utkface_name(Path(rel).name)
        if attrs is None:
            unmatched.append(Skip(p, f"{NO_METADATA} (UTKFace name is not [age]_[gender]_[race]_[date].jpg)"))
        else:
            rows.append(attrs)
            keep.append(i)
    if not keep:
        raise InputError(f"{folder}: no file name follows UTKFace's [age]_[gender]_[race]_[date].jpg pattern")
    records = pd.concat([files.records.iloc[keep].reset_index(drop=True),
                         pd.DataFrame(rows, dtype="string")], axis=1)
    return AuditImages(ImageSet(records, str(folder), files.skipped), "utkface", str(folder), unmatched,
                       n_metadata_rows=len(files.records))


# -------------------------------------------------------------------------------- CelebA
def read_celeba_attributes(path: Path) -> pd.DataFrame:
    """list_attr_celeba.txt -> a table: ``image`` plus one yes/no column per attribute."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise InputError(f"--metadata {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}") from None
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise InputError(f"{path}: not a CelebA attribute list (first line must be the image count)")
    names = lines[1].split()
    rows, bad = [], []
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            bad.append(lineno)
            continue
        rows.append([parts[0], *("yes" if v == "1" else "no" for v in parts[1:])])
    if bad:
        raise InputError(f"{path}: {len(bad)} line(s) do not hold a file name and {len(names)} values of 1/-1 "
                         f"(first: line {bad[0]})")
    declared = int(lines[0].strip())
    if declared != len(rows):
        raise InputError(f"{path}: the first line declares {declared} images but {len(rows)} lines follow")
    return pd.DataFrame(rows, columns=["image", *names], dtype="string")
