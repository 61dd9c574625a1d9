"""Everything the loop needs, built from a TrainConfig: model, data, optimizer, schedule, loss, precision.

Kept apart from the loop so that loop.py reads top to bottom as the training procedure itself.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import open_clip
import torch
from torch import nn

from ..errors import InputError, ModelError
from ..models import LoadedModel, load_model
from .config import TrainConfig
from .contrastive import clip_model
from .data import PairSet, is_webdataset, read_eval_pairs, read_train_pairs, skip_summary
from .distributed import DistInfo
from .evaluate import EvalSet, build_eval_set
from .loaders import CachedBatches, FileBatches, WdsBatches, decode_all, pil_stage

LOGIT_SCALE_MAX = math.log(100.0)  # CLIP clamps the learned temperature at 100


def build_model(cfg: TrainConfig, device: torch.device) -> LoadedModel:
    """The open_clip model (random init from ``seed`` unless ``pretrained``), set up for training."""
    loaded = load_model(cfg.model, cfg.pretrained or None, str(device), seed=cfg.seed)
    clip = clip_model(loaded)
    if cfg.loss == "siglip" and getattr(clip, "logit_bias", None) is None:
        clip.logit_bias = nn.Parameter(torch.tensor(-10.0, device=device))  # SigLIP paper's init
        if not cfg.pretrained:
            clip.logit_scale.data.fill_(math.log(10.0))
    if cfg.lock_image:
        clip.lock_image_tower(unlocked_groups=cfg.lock_image_unlocked_groups)
    if cfg.lock_text:
        clip.lock_text_tower(unlocked_layers=cfg.lock_text_unlocked_layers)
    if cfg.grad_checkpointing:
        clip.set_grad_checkpointing(True)
    clip.train()
    return loaded


def exported_model_cfg(loaded: LoadedModel, cfg: TrainConfig) -> dict:
    """The open_clip model config to write beside the final weights, so they load as trained."""
    spec = cfg.model if cfg.model.startswith("local-dir:") else loaded.name
    model_cfg = dict(open_clip.get_model_config(spec) or {})
    if not model_cfg:
        raise ModelError(f"no open_clip model config found for {spec!r}, so the trained model could not be "
                         "exported for open_clip; use a registered architecture or a local-dir: model")
    clip = clip_model(loaded)
    if any(isinstance(m, open_clip.model.QuickGELU) for m in clip.modules()):
        model_cfg["quick_gelu"] = True
    if getattr(clip, "logit_bias", None) is not None:
        model_cfg["init_logit_bias"] = float(clip.logit_bias.detach().reshape(-1)[0])
    return model_cfg


def no_weight_decay(name: str, p: nn.Parameter) -> bool:
    """Biases, norms, the temperature and embeddings are not decayed (as in CLIP and open_clip)."""
    return p.ndim < 2 or any(k in name for k in ("bias", "ln", "norm", "bn", "logit_scale", "embedding"))


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not no_weight_decay(n, p)], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in named if no_weight_decay(n, p)], "weight_decay": 0.0}]
    adamw = partial(torch.optim.AdamW, groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    try:  # the fused kernel is several times faster on CPU and CUDA; fall back where unsupported
        return adamw(fused=True)
    except (RuntimeError, TypeError):
        return adamw()


class CosineSchedule:
    """LR factor: linear warm-up to 1, then cosine down to min_lr/lr at ``total`` steps."""

    def __init__(self, total: int, warmup: int, min_ratio: float):
        self.total, self.warmup, self.min_ratio = total, warmup, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, CosineSchedule(total_steps, min(cfg.warmup_steps, total_steps), cfg.min_lr / cfg.lr))


def build_loss(cfg: TrainConfig, dist: DistInfo) -> nn.Module:
    """open_clip's losses; features are gathered across ranks with gradients (global negatives).

    With ClipLoss, identical captions of a batch act as positives of each other's images (exactly,
    since ContrastiveModel gives the copies identical features; see contrastive.py); SigLipLoss
    scores every image-text pair on its own and counts the other copies as negatives.
    """
    if cfg.loss == "siglip":
        return open_clip.loss.SigLipLoss(rank=dist.rank, world_size=dist.world_size)
    return open_clip.loss.ClipLoss(local_loss=False, gather_with_grad=True, cache_labels=True,
                                   rank=dist.rank, world_size=dist.world_size)


def autocast_factory(precision: str, device: torch.device) -> Callable:
    """A context factory for the forward pass: fp32, fp16 autocast (CUDA) or bf16 autocast."""
    if precision == "fp32":
        return nullcontext
    if precision == "amp":
        if device.type != "cuda":
            raise InputError("precision 'amp' (float16 autocast) needs a CUDA device; on CPU use --precision "
                             "fp32 (fastest here) or amp_bf16")
        return lambda: torch.autocast("cuda", dtype=torch.float16)
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def build_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler for fp16 on CUDA; a disabled pass-through otherwise."""
    return torch.amp.GradScaler("cuda", enabled=precision == "amp" and device.type == "cuda")


@dataclass
class TrainData:
    batches: CachedBatches | FileBatches | WdsBatches
    n_pairs: int
    description: str
    skipped: list


