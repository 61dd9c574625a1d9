"""Images and texts to L2-normalised embeddings, with an on-disk cache for images.

The image cache lives in ``cache_dir/<namespace>/``, one namespace per (model identity,
preprocess settings, decoding version). Entries are keyed by each file's path, size and mtime
(or, with ``verify_cache``, by a hash of its content), and stored in shard files that are
written whole (temp file + rename), so a killed run leaves only complete shards and two
processes can fill one cache at once. Each distinct file is decoded and encoded once per run,
however many manifest rows name it.
"""
from __future__ import annotations

import hashlib
import os
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .atomic import atomic_path, clean_stale_temps, describe_os_error, output_set, prepare_out_dir, write_text
from .data import DECODE_VERSION, DEFAULT_MAX_PIXELS, ImageError, ImageSet, Skip, load_image, read_images
from .errors import InputError, ModelError, OutputError
from .models import LoadedModel
from .profile import StageTimer

DEFAULT_CACHE_DIR = Path(os.environ.get("CLIPLAB_CACHE", "~/.cache/cliplab")).expanduser()
MAX_SHARDS = 32  # past this many shard files a namespace is compacted into one


@dataclass
class ImageEmbeddings:
    """Embeddings of an image set: row i of ``features`` belongs to row i of ``records``."""

    features: np.ndarray
    records: pd.DataFrame
    skipped: list[Skip] = field(default_factory=list)
    n_cached: int = 0  # distinct files whose embedding came from the cache
    n_encoded: int = 0  # distinct files decoded and encoded in this run
    model_identity: str = ""

    def __len__(self) -> int:
        return len(self.features)

    def write(self, out: str | Path) -> Path:
        """embeddings.npy, records.csv, skipped.csv and embed.json in ``out`` (see :func:`write_embeddings`)."""
        return write_embeddings(self, out)

    def summary(self) -> str:
        """One line: how many images, from the cache or encoded, skipped, with which model."""
        return (f"embedded {len(self)} images ({self.n_cached} from cache, {self.n_encoded} encoded, "
                f"{len(self.skipped)} skipped) with {self.model_identity or 'an unnamed model'}")


