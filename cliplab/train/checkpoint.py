"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``, last K kept.

A checkpoint holds everything needed to continue a run bit-for-bit: model, optimizer, scheduler
and grad-scaler state, the step and epoch, the RNG states and the config. Locked (frozen)
weights are left out, as they have no optimizer state and never change: a resumed run takes
them from where the run first did (its pretrained source; a packaged text tower's hash is
recorded and checked). The final model, all weights included, is also exported in open_clip's
local-dir layout (RUN/final/open_clip_config.json + weights) so that open_clip itself, and
``cliplab.models.load_model(pretrained=RUN)``, can load it.
"""
from __future__ import annotations

import pickle
import random
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import text_towers
from ..atomic import atomic_path, fsync_dir, write_json
from ..errors import ModelError, OutputError
from ..models import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, RUN_MODEL_DIR, TRAIN_CHECKPOINT_KEYS, check_archive

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain types (loadable with weights_only=True)."""
    _kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)  # legacy=True: the MT19937 tuple, never the dict form
    state = {"python": _to_plain(random.getstate()), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(x: Any) -> Any:
    return [_to_plain(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def list_checkpoints(run_dir: Path) -> list[Path]:
    """This run's checkpoints, oldest first (by step)."""
    folder = checkpoint_dir(run_dir)
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


class CheckpointWriter:
    """Writes ``step_NNNNNNNN.pt`` atomically (temp file, fsync, rename), then drops all but the last ``keep``.

    ``save`` copies the state's tensors to host memory on the caller's thread (a snapshot: later in-place
    updates of the weights do not reach it, and copying 100 MB takes tens of milliseconds); serialising, the disk
    write, fsync and pruning run in a background thread, so training waits for neither pickling nor the
    disk. One write is in flight at a time; ``wait`` (called before the next save and at the end of the
    run) re-raises its error, if any.
    """

    def __init__(self, run_dir: Path, keep: int):
        self.folder, self.keep, self.run_dir = checkpoint_dir(run_dir), keep, run_dir
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, state: dict[str, Any]) -> Path:
        self.wait()
        path = self.folder / f"step_{state['step']:08d}.pt"
        self._thread = threading.Thread(target=self._write, args=(path, _snapshot(state)), name="checkpoint-writer")
        self._thread.start()
        return path

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, OutputError):
                raise error
            raise OutputError(f"cannot write a checkpoint in {self.folder}: {error}")

    def _write(self, path: Path, state: dict[str, Any]) -> None:
        try:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"cannot create {self.folder}: {e.strerror or e}") from None
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
            fsync_dir(self.folder)
            for old in list_checkpoints(self.run_dir)[:-self.keep]:
                old.unlink(missing_ok=True)
        except BaseException as e:  # reported by wait() on the training thread
            self._error = e


def _snapshot(x: Any) -> Any:
    """A copy of ``x`` whose tensors are fresh copies in host memory (a GPU's memory is not doubled) and
    whose containers are new (other leaves shared)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", copy=True)
    if isinstance(x, dict):
        return {k: _snapshot(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_snapshot(v) for v in x)
    return x


def resolve_resume(run_dir: Path, resume: str) -> Path | None:
    """``latest`` -> newest checkpoint of the run (None if there is none yet); else the given file."""
    if resume == "latest":
        found = list_checkpoints(run_dir)
        return found[-1] if found else None
    path = Path(resume).expanduser()
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise ModelError(f"--resume {resume}: no checkpoints in {checkpoint_dir(path)}")
        return found[-1]
    if not path.is_file():
        raise ModelError(f"--resume {resume}: no such checkpoint file (use 'latest' or a path to a step_*.pt)")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A cliplab training checkpoint, loaded safely (weights_only=True, zip bombs refused unread)."""
    check_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelError(f"refused to load {path}: not a plain checkpoint ({str(e).splitlines()[0]})") from None
    except (EOFError, RuntimeError, OSError) as e:
        raise ModelError(f"cannot read checkpoint {path}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    if not isinstance(state, dict) or not set(state) >= TRAIN_CHECKPOINT_KEYS:
        raise ModelError(f"{path} is not a cliplab training checkpoint (no model/optimizer/step/config); "
                         "to start from its weights use --set pretrained=PATH")
    return state


def check_architecture(state: dict[str, Any], model_name: str, path: Path) -> None:
    """The checkpoint must come from a run of the same ``model`` setting."""
    saved = state["config"].get("model") if isinstance(state.get("config"), dict) else None
    if saved != model_name:
        raise ModelError(f"checkpoint {path} is from architecture {saved!r}, but this run's model is "
                         f"{model_name!r}; resume with --set model={saved} or start a new --out")


def trainable_state(model: torch.nn.Module) -> dict[str, Any]:
    """The checkpoint's model part: every buffer and trainable parameter; frozen parameters only by name."""
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    state = {k: v for k, v in model.state_dict().items() if k not in frozen}
    return {"model": state, "frozen": sorted(frozen)}


def restore_model(model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load a checkpoint's weights; the parameters it leaves out must be exactly the ones it says are frozen."""
    what = f"checkpoint weights do not fit model {state.get('model_name')}"
    try:
        result = model.load_state_dict(state["model"], strict=False)
    except RuntimeError as e:
        raise ModelError(f"{what}: {str(e).splitlines()[0]}") from None
    frozen = set(state.get("frozen", []))
    missing = set(result.missing_keys) - frozen
    if missing or result.unexpected_keys or frozen - set(result.missing_keys):
        bad = sorted(missing)[:3] or list(result.unexpected_keys)[:3] or sorted(frozen - set(result.missing_keys))[:3]
        raise ModelError(f"{what}: keys missing, unexpected or no longer frozen, e.g. {', '.join(bad)}")


def text_tower_record(model_cfg: dict) -> dict[str, str] | None:
    """Name and weights hash of the model's packaged text tower (None when it has none)."""
    name = text_towers.tower_name(model_cfg)
    return text_towers.find_tower(name).record if name else None


def check_text_tower(state: dict[str, Any], path: Path) -> None:
    """A checkpoint without its frozen text weights resumes only against the same installed weights."""
    record = state.get("text_tower")
    if record:
        text_towers.check_record(record, text_towers.find_tower(record["name"]), f"checkpoint {path}")


def export_final(run_dir: Path, model: torch.nn.Module, model_name: str, model_cfg: dict,
                 preprocess_cfg: dict, text_tower: dict[str, str] | None = None) -> Path:
    """RUN/final in open_clip's local-dir layout: open_clip_config.json + a plain state dict."""
    final = Path(run_dir) / RUN_MODEL_DIR
    try:
        final.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {final}: {e.strerror or e}") from None
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(final / OPEN_CLIP_WEIGHTS) as tmp:
        torch.save(state, tmp)
    preprocess = {k: list(v) if isinstance(v, tuple) else v for k, v in preprocess_cfg.items()}
    config = {"model_name": model_name, "model_cfg": model_cfg, "preprocess_cfg": preprocess}
    if text_tower:
        config[text_towers.RECORD_KEY] = text_tower
    write_json(final / OPEN_CLIP_CONFIG, config)
    return final
