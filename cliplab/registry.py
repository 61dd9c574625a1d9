"""open_clip's registry of architectures and pretrained tags, read without importing torch.

``import open_clip`` takes seconds (it imports torch, timm, huggingface_hub), far too long for
``cliplab models`` or for telling a user that ``--pretrained`` names nothing. open_clip keeps its
registry as data: one JSON file per architecture in ``open_clip/model_configs/`` and one table,
``_PRETRAINED``, in ``open_clip/pretrained.py``. This module reads both as files (the table with
``ast``, the way the module itself would build it); should open_clip's layout change, it falls
back to importing open_clip. tests/test_registry.py checks both against open_clip's own lists.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import re
from functools import cache
from pathlib import Path

from .configfile import did_you_mean
from .errors import ModelError

RUN_MODEL_DIR = "final"  # a cliplab run keeps its final model in RUN/final (open_clip local-dir layout)
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_pytorch_model.bin"
CONFIG_DIR = Path(__file__).parent / "model_configs"  # cliplab's own architectures (cliplab-tiny, ...)
URI_PREFIXES = ("hf-hub:", "local-dir:")  # model specs that bring their own weights
_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")  # what open_clip requires of a model config


def tiny_model_names() -> list[str]:
    """cliplab's own architectures."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def _open_clip_dir() -> Path | None:
    spec = importlib.util.find_spec("open_clip")  # locates the package without running its __init__
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def _natural_key(name: str) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name.lower())]


@cache
def architectures() -> list[str]:
    """Every architecture open_clip can build here (its own and cliplab's), in open_clip's order."""
    folder = _open_clip_dir()
    files = list(folder.glob("model_configs/*.json")) if folder else []
    names = {p.stem for p in [*files, *CONFIG_DIR.glob("*.json")] if _is_model_config(p)}
    return sorted(names, key=_natural_key)


def _is_model_config(path: Path) -> bool:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and all(k in config for k in _CONFIG_KEYS)


@cache
def pretrained_tags() -> dict[str, list[str]]:
    """Architecture -> its open_clip pretrained tags (the same as ``open_clip.list_pretrained()``)."""
    folder = _open_clip_dir()
    try:
        if folder is None:
            raise ValueError("open_clip not found")
        return _tags_from_source((folder / "pretrained.py").read_text())
    except (OSError, ValueError, KeyError, AttributeError, TypeError):  # the layout changed: ask open_clip
        import open_clip

        table: dict[str, list[str]] = {}
        for name, tag in open_clip.list_pretrained():
            table.setdefault(name, []).append(tag)
        return table


def _tags_from_source(source: str) -> dict[str, list[str]]:
    """``_PRETRAINED`` of open_clip/pretrained.py: {"ViT-B-32": {"openai": _pcfg(...), ...}, ...},
    whose values are module-level ``dict(tag=cfg(...))`` assignments; plus the ``-quickgelu``
    entries the module derives from tags whose cfg has ``quick_gelu=True``."""
    tree = ast.parse(source)
    assigned = {node.targets[0].id: node.value for node in tree.body
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}
    table = assigned["_PRETRAINED"]
    if not isinstance(table, ast.Dict):
        raise ValueError("_PRETRAINED is not a dict literal")
    out: dict[str, list[str]] = {}
    quick: dict[str, list[str]] = {}
    for key, value in zip(table.keys, table.values):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise ValueError("non-literal architecture name")
        tags = _tag_cfgs(assigned[value.id] if isinstance(value, ast.Name) else value)
        out[key.value] = list(tags)
        gelu = [t for t, cfg in tags.items() if _keyword(cfg, "quick_gelu") is True]
        if gelu:
            quick[f"{key.value}-quickgelu"] = gelu
    return out | quick


def _tag_cfgs(node: ast.expr) -> dict[str, ast.expr]:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if any(kw.arg is None for kw in node.keywords):
            raise ValueError("dict(**...) in _PRETRAINED")
        return {str(kw.arg): kw.value for kw in node.keywords}
    if isinstance(node, ast.Dict):
        keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
        if all(isinstance(k, str) for k in keys):
            return {str(k): v for k, v in zip(keys, node.values)}
    raise ValueError(f"unexpected node {type(node).__name__} in _PRETRAINED")


def _keyword(call: ast.expr, name: str) -> object:
    if not isinstance(call, ast.Call):
        raise ValueError("a pretrained cfg is not a call")
    value = next((kw.value for kw in call.keywords if kw.arg == name), None)
    return value.value if isinstance(value, ast.Constant) else None


def _clean_tag(tag: str) -> str:
    return tag.lower().replace("-", "_")  # as open_clip.pretrained._clean_tag normalises tags


def is_random_init(model: str | None, pretrained: str | None) -> bool:
    """Whether :func:`cliplab.load_model` would build ``model`` with random weights."""
    return not pretrained and bool(model) and not str(model).startswith(URI_PREFIXES)


def check_model_source(model: str | None, pretrained: str | None) -> None:
    """Raise ModelError for a model/weights pair that :func:`cliplab.load_model` would refuse on
    its face (no architecture, an unknown one, a ``pretrained`` that is neither a file, a folder
    nor a tag) - before anything imports torch. Files and folders are checked when loaded."""
    if pretrained and Path(pretrained).expanduser().exists():
        return
    if model and model.startswith(URI_PREFIXES):
        return
    if not model:
        if pretrained:
            raise ModelError(f"--pretrained {pretrained!r}: no such file, run directory or pretrained tag "
                             "(a tag needs --model ARCHITECTURE; `cliplab models --all` lists them)")
        raise ModelError("no model architecture given: pass --model NAME (see `cliplab models`) "
                         "or --pretrained RUN_DIRECTORY")
    known = architectures()
    if model not in known:
        raise ModelError(f"unknown model architecture {model!r}{did_you_mean(model, known)}; cliplab's own: "
                         f"{', '.join(tiny_model_names())}; `cliplab models` lists all")
    tags = pretrained_tags().get(model, [])
    if pretrained and _clean_tag(pretrained) not in tags:
        raise ModelError(f"--pretrained {pretrained!r}: no such file, run directory or pretrained tag of {model}"
                         f"{did_you_mean(pretrained, tags)} (tags: {', '.join(tags) or 'none'})")
