"""Training data: image-caption pairs from a manifest, a folder with .txt captions, or webdataset shards.

Rows that cannot be used (no image file, an empty caption, no caption file) are skipped and
counted, never dropped silently; a manifest without a caption column is an error naming the
columns it has. The order of the training data is a pure function of (seed, epoch), so a run
resumed in the middle of an epoch can skip exactly the batches it has already done.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import ImageSet, Skip, read_images
from ..errors import InputError

CAPTION_COLUMNS = ("caption", "text", "title", "captions", "txt")
TRAIN_SPLITS = ("train",)
EVAL_SPLITS = ("test", "val", "validation")


@dataclass
class PairSet:
    """Image paths with one caption each (and class labels when the data has them)."""

    paths: list[str]
    captions: list[str]
    source: str
    labels: list[str] | None = None
    skipped: list[Skip] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)  # zero-shot templates found beside the data
    classnames: list[str] = field(default_factory=list)  # class order found beside the data

    def __len__(self) -> int:
        return len(self.paths)

    def head(self, n: int) -> PairSet:
        labels = self.labels[:n] if self.labels is not None else None
        return PairSet(self.paths[:n], self.captions[:n], self.source, labels, self.skipped,
                       self.templates, self.classnames)


def is_webdataset(source: str) -> bool:
    """``.tar`` shard urls (one, a brace pattern, or several joined by '::')."""
    first = source.split("::")[0]
    return first.endswith(".tar") or (".tar" in first and "{" in first) or first.startswith(("pipe:", "s3:"))


def read_train_pairs(source: str, image_column: str = "", caption_column: str = "",
                     split_column: str = "split", label_column: str = "label") -> PairSet:
    """The training rows of a manifest (its 'train' split when it has a split column) or caption folder."""
    pairs = _read_pairs(source, "train", image_column, caption_column, split_column, label_column)
    if pairs is None:  # _read_pairs raises for training data without train rows; this cannot happen
        raise AssertionError(f"{source}: no training rows and no error raised")
    return pairs


def read_eval_pairs(source: str, image_column: str = "", caption_column: str = "",
                    split_column: str = "split", label_column: str = "label",
                    require_split: bool = False) -> PairSet | None:
    """The test/val rows of a manifest or caption folder; None when the data holds no evaluation rows.

    None means: a split column without test/val rows or, with ``require_split``, no split column at
    all. Every caller decides what that means for it (another source, or no evaluation).
    """
    return _read_pairs(source, "eval", image_column, caption_column, split_column, label_column, require_split)


def _read_pairs(source: str, role: str, image_column: str, caption_column: str, split_column: str,
                label_column: str, require_split: bool = False) -> PairSet | None:
    """The ``role`` ("train" or "eval") rows; None only for "eval" data without evaluation rows."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_caption_folder(path)
    images = read_images(path, image_column or None)
    table = images.records
    if require_split and split_column not in table.columns:
        return None
    if split_column and split_column in table.columns:
        wanted = TRAIN_SPLITS if role == "train" else EVAL_SPLITS
        keep = table[split_column].astype(str).str.strip().str.lower().isin(wanted)
        if not keep.any():
            if role == "eval":
                return None
            found = sorted(table[split_column].astype(str).unique())[:10]
            raise InputError(f"{source}: split column {split_column!r} has no 'train' rows (values: {found}); "
                             f"pass --set split_column= to use every row")
        table = table[keep].reset_index(drop=True)
    caption = _caption_column(table, caption_column, source)
    text = table[caption].astype("string").str.strip()
    empty = text.isna() | (text == "")
    skipped = list(images.skipped) + [Skip(p, "empty caption") for p in table.loc[empty.to_numpy(), "path"]]
    table, text = table[~empty.to_numpy()], text[~empty.to_numpy()]
    if table.empty:
        raise InputError(f"{source}: no {role} rows with an image and a non-empty caption "
                         f"({len(skipped)} skipped: {_reasons(skipped)})")
    labels = None
    if label_column and label_column in table.columns:
        labels = table[label_column].astype(str).tolist()
    templates, classnames = _dataset_json(path.parent)
    return PairSet(table["path"].tolist(), text.astype(str).tolist(), str(source), labels, skipped,
                   templates, classnames)


def _caption_column(table, requested: str, source: str) -> str:
    columns = [str(c) for c in table.columns if c != "path"]
    if requested:
        if requested not in table.columns:
            raise InputError(f"{source}: no caption column {requested!r}; columns are {', '.join(columns)}")
        return requested
    found = next((c for c in CAPTION_COLUMNS if c in table.columns), None)
    if found is None:
        raise InputError(f"{source}: no caption column (looked for {', '.join(CAPTION_COLUMNS)}; columns are "
                         f"{', '.join(columns)}); pass --set caption_column=NAME")
    return found


def _read_caption_folder(folder: Path) -> PairSet:
    """Images with a same-stem ``.txt`` caption beside them (``a/1.png`` + ``a/1.txt``)."""
    images: ImageSet = read_images(folder)
    paths, captions, skipped = [], [], list(images.skipped)
    for p in images.paths:
        txt = Path(p).with_suffix(".txt")
        try:
            caption = txt.read_text(encoding="utf-8-sig").strip()
        except FileNotFoundError:
            skipped.append(Skip(p, "no caption file (.txt with the same name)"))
            continue
        except (OSError, UnicodeDecodeError) as e:
            skipped.append(Skip(p, f"unreadable caption file: {e}"))
            continue
        if not caption:
            skipped.append(Skip(p, "empty caption"))
            continue
        paths.append(p)
        captions.append(caption)
    if not paths:
        raise InputError(f"{folder}: no image has a non-empty same-name .txt caption "
                         f"({len(skipped)} skipped: {_reasons(skipped)})")
    return PairSet(paths, captions, str(folder), None, skipped)


def _dataset_json(folder: Path) -> tuple[list[str], list[str]]:
    """Zero-shot template and class order from a ``dataset.json`` beside the manifest (cliplab synth)."""
    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        return [], []
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], []
    template = meta.get("template") if isinstance(meta, dict) else None
    templates = [template] if isinstance(template, str) and "{}" in template else []
    classnames = [str(c) for c in meta.get("classes", [])] if isinstance(meta, dict) else []
    return templates, classnames


def _reasons(skipped: list[Skip]) -> str:
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s.reason] = counts.get(s.reason, 0) + 1
    return ", ".join(f"{n} {r}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def skip_summary(skipped: list[Skip]) -> str:
    """'12 skipped (10 empty caption, 2 missing file)' or ''."""
    return f"{len(skipped)} skipped ({_reasons(skipped)})" if skipped else ""


# ---------------------------------------------------------------- data order
def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, epoch, batch, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of the n training samples used in ``epoch``: depends on nothing else."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def global_batch(order: np.ndarray, batch: int, batch_size: int) -> np.ndarray:
    return order[batch * batch_size:(batch + 1) * batch_size]


def rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """This rank's contiguous part of a global batch (rank order = the 1-process batch order)."""
    per_rank = batch_size // world_size
    return slice(rank * per_rank, (rank + 1) * per_rank)
