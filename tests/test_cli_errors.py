"""The command line fails fast and says the right thing: one line on stderr with a documented exit
code, naming the misspelt command, option, choice, tag or value; and for everything that can be
checked without the model, before torch is imported (checked in the process, never timed)."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cliplab.cli import build_parser
from cliplab.errors import EXIT_INPUT, EXIT_MODEL, EXIT_OK, EXIT_USAGE

AUDITS = Path(__file__).resolve().parents[1] / "audits"
# runs the CLI and then reports on stdout's last line whether torch was imported
RUNNER = """import sys
from cliplab.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print("torch imported:", "torch" in sys.modules)
sys.exit(code)
"""


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, str, bool]:
    p = subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    *out, last = p.stdout.splitlines() or [""]
    assert last.startswith("torch imported:"), p.stdout + p.stderr
    return p.returncode, p.stderr, "\n".join(out), last.endswith("True")


@pytest.fixture(scope="module")
def work(synth_data, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli-errors")
    (d / "typo.yaml").write_text((AUDITS / "synthetic.yaml").read_text().replace("templates:", "tempaltes:"))
    (d / "data.csv").write_text(synth_data.read_text().replace("images/", f"{synth_data.parent}/images/"))
    return d


TINY = ["--model", "cliplab-tiny", "--random-init"]
ZS = ["zeroshot", *TINY, "--images", "data.csv", "--classes", "kite,guitar", "--out", "o"]
AUDIT = ["audit", *TINY, "--images", "data.csv", "--labels", str(AUDITS / "synthetic.yaml"), "--out", "o"]
# id, argv, exit code, pattern of the one stderr line; every case fails before torch is imported
CASES = [
    ("misspelt-command", ["audti"], EXIT_USAGE, r"invalid choice 'audti' \(did you mean 'audit'\?\)"),
    ("misspelt-option", ["audit", "--lables", "x.yaml"], EXIT_USAGE,
     r"unrecognized option --lables \(did you mean '--labels'\?\); see `cliplab audit --help`"),
    ("misspelt-top-option", ["--verison"], EXIT_USAGE, r"unrecognized option --verison \(did you mean '--version'"),
    ("misspelt-choice", [*AUDIT, "--format", "fairfce"], EXIT_USAGE,
     r"invalid choice 'fairfce' \(did you mean 'fairface'\?\); choose from auto, table"),
    ("weights-and-random", [*ZS, "--pretrained", "openai"], EXIT_USAGE, r"--pretrained: not allowed with"),
    ("no-weights-zeroshot", [a for a in ZS if a != "--random-init"], EXIT_MODEL,
     r"no weights given: --model cliplab-tiny without --pretrained .*--random-init"),
    ("no-weights-audit", [a for a in AUDIT if a != "--random-init"], EXIT_MODEL, r"no weights given"),
    ("pretrained-path-typo", ["zeroshot", "--pretrained", "demo-out/runn", "--images", "data.csv", "--classes",
                              "a,b", "--out", "o"], EXIT_MODEL,
     r"--pretrained 'demo-out/runn': no such file, run directory or pretrained tag"),
    ("pretrained-tag-typo", ["embed", "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79", "--images",
                             "data.csv", "--out", "o"], EXIT_MODEL,
     r"no such file, run directory or pretrained tag of ViT-B-32 \(did you mean 'laion2b_s34b_b79k'\?\)"),
    ("architecture-typo", ["embed", "--model", "ViT-B32", "--images", "data.csv", "--out", "o"], EXIT_MODEL,
     r"unknown model architecture 'ViT-B32' \(did you mean 'ViT-B-32'\?\)"),
    ("missing-images-zeroshot", [*ZS[:4], "--images", "nope.csv", *ZS[6:]], EXIT_INPUT, r"nope.csv: no such file"),
    ("missing-images-audit", [*AUDIT[:4], "--images", "nope", *AUDIT[6:]], EXIT_INPUT, r"nope: no such file"),
    ("where-value-typo", [*ZS, "--where", "split=tset"], EXIT_INPUT,
     r"where split=tset: no image in .*data.csv has split 'tset' \(did you mean 'test'\?\); values: test, train$"),
    ("where-column-typo", [*ZS, "--where", "tnoe=dark"], EXIT_INPUT,
     r"where column 'tnoe' is not in .*data.csv \(did you mean 'tone'\?\); columns: "),
    ("where-audit-value-typo", [*AUDIT, "--where", "tone=drak"], EXIT_INPUT,
     r"where tone=drak: .*\(did you mean 'dark'\?\); values: dark, light, medium$"),
    ("where-malformed", [*ZS, "--where", "split"], EXIT_INPUT, r"--where takes COLUMN=VALUE"),
    ("one-class", [*ZS[:-4], "--classes", "kite", "--out", "o"], EXIT_INPUT, r"at least 2 classes"),
    ("audit-file-missing", [*AUDIT[:-4], "--labels", "nope/audit.yaml", "--out", "o"], EXIT_INPUT, r"no such file"),
    ("audit-file-key-typo", [*AUDIT[:-4], "--labels", "typo.yaml", "--out", "o"], EXIT_INPUT,
     r"unknown key 'tempaltes' \(did you mean 'templates'\?\)"),
    ("audit-group-by-typo", [*AUDIT, "--group-by", "tnoe"], EXIT_INPUT, r"group_by column 'tnoe' is not in"),
    ("train-config-key-typo", ["train", "--data", "data.csv", "--set", "epoch=1"], EXIT_INPUT,
     r"unknown config key 'epoch' \(did you mean 'epochs'\?\)"),
    ("train-data-missing", ["train", "--data", "nope.csv", "--out", "r"], EXIT_INPUT, r"data nope.csv: no such file"),
    ("train-model-typo", ["train", "--data", "data.csv", "--model", "cliplab-tiyn"], EXIT_MODEL,
     r"unknown model architecture 'cliplab-tiyn' \(did you mean 'cliplab-tiny'\?\)"),
]


@pytest.mark.parametrize("argv, code, pattern", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_command_line_fails_fast_in_one_line(work, argv, code, pattern):
    got, err, _, torch_imported = run_cli(argv, work)
    assert got == code, err
    assert err.startswith("cliplab: error: ") and err.count("\n") == 1, err
    assert re.search(pattern, err.strip()), err
    assert not torch_imported, "the error came after torch was imported"


def test_version_prints_the_version_and_help_imports_no_torch(work):
    from cliplab import __version__

    code, _, out, torch_imported = run_cli(["--version"], work)
    assert (code, out.strip(), torch_imported) == (EXIT_OK, f"cliplab {__version__}", False)
    code, _, out, torch_imported = run_cli(["audit", "--help"], work)
    assert code == EXIT_OK and "--random-init" in out and not torch_imported


def test_models_lists_the_registry_without_torch(work):
    code, _, out, torch_imported = run_cli(["models", "--json"], work)
    doc = json.loads(out)
    assert code == EXIT_OK and not torch_imported
    assert "cliplab-tiny" in doc["tiny"] and {"ViT-B-32", "cliplab-tiny"} <= set(doc["architectures"])
    assert "laion2b_s34b_b79k" in doc["pretrained"]["ViT-B-32"]


def test_a_closed_pipe_is_not_a_traceback(work):
    p = subprocess.Popen([sys.executable, "-m", "cliplab.cli", "models", "--all"], cwd=work, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first line (as `| head` is after its last)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == EXIT_OK and err == ""


def _options(parser: argparse.ArgumentParser):
    """(name, action) of every option of every command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {o}", a) for o, a in _options(sub))
        elif action.option_strings:
            yield action.option_strings[-1], action


def test_every_option_has_help_text():
    options = dict(_options(build_parser()))
    assert len(options) > 60 and "audit --labels" in options
    assert not [name for name, action in options.items() if not (action.help or "").strip()]
