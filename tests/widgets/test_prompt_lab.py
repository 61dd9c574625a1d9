"""PromptLab driven from Python (no browser): edits update the figures in place, only new text is
encoded, and bad input becomes a message in the widget instead of an exception."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")  # plotly's FigureWidget needs it

from cliplab.embed import embed_images
from cliplab.widgets import PromptLab
from cliplab.widgets.prompt_lab import parse_classnames

CLASSES = ["kite", "guitar", "book", "flower", "ball", "cup", "key", "phone"]


@pytest.fixture(scope="module")
def emb(tiny, synth_data):
    return embed_images(tiny, synth_data, cache_dir=None, progress=False)


@pytest.fixture
def lab(tiny, emb):
    return PromptLab(tiny, emb, CLASSES, ["a photo of a {}.", "a {}"], group_by=["tone", "age"], flagged=["thief"])


def test_renders_per_class_and_per_group_figures(lab):
    heat = lab.class_figure.data[0]
    assert np.shape(heat.z) == (8, 3) and heat.x[-1] == "ensemble"
    assert len(lab.group_figure.data) == 2 * 3  # accuracy and flagged rate for each of 3 tones
    assert "updated in" in lab.message and lab.result.summary["n_templates"] == 2


def test_adding_a_template_updates_in_place_and_encodes_only_new_prompts(tiny, lab):
    figure, trace = lab.class_figure, lab.class_figure.data[0]
    before = len(tiny.text_cache)
    lab.new_template.value = "a blurry drawing of the {}, 'quoted'."
    lab.add_button.click()
    assert len(tiny.text_cache) - before == len(CLASSES) + 1  # 8 classes + the flagged "thief"
    assert lab.class_figure is figure and lab.class_figure.data[0] is trace  # same widgets, new data
    assert len(trace.x) == 4 and "blurry" in trace.x[2]
    assert lab.new_template.value == ""
    lab.drop_select.value = "a {}"
    lab.drop_button.click()
    assert len(lab.class_figure.data[0].x) == 3 and len(tiny.text_cache) - before == len(CLASSES) + 1
    lab.new_template.value = "a tiny {}."
    lab.new_template._handle_string_msg(lab.new_template, {"event": "submit"}, [])  # what Enter sends
    assert lab.class_figure.data[0].x[-2].endswith("a tiny {}.") and lab.class_figure.data[0].x[-1] == "ensemble"
    assert lab.last_update_seconds > 0  # its speed is measured in benchmarks/bench_widgets.py


def test_editing_class_names_and_attribute(lab):
    lab.classnames_box.value = "\n".join(CLASSES[:-1] + ["phone = <b>mobile</b> \"phone\""])
    assert "phone" in lab.result.classnames and lab.result.classnames["phone"] == "phone"  # not yet applied
    lab.apply_button.click()
    assert lab.result.classnames["phone"] == '<b>mobile</b> "phone"'
    assert "&lt;b&gt;mobile&lt;/b&gt; &quot;phone&quot;" in lab.class_figure.data[0].y[-1]
    lab.attribute.value = "age"
    assert len(lab.group_figure.data) == 2 * 2 and "age" in lab.group_figure.layout.title.text


@pytest.mark.parametrize("box, value, match", [
    ("templates_box", "", "no prompt templates"),
    ("templates_box", "a photo of a thing", "has no {}"),
    ("classnames_box", "kite", "at least 2 classes"),
    ("classnames_box", "kite\nkite", "listed twice"),
])
def test_bad_input_becomes_a_message(lab, box, value, match):
    z = lab.class_figure.data[0].z
    getattr(lab, box).value = value
    lab.apply()
    assert match in lab.message and "last valid state" in lab.message
    assert np.array_equal(lab.class_figure.data[0].z, z)  # charts keep the last valid state


def test_add_button_refuses_bad_templates(lab):
    for text, match in (("", "type a template"), ("no braces", "has no {}"), ("a {}", "already")):
        lab.add_template(text)
        assert match in lab.message
    assert lab.templates == ["a photo of a {}.", "a {}"]


def test_dropping_a_class_and_single_valued_attribute_are_explained(tiny, emb):
    one = emb.records.assign(site="lab")
    from cliplab.embed import ImageEmbeddings

    lab = PromptLab(tiny, ImageEmbeddings(emb.features, one), CLASSES[:4], ["a {}"], group_by="site")
    assert "not among the classes" in lab.message and "left out" in lab.message
    assert "single value" in lab.message
    assert lab.group_figure.data == () and "no attribute" in lab.group_figure.layout.title.text


def test_parse_classnames():
    assert parse_classnames("a\n\nb = bee\n") == {"a": "a", "b": "bee"}


def test_figures_state_holds_every_trace_for_a_late_view(lab):
    """What a browser view created after the edits renders: the synced state, not one-time messages."""
    lab.add_template("a sketch of a {}.")
    for fig in (lab.class_figure, lab.group_figure):
        data = fig.get_state(["_widget_data"])["_widget_data"]
        assert len(data) == len(fig.data) > 0
    heat = lab.class_figure.get_state(["_widget_data"])["_widget_data"][0]
    assert "sketch" in heat["x"][-2]


def test_wilson_intervals_match_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    from cliplab.widgets.prompt_lab import _wilson

    rate, n = np.array([0.0, 0.105, 0.5, 1.0]), np.array([20, 200, 8, 50])  # rates are counts over n
    low, high = _wilson(rate, n)
    ref_low, ref_high = proportion_confint(np.round(rate * n), n, method="wilson")
    assert np.allclose(low, ref_low) and np.allclose(high, ref_high)


def test_an_edit_says_it_is_not_applied_until_apply(lab):
    """Typing in a box changes nothing but the hint; Apply re-scores with the boxes and clears it."""
    before = list(lab.result.templates)
    lab.templates_box.value += "\na drawing of a {}."
    assert "not applied yet" in lab.hint.value and list(lab.result.templates) == before
    lab.apply_button.click()
    assert "a drawing of a {}." in lab.result.templates and "not applied yet" not in lab.hint.value
