import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cliplab.data import ImageError, load_image, read_images
from cliplab.errors import InputError


def _png(path, mode="RGB", size=(8, 8), color=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def test_folder_is_read_recursively_and_sorted(tmp_path):
    _png(tmp_path / "b.png")
    _png(tmp_path / "sub" / "a.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    s = read_images(tmp_path)
    assert s.records["image"].tolist() == ["b.png", "sub/a.jpg"]
    assert all(p.startswith(str(tmp_path)) for p in s.paths) and not s.skipped


def test_manifest_paths_relative_to_manifest_folder(tmp_path):
    _png(tmp_path / "data" / "img" / "x.png")
    elsewhere = _png(tmp_path / "abs.png")
    (tmp_path / "data" / "m.csv").write_text(f"image,label\nimg/x.png,cat\n{elsewhere},dog\n")
    s = read_images(tmp_path / "data" / "m.csv")
    assert s.paths == [str(tmp_path / "data" / "img" / "x.png"), str(elsewhere)]
    assert s.records["label"].tolist() == ["cat", "dog"]


def test_parquet_manifest_and_named_column(tmp_path):
    _png(tmp_path / "x.png")
    pd.DataFrame({"filepath": ["x.png"], "note": ["keep me"]}).to_parquet(tmp_path / "m.parquet")
    s = read_images(tmp_path / "m.parquet")
    assert s.paths == [str(tmp_path / "x.png")] and s.records["note"].tolist() == ["keep me"]
    with pytest.raises(InputError, match="no column 'img'"):
        read_images(tmp_path / "m.parquet", image_column="img")


def test_unusable_files_are_counted_not_fatal(tmp_path):
    _png(tmp_path / "ok.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "m.csv").write_text("image\nok.png\nempty.png\nmissing.png\ndir.png\n\n")
    s = read_images(tmp_path / "m.csv")
    assert len(s) == 1
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in ((k.path, k.reason) for k in s.skipped)}
    assert reasons == {"empty.png": "empty file (0 bytes)", "missing.png": "missing file", "dir.png": "is a directory"}


@pytest.mark.parametrize("content, msg", [("", "empty"), ("image,label\n", "no rows"),
                                          ("file_x\na.png\n", "no image column")])
def test_bad_manifests(tmp_path, content, msg):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(InputError, match=msg):
        read_images(tmp_path / "m.csv")


def test_non_utf8_manifest(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"image\n\xff\xfe.png\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_images(tmp_path / "m.csv")


def test_all_images_unusable_is_an_error(tmp_path):
    (tmp_path / "m.csv").write_text("image\na.png\nb.png\n")
    with pytest.raises(InputError, match="none of the 2 images"):
        read_images(tmp_path / "m.csv")


@pytest.mark.parametrize("mode, color", [("L", 128), ("LA", (128, 255)), ("RGBA", (10, 20, 30, 255)),
                                         ("CMYK", (0, 0, 0, 0)), ("1", 1), ("RGB", (1, 2, 3))])
def test_modes_become_rgb(tmp_path, mode, color):
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    Image.new(mode, (4, 4), color).save(path)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (4, 4)


def test_palette_transparency_composited_on_white(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    im = load_image(tmp_path / "p.png")
    assert [im.getpixel((0, 0)), im.getpixel((1, 0))] == [(255, 255, 255), (0, 0, 255)]


def test_16_bit_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "x.png")  # uint16 -> mode I;16
    px = np.asarray(load_image(tmp_path / "x.png"))[0, :, 0]
    assert px.tolist() == [0, 127, 255]


def test_truncated_undecodable_and_bomb(tmp_path):
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:300])
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageError, match=r"truncated|cannot decode"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="not a recognised image"):
        load_image(tmp_path / "text.jpg")
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(tmp_path / "full.png", max_pixels=1000)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "a.gif").getpixel((0, 0))[0] > 200


