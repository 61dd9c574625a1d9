import os
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

import cliplab.embed as embed_mod
from cliplab.embed import EmbeddingCache, embed_images, embed_texts


def _folder(tmp_path, n=12):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (32, 32), (i * 20 % 256, 40, 200 - i * 10)).save(tmp_path / f"{i:02d}.png")
    return tmp_path


def test_shapes_normalisation_and_dtype(tiny, synth_data):
    r = embed_images(tiny, synth_data, cache_dir=None, progress=False)
    assert r.features.shape == (192, 128) and r.features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(r.features, axis=1), 1, atol=1e-5)
    assert len(r.records) == 192 and "tone" in r.records and r.n_encoded == 192
    half = embed_images(tiny, synth_data, cache_dir=None, dtype="float16", progress=False)
    assert half.features.dtype == np.float16
    np.testing.assert_allclose(half.features, r.features, atol=2e-3)


def test_batching_and_workers_do_not_change_results(tiny, synth_data):
    a = embed_images(tiny, synth_data, cache_dir=None, batch_size=7, workers=0, progress=False)
    b = embed_images(tiny, synth_data, cache_dir=None, batch_size=64, workers=2, progress=False)
    np.testing.assert_allclose(a.features, b.features, atol=1e-5)


def test_second_run_decodes_nothing(tiny, tmp_path, monkeypatch):
    folder = _folder(tmp_path / "imgs")
    first = embed_images(tiny, folder, cache_dir=tmp_path / "c", progress=False)
    assert (first.n_cached, first.n_encoded) == (0, 12)

    def no_decoding(*a, **k):
        raise AssertionError("image decoded on a fully cached run")

    monkeypatch.setattr(embed_mod, "load_image", no_decoding)
    monkeypatch.setattr(tiny.model, "encode_image", no_decoding)
    second = embed_images(tiny, folder, cache_dir=tmp_path / "c", progress=False)
    assert (second.n_cached, second.n_encoded) == (12, 0)
    np.testing.assert_array_equal(first.features, second.features)


def test_changed_and_added_files_are_encoded_alone(tiny, tmp_path):
    folder = _folder(tmp_path / "imgs")
    embed_images(tiny, folder, cache_dir=tmp_path / "c", progress=False)
    Image.new("RGB", (32, 32), (0, 255, 0)).save(folder / "03.png")
    os.utime(folder / "03.png", ns=(1, 1))
    Image.new("RGB", (32, 32), (255, 0, 0)).save(folder / "new.png")
    r = embed_images(tiny, folder, cache_dir=tmp_path / "c", progress=False)
    assert (r.n_cached, r.n_encoded) == (11, 2)
    fresh = embed_images(tiny, folder, cache_dir=None, progress=False)
    np.testing.assert_allclose(r.features, fresh.features, atol=1e-6)


def test_cache_is_per_model_and_preprocess(tiny, tmp_path):
    from cliplab.models import load_model

    folder = _folder(tmp_path / "imgs", 3)
    other = load_model("cliplab-tiny", device="cpu", seed=1)
    embed_images(tiny, folder, cache_dir=tmp_path / "c", progress=False)
    r = embed_images(other, folder, cache_dir=tmp_path / "c", progress=False)
    assert r.n_cached == 0
    assert EmbeddingCache(tmp_path / "c", tiny).dir != EmbeddingCache(tmp_path / "c", other).dir


def test_unreadable_images_are_skipped_and_listed(tiny, tmp_path):
    folder = _folder(tmp_path / "imgs", 4)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "zero.jpg").write_bytes(b"")
    r = embed_images(tiny, folder, cache_dir=tmp_path / "c", progress=False)
    assert len(r) == 4 and sorted(s.path.rsplit("/", 1)[-1] for s in r.skipped) == ["bad.png", "zero.jpg"]
    assert not any(p.endswith(("bad.png", "zero.jpg")) for p in r.records["path"])


