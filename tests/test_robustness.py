"""Shift metrics, group gaps, effective robustness, corruptions and the `cliplab robustness` run."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, logit

from cliplab.baseline_fit import Evaluation, effective_robustness, fit_baseline, read_baseline_csv
from cliplab.corruptions import corrupt, corrupt_images, parse_corruptions, parse_severities
from cliplab.data import ImageSet, load_image, read_images, select
from cliplab.errors import EXIT_INPUT, EXIT_MODEL, InputError
from cliplab.robustness import (
    ID_SHIFT,
    RobustnessConfig,
    group_gap,
    group_metrics,
    run_robustness,
    shift_metrics,
    write_robustness,
)
from cliplab.synth import LEGACY_CLASSES as CLASSES  # the legacy world of the synth_data fixture


def test_shift_metrics_intervals():
    y = np.repeat(np.arange(4), 25)
    logits = np.eye(4)[np.where(np.arange(100) % 5 == 0, (y + 1) % 4, y)]  # 80% right, every class alike
    m = shift_metrics(logits, y, n_boot=300)
    assert m["acc1"] == pytest.approx(0.8) and m["mean_per_class_recall"] == pytest.approx(0.8)
    assert m["acc1_low"] == pytest.approx(0.7111, abs=1e-3) and m["acc1_high"] == pytest.approx(0.8666, abs=1e-3)
    assert m["mean_per_class_recall_low"] < 0.8 < m["mean_per_class_recall_high"]


def test_group_metrics_and_gap():
    pred = np.array([0, 0, 0, 0, 1, 1, 0, 0, 2, 2])
    y = np.zeros(10, int)
    groups = __import__("pandas").Series(["a"] * 4 + ["b"] * 6)
    g = group_metrics(pred, y, groups, flagged=[2])
    assert g["accuracy"].tolist() == [1.0, pytest.approx(2 / 6)] and g["flagged_rate"].tolist() == [0.0, 2 / 6]
    gap = group_gap(g)
    assert gap["gap"] == pytest.approx(4 / 6) and gap["high_group"] == "a" and gap["gap_low"] < 4 / 6 < gap["gap_high"]


def test_effective_robustness_against_a_known_line():
    ids = np.array([0.5, 0.6, 0.7, 0.8])
    line = lambda p: expit(0.8 * logit(p) - 0.5)
    evals = [Evaluation(f"b{i}", a, float(line(a)), n_id=10**6, n_ood=10**6) for i, a in enumerate(ids)]
    evals.append(Evaluation("robust", 0.7, float(line(0.7)) + 0.1, n_id=10**6, n_ood=10**6))
    evals.append(Evaluation("supervised", 0.7, 0.4))
    er = effective_robustness(evals, [f"b{i}" for i in range(4)], supervised="supervised", n_boot=200)
    assert fit_baseline(ids, line(ids)) == pytest.approx((0.8, -0.5))
    t = er.table.set_index("name")
    assert t.loc["robust", "effective_robustness"] == pytest.approx(0.1, abs=1e-9)
    assert t.loc["robust", "er_low"] < 0.1 < t.loc["robust", "er_high"]
    assert abs(t.loc["b2", "effective_robustness"]) < 1e-9
    # gap closed: supervised drops 0.7 -> 0.4 (gap 0.3); robust drops 0.7 - (line(0.7) + 0.1)
    assert t.loc["robust", "gap_closed"] == pytest.approx(1 - (0.7 - float(line(0.7)) - 0.1) / 0.3)


def test_effective_robustness_bootstrap_is_paired_and_seeded():
    rng = np.random.default_rng(0)
    evals = [Evaluation.from_correct(f"m{i}", rng.random(300) < p, rng.random(200) < p - 0.2)
             for i, p in enumerate([0.5, 0.6, 0.7, 0.8, 0.9])]
    a = effective_robustness(evals, ["m0", "m1", "m2"], n_boot=300, seed=1).table
    b = effective_robustness(evals, ["m0", "m1", "m2"], n_boot=300, seed=1).table
    assert a.equals(b) and (a["er_low"] <= a["effective_robustness"]).all()
    assert (a["effective_robustness"] <= a["er_high"]).all()


def test_baseline_needs_three_models_and_known_names(tmp_path):
    evals = [Evaluation("a", 0.5, 0.4), Evaluation("b", 0.6, 0.5)]
    with pytest.raises(InputError, match="at least 3 baseline models, got 2"):
        effective_robustness(evals, ["a", "b"])
    with pytest.raises(InputError, match="'c' is not among the evaluations"):
        effective_robustness(evals, ["a", "b", "c"])
    csv = tmp_path / "b.csv"
    csv.write_text("name,id_acc,ood_acc,shift,n_id\nresnet50,76.1,63.3,v2,10000\nvit,81.0,70.0,v2,\n"
                   "other,50,40,sketch,\n")
    got = read_baseline_csv(csv, "v2")
    assert [(e.name, e.id_acc, e.n_id) for e in got] == [("resnet50", pytest.approx(0.761), 10000),
                                                         ("vit", pytest.approx(0.81), None)]
    (tmp_path / "bad.csv").write_text("model,acc\nx,1\n")
    with pytest.raises(InputError, match="needs columns id_acc, name, ood_acc"):
        read_baseline_csv(tmp_path / "bad.csv")


def test_unknown_corruption_lists_the_valid_ones():
    with pytest.raises(InputError, match="unknown corruption 'gaussian_nois'; valid: gaussian_noise, shot_noise"):
        parse_corruptions("fog,gaussian_nois")
    assert len(parse_corruptions("common")) == 15 and parse_severities("2-4") == [2, 3, 4]
    with pytest.raises(InputError, match="severities must be in 1-5"):
        parse_severities("0,6")


def test_corruptions_are_seeded_and_leave_global_state(synth_data):
    img = load_image(select(read_images(synth_data), {"split": ("test",)}).paths[0])
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    a, b, c = (np.asarray(corrupt(img, "shot_noise", 3, seed=s)) for s in (1, 1, 2))
    assert (a == b).all() and (a != c).any() and (np.random.get_state()[1] == before).all()
    assert a.shape == np.asarray(img).shape


@pytest.fixture(scope="module")
def run_result(synth_data, tiny, tmp_path_factory):
    work = tmp_path_factory.mktemp("rob")
    everything = read_images(synth_data)
    test = select(everything, {"split": ("test",)})
    train = select(everything, {"split": ("train",)})
    cfg = RobustnessConfig(classnames=[*CLASSES, "thief"], templates=["a photo of a person holding a {}."],
                           shift_column="age", id_value="adult", attributes=["tone"], flagged=["thief"],
                           corruptions="fog,pixelate", severities="1,5", corruption_limit=12,
                           probe_ks=(1, 2, 4), n_boot=100)
    result = run_robustness(tiny, test, cfg, train=train, work_dir=work / "corrupted", cache_dir=work / "cache",
                            progress=False)
    return result, work


def test_run_covers_every_classifier_and_shift(run_result):
    result, _ = run_result
    shifts = {ID_SHIFT, "age=child", "fog/1", "fog/5", "pixelate/1", "pixelate/5"}
    classifiers = {"zero-shot", "linear probe", "1-shot probe", "2-shot probe", "4-shot probe"}
    assert set(result.shifts["shift"]) == shifts and set(result.shifts["classifier"]) == classifiers
    assert len(result.shifts) == len(shifts) * len(classifiers)
    assert (result.shifts.loc[result.shifts["shift"] == "fog/1", "n_images"] == 12).all()
    assert set(result.groups["group"]) == {"light", "medium", "dark"}
    id_gaps = result.gaps[result.gaps["shift"] == ID_SHIFT]
    assert (id_gaps["gap_change"].abs() < 1e-12).all() and set(result.gaps["metric"]) == {"accuracy", "flagged_rate"}
    er = result.effective
    assert set(er["shift"]) == shifts - {ID_SHIFT} and er["baseline"].sum() == 4 * 5  # the 4 probes, per shift
    assert any("no training examples" in n and "thief" in n for n in result.notes)  # reported, once


def test_write_robustness_outputs(run_result):
    result, work = run_result
    out = write_robustness(result, work / "out", "cliplab-tiny", "random")
    names = {p.name for p in out.iterdir()}
    assert {"robustness.json", "shifts.csv", "groups.csv", "gaps.csv", "effective_robustness.csv",
            "report.html", "clip_benchmark"} <= names
    records = [json.loads(p.read_text()) for p in (out / "clip_benchmark").iterdir()]
    assert len(records) == 6 and all(set(r["metrics"]) == {"acc1", "acc5", "mean_per_class_recall"} for r in records)


def test_report_escapes_user_strings(run_result, tmp_path):
    from cliplab.robustness_html import robustness_page

    result, _ = run_result
    evil = '<img src=x onerror="alert(1)">'
    result.shifts = result.shifts.assign(shift=result.shifts["shift"].where(result.shifts["shift"] != "fog/1", evil))
    page = robustness_page(result)
    assert evil not in page and "&lt;img src=x" in page


def test_corrupted_images_are_reused(synth_data, tmp_path):
    images = ImageSet(select(read_images(synth_data), {"split": ("test",)}).records.head(3), "x")
    first = corrupt_images(images, tmp_path, "fog", [2], seed=0)
    mtimes = [p.stat().st_mtime_ns for p in map(__import__("pathlib").Path, first.images.paths)]
    again = corrupt_images(images, tmp_path, "fog", [2], seed=0)
    assert again.images.paths == first.images.paths and len(first.images) == 3
    assert [__import__("os").stat(p).st_mtime_ns for p in again.images.paths] == mtimes


def test_cli_robustness_bad_inputs(synth_data, tiny, tmp_path, monkeypatch, capsys):
    from cliplab.cli import main

    monkeypatch.setattr("cliplab.models.load_model", lambda *a, **k: tiny)
    base = ["robustness", "--model", "cliplab-tiny", "--random-init", "--images", str(synth_data),
            "--classes", ",".join(CLASSES), "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"),
            "--quiet", "--where", "split=test"]
    for extra, message in ((["--corruptions", "blurr"], "unknown corruption 'blurr'"),
                           (["--shift-column", "age", "--id-value", "adult", "--baselines", "zero-shot",
                             "--n-boot", "10"], "at least 3 baseline models"),
                           (["--shift", "nopath"], "--shift takes NAME=PATH")):
        assert main([*base, *extra]) == EXIT_INPUT
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_robustness_refuses_random_weights(synth_data, tmp_path, capsys):
    from cliplab.cli import main

    assert main(["robustness", "--model", "cliplab-tiny", "--images", str(synth_data), "--out",
                 str(tmp_path / "o")]) == EXIT_MODEL
    assert "--random-init" in capsys.readouterr().err


def test_eval_set_supplies_classes_and_templates(synth_data, tiny, tmp_path):
    from cliplab.evalsets import read_eval_set, write_wds

    test = select(read_images(synth_data), {"split": ("test",)})
    wds = write_wds(test, CLASSES, tmp_path / "wds", templates=["a drawing of a {}."])
    images = read_eval_set(wds, extract_dir=tmp_path / "x")
    r = run_robustness(tiny, images, RobustnessConfig(n_boot=50), shifts={"same": images}, cache_dir=None,
                       progress=False)
    assert r.classnames == CLASSES and len(r.shifts) == 2 and r.effective.empty
    assert r.shifts["acc1"].iloc[0] == r.shifts["acc1"].iloc[1]  # the same images score the same
    assert any("needs >= 3 baseline models" in n for n in r.notes)
