"""Build the bad-input corpus (see cases.csv) into a folder; binary cases are generated, not stored.

    python tests/data/bad/make_corpus.py OUT_DIR
"""
from __future__ import annotations

import io
import os
import pickle
import shutil
import sys
import zipfile
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
    _sideways(d)
    if not (d / "fifo.png").exists():
        os.mkfifo(d / "fifo.png")
    if not (d / "devnull.jpg").is_symlink():
        os.symlink("/dev/null", d / "devnull.jpg")
    for name, seed in (("same-size-a.bmp", 1), ("same-size-b.bmp", 2), ("same-size-a.ppm", 3), ("same-size-b.ppm", 4)):
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / name)


def _sideways(d: Path) -> None:
    """JPEGs stored sideways with an EXIF Orientation tag, and PNGs of how they must be read: the stored
    pixels turned with numpy (independent of PIL's exif_transpose)."""
    y, x = np.mgrid[0:48, 0:32]
    upright = np.stack([x * 8, y * 5, (x + y) * 3], axis=-1).astype(np.uint8)  # 32 wide, 48 high, asymmetric
    for orientation, stored in ((6, np.rot90(upright, 1)), (8, np.rot90(upright, -1))):
        exif = Image.Exif()
        exif[0x0112] = orientation
        name = f"exif-{orientation}.jpg"
        Image.fromarray(np.ascontiguousarray(stored)).save(d / name, quality=100, exif=exif.tobytes())
        raw = np.asarray(Image.open(d / name).convert("RGB"))  # the decoded stored pixels, not turned
        turned = np.rot90(raw, -1 if orientation == 6 else 1)  # 6: turn 90 degrees clockwise; 8: counter-clockwise
        Image.fromarray(np.ascontiguousarray(turned)).save(d / f"exif-{orientation}-upright.png")


def _folders(root: Path) -> None:
    """Image folders: formats the list must count, symlink cycles and aliases to walk once."""
    d = root / "folders"
    for sub in ("formats", "unreadable", "cycle/inner", "alias/real", "other-files"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for folder in ("formats", "unreadable", "cycle", "cycle/inner", "alias/real", "other-files"):
        _noise().save(d / folder / "good.png")
    _noise().save(d / "formats" / "photo.jfif", "JPEG")
    _noise().save(d / "formats" / "photo.jpe", "JPEG")
    (d / "unreadable" / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    (d / "unreadable" / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>\n')
    for link, target in (("cycle/inner/loop", ".."), ("alias/again", "real")):
        if not (d / link).is_symlink():
            os.symlink(target, d / link)
    (d / "other-files" / "README.txt").write_text("captions elsewhere\n")
    (d / "other-files" / "labels.csv").write_text("image,label\ngood.png,kite\n")


def _manifests(root: Path) -> None:
    d = root / "manifests"
    d.mkdir(parents=True, exist_ok=True)
    head = "image,caption,label,tone,age\n"
    ok = ("../images/good-a.png,a photo of a kite.,kite,light,adult\n"
          "../images/good-b.png,a photo of a book.,book,dark,child\n")
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
        "na-words.csv": head + "../images/good-a.png,a photo.,NA,None,null\n"
                        "../images/good-b.png,a photo.,None,NaN,n/a\n",
        "na-attributes.csv": head + "../images/good-a.png,a photo.,kite,NA,null\n"
                             "../images/good-b.png,a photo.,book,n/a,None\n",
        "path-column.csv": "image,path,label\n../images/good-a.png,/data/a,kite\n../images/good-b.png,/data/b,book\n",
        "path-is-image-column.csv": "path,label\n../images/good-a.png,kite\n../images/good-b.png,book\n",
        "duplicate-columns.csv": "image,label,tone,label\n../images/good-a.png,kite,light,x\n",
        "prediction-column.csv": "image,label,prediction\n../images/good-a.png,kite,book\n"
                                 "../images/good-b.png,book,kite\n",
        "correct-column.csv": "image,label,correct\n../images/good-a.png,kite,yes\n../images/good-b.png,book,no\n",
        "many-duplicates.csv": head + "".join(f"../images/good-{'ab'[i % 2]}.png,row {i},kite,light,{i}\n"
                                              for i in range(300)),
        "duplicates-spelled.csv": head + ok + "../images/./good-a.png,a,kite,light,adult\n"
                                  "../manifests/../images/good-b.png,b,book,dark,child\n",
        "formula.csv": head + "../images/good-a.png,=1+2,kite,+cmd,-7\n../images/good-b.png,@SUM(A1),book,dark,-0.5\n",
        "formula-tab.csv": head + "../images/good-a.png,\"\tx\",kite,-cmd|' /C calc'!A0,3\n"
                           "../images/good-b.png,b,book,=HYPERLINK(\"\"x\"\"),-2\n",
        "empty-labels.csv": head + "../images/good-a.png,a,,light,adult\n../images/good-b.png,b,,dark,child\n",
        "label-case.csv": head + "../images/good-a.png,a, Kite ,light,adult\n../images/good-b.png,b,BOOK,dark,child\n",
        "label-space.csv": head + "../images/good-a.png,a,kite ,light,adult\n../images/good-b.png,b,Book,dark,child\n",
    }
    for name, text in texts.items():
        (d / name).write_text(text, encoding="utf-8")
    (d / "non-utf8.csv").write_bytes(head.encode() + b"../images/good-a.png,caf\xe9 \xff,kite,light,adult\n")
    (d / "corrupt.parquet").write_bytes(b"PAR1" + os.urandom(64))
    (d / "huge-captions.csv").write_text(head + ok.replace("a photo of a kite.", "x" * 10_000), encoding="utf-8")
    (d / "empty-labels.tsv").write_text(head.replace(",", "\t") + "../images/good-a.png\ta\t\tlight\tadult\n",
                                        encoding="utf-8")
    with zipfile.ZipFile(d / "spreadsheet.xlsx", "w") as z:  # the shape of an .xlsx: a zip of XML parts
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    shutil.copy(d / "spreadsheet.xlsx", d / "spreadsheet-named.csv")
    (d / "old-excel.csv").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))  # an OLE2 (.xls) header


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
        # a second block of a key used to win silently (a harm category not audited, exit 0)
        "duplicate-flagged.yaml": "classes: [kite, guitar, book, thief, burglar]\nflagged:\n  crime: [thief]\n"
                                  "group_by: tone\nflagged:\n  theft: [burglar]\n",
        "duplicate-nested.yaml": "classes: [kite, guitar, book, thief, animal]\nflagged:\n  crime: [thief]\n"
                                 "  crime: [animal]\n",
        "150-classes.txt": "kite\nguitar\nbook\n" + "\n".join(f"thing {i}" for i in range(147)) + "\n",
        "400-classes.txt": "kite\nguitar\nbook\n" + "\n".join(f"object {i}" for i in range(397)) + "\n",
    })


