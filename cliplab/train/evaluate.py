"""Evaluation during training: zero-shot accuracy and image-text retrieval recall@1/5/10.

The evaluation images are decoded once (open_clip's eval transform, kept as uint8) and reused
every epoch. Zero-shot uses cliplab.zeroshot (the CLIP prompt ensemble over the data's class
labels). Retrieval treats identical captions as one text: an image retrieves its caption text,
a caption text retrieves any image that carries it, which is the standard definition when all
captions differ and the meaningful one when many images share a caption.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .contrastive import ClipModel
from .data import PairSet
from .loaders import decode_all, pil_stage

DEFAULT_TEMPLATES = ["a photo of a {}."]
RECALL_AT = (1, 5, 10)


@dataclass
class EvalSet:
    """Decoded evaluation images with their captions and (optional) class labels."""

    images: torch.Tensor  # uint8 [N, 3, H, W]
    captions: list[str]
    labels: list[str] | None
    classnames: list[str]
    templates: list[str]
    mean: torch.Tensor
    std: torch.Tensor
    n_skipped: int = 0


def build_eval_set(pairs: PairSet, preprocess: Callable, preprocess_cfg: dict, templates: list[str],
                   max_samples: int, workers: int) -> EvalSet:
    """Decode up to ``max_samples`` evaluation images; unreadable ones are skipped and counted."""
    pairs = pairs.head(max_samples)
    images, ok, skipped = decode_all(pairs.paths, pil_stage(preprocess), workers)
    keep = np.flatnonzero(ok)
    captions = [pairs.captions[i] for i in keep]
    labels = [pairs.labels[i] for i in keep] if pairs.labels is not None else None
    classnames: list[str] = []
    if labels is not None:
        present = set(labels)
        classnames = ([c for c in pairs.classnames if c in present] if present <= set(pairs.classnames)
                      else sorted(present))
    mean = torch.tensor(preprocess_cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(preprocess_cfg["std"], dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return EvalSet(images, captions, labels, classnames, templates or pairs.templates or DEFAULT_TEMPLATES,
                   mean, std, len(skipped) + len(pairs.skipped))


@torch.no_grad()
def image_features(model: ClipModel, data: EvalSet, device: torch.device,
                   autocast: Callable[[], AbstractContextManager], batch_size: int = 256) -> torch.Tensor:
    chunks = []
    for i in range(0, len(data.images), batch_size):
        x = ((data.images[i:i + batch_size].float() - data.mean) / data.std).to(device)
        with autocast():
            chunks.append(model.encode_image(x, normalize=True).float())
    return torch.cat(chunks)


class TextEncoder(Protocol):
    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...


@torch.no_grad()
def text_features(encoder: TextEncoder, tokenizer: Callable, texts: list[str], device: torch.device,
                  autocast: Callable[[], AbstractContextManager], batch_size: int = 256) -> torch.Tensor:
    chunks = []
    for i in range(0, len(texts), batch_size):
        with autocast():
            chunks.append(encoder.encode_text(tokenizer(texts[i:i + batch_size]).to(device), normalize=True).float())
    return torch.cat(chunks)


def retrieval_recall(img: torch.Tensor, captions: list[str], txt_unique: torch.Tensor,
                     unique: list[str]) -> dict[str, float]:
    """Recall@k image->text and text->image, identical captions counted as one text."""
    index = {c: i for i, c in enumerate(unique)}
    target = torch.tensor([index[c] for c in captions])
    sim = img @ txt_unique.T  # [N images, T texts]
    out: dict[str, float] = {}
    for k in RECALL_AT:
        top_t = sim.topk(min(k, sim.shape[1]), dim=1).indices
        out[f"i2t_r{k}"] = float((top_t == target[:, None]).any(dim=1).float().mean())
        top_i = sim.T.topk(min(k, sim.shape[0]), dim=1).indices  # [T, k] image indices
        out[f"t2i_r{k}"] = float((target[top_i] == torch.arange(len(unique))[:, None]).any(dim=1).float().mean())
    return out


def topk_metrics(logits: torch.Tensor, y: torch.Tensor, k: int = 5) -> dict[str, float]:
    """acc1, acc{k} and mean per-class recall, as cliplab.zeroshot.zeroshot_metrics defines them (stable
    ties, recall averaged over the classes present) but in torch: the trainer need not import
    scikit-learn (seconds per run) for three numbers."""
    order = torch.sort(logits, dim=1, descending=True, stable=True).indices
    pred = order[:, 0]
    hit = pred == y
    recalls = [hit[y == c].double().mean() for c in torch.unique(y)]
    return {"acc1": float(hit.double().mean()),
            f"acc{k}": float((order[:, :min(k, logits.shape[1])] == y[:, None]).any(dim=1).double().mean()),
            "mean_per_class_recall": float(torch.stack(recalls).mean())}


def evaluate(model: ClipModel, tokenizer: Callable, data: EvalSet, device: torch.device,
             autocast: Callable[[], AbstractContextManager], text: TextEncoder | None = None) -> dict[str, float]:
    """Zero-shot (when the set has labels) and retrieval metrics of ``model`` on ``data``.

    ``text`` encodes captions and prompts; the trainer passes its ContrastiveModel, whose
    cached locked-tower features make evaluation cost the projection only, not a tower forward per text.
    """
    encoder: TextEncoder = text if text is not None else model
    import open_clip

    from ..prompts import fill

    was_training = model.training
    model.eval()
    try:
        img = image_features(model, data, device, autocast).cpu()
        unique = sorted(set(data.captions))
        metrics: dict[str, float] = {"eval_images": float(len(img))}
        metrics.update(retrieval_recall(img, data.captions, text_features(encoder, tokenizer, unique, device,
                                                                          autocast).cpu(), unique))
        if data.labels is not None and len(data.classnames) >= 2:
            fillers = [lambda c, t=t: fill(t, c) for t in data.templates]
            with autocast():
                weights = open_clip.build_zero_shot_classifier(encoder, tokenizer, data.classnames, fillers,
                                                               num_classes_per_batch=None, device=device)
            logits = img @ weights.float().cpu()
            zs = topk_metrics(logits, torch.tensor([data.classnames.index(lab) for lab in data.labels]), k=5)
            metrics.update(zeroshot_acc1=zs["acc1"], zeroshot_acc5=zs["acc5"],
                           zeroshot_mean_per_class_recall=zs["mean_per_class_recall"])
    finally:
        model.train(was_training)
    return metrics
