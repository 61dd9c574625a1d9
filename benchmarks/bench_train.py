"""Training throughput and accuracy: cliplab train vs open_clip's own trainer, in one run.

Both train the same architecture on the same synthetic manifest with the same batch size, epochs,
learning rate, schedule, precision (fp32) and seed; both final models are then scored with
cliplab's zero-shot on the clean test split. Also printed: the ceiling, i.e. forward + backward +
optimizer step on pre-made tensors (no data loading at all).

    python benchmarks/bench_train.py [--n 3000] [--epochs 4] [--batch-size 128] [--peer-workers 1,2] [--repeats 2]
                                     [--threads 0]

Numbers on a shared machine are noisy: compare the ratios of one run, not runs with each other.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEER_RUNNER = """
import sys, open_clip
open_clip.add_model_config(sys.argv[1])
from open_clip_train.main import main
main(sys.argv[2:])
"""


def ceiling(model_name: str, batch: int, threads: int, steps: int = 8) -> float:
    """Samples/s of forward + backward + AdamW on pre-made tensors (8 distinct captions, no dedupe)."""
    import open_clip
    import torch

    from cliplab.models import load_model
    from cliplab.synth import LEGACY_CLASSES as CLASSES  # the data is the legacy world

    if threads:
        torch.set_num_threads(threads)
    loaded = load_model(model_name, device="cpu", seed=0)
    model = loaded.model.train()
    size = model.visual.preprocess_cfg["size"]
    images = torch.randn(batch, 3, *size)
    tokens = loaded.tokenizer([f"a photo of a person holding a {CLASSES[i % len(CLASSES)]}." for i in range(batch)])
    loss_fn, opt = open_clip.ClipLoss(), torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        img, txt, scale = model(images, tokens)
        loss = loss_fn(img, txt, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t)


def step_rates(models: list[str], batch: int, threads: int, steps: int = 6, repeats: int = 3) -> dict[str, float]:
    """Samples/s of cliplab's own training step (ContrastiveModel: distinct captions once; a locked HF text
    tower's pooled features cached) on pre-made tensors, 8 distinct captions, models interleaved, best kept."""
    import open_clip
    import torch

    from cliplab.models import load_model
    from cliplab.synth import LEGACY_CLASSES as CLASSES  # the data is the legacy world
    from cliplab.text_towers import tower_name
    from cliplab.train.contrastive import ContrastiveModel, TextFeatureCache, locked_hf_tower

    if threads:
        torch.set_num_threads(threads)
    setups = {}
    for name in models:
        loaded = load_model(name, device="cpu", seed=0)
        clip = loaded.model.train()
        if tower_name(open_clip.get_model_config(name)):  # a packaged pretrained text tower: locked
            clip.lock_text_tower()
        tower = locked_hf_tower(clip)
        tokens = loaded.tokenizer([f"a photo of a person holding a {CLASSES[i % len(CLASSES)]}." for i in range(batch)])
        model = ContrastiveModel(clip, True, TextFeatureCache(tower) if tower else None)
        opt = torch.optim.AdamW([p for p in clip.parameters() if p.requires_grad], lr=1e-4)
        images = torch.randn(batch, 3, *clip.visual.preprocess_cfg["size"])
        setups[name] = (model, opt, images, tokens)
    loss_fn, best = open_clip.ClipLoss(), dict.fromkeys(models, 0.0)

    def step(model, opt, images, tokens):
        loss = loss_fn(*model(images, tokens)[:3])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(repeats):
        for name, setup in setups.items():
            step(*setup)
            t = time.perf_counter()
            for _ in range(steps):
                step(*setup)
            best[name] = max(best[name], steps * batch / (time.perf_counter() - t))
    return best


def fixed_costs(model_name: str, threads: int, out: Path, repeats: int = 3) -> dict:
    """The trainer's per-epoch fixed costs on the training thread, best of ``repeats``: a checkpoint
    (tensors copied on the training thread, serialised and written by a background thread) against the
    same state written synchronously (torch.save + fsync), and the import the evaluation no longer pays."""
    import torch

    from cliplab.models import load_model
    from cliplab.train.checkpoint import CheckpointWriter, trainable_state

    if threads:
        torch.set_num_threads(threads)
    model = load_model(model_name, device="cpu", seed=0).model.train()
    if model_name == "cliplab-minilm":
        model.lock_text_tower()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()  # creates the two Adam moments of every trainable parameter
    state = {"step": 0, **trainable_state(model), "optimizer": opt.state_dict()}
    writer = CheckpointWriter(out / f"fixed-{model_name}", keep=2)
    background, synchronous = [], []
    for i in range(repeats):
        state["step"] = 2 * i
        t = time.perf_counter()
        path = writer.save(state)
        background.append(time.perf_counter() - t)
        writer.wait()
        state["step"] = 2 * i + 1
        t = time.perf_counter()
        writer.save(state)
        writer.wait()
        synchronous.append(time.perf_counter() - t)
    code = "import time; t = time.perf_counter(); import sklearn.metrics; print(time.perf_counter() - t)"
    sk = min(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
             for _ in range(repeats))
    return {"model": model_name, "checkpoint_mb": path.stat().st_size / 1e6,
            "checkpoint_training_thread_s": min(background), "checkpoint_synchronous_s": min(synchronous),
            "sklearn_import_s": sk}


