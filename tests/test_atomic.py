"""Atomic writes: CSV formula neutralising, output sets, and the cleanup of dead writers' temp files."""
from __future__ import annotations

import os
import subprocess

import pandas as pd
import pytest

from cliplab.atomic import _HOST, check_output_set, clean_stale_temps, neutralise_formulas, output_set, write_table
from cliplab.errors import InputError, OutputError


def test_formula_cells_are_neutralised_in_csv_only(tmp_path):
    table = pd.DataFrame({"name": ["=1+2", "+cmd", "-x", "@SUM(A1)", "\tx", "plain", "-3", "+4.5", None],
                          "n": [-1, 2, 3, 4, 5, 6, 7, 8, 9], "@col": ["a"] * 9})
    write_table(tmp_path / "t.csv", table)
    back = pd.read_csv(tmp_path / "t.csv", keep_default_na=False, dtype=str)
    assert back["name"].tolist() == ["'=1+2", "'+cmd", "'-x", "'@SUM(A1)", "'\tx", "plain", "-3", "+4.5", ""]
    assert back["n"].tolist()[0] == "-1" and list(back.columns) == ["name", "n", "'@col"]
    write_table(tmp_path / "t.parquet", table)
    assert pd.read_parquet(tmp_path / "t.parquet")["name"].tolist()[:2] == ["=1+2", "+cmd"]  # raw values
    assert table["name"].iloc[0] == "=1+2"  # the caller's table is not changed
    numbers = table[["n"]]
    assert neutralise_formulas(numbers) is numbers  # nothing to neutralise: no copy


def test_an_output_set_is_all_or_nothing(tmp_path):
    with output_set(tmp_path, "info.json", {"n": 1}) as files:
        files.text("a.txt", "old a")
        files.text("b.txt", "old b")
    assert check_output_set(tmp_path, "info.json")["files"] == {"a.txt": 5, "b.txt": 5}
    with pytest.raises(OutputError, match="cannot write the outputs"), \
            output_set(tmp_path, "info.json", {"n": 2}) as files:
        files.text("a.txt", "new a, longer")
        raise OSError(28, "No space left on device")  # b.txt never written
    assert (tmp_path / "a.txt").read_text() == "old a" and check_output_set(tmp_path, "info.json")["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "info.json"]  # no temp files left
    (tmp_path / "c.txt").mkdir()
    with pytest.raises(OutputError, match="in the way"), output_set(tmp_path, "info.json", {"n": 3}) as files:
        files.text("a.txt", "new a")
        files.text("c.txt", "new c")
    assert (tmp_path / "a.txt").read_text() == "old a" and check_output_set(tmp_path, "info.json")["n"] == 1
    (tmp_path / "b.txt").write_text("mixed in")
    with pytest.raises(InputError, match="does not belong"):
        check_output_set(tmp_path, "info.json")


def test_only_dead_writers_temp_files_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "final").mkdir()
    files = {"dead": tmp_path / "final" / f".w.bin.{_HOST}-{dead.pid}.abc.tmp",
             "live": tmp_path / f".x.csv.{_HOST}-1.abc.tmp",
             "mine": tmp_path / f".y.csv.{_HOST}-{os.getpid()}.abc.tmp",
             "other host, fresh": tmp_path / ".z.csv.elsewhere-5.abc.tmp",
             "not ours": tmp_path / "notes.tmp"}
    for f in files.values():
        f.write_text("x")
    old = tmp_path / ".old.csv.elsewhere-5.abc.tmp"
    old.write_text("x")
    os.utime(old, (0, 0))
    removed = clean_stale_temps(tmp_path, depth=1)
    assert sorted(removed) == sorted([files["dead"], old])
    assert all(f.exists() for k, f in files.items() if k != "dead")
