"""Run logs (rank 0 only): RUN/metrics.csv, TensorBoard events, RUN/train.log and the console.

metrics.csv has one row per logged step with fixed columns (evaluation columns are blank on
steps without an evaluation). On resume, rows after the checkpoint's step are dropped first,
so a run killed after logging past its last checkpoint never ends up with a step twice.
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from ..atomic import write_text
from ..errors import OutputError

TRAIN_COLUMNS = ["step", "epoch", "lr", "loss", "logit_scale", "samples_per_s", "elapsed_s"]
EVAL_COLUMNS = ["zeroshot_acc1", "zeroshot_acc5", "zeroshot_mean_per_class_recall",
                "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"]
COLUMNS = TRAIN_COLUMNS + EVAL_COLUMNS


class RunLog:
    """Appends metric rows and log lines; no-op methods on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None, tensorboard: bool):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.csv"
        self.log_path = Path(run_dir) / "train.log"
        self.writer = None
        self.start = time.time()
        self.elapsed_before = 0.0
        if not enabled:
            return
        self._prepare_csv(resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"),
                                        purge_step=(resume_step + 1) if resume_step else None)

    def _prepare_csv(self, resume_step: int | None) -> None:
        """A fresh file with a header, or (on resume) the old rows up to ``resume_step``."""
        rows: list[dict] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
            if rows and rows[-1].get("elapsed_s"):
                self.elapsed_before = float(rows[-1]["elapsed_s"])
        lines = [",".join(COLUMNS)] + [",".join(r.get(c, "") or "" for c in COLUMNS) for r in rows]
        write_text(self.path, "\n".join(lines) + "\n")

    def elapsed(self) -> float:
        """Training seconds so far, including the time of the run before a resume."""
        return self.elapsed_before + time.time() - self.start

    def row(self, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        values = dict(values, elapsed_s=round(self.elapsed(), 2))
        try:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow([_fmt(values.get(c)) for c in COLUMNS])
        except OSError as e:
            raise OutputError(f"cannot append to {self.path}: {e.strerror or e}") from None
        if self.writer is not None:
            step = int(values["step"])
            for k, v in values.items():
                if k not in ("step", "epoch", "elapsed_s") and v is not None:
                    self.writer.add_scalar(("eval/" if k in EVAL_COLUMNS else "train/") + k, v, step)

    def line(self, message: str) -> None:
        """One line to stderr and RUN/train.log."""
        if not self.enabled:
            return
        print(message, file=sys.stderr, flush=True)
        try:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        except OSError:
            pass  # the console copy was printed; a log file that cannot be written is not fatal

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