# ------------------------------------------------------------------------------ the cache
class EmbeddingCache:
    """Shard files of (keys, features); written atomically, read all at once."""

    def __init__(self, root: str | Path, loaded: LoadedModel):
        ns = hashlib.sha256(f"{loaded.identity}\0{loaded.preprocess_key}\0{DECODE_VERSION}".encode()).hexdigest()[:20]
        self.dir = Path(root).expanduser() / ns
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the embedding cache {self.dir}: {describe_os_error(e, self.dir)} "
                              "(choose another --cache-dir, or --no-cache)") from None
        if not (self.dir / "model.txt").exists():  # for people browsing the cache
            write_text(self.dir / "model.txt", f"{loaded.identity}\n{loaded.preprocess_key}\n{DECODE_VERSION}\n")
        clean_stale_temps(self.dir)

    @staticmethod
    def key(path: str, verify: bool = False) -> str | None:
        """Path + size + mtime; ``verify``: the content's hash (a file rewritten with the same size
        and mtime, as copies that preserve mtimes and some sync tools do, misses). None: unreadable."""
        try:
            if verify:
                with open(path, "rb") as f:
                    return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
            st = os.stat(path)
        except OSError:
            return None  # gone since listing, or unreadable: decoding says why
        return hashlib.sha1(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz"))

    def load(self) -> dict[str, np.ndarray]:
        entries: dict[str, np.ndarray] = {}
        for shard in self._shards():
            try:
                with np.load(shard) as z:
                    entries.update(zip(z["keys"].tolist(), z["features"]))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                continue  # removed by a concurrent compaction, or not ours: a miss, never an error
        return entries

    def write(self, keys: Sequence[str], features: np.ndarray) -> None:
        if not len(keys):
            return
        try:
            with atomic_path(self.dir / f"shard-{uuid.uuid4().hex}.npz") as tmp, open(tmp, "wb") as f:
                np.savez(f, keys=np.asarray(keys), features=np.asarray(features, dtype=np.float32))
        except OSError as e:  # atomic_path's OutputError says which file; this says it is the cache
            reason = str(e) if isinstance(e, OutputError) else describe_os_error(e, self.dir)
            raise OutputError(f"cannot write the embedding cache in {self.dir} ({reason})") from None

    def compact(self) -> None:
        shards = self._shards()
        if len(shards) <= MAX_SHARDS:
            return
        entries = self.load()
        self.write(list(entries), np.stack(list(entries.values())))
        for s in shards:
            s.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- decoding
class _Decode(Dataset):
    def __init__(self, paths: list[str], preprocess, max_pixels: int):
        self.paths, self.preprocess, self.max_pixels = paths, preprocess, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, self.preprocess(load_image(self.paths[i], self.max_pixels)), None
        except ImageError as e:
            return i, None, str(e)


def _collate(items):
    ok = [(i, x) for i, x, _ in items if x is not None]
    failed = [(i, r) for i, x, r in items if x is None]
    idx = [i for i, _ in ok]
    return idx, (torch.stack([x for _, x in ok]) if ok else None), failed


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def embed_images(
    loaded: LoadedModel,
    images: ImageSet | str | Path | Sequence[str | Path],
    batch_size: int = 64,
    workers: int | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    dtype: str = "float32",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    flush_every: int = 4096,
    progress: bool = True,
    verify_cache: bool = False,
    timer: StageTimer | None = None,
) -> ImageEmbeddings:
    """Embed every usable image (an ImageSet, a folder, a manifest or a list of paths).

    Cached images are neither decoded nor passed through the model; a file named on many rows is
    encoded once and its embedding repeated, each row keeping its own metadata. ``verify_cache``
    keys the cache by file content instead of path, size and mtime.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise InputError(f"workers must be 0 (decode in this process) or more, got {workers}")
    if max_pixels < 1:
        raise InputError(f"max_pixels must be at least 1, got {max_pixels}")
    if dtype not in ("float32", "float16"):
        raise InputError(f"dtype must be float32 or float16, got {dtype!r}")
    if not isinstance(images, ImageSet):
        images = read_images(images)
    codes, distinct = _distinct_files(images.records["path"])
    cache = EmbeddingCache(cache_dir, loaded) if cache_dir is not None else None
    keys = [EmbeddingCache.key(p, verify_cache) for p in distinct]
    found = cache.load() if cache else {}
    feats: list[np.ndarray | None] = [found.get(k) if k else None for k in keys]
    del found
    todo = [j for j, f in enumerate(feats) if f is None]
    failed = _encode(loaded, todo, distinct, feats, keys, cache, batch_size, workers, max_pixels, flush_every,
                     progress, timer) if todo else {}
    if cache:
        cache.compact()
    bad_rows = np.flatnonzero(np.isin(codes, list(failed)))
    skipped = list(images.skipped) + [Skip(images.records["path"].iat[i], failed[codes[i]]) for i in bad_rows]
    ok_files = [j for j, f in enumerate(feats) if f is not None]
    if not ok_files:
        first = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        raise InputError(f"none of the {len(images)} images could be embedded ({first})")
    done = [f for f in feats if f is not None]
    table = np.zeros((len(distinct), len(done[0])), dtype=dtype)
    table[ok_files] = np.stack(done)
    rows = np.setdiff1d(np.arange(len(codes)), bad_rows)
    return ImageEmbeddings(table[codes[rows]], images.records.iloc[rows].reset_index(drop=True), skipped,
                           n_cached=len(distinct) - len(todo), n_encoded=len(todo) - len(failed),
                           model_identity=loaded.identity)


def _distinct_files(paths: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(row -> file index, the distinct real files): rows that name one file in different ways
    (``./x.png``, a symlink) share it. Paths are resolved once per distinct string, not per row."""
    string_codes, strings = pd.factorize(paths)
    real_codes, real = pd.factorize(np.array([os.path.realpath(s) for s in strings], dtype=object))
    return real_codes[string_codes], list(real)


def _encode(loaded, todo, paths, feats, keys, cache, batch_size, workers, max_pixels, flush_every,
            progress, timer=None) -> dict[int, str]:
    """Decode and encode files ``paths[j] for j in todo`` into ``feats[j]``, flushing to the cache
    every ``flush_every``; returns {j: reason} for the files that could not be decoded."""
    todo_paths = [paths[j] for j in todo]
    if workers is None:
        workers = 0 if len(todo_paths) <= 2 * batch_size else min(2, os.cpu_count() or 1)
    dataset, collate = _Decode(todo_paths, loaded.preprocess, max_pixels), _collate
    if timer is not None:  # --profile: stage timings from the workers (cliplab.profile)
        dataset, collate = timer.instrument(dataset, collate, cache)
        timer.workers = workers
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                        pin_memory=loaded.device.type == "cuda", prefetch_factor=4 if workers else None)
    failures: dict[int, str] = {}
    pending_keys: list[str] = []
    pending: list[np.ndarray] = []
    bar = tqdm(total=len(todo_paths), desc="embedding images", unit="img", disable=not progress)
    with torch.inference_mode(), _autocast(loaded.device):
        for idx, batch, failed in (timer.batches(loader) if timer is not None else loader):
            failures.update((todo[i], reason) for i, reason in failed)
            if batch is not None:
                out = loaded.model.encode_image(batch.to(loaded.device, non_blocking=True), normalize=True)
                out = check_finite(torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy(), "image")
                for i, f in zip(idx, out):
                    feats[todo[i]] = f
                    if keys[todo[i]] is not None:
                        pending_keys.append(keys[todo[i]])
                        pending.append(f)
            if cache and len(pending) >= flush_every:
                cache.write(pending_keys, np.stack(pending))
                pending_keys, pending = [], []
            bar.update(len(idx) + len(failed))
    bar.close()
    if cache and pending:
        cache.write(pending_keys, np.stack(pending))
    return failures


