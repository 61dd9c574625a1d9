"""cliplab.audit.power: planning the images an audit needs; ``cliplab audit --plan``."""
from __future__ import annotations

import numpy as np
import pytest

from cliplab.audit.definition import load_audit_spec
from cliplab.audit.power import families_per_attribute_set, plan_audit
from cliplab.audit.stats import detectable_difference
from cliplab.errors import EXIT_INPUT, EXIT_OK, InputError

from .conftest import AUDITS

FAIRFACE = AUDITS / "fairface-clip-paper.yaml"
GROUPS = {"race": 7, "gender": 2, "age": 5}


def test_plan_inverts_the_detectable_difference():
    plan = plan_audit(FAIRFACE, GROUPS, 0.05, base_rate=0.05).set_index("attribute")
    # 2 categories: top-1 + 4 / 3 class rates + top-5 each, plus accuracy = 12 families x 7 attribute sets
    assert families_per_attribute_set(load_audit_spec(FAIRFACE)) == 12
    race = plan.loc["race"]
    assert race["groups"] == 7 and race["families"] == 84
    n, alpha = int(race["images_per_group"]), race["alpha_per_test"]
    assert alpha == pytest.approx(0.05 / (84 * 7))
    assert detectable_difference(n, 6 * n, 0.05, alpha)[0] <= 0.05 < detectable_difference(n - 1, 6 * (n - 1), 0.05,
                                                                                           alpha)[0]
    assert plan.loc["race & gender & age", "groups"] == 70
    assert plan_audit(FAIRFACE, GROUPS, 0.10)["images_per_group"].lt(plan["images_per_group"].to_numpy()).all()


@pytest.mark.parametrize("difference,groups,message", [
    (0.0, GROUPS, "strictly between 0 and 1"), (1.5, GROUPS, "strictly between 0 and 1"),
    (0.05, {"race": 1}, "at least 2 groups"), (0.05, {}, "group structure")])
def test_plan_bad_input(difference, groups, message):
    with pytest.raises(InputError, match=message):
        plan_audit(FAIRFACE, groups, difference)


@pytest.mark.parametrize("plan,code,message", [("0.05", EXIT_OK, "images_per_group"),
                                               ("0", EXIT_INPUT, "strictly between 0 and 1"),
                                               ("1.5", EXIT_INPUT, "strictly between 0 and 1")])
def test_cli_plan(cli_main, capsys, tmp_path, plan, code, message):
    argv = ["audit", "--labels", str(FAIRFACE), "--plan", plan, "--plan-groups", "race=7,gender=2,age=5"]
    assert cli_main(argv) == code  # planning needs no --images and no --out
    out = capsys.readouterr()
    assert message in (out.out if code == EXIT_OK else out.err) and "Traceback" not in out.err
    if code != EXIT_OK:
        assert len(out.err.strip().splitlines()) == 1


@pytest.mark.parametrize("missing", ["--images", "--out"])
def test_cli_audit_without_plan_needs_images_and_out(cli_main, capsys, tmp_path, missing):
    given = {"--images": str(tmp_path), "--out": str(tmp_path / "out")}
    argv = ["audit", "--labels", str(FAIRFACE), *(x for k, v in given.items() if k != missing for x in (k, v))]
    assert cli_main(argv) == EXIT_INPUT
    err = capsys.readouterr().err
    assert f"{missing} is required (except with --plan)" in err and len(err.strip().splitlines()) == 1


def test_detectable_difference_shrinks_with_size():
    d = detectable_difference(np.array([100, 1000, 10000]), np.array([600, 6000, 60000]), 0.05, 0.001)
    assert d[0] > d[1] > d[2] > 0
