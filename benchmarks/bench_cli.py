"""How fast the command line answers: time to the first stderr line of a bad-input error, and
to the whole output of the commands that must be instant, each in a fresh process (median of
--repeat runs). The imports the old CLI paid before any check are timed alongside, in the same
run, so the ratios hold on a loaded machine.

    .venv/bin/python benchmarks/bench_cli.py [--repeat 5] [--before /path/to/older/checkout]

``--before`` times the same rows with another source tree first on the path (the CLI before
this change), in the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "cliplab.cli"]
TARGETS = {"error": 1.0, "models": 2.0}  # seconds (issue 14)


def first_line_seconds(argv: list[str], cwd: Path, stream: str, source: str | None) -> float:
    """Seconds from start to the first line on ``stream`` (or to the exit when it prints none)."""
    env = {**os.environ, "PYTHONPATH": source} if source else None
    start = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = (p.stderr if stream == "stderr" else p.stdout).readline()  # type: ignore[union-attr]
    seconds = time.perf_counter() - start
    p.communicate()
    if not line:
        seconds = time.perf_counter() - start
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per row (the median is shown)")
    ap.add_argument("--before", help="another cliplab source tree to time the same rows with")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    from cliplab.synth import SynthConfig, synthesize

    manifest = synthesize(work / "data", SynthConfig(n=240, seed=0))
    zs = ["zeroshot", "--model", "cliplab-tiny", "--random-init", "--classes", "kite,guitar", "--out", "o"]
    rows = [
        ("error: --images file missing", "error", [*CLI, *zs, "--images", "nope.csv"], "stderr"),
        ("error: --where value typo (240-row manifest)", "error",
         [*CLI, *zs, "--images", str(manifest), "--where", "split=tset"], "stderr"),
        ("error: --pretrained typo", "error", [*CLI, "zeroshot", "--pretrained", "demo-out/runn", "--images",
                                               str(manifest), "--classes", "a,b", "--out", "o"], "stderr"),
        ("error: misspelt option", "error", [*CLI, "audit", "--lables", "x"], "stderr"),
        ("cliplab models", "models", [*CLI, "models"], "stdout"),
        ("cliplab models --json", "models", [*CLI, "models", "--json"], "stdout"),
        ("cliplab --version", "models", [*CLI, "--version"], "stdout"),
        ("reference: python -c 'import torch'", None, [sys.executable, "-c", "import torch"], "stdout"),
        ("reference: python -c 'import open_clip'", None, [sys.executable, "-c", "import open_clip"], "stdout"),
    ]
    print(f"cliplab CLI latency, median of {args.repeat} fresh processes; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'what':<48} {'seconds':>8} {'target':>7}  ok" + (f"  {'before':>7}" if args.before else ""))
    median = lambda argv, stream, source: statistics.median(first_line_seconds(argv, work, stream, source)
                                                            for _ in range(args.repeat))
    for name, kind, argv, stream in rows:
        t = median(argv, stream, None)
        target = TARGETS.get(kind or "")
        ok = "" if target is None else ("yes" if t < target else "NO")
        line = f"{name:<48} {t:>8.2f} {'' if target is None else f'< {target:.0f} s':>7}  {ok:>3}"
        if args.before and kind and "--json" not in argv:  # the older CLI has neither --json nor --random-init
            line += f"  {median([a for a in argv if a != '--random-init'], stream, args.before):>7.2f}"
        print(line)

if __name__ == "__main__":
    main()
