"""Atom extraction at scale: every manifest row → atoms (and optional BirdNET embeddings) in
sharded Parquet, on a local process pool or a Ray cluster, resumable after a kill.

Layout of the output folder:

* `extract.json`: the run's configuration (engines, metadata on/off, shard size, a hash of
  the manifest's file list); a resumed run with other settings is refused.
* `files-NNNNN.parquet`: one row per manifest row of shard NNNNN (status, error, kind,
  duration, engines used/skipped, the manifest's truth columns, wall time).
* `atoms-NNNNN.parquet`: one row per atom (file, engine, kind, name, evidence, confidence,
  start_s, end_s, value_json, likelihood_json). `likelihood_json` holds the full parameters
  (`{"class": ..., "params": ..., "describe": ...}`), enough to rebuild the likelihood exactly
  (`atom_from_row`), so that fusion can be re-run on any subset of atoms without perception.
* `embeddings-NNNNN.parquet`: only with `embeddings=True` (BirdNET 1024-d per 3 s window).

Shard k holds manifest rows [k·shard_size, (k+1)·shard_size): assignment depends on row
order only, so the serial, process-pool and Ray executors write identical shards (all
columns except `files.time_s`, the wall time). Resumption works at file granularity: each
finished file is appended to `.journal-NNNNN.jsonl` (flushed and fsynced); a shard whose
files are all journalled is written (atoms, embeddings, then files last, each via a
temporary file and an atomic rename) and its journal removed. A shard counts as done when
its `files-NNNNN.parquet` exists, so a kill at any moment loses at most the files in
flight and never duplicates a row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avgeo.atoms import Atom
from avgeo.data.batch import iter_journal
from avgeo.data.schema import (
    ATOM_COLUMNS,
    EMBEDDING_COLUMNS,
    FILE_COLUMNS,
    SHARD_SCHEMA_NAME,
    SHARD_SCHEMA_VERSION,
    atomic_write_table,
    table_of,
)
from avgeo.errors import BackboneMissingError, ConfigError, TableError

DEFAULT_SHARD_SIZE = 256
CONFIG_NAME = "extract.json"
#: Ray is an optional extra; this is what a user without it is told.
RAY_HINT = "install Ray (`pip install 'ray>=2.9'`, Apache-2.0) or leave out --ray to use " \
           "the local process pool"


# --------------------------------------------------------------------------- JSON codecs


def json_default(obj: Any) -> Any:
    """JSON for values atoms carry: datetimes as ISO text, numpy as Python, sets sorted."""
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


def _encode(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.dtype.str, "shape": list(v.shape), "data": v.ravel().tolist()}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _encode(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_encode(x) for x in v]
    if isinstance(v, datetime | date):
        return v.isoformat()
    return v


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        if "__ndarray__" in v:
            return np.asarray(v["data"], dtype=np.dtype(v["__ndarray__"])).reshape(v["shape"])
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def likelihood_to_json(lik: Any) -> str | None:
    """Full, reversible JSON of a likelihood dataclass (private `_fields` are caches)."""
    if lik is None:
        return None
    cls = type(lik)
    doc: dict[str, Any] = {"class": f"{cls.__module__}:{cls.__qualname__}",
                           "describe": _encode(lik.describe())}
    if dataclasses.is_dataclass(lik):
        doc["params"] = {f.name: _encode(getattr(lik, f.name)) for f in dataclasses.fields(lik)
                         if f.init and not f.name.startswith("_")}
    return json.dumps(doc, sort_keys=True, default=json_default)


def likelihood_from_json(text: str | None) -> Any:
    """Rebuild a likelihood written by `likelihood_to_json`. Only avgeo classes are loaded
    (a data folder must not be able to name arbitrary code)."""
    if not isinstance(text, str) or not text:
        return None
    doc = json.loads(text)
    mod_name, _, qual = str(doc.get("class", "")).partition(":")
    if not (mod_name == "avgeo" or mod_name.startswith("avgeo.")) or "params" not in doc:
        raise TableError(f"cannot rebuild likelihood {doc.get('class')!r}",
                         "re-run `avgeo extract` with this avgeo version")
    obj: Any = importlib.import_module(mod_name)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj(**{k: _decode(v) for k, v in doc["params"].items()})


def atom_to_row(atom: Atom, row: int, file: str) -> dict[str, Any]:
    return {"row": row, "file": file, "engine": atom.engine, "kind": atom.kind,
            "name": atom.name, "group": atom.group, "evidence": atom.evidence,
            "confidence": float(atom.confidence),
            "start_s": None if atom.start_s is None else float(atom.start_s),
            "end_s": None if atom.end_s is None else float(atom.end_s),
            "value_json": json.dumps(atom.value or {}, sort_keys=True, default=json_default),
            "likelihood_json": likelihood_to_json(atom.likelihood)}


def atom_from_row(r: dict[str, Any]) -> Atom:
    def num(x: Any) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    return Atom(name=r["name"], engine=r["engine"], kind=r["kind"], evidence=r["evidence"],
                confidence=float(r["confidence"]), start_s=num(r.get("start_s")),
                end_s=num(r.get("end_s")), value=json.loads(r.get("value_json") or "{}"),
                likelihood=likelihood_from_json(r.get("likelihood_json")),
                group=r.get("group") or None)


# --------------------------------------------------------------------------- one file


def extract_one(row: int, file: str, engines: list[str], use_metadata: bool,
                embeddings: bool = False) -> dict[str, Any]:
    """Perception for one manifest row; never raises (errors become the row's status)."""
    from avgeo.errors import AvgeoError
    from avgeo.pipeline import extract_atoms

    t0 = time.perf_counter()
    rec: dict[str, Any] = {"row": row, "file": file, "status": "ok", "error_type": None,
                           "error": None, "kind": None, "duration_s": None, "n_atoms": 0,
                           "engines_used": "", "engines_skipped_json": "[]"}
    atoms_out: list[dict[str, Any]] = []
    emb_out: list[dict[str, Any]] = []
    try:
        if "://" in file:
            raise TableError(f"{file} is a URI", "download the files and build the manifest "
                             "from the local folder")
        media, atoms, report, _ctx = extract_atoms(file, engines, use_metadata)
        rec.update(kind=media.kind, duration_s=media.duration_s, n_atoms=len(atoms),
                   engines_used=",".join(report.used),
                   engines_skipped_json=json.dumps([s.model_dump() for s in report.skipped]))
        atoms_out = [atom_to_row(a, row, file) for a in atoms]
        if embeddings and media.kind in ("audio", "video") and "birdnet" in report.used:
            from avgeo.perception.audio import birdnet

            starts, vecs = birdnet.embed(media)
            emb_out = [{"row": row, "file": file, "engine": "birdnet", "start_s": float(s),
                        "end_s": float(s) + birdnet.WINDOW_S,
                        "vector": np.asarray(v, dtype=np.float32).tolist()}
                       for s, v in zip(starts, vecs, strict=True)]
    except AvgeoError as exc:
        rec.update(status="error", error_type=type(exc).__name__, error=exc.one_line())
        atoms_out, emb_out = [], []
    except Exception as exc:  # a bug on one file must not stop the run
        rec.update(status="error", error_type="InternalError",
                   error=f"internal error: {type(exc).__name__}: {exc}"[:500])
        atoms_out, emb_out = [], []
    rec["time_s"] = round(time.perf_counter() - t0, 4)
    return {"file_row": rec, "atoms": atoms_out, "embeddings": emb_out}


def _worker_init() -> None:
    from avgeo.data.batch import _worker_init as init

    init()


# --------------------------------------------------------------------------- executors

Task = tuple[int, str]  # (manifest row, file)


def _serial(tasks: list[Task], args: tuple) -> Iterator[dict[str, Any]]:
    for row, file in tasks:
        yield extract_one(row, file, *args)


def _pool(tasks: list[Task], args: tuple, workers: int) -> Iterator[dict[str, Any]]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                             initializer=_worker_init) as pool:
        queue = iter(tasks)
        pending = {pool.submit(extract_one, r, f, *args)
                   for r, f in (next(queue) for _ in range(min(len(tasks), workers * 2)))}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(extract_one, nxt[0], nxt[1], *args))


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise BackboneMissingError("--ray needs the optional package 'ray', which is not "
                                   "installed", RAY_HINT) from exc
    return ray