def check_finite(features: np.ndarray, what: str) -> np.ndarray:
    """Embeddings must be finite: NaN or inf means broken weights (or an overflow), never a result."""
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        raise ModelError(f"the model gives non-finite (NaN/inf) {what} embeddings for {int(bad.sum())} of "
                         f"{len(features)} inputs in a batch: its weights are broken (NaN in the checkpoint?) "
                         "or overflowed; nothing was written")
    return features


def _is_truncated(tokenizer: Any, text: str) -> bool:
    """Whether the tokenizer cuts ``text`` to its context length (open_clip does so silently)."""
    encode, length = getattr(tokenizer, "encode", None), getattr(tokenizer, "context_length", None)
    return encode is not None and length is not None and len(encode(text)) + 2 > length  # + start and end tokens


def embed_texts(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """L2-normalised text embeddings [len(texts), d]; each distinct text is encoded once per model.

    Texts longer than the model's context are truncated by the tokenizer and recorded in
    ``loaded.truncated_texts`` so callers can report them.
    """
    texts = list(texts)
    cache = loaded.text_cache
    new = list(dict.fromkeys(t for t in texts if t not in cache))
    loaded.truncated_texts.update(t for t in new if _is_truncated(loaded.tokenizer, t))
    with torch.inference_mode(), _autocast(loaded.device):
        for start in range(0, len(new), batch_size):
            chunk = new[start:start + batch_size]
            tokens = loaded.tokenizer(chunk).to(loaded.device)
            out = loaded.model.encode_text(tokens, normalize=True)  # type: ignore[operator]  # an open_clip CLIP
            feats = check_finite(torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy(), "text")
            cache.update(zip(chunk, feats))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([cache[t] for t in texts])


def write_embeddings(result: ImageEmbeddings, out: str | Path) -> Path:
    """embeddings.npy (row i = records.csv row i), records.csv, skipped.csv and embed.json in ``out``,
    written as one set (atomic.output_set: embed.json last, listing the others' sizes)."""
    out = prepare_out_dir(out)
    info = {"model": result.model_identity, "n_images": len(result), "dim": int(result.features.shape[1]),
            "dtype": str(result.features.dtype), "n_cached": result.n_cached, "n_encoded": result.n_encoded,
            "n_skipped": len(result.skipped)}
    with output_set(out, "embed.json", info) as files:
        with open(files.path("embeddings.npy"), "wb") as f:
            np.save(f, result.features)
        files.table("records.csv", result.records)
        files.table("skipped.csv", pd.DataFrame([(s.path, s.reason) for s in result.skipped],
                                                columns=["path", "reason"]))
    return out
