"""cliplab.audit.variants: verdicts under other wordings; bad variant files."""
from __future__ import annotations

import pandas as pd
import pytest

from cliplab.audit.definition import load_audit_spec
from cliplab.audit.variants import load_label_variants, load_template_variants, variant_specs
from cliplab.errors import EXIT_INPUT, EXIT_OK, InputError

from .conftest import AUDITS

SPEC = {"classes": ["kite", "guitar", "thief"], "templates": ["a photo of a {}."], "flagged": {"crime": ["thief"]},
        "group_by": ["tone"]}


def test_template_variants_from_a_set_and_a_file(tmp_path):
    assert len(load_template_variants("openai-imagenet")) == 80
    f = tmp_path / "t.txt"
    f.write_text("# comment\na photo of a {}.\na drawing of a {}.\n\n")
    assert load_template_variants(f) == ["a photo of a {}.", "a drawing of a {}."]


@pytest.mark.parametrize("text,message", [("a photo of a {}.\n\na sketch of a {}.\n", "line 2 is empty"),
                                          ("a photo of a {}.\na photo of a thing\n", "has no {}")])
def test_bad_template_variants(tmp_path, text, message):
    f = tmp_path / "t.txt"
    f.write_text(text)
    with pytest.raises(InputError, match=message):
        load_template_variants(f)


def test_label_variants_build_prompts_and_refuse_class_names(tmp_path):
    spec = load_audit_spec(SPEC)
    f = tmp_path / "l.yaml"
    f.write_text("thief: [robber, burglar]\n")
    variants = variant_specs(spec, ["a sketch of a {}."], load_label_variants(f, spec))
    assert [n for n, _ in variants] == ["as written", "template: a sketch of a {}.", "labels: thief=robber",
                                        "labels: thief=burglar"]
    assert variants[2][1].class_prompts == {"thief": ["a photo of a robber."]}
    f.write_text("thief: [robber, Guitar]\n")
    with pytest.raises(InputError, match="synonym 'Guitar' of 'thief' is the name of class 'guitar'"):
        load_label_variants(f, spec)
    f.write_text("kite: [toy]\n")
    with pytest.raises(InputError, match="'kite' is not a flagged class"):
        load_label_variants(f, spec)
    f.write_text("thief: [robber]\nthief: [burglar]\n")  # read like the label sets: a duplicate key is refused
    with pytest.raises(InputError, match=r"duplicate key 'thief' \(lines 1 and 2\)"):
        load_label_variants(f, spec)
    f.write_text("thief: [robber\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_label_variants(f, spec)


def test_cli_wording_marks_fragile_verdicts(cli_main, synth_small, tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text("a photo of a {}.\na blurry photo of a {}.\n")
    common = ["audit", "--labels", str(AUDITS / "synthetic-legacy.yaml"), "--model", "cliplab-tiny", "--random-init",
              "--images",
              str(synth_small), "--cache-dir", str(tmp_path / "cache"), "--quiet", "--thumbnails", "0",
              "--min-group-size", "5"]
    assert cli_main([*common, "--out", str(tmp_path / "o"), "--template-variants", str(f)]) == EXIT_OK
    table = pd.read_csv(tmp_path / "o" / "wording.csv")
    assert len(table) and (table["n_variants"] == 3).all() and "fragile" in table.columns
    assert (table["difference_min"] <= table["difference"] + 1e-12).all()
    assert (table["fragile"] == ((table["detected_share"] > 0) & (table["detected_share"] < 1))).all()
    assert "wording:" in capsys.readouterr().out
    f.write_text("a photo of a {}.\n\nx {}\n")
    assert cli_main([*common, "--out", str(tmp_path / "o2"), "--template-variants", str(f)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "line 2 is empty" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o2").exists()  # checked before anything ran
