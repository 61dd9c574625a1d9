"""cliplab.sensitivity: per-template metrics, spread, ensemble gain, per-class and per-group tables.

Most tests use a fake model whose text cache is filled by hand, so every number is computed
by hand from 2-D unit vectors; one test checks agreement with ZeroShotClassifier on a real model.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cliplab.embed import ImageEmbeddings, embed_images
from cliplab.errors import InputError
from cliplab.models import LoadedModel
from cliplab.sensitivity import ENSEMBLE, PromptScorer, prompt_sensitivity
from cliplab.zeroshot import ZeroShotClassifier


def _unit(deg: float) -> np.ndarray:
    r = np.deg2rad(deg)
    return np.array([np.cos(r), np.sin(r)], dtype=np.float32)


def _fake(prompts: dict[str, float]) -> LoadedModel:
    """A model that knows only these prompts (angle in degrees each); encoding anything else fails."""
    def no_encoding(*_a, **_k):
        raise AssertionError("the fake model was asked to encode text")

    return LoadedModel(model=None, preprocess=None, tokenizer=no_encoding, name="fake", identity="fake",
                       device=torch.device("cpu"), text_cache={p: _unit(a) for p, a in prompts.items()})


# Images at 0, 10, 80, 90 degrees: labels a, a, b, b; tone light, dark, light, dark.
IMAGES = ImageEmbeddings(np.stack([_unit(a) for a in (0, 10, 80, 90)]),
                         pd.DataFrame({"path": list("pqrs"), "label": list("aabb"),
                                       "tone": ["light", "dark", "light", "dark"], "one": ["x"] * 4}))
# T1 "good {}": a at 0, b at 90 -> all 4 right.  T2 "bad {}": a at 85, b at 100 -> every image is
# nearer a (85) than b (100) -> predicts a, a, a, a.
PROMPTS = {"good a": 0, "good b": 90, "bad a": 85, "bad b": 100, "good thief": 12, "bad thief": 200}


def test_per_template_metrics_spread_and_ensemble_by_hand():
    r = prompt_sensitivity(_fake(PROMPTS), IMAGES, ["a", "b"], ["good {}", "bad {}"])
    t = r.per_template.set_index("template")
    assert t.loc["good {}", "acc1"] == 1.0 and t.loc["bad {}", "acc1"] == 0.5
    assert t.loc["bad {}", "mean_per_class_recall"] == 0.5  # recall a = 1, b = 0
    # ensemble: a = normalise(u0 + u85) at 42.5 deg, b = normalise(u90 + u100) at 95 deg
    # images 0, 10 -> a; 80, 90 -> b (80 is 15 from b, 37.5 from a): all right
    assert t.loc[ENSEMBLE, "acc1"] == 1.0
    s = r.summary["acc1"]
    assert s["best_template"] == "good {}" and s["worst_template"] == "bad {}"
    assert s["spread"] == pytest.approx(0.5) and s["std"] == pytest.approx(0.25)  # population std of 1, .5
    assert s["median"] == pytest.approx(0.75)
    assert s["ensemble_gain_over_best"] == pytest.approx(0.0)
    assert s["ensemble_gain_over_median"] == pytest.approx(0.25)


def test_per_class_recall_and_best_worst_template():
    r = prompt_sensitivity(_fake(PROMPTS), IMAGES, ["a", "b"], ["good {}", "bad {}"])
    assert r.per_class.loc["a", "bad {}"] == 1.0 and r.per_class.loc["b", "bad {}"] == 0.0
    ext = r.class_extremes.set_index("class")
    assert ext.loc["b", "best_template"] == "good {}" and ext.loc["b", "worst_template"] == "bad {}"
    assert ext.loc["b", "spread"] == 1.0 and ext.loc["a", "spread"] == 0.0


def test_groups_and_flagged_rates_by_template():
    r = prompt_sensitivity(_fake(PROMPTS), IMAGES, ["a", "b"], ["good {}", "bad {}"], group_by="tone",
                           flagged=["thief"])
    g = r.per_group.set_index(["group", "template"])
    # "good thief" at 12 deg is nearest to the image at 10 (dark, label a): dark flagged 1 of 2.
    assert g.loc[("dark", "good {}"), "flagged_rate"] == 0.5 and g.loc[("dark", "good {}"), "acc1"] == 0.5
    assert g.loc[("light", "good {}"), "flagged_rate"] == 0.0 and g.loc[("light", "good {}"), "acc1"] == 1.0
    assert g.loc[("dark", "bad {}"), "flagged:thief"] == 0.0  # "bad thief" at 200 deg: never nearest
    gaps = r.group_gaps.set_index("template")
    assert gaps.loc["good {}", "worst_group"] == "dark" and gaps.loc["good {}", "acc1_gap"] == 0.5
    assert gaps.loc["good {}", "most_flagged_group"] == "dark"
    assert gaps.loc["good {}", "flagged_rate_gap"] == 0.5


def test_single_valued_attribute_is_noted_not_fatal():
    r = prompt_sensitivity(_fake(PROMPTS), IMAGES, ["a", "b"], ["good {}"], group_by=["one"])
    assert r.per_group is None and any("single value" in w for w in r.warnings)


def test_one_template_has_zero_spread_and_no_gain():
    r = prompt_sensitivity(_fake(PROMPTS), IMAGES, ["a", "b"], ["bad {}"])
    s = r.summary["acc1"]
    assert s["spread"] == 0 and s["std"] == 0 and s["ensemble_gain_over_best"] == 0


@pytest.mark.parametrize("classnames, templates, match", [
    (["a", "b"], [], "no prompt templates"),
    (["a", "b"], ["no braces"], "has no {}"),
    (["a"], ["good {}"], "at least 2 classes"),
    (["a", "b"], ["good {}", "good {}"], "given twice"),
])
def test_bad_inputs_say_why(classnames, templates, match):
    with pytest.raises(InputError, match=match):
        prompt_sensitivity(_fake(PROMPTS), IMAGES, classnames, templates)


def test_labels_outside_the_classes_error_or_are_dropped_with_a_note():
    prompts = {**PROMPTS, "good c": 45}
    with pytest.raises(InputError, match="not among the classes"):
        prompt_sensitivity(_fake(prompts), IMAGES, ["a", "c"], ["good {}"])
    r = prompt_sensitivity(_fake(prompts), IMAGES, ["a", "c"], ["good {}"], drop_unknown_labels=True)
    assert r.per_template["n_images"].iloc[0] == 2 and "left out" in r.warnings[0]


def test_missing_columns_and_flagged_clash():
    with pytest.raises(InputError, match="no label column 'y'"):
        prompt_sensitivity(_fake(PROMPTS), IMAGES, ["a", "b"], ["good {}"], label_column="y")
    with pytest.raises(InputError, match="no attribute column 'age'"):
        prompt_sensitivity(_fake(PROMPTS), IMAGES, ["a", "b"], ["good {}"], group_by="age")
    with pytest.raises(InputError, match="also a class"):
        prompt_sensitivity(_fake(PROMPTS), IMAGES, ["a", "b"], ["good {}"], flagged=["A"])


def test_label_to_prompt_name_mapping():
    prompts = {"good apple": 0, "good banana": 90}
    r = prompt_sensitivity(_fake(prompts), IMAGES, {"a": "apple", "b": "banana"}, ["good {}"])
    assert r.per_template["acc1"].iloc[0] == 1.0 and list(r.per_class.index) == ["a", "b"]


def test_scorer_reuses_predictions_and_encodes_only_new_text(tiny, synth_data):
    emb = embed_images(tiny, synth_data, cache_dir=None, progress=False)
    classnames = ["kite", "guitar", "book", "flower", "ball", "cup", "key", "phone"]
    scorer = PromptScorer(tiny, emb, classnames, group_by=["tone", "age"], flagged=["thief"])
    scorer.result(["a photo of a {}."])
    before = len(tiny.text_cache)
    r = scorer.result(["a photo of a {}.", "a <b>drawing</b> of a '{}'."])
    assert len(tiny.text_cache) - before == len(classnames) + 1  # one new template: 8 classes + thief
    assert set(r.per_group["attribute"]) == {"tone", "age"}


def test_ensemble_matches_the_zero_shot_classifier(tiny, synth_data):
    emb = embed_images(tiny, synth_data, cache_dir=None, progress=False)
    classnames = ["kite", "guitar", "book", "flower", "ball", "cup", "key", "phone"]
    templates = ["a photo of a {}.", "a {}", "itap of a {}."]
    r = prompt_sensitivity(tiny, emb, classnames, templates)
    clf = ZeroShotClassifier.build(tiny, classnames, templates)
    y = np.array([classnames.index(v) for v in emb.records["label"]])
    expected = float((clf.predict(emb.features).top1 == y).mean())
    assert r.per_template.set_index("template").loc[ENSEMBLE, "acc1"] == pytest.approx(expected)
