"""Linear and k-shot probes on embeddings: the C sweep, the k-shot curve, short classes, zero-shot's place."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cliplab.errors import InputError
from cliplab.probe import ProbeConfig, fit_probe, run_probes, sample_k_shot, summarise, worth_k, write_probe

FAST = ProbeConfig(seeds=5, c_grid=(0.1, 10.0, 1000.0))  # a short C grid keeps the suite quick


def clusters(n_per_class: int, n_classes: int = 6, dim: int = 16, spread: float = 1.6, seed: int = 0):
    """L2-normalised Gaussian clusters: hard enough that more shots help."""
    means = np.random.default_rng(1234).normal(size=(n_classes, dim))  # the same classes in every split
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = means[y] + spread * rng.normal(size=(len(y), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    x_tr, y_tr = clusters(60, seed=0)
    x_te, y_te = clusters(60, seed=1)
    return x_tr, y_tr, x_te, y_te


@pytest.fixture(scope="module")
def result(data):
    x_tr, y_tr, x_te, y_te = data
    means = np.stack([x_tr[y_tr == c].mean(axis=0) for c in range(6)])  # a fixed "zero-shot" classifier
    return run_probes(x_tr, y_tr, x_te, y_te, [f"c{i}" for i in range(6)], FAST,
                      zeroshot_logits=x_te @ means.T)


def test_k_shot_curve_rises_and_has_intervals(result):
    sm = result.summary
    assert sm["k"].tolist() == [1, 2, 4, 8, 16] and (sm["n_seeds"] == 5).all()
    assert len(result.curve) == 25 and set(result.curve["seed"]) == set(range(5))
    assert sm["acc1"].iloc[-1] > sm["acc1"].iloc[0] + 0.1  # 16 shots beat 1 shot clearly on these clusters
    assert result.full["acc1"] >= sm["acc1"].iloc[-1] - 0.02  # all the data: at least as good as 16 shots
    assert (sm["acc1_low"] <= sm["acc1"]).all() and (sm["acc1"] <= sm["acc1_high"]).all()
    assert (sm["acc1_high"] - sm["acc1_low"] > 0).all()
    assert result.short_classes.empty and result.full["C"] > 0


def test_probes_are_reproducible(data):
    x_tr, y_tr, x_te, y_te = data
    cfg = ProbeConfig(ks=(1, 4), seeds=2, c_grid=FAST.c_grid)
    a, b = (run_probes(x_tr, y_tr, x_te, y_te, [f"c{i}" for i in range(6)], cfg) for _ in range(2))
    pd.testing.assert_frame_equal(a.curve, b.curve)


def test_parallel_fits_equal_in_process_fits(data):
    x_tr, y_tr, x_te, y_te = data
    one, two = (run_probes(x_tr, y_tr, x_te, y_te, [f"c{i}" for i in range(6)],
                           ProbeConfig(ks=(1, 4, 8), seeds=2, c_grid=FAST.c_grid, n_jobs=n)) for n in (1, 2))
    pd.testing.assert_frame_equal(one.curve, two.curve)  # same rows in (k, seed) order, same C and scores
    assert one.full == two.full


def test_float32_embeddings_are_fitted_in_float32_to_the_same_probe(data):
    x_tr, y_tr, x_te, _ = data
    p32 = fit_probe(x_tr[:240], y_tr[:240], x_tr[240:], y_tr[240:], 6, FAST.c_grid)
    p64 = fit_probe(x_tr[:240].astype(np.float64), y_tr[:240], x_tr[240:], y_tr[240:], 6, FAST.c_grid)
    assert p32.model.coef_.dtype == np.float32 and p64.model.coef_.dtype == np.float64
    assert p32.C == p64.C and (p32.logits(x_te).argmax(1) == p64.logits(x_te).argmax(1)).mean() > 0.99


def test_bad_probe_input_is_an_input_error(data):
    x_tr, y_tr, x_te, y_te = data
    one_class = y_tr == 0
    with pytest.raises(InputError, match="fewer than 2 classes"):
        run_probes(x_tr[one_class], y_tr[one_class], x_te, y_te, [f"c{i}" for i in range(6)], FAST)
    with pytest.raises(InputError, match="--jobs"):
        run_probes(x_tr, y_tr, x_te, y_te, [f"c{i}" for i in range(6)], ProbeConfig(n_jobs=0))


def test_zeroshot_is_placed_on_the_curve(result):
    zs = result.zeroshot["acc1"]
    sm = result.summary
    if result.zeroshot_worth_k is None:
        assert zs > sm["acc1"].max() or zs < sm["acc1"].iloc[0]
    else:
        k = result.zeroshot_worth_k
        below, above = sm[sm["k"] <= k]["acc1"].iloc[-1], sm[sm["k"] >= k]["acc1"].iloc[0]
        assert below - 1e-9 <= zs <= above + 1e-9


def test_worth_k_interpolates_in_log2_k():
    sm = summarise(pd.DataFrame({"k": [1, 2, 4], "seed": 0, "acc1": [0.5, 0.6, 0.8], "acc5": 1.0,
                                 "mean_per_class_recall": 0.5}))
    k, text = worth_k(sm, 0.7)
    assert k == pytest.approx(2 ** 1.5) and "2.8 labelled examples" in text
    assert worth_k(sm, 0.4) == (None, "zero-shot (0.400) is below the 1-shot probe (0.500)")
    assert worth_k(sm, 0.9)[0] is None and "beats the 4-shot" in worth_k(sm, 0.9)[1]


def test_k_larger_than_a_class_is_reported_not_dropped():
    x, y = clusters(30, seed=2)
    keep = (y != 2) | (np.cumsum(y == 2) <= 10)  # class 2 has 10 training examples: 8 after the validation split
    x, y = x[keep], y[keep]
    x_te, y_te = clusters(20, seed=3)
    r = run_probes(x, y, x_te, y_te, [f"c{i}" for i in range(6)], ProbeConfig(ks=(4, 16), seeds=2, c_grid=FAST.c_grid))
    short = r.short_classes
    assert short["class"].tolist() == ["c2"] and short["k"].tolist() == [16] and short["available"].iloc[0] == 8
    assert r.curve[r.curve["k"] == 16]["n_train"].tolist() == [5 * 16 + 8] * 2  # c2's 8 examples are used


def test_sampling_is_per_class_and_seeded():
    y = np.repeat(np.arange(3), 10)
    pool = np.arange(30)
    a, short = sample_k_shot(y, pool, 4, 3, np.random.default_rng(0))
    b, _ = sample_k_shot(y, pool, 4, 3, np.random.default_rng(0))
    assert (a == b).all() and not short and np.bincount(y[a]).tolist() == [4, 4, 4]


def test_probe_scores_unseen_classes_as_impossible(data):
    x_tr, y_tr, _, _ = data
    keep = y_tr < 3
    probe = fit_probe(x_tr[keep], y_tr[keep], x_tr[keep][:20], y_tr[keep][:20], n_classes=6, c_grid=(1.0, 10.0))
    logits = probe.logits(x_tr[:5])
    assert logits.shape == (5, 6) and np.isneginf(logits[:, 3:]).all() and probe.C > 0
    with pytest.raises(InputError, match="at least 2 classes"):
        fit_probe(x_tr[y_tr == 0], y_tr[y_tr == 0], x_tr[:5], y_tr[:5], 6)


def test_write_probe_outputs(tmp_path, result):
    out = write_probe(result, tmp_path / "p")
    assert {p.name for p in out.iterdir()} >= {"probe.json", "curve.csv", "summary.csv", "short_classes.csv",
                                               "report.html"}
    page = (out / "report.html").read_text()
    assert "Plotly.newPlot" in page and "<script src=" not in page  # offline: plotly inlined


def test_cli_probe_arguments_parse():
    from cliplab.cli import build_parser

    args = build_parser().parse_args(["probe", "--train-images", "a", "--test-images", "b", "--out", "o",
                                      "--k", "1,4", "--seeds", "6", "--jobs", "1"])
    assert args.k == "1,4" and args.seeds == 6 and args.val_fraction == 0.2 and args.jobs == 1
