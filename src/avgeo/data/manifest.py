"""Read a located-media manifest (CSV or Parquet): file paths, lat/lon, optional country.

Relative paths resolve against the manifest's folder (URIs such as https://... are kept as
they are). Column names match case-insensitively; `path` is accepted for `file`. Parquet
manifests written by `avgeo dataset build` carry a schema version (see `avgeo.data.schema`);
a newer version than this code knows is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from avgeo.errors import TableError


def read_manifest(path: str | Path, require_location: bool = False) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise TableError(f"manifest {path} not found", "check the path")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise TableError(f"cannot read manifest {path}: {exc}",
                         "pass a CSV or Parquet file with columns file, lat, lon") from exc
    from avgeo.data.schema import manifest_schema_version

    manifest_schema_version(path)
    cols = {c.lower().strip(): c for c in df.columns}
    fcol = cols.get("file") or cols.get("path")
    if fcol is None:
        raise TableError(f"manifest {path} has no 'file' column",
                         "add a column 'file' with media paths")
    out = pd.DataFrame({"file": [_resolve(path, str(f)) for f in df[fcol]]})
    for name in ("lat", "lon"):
        c = cols.get(name)
        if c is None:
            if require_location:
                raise TableError(f"manifest {path} has no '{name}' column",
                                 "add lat and lon columns in decimal degrees")
            out[name] = np.nan
            continue
        raw = df[c]
        vals = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
        given = raw.notna() & raw.astype(str).str.strip().ne("")
        bad = given & vals.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
            raise TableError(f"{path}: row {row}, column {name}: not a number "
                             f"({df[c].iloc[row - 1]!r})", "fix the value or leave it empty")
        lim = 90.0 if name == "lat" else 180.0
        oob = vals.abs() > lim
        if oob.any():
            row = int(np.flatnonzero(oob.to_numpy())[0]) + 1
            raise TableError(f"{path}: row {row}, column {name}: {vals.iloc[row - 1]} is out of "
                             f"range ±{lim:g}", "use decimal degrees")
        out[name] = vals.astype(float)
    for extra in ("country", "kind", "split", "admin1", "recordist", "capture_time", "source",
                  "licence", "sha256"):
        if extra in cols:
            out[extra] = df[cols[extra]].fillna("").astype(str)
    return out


def _resolve(manifest: Path, f: str) -> str:
    if "://" in f or Path(f).is_absolute():
        return f
    return str((manifest.parent / f).resolve())