def run_peer(data_dir: Path, out: Path, args, workers: int, repeat: int) -> dict:
    """open_clip_train on the train split (fp32, no evaluation); loop time from its per-step log."""
    import pandas as pd

    table = pd.read_csv(data_dir / "metadata.csv", dtype=str)
    train_csv = out / "train.csv"
    table[table["split"] == "train"][["image", "caption"]].to_csv(train_csv, index=False)
    name = f"peer-w{workers}-r{repeat}"
    script = out / "peer_runner.py"
    script.write_text(PEER_RUNNER)
    cmd = [sys.executable, str(script), str(REPO / "cliplab" / "model_configs"),
           "--train-data", str(train_csv), "--csv-separator", ",", "--csv-img-key", "image",
           "--csv-caption-key", "caption", "--dataset-type", "csv", "--model", args.model,
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--lr", str(args.lr),
           "--wd", "0.1", "--warmup", str(args.warmup), "--beta1", "0.9", "--beta2", "0.98", "--eps", "1e-6",
           "--grad-clip-norm", "1.0", "--precision", "fp32", "--workers", str(workers), "--seed", str(args.seed),
           "--logs", str(out), "--name", name, "--save-frequency", str(args.epochs), "--log-every-n-steps", "1",
           "--report-to", "", "--zeroshot-frequency", "0", "--val-frequency", "0", "--device", "cpu"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=data_dir, capture_output=True, text=True, env=_env(args.threads))
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"open_clip_train failed:\n{proc.stderr[-3000:]}")
    log = (out / name / "out.log").read_text()
    batch_times = [float(x) for x in re.findall(r"Batch \(t\): ([0-9.]+)", log)]
    data_times = [float(x) for x in re.findall(r"Data \(t\): ([0-9.]+)", log)]
    samples = len(batch_times) * args.batch_size
    return {"trainer": f"open_clip_train --workers {workers}", "wall_s": wall, "steps": len(batch_times),
            "data_wait_share": sum(data_times) / sum(batch_times),
            "loop_samples_per_s": samples / sum(batch_times), "end_to_end_samples_per_s": samples / wall,
            "checkpoint": str(out / name / "checkpoints" / f"epoch_{args.epochs}.pt")}


def run_cliplab(data_dir: Path, out: Path, args, repeat: int, *extra: str) -> dict:
    """cliplab train with the same settings (data decoded once into RAM; evaluation only at the end)."""
    run = out / f"cliplab-run-r{repeat}{'-' + '-'.join(extra) if extra else ''}"
    cmd = [sys.executable, "-m", "cliplab.cli", "train", "--config", str(REPO / "training/configs/tiny-synthetic.yaml"),
           "--data", str(data_dir / "metadata.csv"), "--out", str(run), "--model", args.model,
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--lr", str(args.lr),
           "--seed", str(args.seed), "--precision", "fp32", "--set", f"warmup_steps={args.warmup}",
           "--set", "weight_decay=0.1", "--set", "grad_clip=1.0", "--set", "eval_every=0",
           "--set", "progress=false", "--set", "tensorboard=false", "--set", "log_every=1000000",
           "--set", f"threads={args.threads}"]
    for item in extra:
        cmd += ["--set", item]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=_env(args.threads))
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"cliplab train failed:\n{proc.stderr[-3000:]}")
    import pandas as pd

    rows = pd.read_csv(run / "metrics.csv")
    # the per-epoch rows hold samples/s of the epoch's loop; weight by equal epoch sizes
    loop = len(rows) / (1.0 / rows["samples_per_s"]).sum()
    steps = int(rows["step"].iloc[-1])
    return {"trainer": "cliplab train" + (f" ({', '.join(extra)})" if extra else ""), "wall_s": wall, "steps": steps,
            "loop_samples_per_s": float(loop),
            "end_to_end_samples_per_s": steps * args.batch_size / wall, "checkpoint": str(run)}


def zeroshot_accuracy(data_dir: Path, model: str, pretrained: str) -> float:
    """acc1 of cliplab's zero-shot on the clean test split."""
    import pandas as pd

    from cliplab.models import load_model
    from cliplab.zeroshot import run_zeroshot

    meta = json.loads((data_dir / "dataset.json").read_text())
    table = pd.read_csv(data_dir / "metadata.csv", dtype=str)
    test_csv = data_dir / "test-only.csv"
    test = table[table["split"] == "test"].copy()
    test["image"] = [str(data_dir / p) for p in test["image"]]
    test.to_csv(test_csv, index=False)
    loaded = load_model(model if not Path(pretrained).is_dir() else None, pretrained, device="cpu")
    result = run_zeroshot(loaded, test_csv, meta["classes"], [meta["template"]], label_column="label",
                          cache_dir=data_dir / "embedding-cache")
    return float(result.metrics["acc1"])


