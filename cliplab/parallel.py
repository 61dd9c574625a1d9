"""``cliplab embed`` on one process or many: data-parallel embedding under torchrun.

Under ``torchrun`` (RANK / WORLD_SIZE set) every rank joins the process group (cliplab.train's
``init_distributed``: NCCL on CUDA, gloo on CPU), checks that all ranks see the same input, model
and output, takes a deterministic part of the image set (a contiguous block of manifest or folder
rows, or every N-th webdataset shard), encodes it into its own cache shards (no locks: each file
is written whole under a unique name), and reports. Rank 0 then reads the cache and writes the
outputs in the input's order. Killing any rank and running the same command again resumes: the
cache holds what was finished. A plain ``python`` run is the world of one and takes the same path.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from . import data
from .atomic import write_json
from .data import DEFAULT_MAX_PIXELS, ImageSet, parse_where, select
from .embed import DEFAULT_CACHE_DIR, EmbeddingCache, ImageEmbeddings, embed_images, write_embeddings
from .errors import CliplabError, InputError, OutputError
from .models import LoadedModel, load_model
from .profile import StageTimer
from .shards import ShardSet, assemble_shards, encode_shards, is_shard_spec, read_shards
from .train.distributed import DistInfo, cleanup, init_distributed

# ranks wait for the slowest one at the end; the process group's default timeout (10-30 min) is too short
WAIT_TIMEOUT = timedelta(hours=48)
RUN_FILE = "embed-input.json"  # in the output folder: which input, model and settings produced it


def default_batch_size(device: torch.device) -> int:
    """256 on a GPU (ViT-L-14 at fp16 fits in 16 GB), 64 on a CPU (more only costs memory)."""
    return 256 if device.type == "cuda" else 64


@dataclass
class EmbedJob:
    """What ``cliplab embed`` was asked for; every rank of a torchrun job must build the same one."""

    images: str
    out: str
    model: str | None = None
    pretrained: str | None = None
    device: str | None = None
    image_column: str | None = None
    where: list[str] = field(default_factory=list)
    dtype: str = "float32"
    batch_size: int | None = None  # None: default_batch_size(device)
    workers: int | None = None
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR  # None: a private cache beside --out, removed at the end
    max_pixels: int = DEFAULT_MAX_PIXELS
    flush_every: int = 4096
    progress: bool = True
    profile: bool = False
    overwrite: bool = False
    verify_cache: bool = False  # cache keyed by file content (see cliplab.embed_images)


@dataclass
class EmbedOutcome:
    result: ImageEmbeddings | None  # on rank 0 only
    out: Path | None
    n_duplicates: int
    world_size: int
    timer: StageTimer | None
    notes: list[str] = field(default_factory=list)  # odd but usable input (cliplab.data.ImageSet.notes)


def run_embed(job: EmbedJob) -> EmbedOutcome:
    """Embed ``job.images`` on this process or, under torchrun, on all ranks together."""
    info = init_distributed(job.device)
    try:
        return _run(job, info)
    finally:
        cleanup(info)


def _prepare(job: EmbedJob, info: DistInfo, out: Path) -> tuple[Any, LoadedModel | None, ShardSet | ImageSet | None]:
    """Load the model and read the input: (what this rank sees, or the error it met; model; source)."""
    loaded: LoadedModel | None = None
    source: ShardSet | ImageSet | None = None
    try:
        if is_shard_spec(job.images) and (job.where or job.image_column):
            raise InputError("--where and --image-column need a manifest; webdataset shards have neither")
        if is_shard_spec(job.images):
            source = read_shards(job.images)
        else:  # read (and --where checked) before the model loads: a typo is reported at once
            images, where = data.read_images(job.images, job.image_column), parse_where(job.where)
            data.check_where(images.records, where, images.source)
            source = select(images, where)
        loaded = load_model(job.model, job.pretrained, str(info.device))
        described = _describe(job, loaded, source, out)
        _check_out_folder(out, described, job.overwrite)
        return described, loaded, source
    except CliplabError as e:
        return e, loaded, source


def _run(job: EmbedJob, info: DistInfo) -> EmbedOutcome:
    group = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT) if info.enabled else None
    out = Path(job.out).expanduser().absolute()
    state, loaded, source = _prepare(job, info, out)
    _agree(info, group, state)
    assert loaded is not None and source is not None  # _agree raised otherwise
    batch = job.batch_size or default_batch_size(info.device)
    private = job.cache_dir is None
    # one process embedding files needs no cache; ranks and shard indexes pass their results through one
    needs_cache = info.enabled or isinstance(source, ShardSet)
    cache_dir = Path(job.cache_dir) if job.cache_dir is not None else (
        Path(f"{out}.embed-parts") if needs_cache else None)
    timer = StageTimer() if job.profile else None

    start = time.perf_counter()
    try:
        n_encoded, whole = _embed_part(job, info, loaded, source, cache_dir, batch, timer)
        report: Any = (n_encoded, timer)
    except CliplabError as e:
        report = e
    if timer is not None:
        timer.wall = time.perf_counter() - start
    reports = _gather(info, group, report)
    n_encoded = sum(r[0] for r in reports)
    merged = _merge_timers([r[1] for r in reports])
    if not info.is_main:
        _gather(info, group, None)  # wait for rank 0's writing, so errors there end every rank together
        return EmbedOutcome(None, None, 0, info.world_size, merged)
    try:
        result = whole if whole is not None else _assemble(job, loaded, source, cache_dir, batch, n_encoded)
        written = write_embeddings(result, out)
        write_json(written / RUN_FILE, _describe(job, loaded, source, out))
        if merged is not None:
            write_json(written / "profile.json", merged.as_dict())
        if private and cache_dir is not None:
            shutil.rmtree(cache_dir, ignore_errors=True)
        done: Any = None
    except CliplabError as e:
        done = e
    _gather(info, group, done)
    dup, notes = (source.n_duplicates, list(source.notes)) if isinstance(source, ImageSet) else (0, [])
    return EmbedOutcome(result, written, dup, info.world_size, merged, notes)


def _embed_part(job: EmbedJob, info: DistInfo, loaded: LoadedModel, source: ShardSet | ImageSet,
                cache_dir: Path | None, batch: int, timer: StageTimer | None) -> tuple[int, ImageEmbeddings | None]:
    """Encode this rank's part into the cache: how many images it encoded (and, on one process, the result)."""
    if isinstance(source, ShardSet):
        assert cache_dir is not None
        mine = source.urls[info.rank::info.world_size]
        return (encode_shards(loaded, mine, EmbeddingCache(cache_dir, loaded), batch, job.workers, job.max_pixels,
                              job.flush_every, job.progress and info.is_main, timer) if mine else 0), None
    lo, hi = rank_range(len(source), info.rank, info.world_size)
    if lo == hi:
        return 0, None
    part = source if not info.enabled else ImageSet(source.records.iloc[lo:hi].reset_index(drop=True), source.source)
    try:
        r = embed_images(loaded, part, batch, job.workers, cache_dir, job.dtype, job.max_pixels,
                         job.flush_every, job.progress and info.is_main, verify_cache=job.verify_cache, timer=timer)
    except InputError:
        if not info.enabled:
            raise
        return 0, None  # e.g. none of this part's images decode: rank 0's pass over the whole set decides
    if timer is not None:
        timer.images += r.n_encoded
    return r.n_encoded, (None if info.enabled else r)


