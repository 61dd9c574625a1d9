"""Batches for the training loop, three ways, all yielding (images, tokens) for this rank.

* ``CachedBatches``: every image decoded and resized once into a uint8 tensor in RAM; each epoch
  only indexes it and applies a cheap random shift on tensors. On small CPUs this removes the
  per-epoch PNG decoding and PIL transforms that otherwise dominate the step time.
* ``FileBatches``: decode from files in DataLoader workers with open_clip's training transform,
  for data sets larger than RAM.
* ``WdsBatches``: webdataset ``.tar`` shards (brace-expanded urls) for large data.

Randomness comes from generators seeded by (seed, epoch, batch) or (seed, epoch, sample), not
from global state, so the batches of a resumed run are bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data import ImageError, Skip, load_image
from .data import epoch_order, global_batch, mix_seed, rank_slice
from .distributed import DistInfo

Batch = tuple[torch.Tensor, torch.Tensor]


def pil_stage(preprocess) -> Callable:
    """open_clip's transform up to (not including) ToTensor: resize + crop on a PIL image."""
    from torchvision.transforms import Compose

    stages = []
    for t in getattr(preprocess, "transforms", [preprocess]):
        if "ToTensor" in type(t).__name__:
            break
        stages.append(t)
    return Compose(stages)


class DecodeDataset(Dataset):
    """Decode + resize one image to a uint8 HWC array; a failure gives None and the reason.

    Arrays, not tensors: a tensor returned by a DataLoader worker travels through its own shared-memory
    segment, which for small images costs several times the decoding (1,600 32 px PNGs: 1.16 s with 2
    workers as tensors, 0.31 s as arrays, 0.29 s in-process; benchmarks/bench_train.py).
    """

    def __init__(self, paths: list[str], transform: Callable):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, str]:
        try:
            img = self.transform(load_image(self.paths[i]))
        except ImageError as e:
            return None, str(e)
        return np.asarray(img.convert("RGB"), dtype=np.uint8), ""


def decode_all(paths: list[str], transform: Callable, workers: int,
               progress: bool = False) -> tuple[torch.Tensor, np.ndarray, list[Skip]]:
    """All images as one uint8 tensor [N, 3, H, W] plus a mask of those that decoded, and the skips."""
    loader = DataLoader(DecodeDataset(paths, transform), batch_size=64, num_workers=workers,
                        collate_fn=list, shuffle=False)
    if progress:
        from tqdm import tqdm
        loader = tqdm(loader, desc="decode images", unit="batch", leave=False)
    arrays: list[np.ndarray] = []
    ok: list[bool] = []
    skipped: list[Skip] = []
    for chunk in loader:
        for x, reason in chunk:
            i = len(ok)
            ok.append(x is not None)
            if x is None:
                skipped.append(Skip(paths[i], reason))
            else:
                arrays.append(x)
    if not arrays:
        return torch.empty(0, 3, 1, 1, dtype=torch.uint8), np.array(ok, dtype=bool), skipped
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, np.array(ok, dtype=bool), skipped


def random_shift(x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
    """Translate each image by its (dy, dx) with edge padding; flip where ``flips`` is True."""
    s = int(shifts.abs().max().item()) if shifts.numel() else 0
    if s:
        _, _, h, w = x.shape
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        x = torch.stack([padded[i, :, s + dy:s + dy + h, s + dx:s + dx + w]
                         for i, (dy, dx) in enumerate(shifts.tolist())])
    if flips is not None and flips.any():
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    return x


class CachedBatches:
    """Training batches from images decoded once into RAM (uint8) and tokens computed once."""

    def __init__(self, images: torch.Tensor, tokens: torch.Tensor, mean, std, batch_size: int,
                 dist: DistInfo, seed: int, shift: int, flip: bool):
        self.images, self.tokens = images, tokens
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.batch_size, self.dist, self.seed, self.shift, self.flip = batch_size, dist, seed, shift, flip
        self.n_batches = len(images) // batch_size
        self.skipped: list[Skip] = []

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = epoch_order(len(self.images), self.seed, epoch)
        mine = rank_slice(self.batch_size, self.dist.rank, self.dist.world_size)
        device = self.dist.device
        for b in range(start, self.n_batches):
            idx = torch.from_numpy(global_batch(order, b, self.batch_size))
            gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch, b))
            shifts = torch.randint(-self.shift, self.shift + 1, (len(idx), 2), generator=gen)
            flips = torch.rand(len(idx), generator=gen) < 0.5 if self.flip else None
            idx, shifts = idx[mine], shifts[mine]
            x = random_shift(self.images[idx].float(), shifts, flips[mine] if flips is not None else None)
            x = (x - self.mean) / self.std
            yield (x.to(device, non_blocking=True), self.tokens[idx].to(device, non_blocking=True))


