"""cliplab.audit.report / html: safe, self-contained report.html and a documented metrics.json."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cliplab.audit.definition import AuditSpec, ClassSpec, TruthSpec
from cliplab.audit.html import script_json
from cliplab.audit.run import audit_features

EVIL_CLASS = "<script>alert(1)</script>"
EVIL_VALUE = '" onerror=alert(2) x="'
REQUIRED = {"attribute", "group", "reference", "metric", "category", "difference", "ci_low", "ci_high",
            "p_adjusted", "flagged"}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    n = 400
    group = np.where(np.arange(n) % 2 == 0, EVIL_VALUE, "plain")
    # the evil group is put into the harmful class 40% of the time, the other 5%
    harm = rng.random(n) < np.where(group == EVIL_VALUE, 0.4, 0.05)
    label = rng.integers(0, 2, n)
    pred = np.where(harm, 2, label)
    paths = []
    for i in range(n):
        p = tmp / "img" / f"{i}.png"
        if i < 60:
            p.parent.mkdir(exist_ok=True)
            Image.new("RGB", (16, 16), (i, 100, 100)).save(p)
        paths.append(str(p))
    records = pd.DataFrame({"path": paths, "grp": group, "label": np.array(["cat", "dog"])[label]})
    spec = AuditSpec(classes=(ClassSpec("cat"), ClassSpec("dog"), ClassSpec(EVIL_CLASS)), group_by=("grp",),
                     flagged={"crime & <b>harm</b>": (EVIL_CLASS,)}, truth=TruthSpec(column="label"),
                     name="<i>evil</i> audit", templates=("a photo of a {}.", "<img src=x onerror=alert(3)> {}"),
                     n_boot=300)
    feats = np.eye(3, dtype=np.float32)[pred]
    result = audit_features(feats, records, spec, np.eye(3, dtype=np.float32),
                            model={"identity": "tiny@<script>", "name": "tiny"})
    report = result.write(tmp / "out", thumbnails=4)
    return result, report


def test_all_files_written_atomically(written):
    result, report = written
    out = report.parent
    assert {p.name for p in out.iterdir()} == {"report.html", "metrics.json", "groups.csv", "disparities.csv",
                                               "predictions.parquet", "skipped.csv"}
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == 400
    assert {"truth", "prediction", "probability", "flagged_category", "topk"} <= set(preds.columns)
    groups = pd.read_csv(out / "groups.csv")
    assert len(groups) == len(result.groups)


def test_user_strings_are_escaped(written):
    _, report = written
    text = report.read_text()
    assert EVIL_CLASS not in text
    assert '" onerror=' not in text
    assert "onerror=alert(3)>" not in text
    assert "<i>evil</i>" not in text and "<b>harm</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # shown, as text
    assert "&quot; onerror=alert(2) x=&quot;" in text


def test_report_is_self_contained(written):
    _, report = written
    text = report.read_text()
    assert "<script" not in text.lower()  # static SVG charts: the text paints before (without) any script
    assert not re.search(r"<link[^>]+href=", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert text.count('<svg class="cliplab-chart"') >= 3 and "data:image/png;base64," in text
    assert len(text.encode()) < 1_000_000


def test_report_opens_with_its_finding(written):
    result, report = written
    text = report.read_text()
    head = text[:text.index("How to read this report")]
    top = result.flagged().iloc[0]
    assert "headline" in head and "flagged disparit" in head
    assert f"{100 * top['difference']:+.1f} pp" in head  # the finding, with its number, before the guide
    assert "predicted as " in head and "against" in head
    assert "Limitations" in text and "percentage points" in text


def test_report_reads_as_words_not_ids(written):
    _, report = written
    text = report.read_text()
    body = text[text.index("<h2>Disparities"):]
    for raw in (">True<", ">False<", ">inf<", "-inf", ">flagged_rate<", ">topk_flagged_rate<", "nan"):
        assert raw not in body, raw
    assert "among the top " in body  # top-k with its k


def test_rows_that_test_nothing_are_summarised(written):
    result, report = written
    d = result.disparities
    empty = int((((d["rate"] == 0) & (d["reference_rate"] == 0)) | ((d["rate"] == 1) & (d["reference_rate"] == 1)))
                .sum())
    text = report.read_text()
    if empty:
        assert f"{empty} comparison(s) where both rates are 0% or both 100%" in text
    table = text[text.index("<h2>Disparities"):text.index("<h2>Rates by group")]
    assert table.count("<tr") - 1 == len(d) - empty  # one header row, then only rows that test something


def test_random_init_model_is_said_at_the_top(written):
    from cliplab.audit.html import render_html

    result, _ = written
    result.model["random_init"] = True
    try:
        text = render_html(result)
    finally:
        result.model.pop("random_init")
    assert text.index("random weights") < text.index('<section class="headline"')


def test_script_json_escapes_markup():
    s = script_json({"a": "</script><b>&\u2028"})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s) == {"a": "</script><b>&\u2028"}


def test_metrics_json_schema(written):
    result, report = written
    def no_nan(x):
        raise ValueError(f"non-standard JSON constant {x}")
    doc = json.loads((report.parent / "metrics.json").read_text(), parse_constant=no_nan)
    assert doc["schema"] == "cliplab-audit/2" and doc["model"]["identity"] == "tiny@<script>"
    assert "flag_rule" in doc["settings"] and doc["audit"]["classes"][2]["name"] == EVIL_CLASS
    assert isinstance(doc["disparities"], list) and doc["disparities"]
    for d in doc["disparities"]:
        assert set(d) >= REQUIRED
    flagged = [d for d in doc["disparities"] if d["flagged"] and d["metric"] == "flagged_rate"]
    assert flagged and flagged[0]["group"] == EVIL_VALUE and flagged[0]["reference"] == "(rest)"  # = "plain"
    assert flagged[0]["category"] == "crime & <b>harm</b>" and flagged[0]["difference"] > 0.2
    assert flagged[0]["ci_low"] > 0 and flagged[0]["p_adjusted"] < 0.05
    assert doc["n_flagged"] == len(result.flagged())


def test_summary_and_by_group(written):
    result, _ = written
    s = result.summary()
    assert "detected disparit" in s and EVIL_VALUE in s
    wide = result.by_group()
    assert list(wide.columns) == ["attribute", "group", "n", "status", "crime & <b>harm</b>"]
    assert wide["n"].sum() == 400
    ex = result.worst_examples(3)
    assert len(ex) == 3 and (ex["prediction"] == EVIL_CLASS).all()
