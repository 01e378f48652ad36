"""Resumable batch location over files and folders with a process pool.

Each finished file (success or failure) is appended as one JSON line to a journal beside the
output and flushed; the Parquet file is written from the journal at the end. A killed run
resumes from the journal without redoing or duplicating finished files.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

COLUMNS = ["file", "status", "error_type", "error", "lat", "lon", "continent", "country",
           "admin1", "city", "country_probability", "kind", "duration_s", "time_s",
           "prediction_json"]


def list_inputs(paths: list[Path]) -> list[Path]:
    """Files given, and every non-hidden file under the folders given, sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file()
                              and not any(part.startswith(".") for part in f.relative_to(p).parts)))
        else:
            out.append(p)
    seen: set[str] = set()
    uniq = []
    for f in out:
        k = str(f.resolve())
        if k not in seen:
            seen.add(k)
            uniq.append(f)
    return uniq


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + ".journal.jsonl")


def iter_journal(path: Path) -> Iterator[Any]:
    """Records of a JSON-lines journal; a torn last line (killed mid-write) is skipped."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """Finished rows by resolved file path."""
    return {row["file"]: row for row in iter_journal(path)}


def _row_for(file: str, engines: list[str], use_metadata: bool, top_k: int) -> dict[str, Any]:
    from avgeo.errors import AvgeoError
    from avgeo.pipeline import locate

    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row["file"] = file
    t0 = time.perf_counter()
    try:
        pred = locate(file, engines=engines, use_metadata=use_metadata, top_k=top_k,
                      explain=False)
    except AvgeoError as exc:
        row.update(status="error", error_type=type(exc).__name__, error=exc.one_line())
    except Exception as exc:  # a bug on one file must not stop the batch
        row.update(status="error", error_type="InternalError",
                   error=f"internal error: {type(exc).__name__}: {exc}"[:500])
    else:
        levels = {c.level: c for c in pred.chain}
        row.update(status="ok", lat=pred.lat, lon=pred.lon, kind=pred.kind,
                   duration_s=pred.duration_s,
                   continent=levels["continent"].code if "continent" in levels else None,
                   country=levels["country"].code if "country" in levels else None,
                   country_probability=(levels["country"].probability
                                        if "country" in levels else None),
                   admin1=levels["admin1"].name if "admin1" in levels else None,
                   city=levels["city"].name if "city" in levels else None,
                   prediction_json=pred.model_dump_json())
    row["time_s"] = round(time.perf_counter() - t0, 4)
    return row


def _worker_init() -> None:
    # Workers share the CPU: one thread each avoids oversubscription.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def write_parquet(rows: list[dict[str, Any]], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(rows, key=lambda r: r["file"])
    schema = pa.schema([
        ("file", pa.string()), ("status", pa.string()), ("error_type", pa.string()),
        ("error", pa.string()), ("lat", pa.float64()), ("lon", pa.float64()),
        ("continent", pa.string()), ("country", pa.string()), ("admin1", pa.string()),
        ("city", pa.string()), ("country_probability", pa.float64()), ("kind", pa.string()),
        ("duration_s", pa.float64()), ("time_s", pa.float64()), ("prediction_json", pa.string()),
    ])
    table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=schema)
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, out)


def run_batch(paths: list[Path], out: Path, engines: list[str], use_metadata: bool = True,
              top_k: int = 5, workers: int = 0, progress: bool = True) -> dict[str, int]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = [str(f.resolve()) for f in list_inputs(paths)]
    jpath = journal_path(out)
    done = read_journal(jpath)
    if out.exists() and not jpath.exists():
        # A finished earlier run: its rows count as done.
        import pyarrow.parquet as pq

        for r in pq.read_table(out).to_pylist():
            done[r["file"]] = r
    todo = [f for f in files if f not in done]
    skipped = len(files) - len(todo)
    n_workers = workers or min(4, os.cpu_count() or 1)
    counts = {"ok": 0, "failed": 0, "skipped": skipped}
    with open(jpath, "a", encoding="utf-8") as journal, Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), transient=True, disable=not progress,
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("locating", total=len(todo))

        def record(row: dict[str, Any]) -> None:
            journal.write(json.dumps(row) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
            done[row["file"]] = row
            counts["ok" if row["status"] == "ok" else "failed"] += 1
            if row["status"] != "ok":
                print(f"{row['file']}: {row['error']}", file=sys.stderr)
            bar.advance(task)

        if n_workers <= 1 or len(todo) <= 1:
            for f in todo:
                record(_row_for(f, engines, use_metadata, top_k))
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(n_workers, mp_context=ctx,
                                     initializer=_worker_init) as pool:
                pending = {pool.submit(_row_for, f, engines, use_metadata, top_k)
                           for f in todo[: n_workers * 2]}
                queue = iter(todo[n_workers * 2:])
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        record(fut.result())
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending.add(pool.submit(_row_for, nxt, engines, use_metadata, top_k))
    keep = set(files) | set(done)
    write_parquet([r for k, r in done.items() if k in keep], out)
    jpath.unlink(missing_ok=True)
    return counts
