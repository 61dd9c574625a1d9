"""Build the bad-input corpus (see cases.csv) into a folder; binary cases are generated, not stored.

    python tests/data/bad/make_corpus.py OUT_DIR
"""
from __future__ import annotations

import io
import os
import pickle
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["kite", "guitar", "book"]


def _noise(size=(32, 32)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _images(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    png, jpg = _encoded(_noise(), "PNG"), _encoded(_noise(), "JPEG", quality=95)
    for name in ("good-a.png", "good-b.png"):
        _noise().save(d / name)
    files = {
        "zero.png": b"",
        "truncated.png": png[: len(png) * 2 // 5],
        "truncated.jpg": jpg[: len(jpg) * 2 // 5],
        "png-named.jpg": png,
        "text.png": b"hello, not an image\n",
        "html.jpg": b"<html><script>alert(1)</script></html>",
        "crc-error.png": png[:200] + bytes(b ^ 0xFF for b in png[200:260]) + png[260:],
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    Image.fromarray(np.array([[0, 30000], [65535, 1]], dtype=np.uint16)).save(d / "sixteen-bit.png")
    Image.new("CMYK", (16, 16), (0, 128, 255, 0)).save(d / "cmyk.jpg")
    p = Image.new("P", (16, 16), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.save(d / "palette-transparent.png", transparency=0)
    Image.new("RGB", (1, 1), (9, 9, 9)).save(d / "one-pixel.png")
    Image.new("1", (20000, 20000)).save(d / "bomb.png")  # 400 megapixels, a few kB on disk
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    Image.new("RGBA", (16, 16), (0, 255, 0, 128)).save(d / "rgba.png")
    Image.new("LA", (16, 16), (100, 50)).save(d / "la.png")
    Image.new("L", (16, 16), 200).save(d / "grey.jpg")
    Image.new("I", (16, 16), 70000).save(d / "int32.tif")
    Image.new("F", (16, 16), 0.5).save(d / "float.tif")
    Image.new("RGB", (2000, 1), (1, 2, 3)).save(d / "wide.png")
    (d / "dir.jpg").mkdir(exist_ok=True)
    if not (d / "broken-link.png").is_symlink():
        os.symlink(d / "does-not-exist.png", d / "broken-link.png")
    _noise().save(d / "unreadable.png")
    os.chmod(d / "unreadable.png", 0)


def _manifests(root: Path) -> None:
    d = root / "manifests"
    d.mkdir(parents=True, exist_ok=True)
    head = "image,caption,label,tone,age\n"
    ok = "../images/good-a.png,a photo of a kite.,kite,light,adult\n../images/good-b.png,a photo of a book.,book,dark,child\n"
    texts = {
        "missing-column.csv": "picture,label\n../images/good-a.png,kite\n",
        "empty.csv": "",
        "header-only.csv": head,
        "duplicates.csv": head + ok + "../images/good-a.png,a photo of a kite.,kite,light,adult\n",
        "nan-attributes.csv": head + ok + "../images/png-named.jpg,a photo of a guitar.,guitar,,\n",
        "bom.csv": "\ufeff" + head + ok,
        "long-caption.csv": head + ok.replace("a photo of a kite.", "a kite " * 1500),
        "escaping-paths.csv": head + ok + "../../../../../../etc/hostname,a photo of a kite.,kite,light,adult\n",
        "absolute-missing.csv": head + ok + "/nonexistent/cliplab/x.png,a photo of a kite.,kite,light,adult\n",
        "all-missing.csv": head + "nope-1.png,a,kite,light,adult\nnope-2.png,b,book,dark,child\n",
        "unbalanced-quote.csv": head + '"../images/good-a.png,a photo,kite,light,adult\n',
        "unknown-label.csv": head + ok + "../images/png-named.jpg,a photo of a zebra.,zebra,light,adult\n",
        "missing-caption-column.csv": "image,label,tone,age\n../images/good-a.png,kite,light,adult\n"
                                      "../images/good-b.png,book,dark,child\n",
        "empty-captions.csv": head + ok + "../images/png-named.jpg,,guitar,light,adult\n",
    }
    for name, text in texts.items():
        (d / name).write_text(text, encoding="utf-8")
    (d / "non-utf8.csv").write_bytes(head.encode() + b"../images/good-a.png,caf\xe9 \xff,kite,light,adult\n")
    (d / "corrupt.parquet").write_bytes(b"PAR1" + os.urandom(64))
    (d / "huge-captions.csv").write_text(head + ok.replace("a photo of a kite.", "x" * 10_000), encoding="utf-8")


def _write_all(d: Path, texts: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (d / name).write_text(text, encoding="utf-8")


def _labels(root: Path) -> None:
    _write_all(root / "labels", {
        "empty.txt": "",
        "one-class.txt": "kite\n",
        "casefold-dupes.txt": "kite\nguitar\nKITE\n",
        "script.txt": "kite\nguitar\nbook\n<script>alert(1)</script>\n<img src=x onerror=alert(2)>\n",
        "quotes.txt": "kite\nguitar\nbook\na \"quoted\" 'class'\n",
        "braces.txt": "kite\nguitar\nbook\na {} class {0}\n",
        "newline.yaml": "- kite\n- \"gui\\ntar\"\n",
        "no-braces-templates.txt": "a photo of a thing\n",
        "many-classes.txt": "kite\nguitar\nbook\n" + "\n".join(f"class number {i}" for i in range(1997)) + "\n",
        "long-prompt.txt": "kite\nguitar\nbook\n" + "a " + "very " * 60 + "long class name\n",
        "not-a-list.yaml": "classes: {kite: 1}\n",
    })


def _configs(root: Path) -> None:
    _write_all(root / "configs", {
        "unknown-key.yaml": "epochs: 1\nlearning_rat: 0.1\n",
        "wrong-type.yaml": "epochs: three\n",
        "negative-batch.yaml": "batch_size: -8\n",
        "syntax-error.yaml": "epochs: [1, 2\n",
        "not-a-mapping.yaml": "- epochs\n- 1\n",
    })


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def _checkpoints(root: Path) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from cliplab.models import load_model

    d = root / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(load_model("cliplab-tiny", device="cpu").model.state_dict(), buf)
    (d / "truncated.pt").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    torch.save(load_model("cliplab-tiny-64", device="cpu").model.state_dict(), d / "other-arch.pt")
    (d / "evil.pt").write_bytes(pickle.dumps({"state_dict": _Evil()}, protocol=2))  # torch's own protocol
    (d / "zero.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(os.urandom(4096))
    (d / "empty-dir").mkdir(exist_ok=True)


def build(root: str | Path) -> Path:
    root = Path(root)
    _images(root / "images")
    _manifests(root)
    _labels(root)
    _configs(root)
    _checkpoints(root)
    return root


if __name__ == "__main__":
    print(build(sys.argv[1]))