def _assemble(job: EmbedJob, loaded: LoadedModel, source: ShardSet | ImageSet, cache_dir: Path | None,
              batch: int, n_encoded: int) -> ImageEmbeddings:
    """Rank 0: every image's embedding in the input's order, from the cache the ranks filled."""
    if isinstance(source, ShardSet):
        assert cache_dir is not None
        return assemble_shards(loaded, source, EmbeddingCache(cache_dir, loaded), job.dtype, n_encoded)
    # the images every rank encoded are cached; only images that failed are tried (and fail) again
    r = embed_images(loaded, source, batch, job.workers, cache_dir, job.dtype, job.max_pixels,
                     job.flush_every, progress=False, verify_cache=job.verify_cache)
    r.n_encoded += n_encoded
    r.n_cached = len(r) - r.n_encoded
    return r


def rank_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous block of ``n`` rows: sizes differ by at most one, in rank order."""
    bounds = np.linspace(0, n, world + 1).round().astype(int)
    return int(bounds[rank]), int(bounds[rank + 1])


def _describe(job: EmbedJob, loaded: LoadedModel, source: ShardSet | ImageSet, out: Path) -> dict[str, Any]:
    """What defines the run's results; equal on every rank and between a run and its resumption."""
    items = source.urls if isinstance(source, ShardSet) else source.paths
    digest = hashlib.sha256("\0".join(items).encode()).hexdigest()[:16]
    return {"images": job.images, "n_items": len(items), "items_sha256": digest, "where": list(job.where),
            "model": loaded.identity, "preprocess": loaded.preprocess_key, "dtype": job.dtype, "out": str(out)}


def _check_out_folder(out: Path, described: dict[str, Any], overwrite: bool) -> None:
    """Refuse an output folder holding another run's results unless --overwrite."""
    if overwrite or not (out / "embed.json").exists():
        return
    try:
        before = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):  # written before this file existed: compare the model only
        try:
            before = {**described, "model": json.loads((out / "embed.json").read_text()).get("model")}
        except (OSError, ValueError):
            before = {}
    keys = ("images", "n_items", "items_sha256", "where", "model", "dtype")
    diff = [k for k in keys if before.get(k) != described[k]]
    if diff:
        raise OutputError(f"{out} holds the results of another run (different {', '.join(diff)}); "
                          "choose another --out or pass --overwrite")


def _gather(info: DistInfo, group: Any, value: Any) -> list[Any]:
    """Every rank's value on every rank; a CliplabError from any rank is raised on all of them."""
    values = [value]
    if info.enabled:
        values = [None] * info.world_size
        dist.all_gather_object(values, value, group=group)
    for rank, v in enumerate(values):
        if isinstance(v, CliplabError):
            where = f" (on rank {rank})" if info.enabled else ""
            raise type(v)(f"{v}{where}")
    return values


def _agree(info: DistInfo, group: Any, described: Any) -> None:
    """One clear error when the ranks were started with different inputs, models or outputs."""
    views = _gather(info, group, described)
    for rank, view in enumerate(views[1:], start=1):
        diff = [k for k in views[0] if view.get(k) != views[0][k]]
        if diff:
            k = diff[0]
            raise InputError(f"ranks disagree on the input: rank 0 has {k}={views[0][k]!r}, rank {rank} has "
                             f"{k}={view.get(k)!r}; start every rank with the same command and files")


def _merge_timers(timers: list[StageTimer | None]) -> StageTimer | None:
    if not timers or timers[0] is None:
        return None
    total = StageTimer()
    for t in timers:
        if t is not None:
            total.merge(t)
    total.workers, total.ranks = timers[0].workers, len(timers)
    return total