def _report(r: dict) -> dict:
    wait = f", {r['data_wait_share']:.0%} of its loop waiting for data" if "data_wait_share" in r else ""
    print(f"{r['trainer']}: {r['loop_samples_per_s']:.0f} samples/s in its loop, "
          f"{r['end_to_end_samples_per_s']:.0f} end to end ({r['wall_s']:.1f} s){wait}", flush=True)
    return r


def _env(threads: int) -> dict:
    """Both trainers get the same torch thread count (OMP_NUM_THREADS) when --threads is given."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3000, help="synthetic images (80%% train)")
    p.add_argument("--model", default="cliplab-tiny")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peer-workers", default="1,2", help="comma-separated --workers values to try; best is kept")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats of each run; the best is kept")
    p.add_argument("--no-ablation", dest="ablation", action="store_false",
                   help="skip the extra cliplab run with dedupe_captions=false")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for both trainers (default 0: torch's default, every core, the fastest "
                        "setting of both on a quiet machine; 1: as tiny-synthetic.yaml, for a busy machine)")
    p.add_argument("--out", help="keep outputs here (default: a temp folder)")
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--fixed-costs", action="store_true",
                   help="only measure the per-epoch fixed costs (checkpoint, evaluation imports) and exit")
    args = p.parse_args()
    if args.fixed_costs:
        out = Path(args.out or tempfile.mkdtemp(prefix="bench-train-"))
        rows = [fixed_costs(m, args.threads, out) for m in ("cliplab-tiny", "cliplab-minilm")]
        print(f"{'model':16s} {'checkpoint MB':>14s} {'on training thread s':>21s} {'written synchronously s':>24s}")
        for r in rows:
            print(f"{r['model']:16s} {r['checkpoint_mb']:14.1f} {r['checkpoint_training_thread_s']:21.2f} "
                  f"{r['checkpoint_synchronous_s']:24.2f}")
        print("import sklearn.metrics (no longer paid by the trainer's evaluation): "
              f"{rows[0]['sklearn_import_s']:.2f} s")
        rates = step_rates(["cliplab-tiny", "cliplab-minilm"], args.batch_size, args.threads)
        print("cliplab's training step on pre-made tensors (batch "
              f"{args.batch_size}): " + ", ".join(f"{k} {v:.0f} samples/s" for k, v in rates.items()))
        rows.append({"step_samples_per_s": rates})
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
        return

    from cliplab.synth import SynthConfig, synthesize

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-train-"))
    data_dir = synthesize(out / "data", SynthConfig(world="legacy", n=args.n, seed=args.seed)).parent
    print(f"machine: {os.cpu_count()} CPU cores; torch threads {args.threads or 'default'}; data: {args.n} synthetic "
          f"32 px images "
          f"in {data_dir}", flush=True)
    os.environ["TQDM_DISABLE"] = "1"
    results = {"ceiling_samples_per_s": ceiling(args.model, args.batch_size, args.threads)}
    print(f"ceiling (forward+backward+AdamW on pre-made tensors, batch {args.batch_size}): "
          f"{results['ceiling_samples_per_s']:.0f} samples/s", flush=True)
    peers, runs = [], []
    for repeat in range(args.repeats):  # interleaved, so that changes in machine load hit both alike
        for w in args.peer_workers.split(","):
            peers.append(_report(run_peer(data_dir, out, args, int(w), repeat)))
        runs.append(_report(run_cliplab(data_dir, out, args, repeat)))
    peer = max(peers, key=lambda r: r["loop_samples_per_s"])
    ours = max(runs, key=lambda r: r["loop_samples_per_s"])
    ablations = [_report(run_cliplab(data_dir, out, args, 0, "dedupe_captions=false"))] if args.ablation else []
    peer["zeroshot_acc1"] = zeroshot_accuracy(data_dir, args.model, peer["checkpoint"])
    ours["zeroshot_acc1"] = zeroshot_accuracy(data_dir, args.model, ours["checkpoint"])
    results.update(peer=peer, peers=peers, cliplab=ours, cliplab_runs=runs, ablations=ablations,
                   settings=vars(args),
                   ratio_loop=ours["loop_samples_per_s"] / peer["loop_samples_per_s"],
                   ratio_end_to_end=ours["end_to_end_samples_per_s"] / peer["end_to_end_samples_per_s"])
    print(f"\n{'trainer':34s} {'loop samples/s':>15s} {'end-to-end':>11s} {'wall s':>7s} {'zero-shot acc1':>15s}")
    for r in (peer, ours):
        print(f"{r['trainer']:34s} {r['loop_samples_per_s']:15.0f} {r['end_to_end_samples_per_s']:11.0f} "
              f"{r['wall_s']:7.1f} {r['zeroshot_acc1']:15.3f}")
    print(f"ratio cliplab / open_clip_train: {results['ratio_loop']:.2f}x in the loop, "
          f"{results['ratio_end_to_end']:.2f}x end to end; ceiling {results['ceiling_samples_per_s']:.0f} samples/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
