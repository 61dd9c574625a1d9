"""The training loop: read it top to bottom as the procedure (nanoGPT-style, config first).

    config -> run folder -> (resume state) -> model -> data -> optimizer + cosine schedule
    -> for each epoch: for each step: accumulate micro-batches, clip, step, clamp temperature,
       log, checkpoint -> evaluate, checkpoint, one-line summary
    -> final model in open_clip's local-dir layout.

One process trains on one device; under torchrun each rank runs this same code on its part of
every global batch, with features gathered across ranks for the contrastive loss.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.nn.parallel import DistributedDataParallel

from ..atomic import prepare_out_dir, write_table, write_text
from ..errors import InputError, OutputError
from .build import (LOGIT_SCALE_MAX, ContrastiveModel, autocast_factory, build_eval_data, build_loss, build_model,
                    build_optimizer, build_scaler, build_schedule, build_train_data, exported_model_cfg)
from .checkpoint import (check_architecture, export_final, list_checkpoints, load_checkpoint, resolve_resume,
                         rng_state, save_checkpoint, set_rng_state)
from .config import TrainConfig, config_yaml
from .distributed import DistInfo, barrier, cleanup, init_distributed
from .evaluate import evaluate
from .metrics import RunLog


@dataclass
class TrainResult:
    """Where the run is and how it ended."""

    run_dir: Path
    final_dir: Path
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)  # last evaluation + last loss + samples/s
    n_train: int = 0
    n_skipped: int = 0


def train(config: TrainConfig) -> TrainResult:
    """Train (or fine-tune, or resume) as ``config`` says; returns the run folder and final metrics."""
    dist = init_distributed(config.device)
    try:
        return _train(config, dist)
    finally:
        cleanup(dist)


def _open_run(cfg: TrainConfig, dist: DistInfo) -> tuple[Path, dict[str, Any] | None, str]:
    """Check the run folder, find the checkpoint to resume from, write config.yaml."""
    run_dir = Path(cfg.out).expanduser()
    if dist.is_main:
        prepare_out_dir(run_dir)
    barrier(dist)
    note = ""
    path = resolve_resume(run_dir, cfg.resume) if cfg.resume else None
    if cfg.resume == "latest" and path is None:
        note = f"--resume latest: no checkpoint in {run_dir} yet; starting from scratch"
    if not cfg.resume and (list_checkpoints(run_dir) or (run_dir / "final").exists()):
        raise OutputError(f"{run_dir} already holds a training run; pass --resume latest to continue it, "
                          "or choose another --out")
    state = load_checkpoint(path) if path else None
    if state is not None:
        check_architecture(state, cfg.model, path)
        note = f"resuming from {path} (step {state['step']}, epoch {state['epoch']})"
    if dist.is_main:
        write_text(run_dir / "config.yaml", config_yaml(cfg))
    return run_dir, state, note


def _train(cfg: TrainConfig, dist: DistInfo) -> TrainResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    autocast = autocast_factory(cfg.precision, dist.device)
    run_dir, state, note = _open_run(cfg, dist)
    log = RunLog(run_dir, dist.is_main, state["step"] if state else None, cfg.tensorboard)
    if note:
        log.line(note)

    loaded = build_model(cfg, dist.device)
    clip = loaded.model
    data = build_train_data(cfg, loaded, dist, log.line)
    eval_set = build_eval_data(cfg, loaded, log.line) if dist.is_main else None
    if dist.is_main and data.skipped:
        import pandas as pd
        write_table(run_dir / "skipped.csv", pd.DataFrame([vars(s) for s in data.skipped]))

    steps_per_epoch = data.batches.n_batches // cfg.accum_steps
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = build_optimizer(clip, cfg, dist.device)
    scheduler = build_schedule(optimizer, cfg, total_steps)
    scaler = build_scaler(cfg.precision, dist.device)
    step = 0
    if state is not None:
        step = _restore(state, clip, optimizer, scheduler, scaler)

    model: torch.nn.Module = ContrastiveModel(clip, cfg.dedupe_captions)
    if cfg.compile:
        model = torch.compile(model)
    if dist.enabled:
        model = DistributedDataParallel(model, device_ids=[dist.device] if dist.device.type == "cuda" else None)
    loss_fn = build_loss(cfg, dist)
    params = [p for p in clip.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    log.line(f"model {loaded.name}: {n_params / 1e6:.1f}M trainable parameters on {dist.device}"
             f" x{dist.world_size}, {cfg.precision}; {cfg.epochs} epochs x {steps_per_epoch} steps of "
             f"{cfg.batch_size * cfg.accum_steps} samples = {total_steps} steps")

    def save(epoch: int, epoch_step: int) -> None:
        if dist.is_main:
            save_checkpoint(run_dir, {
                "step": step, "epoch": epoch, "epoch_step": epoch_step, "model": clip.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng_state(), "config": cfg.to_dict(),
                "model_name": loaded.name}, cfg.keep_checkpoints)

    bar = _progress(cfg, dist, total_steps, step)
    last: dict[str, float] = {}
    loss = torch.tensor(float("nan"))
    start_epoch, first = (int(state["epoch"]), int(state.get("epoch_step", 0))) if state else (0, 0)
    for epoch in range(start_epoch, cfg.epochs):
        batches = data.batches.epoch(epoch, start=0)
        t0, seen, epoch_t0, epoch_seen = time.time(), 0, time.time(), 0
        for epoch_step in range(first, steps_per_epoch):
            try:
                loss, n = _train_step(model, batches, cfg, loss_fn, optimizer, scheduler, scaler, autocast,
                                      params, clip, dist)
            except StopIteration:  # a webdataset epoch that ran out of samples early
                break
            step, seen, epoch_seen = step + 1, seen + n * dist.world_size, epoch_seen + n * dist.world_size
            last_in_epoch = epoch_step + 1 == steps_per_epoch
            if step % cfg.log_every == 0 and not last_in_epoch:
                last = _log_step(log, bar, step, epoch, loss, optimizer, clip, seen / (time.time() - t0))
                t0, seen = time.time(), 0
            elif bar is not None:
                bar.update(1)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not last_in_epoch:
                save(epoch, epoch_step + 1)
        first = 0
        speed = epoch_seen / max(1e-9, time.time() - epoch_t0)
        evaluated = _maybe_evaluate(cfg, epoch, clip, loaded.tokenizer, eval_set, dist, autocast)
        last = _log_step(log, None, step, epoch, loss, optimizer, clip, speed, evaluated)
        barrier(dist)
        save(epoch + 1, 0)
        log.line(_summary(epoch, cfg.epochs, step, last, time.time() - epoch_t0))
    if bar is not None:
        bar.close()
    final = run_dir / "final"
    if dist.is_main:
        final = export_final(run_dir, clip, loaded.name, exported_model_cfg(loaded, cfg),
                             clip.visual.preprocess_cfg)
        log.line(f"final model: {final} (load with cliplab --pretrained {run_dir}, or open_clip "
                 f"'local-dir:{final}')")
    log.close()
    barrier(dist)
    return TrainResult(run_dir, final, step, last, data.n_pairs, len(data.skipped))


def _restore(state: dict[str, Any], clip, optimizer, scheduler, scaler) -> int:
    try:
        clip.load_state_dict(state["model"])
    except RuntimeError as e:
        from ..errors import ModelError
        raise ModelError(f"checkpoint weights do not fit model {state.get('model_name')}: "
                         f"{str(e).splitlines()[0]}") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return int(state["step"])


def _train_step(model, batches: Iterator, cfg: TrainConfig, loss_fn, optimizer, scheduler, scaler,
                autocast: Callable, params: list, clip, dist: DistInfo) -> tuple[torch.Tensor, int]:
    """One optimizer step over ``accum_steps`` micro-batches; returns the mean loss and samples seen."""
    optimizer.zero_grad(set_to_none=True)
    total, n = torch.zeros(()), 0
    for micro in range(cfg.accum_steps):
        images, tokens = next(batches)
        sync = model.no_sync() if dist.enabled and micro < cfg.accum_steps - 1 else nullcontext()
        with sync:
            with autocast():
                image_f, text_f, scale, bias = model(images, tokens)
                loss = loss_fn(image_f, text_f, scale) if bias is None else loss_fn(image_f, text_f, scale, bias)
            scaler.scale(loss / cfg.accum_steps).backward()
        total, n = total + loss.detach().float().cpu() / cfg.accum_steps, n + len(images)
    if not math.isfinite(float(total)):
        raise InputError(f"the loss became {float(total)}; lower the learning rate (lr={cfg.lr}) or use fp32")
    if cfg.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    with torch.no_grad():
        clip.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
    return total, n


def _maybe_evaluate(cfg: TrainConfig, epoch: int, clip, tokenizer, eval_set, dist: DistInfo,
                    autocast: Callable) -> dict[str, float]:
    due = epoch + 1 == cfg.epochs or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)
    if not (due and dist.is_main and eval_set is not None):
        return {}
    return evaluate(clip, tokenizer, eval_set, dist.device, autocast)


def _log_step(log: RunLog, bar, step: int, epoch: int, loss: torch.Tensor, optimizer, clip, speed: float,
              evaluated: dict[str, float] | None = None) -> dict[str, float]:
    values = {"step": step, "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "loss": float(loss),
              "logit_scale": float(clip.logit_scale.detach().exp()), "samples_per_s": round(speed, 1), **(evaluated or {})}
    log.row(values)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{values['loss']:.3f}", samples_s=f"{speed:.0f}")
    return values


def _summary(epoch: int, epochs: int, step: int, m: dict[str, float], seconds: float) -> str:
    parts = [f"epoch {epoch + 1}/{epochs}", f"step {step}", f"loss {m['loss']:.4f}", f"lr {m['lr']:.2e}",
             f"{m['samples_per_s']:.0f} samples/s", f"{seconds:.1f} s"]
    if "zeroshot_acc1" in m:
        parts.append(f"zero-shot acc1 {m['zeroshot_acc1']:.3f}")
    if "i2t_r1" in m:
        parts.append(f"R@1 i2t {m['i2t_r1']:.3f} t2i {m['t2i_r1']:.3f}")
    return "  ".join(parts)


def _progress(cfg: TrainConfig, dist: DistInfo, total: int, initial: int):
    if not (cfg.progress and dist.is_main):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, leave=False)