def _configs(root: Path) -> None:
    _write_all(root / "configs", {
        "unknown-key.yaml": "epochs: 1\nlearning_rat: 0.1\n",
        "wrong-type.yaml": "epochs: three\n",
        "negative-batch.yaml": "batch_size: -8\n",
        "syntax-error.yaml": "epochs: [1, 2\n",
        "not-a-mapping.yaml": "- epochs\n- 1\n",
        "duplicate-key.yaml": "epochs: 1\nlr: 0.001\nepochs: 2\n",
        "duplicate-far-apart.yaml": "batch_size: 2\nseed: 1\nwarmup_steps: 1\nbatch_size: 4\n",
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
    _bad_weights(d, torch, load_model)


def _bad_weights(d: Path, torch, load_model) -> None:
    from safetensors.torch import save_file

    tiny = load_model("cliplab-tiny", device="cpu").model.state_dict()
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tiny.items()},
               d / "nan-weights.pt")
    torch.save({**tiny, "visual.proj": torch.full_like(tiny["visual.proj"], float("nan"))}, d / "nan-visual.pt")
    torch.save({**tiny, "text_projection": torch.full_like(tiny["text_projection"], float("inf"))}, d / "inf-text.pt")
    pos = tiny["visual.positional_embedding"]
    wrong = {**{k: v.contiguous() for k, v in tiny.items()},
             "visual.positional_embedding": torch.zeros(pos.shape[0] + 3, pos.shape[1])}
    save_file(wrong, d / "wrong-shapes.safetensors")
    other = load_model("cliplab-tiny-64", device="cpu").model.state_dict()
    save_file({k: v.contiguous() for k, v in other.items()}, d / "other-arch.safetensors")
    train = {"model": tiny, "optimizer": {}, "step": 3, "epoch": 0, "config": {"model": "cliplab-tiny"}}
    (d / "run" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(train, d / "run" / "checkpoints" / "step_00000003.pt")
    torch.save({**train, "model": other, "config": {"model": "cliplab-tiny-64"}}, d / "step-other-arch.pt")
    for name, config in (("run-broken-json", '{"model_name": "cliplab-tiny", '), ("run-json-list", '["cliplab-tiny"]')):
        (d / name / "final").mkdir(parents=True, exist_ok=True)
        (d / name / "final" / "open_clip_config.json").write_text(config)
        torch.save(tiny, d / name / "final" / "open_clip_pytorch_model.bin")
    for name, entry in (("zip-bomb.pt", "archive/data.pkl"), ("zip-bomb-tensor.pt", "archive/data/0")):
        with zipfile.ZipFile(d / name, "w", zipfile.ZIP_DEFLATED) as z:  # inflates to 80 MB, a few kB on disk
            z.writestr("archive/version", "3\n")
            with z.open(entry, "w", force_zip64=True) as f:
                for _ in range(80):
                    f.write(bytes(1 << 20))


def build(root: str | Path) -> Path:
    root = Path(root)
    _images(root / "images")
    _manifests(root)
    _labels(root)
    _configs(root)
    _checkpoints(root)
    _folders(root)
    return root


if __name__ == "__main__":
    print(build(sys.argv[1]))
