import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd

from cliplab.cli import main
from cliplab.errors import EXIT_INPUT, EXIT_OUTPUT


def test_help_lists_every_command():  # --version and torch-free --help: tests/test_cli_errors.py
    out = subprocess.run([sys.executable, "-m", "cliplab.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("synth", "embed", "zeroshot", "train", "models", "audit"):
        assert cmd in out.stdout


def test_models_lists_tiny_and_counts_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cliplab-tiny" in out and re.search(r"\d+ architectures, \d+ pretrained weights", out)
    assert main(["models", "--all"]) == 0
    assert "ViT-B-32\tlaion2b_s34b_b79k" in capsys.readouterr().out.splitlines()


def test_zeroshot_on_random_weights_says_so_everywhere(synth_data, tmp_path, capsys):
    out = tmp_path / "zs"
    code = main(["zeroshot", "--model", "cliplab-tiny", "--random-init", "--images", str(synth_data),
                 "--classes", "kite,guitar,book,flower,ball,cup,key,phone", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0 and printed[0].startswith("warning: RANDOM WEIGHTS: cliplab-tiny@random-seed0")
    assert "(RANDOM WEIGHTS)" in printed[1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert next(iter(metrics)) == "random_init" and metrics["random_init"] is True


def test_synth_bad_value_is_one_line(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--bias", "1.5"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith("cliplab: error:") and err.count("\n") == 1


def test_embed_writes_aligned_outputs_and_reports_skips(synth_data, tmp_path, capsys):
    table = pd.read_csv(synth_data).head(20)
    table = pd.concat([table, pd.DataFrame({"image": ["images/nope.png"]})], ignore_index=True)
    table.to_csv(synth_data.parent / "m20.csv", index=False)
    out = tmp_path / "e"
    code = main(["embed", "--model", "cliplab-tiny", "--images", str(synth_data.parent / "m20.csv"),
                 "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and "skipped 1 image" in captured.err and "nope.png: missing file" in captured.err
    emb = np.load(out / "embeddings.npy")
    records = pd.read_csv(out / "records.csv")
    assert emb.shape == (20, 128) and len(records) == 20
    assert pd.read_csv(out / "skipped.csv")["reason"].tolist() == ["missing file"]
    info = json.loads((out / "embed.json").read_text())
    assert info["n_images"] == 20 and info["n_skipped"] == 1 and info["model"] == "cliplab-tiny@random-seed0"


def test_unwritable_output_folder(synth_data, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    code = main(["embed", "--model", "cliplab-tiny", "--images", str(synth_data), "--no-cache",
                 "--out", str(tmp_path / "a-file" / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_OUTPUT and "cannot write to output folder" in err and err.count("\n") == 1


def test_outputs_follow_the_umask_not_0600(tmp_path):
    from cliplab.atomic import _UMASK, write_text

    write_text(tmp_path / "x.json", "{}")
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~_UMASK
