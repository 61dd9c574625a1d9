import pytest

from cliplab.errors import InputError
from cliplab.prompts import fill, load_classes, load_templates, template_sets


def test_shipped_template_sets():
    assert {"default", "openai-imagenet", "simple-imagenet"} <= set(template_sets())
    assert len(load_templates("openai-imagenet")) == 80
    assert load_templates() == ["a photo of a {}."]


def test_templates_from_file_comma_and_list(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("# comment\na photo of a {}.\n\n  a drawing of a {}.  \n")
    assert load_templates(f) == ["a photo of a {}.", "a drawing of a {}."]
    assert load_templates("a photo of a {}, in the rain.") == ["a photo of a {}, in the rain."]  # one template
    assert load_templates('["a {}, b", "c {}"]') == ["a {}, b", "c {}"]  # inline JSON list
    assert load_classes('["a, b", "c"]') == ["a, b", "c"] and load_classes("a,b") == ["a", "b"]
    y = tmp_path / "t.yaml"
    y.write_text("- 'x {}'\n- 'y {}'\n")
    assert load_templates(y) == ["x {}", "y {}"]


@pytest.mark.parametrize("spec, msg", [([], "no prompt templates"), (["a photo"], "has no {}"),
                                       (["a {}", "a {}"], "given twice")])
def test_bad_templates(spec, msg):
    with pytest.raises(InputError, match=msg):
        load_templates(spec)


def test_missing_template_file():
    with pytest.raises(InputError, match="no such templates file"):
        load_templates("nope/templates.txt")


def test_classes():
    assert load_classes("cat, dog") == ["cat", "dog"]
    with pytest.raises(InputError, match="at least 2"):
        load_classes("cat")
    with pytest.raises(InputError, match="twice"):
        load_classes(["Cat", "cat"])
    with pytest.raises(InputError, match="line break"):
        load_classes(["a\nb", "c"])


def test_fill_keeps_other_braces():
    assert fill("a {} {x}", "c{}at") == "a c{}at {x}"
