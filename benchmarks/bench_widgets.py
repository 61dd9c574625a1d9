"""Benchmark of the notebook tools: projection, PromptLab edits, EmbeddingExplorer on many points.

    .venv/bin/python benchmarks/bench_widgets.py            # all rows (about 3 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_widgets.py --quick    # skip the numba-cold UMAP subprocess

Rows:
- UMAP of 10,000 x 512 embeddings: with nothing compiled (a subprocess with an empty numba cache:
  the first UMAP ever on a machine), ``warm_up_umap()`` (what an install step would run), first call
  in a process (numba's disk cache warm), an uncached call in a warm process, and the cached call
  (same contents: read from the projection cache).
- PCA of the same (the fast option).
- PromptLab on 10,000 cached image embeddings (8 classes + 1 flagged label, 2 attributes): adding a
  template (encodes 9 new prompts) and renaming a class, until the figures' data are updated in
  Python; with a randomly initialised ViT-B-32 (the real text-tower cost) and with cliplab-tiny.
- EmbeddingExplorer on 100,000 points: build (downsampled to 20,000 for display) and recolour, and
  the size of the figure sent to the browser; the same without downsampling for comparison.
- Widget creation on the demo data (the demo's synthetic test split and model, cliplab.demo), each in a fresh
  interpreter as in a notebook: importing the widgets, then building PromptLab, EmbeddingExplorer
  (PCA) and AuditDashboard (the audit itself is timed apart). Target: under 3 s each.
- The report's first paint (first-contentful-paint in Debian's chromium, when playwright is installed)
  and its size. Target: under 0.5 s and 1 MB.
Timings are wall-clock seconds on whatever machine runs this; compare rows within one run.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CLASSES = ["kite", "guitar", "book", "flower", "ball", "cup", "key", "phone"]
TEMPLATES = ["a photo of a person holding a {}.", "a photo of a {}.", "a {}.", "a drawing of a {}.",
             "itap of a {}."]


def clustered(n: int, dim: int = 512, k: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around k centres (CLIP-like: clusters on the sphere) and their cluster labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    labels = rng.integers(0, k, n)
    x = centres[labels] + 1.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def timed(fn, *args, **kwargs) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def bench_projection(rows: list, quick: bool) -> None:
    from cliplab.geometry import project

    x, _ = clustered(10_000)
    with tempfile.TemporaryDirectory() as cache:
        if not quick:
            warm, first = _cold_umap()
            rows.append(("UMAP 10k x 512, nothing compiled (empty numba cache, subprocess)", first, ""))
            rows.append(("warm_up_umap() (an install step; empty numba cache, subprocess)", warm, ""))
        s, p = timed(project, x, method="umap", cache_dir=cache)
        rows.append(("UMAP 10k x 512, first call in this process", s, f"cached={p.cached}"))
        s, p2 = timed(project, clustered(10_000, seed=1)[0], method="umap", cache_dir=cache)
        rows.append(("UMAP 10k x 512, uncached call, warm process", s, f"cached={p2.cached}"))
        s, p3 = timed(project, x, method="umap", cache_dir=cache)
        rows.append(("UMAP 10k x 512, cached call", s, f"identical={np.array_equal(p.coords, p3.coords)}"))
        s, _ = timed(project, x, method="pca", cache_dir=None)
        rows.append(("PCA 10k x 512", s, ""))


def _cold_umap() -> tuple[float, float]:
    """In fresh interpreters with an empty numba cache: warm_up_umap(), and a first 10k UMAP."""
    bench = str(Path(__file__).parent)
    first = (f"import time, sys; sys.path.insert(0, {bench!r}); from bench_widgets import clustered; "
             "from cliplab.geometry import project; x, _ = clustered(10_000); t = time.perf_counter(); "
             "project(x, method='umap', cache_dir=None); print(time.perf_counter() - t)")
    warm = "from cliplab.geometry import warm_up_umap; print(warm_up_umap())"
    out = []
    for code in (first, warm):
        with tempfile.TemporaryDirectory() as numba_cache:
            run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NUMBA_CACHE_DIR": numba_cache},
                                 capture_output=True, text=True, check=True)
        out.append(float(run.stdout.strip().splitlines()[-1]))
    return out[1], out[0]


def bench_prompt_lab(rows: list) -> None:
    from cliplab.embed import ImageEmbeddings
    from cliplab.models import load_model
    from cliplab.widgets import PromptLab

    x, labels = clustered(10_000)
    rng = np.random.default_rng(0)
    records = pd.DataFrame({"path": [f"/img/{i}.png" for i in range(len(x))],
                            "label": np.array(CLASSES)[labels], "tone": rng.choice(["light", "medium", "dark"], len(x)),
                            "age": rng.choice(["child", "adult"], len(x))})
    for arch in ("ViT-B-32", "cliplab-tiny"):
        loaded = load_model(arch, device="cpu")
        proj = getattr(loaded.model, "text_projection", None)
        dim = int(proj.shape[1]) if proj is not None else 512
        feats = x if dim == x.shape[1] else clustered(10_000, dim)[0]
        s, lab = timed(PromptLab, loaded, ImageEmbeddings(feats, records), CLASSES, TEMPLATES,
                       group_by=["tone", "age"], flagged=["thief"])
        rows.append((f"PromptLab build, 10k images, 5 templates ({arch})", s, f"{len(loaded.text_cache)} prompts"))
        times = []
        for t in (["a blurry photo of a {}.", "a sketch of the {}.", "a close-up photo of a {}."]):
            before = len(loaded.text_cache)
            s, _ = timed(lab.add_template, t)
            times.append(s)
            assert len(loaded.text_cache) - before == len(CLASSES) + 1
        rows.append((f"PromptLab template edit -> figures updated, 10k images ({arch})", float(np.median(times)),
                     f"median of 3; encodes 9 prompts; {len(lab.result.templates)} templates"))
        names = "\n".join(CLASSES[:-1] + ["phone = mobile phone"])
        s, _ = timed(setattr, lab.classnames_box, "value", names)
        rows.append((f"PromptLab class rename -> figures updated, 10k images ({arch})", s,
                     f"encodes {len(lab.result.templates)} prompts"))


def bench_explorer(rows: list) -> None:
    from cliplab.embed import ImageEmbeddings
    from cliplab.widgets import EmbeddingExplorer

    x, labels = clustered(100_000)
    rng = np.random.default_rng(0)
    records = pd.DataFrame({"path": [f"/img/{i}.png" for i in range(len(x))], "label": np.array(CLASSES)[labels],
                            "tone": rng.choice(["light", "medium", "dark"], len(x)),
                            "caption": [f"a photo of a person holding a {CLASSES[k]}." for k in labels]})
    emb = ImageEmbeddings(x, records)
    for max_points in (20_000, 100_000):
        s, ex = timed(EmbeddingExplorer, emb, method="pca", cache_dir=None, max_points=max_points)
        size = len(ex.figure.to_json()) / 1e6
        rows.append((f"Explorer build, 100k points, PCA, max_points={max_points:,}", s,
                     f"{sum(len(d.x) for d in ex.figure.data):,} shown; figure {size:.1f} MB"))
        s, _ = timed(setattr, ex.color, "value", "tone")
        rows.append((f"Explorer recolour, 100k points, max_points={max_points:,}", s, ""))


DEMO_WIDGETS = """
import json, sys, time
t = time.perf_counter()
import cliplab
from cliplab import demo
from cliplab.embed import embed_images
root = sys.argv[1]
images = demo.held_out(demo.synthetic_data(__import__("pathlib").Path(root)))
loaded = cliplab.load_model(demo.MODEL, device="cpu", seed=0)  # random weights cost what trained ones do
emb = embed_images(loaded, images, cache_dir=root + "/cache", progress=False)
out = {"set-up (data, model, embeddings)": time.perf_counter() - t}
t = time.perf_counter(); import cliplab.widgets.prompt_lab, cliplab.widgets.explorer, cliplab.widgets.audit_dashboard
out["import the widgets (ipywidgets, plotly)"] = time.perf_counter() - t
t = time.perf_counter()
cliplab.PromptLab(loaded, emb, demo.CLASSES, [demo.TEMPLATE, "a photo of a {}.", "a {}.", "a drawing of a {}.",
                  "a photo of a thief holding a {}."], group_by=demo.GROUP_BY, flagged=demo.FLAGGED)
