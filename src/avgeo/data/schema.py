"""Versioned Parquet schemas: the dataset manifest and the atom/file shards of `avgeo extract`.

Manifest (schema version in the Parquet key-value metadata under `avgeo.schema` and
`avgeo.schema_version`), one row per media item:

| column       | type    | meaning                                                         |
|--------------|---------|-----------------------------------------------------------------|
| file         | string  | path (absolute, or relative to the manifest's folder) or URI    |
| kind         | string  | photo, audio, video, or '' when not known yet                   |
| lat, lon     | float64 | WGS84 decimal degrees of the capture place; null when unknown    |
| capture_time | string  | ISO 8601 (UTC when known, else as given), '' when unknown       |
| country      | string  | ISO 3166-1 alpha-2; from the source or by reverse geocoding      |
| admin1       | string  | first-level subdivision name (GeoNames), by reverse geocoding    |
| source       | string  | where the row came from (folder, inaturalist, xeno-canto, ...)   |
| licence      | string  | the item's licence as the source states it                      |
| split        | string  | train / val / test, or '' before `avgeo dataset split`           |
| recordist    | string  | recordist or uploader where known (split grouping key)          |
| sha256       | string  | content hash of local files, '' for URIs                        |

Extra columns from the source (species, ids, ...) are kept after these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from avgeo.errors import TableError

MANIFEST_SCHEMA_NAME = "avgeo.manifest"
MANIFEST_SCHEMA_VERSION = 1
SHARD_SCHEMA_NAME = "avgeo.extract"
SHARD_SCHEMA_VERSION = 1

MANIFEST_COLUMNS: dict[str, pa.DataType] = {
    "file": pa.string(), "kind": pa.string(), "lat": pa.float64(), "lon": pa.float64(),
    "capture_time": pa.string(), "country": pa.string(), "admin1": pa.string(),
    "source": pa.string(), "licence": pa.string(), "split": pa.string(),
    "recordist": pa.string(), "sha256": pa.string(),
}
_FLOAT_COLUMNS = ("lat", "lon")

#: One row per atom in `atoms-NNNNN.parquet`.
ATOM_COLUMNS: dict[str, pa.DataType] = {
    "row": pa.int64(), "file": pa.string(), "engine": pa.string(), "kind": pa.string(),
    "name": pa.string(), "group": pa.string(), "evidence": pa.string(),
    "confidence": pa.float64(), "start_s": pa.float64(), "end_s": pa.float64(),
    "value_json": pa.string(), "likelihood_json": pa.string(),
}
#: One row per manifest row in `files-NNNNN.parquet` (the truth columns are copied along).
FILE_COLUMNS: dict[str, pa.DataType] = {
    "row": pa.int64(), "file": pa.string(), "status": pa.string(), "error_type": pa.string(),
    "error": pa.string(), "kind": pa.string(), "duration_s": pa.float64(),
    "n_atoms": pa.int64(), "engines_used": pa.string(), "engines_skipped_json": pa.string(),
    "lat": pa.float64(), "lon": pa.float64(), "country": pa.string(), "admin1": pa.string(),
    "split": pa.string(), "time_s": pa.float64(),
}
#: Columns of the files table that vary from run to run (wall time); everything else in a
#: shard is a pure function of the manifest rows, the engines and the options.
NONDETERMINISTIC_FILE_COLUMNS = ("time_s",)
#: One row per analysed window in `embeddings-NNNNN.parquet` (only with --embeddings).
EMBEDDING_COLUMNS: dict[str, pa.DataType] = {
    "row": pa.int64(), "file": pa.string(), "engine": pa.string(), "start_s": pa.float64(),
    "end_s": pa.float64(), "vector": pa.list_(pa.float32()),
}


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and v != v) else str(v)


def empty_manifest() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c in _FLOAT_COLUMNS else "object")
                         for c in MANIFEST_COLUMNS})


def normalise_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """Schema columns first (missing ones added empty, typed), extra columns after as text."""
    out = pd.DataFrame(index=range(len(df)))
    df = df.reset_index(drop=True)
    for c in MANIFEST_COLUMNS:
        if c in _FLOAT_COLUMNS:
            out[c] = (pd.to_numeric(df[c], errors="coerce") if c in df
                      else pd.Series(float("nan"), index=out.index)).astype("float64")
        else:
            out[c] = (df[c].map(_text) if c in df
                      else pd.Series("", index=out.index)).astype(object)
    for c in df.columns:
        if c not in MANIFEST_COLUMNS:
            out[c] = df[c].map(_text).astype(object)
    return out


def manifest_table(df: pd.DataFrame, extra_meta: dict[str, Any] | None = None) -> pa.Table:
    df = normalise_manifest(df)
    fields = [pa.field(c, MANIFEST_COLUMNS.get(c, pa.string())) for c in df.columns]
    meta = {"avgeo.schema": MANIFEST_SCHEMA_NAME,
            "avgeo.schema_version": str(MANIFEST_SCHEMA_VERSION)}
    if extra_meta:
        meta["avgeo.build"] = json.dumps(extra_meta, sort_keys=True, default=str)
    schema = pa.schema(fields, metadata=meta)
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def atomic_write_table(table: pa.Table, out: Path) -> None:
    """Write via a temporary file and rename, so a killed run never leaves half a file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)


def write_manifest(df: pd.DataFrame, out: str | Path,
                   extra_meta: dict[str, Any] | None = None) -> Path:
    out = Path(out)
    if out.suffix.lower() == ".csv":
        normalise_manifest(df).to_csv(out, index=False)
    else:
        atomic_write_table(manifest_table(df, extra_meta), out)
    return out


def manifest_schema_version(path: str | Path) -> int | None:
    """The schema version a Parquet manifest declares (None for CSV or foreign Parquet)."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".pq"):
        return None
    meta = pq.read_schema(path).metadata or {}
    v = meta.get(b"avgeo.schema_version")
    if v is None:
        return None
    try:
        version = int(v)
    except ValueError as exc:
        raise TableError(f"{path}: bad schema version {v!r}") from exc
    if version > MANIFEST_SCHEMA_VERSION:
        raise TableError(f"{path}: manifest schema version {version} is newer than this "
                         f"avgeo understands ({MANIFEST_SCHEMA_VERSION})", "upgrade avgeo")
    return version


def table_of(rows: list[dict[str, Any]], columns: dict[str, pa.DataType],
             meta: dict[str, str] | None = None) -> pa.Table:
    schema = pa.schema([pa.field(c, t) for c, t in columns.items()], metadata=meta)
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)
