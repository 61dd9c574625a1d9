"""cliplab embed under torchrun on CPU (gloo): 2 ranks give one process's embeddings, in its order.

Manifests and webdataset shards; a rank SIGKILLed mid-run, then the same command again; more ranks
than shards; ranks started on different inputs; and the bad inputs of a shard source. The torchrun
jobs of each test run concurrently to keep the suite short on small machines.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import webdataset as wds

from cliplab.errors import InputError, OutputError
from cliplab.parallel import EmbedJob, rank_range, run_embed

REPO = Path(__file__).parents[1]
# a runner for the hooks a command line cannot express: a rank that kills itself, ranks that disagree
RUNNER = """
import json, os, signal, sys
import cliplab.embed, cliplab.parallel
job = json.loads(sys.argv[1])
rank = int(os.environ["RANK"])
if rank == int(job.pop("kill_rank", -1)):
    write = cliplab.embed.EmbeddingCache.write
    def write_then_die(self, keys, features):
        write(self, keys, features)
        os.kill(os.getpid(), signal.SIGKILL)
    cliplab.embed.EmbeddingCache.write = write_then_die
if rank == 1 and "rank1_images" in job:
    job["images"] = job.pop("rank1_images")
job.pop("rank1_images", None)
cliplab.parallel.run_embed(cliplab.parallel.EmbedJob(**job))
"""


def torchrun(tmp_path: Path, n: int, job: dict) -> subprocess.Popen:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    job = {"model": "cliplab-tiny", "device": "cpu", "progress": False, "workers": 0, **job}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                             str(script), json.dumps(job)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(p: subprocess.Popen) -> tuple[int, str]:
    out = p.communicate(timeout=240)[0]
    if p.returncode != 0 and "Address already in use" in out:
        pytest.skip("no free port for the gloo rendezvous")
    return p.returncode, out


def one_process(**kw) -> tuple[np.ndarray, pd.DataFrame]:
    """In this process, with the ranks' one thread: matmul's rounding depends on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        done = run_embed(EmbedJob(model="cliplab-tiny", device="cpu", progress=False, workers=0, **kw))
    finally:
        torch.set_num_threads(threads)
    assert done.out is not None
    return np.load(done.out / "embeddings.npy"), pd.read_csv(done.out / "records.csv")


def outputs(out: Path) -> tuple[np.ndarray, pd.DataFrame]:
    return np.load(out / "embeddings.npy"), pd.read_csv(out / "records.csv")


@pytest.fixture(scope="module")
def shards(synth_data: Path, tmp_path_factory) -> str:
    """The first 48 synthetic images as 4 shards of 12 (PNG bytes, caption, json): their spec."""
    rows = pd.read_csv(synth_data).head(48)
    folder = tmp_path_factory.mktemp("shards")
    paths = [str(synth_data.parent / p) for p in rows["image"]]
    for s in range(4):
        with wds.TarWriter(str(folder / f"{s:03d}.tar")) as w:
            for i in range(s * 12, s * 12 + 12):
                w.write({"__key__": f"img{i:04d}", "png": Path(paths[i]).read_bytes(),
                         "txt": str(rows["caption"][i]), "json": {"tone": str(rows["tone"][i])}})
    return f"{folder}/{{000..003}}.tar"


def test_rank_ranges_cover_the_rows_in_order():
    for n, world in [(10, 3), (2, 4), (0, 2), (7, 1)]:
        parts = [rank_range(n, r, world) for r in range(world)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
        assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


def test_two_ranks_equal_one_process_from_manifest_and_shards(synth_data, shards, tmp_path):
    spec = shards
    manifest = torchrun(tmp_path, 2, {"images": str(synth_data), "out": str(tmp_path / "m2"),
                                      "cache_dir": str(tmp_path / "cache"), "batch_size": 16})
    sharded = torchrun(tmp_path, 2, {"images": spec, "out": str(tmp_path / "s2"), "cache_dir": None,
                                     "batch_size": 5})
    m1, m1_rec = one_process(images=str(synth_data), out=str(tmp_path / "m1"), cache_dir=None)
    s1, s1_rec = one_process(images=spec, out=str(tmp_path / "s1"), cache_dir=None, batch_size=5)
    for p in (manifest, sharded):
        rc, log = finish(p)
        assert rc == 0, log[-3000:]

    m2, m2_rec = outputs(tmp_path / "m2")
    assert m2.shape == (192, 128)
    np.testing.assert_array_equal(m2, m1)  # exactly: same rows, same order
    assert m2_rec["path"].tolist() == m1_rec["path"].tolist()
    s2, s2_rec = outputs(tmp_path / "s2")
    np.testing.assert_array_equal(s2, s1)
    assert s2_rec["key"].tolist() == [f"img{i:04d}" for i in range(48)] == s1_rec["key"].tolist()
    assert s2_rec["tone"].tolist() == m1_rec["tone"].head(48).tolist()  # json metadata became columns
    # the same pixels from tar members and from files: the same embeddings
    np.testing.assert_allclose(s2, m1[:48], atol=1e-6)
    assert not (tmp_path / "s2.embed-parts").exists()  # the private cache of --no-cache is removed
    info = json.loads((tmp_path / "m2" / "embed.json").read_text())
    assert (info["n_encoded"], info["n_cached"]) == (192, 0)


def test_killed_rank_then_same_command_resumes_with_identical_outputs(shards, tmp_path):
    spec = shards
    job = {"images": spec, "out": str(tmp_path / "o"), "cache_dir": str(tmp_path / "cache"), "batch_size": 4,
           "flush_every": 4}
    killed = torchrun(tmp_path, 2, {**job, "kill_rank": 1})
    extra = torchrun(tmp_path, 3, {"images": spec.replace("{000..003}", "{000..001}"), "out": str(tmp_path / "x"),
                                   "cache_dir": None})  # rank 2 has no shard
    disagree = torchrun(tmp_path, 2, {"images": spec, "rank1_images": spec.replace("003", "002"),
                                      "out": str(tmp_path / "d"), "cache_dir": None})
    reference, _ = one_process(images=spec, out=str(tmp_path / "ref"), cache_dir=None)

    rc, log = finish(killed)
    assert rc != 0 and not (tmp_path / "o" / "embeddings.npy").exists(), log[-3000:]
    rc, log = finish(torchrun(tmp_path, 2, job))
    assert rc == 0, log[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "embeddings.npy"), reference)
    info = json.loads((tmp_path / "o" / "embed.json").read_text())
    assert info["n_images"] == 48 and info["n_cached"] >= 4 and info["n_encoded"] == 48 - info["n_cached"]

    rc, log = finish(extra)
    assert rc == 0, log[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "x" / "embeddings.npy"), reference[:24])

    rc, log = finish(disagree)
    assert rc != 0 and "ranks disagree on the input: rank 0 has images=" in log, log[-3000:]
    assert not (tmp_path / "d").exists()