def test_torn_and_foreign_cache_files_are_ignored(tiny, tmp_path):
    folder = _folder(tmp_path / "imgs", 3)
    cache = EmbeddingCache(tmp_path / "c", tiny)
    (cache.dir / ".tmp-shard-x.npz").write_bytes(b"half a file")
    (cache.dir / "shard-garbage.npz").write_bytes(b"PK\x03\x04 not a zip")
    r = embed_images(tiny, folder, cache_dir=tmp_path / "c", progress=False)
    assert r.n_encoded == 3


def test_compaction_keeps_every_entry(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(embed_mod, "MAX_SHARDS", 2)
    folder = _folder(tmp_path / "imgs", 10)
    r = embed_images(tiny, folder, cache_dir=tmp_path / "c", batch_size=2, flush_every=2, progress=False)
    cache = EmbeddingCache(tmp_path / "c", tiny)
    assert len(list(cache.dir.glob("shard-*.npz"))) == 1 and len(cache.load()) == 10
    assert embed_images(tiny, folder, cache_dir=tmp_path / "c", progress=False).n_cached == 10
    assert r.n_encoded == 10


CHILD = """
import sys, time
from cliplab.models import load_model
from cliplab.embed import embed_images
m = load_model("cliplab-tiny", device="cpu")
encode = m.model.encode_image
def slow(*a, **k):
    time.sleep(0.15)
    return encode(*a, **k)
m.model.encode_image = slow
embed_images(m, sys.argv[1], cache_dir=sys.argv[2], batch_size=8, flush_every=8, workers=0, progress=False)
"""


def test_killed_run_leaves_a_usable_cache(tiny, synth_data, tmp_path):
    cache_dir = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(synth_data), str(cache_dir)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(cache_dir.glob("*/shard-*.npz"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shards = list(cache_dir.glob("*/shard-*.npz"))
    assert proc.returncode == -signal.SIGKILL and len(shards) >= 3
    resumed = embed_images(tiny, synth_data, cache_dir=cache_dir, progress=False)
    assert 24 <= resumed.n_cached < 192 and resumed.n_cached + resumed.n_encoded == 192
    fresh = embed_images(tiny, synth_data, cache_dir=None, progress=False)
    np.testing.assert_allclose(resumed.features, fresh.features, atol=1e-6)


def test_texts_are_encoded_once(tiny, monkeypatch):
    tiny.text_cache.clear()
    a = embed_texts(tiny, ["a cat", "a dog", "a cat"])
    assert a.shape == (3, 128) and np.allclose(a[0], a[2])
    calls = []
    encode = tiny.model.encode_text
    monkeypatch.setattr(tiny.model, "encode_text", lambda t, **k: calls.append(len(t)) or encode(t, **k))
    b = embed_texts(tiny, ["a dog", "a bird"])
    assert calls == [1] and np.allclose(b[0], a[1])


def test_two_processes_fill_one_cache(tiny, synth_data, tmp_path):
    cmd = [sys.executable, "-m", "cliplab.cli", "embed", "--model", "cliplab-tiny", "--images", str(synth_data),
           "--cache-dir", str(tmp_path / "c"), "--batch-size", "16", "--quiet"]
    procs = [subprocess.Popen(cmd + ["--out", str(tmp_path / f"o{i}")], stderr=subprocess.PIPE) for i in (1, 2)]
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    again = embed_images(tiny, synth_data, cache_dir=tmp_path / "c", progress=False)
    assert again.n_cached == 192
    np.testing.assert_array_equal(np.load(tmp_path / "o1" / "embeddings.npy"),
                                  np.load(tmp_path / "o2" / "embeddings.npy"))
    np.testing.assert_allclose(again.features, np.load(tmp_path / "o1" / "embeddings.npy"), atol=1e-6)


def test_truncated_texts_are_recorded(tiny):
    long = "a photo of " + "a very " * 40 + "long cat"
    embed_texts(tiny, ["a cat", long])
    assert long in tiny.truncated_texts and "a cat" not in tiny.truncated_texts


def test_each_distinct_file_is_encoded_once_and_rows_keep_their_metadata(tiny, tmp_path):
    import pandas as pd

    folder = _folder(tmp_path / "imgs", n=3)
    rows = [f"{i % 3:02d}.png" if i % 5 else f"./{i % 3:02d}.png" for i in range(60)]
    pd.DataFrame({"image": rows, "row": range(60)}).to_csv(folder / "m.csv", index=False)
    r = embed_images(tiny, folder / "m.csv", cache_dir=None, progress=False)
    assert r.n_encoded == 3 and len(r) == 60 and r.records["row"].tolist() == [str(i) for i in range(60)]
    one = embed_images(tiny, [folder / "01.png"], cache_dir=None, progress=False)  # a list of paths
    np.testing.assert_allclose(r.features[r.records["image"].str.endswith("01.png").to_numpy()],
                               np.repeat(one.features, 20, axis=0), atol=1e-6)


def test_verify_cache_sees_a_rewrite_with_the_same_size_and_mtime(tiny, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "x.bmp"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    for verify in (False, True):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        st = path.stat()
        first = embed_images(tiny, [path], cache_dir=tmp_path / f"c{verify}", verify_cache=verify, progress=False)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)  # BMP: same size
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert path.stat().st_size == st.st_size
        again = embed_images(tiny, [path], cache_dir=tmp_path / f"c{verify}", verify_cache=verify, progress=False)
        fresh = embed_images(tiny, [path], cache_dir=None, progress=False)
        stale = np.allclose(again.features, first.features)
        assert stale != verify  # path+size+mtime keys cannot see it (README says when); content keys do
        if verify:
            np.testing.assert_allclose(again.features, fresh.features, atol=1e-6)


def test_non_finite_embeddings_stop_with_a_model_error(tmp_path):
    import pytest
    import torch

    from cliplab.errors import ModelError
    from cliplab.models import load_model

    broken = load_model("cliplab-tiny", device="cpu")
    with torch.no_grad():
        broken.model.visual.proj.fill_(float("nan"))
    with pytest.raises(ModelError, match=r"non-finite \(NaN/inf\) image embeddings"):
        embed_images(broken, _folder(tmp_path / "imgs", n=2), cache_dir=tmp_path / "c", progress=False)
    assert not list((tmp_path / "c").rglob("shard-*"))  # nothing NaN was cached
    with torch.no_grad():
        broken.model.text_projection.fill_(float("inf"))
    with pytest.raises(ModelError, match="text embeddings"):
        embed_texts(broken, ["a photo"])


def test_bad_arguments_and_a_file_deleted_after_listing(tiny, tmp_path):
    import pytest

    from cliplab.data import read_images
    from cliplab.errors import InputError

    folder = _folder(tmp_path / "imgs", n=3)
    with pytest.raises(InputError, match="workers must be 0"):
        embed_images(tiny, folder, workers=-1, cache_dir=None, progress=False)
    with pytest.raises(InputError, match="max_pixels must be at least 1"):
        embed_images(tiny, folder, max_pixels=0, cache_dir=None, progress=False)
    listed = read_images(folder)
    (folder / "01.png").unlink()
    r = embed_images(tiny, listed, cache_dir=tmp_path / "c", progress=False)
    assert len(r) == 2 and [(s.path.rsplit("/", 1)[1], s.reason) for s in r.skipped] == [("01.png", "missing file")]


def test_outputs_are_written_as_one_set(tiny, tmp_path):
    import pytest

    from cliplab.atomic import check_output_set
    from cliplab.embed import write_embeddings
    from cliplab.errors import InputError

    r = embed_images(tiny, _folder(tmp_path / "imgs", n=3), cache_dir=None, progress=False)
    out = write_embeddings(r, tmp_path / "out")
    info = check_output_set(out, "embed.json")
    assert set(info["files"]) == {"embeddings.npy", "records.csv", "skipped.csv"} and info["n_images"] == 3
    np.save(out / "embeddings.npy", r.features[:2])  # a mixed set, as a half-finished writer would leave
    with pytest.raises(InputError, match=r"embeddings\.npy does not belong to embed\.json"):
        check_output_set(out, "embed.json")
