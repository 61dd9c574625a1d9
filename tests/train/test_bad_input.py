"""Bad input: each case is one clear line with the documented exit code, and nothing already written is lost."""
from __future__ import annotations

import csv
import shutil

import pandas as pd
import pytest

from cliplab.cli import main
from cliplab.errors import EXIT_INPUT, EXIT_MODEL, EXIT_OUTPUT, InputError, ModelError, OutputError
from cliplab.train import train


def copy_manifest(train_data, tmp_path, edit) -> str:
    table = pd.read_csv(train_data, dtype=str)
    table["image"] = [str(train_data.parent / p) for p in table["image"]]
    table = edit(table)
    path = tmp_path / "manifest.csv"
    table.to_csv(path, index=False)
    return str(path)


def one_line_error(capsys, argv, code):
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cliplab: error:"), err
    return err[0]


def test_missing_caption_column_names_the_columns(train_data, tmp_path, tiny_config):
    manifest = copy_manifest(train_data, tmp_path, lambda t: t.drop(columns=["caption"]))
    with pytest.raises(InputError, match=r"no caption column .*columns are image, label, split"):
        train(tiny_config(manifest, tmp_path / "run"))


def test_empty_captions_and_unreadable_images_are_skipped_and_counted(train_data, tmp_path, tiny_config, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")

    def edit(t):
        t.loc[0:2, "caption"] = ""  # 3 empty captions
        t.loc[3, "image"] = str(broken)  # undecodable
        t.loc[4, "image"] = str(tmp_path / "gone.png")  # missing
        return t

    result = train(tiny_config(copy_manifest(train_data, tmp_path, edit), tmp_path / "run", batch_size=16))
    assert result.n_skipped == 5 and result.n_train == 128 - 5
    with open(tmp_path / "run" / "skipped.csv", newline="") as f:
        reasons = sorted(r["reason"] for r in csv.DictReader(f))
    assert reasons.count("empty caption") == 3 and "missing file" in reasons and len(reasons) == 5
    assert "5 skipped (3 empty caption" in capsys.readouterr().err


def test_batch_larger_than_the_data_is_a_clear_error(train_data, tmp_path, tiny_config):
    with pytest.raises(InputError, match=r"batch_size 512 is larger than the 128 usable training pairs"):
        train(tiny_config(train_data, tmp_path / "run", batch_size=512))


@pytest.mark.parametrize("argv,match", [
    (["--set", "batch_size=-3"], "'batch_size' must be positive"),
    (["--set", "epochs=two"], "'epochs' must be an integer"),
    (["--set", "learning_rate=0.1"], "unknown config key 'learning_rate'"),
])
def test_cli_config_errors_exit_3(train_data, tmp_path, capsys, argv, match):
    line = one_line_error(capsys, ["train", "--data", str(train_data), "--out", str(tmp_path / "r"), *argv],
                          EXIT_INPUT)
    assert match in line


def test_fp16_amp_on_cpu_is_refused(train_data, tmp_path, tiny_config):
    with pytest.raises(InputError, match="needs a CUDA device"):
        train(tiny_config(train_data, tmp_path / "run", precision="amp", device="cpu"))


def test_existing_run_is_not_overwritten(trained_run, train_data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    line = one_line_error(capsys, ["train", "--data", str(train_data), "--out", str(run), "--set", "epochs=1",
                                   "--set", "progress=false"], EXIT_OUTPUT)
    assert "--resume latest" in line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_with_another_architecture_names_both(trained_run, train_data, tmp_path, tiny_config):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    with pytest.raises(ModelError, match=r"architecture 'cliplab-tiny'.*model is 'cliplab-tiny-64'"):
        train(tiny_config(train_data, run, resume="latest", model="cliplab-tiny-64"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_pretrained_weights_of_another_architecture(trained_run, train_data, tmp_path, capsys):
    weights = trained_run / "final" / "open_clip_pytorch_model.bin"
    line = one_line_error(capsys, ["train", "--data", str(train_data), "--out", str(tmp_path / "r"),
                                   "--model", "cliplab-tiny-64", "--pretrained", str(weights)], EXIT_MODEL)
    assert "cliplab-tiny-64" in line and str(weights) in line


def test_resume_from_a_file_that_is_not_a_training_checkpoint(trained_run, train_data, tmp_path, tiny_config):
    with pytest.raises(ModelError, match="not a cliplab training checkpoint"):
        train(tiny_config(train_data, tmp_path / "run",
                          resume=str(trained_run / "final" / "open_clip_pytorch_model.bin")))


def test_unwritable_output(train_data, tmp_path, tiny_config):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        train(tiny_config(train_data, tmp_path / "file" / "run"))
