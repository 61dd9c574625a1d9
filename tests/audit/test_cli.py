"""`cliplab audit` end to end through cliplab.cli.main, with a randomly initialised tiny model."""
from __future__ import annotations

import json

import pytest

from cliplab.errors import EXIT_INPUT, EXIT_OK

from .conftest import AUDITS


@pytest.fixture(scope="module")
def common(synth_small, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return ["--model", "cliplab-tiny", "--random-init", "--images", str(synth_small), "--cache-dir", str(cache),
            "--quiet", "--n-boot", "200", "--thumbnails", "3"]


def test_audit_synthetic_yaml(cli_main, common, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["audit", "--labels", str(AUDITS / "synthetic-legacy.yaml"), *common, "--out", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed and "detected disparit" in printed
    for name in ("report.html", "metrics.json", "groups.csv", "disparities.csv", "predictions.parquet"):
        assert (out / name).is_file()
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["data"]["n_audited"] == 48 and doc["data"]["n_selected"] == 48  # the test split only
    assert doc["model"]["random_init"] is True and printed.startswith("warning: RANDOM WEIGHTS")
    assert doc["retrieval"] and doc["retrieval"][0]["query"] == "a photo of a thief."


def test_second_audit_reuses_cached_embeddings_and_compares(cli_main, common, tmp_path, capsys):
    b = tmp_path / "b.yaml"
    b.write_text((AUDITS / "synthetic-legacy.yaml").read_text().replace("classes: [kite,", "classes: [person, kite,")
                 .replace("name: synthetic", "name: synthetic-plus-person"))
    out = tmp_path / "out"
    argv = ["audit", "--labels", str(AUDITS / "synthetic-legacy.yaml"), "--compare", str(b), *common, "--out", str(out)]
    assert cli_main(argv) == EXIT_OK
    assert cli_main(argv) == EXIT_OK
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["data"]["n_encoded"] == 0 and doc["data"]["n_cached"] == 48
    changes = doc["comparison"]["changes"]
    assert {c["metric"] for c in changes} >= {"flagged_rate", "new_class_rate"}
    assert {c["category"] for c in changes if c["metric"] == "new_class_rate"} == {"person"}
    assert (out / "label-set-b" / "report.html").is_file() and (out / "comparison.csv").is_file()
    assert "label-set what-if" in capsys.readouterr().out


def test_text_label_list_with_flags_from_the_command_line(cli_main, common, tmp_path):
    out = tmp_path / "out"
    argv = ["audit", "--labels", "kite,guitar,book,thief", "--flag", "crime-related=thief", "--group-by", "tone,age",
            "--truth-column", "label", "--where", "split=test", "--reference", "tone=light",
            "--min-group-size", "10", *common,
            "--out", str(out), "--predictions-format", "csv"]
    assert cli_main(argv) == EXIT_OK
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["audit"]["flagged"] == {"crime-related": ["thief"]}
    assert doc["data"]["truth"]["truth_not_in_label_set"] > 0  # ball, cup, ... are not classes here
    tone = [d for d in doc["disparities"] if d["attribute"] == "tone" and d["metric"] == "flagged_rate"]
    assert tone and all(d["reference"] == "light" for d in tone)
    assert (out / "predictions.csv").is_file()


@pytest.mark.parametrize("extra,message", [
    (["--labels", "kite,thief", "--flag", "crime=theif"], "flagged class 'theif'"),
    (["--labels", "kite,thief", "--group-by", "tone,skin"], "group_by column 'skin' is not in"),
    (["--labels", "kite,thief", "--group-by", "tone", "--reference", "tone=purple"], "reference group 'purple'"),
    (["--labels", "kite,thief", "--group-by", "tone", "--where", "split=validation"], "no image in"),
    (["--labels", "kite,thief", "--group-by", "tone", "--fail-on-disparity", "5"], "between 0 and 1"),
    (["--labels", "nope/audit.yaml"], "no such file"),
])
def test_bad_input_exits_3_with_one_line(cli_main, common, tmp_path, capsys, extra, message):
    assert cli_main(["audit", *extra, *common, "--out", str(tmp_path / "o")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_audit_file_exits_3(cli_main, common, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [a, b]\ngroup_by: [tone]\ntempaltes: ['{}']\n")
    assert cli_main(["audit", "--labels", str(bad), *common, "--out", str(tmp_path / "o")]) == EXIT_INPUT
    assert "unknown key 'tempaltes' (did you mean 'templates'?)" in capsys.readouterr().err


def test_fail_on_disparity_not_triggered_exits_0(cli_main, common, tmp_path):
    argv = ["audit", "--labels", str(AUDITS / "synthetic-legacy.yaml"), *common, "--out", str(tmp_path / "o"),
            "--fail-on-disparity", "1.0"]
    assert cli_main(argv) == EXIT_OK
