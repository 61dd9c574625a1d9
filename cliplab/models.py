"""Turn a model name and a weights source into a ready CLIP model: the one place that does.

Weights come from an open_clip pretrained tag, an ``hf-hub:`` id, a local checkpoint file
(open_clip state dict, open_clip_train checkpoint, safetensors), a ``local-dir:`` folder, or a
run directory written by ``cliplab train``. Loading never hangs on a missing network: when the
weights are not cached and cannot be fetched, it fails at once with a message saying what was
tried and how to pass a local file instead.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import socket
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import open_clip
import torch

from . import text_towers
from .errors import ModelError
from .registry import CONFIG_DIR, OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, RUN_MODEL_DIR, tiny_model_names

NETWORK_PROBE_SECONDS = 3.0
MAX_INFLATED = 64 << 20  # torch.save stores entries uncompressed; compressed ones inflating past this: refused
TRAIN_CHECKPOINT_KEYS = {"model", "optimizer", "step", "config"}  # a `cliplab train` checkpoints/step_N.pt

open_clip.add_model_config(CONFIG_DIR)  # registers cliplab-tiny etc. in open_clip's registry


@dataclass
class LoadedModel:
    """A model with everything needed to use it, and an identity usable as a cache key."""

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    name: str
    identity: str
    device: torch.device
    preprocess_train: Callable | None = None
    text_cache: dict[str, Any] = field(default_factory=dict, repr=False)  # text -> embedding (embed_texts)
    truncated_texts: set[str] = field(default_factory=set, repr=False)  # texts cut to the context length
    random_init: bool = False  # randomly initialised weights (no pretrained given): results mean nothing

    @property
    def preprocess_key(self) -> str:
        return repr(self.preprocess)


def select_device(device: str | None = None) -> torch.device:
    """``cuda`` when available, else CPU; an explicit choice is checked, not ignored."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ModelError(f"unknown device {device!r}: {str(e).splitlines()[0]}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ModelError(f"device {device!r} cannot run a model here: use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"device {device!r} requested but Apple MPS is not available on this machine")
    return dev


def file_digest(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def load_model(
    model: str | None = None,
    pretrained: str | None = None,
    device: str | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Load ``model`` (an open_clip architecture, ``hf-hub:ID`` or ``local-dir:PATH``) with weights.

    ``pretrained`` is an open_clip tag, a checkpoint file, a ``cliplab train`` run directory or a
    folder in open_clip's local-dir layout; ``None`` gives a randomly initialised model (seeded).
    """
    dev = select_device(device)
    if pretrained and Path(pretrained).expanduser().is_dir():
        model, pretrained = _resolve_directory(model, Path(pretrained).expanduser())
    if not model:
        raise ModelError("no model architecture given: pass --model NAME (see `cliplab models`)")
    if model.startswith("hf-hub:"):
        model = "local-dir:" + _fetch_hf_snapshot(_hub_id(model[len("hf-hub:"):]))
        pretrained = None
    if model.startswith("local-dir:"):
        folder = Path(model[len("local-dir:"):])
        weights = open_clip.factory._find_checkpoint_in_dir(folder) if folder.is_dir() else None
        if weights is None:
            raise ModelError(f"{folder} has no {OPEN_CLIP_CONFIG} with weights beside it")
        name = read_model_config(folder).get("model_name", model)
        check_archive(weights)
        return _create(model, None, dev, identity=f"{name}@{file_digest(weights)}", name=name, weights_file=weights)
    if open_clip.get_model_config(model) is None:
        raise ModelError(f"unknown model architecture {model!r}; cliplab's own: {', '.join(tiny_model_names())}; "
                         "`cliplab models` lists all")
    if not pretrained:
        torch.manual_seed(seed)
        return replace(_create(model, None, dev, identity=f"{model}@random-seed{seed}", name=model), random_init=True)
    path = Path(pretrained).expanduser()
    if path.is_file():
        check_archive(path)
        train_state = _train_checkpoint_model(path)
        if train_state is not None:
            return _from_train_checkpoint(model, path, train_state, dev)
        return _create(model, str(path), dev, identity=f"{model}@{file_digest(path)}", name=model)
    tag_cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ModelError(f"--pretrained {pretrained!r} is neither a file, a run directory nor a pretrained tag of "
                         f"{model} (tags: {', '.join(tags) or 'none'})")
    weights = _fetch_tag(model, pretrained, tag_cfg)
    # the tag's preprocessing, as create_model_and_transforms takes it (it builds force_preprocess_cfg itself)
    preprocess = {f"image_{k}": tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    return _create(model, weights, dev, identity=f"{model}@{file_digest(weights)}", name=model,
                   force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)), **preprocess)


def _resolve_directory(model: str | None, folder: Path) -> tuple[str, str | None]:
    """A run directory or local-dir folder: returns (model spec, weights file or None)."""
    final = folder / RUN_MODEL_DIR
    if (final / OPEN_CLIP_CONFIG).is_file():
        folder = final
    if not (folder / OPEN_CLIP_CONFIG).is_file():
        raise ModelError(f"{folder} is a directory but neither a cliplab run (no {RUN_MODEL_DIR}/{OPEN_CLIP_CONFIG}) "
                         f"nor an open_clip local-dir folder (no {OPEN_CLIP_CONFIG}); has the run finished?")
    saved = read_model_config(folder).get("model_name")
    if model and saved and model != saved:
        raise ModelError(f"--model {model} does not match the run in {folder}, which is a {saved}")
    return f"local-dir:{folder}", None


def read_model_config(folder: Path) -> dict[str, Any]:
    """A local-dir folder's open_clip_config.json: a JSON object with a ``model_cfg`` object."""
    path = folder / OPEN_CLIP_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        got = f"a JSON {type(config).__name__}" if not isinstance(config, dict) else "an object without one"
        raise ModelError(f"{path}: expected a JSON object with a \"model_cfg\" object (open_clip's local-dir "
                         f"layout), got {got}")
    return config


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _hub_id(repo_id: str) -> str:
    """A Hugging Face repository id (``owner/name``), checked before it reaches the hub client."""
    if not _HUB_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".", "-")):
        raise ModelError(f"hf-hub:{repo_id}: not a Hugging Face repository id (expected hf-hub:OWNER/NAME, "
                         "e.g. hf-hub:timm/ViT-B-16-SigLIP); for a local folder use --model local-dir:PATH")
    return repo_id


def check_archive(path: str | Path) -> None:
    """Refuse a zip checkpoint whose entries would inflate beyond what torch.save writes (a zip bomb),
    from the archive's directory, before anything is decompressed."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as z:
            entries = z.infolist()
    except (OSError, zipfile.BadZipFile):
        return  # torch.load will say what is wrong with it
    packed = [e for e in entries if e.compress_type != zipfile.ZIP_STORED]
    if sum(e.file_size for e in packed) > MAX_INFLATED:  # one entry or many together
        e = max(packed, key=lambda e: e.file_size)
        raise ModelError(f"refused to load {path}: its compressed entries inflate to "
                         f"{sum(e.file_size for e in packed):,} bytes ({e.filename} inflates from {e.compress_size:,} "
                         f"to {e.file_size:,}); torch.save writes entries uncompressed: a zip bomb?")


def _train_checkpoint_model(path: Path) -> dict[str, Any] | None:
    """The model state of a `cliplab train` checkpoint (step_N.pt), or None for any other file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip torch file, or not loadable: open_clip's loader reports it
        return None
    if isinstance(state, dict) and set(state) >= TRAIN_CHECKPOINT_KEYS and isinstance(state["model"], dict):
        return state
    return None


def _from_train_checkpoint(model: str, path: Path, state: dict[str, Any], device: torch.device) -> LoadedModel:
    """A model from the weights under ``model`` in a training checkpoint (its optimizer state unused)."""
    saved = state["config"].get("model") if isinstance(state["config"], dict) else None
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if saved and saved != model:
        raise ModelError(f"{path} is a cliplab train checkpoint of a {saved}, not a {model}: pass --model {saved} "
                         f"(or the run folder, --pretrained {run})")
    loaded = _create(model, None, device, identity=f"{model}@{file_digest(path)}", name=model)
    weights = {k.removeprefix("module."): v for k, v in state["model"].items()}
    try:
        loaded.model.load_state_dict(weights)
    except RuntimeError:
        raise ModelError(f"{path} is a cliplab train checkpoint whose weights do not fit {model} (the run changed "
                         f"the architecture's settings?); pass the run folder instead: --pretrained {run}") from None
    loaded.model.to(device)
    return loaded


def _readable_weights(path: str) -> bool:
    """Whether the whole weights file reads (so a loading error is about fit, not a damaged file)."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            load_file(path)
        else:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return True


def _create(spec: str, weights: str | None, device: torch.device, identity: str, name: str,
            weights_file: str | None = None, **kwargs: Any) -> LoadedModel:
    spec, weights, kwargs, tower = text_towers.prepare(spec, weights, kwargs)  # a packaged text tower's folder
    if tower is not None:
        identity = f"{identity}+text@{tower.digest}"
    quiet = _DropRandomInitWarning()  # cliplab says "random" in the identity; open_clip's warning is noise
    logging.getLogger().addFilter(quiet)
    try:
        model, preprocess_train, preprocess = open_clip.create_model_and_transforms(
            spec, pretrained=weights, device=device, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        raise ModelError(_unpickling_message(weights or spec, str(e))) from None
    except RuntimeError as e:
        msg = str(e)
        if "size mismatch" in msg or "Missing key" in msg or "Unexpected key" in msg:
            raise ModelError(f"checkpoint {weights or spec} does not fit architecture {name}: it was saved from a "
                             "different architecture (pass the matching --model)") from None
        if _readable_weights(weights or weights_file or ""):  # read whole, yet refused: its tensors' shapes
            raise ModelError(f"checkpoint {weights or spec} does not fit architecture {name}: its tensors have other "
                             f"shapes ({msg.splitlines()[0][:100]}); pass the matching --model") from None
        raise ModelError(f"cannot read checkpoint {weights or spec}: not a complete PyTorch weights file "
                         f"(truncated or corrupted?): {msg.splitlines()[0][:120]}") from None
    except Exception as e:  # torch.load raises many types on garbage bytes; all mean "not a checkpoint"
        raise ModelError(f"cannot read checkpoint {weights or spec}: {type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:120]} (truncated or not a checkpoint?)") from None
    finally:
        logging.getLogger().removeFilter(quiet)
    model.eval()
    tokenizer = tower.tokenizer() if tower else open_clip.get_tokenizer(spec)
    return LoadedModel(model, preprocess, tokenizer, name, identity, device, preprocess_train)


def _unpickling_message(path: str, error: str) -> str:
    """One line from torch's long weights_only refusal: the pickle's forbidden import, if any."""
    blocked = next((ln.strip() for ln in error.splitlines() if "GLOBAL" in ln), None)
    if blocked:
        return (f"refused to load {path}: the file asks to run code ({blocked.rstrip('.')}); "
                "checkpoints are read with torch.load(weights_only=True), which loads plain tensors only")
    return f"cannot read checkpoint {path}: not a PyTorch weights file (rejected by torch.load weights_only=True)"


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(k in record.getMessage() for k in ("initialized randomly", "initialized partially"))


# ---------------------------------------------------------------- fetching pretrained weights
def _offline_reason(host: str) -> str | None:
    """Why a download cannot work right now, or None. Avoids the hub client's long retry loop."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection((host, 443), timeout=NETWORK_PROBE_SECONDS).close()
    except OSError as e:
        return f"{host} cannot be reached ({e.__class__.__name__}: {e})"
    return None


def _how_to_pass_local(what: str) -> str:
    return (f"download {what} on a machine with network and pass the file with --pretrained PATH "
            "(or a folder holding open_clip_config.json and the weights with --model local-dir:PATH)")


def _fetch_hf_snapshot(repo_id: str) -> str:
    """The local folder of an hf-hub model (config + weights), from the cache or downloaded."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return str(Path(hf_hub_download(repo_id, OPEN_CLIP_CONFIG, local_files_only=True)).parent)
    except LocalEntryNotFoundError:
        pass
    reason = _offline_reason("huggingface.co")
    if reason:
        raise ModelError(f"cannot fetch hf-hub:{repo_id}: tried the local Hugging Face cache (not there) and "
                         f"the hub ({reason}); {_how_to_pass_local('the repository')}")
    try:
        open_clip.pretrained.download_pretrained_from_hf(repo_id)
        return str(Path(hf_hub_download(repo_id, OPEN_CLIP_CONFIG)).parent)
    except Exception as e:  # the hub client raises many kinds; all mean the same here
        raise ModelError(f"cannot fetch hf-hub:{repo_id}: {str(e).splitlines()[0]}") from None


def _fetch_tag(model: str, tag: str, cfg: dict) -> str:
    """The weights file of an open_clip pretrained tag, from the cache or downloaded as open_clip does."""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        repo, filename = os.path.split(hub)
        for name in [n for n in (filename.replace(".bin", ".safetensors"), filename or OPEN_CLIP_WEIGHTS) if n]:
            try:
                return hf_hub_download(repo, name, local_files_only=True)
            except LocalEntryNotFoundError:
                continue
        source, host = f"hf-hub:{hub}", "huggingface.co"
    else:
        url = cfg.get("url", "")
        cached = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if cached.is_file():
            return str(cached)
        source, host = url, url.split("/")[2] if "://" in url else url
    reason = _offline_reason(host)
    if reason:
        raise ModelError(f"cannot fetch pretrained weights {model} {tag!r}: tried the local cache (not there) and "
                         f"{source} ({reason}); {_how_to_pass_local('the weights')}")
    try:
        return open_clip.pretrained.download_pretrained(cfg)
    except Exception as e:
        raise ModelError(f"cannot fetch pretrained weights {model} {tag!r} from {source}: "
                         f"{str(e).splitlines()[0]}") from None