def _ray(tasks: list[Task], args: tuple, workers: int, address: str | None
         ) -> Iterator[dict[str, Any]]:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, workers), include_dashboard=False,
                         log_to_driver=False)
        except Exception as exc:
            where = address or "a local Ray instance"
            raise BackboneMissingError(f"cannot start or reach {where}: "
                                       f"{type(exc).__name__}: {exc}"[:300], RAY_HINT) from exc
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=2)(extract_one)
        window = max(2, 2 * int(ray.cluster_resources().get("CPU", workers or 1)))
        queue = iter(tasks)
        pending = [remote.remote(r, f, *args)
                   for r, f in (next(queue) for _ in range(min(len(tasks), window)))]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append(remote.remote(nxt[0], nxt[1], *args))
    finally:
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------- shards


def shard_name(kind: str, shard: int) -> str:
    return f"{kind}-{shard:05d}.parquet"


def journal_of(out: Path, shard: int) -> Path:
    return out / f".journal-{shard:05d}.jsonl"


def read_shard_journal(path: Path) -> dict[int, dict[str, Any]]:
    """Journalled results by manifest row; a torn last line (killed mid-write) is ignored."""
    return {int(rec["file_row"]["row"]): rec for rec in iter_journal(path)
            if isinstance(rec, dict) and "file_row" in rec}


