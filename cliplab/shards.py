"""Webdataset ``.tar`` shards as an image source for embedding: streamed, never unpacked to files.

``'/data/{00000..01023}.tar'`` (brace-expanded by webdataset; several lists joined by ``::``)
names the shards. Each sample's image is decoded in DataLoader workers, one shard per worker at a
time, and cached under a key made of the shard's identity (path, size, mtime), the sample's position
and its ``__key__``. When a shard is done, its index (sample keys, captions, json metadata, skips)
is written to the cache too, so a resumed run neither re-reads nor re-encodes finished shards, and
rank 0 can assemble the outputs in shard order without the other ranks' results in memory.

A truncated shard keeps the samples before the damage; the rest become one counted skip.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from .atomic import write_json
from .data import DEFAULT_MAX_PIXELS, ImageError, Skip, load_image
from .embed import EmbeddingCache, ImageEmbeddings, _autocast
from .errors import InputError
from .models import LoadedModel
from .profile import StageTimer

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm")


def is_shard_spec(source: str | Path) -> bool:
    """Whether ``--images`` names webdataset shards rather than a folder or a manifest."""
    return all(part.strip().endswith(".tar") for part in str(source).split("::"))


@dataclass
class ShardSet:
    """An ordered list of local shard files; the outputs follow this order, then the order inside each."""

    urls: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.urls)


def read_shards(spec: str) -> ShardSet:
    """Expand a shard spec; no match, a missing shard or a repeated one is a one-line InputError."""
    from webdataset.shardlists import expand_urls

    if "://" in spec or spec.startswith("pipe:"):
        raise InputError(f"{spec}: only local shard files are supported (copy or mount them first)")
    urls = [os.path.abspath(os.path.expanduser(u)) for part in spec.split("::") for u in expand_urls(part.strip())]
    missing = [u for u in urls if not os.path.isfile(u)]
    if len(missing) == len(urls):
        raise InputError(f"{spec}: the shard list matches no file ({len(urls)} name(s), e.g. {urls[0]})")
    if missing:
        raise InputError(f"{spec}: {len(missing)} of {len(urls)} shards do not exist (first: {missing[0]})")
    if len(set(urls)) < len(urls):
        raise InputError(f"{spec}: a shard is listed twice ({next(u for u in urls if urls.count(u) > 1)})")
    return ShardSet(urls, spec)


def shard_id(url: str) -> str:
    st = os.stat(url)
    return hashlib.sha1(f"{url}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()


def sample_key(sid: str, position: int, key: str) -> str:
    return hashlib.sha1(f"{sid}\0{position}\0{key}".encode()).hexdigest()


def _index_path(cache: EmbeddingCache, sid: str) -> Path:
    return cache.dir / "wds-index" / f"{sid}.json"


def _metadata(sample: dict[str, Any]) -> dict[str, Any]:
    """The caption (``txt``) and the scalar fields of ``json``, as manifest-like columns."""
    meta: dict[str, Any] = {}
    if isinstance(sample.get("txt"), bytes):
        meta["caption"] = sample["txt"].decode("utf-8", "replace")
    if isinstance(sample.get("json"), bytes):
        try:
            info = json.loads(sample["json"])
        except ValueError:
            info = {}
        if isinstance(info, dict):
            meta.update({k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))
                         and k not in ("path", "shard", "key", "caption")})
    return meta


class ShardSamples(IterableDataset):
    """Yields ("part", shard, rows, images, times) chunks and one ("end", shard, n, error) per shard."""

    def __init__(self, urls: list[str], preprocess: Any, max_pixels: int, cached: set[str], batch_size: int):
        self.urls, self.preprocess, self.max_pixels = urls, preprocess, max_pixels
        self.cached, self.batch_size = cached, batch_size

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        mine = self.urls[info.id::info.num_workers] if info else self.urls
        for url in mine:
            yield from self._shard(url)

    def _shard(self, url: str) -> Iterator[tuple]:
        import webdataset as wds

        errors: list[str] = []

        def handler(e: Exception) -> bool:
            text = str(e.args[0]) if e.args else type(e).__name__
            errors.append(text.split(" @ <")[0])  # webdataset appends the file object's repr
            return True  # keep what was read; the damage is reported as one skip

        sid = shard_id(url)
        rows: list[dict[str, Any]] = []
        xs: list[torch.Tensor] = []
        times = {"read": 0.0, "decode": 0.0, "preprocess": 0.0}
        samples = iter(wds.tarfile_to_samples(handler=handler)([{"url": url}]))
        n = 0
        while True:
            t0 = time.perf_counter()
            sample = next(samples, None)
            times["read"] += time.perf_counter() - t0
            if sample is None:
                break
            key = str(sample.get("__key__", n))
            row = {"key": key, "ck": sample_key(sid, n, key), "meta": _metadata(sample), "status": "encode"}
            n += 1
            if row["ck"] in self.cached:
                row["status"] = "cached"
            else:
                x, reason = self._decode(sample, times)
                if x is None:
                    row["status"] = reason
                else:
                    xs.append(x)
            rows.append(row)
            if len(xs) >= self.batch_size:
                yield "part", url, rows, torch.stack(xs), times
                rows, xs, times = [], [], dict.fromkeys(times, 0.0)
        yield "part", url, rows, (torch.stack(xs) if xs else None), times
        yield "end", url, n, "; ".join(dict.fromkeys(errors)) or None

    def _decode(self, sample: dict[str, Any], times: dict[str, float]) -> tuple[torch.Tensor | None, str]:
        name = next((k for k in IMAGE_KEYS if isinstance(sample.get(k), bytes)), None)
        if name is None:
            return None, "no image in sample (looked for " + ", ".join(IMAGE_KEYS) + ")"
        t0 = time.perf_counter()
        try:
            # PIL opens a file object as well as a path; data.load_image is typed for paths only
            img = load_image(io.BytesIO(sample[name]), self.max_pixels)
        except ImageError as e:
            return None, str(e)
        finally:
            times["decode"] += time.perf_counter() - t0
        t1 = time.perf_counter()
        x = self.preprocess(img)
        times["preprocess"] += time.perf_counter() - t1
        return x, ""


def shard_done(cache: EmbeddingCache, url: str, found: dict[str, np.ndarray]) -> bool:
    """Whether this shard's index exists and every sample it lists as embedded is in the cache."""
    path = _index_path(cache, shard_id(url))
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return all(k in found for k, ok in zip(index["ck"], index["ok"]) if ok)


