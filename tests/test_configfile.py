"""The YAML reader shared by label sets and training configs."""
from __future__ import annotations

import pytest

from cliplab.configfile import check_keys, parse_yaml, read_yaml_mapping
from cliplab.errors import InputError


def test_duplicate_top_level_key_names_both_lines(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\nlr: 0.1\nepochs: 4\n")
    with pytest.raises(InputError, match=r"duplicate key 'epochs' \(lines 1 and 3\)"):
        read_yaml_mapping(f)


def test_duplicate_nested_key_is_refused_too():
    with pytest.raises(InputError, match=r"duplicate key 'x' \(lines 2 and 3\)"):
        parse_yaml("flagged:\n  x: [a]\n  x: [b]\n", "labels.yaml")


def test_distinct_keys_parse_as_safe_yaml():
    assert parse_yaml("a: 1\nb: [x, y]\nc: {d: 2}\n", "f") == {"a": 1, "b": ["x", "y"], "c": {"d": 2}}
    with pytest.raises(InputError, match="not valid YAML"):
        parse_yaml("a: !!python/object:os.system x\n", "f")


def test_unknown_key_suggests_the_closest():
    with pytest.raises(InputError, match=r"unknown key 'epochz' \(did you mean 'epochs'\?\)"):
        check_keys({"epochz": 1}, ["epochs", "lr"], "config")