def _write_shard(out: Path, shard: int, results: dict[int, dict[str, Any]],
                 truth: dict[int, dict[str, Any]], meta: dict[str, str],
                 embeddings: bool) -> None:
    rows = sorted(results)
    atoms = [a for r in rows for a in results[r]["atoms"]]
    files = [{**results[r]["file_row"], **truth[r]} for r in rows]
    atomic_write_table(table_of(atoms, ATOM_COLUMNS, meta), out / shard_name("atoms", shard))
    if embeddings:
        emb = [e for r in rows for e in results[r]["embeddings"]]
        atomic_write_table(table_of(emb, EMBEDDING_COLUMNS, meta),
                           out / shard_name("embeddings", shard))
    # The files table is written last: its presence marks the shard complete.
    atomic_write_table(table_of(files, FILE_COLUMNS, meta), out / shard_name("files", shard))
    journal_of(out, shard).unlink(missing_ok=True)


def _truth(df: pd.DataFrame) -> dict[int, dict[str, Any]]:
    out = {}
    cols = ("lat", "lon", "country", "admin1", "split")
    for i, r in enumerate(df.to_dict("records")):
        t: dict[str, Any] = {}
        for c in cols:
            v = r.get(c)
            if c in ("lat", "lon"):
                t[c] = None if v is None or (isinstance(v, float) and math.isnan(v)) \
                    else float(v)
            else:
                t[c] = None if v is None or (isinstance(v, float) and math.isnan(v)) \
                    else str(v)
        out[i] = t
    return out


def _config(files: list[str], engines: list[str], use_metadata: bool, shard_size: int,
            embeddings: bool) -> dict[str, Any]:
    h = hashlib.sha256("\n".join(files).encode()).hexdigest()
    return {"schema": SHARD_SCHEMA_NAME, "schema_version": SHARD_SCHEMA_VERSION,
            "engines": engines, "use_metadata": use_metadata, "shard_size": shard_size,
            "embeddings": embeddings, "n_rows": len(files), "manifest_files_sha256": h}


