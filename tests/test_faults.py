"""Fault injection for the core commands: a full disk fails cleanly and keeps earlier outputs whole.

A small tmpfs is mounted in a private mount namespace (unshare), so nothing leaks out of the test.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cliplab.errors import EXIT_OUTPUT

ON_SMALL_DISK = """
mount -t tmpfs -o size=$1 tmpfs "$2" || exit 99
shift 2
"$@" --images "$FIRST" >/dev/null 2>"$OUT.first-err" || { echo first run failed >&2; exit 98; }
"$@" --images "$SECOND"; code=$?
cp -a "$OUT/." "$OUT.after/"
exit $code
"""


def small_disk(out: Path, size: str, first: Path, second: Path, cli: list[str]) -> subprocess.CompletedProcess:
    """On a fresh tmpfs at ``out``: run the CLI on ``first`` (must fit), then on ``second``; copy ``out`` back."""
    (out.parent / f"{out.name}.after").mkdir()
    out.mkdir()
    env = {**os.environ, "FIRST": str(first), "SECOND": str(second), "OUT": str(out)}
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", ON_SMALL_DISK, "sh",
                           size, str(out), sys.executable, "-m", "cliplab.cli", *cli], capture_output=True,
                          text=True, env=env)


@pytest.fixture(scope="module", autouse=True)
def can_mount(tmp_path_factory):
    probe = tmp_path_factory.mktemp("probe")
    p = subprocess.run(["unshare", "--mount", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "{probe}"'],
                       capture_output=True, text=True)
    if os.geteuid() != 0 or p.returncode != 0:
        pytest.fail(f"the full-disk tests need root and a tmpfs mount (unshare --mount): {p.stderr.strip()}")


@pytest.fixture(scope="module")
def eight(synth_data):
    pd.read_csv(synth_data).head(8).to_csv(synth_data.parent / "m8.csv", index=False)
    return synth_data.parent / "m8.csv"


@pytest.mark.parametrize("command", ["embed", "zeroshot"])
def test_full_disk_keeps_the_previous_complete_output(command, synth_data, eight, tmp_path):
    """The second, larger run fails for space mid-way; the first run's files are all still there, as one set."""
    from cliplab.atomic import check_output_set

    out = tmp_path / "out"
    # the second run replaces the first's results on purpose: --overwrite (embed), random weights (zeroshot)
    extra = ["--classes", "kite,guitar,book,flower,ball,cup,key,phone", "--random-init"] if command == "zeroshot" \
        else ["--overwrite"]
    p = small_disk(out, "24k", eight, synth_data,
                   [command, "--model", "cliplab-tiny", "--no-cache", "--quiet", "--out", str(out), *extra])
    assert p.returncode == EXIT_OUTPUT, p.stderr
    assert p.stderr.startswith("cliplab: error: cannot write") and "No space left" in p.stderr
    assert p.stderr.count("\n") == 1
    after = tmp_path / "out.after"
    manifest = check_output_set(after, "embed.json" if command == "embed" else "metrics.json")
    assert manifest["n_images"] == 8
    if command == "embed":
        assert np.load(after / "embeddings.npy").shape == (8, 128)  # the first run's output, whole
        assert len(pd.read_csv(after / "records.csv")) == 8
    else:
        assert len(pd.read_csv(after / "predictions.csv")) == 8
    assert not [f.name for f in after.iterdir() if f.name.startswith(".")], "temp files left behind"


def test_full_disk_for_the_cache(synth_data, eight, tmp_path):
    cache = tmp_path / "cache"
    p = small_disk(cache, "12k", eight, synth_data,
                   ["embed", "--model", "cliplab-tiny", "--cache-dir", str(cache), "--quiet", "--overwrite",
                    "--out", str(tmp_path / "o")])
    assert p.returncode == EXIT_OUTPUT and "cannot write the embedding cache" in p.stderr, p.stderr
    assert "No space left" in p.stderr and p.stderr.count("\n") == 1


READ_ONLY = 'mount -t tmpfs -o ro,size=64k tmpfs "$1" || exit 99; shift; "$@"'


@pytest.mark.parametrize("command", ["embed", "embed-cache", "train"])
def test_read_only_output_folder(command, synth_data, eight, tmp_path):
    """A read-only mount stops root too (permission bits do not): each command says so in one line."""
    out = tmp_path / "ro"
    out.mkdir()
    args = {"embed": ["embed", "--model", "cliplab-tiny", "--images", str(eight), "--no-cache", "--quiet"],
            "embed-cache": ["embed", "--model", "cliplab-tiny", "--images", str(eight), "--quiet",
                            "--cache-dir", str(out / "cache")],
            "train": ["train", "--data", str(synth_data), "--epochs", "1", "--batch-size", "16",
                      "--set", "progress=false", "--set", "tensorboard=false"]}[command]
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY, "sh", str(out),
                        sys.executable, "-m", "cliplab.cli", *args,
                        "--out", str((tmp_path if command == "embed-cache" else out) / "run")],
                       capture_output=True, text=True)
    assert p.returncode == EXIT_OUTPUT, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("cliplab: error:") and "Read-only file system" in last, p.stderr
    assert "Traceback" not in p.stderr