out["PromptLab creation (5 templates)"] = time.perf_counter() - t
t = time.perf_counter()
cliplab.EmbeddingExplorer(emb, texts=["a photo of a thief."], loaded=loaded, method="pca", cache_dir=None)
out["EmbeddingExplorer creation (PCA)"] = time.perf_counter() - t
t = time.perf_counter()
audit = cliplab.audit.run_audit(loaded, images, "audits/synthetic.yaml", embeddings=emb)
out["run_audit (not a widget)"] = time.perf_counter() - t
t = time.perf_counter()
cliplab.AuditDashboard(audit)
out["AuditDashboard creation"] = time.perf_counter() - t
t = time.perf_counter()
report = audit.write(root + "/report")
out["report written"] = time.perf_counter() - t
print(json.dumps({"times": out, "report": str(report)}))
"""


def bench_demo_widgets(rows: list) -> None:
    """Widget creation on the demo data, in a fresh interpreter (what a notebook cell costs)."""
    import json

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        from cliplab import demo

        env = {**os.environ, "CLIPLAB_NB_IMAGES": str(demo.SYNTH.n)}
        done = subprocess.run([sys.executable, "-c", DEMO_WIDGETS, tmp], capture_output=True, text=True,
                              cwd=root, env=env, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        for name, seconds in result["times"].items():
            rows.append((f"demo data: {name}", seconds, "fresh interpreter"))
        report = Path(result["report"])
        paint = _first_paint(report)
        rows.append(("report.html first paint (chromium)", paint if paint is not None else float("nan"),
                     f"{report.stat().st_size / 1e6:.2f} MB" + ("" if paint is not None else "; no chromium")))


def _first_paint(report: Path) -> float | None:
    """first-contentful-paint of the report in Debian's chromium, in seconds (None without a browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").is_file():
        return None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=["--no-sandbox", "--headless", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 800, "height": 900})
        page.goto(report.as_uri())
        paint = page.evaluate("() => new Promise(r => { const f = () => { const e = performance"
                              ".getEntriesByName('first-contentful-paint')[0]; e ? r(e.startTime) : "
                              "setTimeout(f, 50); }; f(); })")
        browser.close()
    return float(paint) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the numba-cold UMAP subprocess")
    parser.add_argument("--demo-only", action="store_true", help="only the demo-data widget and report rows")
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []
    bench_demo_widgets(rows)
    if args.demo_only:
        return _print(rows)
    bench_projection(rows, args.quick)
    bench_prompt_lab(rows)
    bench_explorer(rows)
    _print(rows)


def _print(rows: list) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'seconds':>8}  notes")
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds:>8.3f}  {note}")


if __name__ == "__main__":
    main()
