"""Per-stage timings of an embedding run (``cliplab embed --profile``): what bounds the run.

Stages: read (bytes from disk or a tar stream), decode (to RGB pixels), preprocess (resize,
crop, normalise), forward (model, including the host-to-device copy and the sync that fetches
the result), write (cache shards), and wait (the main process blocked on DataLoader workers).
read, decode and preprocess run in the workers, in parallel with the forward pass, so their
shares of wall time are CPU time summed over workers and may add up to more than 100 %.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

STAGES = ("read", "decode", "preprocess", "wait", "forward", "write")
WORKER_STAGES = ("read", "decode", "preprocess")


@dataclass
class StageTimer:
    """Seconds per stage plus the wall time they are shares of; add() is cheap enough per image."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall: float = 0.0
    images: int = 0
    workers: int = 0
    ranks: int = 1  # merged timers: seconds are summed over ranks, shown per rank

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def merge(self, other: StageTimer) -> None:
        for stage, s in other.seconds.items():
            self.add(stage, s)
        self.wall = max(self.wall, other.wall)
        self.images += other.images

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def timed(self, name: str, fn: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return fn(*args, **kwargs)
        return wrapper

    def instrument(self, dataset: Any, collate: Callable, cache: Any) -> tuple[Dataset, Callable]:
        """embed.py's decoding dataset and collate, timed per stage in the workers; cache writes timed."""
        if cache is not None:
            cache.write = self.timed("write", cache.write)
        return _TimedDecode(dataset), _TimedCollate(collate)

    def batches(self, loader: Any) -> Iterator[Any]:
        """Iterate an instrumented loader: collect the workers' timings, time the waits and the rest."""
        it = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                *item, times = next(it)
            except StopIteration:
                return
            self.add("wait", time.perf_counter() - start)
            for stage, s in times.items():
                self.add(stage, s)
            start = time.perf_counter()
            yield tuple(item)
            self.add("forward", time.perf_counter() - start)  # the consumer's time; rows() takes write out

    def rows(self) -> list[tuple[str, float, float]]:
        """(stage, seconds per rank, share of wall time) per stage; forward excludes the cache writes."""
        s = {k: v / self.ranks for k, v in self.seconds.items()}
        s["forward"] = max(0.0, s.get("forward", 0.0) - s.get("write", 0.0))
        if not self.workers:  # the main process did the input stages itself while "waiting"
            s["wait"] = max(0.0, s.get("wait", 0.0) - sum(s.get(k, 0.0) for k in WORKER_STAGES))
        wall = self.wall or 1e-9
        return [(stage, s.get(stage, 0.0), s.get(stage, 0.0) / wall) for stage in STAGES]

    def report(self) -> str:
        """A small table; the biggest main-process stage is named as the bound."""
        rows = self.rows()
        rate = self.images / self.wall if self.wall else 0.0
        where = f"{self.ranks} ranks, seconds per rank, " if self.ranks > 1 else ""
        lines = [f"profile: {self.images} images in {self.wall:.2f} s ({rate:.1f} img/s; {where}"
                 f"{self.workers} decoding worker(s) per rank)", f"  {'stage':<11}{'seconds':>9}{'share':>8}"]
        for stage, sec, share in rows:
            note = "  (in workers, summed)" if stage in WORKER_STAGES and self.workers else ""
            lines.append(f"  {stage:<11}{sec:>9.2f}{share:>7.0%}{note}")
        main = {k: v for k, v, _ in rows if k in ("wait", "forward", "write")}
        if not self.workers:  # without workers the input stages run in the main process too
            main.update({k: v for k, v, _ in rows if k in WORKER_STAGES})
        bound = max(main, key=lambda k: main[k]) if any(main.values()) else "nothing"
        lines.append(f"  bound by: {'input (decoding workers)' if bound == 'wait' else bound}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"wall_s": self.wall, "images": self.images, "workers": self.workers, "ranks": self.ranks,
                "stages": {stage: {"seconds": sec, "share": share} for stage, sec, share in self.rows()}}


class _TimedDecode(Dataset):
    """The same work as embed's ``_Decode`` split into read / decode / preprocess, timed per item."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        from .data import ImageError, load_image

        times: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            with open(self.inner.paths[i], "rb") as f:
                raw = io.BytesIO(f.read())
        except OSError:
            raw = None  # load_image on the path gives the reason, as in an unprofiled run
        t1 = time.perf_counter()
        times["read"] = t1 - t0
        try:
            img = load_image(raw if raw is not None else self.inner.paths[i], self.inner.max_pixels)
        except ImageError as e:
            times["decode"] = time.perf_counter() - t1
            return i, None, str(e), times
        t2 = time.perf_counter()
        times["decode"] = t2 - t1
        x = self.inner.preprocess(img)
        times["preprocess"] = time.perf_counter() - t2
        return i, x, None, times


class _TimedCollate:
    """Wraps a collate function: the batch plus the summed stage times of its items."""

    def __init__(self, inner: Callable):
        self.inner = inner

    def __call__(self, items: list[tuple]) -> tuple:
        times: dict[str, float] = {}
        for *_, t in items:
            for stage, s in t.items():
                times[stage] = times.get(stage, 0.0) + s
        return (*self.inner([tuple(it[:3]) for it in items]), times)
