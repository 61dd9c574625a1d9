"""The training loop: read it top to bottom as the procedure (nanoGPT-style, config first).

    config -> run folder -> (resume state) -> model -> data -> optimizer + cosine schedule
    -> for each epoch: for each step: accumulate micro-batches, clip, step, clamp temperature,
       log, checkpoint -> evaluate, checkpoint, one-line summary
    -> final model in open_clip's local-dir layout.

One process trains on one device; under torchrun each rank runs this same code on its part of
every global batch, with features gathered across ranks for the contrastive loss.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel

from ..atomic import prepare_out_dir, write_table, write_text
from ..errors import InputError, OutputError
from ..models import LoadedModel
from .build import (
    LOGIT_SCALE_MAX,
    TrainData,
    autocast_factory,
    build_eval_data,
    build_loss,
    build_model,
    build_optimizer,
    build_scaler,
    build_schedule,
    build_train_data,
    exported_model_cfg,
)
from .checkpoint import (
    CheckpointWriter,
    check_architecture,
    check_text_tower,
    export_final,
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
    restore_model,
    rng_state,
    set_rng_state,
    text_tower_record,
    trainable_state,
)
from .config import TrainConfig, config_yaml
from .contrastive import ClipModel, ContrastiveModel, TextFeatureCache, clip_model, locked_hf_tower
from .distributed import DistInfo, barrier, cleanup, init_distributed
from .evaluate import EvalSet, evaluate
from .loaders import CachedBatches
from .runlog import RunLog


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
    threads = torch.get_num_threads()
    try:
        return _train(config, dist)
    finally:
        torch.set_num_threads(threads)  # a library call leaves the process as it found it
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
    if state is not None and path is not None:
        check_architecture(state, cfg.model, path)
        check_text_tower(state, path)
        note = f"resuming from {path} (step {state['step']}, epoch {state['epoch']})"
        changed = [f"{k} {v!r} -> {getattr(cfg, k)!r}" for k, v in state["config"].items()
                   if k not in ("resume", "out") and hasattr(cfg, k) and getattr(cfg, k) != v]
        if changed:
            note += "; config changed since: " + ", ".join(changed)
    if dist.is_main:
        write_text(run_dir / "config.yaml", config_yaml(cfg))
    return run_dir, state, note


@dataclass
class Session:
    """Everything a run trains with, built once by ``_setup``; ``step`` counts optimizer steps."""

    cfg: TrainConfig
    dist: DistInfo
    run_dir: Path
    log: RunLog
    loaded: LoadedModel
    model: torch.nn.Module  # ContrastiveModel, maybe compiled and/or wrapped in DDP
    data: TrainData
    eval_set: EvalSet | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    loss_fn: torch.nn.Module
    autocast: Callable
    model_cfg: dict
    steps_per_epoch: int
    writer: CheckpointWriter
    step: int = 0
    contrastive: ContrastiveModel | None = None  # the unwrapped model: evaluation encodes text through its cache

    @property
    def clip(self) -> ClipModel:
        return clip_model(self.loaded)


def _train(cfg: TrainConfig, dist: DistInfo) -> TrainResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    s, state = _setup(cfg, dist)
    start_epoch, first = (int(state["epoch"]), int(state.get("epoch_step", 0))) if state else (0, 0)
    bar = _progress(cfg, dist, s.steps_per_epoch * cfg.epochs, s.step)
    last: dict[str, float] = {}
    for epoch in range(start_epoch, cfg.epochs):
        last = _run_epoch(s, epoch, first, bar)
        first = 0
    if bar is not None:
        bar.close()
    s.writer.wait()
    final = s.run_dir / "final"
    if dist.is_main:
        final = export_final(s.run_dir, s.clip, s.loaded.name, s.model_cfg, s.clip.visual.preprocess_cfg,
                             text_tower_record(s.model_cfg))
        how = (f"cliplab.text_towers.open_clip_dir('{s.run_dir}', DEST) for open_clip 'local-dir:DEST'"
               if text_tower_record(s.model_cfg) else f"open_clip 'local-dir:{final}'")
        s.log.line(f"final model: {final} (load with cliplab --pretrained {s.run_dir}, or {how})")
    s.log.close()
    barrier(dist)
    return TrainResult(s.run_dir, final, s.step, last, s.data.n_pairs, len(s.data.skipped))


def _setup(cfg: TrainConfig, dist: DistInfo) -> tuple[Session, dict[str, Any] | None]:
    """Run folder, model, data, optimizer, schedule and loss; restored from a checkpoint when resuming."""
    autocast = autocast_factory(cfg.precision, dist.device)
    run_dir, state, note = _open_run(cfg, dist)
    log = RunLog(run_dir, dist.is_main, state["step"] if state else None, cfg.tensorboard)
    if note:
        log.line(note)
    loaded = build_model(cfg, dist.device)
    clip = clip_model(loaded)
    model_cfg = exported_model_cfg(loaded, cfg)  # now, so that a model that cannot be exported fails early
    data = build_train_data(cfg, loaded, dist, log.line)
    eval_set = build_eval_data(cfg, loaded, log.line) if dist.is_main else None
    if dist.is_main and data.skipped:
        write_table(run_dir / "skipped.csv", pd.DataFrame([vars(x) for x in data.skipped]))

    steps_per_epoch = data.batches.n_batches // cfg.accum_steps
    optimizer = build_optimizer(clip, cfg, dist.device)
    scheduler = build_schedule(optimizer, cfg, steps_per_epoch * cfg.epochs)
    scaler = build_scaler(cfg.precision, dist.device)
    step = _restore(state, clip, optimizer, scheduler, scaler) if state is not None else 0
    text_cache = _text_cache(cfg, clip, model_cfg, data, log.line)
    contrastive = ContrastiveModel(clip, cfg.dedupe_captions, text_cache)
    model: torch.nn.Module = contrastive
    if cfg.compile:
        model = cast(torch.nn.Module, torch.compile(model))  # an OptimizedModule; torch types it as a callable
    if dist.enabled:
        model = DistributedDataParallel(model, device_ids=[dist.device] if dist.device.type == "cuda" else None)
    n_params = sum(p.numel() for p in clip.parameters() if p.requires_grad)
    log.line(f"model {loaded.name}: {n_params / 1e6:.1f}M trainable parameters on {dist.device}"
             f" x{dist.world_size}, {cfg.precision}; {cfg.epochs} epochs x {steps_per_epoch} steps of "
             f"{cfg.batch_size * cfg.accum_steps} samples = {steps_per_epoch * cfg.epochs} steps")
    session = Session(cfg, dist, run_dir, log, loaded, model, data, eval_set, optimizer, scheduler, scaler,
                      build_loss(cfg, dist), autocast, model_cfg, steps_per_epoch,
                      CheckpointWriter(run_dir, cfg.keep_checkpoints), step, contrastive)
    return session, state


def _text_cache(cfg: TrainConfig, clip: torch.nn.Module, model_cfg: dict, data: TrainData,
                log: Callable) -> TextFeatureCache | None:
    """With a locked HF text tower: its pooled output of each distinct caption, computed once (eval mode)."""
    tower = locked_hf_tower(clip)
    if tower is None and text_tower_record(model_cfg) and not cfg.lock_text:
        log("note: the pretrained text tower is fine-tuned (lock_text: false), which is slow on a CPU")
    if tower is None or not cfg.cache_text_features:
        return None
    cache = TextFeatureCache(tower)
    if isinstance(data.batches, CachedBatches):  # captions known up front: encode them now
        t0 = time.time()
        cache.pooled(torch.unique(data.batches.tokens, dim=0))
        log(f"text features: {len(cache)} distinct captions through the locked text tower once "
            f"({time.time() - t0:.1f} s); each step runs the image tower and the text projection only")
    return cache


def _run_epoch(s: Session, epoch: int, first: int, bar) -> dict[str, float]:
    """Steps ``first``.. of one epoch, then evaluation, a checkpoint and the one-line summary."""
    cfg, world = s.cfg, s.dist.world_size
    batches = s.data.batches.epoch(epoch, start=first * cfg.accum_steps)
    t0, seen, epoch_t0, epoch_seen = time.time(), 0, time.time(), 0
    loss = torch.tensor(float("nan"))
    for epoch_step in range(first, s.steps_per_epoch):
        try:
            loss, n = _train_step(s, batches)
        except StopIteration:  # a webdataset epoch that ran out of samples early
            break
        s.step, seen, epoch_seen = s.step + 1, seen + n * world, epoch_seen + n * world
        last_in_epoch = epoch_step + 1 == s.steps_per_epoch
        if s.step % cfg.log_every == 0 and not last_in_epoch:
            _log_step(s, bar, epoch, loss, seen / (time.time() - t0))
            t0, seen = time.time(), 0
        elif bar is not None:
            bar.update(1)
        if cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0 and not last_in_epoch:
            _save(s, epoch, epoch_step + 1)
    speed = epoch_seen / max(1e-9, time.time() - epoch_t0)
    last = _log_step(s, None, epoch, loss, speed, _maybe_evaluate(s, epoch))
    barrier(s.dist)
    _save(s, epoch + 1, 0)
    s.log.line(_summary(epoch, cfg.epochs, s.step, last, time.time() - epoch_t0))
    return last


def _save(s: Session, epoch: int, epoch_step: int) -> None:
    """A checkpoint to continue from: the position is (epoch, epoch_step), i.e. batches done in that epoch."""
    if s.dist.is_main:
        s.writer.save({
            "step": s.step, "epoch": epoch, "epoch_step": epoch_step, **trainable_state(s.clip),
            "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict(),
            "scaler": s.scaler.state_dict(), "rng": rng_state(), "config": s.cfg.to_dict(),
            "model_name": s.loaded.name, "text_tower": text_tower_record(s.model_cfg)})


def _restore(state: dict[str, Any], clip, optimizer, scheduler, scaler) -> int:
    restore_model(clip, state)
    optimizer.load_state_dict(state["optimizer"])
    schedules = copy.deepcopy(scheduler.lr_lambdas)  # load_state_dict overwrites the objects' fields
    scheduler.load_state_dict(state["scheduler"])
    scheduler.lr_lambdas = schedules  # the schedule of this config (its epochs may have been extended)
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return int(state["step"])


def _train_step(s: Session, batches: Iterator) -> tuple[torch.Tensor, int]:
    """One optimizer step over ``accum_steps`` micro-batches; returns the mean loss and samples seen."""
    cfg, model = s.cfg, s.model
    s.optimizer.zero_grad(set_to_none=True)
    total, n = torch.zeros(()), 0
    for micro in range(cfg.accum_steps):
        images, tokens = next(batches)
        last_micro = micro == cfg.accum_steps - 1
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last_micro else nullcontext()
        with sync:
            with s.autocast():
                image_f, text_f, scale, bias = model(images, tokens)
                loss = s.loss_fn(image_f, text_f, scale) if bias is None else s.loss_fn(image_f, text_f, scale, bias)
            s.scaler.scale(loss / cfg.accum_steps).backward()
        total, n = total + loss.detach().float().cpu() / cfg.accum_steps, n + len(images)
    if not math.isfinite(float(total)):
        raise InputError(f"the loss became {float(total)} at step {s.step + 1}; lower the learning rate "
                         f"(lr={cfg.lr}) or use fp32 (checkpoints so far are kept)")
    if cfg.grad_clip:
        s.scaler.unscale_(s.optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in s.clip.parameters() if p.requires_grad], cfg.grad_clip)
    s.scaler.step(s.optimizer)
    s.scaler.update()
    s.scheduler.step()
    with torch.no_grad():
        s.clip.logit_scale.clamp_(0, LOGIT_SCALE_MAX)  # CLIP: temperature at most 100
    return total, n


def _maybe_evaluate(s: Session, epoch: int) -> dict[str, float]:
    """Evaluate after every ``eval_every``-th epoch and after the last one (rank 0 only)."""
    cfg = s.cfg
    due = epoch + 1 == cfg.epochs or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)
    if not (due and s.dist.is_main and s.eval_set is not None):
        return {}
    return evaluate(s.clip, s.loaded.tokenizer, s.eval_set, s.dist.device, s.autocast, s.contrastive)


def _log_step(s: Session, bar, epoch: int, loss: torch.Tensor, speed: float,
              evaluated: dict[str, float] | None = None) -> dict[str, float]:
    values = {"step": s.step, "epoch": epoch + 1, "lr": s.optimizer.param_groups[0]["lr"], "loss": float(loss),
              "logit_scale": float(s.clip.logit_scale.detach().exp()), "samples_per_s": round(speed, 1),
              **(evaluated or {})}
    s.log.row(values)
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
