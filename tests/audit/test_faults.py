"""Fault injection for `cliplab audit`: SIGKILL mid-write, an unwritable output folder, a full disk.

Every audit output is written atomically (cliplab/atomic.py), so whenever a run dies each output
file in the folder is either the previous run's complete file or the new run's complete file, and
temp files are hidden dot-files. The audits run as real processes (``python -m cliplab.cli``) with
a randomly initialised cliplab-tiny; the only thing that differs between two runs of the same
audit is the creation time (metrics.json's "created", the report's "Created ... with" line), which
is blanked before comparing.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cliplab.errors import EXIT_OK, EXIT_OUTPUT

from .conftest import AUDITS

OUTPUTS = {"groups.csv", "disparities.csv", "predictions.parquet", "skipped.csv", "metrics.json", "report.html"}
# what a killed run may leave behind: atomic_path's temp files and prepare_out_dir's probe, all hidden
TEMP_FILE = re.compile(r"\.(?:{})\..+\.tmp|\.write-test-.+".format("|".join(map(re.escape, sorted(OUTPUTS)))))
CREATED = {"metrics.json": re.compile(rb'(?<="created": ")[^"]*(?=")'),
           "report.html": re.compile(rb"(?<=Created )\S+(?= with cliplab )")}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two audits share the 2 cores in places; same setting for every run


def normalise(name: str, data: bytes) -> bytes:
    pattern = CREATED.get(name)
    return pattern.sub(b"<created>", data) if pattern else data


def read_outputs(folder: Path) -> dict[str, bytes]:
    return {f.name: normalise(f.name, f.read_bytes()) for f in folder.iterdir() if not f.name.startswith(".")}


def audit_argv(labels: Path, out: Path, common: list[str]) -> list[str]:
    return [sys.executable, "-m", "cliplab.cli", "audit", "--labels", str(labels), *common, "--out", str(out)]


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300)


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (inode, size, mtime) of every entry of ``folder``; os.replace gives a new inode."""
    snap = {}
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:  # a temp file renamed between listing and stat
                    continue
                snap[e.name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        pass
    return snap


def replaced(name):
    """``name`` was replaced or written to (any change of inode, size or mtime)."""
    return lambda before, now: name in now and now[name] != before.get(name)


def temp_appears(name):
    then = replaced(name)  # should polling miss the temp file's short life, kill right after the rename
    return lambda before, now: any(k.startswith(f".{name}.") and k not in before for k in now) or then(before, now)


# kill points, in the order the audit reaches them (write_report: groups, disparities, predictions,
# skipped, metrics.json, then ~0.5 s of rendering, then report.html, then ~1 s of exit)
KILL_POINTS = {
    "first change in OUT": lambda before, now: now != before,
    "predictions.parquet replaced": replaced("predictions.parquet"),
    "metrics.json's temp file appears": temp_appears("metrics.json"),
    "metrics.json replaced": replaced("metrics.json"),
    "report.html's temp file appears": temp_appears("report.html"),
    "report.html replaced": replaced("report.html"),
}


def kill_when(argv: list[str], out: Path, point: str, log: Path, timeout: float = 300) -> int:
    """Run ``argv``; poll ``out`` every 2 ms and SIGKILL the run's process group at ``point``."""
    when, before = KILL_POINTS[point], snapshot(out)
    with open(log, "wb") as err:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=ENV, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while p.poll() is None and time.monotonic() < deadline:
            if when(before, snapshot(out)):
                break
            time.sleep(0.002)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # the audit and its image-decoding workers
        p.wait()
    return p.returncode


def check_outputs(out: Path, old: dict[str, bytes], new: dict[str, bytes]) -> tuple[dict[str, str], list[str]]:
    """Every visible file is old or new (complete); hidden leftovers are temp files. -> (state, hidden)."""
    names = [f.name for f in out.iterdir()]
    hidden = sorted(n for n in names if n.startswith("."))
    visible = sorted(n for n in names if not n.startswith("."))
    assert not [n for n in hidden if not TEMP_FILE.fullmatch(n)], f"unexpected hidden files {hidden}"
    assert set(visible) <= OUTPUTS, f"unexpected files {visible}"
    assert {"metrics.json", "report.html"} <= set(visible), visible
    json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    state = {}
    for name in visible:
        data = normalise(name, (out / name).read_bytes())
        if data == new.get(name):
            state[name] = "same" if data == old.get(name) else "new"
        elif data == old.get(name):
            state[name] = "old"
        else:
            pytest.fail(f"{out / name} ({len(data)} bytes) is neither the old complete file "
                        f"({len(old.get(name, b''))} bytes) nor the new one ({len(new.get(name, b''))} bytes)")
    return state, hidden


@pytest.fixture(scope="module")
def setup(synth_small, tmp_path_factory):
    """Label sets A and B, the common options, and one uninterrupted run of each (run side by side)."""
    root = tmp_path_factory.mktemp("audit-faults")
    a = AUDITS / "synthetic-legacy.yaml"
    b = root / "b.yaml"  # B: another class, so every prediction, metrics.json and the report change
    b.write_text(a.read_text().replace("classes: [kite,", "classes: [person, kite,")
                 .replace("name: synthetic", "name: synthetic-plus-person"))
    common = ["--model", "cliplab-tiny", "--random-init", "--images", str(synth_small), "--no-cache", "--quiet",
              "--workers", "0", "--n-boot", "200", "--thumbnails", "3"]
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(run, [audit_argv(a, root / "a", common), audit_argv(b, root / "b-ref", common)]))
    for p in done:
        assert p.returncode == EXIT_OK, p.stderr
    old, new = read_outputs(root / "a"), read_outputs(root / "b-ref")
    assert set(old) == set(new) == OUTPUTS
    for name in ("metrics.json", "report.html", "predictions.parquet"):
        assert old[name] != new[name], f"{name} does not tell label set A from B"
    return {"a": a, "b": b, "common": common, "root": root, "old": old, "new": new}