def test_truncated_shard_keeps_its_good_samples_and_reports_the_rest(shards, tmp_path):
    spec = shards
    folder = Path(spec).parent
    data = (folder / "001.tar").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "000.tar").write_bytes((folder / "000.tar").read_bytes())
    (bad / "001.tar").write_bytes(data[:len(data) // 2])
    done = run_embed(EmbedJob(images=f"{bad}/{{000..001}}.tar", out=str(tmp_path / "o"), model="cliplab-tiny",
                              device="cpu", progress=False, workers=0, cache_dir=None))
    r = done.result
    assert r is not None and 12 < len(r) < 24
    reference, _ = one_process(images=spec, out=str(tmp_path / "ref"), cache_dir=None)
    np.testing.assert_allclose(r.features, reference[:len(r)], atol=1e-6)  # batches differ: rounding only
    (skip,) = [s for s in r.skipped if s.path.endswith("001.tar")]
    partial = [s for s in r.skipped if "001.tar#" in s.path]  # the sample the damage cut in two, if any
    assert "truncated" in skip.reason and f"{len(r) - 12 + len(partial)} sample(s) read" in skip.reason
    assert "_io.BufferedReader" not in skip.reason
    assert "truncated" in pd.read_csv(tmp_path / "o" / "skipped.csv")["reason"].iloc[-1]


def test_bad_shard_lists_and_a_foreign_output_folder(synth_data, shards, tmp_path, capsys):
    from cliplab.cli import main

    spec = shards
    job = dict(model="cliplab-tiny", device="cpu", progress=False, workers=0, cache_dir=str(tmp_path / "c"))
    code = main(["embed", "--model", "cliplab-tiny", "--device", "cpu", "--images", str(tmp_path / "{0..3}.tar"),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "the shard list matches no file" in err[0], err
    with pytest.raises(InputError, match="need a manifest"):
        run_embed(EmbedJob(images=spec, out=str(tmp_path / "o"), where=["split=test"], **job))
    with pytest.raises(InputError, match="matches no file"):
        run_embed(EmbedJob(images=str(tmp_path / "none-{00..09}.tar"), out=str(tmp_path / "o"), **job))
    with pytest.raises(InputError, match="1 of 5 shards do not exist"):
        run_embed(EmbedJob(images=spec.replace("003", "004"), out=str(tmp_path / "o"), **job))
    run_embed(EmbedJob(images=str(synth_data), out=str(tmp_path / "o"), where=["split=test"], **job))
    with pytest.raises(OutputError, match="holds the results of another run"):
        run_embed(EmbedJob(images=str(synth_data), out=str(tmp_path / "o"), **job))
    again = run_embed(EmbedJob(images=str(synth_data), out=str(tmp_path / "o"), where=["split=test"], **job))
    assert again.result is not None and again.result.n_encoded == 0  # same command: fine, all cached
    replaced = run_embed(EmbedJob(images=str(synth_data), out=str(tmp_path / "o"), overwrite=True, **job))
    assert replaced.result is not None and len(replaced.result) == 192


def test_profile_names_every_stage(shards, tmp_path):
    spec = shards
    done = run_embed(EmbedJob(images=spec, out=str(tmp_path / "o"), model="cliplab-tiny", device="cpu",
                              progress=False, workers=0, cache_dir=None, profile=True))
    assert done.timer is not None and done.timer.images == 48
    prof = json.loads((tmp_path / "o" / "profile.json").read_text())
    assert set(prof["stages"]) == {"read", "decode", "preprocess", "wait", "forward", "write"}
    assert all(prof["stages"][s]["seconds"] > 0 for s in ("read", "decode", "preprocess", "forward", "write"))
    assert "bound by:" in done.timer.report()


def test_shard_source_reads_no_file_of_its_own(shards):
    from cliplab.shards import is_shard_spec, read_shards

    spec = shards
    assert is_shard_spec(spec) and not is_shard_spec("/data/metadata.csv")
    assert [Path(u).name for u in read_shards(spec).urls] == ["000.tar", "001.tar", "002.tar", "003.tar"]
    with pytest.raises(InputError, match="only local shard files"):
        read_shards("https://example.com/{0..1}.tar")