def run_extract(manifest: str | Path | pd.DataFrame, out: str | Path,
                engines: str | Iterable[str] | None = None, use_metadata: bool = True,
                workers: int = 0, ray_address: str | None = None, use_ray: bool = False,
                shard_size: int = DEFAULT_SHARD_SIZE, embeddings: bool = False,
                progress: bool = True
                ) -> dict[str, int]:
    """Extract atoms for every manifest row into `out`; returns counts
    {ok, failed, skipped (already done), shards}."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from avgeo.data.manifest import read_manifest
    from avgeo.pipeline import parse_engines

    if shard_size < 1:
        raise ConfigError(f"--shard-size must be at least 1, got {shard_size}")
    df = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    df = df.reset_index(drop=True)
    files = [str(f) for f in df["file"]]
    names = parse_engines(engines)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _config(files, names, use_metadata, shard_size, embeddings)
    cfg_path = out / CONFIG_NAME
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != cfg:
            diff = sorted(k for k in cfg if old.get(k) != cfg[k])
            raise ConfigError(f"{out} holds an extraction with other settings "
                              f"({', '.join(diff)} differ)",
                              "pass a new --out folder, or the same manifest and options")
    else:
        tmp = cfg_path.with_name(cfg_path.name + ".tmp")
        tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, cfg_path)

    n_shards = max(1, math.ceil(len(files) / shard_size)) if files else 0
    truth = _truth(df)
    meta = {"avgeo.schema": SHARD_SCHEMA_NAME, "avgeo.schema_version": str(SHARD_SCHEMA_VERSION),
            "avgeo.engines": ",".join(names), "avgeo.use_metadata": str(use_metadata).lower()}
    results: dict[int, dict[int, dict[str, Any]]] = {}
    todo: list[Task] = []
    skipped = 0
    for s in range(n_shards):
        rows = range(s * shard_size, min(len(files), (s + 1) * shard_size))
        if (out / shard_name("files", s)).exists():
            skipped += len(rows)
            continue
        done = {r: v for r, v in read_shard_journal(journal_of(out, s)).items() if r in rows}
        results[s] = done
        skipped += len(done)
        if len(done) == len(rows):
            _write_shard(out, s, done, {r: truth[r] for r in rows}, meta, embeddings)
            continue
        todo.extend((r, files[r]) for r in rows if r not in done)

    args = (names, use_metadata, embeddings)
    n_workers = workers or min(4, os.cpu_count() or 1)
    if use_ray or ray_address:
        stream = _ray(todo, args, n_workers, ray_address)
    elif n_workers <= 1 or len(todo) <= 1:
        stream = _serial(todo, args)
    else:
        stream = _pool(todo, args, n_workers)

    counts = {"ok": 0, "failed": 0, "skipped": skipped, "shards": n_shards}
    journals: dict[int, Any] = {}
    try:
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
                      disable=not progress, console=Console(stderr=True)) as bar:
            task = bar.add_task("extracting", total=len(todo))
            for res in stream:
                row = int(res["file_row"]["row"])
                s = row // shard_size
                fh = journals.get(s)
                if fh is None:
                    fh = journals[s] = open(journal_of(out, s), "a", encoding="utf-8")  # noqa: SIM115
                fh.write(json.dumps(res, default=json_default) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                results[s][row] = res
                ok = res["file_row"]["status"] == "ok"
                counts["ok" if ok else "failed"] += 1
                if not ok:
                    print(f"{res['file_row']['file']}: {res['file_row']['error']}",
                          file=sys.stderr)
                rows = range(s * shard_size, min(len(files), (s + 1) * shard_size))
                if len(results[s]) == len(rows):
                    journals.pop(s).close()
                    _write_shard(out, s, results[s], {r: truth[r] for r in rows}, meta,
                                 embeddings)
                    del results[s]
                bar.advance(task)
    finally:
        for fh in journals.values():
            fh.close()
    return counts


def shard_paths(data: str | Path, kind: str) -> list[Path]:
    return sorted(Path(data).glob(f"{kind}-*.parquet"))


def read_shards(data: str | Path, kind: str = "atoms") -> pd.DataFrame:
    """All complete shards of one kind (atoms, files, embeddings) as one frame, row order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = shard_paths(data, kind)
    if not paths:
        cols = {"atoms": ATOM_COLUMNS, "files": FILE_COLUMNS,
                "embeddings": EMBEDDING_COLUMNS}[kind]
        return pa.schema(list(cols.items())).empty_table().to_pandas()
    return pa.concat_tables([pq.read_table(p) for p in paths]).to_pandas()


def atoms_by_row(data: str | Path) -> dict[int, list[Atom]]:
    """Rebuilt atoms per manifest row (in extraction order)."""
    import pyarrow.parquet as pq

    out: dict[int, list[Atom]] = {}
    # pyarrow rows keep nulls as None (pandas would turn some into NaN)
    for r in (r for p in shard_paths(data, "atoms") for r in pq.read_table(p).to_pylist()):
        out.setdefault(int(r["row"]), []).append(atom_from_row(r))
    return out
