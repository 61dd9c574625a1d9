"""Embedding throughput: embed_images over image files vs the model's pure forward pass.

For each model: the forward pass alone on pre-made tensors (the ceiling), a cold embed_images
run over PNG/JPEG files (decoding in DataLoader workers, cache filled), and a warm re-run
(everything cached). All in one process, so the ratios compare like with like.

``--dup-rows N`` also times a manifest of N rows naming 10 images (each file should be decoded and
encoded once, not once per row), with an empty cache and warm, and the peak memory of each run.

    .venv/bin/python benchmarks/bench_embed.py [--n 2000] [--models cliplab-tiny,ViT-B-32] [--dup-rows 20000]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
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
        im = Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR)
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


_DUP_RUN = """
import resource, sys, time
from cliplab import embed_images, load_model
loaded = load_model("cliplab-tiny", device="cpu")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
r = embed_images(loaded, sys.argv[1], cache_dir=sys.argv[2], progress=False)
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(time.perf_counter() - start, r.n_encoded, len(r), peak)
"""


def duplicate_rows(folder: Path, rows: int) -> list[tuple]:
    """Cold and warm embed of a manifest of ``rows`` rows naming 10 images, each in a fresh process
    (so peak RSS is that run's): (run, seconds, files encoded, rows out, peak MB above the loaded model)."""
    make_images(folder, 10, 64)
    names = sorted(p.name for p in folder.iterdir())
    manifest = folder / "manifest.csv"
    manifest.write_text("image,row\n" + "".join(f"{names[i % 10]},{i}\n" for i in range(rows)))
    out = []
    for run in ("empty cache", "warm cache"):
        p = subprocess.run([sys.executable, "-c", _DUP_RUN, str(manifest), str(folder / "cache")],
                           capture_output=True, text=True, check=True, cwd=folder)  # cwd: not this checkout
        seconds, encoded, n, mb = p.stdout.split()
        out.append((run, float(seconds), int(encoded), int(n), float(mb)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--models", default="cliplab-tiny,ViT-B-32")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--dup-rows", type=int, default=0, help="also time a manifest of N rows naming 10 images")
    ap.add_argument("--only-dup", action="store_true", help="only the --dup-rows measurement")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    if args.dup_rows:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"\n{args.dup_rows} manifest rows naming 10 images (cliplab-tiny)")
            print(f"{'run':<13}{'seconds':>9}{'encoded':>9}{'rows':>8}{'peak MB':>9}")
            for r in duplicate_rows(Path(tmp), args.dup_rows):
                print(f"{r[0]:<13}{r[1]:>9.2f}{r[2]:>9}{r[3]:>8}{r[4]:>9.0f}")
        if args.only_dup:
            return
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
