"""Metrics log of a run: a CSV (step, wall time, loss, any scalars; always) plus TensorBoard
event files when the `tensorboard` package imports; resuming drops rows past the checkpoint."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CSV_NAME = "metrics.csv"
#: Columns every row starts with; scalars follow in the order first seen.
FIXED = ("step", "wall_s")


def tensorboard_available() -> bool:
    """Whether torch.utils.tensorboard can write (it needs the `tensorboard` package)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:
        return False
    return True


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return str(v)


class MetricsLog:
    """Append rows of scalars to `run_dir`/metrics.csv (and TensorBoard events).

    `resume_step`: keep only rows with step ≤ it (the run restarts from that checkpoint).
    `wall_offset`: seconds already spent before this process (for wall_s across resumes).
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True,
                 resume_step: int | None = None, wall_offset: float = 0.0) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / CSV_NAME
        self._t0 = time.monotonic() - wall_offset
        self.columns: list[str] = list(FIXED)
        rows: list[dict[str, str]] = []
        if resume_step is None:
            # A fresh run replaces the folder's log: stale TensorBoard events would mix in.
            for old in self.dir.glob("events.out.tfevents.*"):
                old.unlink()
        elif self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                self.columns = list(reader.fieldnames or FIXED)
                rows = [r for r in reader if _step(r) <= resume_step]
        self._fh = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, restval="")
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._fh.flush()
        self.tb = None
        if tensorboard and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events a crashed run wrote past the checkpoint.
            self.tb = SummaryWriter(str(self.dir),
                                    purge_step=None if resume_step is None else resume_step + 1)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def log(self, step: int, scalars: Mapping[str, float] | None = None, **more: float) -> None:
        """One row: step, wall_s (seconds since the run began) and the given scalars."""
        values = {**(scalars or {}), **more}
        new = [k for k in values if k not in self.columns]
        if new:
            self._widen(new)
        row = {"step": int(step), "wall_s": round(self.elapsed, 3)}
        row.update({k: _fmt(float(v)) if not isinstance(v, str) else v
                    for k, v in values.items()})
        self._writer.writerow(row)
        self._fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                if not isinstance(v, str):
                    self.tb.add_scalar(k, float(v), int(step))

    def _widen(self, new: list[str]) -> None:
        # A scalar seen for the first time: rewrite the (small) file under the wider header.
        self._fh.close()
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        self.columns += new
        self._fh = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, restval="")
        self._writer.writeheader()
        self._writer.writerows(rows)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _step(row: Mapping[str, str]) -> int:
    try:
        return int(row.get("step") or 0)
    except ValueError:
        return 0


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.csv (or of the one in a run dir), numbers as floats, step as int."""
    p = Path(path)
    if p.is_dir():
        p = p / CSV_NAME
    out = []
    with open(p, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if v in ("", None):
                    continue
                try:
                    row[k] = int(v) if k == "step" else float(v)
                except ValueError:
                    row[k] = v
            out.append(row)
    return out
