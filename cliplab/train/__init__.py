"""Contrastive training of open_clip models: ``train(load_train_config(path, overrides))``.

The model, tokenizer, transforms and losses are open_clip's; this package is the loop around
them (see loop.py), its data loading, checkpoints, evaluation and logs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .config import TrainConfig, load_train_config, parse_overrides

if TYPE_CHECKING:
    from .loop import TrainResult

__all__ = ["TrainConfig", "TrainResult", "load_train_config", "parse_overrides", "train"]


def train(config: TrainConfig) -> TrainResult:
    """Train as ``config`` says (see cliplab.train.loop.train)."""
    from .loop import train as _train

    return _train(config)

__getattr__ = lazy_exports(__name__, {"loop": ["TrainResult"]})[0]