def test_where_selects_rows(tmp_path):
    from cliplab.data import parse_where, select

    for n in "abc":
        _png(tmp_path / f"{n}.png")
    (tmp_path / "m.csv").write_text("image,split,tone\na.png,train,dark\nb.png,test,dark\nc.png,test,\n")
    s = read_images(tmp_path / "m.csv")
    assert select(s, parse_where(["split=test"])).records["image"].tolist() == ["b.png", "c.png"]
    assert select(s, parse_where(["split=test", "tone=dark,light"])).records["image"].tolist() == ["b.png"]
    with pytest.raises(InputError, match="COLUMN=VALUE"):
        parse_where(["split"])
    with pytest.raises(InputError, match="column 'fold' is not in"):
        select(s, {"fold": ("1",)})
    with pytest.raises(InputError, match="selects none of the 3 images"):
        select(s, {"split": ("val",)})


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((10, 20, 3), dtype=np.uint8)  # 20 wide, 10 high as stored; the top-left corner white
    stored[:3, :3] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # display turned 90 degrees clockwise: 10 wide, 20 high, the white corner top-right
    Image.fromarray(stored).save(tmp_path / "side.jpg", quality=100, exif=exif.tobytes())
    im = np.asarray(load_image(tmp_path / "side.jpg"))
    assert im.shape == (20, 10, 3)
    assert im[:3, -3:].mean() > 200 and im[:3, :3].mean() < 50


def test_missing_value_words_are_text_and_empty_cells_counted(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image,label,tone\na.png,None,NA\na.png,null,\na.png,n/a,NaN\n")
    s = read_images(tmp_path / "m.csv")
    assert s.records["label"].tolist() == ["None", "null", "n/a"]
    assert s.records["tone"].tolist()[::2] == ["NA", "NaN"] and pd.isna(s.records["tone"][1])
    assert s.notes == ["empty cells (missing values) in m.csv: tone: 1"]


def test_folder_counts_what_it_does_not_read_and_walks_each_folder_once(tmp_path):
    import os

    _png(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.jfif", "JPEG")
    (tmp_path / "c.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (tmp_path / "d.svg").write_text("<svg/>")
    (tmp_path / "notes.txt").write_text("x")
    _png(tmp_path / "sub" / "e.png")
    os.symlink("..", tmp_path / "sub" / "up")  # a cycle
    os.symlink("sub", tmp_path / "alias")  # a second name for sub
    s = read_images(tmp_path)
    assert s.records["image"].tolist() == ["a.png", "b.jfif", "sub/e.png"]
    assert sorted(os.path.basename(k.path) for k in s.skipped) == ["c.heic", "d.svg"]
    assert all("PIL cannot read" in k.reason for k in s.skipped)
    assert s.notes == [f"1 file(s) in {tmp_path} are not images and were not read (1 .txt)"]


def test_column_clashes_are_refused_by_name(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "p.csv").write_text("image,path\na.png,elsewhere\n")
    with pytest.raises(InputError, match="column 'path' clashes"):
        read_images(tmp_path / "p.csv")
    (tmp_path / "d.csv").write_text("image,label,label\na.png,x,y\n")
    with pytest.raises(InputError, match=r"column 'label' appears more than once \(columns 2, 3\)"):
        read_images(tmp_path / "d.csv")
    (tmp_path / "own.csv").write_text("path,label\na.png,x\n")  # the image column is called path: resolved
    assert read_images(tmp_path / "own.csv").paths == [str(tmp_path / "a.png")]


def test_spreadsheets_fifos_and_path_lists(tmp_path):
    import os

    (tmp_path / "book.csv").write_bytes(b"PK\x03\x04" + bytes(30))
    with pytest.raises(InputError, match="a spreadsheet"):
        read_images(tmp_path / "book.csv")
    _png(tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.png")
    s = read_images([tmp_path / "a.png", str(tmp_path / "pipe.png"), tmp_path / "a.png"])
    assert s.paths == [str(tmp_path / "a.png")] * 2 and s.n_duplicates == 1
    assert [k.reason for k in s.skipped] == ["not a regular file (FIFO (named pipe))"]
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path / "pipe.png")  # would block in open() without the check


def test_image_set_where_selects_rows(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image,split,tone\na.png,test,dark\na.png,train,dark\na.png,test,light\n")
    s = read_images(tmp_path / "m.csv")
    assert s.where(split="test").records["tone"].tolist() == ["dark", "light"]
    assert s.where({"split": "test"}, tone=["light"]).records.index.tolist() == [0]
    with pytest.raises(InputError, match="selects none"):
        s.where(split="val")