class FileDataset(Dataset):
    """One training pair decoded from its file; the transform's randomness is seeded per sample."""

    def __init__(self, paths: list[str], captions: list[str], transform: Callable, tokenizer: Callable):
        self.paths, self.captions, self.transform, self.tokenizer = paths, captions, transform, tokenizer

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]):
        i, sample_seed = key
        try:
            img = load_image(self.paths[i])
        except ImageError as e:
            return None, self.paths[i], str(e)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            x = self.transform(img)
        return x, self.tokenizer([self.captions[i]])[0], ""


class RankBatchSampler(Sampler):
    """This rank's part of each global batch of one epoch, from batch ``start`` on, as (index, seed) keys."""

    def __init__(self, n: int, batch_size: int, dist: DistInfo, seed: int, epoch: int, start: int):
        self.n, self.batch_size, self.dist, self.seed, self.epoch, self.start = n, batch_size, dist, seed, epoch, start

    def __len__(self) -> int:
        return max(0, self.n // self.batch_size - self.start)

    def __iter__(self):
        order = epoch_order(self.n, self.seed, self.epoch)
        mine = rank_slice(self.batch_size, self.dist.rank, self.dist.world_size)
        for b in range(self.start, self.n // self.batch_size):
            idx = global_batch(order, b, self.batch_size)[mine]
            yield [(int(i), mix_seed(self.seed, self.epoch, int(i))) for i in idx]


def collate_pairs(items):
    good = [(x, t) for x, t, reason in items if x is not None]
    bad = [Skip(p, reason) for x, p, reason in items if x is None]
    if not good:
        return None, None, bad
    return torch.stack([x for x, _ in good]), torch.stack([t for _, t in good]), bad


class FileBatches:
    """Training batches decoded from files by DataLoader workers (for data sets larger than RAM)."""

    def __init__(self, paths: list[str], captions: list[str], transform: Callable, tokenizer: Callable,
                 batch_size: int, dist: DistInfo, seed: int, workers: int):
        self.dataset = FileDataset(paths, captions, transform, tokenizer)
        self.batch_size, self.dist, self.seed, self.workers = batch_size, dist, seed, workers
        self.n_batches = len(paths) // batch_size
        self.skipped: list[Skip] = []

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        sampler = RankBatchSampler(len(self.dataset), self.batch_size, self.dist, self.seed, epoch, start)
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.workers,
                            collate_fn=collate_pairs, pin_memory=self.dist.device.type == "cuda")
        for x, t, bad in loader:
            self.skipped.extend(bad)
            if x is None:
                continue
            yield x.to(self.dist.device, non_blocking=True), t.to(self.dist.device, non_blocking=True)


class WdsBatches:
    """Training batches from webdataset shards; shards are shuffled per (seed, epoch) and split by rank."""

    def __init__(self, urls: str, transform: Callable, tokenizer: Callable, batch_size: int,
                 num_samples: int, dist: DistInfo, seed: int, workers: int):
        import webdataset as wds

        from ..errors import InputError

        self.shards = [u for part in urls.split("::") for u in wds.shardlists.expand_urls(part)]
        if len(self.shards) < dist.world_size:
            raise InputError(f"{len(self.shards)} webdataset shard(s) for {dist.world_size} ranks: "
                             "need at least one shard per rank")
        self.transform, self.tokenizer = transform, tokenizer
        self.batch_size, self.dist, self.seed, self.workers = batch_size, dist, seed, workers
        self.n_batches = num_samples // batch_size
        self.skipped: list[Skip] = []

    def _pipeline(self, epoch: int):
        import webdataset as wds

        shards = list(self.shards)
        random.Random(mix_seed(self.seed, epoch)).shuffle(shards)
        shards = shards[self.dist.rank::self.dist.world_size]
        tokenize = self.tokenizer
        return wds.DataPipeline(
            wds.SimpleShardList(shards), wds.split_by_worker,
            wds.tarfile_to_samples(handler=wds.warn_and_continue),
            wds.shuffle(1000, initial=100, rng=random.Random(mix_seed(self.seed, epoch, self.dist.rank))),
            wds.decode("pilrgb", handler=wds.warn_and_continue),
            wds.to_tuple("jpg;png;jpeg;webp", "txt", handler=wds.warn_and_continue),
            wds.map_tuple(self.transform, lambda s: tokenize([s])[0]),
            wds.batched(self.batch_size // self.dist.world_size, partial=False),
        ), len(shards)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        import webdataset as wds

        pipeline, n_shards = self._pipeline(epoch)
        gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch, self.dist.rank))
        loader = wds.WebLoader(pipeline, batch_size=None, num_workers=min(self.workers, n_shards), generator=gen)
        for b, (x, t) in enumerate(islice(loader, self.n_batches)):
            if b >= start:  # resuming mid-epoch: the skipped batches are read again, not trained on
                yield x.to(self.dist.device, non_blocking=True), t.to(self.dist.device, non_blocking=True)
