"""The bad-input corpus (tests/data/bad/cases.csv) through every command it applies to.

Each case ends in a one-line error with its documented exit code, or a counted and reported
skip, or success (with a note where the input was odd) - never a traceback, never a silent
change of the other rows' results.

A case's id says what kind of input it is: img (an image on a manifest row), man (a manifest),
lab (class names), cfg (training config), ckpt (--pretrained), dir (--images FOLDER), model
(--model SPEC), flag (extra flags), tmpl (inline --templates), race (an image deleted between
listing and embedding), cache (an image rewritten with the same size and mtime, --verify-cache),
out (a temp file left in the output folder). Its expected outcome: ``error:CODE:TEXT``, or
``&``-joined checks of a successful run: ok, note:TEXT, skip:TEXT, rows:N (records.csv rows),
same:IMAGE (the row's embedding is IMAGE's), has:FILE:TEXT, file:NAME, gone / kept (the temp file).
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cliplab.atomic import _HOST
from cliplab.cli import main

HERE = Path(__file__).parent / "data" / "bad"
with open(HERE / "cases.csv", encoding="utf-8") as _f:
    CASES = list(csv.DictReader(_f))
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


def _row_file(case: dict, corpus: Path, work: Path) -> Path:
    """The image put on the manifest's third row: the case's file, or a copy the test may change."""
    kind = case["id"].split("-")[0]
    path = corpus / case["file"]
    if kind == "race":
        victim = work / f"victim{path.suffix}"
        shutil.copy(path, victim)
        return victim
    if kind == "cache":
        victim = work / f"victim{path.suffix}"
        shutil.copy(corpus / case["file"].replace("-b.", "-a."), victim)  # its same-size twin, cached first
        return victim
    return path


def _args(case: dict, command: str, corpus: Path, work: Path) -> list[str]:
    path = corpus / case["file"]
    kind = case["id"].split("-")[0]
    images = corpus / "good.csv"
    if kind in ("img", "race", "cache"):
        table = pd.read_csv(images)
        table.loc[2] = [str(_row_file(case, corpus, work)), "a photo of a guitar.", "guitar", "medium", "adult"]
        images = work / "manifest.csv"
        table.to_csv(images, index=False)
    elif kind in ("man", "dir"):
        images = path
    model = ["--model", "cliplab-tiny", *(["--pretrained", str(path)] if kind == "ckpt" else ["--random-init"])]
    if kind == "model":
        model = ["--model", case["file"].format(corpus=corpus), "--random-init"]
    common = ["--images", str(images), "--cache-dir", str(work / "cache"), "--out", str(work / "out"), "--quiet",
              *(case["file"].split() if kind == "flag" else []), *(["--verify-cache"] if kind == "cache" else [])]
    templates = ["--templates", case["file"] if kind == "tmpl" else str(path)] \
        if kind == "tmpl" or case["id"] == "lab-no-braces-template" else []
    if command == "embed":
        return ["embed", *model, *common]
    if command == "zeroshot":
        classes = str(path) if kind == "lab" and not templates else CLASSES
        return ["zeroshot", *model, *common, "--classes", classes, *templates]
    if command == "audit":
        labels = ["--labels", CLASSES, *templates] if templates or kind != "lab" else ["--labels", str(path)]
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


@pytest.fixture(scope="module")
def reference():
    """Embeddings of single images, decoded and encoded on their own, without a cache."""
    from cliplab import embed_images, load_model

    loaded = load_model("cliplab-tiny", device="cpu")
    return lambda path: embed_images(loaded, [path], cache_dir=None, progress=False).features[0]


def _prepare(case: dict, command: str, corpus: Path, work: Path, args: list[str], monkeypatch) -> Path | None:
    """Set the scene a case needs before the command runs; returns the temp file an out case planted."""
    kind = case["id"].split("-")[0]
    if kind == "race":  # the image is deleted once the manifest is listed, before it is embedded
        import cliplab.data

        listing = cliplab.data.read_images

        def list_then_delete(*a, **kw):
            images = listing(*a, **kw)
            (work / f"victim{Path(case['file']).suffix}").unlink()
            return images

        monkeypatch.setattr(cliplab.data, "read_images", list_then_delete)
    elif kind == "cache":  # cache the twin, then rewrite the file with the case's bytes, same size and mtime
        code, err, _ = _run(["embed", *args[1:args.index("--out")], "--out", str(work / "warm"), "--quiet",
                             "--verify-cache"], work)
        assert code == 0, err
        victim = work / f"victim{Path(case['file']).suffix}"
        before, new = victim.stat(), (corpus / case["file"]).read_bytes()
        assert len(new) == before.st_size
        victim.write_bytes(new)
        os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif kind == "out":
        dead = subprocess.Popen(["true"])
        dead.wait()
        planted = work / case["file"].format(host=_HOST, dead=dead.pid)
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_bytes(b"half a file")
        return planted
    return None


@pytest.mark.parametrize("case, command", PARAMS)
def test_case(case, command, corpus, tmp_path, reference, monkeypatch):
    os.chmod(tmp_path, 0o777)
    expected = case[command]
    args = _args(case, command, corpus, tmp_path)
    planted = _prepare(case, command, corpus, tmp_path, args, monkeypatch)
    code, err, stdout = _run(args, tmp_path, unprivileged=case["id"] == "img-unreadable")
    assert "Traceback" not in err + stdout, err
    assert not (tmp_path / "pwned-by-pickle").exists()
    if expected.startswith("error:"):
        want_code, _, message = expected[len("error:"):].partition(":")
        assert code == int(want_code), err
        assert err.startswith("cliplab: error:") and err.count("\n") == 1 and message in err, err
        return
    assert code == 0, err
    out = tmp_path / "out"
    if command == "train" and not (out / "skipped.csv").exists():  # the trainer writes it only when it skips
        skipped = pd.DataFrame(columns=["path", "reason"])
    else:
        skipped = pd.read_csv(out / "skipped.csv")
    kind = case["id"].split("-")[0]
    row_name = None  # the manifest row's image, for the checks that look at that row
    if kind in ("img", "race", "cache"):
        row_name = Path(case["file"]).name if kind == "img" else f"victim{Path(case['file']).suffix}"
    checks = [part.partition(":") for part in expected.split("&")]
    for check, _, detail in checks:
        if check == "note":
            assert detail in err, err
        elif check == "skip":
            row = skipped[skipped["path"].str.endswith(row_name)] if row_name else skipped
            matching = row[row["reason"].str.contains(detail, regex=False)]
            assert len(matching) >= 1 and (len(row) == 1 or not row_name), skipped
            if command == "train":  # the trainer logs to its console handler and RUN/train.log
                assert f"{len(skipped)} skipped" in (out / "train.log").read_text()
            else:
                assert f"skipped {len(skipped)} image" in err
        elif check == "rows":
            assert len(pd.read_csv(out / "records.csv")) == int(detail)
        elif check == "same":
            records = pd.read_csv(out / "records.csv")
            rows = np.flatnonzero(records["path"].str.endswith(row_name).to_numpy())
            assert len(rows) == 1, records
            np.testing.assert_allclose(np.load(out / "embeddings.npy")[rows[0]], reference(corpus / detail), atol=1e-5)
        elif check == "has":
            name, _, text = detail.partition(":")
            assert text in (out / name).read_text(encoding="utf-8"), (out / name).read_text(encoding="utf-8")[:2000]
        elif check == "file":
            assert (out / detail).is_file()
        elif check in ("gone", "kept"):
            assert planted is not None and planted.exists() == (check == "kept")
        else:
            assert check == "ok", f"unknown expected outcome {check!r}"
    if row_name and not any(check == "skip" for check, _, _ in checks):
        assert skipped.empty, skipped
    if kind == "img" and command == "embed":
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
