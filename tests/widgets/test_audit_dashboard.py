"""AuditDashboard driven from Python over a real audit of the (random) tiny model on synthetic data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

from cliplab.audit import audit_features, load_audit_spec, run_audit
from cliplab.embed import embed_images
from cliplab.widgets import AuditDashboard
from cliplab.zeroshot import ZeroShotClassifier

SPEC = Path(__file__).resolve().parents[2] / "audits" / "synthetic-legacy.yaml"


@pytest.fixture(scope="module")
def result(tiny, synth_data):
    return run_audit(tiny, synth_data, SPEC, cache_dir=None, progress=False)


def test_bars_with_intervals_and_disparity_table(result):
    d = AuditDashboard(result)
    bar = d.figure.data[0]
    assert d.metric.value == "flagged_rate" and d.category.value == "crime-related"
    assert list(bar.x) == ["light", "medium", "dark"]  # in order, not alphabetical
    t = d.selection()
    assert np.allclose(bar.error_y.array, t["ci_high"] - t["rate"])
    assert np.allclose(bar.error_y.arrayminus, t["rate"] - t["ci_low"])
    assert "Disparities" in d.table.value and "<table" in d.table.value
    assert "below the audit's minimum size" in d.message  # 38 test images: every group is small


def test_switching_attribute_and_metric_updates_in_place(result):
    d = AuditDashboard(result)
    bar = d.figure.data[0]
    d.attribute.value = "age"
    assert d.figure.data[0] is bar and list(bar.x) == ["child", "adult"]
    d.metric.value = "accuracy"
    assert d.category.value == "" and "accuracy" in d.figure.layout.title.text
    d.attribute.value = "tone & age"
    assert len(bar.x) == 6


def test_clicking_a_group_shows_its_worst_images(result):
    d = AuditDashboard(result)
    d.metric.value = "accuracy"
    d.figure._handler_js2py_pointsCallback({"new": {
        "event_type": "plotly_click", "device_state": None,
        "points": {"xs": [0], "ys": [0], "point_indexes": [0], "trace_indexes": [0]}}})
    assert "tone = light" in d.examples.value and "data:image/png;base64," in d.examples.value  # bar 0
    table = d.show_group("dark")
    assert (table["tone"] == "dark").all() and len(table) <= d.n_examples
    assert not table["correct"].astype(bool).any() or (table["flagged_category"] != "").any()
    assert "no misclassified" in (d.show_group("nobody").pipe(lambda _: d.examples.value))


def test_export_writes_the_cli_report(result, tmp_path):
    d = AuditDashboard(result, out=str(tmp_path / "report"))
    d.export_button.click()
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"report.html", "metrics.json", "groups.csv", "disparities.csv"} <= files
    assert "report written" in d.message
    blocked = tmp_path / "file"
    blocked.write_text("x")
    assert d.export(blocked / "sub") is None and "export failed" in d.message


def test_single_valued_attribute_is_explained(tiny, synth_data):
    spec = load_audit_spec(SPEC).with_overrides(group_by=("site",))
    emb = embed_images(tiny, synth_data, cache_dir=None, progress=False)
    clf = ZeroShotClassifier.build(tiny, spec.classnames, spec.templates, spec.class_prompts)
    one = audit_features(emb.features, emb.records.assign(site="lab"), spec, clf.weights)
    d = AuditDashboard(one)
    assert "single group" in d.message and list(d.figure.data[0].x) == ["lab"]
