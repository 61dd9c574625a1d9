"""Evaluation sets as researchers keep them: ImageFolder trees and CLIP_benchmark webdataset shards.

- ImageFolder: ``ROOT/<class folder>/<images>`` (torchvision's layout: classes are the sorted folder
  names), with an optional ``ROOT/classnames.txt`` mapping folders to prompt names.
- CLIP_benchmark's webdataset format: ``ROOT/classnames.txt``, ``ROOT/zeroshot_classification_templates.txt``
  and ``ROOT/<split>/*.tar`` shards whose samples hold an image (webp/png/jpg/jpeg) and ``cls`` (class index).
  Shards are read offline and their images extracted once into a cache folder (keyed by the shards' paths,
  sizes and mtimes), so the embedding cache works on them as on any file.

Both give an :class:`EvalImageSet`: a cliplab ImageSet with ``label`` (prompt name) and ``class_index``
columns plus the class list. Results can be written in CLIP_benchmark's JSON schema so tables merge.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .atomic import write_json, write_table
from .data import IMAGE_EXTENSIONS, ImageSet, Skip, read_images, read_table
from .errors import InputError

CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
WDS_IMAGE_KEYS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's to_tuple(["webp", "png", "jpg", "jpeg"], "cls")
KNOWN_FILES = {CLASSNAMES_FILE, TEMPLATES_FILE, "dataset_type.txt", "README.md", "README.txt", "LICENSE"}


@dataclass
class EvalImageSet(ImageSet):
    """An ImageSet whose rows carry ``label`` and ``class_index``, with the set's classes and templates."""

    classnames: list[str] = field(default_factory=list)
    templates: list[str] | None = None  # from zeroshot_classification_templates.txt, "{}" marking the class
    layout: str = "imagefolder"
    empty_classes: list[str] = field(default_factory=list)  # classes with no images (kept in the class list)
    n_outside_subset: int = 0  # images dropped by a class subset (counted, reported)


def eval_layout(path: str | Path) -> str | None:
    """'wds', 'imagefolder' or None (a plain folder or manifest, read by cliplab.data.read_images)."""
    p = Path(path)
    if p.is_dir() and (any(p.glob("*.tar")) or any(p.glob("*/*.tar"))):
        return "wds"
    if p.is_dir() and (p / CLASSNAMES_FILE).is_file():
        return "imagefolder"
    return None