def encode_shards(loaded: LoadedModel, urls: list[str], cache: EmbeddingCache, batch_size: int = 64,
                  workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, flush_every: int = 4096,
                  progress: bool = True, timer: StageTimer | None = None) -> int:
    """Encode the samples of ``urls`` not yet in the cache and write each shard's index; returns how many."""
    found = cache.load()
    todo = [u for u in urls if not shard_done(cache, u, found)]
    if not todo:
        return 0
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = min(workers, len(todo))
    timer = timer or StageTimer()
    timer.workers = workers
    data = ShardSamples(todo, loaded.preprocess, max_pixels, set(found), batch_size)
    loader = DataLoader(data, batch_size=None, num_workers=workers, pin_memory=loaded.device.type == "cuda",
                        prefetch_factor=4 if workers else None)
    seen: dict[str, list[dict[str, Any]]] = {u: [] for u in todo}
    pending_keys: list[str] = []
    pending: list[np.ndarray] = []
    n_encoded = 0
    bar = tqdm(total=len(todo), desc="embedding shards", unit="shard", disable=not progress)
    with torch.inference_mode(), _autocast(loaded.device):
        it = iter(loader)
        while True:
            with timer.stage("wait"):
                item = next(it, None)
            if item is None:
                break
            if item[0] == "part":
                _, url, rows, x, times = item
                for stage, s in times.items():
                    timer.add(stage, s)
                if x is not None:
                    with timer.stage("forward"):
                        # open_clip's CLIP.encode_image; nn.Module.__getattr__ types it as a Tensor
                        out = loaded.model.encode_image(  # type: ignore[operator]
                            x.to(loaded.device, non_blocking=True), normalize=True)
                        out = torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()
                    encoded = [r for r in rows if r["status"] == "encode"]
                    pending_keys += [r["ck"] for r in encoded]
                    pending += list(out)
                    n_encoded += len(encoded)
                seen[url] += rows
            else:
                _, url, _, error = item
                with timer.stage("write"):  # features first: an index never names a missing entry
                    if pending:
                        cache.write(pending_keys, np.stack(pending))
                    pending_keys, pending = [], []
                    _write_index(cache, url, seen.pop(url), error)
                bar.update(1)
            if len(pending) >= flush_every:
                with timer.stage("write"):
                    cache.write(pending_keys, np.stack(pending))
                    pending_keys, pending = [], []
    bar.close()
    timer.images += n_encoded
    return n_encoded


def _write_index(cache: EmbeddingCache, url: str, rows: list[dict[str, Any]], error: str | None) -> None:
    skipped = [[f"{url}#{r['key']}", r["status"]] for r in rows if r["status"] not in ("encode", "cached")]
    if error:
        skipped.append([url, f"truncated or damaged shard: {len(rows)} sample(s) read before it ({error}); "
                             "the rest of the shard is lost"])
    write_json(_index_path_mkdir(cache, url), {
        "url": url, "keys": [r["key"] for r in rows], "ck": [r["ck"] for r in rows],
        "ok": [r["status"] in ("encode", "cached") for r in rows], "meta": [r["meta"] for r in rows],
        "skipped": skipped})


def _index_path_mkdir(cache: EmbeddingCache, url: str) -> Path:
    path = _index_path(cache, shard_id(url))
    path.parent.mkdir(exist_ok=True)
    return path


def assemble_shards(loaded: LoadedModel, shards: ShardSet, cache: EmbeddingCache, dtype: str = "float32",
                    n_encoded: int = 0) -> ImageEmbeddings:
    """The embeddings of every shard in order, read from the cache and the shard indexes."""
    found = cache.load()
    feats, records, skipped = [], [], []
    for url in shards.urls:
        index = json.loads(_index_path(cache, shard_id(url)).read_text())
        for key, ck, ok, meta in zip(index["keys"], index["ck"], index["ok"], index["meta"]):
            if not ok:
                continue
            if ck not in found:
                skipped.append(Skip(f"{url}#{key}", "embedding missing from the cache (removed during the run?)"))
                continue
            feats.append(found[ck])
            records.append({"path": f"{url}#{key}", "shard": url, "key": key, **meta})
        skipped += [Skip(p, r) for p, r in index["skipped"]]
    if not feats:
        first = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        raise InputError(f"{shards.source}: none of the samples could be embedded ({first or 'no samples'})")
    cache.compact()
    return ImageEmbeddings(np.stack(feats).astype(dtype), pd.DataFrame(records), skipped,
                           n_cached=len(feats) - n_encoded, n_encoded=n_encoded, model_identity=loaded.identity)
