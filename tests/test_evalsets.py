"""ImageFolder and CLIP_benchmark wds readers, class subsets and the CLIP_benchmark JSON writer."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cliplab.data import read_images, select
from cliplab.errors import InputError
from cliplab.evalsets import (
    EvalImageSet,
    clip_benchmark_record,
    read_eval_set,
    read_image_folder,
    read_wds,
    subset_classes,
    write_clip_benchmark_json,
    write_wds,
)


@pytest.fixture(scope="module")
def test_split(synth_data):
    """The 38 test images of the shared synthetic set: 7 of the 8 classes."""
    return select(read_images(synth_data), {"split": ("test",)})


def _image_folder(root, test_split, per_class=2):
    for label, g in test_split.records.groupby("label"):
        (root / f"f_{label}").mkdir(parents=True)
        for p in g["path"].head(per_class):
            shutil.copy(p, root / f"f_{label}")
    return root


def test_image_folder_names_from_tab_mapping_and_reports_strays(tmp_path, test_split):
    root = _image_folder(tmp_path / "if", test_split)
    (root / "f_zzempty").mkdir()  # an empty class folder: kept as a class, reported
    (root / "notes.txt").write_text("stray")
    (root / "f_cup" / "Thumbs.db").write_bytes(b"x")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    (root / "classnames.txt").write_text("".join(f"{f}\tthe {f[2:]}\n" for f in folders))
    s = read_eval_set(root)
    assert isinstance(s, EvalImageSet) and s.layout == "imagefolder"
    assert s.classnames == [f"the {f[2:]}" for f in folders] and s.empty_classes == ["the zzempty"]
    assert len(s) == 2 * 7 and set(s.records["label"]) == {f"the {f[2:]}" for f in folders} - {"the zzempty"}
    assert all(s.classnames[i] == lab for i, lab in zip(s.records["class_index"], s.records["label"]))
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in ((k.path, k.reason) for k in s.skipped)}
    assert "not inside a class folder" in reasons["notes.txt"] and "not an image" in reasons["Thumbs.db"]


def test_image_folder_numeric_folders_index_the_class_list(tmp_path, test_split):
    root = tmp_path / "v2"
    for i, (_, g) in enumerate(test_split.records.groupby("label")):
        if i in (0, 2):
            continue
        (root / str(i)).mkdir(parents=True)
        shutil.copy(g["path"].iloc[0], root / str(i))
    names = [f"class {i}" for i in range(12)]  # ImageNet-V2 style: folder "7" is class 7 of the full list
    (root / "classnames.txt").write_text("\n".join(names) + "\n")
    s = read_image_folder(root)
    assert set(s.records["label"]) == {f"class {i}" for i in (1, 3, 4, 5, 6)}
    assert s.classnames == [f"class {i}" for i in (1, 3, 4, 5, 6)]


def test_image_folder_bad_inputs(tmp_path, test_split):
    root = _image_folder(tmp_path / "if", test_split)
    (root / "classnames.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="2 class names for 7 class folders"):
        read_image_folder(root)
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "a" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="hold no image files"):
        read_image_folder(empty)


def test_wds_round_trip_templates_and_cache(tmp_path, test_split):
    classnames = sorted(set(test_split.records["label"]))
    root = write_wds(test_split, classnames, tmp_path / "wds", templates=["a photo of a {}."], shard_size=15)
    assert (root / "test" / "nshards.txt").read_text().strip() == "3"
    assert "{c}" in (root / "zeroshot_classification_templates.txt").read_text()  # CLIP_benchmark's syntax
    s = read_eval_set(root, extract_dir=tmp_path / "x")
    assert s.layout == "wds" and s.classnames == classnames and s.templates == ["a photo of a {}."]
    assert s.records["label"].tolist() == test_split.records["label"].tolist() and not s.skipped
    assert [Path(p).read_bytes() for p in s.records["path"]] == [Path(p).read_bytes() for p in test_split.paths]
    again = read_wds(root, extract_dir=tmp_path / "x")  # read from the extraction index, same files
    assert again.records["path"].tolist() == s.records["path"].tolist()


def test_wds_truncated_shard_is_a_counted_skip(tmp_path, test_split):
    classnames = sorted(set(test_split.records["label"]))
    root = write_wds(test_split, classnames, tmp_path / "wds", shard_size=20)
    shard = root / "test" / "1.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2 + 100])
    s = read_wds(root, extract_dir=tmp_path / "x")
    assert 20 <= len(s) < len(test_split)
    assert any("truncated" in k.reason and k.path.endswith("1.tar") for k in s.skipped)


def test_wds_cls_outside_class_list_is_an_error(tmp_path, test_split):
    root = write_wds(test_split, sorted(set(test_split.records["label"])), tmp_path / "wds")
    (root / "classnames.txt").write_text("kite\nguitar\n")
    with pytest.raises(InputError, match=r"cls \d is outside the class list \(2 classes"):
        read_wds(root, extract_dir=tmp_path / "x")
    with pytest.raises(InputError, match=r"no \.tar shards"):
        read_wds(tmp_path / "nothing")


def test_class_subset_remaps_and_counts(tmp_path, test_split):
    root = _image_folder(tmp_path / "if", test_split)
    s = read_image_folder(root)
    sub = subset_classes(s, "1,3")
    assert sub.classnames == [s.classnames[1], s.classnames[3]] and len(sub) == 4
    assert sub.n_outside_subset == 10 and set(sub.records["class_index"]) == {0, 1}
    with pytest.raises(InputError, match="outside 0-6"):
        subset_classes(s, [1, 7])


def test_plain_folders_and_manifests_pass_through(synth_data):
    s = read_eval_set(synth_data)
    assert not isinstance(s, EvalImageSet) and "label" in s.records


def test_clip_benchmark_json_schema(tmp_path):
    rec = clip_benchmark_record("wds/synth", "cliplab-tiny", "run", {"acc1": 0.5, "acc5": 1.0,
                                "mean_per_class_recall": 0.25, "n_images": 4})
    path = write_clip_benchmark_json(tmp_path, rec)
    assert path.name == "wds_synth_run_cliplab-tiny_en_zeroshot_classification.json"
    got = json.loads(path.read_text())
    assert set(got) == {"dataset", "model", "pretrained", "task", "metrics", "language"}
    assert got["metrics"] == {"acc1": 0.5, "acc5": 1.0, "mean_per_class_recall": 0.25}
    assert pd.DataFrame([got["metrics"]]).shape == (1, 3)
