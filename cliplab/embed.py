"""Images and texts to L2-normalised embeddings, with an on-disk cache for images.

The image cache lives in ``cache_dir/<namespace>/``, one namespace per (model identity,
preprocess settings). Entries are keyed by each file's path, size and mtime, and stored in
shard files that are written whole (temp file + rename), so a killed run leaves only complete
shards and two processes can fill one cache at once.
"""
from __future__ import annotations

import hashlib
import os
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .atomic import atomic_path, describe_os_error, prepare_out_dir, write_json, write_table, write_text
from .data import DEFAULT_MAX_PIXELS, ImageError, ImageSet, Skip, load_image, read_images
from .errors import InputError, OutputError
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
    n_cached: int = 0
    n_encoded: int = 0
    model_identity: str = ""

    def __len__(self) -> int:
        return len(self.features)


# ------------------------------------------------------------------------------ the cache
class EmbeddingCache:
    """Shard files of (keys, features); written atomically, read all at once."""

    def __init__(self, root: Path, loaded: LoadedModel):
        ns = hashlib.sha256(f"{loaded.identity}\0{loaded.preprocess_key}".encode()).hexdigest()[:20]
        self.dir = Path(root).expanduser() / ns
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the embedding cache {self.dir}: {describe_os_error(e, self.dir)} "
                              "(choose another --cache-dir, or --no-cache)") from None
        if not (self.dir / "model.txt").exists():  # for people browsing the cache
            write_text(self.dir / "model.txt", f"{loaded.identity}\n{loaded.preprocess_key}\n")

    @staticmethod
    def key(path: str) -> str:
        st = os.stat(path)
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
        final = self.dir / f"shard-{uuid.uuid4().hex}.npz"
        tmp = self.dir / f".tmp-{final.name}"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, keys=np.asarray(keys), features=np.asarray(features, dtype=np.float32))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write the embedding cache in {self.dir}: {describe_os_error(e, self.dir)}") from None

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
    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def embed_images(
    loaded: LoadedModel,
    images: ImageSet | str | Path,
    batch_size: int = 64,
    workers: int | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    dtype: str = "float32",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    flush_every: int = 4096,
    progress: bool = True,
    timer: StageTimer | None = None,
) -> ImageEmbeddings:
    """Embed every usable image; cached images are neither decoded nor passed through the model."""
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if dtype not in ("float32", "float16"):
        raise InputError(f"dtype must be float32 or float16, got {dtype!r}")
    if not isinstance(images, ImageSet):
        images = read_images(images)
    paths = images.paths
    cache = EmbeddingCache(cache_dir, loaded) if cache_dir is not None else None
    keys = [EmbeddingCache.key(p) for p in paths]
    found = cache.load() if cache else {}
    feats: list[np.ndarray | None] = [found.get(k) for k in keys]
    todo = [i for i, f in enumerate(feats) if f is None]
    skipped = list(images.skipped)
    if todo:
        skipped += _encode(loaded, [paths[i] for i in todo], todo, feats, keys, cache,
                           batch_size, workers, max_pixels, flush_every, progress, timer)
    if cache:
        cache.compact()
    ok = [i for i, f in enumerate(feats) if f is not None]
    if not ok:
        first = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        raise InputError(f"none of the {len(paths)} images could be embedded ({first})")
    out = np.stack([feats[i] for i in ok]).astype(dtype)
    return ImageEmbeddings(out, images.records.iloc[ok].reset_index(drop=True), skipped,
                           n_cached=len(paths) - len(todo), n_encoded=len(todo) - (len(paths) - len(ok)),
                           model_identity=loaded.identity)


def _encode(loaded, todo_paths, todo, feats, keys, cache, batch_size, workers, max_pixels, flush_every, progress,
            timer=None):
    """Decode and encode the images not in the cache, flushing to the cache every `flush_every`."""
    if workers is None:
        workers = 0 if len(todo_paths) <= 2 * batch_size else min(2, os.cpu_count() or 1)
    dataset, collate = _Decode(todo_paths, loaded.preprocess, max_pixels), _collate
    if timer is not None:  # --profile: stage timings from the workers (cliplab.profile)
        dataset, collate = timer.instrument(dataset, collate, cache)
        timer.workers = workers
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                        pin_memory=loaded.device.type == "cuda",
                        prefetch_factor=4 if workers else None)
    skipped, pending_keys, pending = [], [], []
    bar = tqdm(total=len(todo_paths), desc="embedding images", unit="img", disable=not progress)
    with torch.inference_mode(), _autocast(loaded.device):
        for idx, batch, failed in (timer.batches(loader) if timer is not None else loader):
            skipped += [Skip(todo_paths[j], reason) for j, reason in failed]
            if batch is not None:
                out = loaded.model.encode_image(batch.to(loaded.device, non_blocking=True), normalize=True)
                out = torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()
                for j, f in zip(idx, out):
                    feats[todo[j]] = f
                    pending_keys.append(keys[todo[j]])
                    pending.append(f)
            if cache and len(pending) >= flush_every:
                cache.write(pending_keys, np.stack(pending))
                pending_keys, pending = [], []
            bar.update(len(idx) + len(failed))
    bar.close()
    if cache and pending:
        cache.write(pending_keys, np.stack(pending))
    return skipped


def _is_truncated(tokenizer, text: str) -> bool:
    """Whether the tokenizer cuts ``text`` to its context length (open_clip does so silently)."""
    encode, length = getattr(tokenizer, "encode", None), getattr(tokenizer, "context_length", None)
    return bool(encode and length) and len(encode(text)) + 2 > length  # + start and end tokens


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
            out = loaded.model.encode_text(tokens, normalize=True)
            out = torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()
            cache.update(zip(chunk, out))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([cache[t] for t in texts])


def write_embeddings(result: ImageEmbeddings, out: str | Path) -> Path:
    """embeddings.npy (row i = records.csv row i), records.csv, skipped.csv and embed.json in ``out``."""
    out = prepare_out_dir(out)
    with atomic_path(out / "embeddings.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, result.features)
    write_table(out / "records.csv", result.records)
    write_table(out / "skipped.csv", pd.DataFrame([(s.path, s.reason) for s in result.skipped],
                                                  columns=["path", "reason"]))
    write_json(out / "embed.json", {"model": result.model_identity, "n_images": len(result),
                                    "dim": int(result.features.shape[1]), "dtype": str(result.features.dtype),
                                    "n_cached": result.n_cached, "n_encoded": result.n_encoded,
                                    "n_skipped": len(result.skipped)})
    return out
