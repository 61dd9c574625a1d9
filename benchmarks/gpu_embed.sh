#!/usr/bin/env bash
# GPU embedding throughput: embed_images (JPEG files decoded in DataLoader workers, pinned memory,
# non-blocking copies, fp16 autocast) against the pure forward pass on pre-made tensors on the device,
# for ViT-B-32 and ViT-L-14 with random weights (the same cost as pretrained ones) at batch 256.
# Prints a markdown table and writes it to --table (default: gpu_embed.md, or $OUT/gpu_embed.md if $OUT
# is set). Bounded by `timeout` to 290 s. On a machine without a GPU: --device cpu --quick (small, for checking).
#
#   benchmarks/gpu_embed.sh                       # on a CUDA machine
#   benchmarks/gpu_embed.sh --device cpu --quick  # smoke test anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 290 "$PY" - "$@" <<'EOF'
import argparse, os, platform, tempfile, time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cliplab import embed_images, load_model

ap = argparse.ArgumentParser(prog="gpu_embed.sh")
ap.add_argument("--device", default="cuda")
ap.add_argument("--quick", action="store_true", help="ViT-B-32 and cliplab-tiny on a few images (CPU check)")
ap.add_argument("--n", type=int, help="images per model (default 4096; quick: 64)")
ap.add_argument("--batch", type=int, help="batch size (default 256; quick: 32)")
ap.add_argument("--workers", type=int, default=min(16, max(1, (os.cpu_count() or 2) - 1)))
ap.add_argument("--models", help="comma-separated (default ViT-B-32,ViT-L-14; quick: cliplab-tiny,ViT-B-32)")
ap.add_argument("--table", default=str(Path(os.environ.get("OUT", ".")) / "gpu_embed.md"))
a = ap.parse_args()
n = a.n or (64 if a.quick else 4096)
batch = a.batch or (32 if a.quick else 256)
models = (a.models or ("cliplab-tiny,ViT-B-32" if a.quick else "ViT-B-32,ViT-L-14")).split(",")
dev = torch.device(a.device)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)


def make(i_folder):
    i, folder = i_folder
    rng = np.random.default_rng(i)  # smooth random pictures, 320 px: decoding and resizing cost like photos
    small = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(small).resize((320, 320), Image.BICUBIC).save(f"{folder}/{i:06d}.jpg", quality=90)


def forward_rate(loaded, size):
    x = torch.randn(batch, 3, size, size, device=dev)
    ctx = torch.autocast("cuda", dtype=torch.float16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    steps = max(2, n // batch)
    with torch.inference_mode(), ctx:
        for _ in range(2):
            loaded.model.encode_image(x, normalize=True)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            out = loaded.model.encode_image(x, normalize=True).float().cpu()  # embed_images fetches results too
        sync()
    assert out.shape[0] == batch
    return steps * batch / (time.perf_counter() - start)


rows = []
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    with Pool(a.workers) as pool:
        pool.map(make, [(i, tmp) for i in range(n)], chunksize=64)
    print(f"made {n} JPEG files in {time.perf_counter() - t0:.1f} s")
    for name in models:
        loaded = load_model(name, device=str(dev))
        size = loaded.preprocess.transforms[1].size[0]
        fwd = forward_rate(loaded, size)
        # the model is warm from forward_rate; starting the decoding workers is part of the cost
        start = time.perf_counter()
        r = embed_images(loaded, tmp, batch_size=batch, workers=a.workers, cache_dir=None, progress=False)
        sync()
        rate = len(r) / (time.perf_counter() - start)
        rows.append((name, size, fwd, rate))
        print(f"{name}: forward {fwd:,.0f} img/s, embed_images {rate:,.0f} img/s", flush=True)
        del loaded
        if dev.type == "cuda":
            torch.cuda.empty_cache()

gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
lines = [f"device: {gpu}; {os.cpu_count()} CPU cores, {a.workers} decoding workers; torch {torch.__version__}; "
         f"batch {batch}; {'fp16 autocast' if dev.type == 'cuda' else 'fp32'}; {n} JPEG files (320 px)",
         "", "| model | input px | forward img/s | embed_images img/s | embed / forward |", "|---|---:|---:|---:|---:|"]
lines += [f"| {m} (random weights) | {s} | {f:,.0f} | {e:,.0f} | {e / f:.2f} |" for m, s, f, e in rows]
table = "\n".join(lines)
print("\n" + table)
Path(a.table).write_text(table + "\n")
print(f"wrote {a.table}")
EOF
