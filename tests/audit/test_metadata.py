"""cliplab.audit.metadata: FairFace, UTKFace, CelebA and plain tables, with every mismatch counted."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cliplab.audit.metadata import (
    NO_IMAGE,
    NO_METADATA,
    age_band,
    load_audit_images,
    parse_utkface_name,
    read_celeba_attributes,
)
from cliplab.errors import InputError


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 30, 30)).save(path)
    return path


def test_fairface_label_csv_as_manifest(tmp_path):
    for i in (1, 2, 3):
        _img(tmp_path / "val" / f"{i}.jpg")
    (tmp_path / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\n"
        "val/1.jpg,20-29,Male,Black,True\n"
        "val/2.jpg,3-9,Female,Latino_Hispanic,False\n"
        "val/3.jpg,,Female,White,False\n"
        "val/4.jpg,50-59,Male,Indian,True\n")
    got = load_audit_images(tmp_path / "fairface_label_val.csv")
    assert got.format == "fairface"
    r = got.images.records
    assert r["race"].tolist() == ["Black", "Latino_Hispanic", "White"]
    assert r["age"].isna().sum() == 1 and r["service_test"].tolist() == ["true", "false", "false"]
    assert [s.reason for s in got.images.skipped] == [NO_IMAGE]
    assert got.counts()["metadata_without_image"] == 1 and got.counts()["n_metadata_rows"] == 4


def test_fairface_metadata_joined_to_a_folder_by_file_name(tmp_path):
    for i in (1, 2, 5):
        _img(tmp_path / "imgs" / f"{i}.jpg")
    meta = tmp_path / "labels.csv"
    meta.write_text("file,age,gender,race\nval/1.jpg,20-29,Male,Black\nval/2.jpg,3-9,Female,White\n"
                    "val/9.jpg,3-9,Female,White\n")
    got = load_audit_images(tmp_path / "imgs", metadata=meta)
    assert got.format == "fairface" and len(got.images) == 2
    assert [s.reason for s in got.unmatched_images] == [NO_METADATA]  # 5.jpg
    assert Path(got.unmatched_images[0].path).name == "5.jpg"
    assert [s.reason for s in got.images.skipped] == [NO_IMAGE]  # val/9.jpg
    c = got.counts()
    assert c["images_without_metadata"] == 1 and c["metadata_without_image"] == 1


def test_utkface_names_and_malformed_files(tmp_path):
    _img(tmp_path / "25_0_1_20170116174525125.jpg.chip.jpg")
    _img(tmp_path / "4_1_3_20161219140623097.jpg")
    _img(tmp_path / "39_1_20170116174525125.jpg.chip.jpg")  # missing race: as in the public release
    got = load_audit_images(tmp_path)  # detected from the names
    assert got.format == "utkface"
    r = got.images.records.sort_values("age").reset_index(drop=True)
    assert r[["age", "age_band", "gender", "race"]].values.tolist() == [
        ["25", "20-29", "Male", "Black"], ["4", "3-9", "Female", "Indian"]]
    assert len(got.unmatched_images) == 1 and "UTKFace name" in got.unmatched_images[0].reason
    assert parse_utkface_name("1_0_0_2017.jpg")["race"] == "White" and parse_utkface_name("x_0_0_1.jpg") is None
    assert age_band(70) == "more than 70" and age_band(0) == "0-2"


def test_celeba_attribute_list(tmp_path):
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        _img(tmp_path / "img_align_celeba" / name)
    attrs = tmp_path / "list_attr_celeba.txt"
    attrs.write_text("3\nMale Young Eyeglasses\n000001.jpg  1 -1 -1\n000002.jpg -1  1 -1\n000004.jpg 1 1 1\n")
    got = load_audit_images(tmp_path / "img_align_celeba", metadata=attrs)
    assert got.format == "celeba"
    r = got.images.records.sort_values("image")
    assert r["Male"].tolist() == ["yes", "no"] and r["Young"].tolist() == ["no", "yes"]
    assert len(got.unmatched_images) == 1 and len(got.images.skipped) == 1


@pytest.mark.parametrize("text,message", [
    ("x\nMale\n", "first line must be the image count"),
    ("1\nMale Young\n000001.jpg 1\n", "do not hold a file name and 2 values"),
    ("1\nMale\n000001.jpg 2\n", "values of 1/-1"),
    ("2\nMale\n000001.jpg 1\n", "declares 2 images but 1 lines follow"),
])
def test_celeba_malformed(tmp_path, text, message):
    p = tmp_path / "list_attr_celeba.txt"
    p.write_text(text)
    with pytest.raises(InputError, match=message):
        read_celeba_attributes(p)


def test_generic_table_with_user_columns(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png")
    table = pd.DataFrame({"filepath": ["a.png", "b.png", "c.png"], "skin": ["I", None, "VI"]})
    table.to_parquet(tmp_path / "m.parquet")
    got = load_audit_images(tmp_path / "m.parquet")
    assert got.format == "table" and len(got.images) == 2
    assert got.images.records["skin"].isna().sum() == 1
    assert got.counts()["metadata_without_image"] == 1


def test_bad_format_and_unmatched_metadata(tmp_path):
    _img(tmp_path / "imgs" / "a.png")
    with pytest.raises(InputError, match="unknown metadata format"):
        load_audit_images(tmp_path / "imgs", format="imagenet")
    meta = tmp_path / "m.csv"
    meta.write_text("file,group\nzzz.png,x\n")
    with pytest.raises(InputError, match="none of its 1 rows matched an image"):
        load_audit_images(tmp_path / "imgs", metadata=meta)


def test_cli_format_choices_match_the_metadata_readers():
    from cliplab.audit import metadata
    from cliplab.cli import audit as audit_command

    assert audit_command.FORMATS == metadata.FORMATS
