"""The training configuration: one flat dataclass, read from YAML plus ``key=value`` overrides.

Every key is checked: an unknown key names the valid ones, a value of the wrong type or out of
range names the key and what it expects. The same dataclass is what checkpoints store and what
RUN/config.yaml records, so a run can always be reproduced from its own folder.
"""
from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..configfile import did_you_mean, read_yaml_mapping
from ..errors import InputError

PRECISIONS = ("fp32", "amp", "amp_bf16")
LOSSES = ("clip", "siglip")
CACHE_MODES = ("auto", "ram", "none")


@dataclass
class TrainConfig:
    """All settings of one training run (see training/configs/*.yaml for annotated examples)."""

    # --- data
    data: str = ""  # manifest (CSV/TSV/Parquet), folder of images with .txt captions, or webdataset .tar urls
    val_data: str = ""  # evaluation manifest; default: the data's split==test rows when it has a split column
    image_column: str = ""  # default: auto-detect (image, image_path, filepath, path, file, filename)
    caption_column: str = ""  # default: auto-detect (caption, text, title, captions, txt)
    split_column: str = "split"  # when present in the manifest: train on "train", evaluate on "test"/"val"
    label_column: str = "label"  # class labels of the evaluation set, for zero-shot accuracy
    # default: dataset.json "template" or "a photo of a {}."
    zeroshot_templates: list[str] = field(default_factory=list)
    train_num_samples: int = 0  # webdataset only: samples per epoch (required there)
    cache: str = "auto"  # auto|ram|none: decode every image once into a uint8 tensor in RAM
    cache_max_gb: float = 4.0  # "auto" caches when the decoded data set fits in this
    augment_shift: int = 2  # cached path: random shift of up to this many pixels (0 = off)
    augment_flip: bool = False  # cached path: random horizontal flip
    workers: int = 2  # data loader processes for decoding images from files
    # --- model
    model: str = "cliplab-tiny"
    pretrained: str = ""  # open_clip tag, checkpoint file or cliplab run dir; "" = random init
    lock_image: bool = False  # LiT: freeze the image tower
    lock_image_unlocked_groups: int = 0  # leave this many last layer groups of the image tower trainable
    lock_text: bool = False  # freeze the text tower, its projection trains (cliplab-minilm's configs set it)
    lock_text_unlocked_layers: int = 0  # leave this many last layers of the text tower trainable
    cache_text_features: bool = True  # fully locked HF text tower: each distinct caption through it once per run
    grad_checkpointing: bool = False
    compile: bool = False  # torch.compile the model
    loss: str = "clip"  # clip (InfoNCE) | siglip (sigmoid)
    dedupe_captions: bool = True  # encode identical captions of a batch once (same result, less work)
    # --- optimisation
    epochs: int = 10
    batch_size: int = 128  # global batch per micro-step (all ranks together)
    accum_steps: int = 1  # micro-steps per optimizer step
    lr: float = 1e-3
    min_lr: float = 0.0  # cosine schedule ends here
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    precision: str = "fp32"  # fp32 | amp (fp16, CUDA) | amp_bf16
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 = torch's default
    # --- run, checkpoints, logs
    out: str = "runs/train"
    resume: str = ""  # "" | latest | path to a checkpoint
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0 = only at epoch ends
    keep_checkpoints: int = 2  # keep this many most recent checkpoints
    eval_every: int = 1  # evaluate every this many epochs (and always after the last); 0 = only the last
    eval_max_samples: int = 5000  # evaluation images at most (first N of the evaluation set)
    log_every: int = 10  # steps between metric rows
    tensorboard: bool = True
    progress: bool = True  # tqdm bar (rank 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """Check (YAML values) or convert (strings from --set) one value to the key's type."""
    want = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.strip().lower() in ("true", "yes", "1", "on")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif kind is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif typing.get_origin(kind) is list:
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split("|")) if v] if value.strip() else []
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise InputError(f"config key {key!r} must be a list of strings (on the command line: 'a|b'), "
                         f"got {value!r}")
    raise InputError(f"config key {key!r} must be {want.get(kind, kind)}, got {value!r}")


def _check_ranges(c: TrainConfig) -> None:
    positive = ("epochs", "batch_size", "accum_steps", "log_every", "keep_checkpoints", "eval_max_samples")
    for key in positive:
        if getattr(c, key) <= 0:
            raise InputError(f"config key {key!r} must be positive, got {getattr(c, key)}")
    for key in ("warmup_steps", "checkpoint_every", "workers", "augment_shift", "train_num_samples",
                "eval_every", "threads", "lock_image_unlocked_groups", "lock_text_unlocked_layers", "seed"):
        if getattr(c, key) < 0:
            raise InputError(f"config key {key!r} must be >= 0, got {getattr(c, key)}")
    for key in ("lr", "eps", "cache_max_gb"):
        if not getattr(c, key) > 0:
            raise InputError(f"config key {key!r} must be > 0, got {getattr(c, key)}")
    for key in ("min_lr", "weight_decay", "grad_clip"):
        if getattr(c, key) < 0:
            raise InputError(f"config key {key!r} must be >= 0, got {getattr(c, key)}")
    for key in ("beta1", "beta2"):
        if not 0 <= getattr(c, key) < 1:
            raise InputError(f"config key {key!r} must be in [0, 1), got {getattr(c, key)}")
    for key, allowed in (("precision", PRECISIONS), ("loss", LOSSES), ("cache", CACHE_MODES)):
        if getattr(c, key) not in allowed:
            raise InputError(f"config key {key!r} must be one of {', '.join(allowed)}, got {getattr(c, key)!r}")
    if c.min_lr > c.lr:
        raise InputError(f"min_lr ({c.min_lr}) is larger than lr ({c.lr})")
    bad = [t for t in c.zeroshot_templates if "{}" not in t]
    if bad:
        raise InputError(f"zeroshot_templates entry {bad[0]!r} has no {{}} to mark the class name")


def unknown_key_error(key: str) -> InputError:
    valid = [f.name for f in fields(TrainConfig)]
    return InputError(f"unknown config key {key!r}{did_you_mean(key, valid)}; valid keys: {', '.join(valid)}")


def make_config(values: dict[str, Any]) -> TrainConfig:
    """Build and validate a TrainConfig from a dict of (YAML or string) values."""
    types = field_types()
    kwargs = {}
    for key, value in values.items():
        if key not in types:
            raise unknown_key_error(key)
        kwargs[key] = _coerce(key, value, types[key])
    config = TrainConfig(**kwargs)
    _check_ranges(config)
    return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, with clear errors for a missing, malformed or
    duplicate-key file."""
    return read_yaml_mapping(path, "config file")


def load_train_config(path: str | Path | None, overrides: dict[str, str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file (if any), then ``overrides`` (strings, as from ``--set key=value``)."""
    values = read_config_file(path) if path else {}
    for key in (overrides or {}):
        if key not in field_types():
            raise unknown_key_error(key)
    values.update(overrides or {})
    return make_config(values)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["lr=1e-3", "epochs=2"]`` -> ``{"lr": "1e-3", "epochs": "2"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value
    return out


def config_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
