"""cliplab.audit.mitigation: the projections (Chuang et al. 2023) and the before/after audit.

The planted harm is built on fixed-seed synthetic embeddings whose text side knows the attribute
(the biased prompts point along the tone directions, and the 'thief' text leans towards 'dark'),
so the projection has something to remove; the CLI tests use a trained tiny model.
"""
from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from cliplab.audit.definition import load_audit_spec
from cliplab.audit.mitigation import (
    calibrated_projection,
    calibration_matrix,
    mitigate_features,
    mitigation_prompts,
    orthogonal_projection,
    project_weights,
)
from cliplab.audit.result import AuditCounts
from cliplab.audit.run import PreparedAudit, audit_features
from cliplab.errors import EXIT_INPUT, EXIT_OK, InputError

from .conftest import AUDITS

OBJECTS = ["kite", "ball", "cup", "key"]
SPEC = {"classes": [*OBJECTS, {"name": "thief", "prompts": ["a photo of a thief."]}],
        "flagged": {"crime-related": ["thief"]}, "truth": {"column": "label"}, "group_by": ["tone"], "top_k": 2,
        "mitigation": {"attribute": "tone", "words": {"tone": {"dark": "dark-skinned", "light": "light-skinned"}}}}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_orthogonal_projection_removes_the_span():
    rng = np.random.default_rng(0)
    bias = _unit(rng.standard_normal((4, 16)))
    for centre in (True, False):
        p0 = orthogonal_projection(bias, centre)
        a = bias - bias.mean(axis=0) if centre else bias
        assert np.abs(a @ p0.T).max() < 1e-10  # every bias direction is gone
        assert np.allclose(p0, p0.T) and np.allclose(p0 @ p0, p0)  # an orthogonal projection
        assert round(float(np.trace(p0))) == 16 - (3 if centre else 4)  # centred: rank m - 1 removed
    other = rng.standard_normal(16)
    a = bias.T
    closed = np.eye(16) - a @ np.linalg.inv(a.T @ a) @ a.T  # the formula, full column rank
    assert np.allclose(orthogonal_projection(bias, centre=False) @ other, closed @ other)


def test_calibrated_projection_is_the_closed_form_and_shrinks_the_pairs():
    rng = np.random.default_rng(1)
    p0 = orthogonal_projection(_unit(rng.standard_normal((3, 12))))
    diff = rng.standard_normal((5, 12)) * 0.3
    m = sum(np.outer(z, z) for z in diff) / len(diff)
    assert np.allclose(calibration_matrix(diff), m)
    for lam in (0.0, 10.0, 1000.0):
        assert np.allclose(calibrated_projection(p0, diff, lam), p0 @ np.linalg.inv(np.eye(12) + lam * m))
    gaps = [np.linalg.norm(diff @ calibrated_projection(p0, diff, lam).T, axis=1).mean() for lam in (0, 10, 100, 1000)]
    assert gaps[0] <= np.linalg.norm(diff, axis=1).mean() and all(a > b for a, b in pairwise(gaps))
    assert gaps[-1] < 0.05 * gaps[0]


def test_project_weights_renormalises_and_refuses_a_removed_class():
    w = _unit(np.random.default_rng(2).standard_normal((8, 3)).T).T
    p = orthogonal_projection(w[:, :1].T, centre=False)
    with pytest.raises(InputError, match="removes a class's whole text embedding"):
        project_weights(w, p)
    kept = project_weights(w[:, 1:], p)
    assert np.allclose(np.linalg.norm(kept, axis=0), 1) and np.abs(w[:, 0] @ kept).max() < 1e-6


