"""TrainConfig: YAML + overrides, type checks, unknown keys, and the CLI flag mapping."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cliplab.cli.train import add_train_arguments, config_from_args
from cliplab.errors import InputError
from cliplab.train import TrainConfig, load_train_config
from cliplab.train.config import config_yaml

CONFIGS = Path(__file__).parents[2] / "training" / "configs"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("name", ["tiny-synthetic.yaml", "finetune-vit-b-32.yaml", "multi-gpu.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_train_config(CONFIGS / name)
    assert cfg.epochs > 0 and cfg.batch_size > 0


def test_precedence_defaults_file_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\nlr: 0.01\nzeroshot_templates: ['a {}.', 'the {}.']\n")
    cfg = load_train_config(f, {"lr": "3e-4", "augment_flip": "yes"})
    assert (cfg.epochs, cfg.lr, cfg.augment_flip) == (7, 3e-4, True)
    assert cfg.zeroshot_templates == ["a {}.", "the {}."]
    assert cfg.batch_size == TrainConfig().batch_size


def test_unknown_key_names_the_key_and_the_valid_ones(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 0.1\n")
    with pytest.raises(InputError) as e:
        load_train_config(f)
    assert "'learning_rate'" in str(e.value) and "valid keys:" in str(e.value) and "lr" in str(e.value)
    with pytest.raises(InputError, match=r"unknown config key 'bach_size' \(did you mean 'batch_size'\?\)"):
        load_train_config(None, {"bach_size": "3"})


@pytest.mark.parametrize("key,value,match", [
    ("batch_size", "-4", "'batch_size' must be positive"),
    ("batch_size", "0", "'batch_size' must be positive"),
    ("batch_size", "many", "'batch_size' must be an integer"),
    ("lr", "fast", "'lr' must be a number"),
    ("precision", "fp8", "'precision' must be one of fp32, amp, amp_bf16"),
    ("tensorboard", "maybe", "'tensorboard' must be true or false"),
    ("beta2", "1.5", "'beta2' must be in"),
    ("zeroshot_templates", "a photo", "has no {}"),
])
def test_bad_values_name_the_key(key, value, match):
    with pytest.raises(InputError, match=match):
        load_train_config(None, {key: value})


def test_yaml_wrong_types_are_errors(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 2.5\n")
    with pytest.raises(InputError, match="'epochs' must be an integer"):
        load_train_config(f)
    f.write_text("- a\n- b\n")
    with pytest.raises(InputError, match="must hold a mapping"):
        load_train_config(f)
    with pytest.raises(InputError, match="not found"):
        load_train_config(tmp_path / "missing.yaml")


def test_flags_override_set_and_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\nbatch_size: 64\n")
    args = parse(["--config", str(f), "--data", "d.csv", "--out", "r", "--set", "epochs=9", "--set", "lr=0.5",
                  "--batch-size", "16", "--precision", "amp_bf16"])
    cfg = config_from_args(args)
    assert (cfg.data, cfg.out, cfg.epochs, cfg.lr, cfg.batch_size, cfg.precision) == \
        ("d.csv", "r", 9, 0.5, 16, "amp_bf16")
    with pytest.raises(InputError, match="--set expects key=value"):
        config_from_args(parse(["--set", "epochs"]))


def test_resume_without_config_reuses_the_runs_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(config_yaml(load_train_config(None, {"epochs": "4", "lr": "0.002",
                                                                         "zeroshot_templates": "a {}.|b {}."})))
    cfg = config_from_args(parse(["--out", str(run), "--resume", "latest"]))
    assert (cfg.epochs, cfg.lr, cfg.resume, cfg.zeroshot_templates) == (4, 0.002, "latest", ["a {}.", "b {}."])
