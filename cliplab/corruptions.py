"""ImageNet-C corruptions (Hendrycks and Dietterich 2019) from the `imagecorruptions` library, seeded.

A thin wrapper: cliplab writes no corruption code. The library (PyPI ``imagecorruptions-imaug``, the
maintained fork of ``imagecorruptions``; 1.1.2 itself fails to import on current setuptools) draws from
NumPy's global generator, so each image is corrupted under its own seed derived from
(seed, corruption, severity, image index): the same call gives byte-identical images.
Corrupted images are written as PNG files so that the embedding cache applies to them.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .data import ImageError, ImageSet, Skip, load_image
from .errors import InputError

SEVERITIES = (1, 2, 3, 4, 5)


def corruption_names(which: str = "common") -> list[str]:
    """'common': the 15 ImageNet-C corruptions; 'all' adds the 4 validation ones (speckle_noise, ...)."""
    from imagecorruptions import get_corruption_names

    return list(get_corruption_names(which))


def parse_corruptions(spec: str | Sequence[str]) -> list[str]:
    """``"all"``/``"common"``, or names (a comma list); an unknown name is an error listing the valid ones."""
    if isinstance(spec, str):
        if spec.strip() in ("common", "all"):
            return corruption_names(spec.strip())
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    valid = corruption_names("all")
    unknown = [s for s in spec if s not in valid]
    if unknown:
        raise InputError(f"unknown corruption {unknown[0]!r}; valid: {', '.join(valid)} (or 'common' for the "
                         "15 of ImageNet-C, 'all' for all 19)")
    if not spec:
        raise InputError("no corruption named")
    return list(dict.fromkeys(spec))


def parse_severities(spec: str | Sequence[int]) -> list[int]:
    """``"1-5"``, ``"1,3,5"`` or a list; each in 1-5."""
    if isinstance(spec, str):
        lo, dash, hi = spec.partition("-")
        try:
            values = list(range(int(lo), int(hi) + 1)) if dash else [int(s) for s in spec.split(",")]
        except ValueError:
            raise InputError(f"severities: expected e.g. 1-5 or 1,3,5, got {spec!r}") from None
    else:
        values = [int(s) for s in spec]
    if not values or any(s not in SEVERITIES for s in values):
        raise InputError(f"severities must be in 1-5, got {spec!r}")
    return values


def corrupt(image: Image.Image | np.ndarray, name: str, severity: int, seed: int = 0) -> Image.Image:
    """One corrupted RGB image (the library's own output size)."""
    from imagecorruptions import corrupt as _corrupt

    state = np.random.get_state()
    np.random.seed(seed % (1 << 32))
    try:
        out = _corrupt(np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image),
                       corruption_name=name, severity=severity)
    finally:
        np.random.set_state(state)  # leave the caller's global generator as it was
    return Image.fromarray(np.uint8(out)).convert("RGB")


def _image_key(path: str) -> str:
    """The image's identity (path, size, mtime): a changed file gets new corrupted copies."""
    st = os.stat(path)
    return hashlib.sha1(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:20]


def _seed(seed: int, name: str, severity: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{name}\0{severity}\0{key}".encode()).digest()[:4], "little")


@dataclass
class CorruptedSet:
    images: ImageSet  # records gain ``corruption`` and ``severity`` columns; one row per (image, corruption, severity)
    seconds: float  # time spent decoding, corrupting and writing


def corrupt_images(images: ImageSet, out_dir: str | Path, names: Sequence[str] | str = "common",
                   severities: Sequence[int] | str = SEVERITIES, seed: int = 0) -> CorruptedSet:
    """Write every (image, corruption, severity) to ``out_dir/<corruption>/<severity>/<key>.png``.

    The key hashes the seed and the source file's path, size and mtime, and each image's random draws are
    seeded from it: files already there are reused, and the same image is corrupted the same way wherever
    it sits in the set. An image that cannot be decoded is a counted skip (once, not once per corruption).
    """
    names, severities = parse_corruptions(names), parse_severities(severities)
    out = Path(out_dir)
    start = time.perf_counter()
    rows, skipped = [], list(images.skipped)
    for rec in images.records.to_dict("records"):
        try:
            source = load_image(rec["path"])
            key = _image_key(rec["path"])
        except (ImageError, OSError) as e:
            skipped.append(Skip(rec["path"], str(e)))
            continue
        for name in names:
            for sev in severities:
                path = out / name / str(sev) / f"{seed}-{key}.png"
                if not path.is_file():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.tmp")
                    corrupt(source, name, sev, _seed(seed, name, sev, key)).save(tmp, format="PNG")
                    tmp.replace(path)
                rows.append({**rec, "path": str(path), "source_path": rec["path"], "corruption": name,
                             "severity": sev})
    if not rows:
        raise InputError(f"none of the {len(images)} images of {images.source} could be corrupted")
    return CorruptedSet(ImageSet(pd.DataFrame(rows), f"{images.source} (corrupted)", skipped),
                        time.perf_counter() - start)