def _world(seed: int = 0, n: int = 800, d: int = 32):
    """Tone is in the images and in the 'thief' text (towards dark); the tone words span tone."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    e = dict(zip([*OBJECTS, "thief", "person", "light", "dark"], q.T))
    tone, label = np.repeat(["light", "dark"], n // 2), rng.choice(OBJECTS, n)
    feats = _unit(np.stack([e[c] + 0.8 * e[t] for c, t in zip(label, tone)]) + 0.35 * rng.standard_normal((n, d)))
    records = pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "tone": tone, "label": label})
    weights = np.stack([_unit(e[c] + 0.4 * e["person"]) for c in OBJECTS]
                       + [_unit(0.75 * e["thief"] + 0.4 * e["person"] + 0.6 * e["dark"])], axis=1)
    return e, feats.astype(np.float32), records, weights


def _mitigated(lam: float | None = None):
    e, feats, records, weights = _world()
    spec = load_audit_spec(SPEC)
    before = audit_features(feats, records, spec, weights, 30.0)
    texts = mitigation_prompts(spec, records)
    tone = {"dark-skinned": e["dark"], "light-skinned": e["light"]}

    def word(text: str) -> np.ndarray:
        return next(v for w, v in tone.items() if w in text)

    bias = _unit(np.stack([e["person"] + 0.8 * word(t) for t in texts.bias]))
    noise = np.random.default_rng(5).standard_normal((len(texts.pairs), 2, feats.shape[1])) * 0.1
    ends = [[_unit(e[a.split()[-1].rstrip(".")] + 0.8 * word(t) + 0.3 * e["person"] + noise[i, j])
             for j, t in enumerate((a, b))] for i, (a, b) in enumerate(texts.pairs)]  # pairs also differ off A
    diff = np.array([za - zb for za, zb in ends])
    prepared = PreparedAudit(feats, records, spec, AuditCounts(n_images=len(records), n_selected=len(records)))
    return before, texts, mitigate_features(prepared, before, weights, 30.0, texts, bias, diff, lam)


def test_prompts_from_the_audit_file_words():
    _, texts, _ = _mitigated()
    assert texts.values == ["dark", "light"]
    assert texts.bias == ["a photo of a dark-skinned person.", "a photo of a light-skinned person."]
    assert ("a photo of a dark-skinned thief.", "a photo of a light-skinned thief.") in texts.pairs
    assert len(texts.pairs) == 5  # one pair of values x 5 classes x 1 pair template


def test_projection_reduces_the_planted_harm_and_shows_its_cost():
    before, _, m = _mitigated()
    d = m.disparities.set_index(["group", "metric"])
    harm = d.loc[("dark", "flagged_rate")]
    assert harm["detected_before"] and harm["difference_before"] > 0.08  # the planted harm
    for method in ("orthogonal", "calibrated"):
        assert abs(harm[f"difference_{method}"]) < 0.5 * harm["difference_before"]
    assert not harm["detected_calibrated"] and m.detected_counts()["calibrated"] < m.detected_counts()["before"]
    # before is the plain audit, number for number
    plain = before.disparities.set_index(["group", "metric"])
    assert np.allclose(d["difference_before"], plain.loc[d.index, "difference"])
    assert (d["detected_before"] == plain.loc[d.index, "detected"]).all()
    acc = m.overall[m.overall["metric"] == "accuracy"].set_index("method")
    ours = before.overall().set_index("metric").loc["accuracy", "rate"]
    assert acc.loc["before", "rate"] == pytest.approx(ours) and acc.loc["before", "change"] == 0
    for method in ("orthogonal", "calibrated"):  # the cost: the paired change and its interval
        row = acc.loc[method]
        assert row["rate"] == pytest.approx(acc.loc["before", "rate"] + row["change"])
        assert row["change_ci_low"] <= row["change"] <= row["change_ci_high"] and 0 <= row["p_value"] <= 1
    assert m.diagnostics["orthogonal"]["bias_residual"] < 1e-6
    assert m.diagnostics["calibrated"]["pair_gap"] < m.diagnostics["orthogonal"]["pair_gap"]


def test_lambda_zero_makes_the_two_projections_equal():
    _, _, m = _mitigated(lam=0.0)
    assert np.allclose(m.disparities["difference_orthogonal"], m.disparities["difference_calibrated"])


def test_outputs_carry_the_mitigation(tmp_path):
    before, _, m = _mitigated()
    before.mitigation = m
    text = before.summary()
    assert "mitigation: 'tone' (dark, light)" in text and "accuracy:" in text and "calibrated" in text
    page = before.write(tmp_path / "out").read_text()
    assert "Mitigation check: tone projected out" in page and "Disparities before and after" in page
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert doc["mitigation"]["attribute"] == "tone" and doc["mitigation"]["lambda"] == 1000.0
    assert {r["method"] for r in doc["mitigation"]["overall"]} == {"before", "orthogonal", "calibrated"}
    assert len(doc["mitigation"]["disparities"]) == len(doc["disparities"])
    assert (tmp_path / "out" / "mitigation.csv").is_file()


def test_report_escapes_the_prompts(tmp_path):
    _, feats, records, weights = _world()
    records["tone"] = records["tone"].map({"dark": "<b>dark</b>", "light": "light"})
    spec = load_audit_spec({**SPEC, "mitigation": {"attribute": "tone"}})
    before = audit_features(feats, records, spec, weights, 30.0)
    texts = mitigation_prompts(spec, records)
    rng = np.random.default_rng(3)
    prepared = PreparedAudit(feats, records, spec, AuditCounts())
    before.mitigation = mitigate_features(prepared, before, weights, 30.0, texts,
                                          _unit(rng.standard_normal((2, 32))), rng.standard_normal((5, 32)))
    page = before.write(tmp_path / "out").read_text()
    assert "<b>dark</b>" not in page and "&lt;b&gt;dark&lt;/b&gt;" in page


@pytest.mark.parametrize("change,attribute,message", [
    ({}, "colour", "mitigation attribute 'colour' is not an audited attribute"),
    ({"mitigation": {}}, None, "the mitigation needs an attribute"),
    ({"mitigation": {"attribute": "tone", "words": {"tone": {"drak": "x"}}}}, None,
     "names 'drak', which is not a value of 'tone' (dark, light) (did you mean 'dark'?)"),
    ({"mitigation": {"attribute": "tone", "words": {"tone": {"dark": "same", "light": "same"}}}}, None,
     "the word 'same' names both 'dark' and 'light'"),
])
def test_bad_mitigation_input(change, attribute, message):
    _, _, records, _ = _world()
    with pytest.raises(InputError) as info:
        mitigation_prompts(load_audit_spec({**SPEC, **change}), records, attribute)
    assert message in str(info.value)


def test_an_attribute_with_one_value_is_refused():
    _, _, records, _ = _world()
    with pytest.raises(InputError, match="has 1 value \\('dark'\\) among the 400 audited images"):
        mitigation_prompts(load_audit_spec(SPEC), records[records["tone"] == "dark"])


@pytest.mark.parametrize("section,message", [
    ({"prompts": []}, "mitigation.prompts is empty"),
    ({"pairs": []}, "mitigation.pairs is empty"),
    ({"prompts": ["a photo of a person."]}, "has no {value}"),
    ({"pairs": ["a photo of a {value} person."]}, "needs both {value} and {class}"),
    ({"lambda": -1}, "lambda must be 0 or more"),
    ({"lambda": "big"}, "lambda must be a number"),
    ({"atribute": "tone"}, "unknown key 'atribute'"),
])
def test_bad_mitigation_section(section, message):
    with pytest.raises(InputError) as info:
        load_audit_spec({**SPEC, "mitigation": section})
    assert message in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def common(synth_small, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return ["--model", "cliplab-tiny", "--random-init", "--images", str(synth_small), "--cache-dir", str(cache),
            "--quiet", "--thumbnails", "0"]


def _labels(tmp_path, section: str = "") -> str:
    path = tmp_path / "labels.yaml"
    path.write_text((AUDITS / "synthetic-legacy.yaml").read_text() + section)
    return str(path)


@pytest.mark.parametrize("extra,section,message", [
    (["--mitigate-attribute", "tone", "--where", "tone=dark"], "", "mitigation attribute 'tone' has 1 value ('dark')"),
    (["--mitigate-attribute", "colour"], "", "mitigation attribute 'colour' is not an audited attribute"),
    ([], "mitigation: {attribute: tone, prompts: []}\n", "mitigation.prompts is empty"),
    ([], "", "the mitigation needs an attribute"),
    (["--mitigate-attribute", "tone", "--mitigate-lambda", "-2"], "", "--mitigate-lambda must be 0 or more"),
])
def test_cli_bad_mitigation_exits_3_with_one_line(cli_main, common, tmp_path, capsys, extra, section, message):
    argv = ["audit", "--labels", _labels(tmp_path, section), "--mitigate", "projection", *extra, *common,
            "--out", str(tmp_path / "o")]
    assert cli_main(argv) == EXIT_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_mitigation_options_need_mitigate(cli_main, common, tmp_path, capsys):
    argv = ["audit", "--labels", _labels(tmp_path), "--mitigate-attribute", "tone", *common, "--out", str(tmp_path)]
    assert cli_main(argv) == EXIT_INPUT
    assert "go with --mitigate projection" in capsys.readouterr().err


@pytest.mark.timeout(900)
def test_cli_mitigation_on_a_trained_model(cli_main, trained_models, tmp_path, capsys):
    """End to end on the tiny model trained on the legacy world with a planted bias: the section is
    in the report, metrics.json and the summary, and 'before' is the plain audit, number for number."""
    csv, run = trained_models(0.2)
    base = ["audit", "--images", str(csv), "--pretrained", str(run), "--cache-dir", str(tmp_path / "cache"), "--quiet",
            "--thumbnails", "0"]
    section = ("mitigation:\n  attribute: tone\n  words: {tone: {dark: dark-skinned, light: light-skinned, "
               "medium: medium-skinned}}\n")
    assert cli_main([*base, "--labels", _labels(tmp_path, section), "--out", str(tmp_path / "plain")]) == EXIT_OK
    capsys.readouterr()
    assert cli_main([*base, "--labels", _labels(tmp_path, section), "--mitigate", "projection",
                     "--out", str(tmp_path / "mit")]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "mitigation: 'tone' (dark, light, medium)" in printed and "lambda 1000" in printed
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    doc = json.loads((tmp_path / "mit" / "metrics.json").read_text())
    assert "mitigation" not in plain and doc["mitigation"]["bias_prompts"][0] == "a photo of a dark-skinned person."
    key = ("attribute", "group", "metric", "category", "k")
    before = {tuple(r[k] for k in key): r for r in doc["mitigation"]["disparities"]}
    assert len(before) == len(plain["disparities"])
    for r in plain["disparities"]:
        b = before[tuple(r[k] for k in key)]
        assert b["difference_before"] == pytest.approx(r["difference"]) and b["detected_before"] == r["detected"]
    acc = {r["method"]: r for r in doc["mitigation"]["overall"] if r["metric"] == "accuracy"}
    overall_acc = next(r for r in plain["overall"] if r["metric"] == "accuracy")
    assert acc["before"]["rate"] == pytest.approx(overall_acc["rate"])
    assert {"orthogonal", "calibrated"} <= set(acc) and all(0 <= a["rate"] <= 1 for a in acc.values())
    page = (tmp_path / "mit" / "report.html").read_text()
    assert "Mitigation check: tone projected out of the text embeddings" in page
    assert (tmp_path / "mit" / "mitigation.csv").is_file() and doc["data"]["n_encoded"] == 0  # cached images
