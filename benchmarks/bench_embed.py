"""Embedding throughput: embed_images over image files vs the model's pure forward pass.

For each model: the forward pass alone on pre-made tensors (the ceiling), a cold embed_images
run over PNG/JPEG files (decoding in DataLoader workers, cache filled), and a warm re-run
(everything cached). All in one process, so the ratios compare like with like.

    .venv/bin/python benchmarks/bench_embed.py [--n 2000] [--models cliplab-tiny,ViT-B-32]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cliplab import embed_images, load_model


def make_images(folder: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        im = Image.fromarray(a).resize((size, size), Image.BILINEAR)
        im.save(folder / (f"{i:05d}.png" if i % 2 else f"{i:05d}.jpg"), quality=90)


def forward_rate(loaded, n: int, batch: int) -> float:
    size = loaded.preprocess.transforms[1].size[0]
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        loaded.model.encode_image(x)  # warm-up
        start = time.perf_counter()
        for _ in range(0, n, batch):
            loaded.model.encode_image(x, normalize=True)
    return (n // batch) * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--models", default="cliplab-tiny,ViT-B-32")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            loaded = load_model(name, device="cpu")
            n = args.n if loaded.preprocess.transforms[1].size[0] <= 64 else max(args.n // 10, args.batch * 3)
            folder = Path(tmp) / name
            make_images(folder, n, 2 * loaded.preprocess.transforms[1].size[0])
            ceiling = forward_rate(loaded, n, args.batch)
            cache = Path(tmp) / f"cache-{name}"
            start = time.perf_counter()
            cold = embed_images(loaded, folder, batch_size=args.batch, workers=args.workers, cache_dir=cache,
                                progress=False)
            cold_s = time.perf_counter() - start
            start = time.perf_counter()
            warm = embed_images(loaded, folder, batch_size=args.batch, cache_dir=cache, progress=False)
            warm_s = time.perf_counter() - start
            assert warm.n_encoded == 0 and len(cold) == n
            rows.append((name, n, ceiling, n / cold_s, n / cold_s / ceiling, cold_s, warm_s, cold_s / warm_s))
    print(f"\n{'model':<14}{'images':>7}{'forward img/s':>15}{'embed img/s':>13}{'ratio':>7}"
          f"{'cold s':>8}{'warm s':>8}{'warm speed-up':>15}")
    for r in rows:
        print(f"{r[0]:<14}{r[1]:>7}{r[2]:>15.0f}{r[3]:>13.0f}{r[4]:>7.2f}{r[5]:>8.2f}{r[6]:>8.3f}{r[7]:>14.0f}x")


if __name__ == "__main__":
    main()
