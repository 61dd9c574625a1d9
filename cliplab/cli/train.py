"""``cliplab train``: every config key via --set, the common ones as flags.

Light on imports on purpose: the parser is built before knowing which command runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..train.config import PRECISIONS, TrainConfig, load_train_config, parse_overrides

# flag -> config key, for the flags that are shortcuts of a config key
FLAG_KEYS = {"data": "data", "val_data": "val_data", "out": "out", "resume": "resume", "device": "device",
             "precision": "precision", "model": "model", "pretrained": "pretrained", "epochs": "epochs",
             "batch_size": "batch_size", "lr": "lr", "seed": "seed"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune a CLIP model")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the train flags to ``parser``."""
    parser.add_argument("--config", help="YAML config (see training/configs/); flags and --set override it")
    parser.add_argument("--data", help="training data: CSV/Parquet manifest (image + caption columns; "
                        "a 'split' column selects train rows), a folder of images with same-name .txt "
                        "captions, or webdataset shards ('shards-{0000..0099}.tar')")
    parser.add_argument("--val-data", help="evaluation manifest (default: the data's split==test rows)")
    parser.add_argument("--out", help="run folder (checkpoints, metrics.csv, final/)")
    parser.add_argument("--resume", help="'latest' (newest checkpoint in --out) or a checkpoint path")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--precision", choices=PRECISIONS, help="fp32 (default), amp (fp16, CUDA) or amp_bf16")
    parser.add_argument("--model", help="open_clip architecture (default from the config)")
    parser.add_argument("--pretrained", help="starting weights: open_clip tag, checkpoint file or run folder")
    parser.add_argument("--epochs", type=int, help="passes over the training data")
    parser.add_argument("--batch-size", type=int, help="global batch per micro-step (all ranks together)")
    parser.add_argument("--lr", type=float, help="peak learning rate (cosine schedule after warm-up)")
    parser.add_argument("--seed", type=int, help="random seed of initialisation, shuffling and augmentation")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set any config key (repeatable); lists as 'a|b'; keys: "
                        + ", ".join(TrainConfig.__dataclass_fields__))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The validated TrainConfig for parsed ``args`` (precedence: defaults < --config < --set < flags).

    Resuming without --config reuses the run's own RUN/config.yaml.
    """
    sets = parse_overrides(list(args.set or []))
    flags = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag, None) is not None}
    config_path = args.config
    resume, out = flags.get("resume", sets.get("resume")), flags.get("out", sets.get("out"))
    if not config_path and resume and out and (Path(out).expanduser() / "config.yaml").is_file():
        config_path = Path(out).expanduser() / "config.yaml"
    return load_train_config(config_path, sets).with_overrides(**flags)


def check_sources(config: TrainConfig) -> None:
    """Fail before torch is imported: data that is not there, a model or weights that name nothing."""
    from ..errors import InputError
    from ..registry import check_model_source
    from ..train.data import is_webdataset

    for key in ("data", "val_data"):
        value = getattr(config, key)
        if value and not is_webdataset(value) and not Path(value).expanduser().exists():
            raise InputError(f"{key} {value}: no such file or folder")
    check_model_source(config.model, config.pretrained or None)


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_sources(config)
    from ..train import train

    result = train(config)
    print(f"trained model in {result.run_dir}")
    return 0
