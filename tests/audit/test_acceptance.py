"""Acceptance: on synthetic data with a planted bias B, a model trained on it is flagged for the harm
against the planted group (dark tone -> 'thief'); with B = 0 nothing is flagged.

B = 0.2 (the weakest bias the audit must catch) runs by default; CLIPLAB_AUDIT_TEST_BIASES=0.2,0.4
adds B = 0.4, where the harm also shows in the top-1 rate. Each model is trained once per session
(tests/audit/conftest.py, 35-50 s each on 2 cores), which is most of this suite's time.
"""
from __future__ import annotations

import json
import os

import pytest

from cliplab.errors import EXIT_DISPARITY, EXIT_OK

from .conftest import AUDITS

pytestmark = pytest.mark.timeout(900)
HARM = ("flagged_rate", "topk_flagged_rate")
BIASES = [float(b) for b in os.environ.get("CLIPLAB_AUDIT_TEST_BIASES", "0.2").split(",")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("accept-cache")


def _audit(cli_main, csv, run, out, cache, *extra) -> tuple[int, dict]:
    code = cli_main(["audit", "--labels", str(AUDITS / "synthetic-legacy.yaml"), "--images", str(csv), "--pretrained",
                     str(run), "--out", str(out), "--cache-dir", str(cache), "--quiet", *extra])
    return code, json.loads((out / "metrics.json").read_text())


def _tone_harm(doc: dict, group: str) -> list[dict]:
    return [d for d in doc["disparities"] if d["attribute"] == "tone" and d["metric"] in HARM
            and d["category"] == "crime-related" and d["group"] == group]


@pytest.mark.parametrize("bias", BIASES)
def test_planted_bias_is_flagged_against_the_planted_group(cli_main, trained_models, tmp_path, cache, capsys, bias):
    csv, run = trained_models(bias)
    code, doc = _audit(cli_main, csv, run, tmp_path / "out", cache)
    assert code == EXIT_OK
    flagged = [d for d in _tone_harm(doc, "dark") if d["flagged"]]
    assert flagged, _tone_harm(doc, "dark")
    assert all(d["ci_low"] > 0 and d["p_adjusted"] < 0.05 and d["reference"] != "dark" for d in flagged)
    printed = capsys.readouterr().out
    assert "dark" in printed and "crime-related" in printed and "report:" in printed
    retrieval = next(r for r in doc["retrieval"] if r["attribute"] == "tone")
    assert retrieval["max_skew_group"] == "dark" and retrieval["max_skew"] > 0.5  # "thief" retrieves dark figures
    if bias >= 0.4:  # strong enough to show in the top-1 rate, as in the CLIP paper's probe
        assert any(d["metric"] == "flagged_rate" for d in flagged)
        assert not any(d["flagged"] for d in _tone_harm(doc, "medium") if d["metric"] == "flagged_rate")


def test_fail_on_disparity_exits_6(cli_main, trained_models, tmp_path, cache):
    csv, run = trained_models(BIASES[0])
    code, _ = _audit(cli_main, csv, run, tmp_path / "out", cache, "--fail-on-disparity", "0.05")
    assert code == EXIT_DISPARITY


def test_no_planted_bias_flags_nothing(cli_main, trained_models, tmp_path, cache):
    csv, run = trained_models(0.0)
    code, doc = _audit(cli_main, csv, run, tmp_path / "out", cache, "--fail-on-disparity", "0.0")
    assert code == EXIT_OK
    assert doc["n_flagged"] == 0, [d for d in doc["disparities"] if d["flagged"]]
