"""The README's promises: its two commands, and the exit-code table matching cliplab.errors."""
import re
from pathlib import Path

from cliplab import errors

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```")[1]
    assert [ln.split("#")[0].strip() for ln in first_block.strip().splitlines()] == ["make demo", "make test"]


def test_exit_code_table_matches_the_code():
    section = README.split("## Errors and exit codes")[1].split("\n## ")[0]
    table = {int(m.group(1)) for m in re.finditer(r"^\| (\d+) \|", section, re.M)}
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert table == codes
    for cls in (errors.InputError, errors.ModelError, errors.OutputError):
        assert cls.exit_code in table