def read_eval_set(path: str | Path, layout: str = "auto", split: str = "test", classnames: str | Path | None = None,
                  extract_dir: str | Path | None = None) -> ImageSet:
    """Read an ImageFolder tree, CLIP_benchmark wds shards, or (layout 'auto' finding neither) a plain set.

    ``layout``: auto, imagefolder, wds. Only the first two give an EvalImageSet (with its class list).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{path}: no such file or folder")
    kind = eval_layout(p) if layout == "auto" else layout
    if kind == "wds":
        return read_wds(p, split, extract_dir)
    if kind == "imagefolder":
        return read_image_folder(p, classnames)
    if kind is None:
        return read_images(p)
    raise InputError(f"unknown layout {layout!r} (choose auto, imagefolder or wds)")


# ------------------------------------------------------------------------------ ImageFolder
def read_image_folder(root: str | Path, classnames: str | Path | None = None) -> EvalImageSet:
    """``ROOT/<class>/<image>`` (recursive inside each class); stray files are counted skips."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (an ImageFolder is ROOT/<class>/<images>)")
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not folders:
        raise InputError(f"{root}: no class folders (an ImageFolder is ROOT/<class>/<images>)")
    names_file = Path(classnames) if classnames else root / CLASSNAMES_FILE
    names = _folder_names(folders, names_file if names_file.is_file() else None)
    skipped = [Skip(str(root / e.name), "stray file: not inside a class folder")
               for e in sorted(os.scandir(root), key=lambda e: e.name) if e.is_file() and e.name not in KNOWN_FILES]
    rows, empty = [], []
    for index, folder in enumerate(folders):
        files = sorted(os.path.join(r, n) for r, _, ns in os.walk(root / folder, followlinks=True) for n in ns)
        images = [f for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
        skipped += [Skip(f, "stray file: not an image file by its extension") for f in files if f not in set(images)]
        if not images:
            empty.append(names[index])
        rows += [(f, os.path.relpath(f, root), names[index], index, folder) for f in images]
    if not rows:
        raise InputError(f"{root}: the class folders hold no image files")
    records = pd.DataFrame(rows, columns=["path", "image", "label", "class_index", "folder"])
    found = read_images_from_records(records, str(root))
    return EvalImageSet(found.records, str(root), skipped + found.skipped, classnames=names,
                        layout="imagefolder", empty_classes=empty)


def _folder_names(folders: list[str], names_file: Path | None) -> list[str]:
    """Prompt names for the folders: ``folder<TAB>name`` lines, or one name per line (by index)."""
    if names_file is None:
        return list(folders)
    lines = _lines(names_file)
    if lines and all("\t" in ln for ln in lines):
        mapping = dict(ln.split("\t", 1) for ln in lines)
        missing = [f for f in folders if f not in mapping]
        if missing:
            raise InputError(f"{names_file}: no name for class folder(s) {', '.join(missing[:5])}")
        return [mapping[f].strip() for f in folders]
    if all(f.isdigit() for f in folders):  # ImageNet-V2 style: folder "17" is class index 17
        bad = [f for f in folders if int(f) >= len(lines)]
        if bad:
            raise InputError(f"{names_file}: {len(lines)} class names, but there is a class folder {bad[0]!r}")
        return [lines[int(f)] for f in folders]
    if len(lines) != len(folders):
        raise InputError(f"{names_file}: {len(lines)} class names for {len(folders)} class folders (one name per "
                         "folder in sorted folder order, or 'folder<TAB>name' lines)")
    return lines


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def read_images_from_records(records: pd.DataFrame, source: str) -> ImageSet:
    """Missing or empty files become skips (cliplab.data's checks), as for a manifest."""
    from .data import _drop_unreadable

    return _drop_unreadable(records, source)


# ------------------------------------------------------------------------------ webdataset
def read_wds(root: str | Path, split: str = "test", extract_dir: str | Path | None = None) -> EvalImageSet:
    """CLIP_benchmark's wds layout, read offline; images extracted once into ``extract_dir``."""
    root = Path(root).expanduser()
    shards = sorted((root / split).glob("*.tar"), key=_shard_order) or sorted(root.glob("*.tar"), key=_shard_order)
    if not shards:
        raise InputError(f"{root}: no .tar shards in {root / split} (CLIP_benchmark's layout: ROOT/{split}/N.tar)")
    if not (root / CLASSNAMES_FILE).is_file():
        raise InputError(f"{root}: no {CLASSNAMES_FILE} (one class name per line, in class-index order)")
    names = _lines(root / CLASSNAMES_FILE)
    templates = None
    if (root / TEMPLATES_FILE).is_file():  # CLIP_benchmark writes {c} where cliplab writes {}
        templates = [t.replace("{c}", "{}") for t in _lines(root / TEMPLATES_FILE)]
    stamp = "\0".join(f"{s.resolve()}:{s.stat().st_size}:{s.stat().st_mtime_ns}" for s in shards)
    if extract_dir is None:
        from .embed import DEFAULT_CACHE_DIR
        extract_dir = DEFAULT_CACHE_DIR / "wds"
    target = Path(extract_dir).expanduser() / hashlib.sha1(stamp.encode()).hexdigest()[:16]
    index = target / "samples.csv"
    if index.is_file():
        records = read_table(index)
        records["class_index"] = records["class_index"].astype(int)
        skipped = [Skip(p, r) for p, r in read_table(target / "skipped.csv").itertuples(index=False)] \
            if (target / "skipped.csv").stat().st_size > len("path,reason\n") else []
    else:
        records, skipped = _extract(shards, target, len(names))
        write_table(target / "skipped.csv", pd.DataFrame([(s.path, s.reason) for s in skipped],
                                                         columns=["path", "reason"]))
        write_table(index, records)  # last: its presence means the extraction finished
    records.insert(2, "label", [names[i] for i in records["class_index"]])
    images = read_images_from_records(records, str(root))
    present = set(records["class_index"])
    return EvalImageSet(images.records, str(root), skipped + images.skipped, classnames=names, templates=templates,
                        layout="wds", empty_classes=[n for i, n in enumerate(names) if i not in present])


def _shard_order(p: Path) -> tuple[int, str]:
    return (int(p.stem), p.name) if p.stem.isdigit() else (1 << 62, p.name)


def _extract(shards: list[Path], target: Path, n_classes: int) -> tuple[pd.DataFrame, list[Skip]]:
    """Write each sample's image to ``target/<shard>/<key>.<ext>``; a truncated shard is a counted skip."""
    rows: list[tuple[str, str, int, str]] = []
    skipped: list[Skip] = []
    for shard in shards:
        out = target / shard.stem
        out.mkdir(parents=True, exist_ok=True)
        samples: dict[str, dict[str, bytes]] = {}
        try:
            with tarfile.open(shard, mode="r:") as tar:  # plain tar, read in order like webdataset
                for member in tar:
                    if not member.isfile():
                        continue
                    base = os.path.basename(member.name)
                    key, _, ext = base.partition(".")  # webdataset: the key ends at the first dot
                    data = tar.extractfile(member)
                    samples.setdefault(os.path.join(os.path.dirname(member.name), key), {})[ext.lower()] = \
                        data.read() if data else b""
        except (tarfile.ReadError, EOFError, OSError) as e:
            skipped.append(Skip(str(shard), f"truncated or unreadable shard after {len(samples)} sample(s): {e}"))
        for key, parts in samples.items():
            found = [k for k in WDS_IMAGE_KEYS if k in parts]
            where = f"{shard}:{key}"
            if not found or "cls" not in parts:
                skipped.append(Skip(where, "sample has no " + ("cls" if found else "image")))
                continue
            ext = found[0]
            try:
                cls = int(parts["cls"].decode().strip())
            except (UnicodeDecodeError, ValueError):
                raise InputError(f"{where}: cls is not an integer ({parts['cls'][:20]!r})") from None
            if not 0 <= cls < n_classes:
                raise InputError(f"{where}: cls {cls} is outside the class list ({n_classes} classes in "
                                 f"{CLASSNAMES_FILE}, indices 0-{n_classes - 1})")
            path = out / f"{key.replace('/', '_')}.{ext}"
            with open(path, "wb") as f:
                f.write(parts[ext])
            rows.append((str(path), f"{shard.name}:{key}", cls, shard.name))
    if not rows:
        raise InputError(f"{shards[0].parent}: the shards hold no usable samples"
                         + (f" ({skipped[0].reason})" if skipped else ""))
    return pd.DataFrame(rows, columns=["path", "image", "class_index", "shard"]), skipped


# ------------------------------------------------------------------------------ subsets, output
def read_class_indices(spec: str | Path | Sequence[int], n_classes: int) -> list[int]:
    """A class-index list (file: one index per line or comma-separated; or a list), checked against the classes."""
    if isinstance(spec, (str, Path)):
        p = Path(spec).expanduser()
        text = p.read_text(encoding="utf-8") if p.is_file() else str(spec)
        items = [t.strip() for t in text.replace(",", "\n").splitlines() if t.strip() and not t.startswith("#")]
        try:
            indices = [int(t) for t in items]
        except ValueError:
            raise InputError(f"{spec}: a class subset is a list of integer class indices") from None
    else:
        indices = [int(i) for i in spec]
    bad = [i for i in indices if not 0 <= i < n_classes]
    if bad:
        raise InputError(f"class subset index {bad[0]} is outside 0-{n_classes - 1}")
    if len(set(indices)) != len(indices) or len(indices) < 2:
        raise InputError("a class subset needs at least 2 distinct class indices")
    return indices


def subset_classes(images: EvalImageSet, indices: Sequence[int] | str | Path) -> EvalImageSet:
    """Keep the given classes (ImageNet-R/-A: 200 of 1000); images of other classes are dropped and counted."""
    keep = read_class_indices(indices, len(images.classnames))
    remap = {old: new for new, old in enumerate(keep)}
    mask = images.records["class_index"].isin(remap)
    records = images.records[mask].reset_index(drop=True)
    if records.empty:
        raise InputError(f"the class subset keeps none of the {len(images)} images of {images.source}")
    records["class_index"] = records["class_index"].map(remap)
    names = [images.classnames[i] for i in keep]
    return EvalImageSet(records, images.source, images.skipped, images.n_duplicates, classnames=names,
                        templates=images.templates, layout=images.layout,
                        empty_classes=[n for n in images.empty_classes if n in set(names)],
                        n_outside_subset=images.n_outside_subset + int((~mask).sum()))


def clip_benchmark_record(dataset: str, model: str, pretrained: str, metrics: dict,
                          task: str = "zeroshot_classification", language: str = "en") -> dict:
    """One result in CLIP_benchmark's JSON schema (as its ``eval`` command writes it)."""
    keep = ("acc1", "acc5", "mean_per_class_recall")
    return {"dataset": dataset, "model": model, "pretrained": pretrained, "task": task,
            "metrics": {k: float(metrics[k]) for k in keep if k in metrics}, "language": language}


def write_clip_benchmark_json(out_dir: str | Path, record: dict) -> Path:
    """``{dataset}_{pretrained}_{model}_{language}_{task}.json``, CLIP_benchmark's default file name."""
    safe = lambda s: str(s).replace("/", "_")
    name = "_".join(safe(record[k]) for k in ("dataset", "pretrained", "model", "language", "task")) + ".json"
    return write_json(Path(out_dir) / name, record)


def write_wds(images: ImageSet, classnames: Sequence[str], root: str | Path, templates: Sequence[str] = (),
              split: str = "test", shard_size: int = 1000, label_column: str = "label") -> Path:
    """Write an image set in CLIP_benchmark's wds layout (to hand the same data to both tools)."""
    root = Path(root)
    (root / split).mkdir(parents=True, exist_ok=True)
    index = {c: i for i, c in enumerate(classnames)}
    rows = images.records
    n_shards = max(1, -(-len(rows) // shard_size))
    for s in range(n_shards):
        with tarfile.open(root / split / f"{s}.tar", "w") as tar:
            for i, row in rows.iloc[s * shard_size:(s + 1) * shard_size].iterrows():
                ext = Path(row["path"]).suffix.lower().lstrip(".").replace("jpeg", "jpg")
                for suffix, data in ((ext, Path(row["path"]).read_bytes()),
                                     ("cls", str(index[row[label_column]]).encode())):
                    info = tarfile.TarInfo(f"s{i:07d}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    (root / split / "nshards.txt").write_text(f"{n_shards}\n")
    (root / CLASSNAMES_FILE).write_text("".join(f"{c}\n" for c in classnames))
    if templates:
        (root / TEMPLATES_FILE).write_text("".join(f"{t.replace('{}', '{c}')}\n" for t in templates))
    return root


def read_selected(path: str | Path, layout: str = "auto", class_subset: str | Sequence[int] | None = None,
                  where: Sequence[str] = ()) -> ImageSet:
    """An evaluation set read as ``layout``, cut to ``class_subset`` and to the ``where`` rows
    (``COLUMN=VALUE[,VALUE]`` items), keeping its class list and templates."""
    from .data import parse_where, select

    images = read_eval_set(path, layout)
    if class_subset:
        if not isinstance(images, EvalImageSet):
            raise InputError(f"--class-subset needs an ImageFolder or CLIP_benchmark wds set, not {path}")
        images = subset_classes(images, class_subset)
    picked = select(images, parse_where(list(where)))
    if isinstance(images, EvalImageSet) and picked is not images:
        picked = EvalImageSet(picked.records, picked.source, picked.skipped, picked.n_duplicates, picked.notes,
                              classnames=images.classnames, templates=images.templates, layout=images.layout,
                              empty_classes=images.empty_classes)
    return picked


def input_notes(images: ImageSet) -> list[str]:
    """What a user should hear about an evaluation set: empty classes, images outside the subset, skips."""
    notes = []
    for attr, what in (("empty_classes", "class(es) with no images"),
                       ("n_outside_subset", "image(s) outside the class subset left out")):
        value = getattr(images, attr, None)
        if value:
            notes.append(f"{len(value) if isinstance(value, list) else value} {what}")
    if images.skipped:
        notes.append(f"skipped {len(images.skipped)} file(s) of {images.source}, e.g. {images.skipped[0].path}: "
                     f"{images.skipped[0].reason}")
    return notes