def build_train_data(cfg: TrainConfig, loaded: LoadedModel, dist: DistInfo, log: Callable) -> TrainData:
    """Training batches from the config's data source, with the unusable rows counted and reported."""
    if not cfg.data:
        raise InputError("no training data: pass --data (a manifest, a folder with .txt captions, or .tar shards)")
    if cfg.batch_size % dist.world_size:
        raise InputError(f"batch_size {cfg.batch_size} is not divisible by the {dist.world_size} ranks")
    if is_webdataset(cfg.data):
        if not cfg.train_num_samples:
            raise InputError("webdataset data needs --set train_num_samples=N (samples per epoch)")
        wds = WdsBatches(cfg.data, _train_transform(loaded), loaded.tokenizer, cfg.batch_size,
                         cfg.train_num_samples, dist, cfg.seed, cfg.workers)
        _check_batch(cfg, cfg.train_num_samples, cfg.data)
        return TrainData(wds, cfg.train_num_samples, f"{len(wds.shards)} webdataset shards", [])
    pairs = read_train_pairs(cfg.data, cfg.image_column, cfg.caption_column, cfg.split_column, cfg.label_column)
    skipped = list(pairs.skipped)
    distinct = set(pairs.captions)
    if len(distinct) < 2:
        raise InputError(f"{pairs.source}: the training rows hold 1 distinct caption ({next(iter(distinct))!r}); "
                         "contrastive training needs at least 2 different captions")
    pcfg = clip_model(loaded).visual.preprocess_cfg
    size = pcfg["size"]
    h, w = (size, size) if isinstance(size, int) else size
    cache_bytes = len(pairs) * 3 * h * w
    if cfg.cache == "ram" or (cfg.cache == "auto" and cache_bytes <= cfg.cache_max_gb * 1e9):
        images, ok, bad = decode_all(pairs.paths, pil_stage(loaded.preprocess), cfg.workers,
                                     progress=cfg.progress and dist.is_main)
        skipped += bad
        captions = [c for c, good in zip(pairs.captions, ok) if good]
        _check_batch(cfg, len(captions), cfg.data, skipped)
        tokens = loaded.tokenizer(captions)
        batches: CachedBatches | FileBatches = CachedBatches(
            images, tokens, pcfg["mean"], pcfg["std"], cfg.batch_size, dist, cfg.seed, cfg.augment_shift,
            cfg.augment_flip)
        how = f"decoded once into RAM ({images.numel() / 1e6:.0f} MB)"
        n = len(captions)
    else:
        _check_batch(cfg, len(pairs), cfg.data, skipped)
        batches = FileBatches(pairs.paths, pairs.captions, _train_transform(loaded), loaded.tokenizer,
                              cfg.batch_size, dist, cfg.seed, cfg.workers)
        how, n = f"decoded from files by {cfg.workers} worker(s)", len(pairs)
    note = skip_summary(skipped)
    log(f"training data: {n} image-caption pairs from {pairs.source}, {how}" + (f"; {note}" if note else ""))
    return TrainData(batches, n, how, skipped)


def _train_transform(loaded: LoadedModel) -> Callable:
    """open_clip's training transform (augmenting); load_model builds it for every model it loads."""
    if loaded.preprocess_train is None:
        raise ModelError(f"model {loaded.name} was loaded without a training transform, so it cannot be trained")
    return loaded.preprocess_train


def _check_batch(cfg: TrainConfig, n: int, source: str, skipped: list | None = None) -> None:
    if cfg.batch_size > n:
        note = f" ({skip_summary(skipped)})" if skipped else ""
        raise InputError(f"batch_size {cfg.batch_size} is larger than the {n} usable training pairs in {source}"
                         f"{note}; pass --set batch_size=N with N <= {n}")
    if (n // cfg.batch_size) < cfg.accum_steps:
        raise InputError(f"accum_steps {cfg.accum_steps} needs at least that many batches per epoch, but "
                         f"{n} pairs make {n // cfg.batch_size} batches of {cfg.batch_size}")


def build_eval_data(cfg: TrainConfig, loaded: LoadedModel, log: Callable) -> EvalSet | None:
    """The evaluation set: --val-data, else the data's test/val split, else none (with a message)."""
    pairs: PairSet | None = None
    if cfg.val_data:
        pairs = read_eval_pairs(cfg.val_data, cfg.image_column, cfg.caption_column, cfg.split_column,
                                cfg.label_column)
        if pairs is None:  # a split column without test rows: evaluate on all of it
            pairs = read_eval_pairs(cfg.val_data, cfg.image_column, cfg.caption_column, "", cfg.label_column)
        if pairs is None:  # cannot happen without a split column; say so rather than skip evaluation silently
            raise InputError(f"{cfg.val_data}: no evaluation rows in --val-data")
    elif cfg.data and cfg.split_column and not is_webdataset(cfg.data) and not Path(cfg.data).is_dir():
        pairs = read_eval_pairs(cfg.data, cfg.image_column, cfg.caption_column, cfg.split_column,
                                cfg.label_column, require_split=True)
    if pairs is None:
        log("evaluation: none (pass --val-data, or use a manifest with a 'split' column holding test rows)")
        return None
    data = build_eval_set(pairs, loaded.preprocess, clip_model(loaded).visual.preprocess_cfg, cfg.zeroshot_templates,
                          cfg.eval_max_samples, cfg.workers)
    what = f"zero-shot over {len(data.classnames)} classes + retrieval" if data.classnames else "retrieval"
    log(f"evaluation: {len(data.images)} images from {pairs.source} ({what})"
        + (f"; {data.n_skipped} skipped" if data.n_skipped else ""))
    return data