def test_sigkill_at_any_point_leaves_each_output_old_or_new(setup):
    """SIGKILL an audit of B writing over a complete audit of A, at six points of its writing;
    then a run of B to completion gives exactly the uninterrupted run's outputs."""
    root, old, new = setup["root"], setup["old"], setup["new"]
    # two output folders, each starting with A's complete outputs, take three kill points each, side by side
    chains = {root / "out1": list(KILL_POINTS)[0::2], root / "out2": list(KILL_POINTS)[1::2]}
    for out in chains:
        out.mkdir()
        for name in OUTPUTS:
            (out / name).write_bytes((root / "a" / name).read_bytes())

    def chain(out: Path) -> list[tuple[str, dict[str, str], list[str]]]:
        seen = []
        for i, point in enumerate(chains[out]):
            log = root / f"{out.name}-kill{i}.err"
            code = kill_when(audit_argv(setup["b"], out, setup["common"]), out, point, log)
            assert code == -signal.SIGKILL, f"{point}: the run ended by itself ({code}): {log.read_text()[-2000:]}"
            state, hidden = check_outputs(out, old, new)
            seen.append((point, state, hidden))
        return seen

    with ThreadPoolExecutor(2) as pool:
        seen = [s for result in pool.map(chain, chains) for s in result]
    summary = "\n".join(f"{point}: {' '.join(f'{n}={s}' for n, s in state.items())} hidden={hidden}"
                        for point, state, hidden in seen)
    print(summary)
    # the kill points were reached: at least one kill fell between metrics.json's rename and report.html's
    assert any(st["metrics.json"] == "new" and st["report.html"] == "old" for _, st, _ in seen), summary

    out = root / "out1"  # the folder with a killed run's temp files in it
    p = run(audit_argv(setup["b"], out, setup["common"]))
    assert p.returncode == EXIT_OK, p.stderr
    final = read_outputs(out)
    assert json.loads(final["metrics.json"]) == json.loads(new["metrics.json"])
    assert final == new  # every output, byte for byte (creation time blanked)
    assert all(TEMP_FILE.fullmatch(f.name) for f in out.iterdir() if f.name.startswith("."))


FULL_DISK = """
mount -t tmpfs -o size=40k tmpfs "$OUT" || exit 99
"$@"; code=$?
cp -a "$OUT/." "$OUT.after/"
exit $code
"""


@pytest.fixture(scope="module")
def failing_runs(setup, tmp_path_factory):
    """The two audits that cannot write their outputs, started together: each computes a whole audit
    before it writes, so running them side by side halves the wait."""
    root = tmp_path_factory.mktemp("audit-unwritable")
    (root / "afile").write_text("not a folder\n")
    (root / "disk").mkdir()
    (root / "disk.after").mkdir()
    b, common = setup["b"], setup["common"]
    argvs = {"file-parent": audit_argv(b, root / "afile" / "out", common),
             "full-disk": ["unshare", "--mount", "--propagation", "private", "sh", "-c", FULL_DISK, "sh",
                           *audit_argv(b, root / "disk", common)]}
    procs = {k: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**ENV, "OUT": str(root / "disk")}, start_new_session=True)
             for k, argv in argvs.items()}

    def result(name: str) -> subprocess.CompletedProcess:
        out, err = procs[name].communicate(timeout=300)
        return subprocess.CompletedProcess(argvs[name], procs[name].returncode, out, err)

    yield root, result
    for p in procs.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def one_line_error(p: subprocess.CompletedProcess, start: str, reason: str) -> None:
    assert p.returncode == EXIT_OUTPUT, (p.returncode, p.stderr)
    assert p.stderr.startswith(start) and reason in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr


def test_output_folder_under_a_regular_file_exits_5(failing_runs):
    """As root, permission bits do not stop writes; a folder whose parent is a file cannot be created."""
    root, result = failing_runs
    one_line_error(result("file-parent"), "cliplab: error: cannot write to output folder", "Not a directory")
    assert (root / "afile").read_text() == "not a folder\n"


def test_full_disk_exits_5_and_leaves_no_partial_file(failing_runs, setup):
    """On a 40 kB tmpfs (in a private mount namespace) the 5 MB report cannot be written."""
    if os.geteuid() != 0:
        pytest.fail("the full-disk test needs root to mount a tmpfs (unshare --mount)")
    root, result = failing_runs
    p = result("full-disk")
    assert p.returncode != 99, f"cannot mount a tmpfs: {p.stderr}"
    one_line_error(p, "cliplab: error: cannot write", "No space left")
    after = root / "disk.after"  # the tmpfs's contents, copied out before the namespace went away
    assert not [f.name for f in after.iterdir() if f.name.startswith(".")], "temp files left behind"
    written = read_outputs(after)
    assert "report.html" not in written
    assert written == {n: setup["new"][n] for n in written}  # whatever was written is complete
