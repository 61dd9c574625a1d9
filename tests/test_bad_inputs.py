"""The bad-input corpus (tests/data/bad/cases.csv) through every command it applies to.

Each case ends in a one-line error with its documented exit code, or a counted and reported
skip, or success (with a note where the input was odd) - never a traceback, never a silent
change of the other rows' results.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cliplab.cli import main

HERE = Path(__file__).parent / "data" / "bad"
CASES = list(csv.DictReader(open(HERE / "cases.csv", encoding="utf-8")))
COMMANDS = [c for c in CASES[0] if c not in ("id", "file", "what")]
MANIFEST_HEAD = ["image", "caption", "label", "tone", "age"]
CLASSES = "kite,guitar,book"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    sys.path.insert(0, str(HERE))
    from make_corpus import build

    root = tmp_path_factory.mktemp("bad")
    os.chmod(root, 0o777)
    build(root)
    pd.DataFrame([[str(root / "images" / "good-a.png"), "a photo of a kite.", "kite", "light", "adult"],
                  [str(root / "images" / "good-b.png"), "a photo of a book.", "book", "dark", "child"]],
                 columns=MANIFEST_HEAD).to_csv(root / "good.csv", index=False)
    return root


def _run(args: list[str], cwd: Path, unprivileged: bool = False) -> tuple[int, str, str]:
    """Run the CLI; without the power to read any file when asked and running as root."""
    if unprivileged and os.geteuid() == 0:
        drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
        p = subprocess.run([*drop, sys.executable, "-m", "cliplab.cli", *args], cwd=cwd, capture_output=True, text=True)
        return p.returncode, p.stderr, p.stdout
    import contextlib
    import io

    err, out = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(args)
    finally:
        os.chdir(old)
    return code, err.getvalue(), out.getvalue()


def _args(case: dict, command: str, corpus: Path, work: Path) -> list[str]:
    path = corpus / case["file"]
    kind = case["id"].split("-")[0]
    images = corpus / "good.csv"
    if kind == "img":
        table = pd.read_csv(images)
        table.loc[2] = [str(path), "a photo of a guitar.", "guitar", "medium", "adult"]
        images = work / "manifest.csv"
        table.to_csv(images, index=False)
    elif kind == "man":
        images = path
    model = ["--model", "cliplab-tiny", *(["--pretrained", str(path)] if kind == "ckpt" else ["--random-init"])]
    common = ["--images", str(images), "--cache-dir", str(work / "cache"), "--out", str(work / "out"), "--quiet"]
    if command == "embed":
        return ["embed", *model, *common]
    if command == "zeroshot":
        if case["id"] == "lab-no-braces-template":
            return ["zeroshot", *model, *common, "--classes", CLASSES, "--templates", str(path)]
        return ["zeroshot", *model, *common, "--classes", str(path) if kind == "lab" else CLASSES]
    if command == "audit":
        labels = ["--labels", CLASSES]
        if kind == "lab":
            labels = ["--labels", CLASSES, "--templates", str(path)] if case["id"] == "lab-no-braces-template" \
                else ["--labels", str(path)]
        return ["audit", *model, *common, *labels, "--group-by", "tone", "--truth-column", "label"]
    if command == "train":
        # a config case sets only its bad key: flags would override it (defaults < config < --set < flags)
        size = ["--config", str(path)] if kind == "cfg" else ["--epochs", "1", "--batch-size", "2"]
        return ["train", *size, "--data", str(images), "--out", str(work / "out"),
                "--set", "tensorboard=false", "--set", "progress=false",
                *(["--model", "cliplab-tiny", "--pretrained", str(path)] if kind == "ckpt" else [])]
    raise AssertionError(f"no arguments for command {command}")


PARAMS = [pytest.param(c, cmd, id=f"{c['id']}-{cmd}") for c in CASES for cmd in COMMANDS if c[cmd]]


def test_corpus_has_enough_cases():
    assert len(CASES) >= 50 and len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case, command", PARAMS)
def test_case(case, command, corpus, tmp_path):
    os.chmod(tmp_path, 0o777)
    expected = case[command]
    code, err, stdout = _run(_args(case, command, corpus, tmp_path), tmp_path,
                             unprivileged=case["id"] == "img-unreadable")
    assert "Traceback" not in err + stdout, err
    assert not (tmp_path / "pwned-by-pickle").exists()
    kind, _, detail = expected.partition(":")
    if kind == "error":
        want_code, _, message = detail.partition(":")
        assert code == int(want_code), err
        assert err.startswith("cliplab: error:") and err.count("\n") == 1 and message in err, err
        return
    assert code == 0, err
    if kind == "note":
        assert detail in err, err
    out = tmp_path / "out"
    if command == "train" and not (out / "skipped.csv").exists():  # the trainer writes it only when it skips
        skipped = pd.DataFrame(columns=["path", "reason"])
    else:
        skipped = pd.read_csv(out / "skipped.csv")
    if kind == "skip":
        row = skipped[skipped["path"].str.endswith(Path(case["file"]).name)] if case["id"].startswith("img") else skipped
        assert len(row) == 1 and detail in row["reason"].iloc[0], skipped
        if command == "train":  # the trainer logs to its console handler and RUN/train.log
            assert f"{len(skipped)} skipped" in (out / "train.log").read_text()
        else:
            assert f"skipped {len(skipped)} image" in err
    elif case["id"].startswith("img"):
        assert skipped.empty, skipped
    if case["id"].startswith("img") and command == "embed":
        _assert_good_rows_unchanged(out, corpus, tmp_path)


def _assert_good_rows_unchanged(out: Path, corpus: Path, tmp_path: Path) -> None:
    """The two good images embed exactly as they do on their own: the bad one changed nothing."""
    code, err, _ = _run(["embed", "--model", "cliplab-tiny", "--images", str(corpus / "good.csv"), "--no-cache",
                         "--out", str(tmp_path / "ref"), "--quiet"], tmp_path)
    assert code == 0, err
    got = pd.read_csv(out / "records.csv")
    emb = np.load(out / "embeddings.npy")
    ref = np.load(tmp_path / "ref" / "embeddings.npy")
    good = [i for i, p in enumerate(got["path"]) if "good-" in p]
    assert len(good) == 2
    np.testing.assert_allclose(emb[good], ref, atol=1e-5)
