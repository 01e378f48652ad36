"""Manifest builders: a media folder (+ metadata or a sidecar coordinate CSV), iNaturalist
observation exports, Xeno-canto API JSON, Im2GPS/YFCC metadata CSVs and avgeo result files.

Every builder validates each row; a malformed row raises TableError naming its row number
(1-based data row; for CSV files the line number too), or with `skip_bad` is recorded as a
`Reject` and left out. Countries and admin-1 names are filled by offline reverse geocoding.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avgeo.errors import AvgeoError, TableError

#: Files a media folder may hold beside its media that are not media themselves.
NOT_MEDIA_SUFFIXES = {".csv", ".tsv", ".json", ".jsonl", ".parquet", ".pq", ".md", ".txt",
                      ".sha256", ".py"}
FORMATS = ("folder", "inaturalist", "xeno-canto", "im2gps", "results", "manifest")


@dataclass
class Reject:
    row: int  # 1-based data row (or item) number in the source
    reason: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildResult:
    manifest: pd.DataFrame
    rejects: list[Reject]
    source: str
    fmt: str


class _Bad(Exception):
    """Raised by a row converter: the row cannot become a manifest row, for `reason`."""

    def __init__(self, reason: str, raw: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason, self.raw = reason, raw


class _Rows:
    """Collects good rows; a bad row raises TableError, or is kept aside with skip_bad."""

    def __init__(self, where: str, skip_bad: bool, csv_lines: bool = False) -> None:
        self.where, self.skip_bad, self.csv_lines = where, skip_bad, csv_lines
        self.rows: list[dict[str, Any]] = []
        self.rejects: list[Reject] = []

    def bad(self, row: int, reason: str, raw: dict[str, Any] | None = None) -> None:
        if self.skip_bad:
            self.rejects.append(Reject(row, reason, dict(raw or {})))
            return
        line = f" (line {row + 1})" if self.csv_lines else ""
        raise TableError(f"{self.where}: row {row}{line}: {reason}",
                         "fix or remove the row, or pass --skip-bad to write it to a rejects "
                         "file and go on")

    def collect(self, records: list[Any], convert: Any) -> None:
        """Run `convert(record)` on each record (1-based row numbers); a `_Bad` it raises
        becomes a bad row, with the record itself as the raw row unless it names one."""
        for i, r in enumerate(records, start=1):
            try:
                self.rows.append(convert(r))
            except _Bad as exc:
                self.bad(i, exc.reason, exc.raw if exc.raw is not None else r)


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip()


def parse_latlon(lat: Any, lon: Any) -> tuple[float, float] | str:
    """(lat, lon) as floats, (nan, nan) when both are empty, or the reason they are bad."""
    ts, us = _text(lat), _text(lon)
    if not ts and not us:
        return (math.nan, math.nan)
    if not ts or not us:
        return "only one of latitude/longitude is given"
    try:
        la, lo = float(ts), float(us)
    except ValueError:
        return f"latitude/longitude {ts!r}, {us!r} are not numbers"
    if not (math.isfinite(la) and math.isfinite(lo)):
        return f"latitude/longitude {ts!r}, {us!r} are not finite"
    if abs(la) > 90 or abs(lo) > 180:
        return f"latitude/longitude {la}, {lo} are out of range (±90, ±180)"
    return (la, lo)


def _latlon(lat: Any, lon: Any, prefix: str = "", required: bool = False
            ) -> tuple[float, float]:
    """parse_latlon for converters: a bad (or, if required, missing) pair raises _Bad."""
    ll = parse_latlon(lat, lon)
    if isinstance(ll, str):
        raise _Bad(prefix + ll)
    if required and math.isnan(ll[0]):
        raise _Bad(prefix + "no coordinates (a benchmark row needs them)")
    return ll


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_csv_rows(path: Path, required: tuple[tuple[str, ...], ...]
                   ) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Rows as dicts keyed by lower-case column name, and required name → actual column.

    `required` lists alternatives per needed column (the first present wins)."""
    if not path.is_file():
        raise TableError(f"{path} not found", "check the path")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip().lower(): (v if not isinstance(v, list) else ",".join(v))
                     for k, v in r.items()} for r in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"cannot read {path} as CSV: {exc}", "pass a UTF-8 CSV file") from exc
    found: dict[str, str] = {}
    for alts in required:
        hit = next((a for a in alts if a in header), None)
        if hit is None:
            raise TableError(f"{path} has no column {' or '.join(repr(a) for a in alts)}",
                             f"the header is: {', '.join(header) or '(empty)'}")
        found[alts[0]] = hit
    return rows, found


def _extra(row: dict[str, Any], used: set[str]) -> dict[str, str]:
    return {k: _text(v) for k, v in row.items() if k and k not in used}


# --------------------------------------------------------------------------- folder


def read_coords_csv(path: Path, skip_bad: bool = False) -> tuple[dict[str, dict[str, Any]],
                                                                   list[Reject]]:
    """Sidecar coordinates: columns file, lat, lon (+ extra columns kept), keyed by file."""
    rows, col = _read_csv_rows(path, (("file", "path"), ("lat", "latitude"),
                                      ("lon", "lng", "longitude")))
    out = _Rows(str(path), skip_bad, csv_lines=True)
    by_file: dict[str, dict[str, Any]] = {}

    def convert(r: dict[str, Any]) -> dict[str, Any]:
        f = _text(r.get(col["file"]))
        if not f:
            raise _Bad("empty file name")
        ll = _latlon(r.get(col["lat"]), r.get(col["lon"]))
        if f in by_file:
            raise _Bad(f"file {f!r} is listed twice")
        entry = _extra(r, set(col.values()))
        # every earlier row is either kept or rejected, so this is the 1-based row number
        entry.update(lat=ll[0], lon=ll[1], _row=len(out.rows) + len(out.rejects) + 1)
        by_file[f] = entry
        return entry

    out.collect(rows, convert)
    return by_file, out.rejects


def build_folder(folder: str | Path, coords: str | Path | None = None, skip_bad: bool = False,
                 use_metadata: bool = True) -> BuildResult:
    """One row per media file under `folder`; coordinates from the sidecar CSV (which wins),
    else from the file's metadata (EXIF/QuickTime/GPMF/ID3), else left empty."""
    from avgeo.data.batch import list_inputs
    from avgeo.media import open_media

    folder = Path(folder)
    if not folder.is_dir():
        raise TableError(f"{folder} is not a folder", "pass a folder of media files")
    side: dict[str, dict[str, Any]] = {}
    rejects: list[Reject] = []
    if coords is not None:
        side, rejects = read_coords_csv(Path(coords), skip_bad)
    coords_res = Path(coords).resolve() if coords is not None else None
    files = [f for f in list_inputs([folder]) if f.suffix.lower() not in NOT_MEDIA_SUFFIXES
             and f.resolve() != coords_res]
    out = _Rows(str(folder), skip_bad)
    matched: set[str] = set()
    for i, f in enumerate(files, start=1):
        rel = f.relative_to(folder).as_posix()
        key = rel if rel in side else (f.name if f.name in side else None)
        try:
            media = open_media(f)
        except AvgeoError as exc:
            out.bad(i, f"{rel}: {exc.message}", {"file": rel})
            continue
        row: dict[str, Any] = {"file": str(f.resolve()), "kind": media.kind, "source": "folder",
                               "sha256": sha256_of(f)}
        meta: dict[str, Any] = {}
        if use_metadata:
            try:
                from avgeo.perception.meta.engine import read_metadata

                meta = read_metadata(f, media)
            except AvgeoError:
                meta = {}
        if key is not None:
            matched.add(key)
            entry = dict(side[key])
            entry.pop("_row", None)
            row.update({k: v for k, v in entry.items() if k != "file"})
            row["coords_source"] = "csv"
        elif meta.get("gps"):
            row.update(lat=float(meta["gps"]["lat"]), lon=float(meta["gps"]["lon"]),
                       coords_source=f"metadata:{meta['gps'].get('source', '')}")
        else:
            row.update(lat=math.nan, lon=math.nan, coords_source="")
        row["capture_time"] = _text(row.get("capture_time")) or _text(
            meta.get("capture_time_utc")) or _text(meta.get("capture_time"))
        close = getattr(media, "close", None)
        if callable(close):
            close()
        out.rows.append(row)
    unmatched = _Rows(str(coords), skip_bad, csv_lines=True)
    for name, entry in side.items():
        if name not in matched:
            unmatched.bad(int(entry["_row"]), f"file {name!r} is not in {folder}",
                          {"file": name})
    rejects.extend(unmatched.rejects)
    return BuildResult(pd.DataFrame(out.rows), rejects + out.rejects, str(folder), "folder")


# --------------------------------------------------------------------------- iNaturalist


def build_inaturalist(path: str | Path, media_root: str | Path | None = None,
                      skip_bad: bool = False) -> BuildResult:
    """An iNaturalist observation export (CSV): one row per photo or sound URL."""
    path = Path(path)
    rows, col = _read_csv_rows(path, (("id",), ("latitude", "lat"), ("longitude", "lng", "lon")))
    out = _Rows(str(path), skip_bad, csv_lines=True)
    used = {"id", "observed_on", "time_observed_at", "latitude", "longitude", "lat", "lng",
            "lon", "image_url", "sound_url", "license", "user_login"}

    def convert(r: dict[str, Any]) -> dict[str, Any]:
        oid = _text(r.get("id"))
        if not oid:
            raise _Bad("empty id")
        url = _text(r.get("image_url"))
        kind = "photo"
        if not url:
            url, kind = _text(r.get("sound_url")), "audio"
        if not url:
            raise _Bad("neither image_url nor sound_url is given")
        ll = _latlon(r.get(col["latitude"]), r.get(col["longitude"]))
        file = url
        if media_root is not None:
            name = Path(url.split("?")[0]).name
            file = str(Path(media_root) / f"{oid}_{name}")
        when = _text(r.get("time_observed_at")) or _text(r.get("observed_on"))
        row = {"file": file, "kind": kind, "lat": ll[0], "lon": ll[1], "capture_time": when,
               "source": "inaturalist", "licence": _text(r.get("license")),
               "recordist": _text(r.get("user_login")), "observation_id": oid, "url": url}
        row.update(_extra(r, used))
        return row

    out.collect(rows, convert)
    return BuildResult(pd.DataFrame(out.rows), out.rejects, str(path), "inaturalist")


# --------------------------------------------------------------------------- Xeno-canto


def _xc_url(u: str) -> str:
    return "https:" + u if u.startswith("//") else u


def build_xeno_canto(path: str | Path, media_root: str | Path | None = None,
                     skip_bad: bool = False) -> BuildResult:
    """A Xeno-canto API JSON export ({"recordings": [...]}, or several pages as a list)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path} not found", "check the path")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TableError(f"cannot read {path} as JSON: {exc}",
                         "pass the JSON the Xeno-canto API returns") from exc
    pages = doc if isinstance(doc, list) else [doc]
    recs: list[Any] = []
    for p in pages:
        if not isinstance(p, dict) or not isinstance(p.get("recordings"), list):
            raise TableError(f"{path}: no 'recordings' list",
                             "pass the JSON the Xeno-canto API returns")
        recs.extend(p["recordings"])
    out = _Rows(str(path), skip_bad)
    used = {"id", "lat", "lng", "lon", "file", "file-name", "lic", "rec", "cnt", "date", "time",
            "en", "gen", "sp"}

    def convert(r: Any) -> dict[str, Any]:
        if not isinstance(r, dict):
            raise _Bad("recording is not a JSON object", {"value": str(r)[:200]})
        rid = _text(r.get("id"))
        if not rid:
            raise _Bad("recording has no id")
        ll = _latlon(r.get("lat"), r.get("lng", r.get("lon")), prefix=f"XC{rid}: ")
        url = _xc_url(_text(r.get("file")))
        if not url and media_root is None:
            raise _Bad(f"XC{rid}: no file URL")
        file = url
        if media_root is not None:
            file = str(Path(media_root) / (_text(r.get("file-name")) or f"XC{rid}.mp3"))
        date, time_ = _text(r.get("date")), _text(r.get("time"))
        when = f"{date}T{time_}" if date and time_ and time_[:1].isdigit() else date
        species = " ".join(x for x in (_text(r.get("gen")), _text(r.get("sp"))) if x)
        row = {"file": file, "kind": "audio", "lat": ll[0], "lon": ll[1], "capture_time": when,
               "source": "xeno-canto", "licence": _xc_url(_text(r.get("lic"))),
               "recordist": _text(r.get("rec")), "xc_id": rid, "url": url,
               "country_name": _text(r.get("cnt")), "species": species,
               "common_name": _text(r.get("en"))}
        row.update({k: _text(v) for k, v in r.items() if k not in used
                    and not isinstance(v, dict | list)})
        return row

    out.collect(recs, convert)
    return BuildResult(pd.DataFrame(out.rows), out.rejects, str(path), "xeno-canto")


# --------------------------------------------------------------------------- Im2GPS / YFCC


def build_im2gps(path: str | Path, image_dir: str | Path | None = None,
                 skip_bad: bool = False) -> BuildResult:
    """Im2GPS3k / YFCC-style metadata CSV: IMG_ID, LAT, LON, AUTHOR (+ extra columns)."""
    path = Path(path)
    rows, col = _read_csv_rows(path, (("img_id", "image_id", "id"), ("lat", "latitude"),
                                      ("lon", "lng", "longitude")))
    out = _Rows(str(path), skip_bad, csv_lines=True)
    used = set(col.values()) | {"author"}

    def convert(r: dict[str, Any]) -> dict[str, Any]:
        img = _text(r.get(col["img_id"]))
        if not img:
            raise _Bad("empty image id")
        ll = _latlon(r.get(col["lat"]), r.get(col["lon"]), required=True)
        file = str(Path(image_dir) / img) if image_dir is not None else img
        row = {"file": file, "kind": "photo", "lat": ll[0], "lon": ll[1], "source": "im2gps",
               "recordist": _text(r.get("author")), "img_id": img}
        row.update(_extra(r, used))
        return row

    out.collect(rows, convert)
    return BuildResult(pd.DataFrame(out.rows), out.rejects, str(path), "im2gps")


# --------------------------------------------------------------------------- avgeo results


def build_results(path: str | Path, skip_bad: bool = False) -> BuildResult:
    """The Parquet `avgeo locate DIR --out` writes: predicted places become the labels
    (source 'avgeo-results'), e.g. to pseudo-label a folder. Failed rows are bad rows."""
    path = Path(path)
    try:
        import pyarrow.parquet as pq

        df = pq.read_table(path).to_pandas()
    except Exception as exc:
        raise TableError(f"cannot read {path} as Parquet: {exc}",
                         "pass the file `avgeo locate DIR --out x.parquet` wrote") from exc
    need = {"file", "status", "lat", "lon"}
    if not need <= set(df.columns):
        raise TableError(f"{path} lacks columns {sorted(need - set(df.columns))}",
                         "pass the file `avgeo locate DIR --out x.parquet` wrote")
    out = _Rows(str(path), skip_bad)

    def convert(r: dict[str, Any]) -> dict[str, Any]:
        raw = {k: _text(v) for k, v in r.items() if k != "prediction_json"}
        if r.get("status") != "ok":
            raise _Bad(f"{r.get('file')}: not located "
                       f"({_text(r.get('error')) or r.get('status')})", raw)
        ll = parse_latlon(r.get("lat"), r.get("lon"))
        if isinstance(ll, str) or math.isnan(ll[0]):
            raise _Bad(f"{r.get('file')}: {ll if isinstance(ll, str) else 'no coordinates'}",
                       raw)
        return {"file": r["file"], "kind": _text(r.get("kind")), "lat": ll[0], "lon": ll[1],
                "country": _text(r.get("country")), "admin1": _text(r.get("admin1")),
                "source": "avgeo-results",
                "country_probability": _text(r.get("country_probability"))}

    out.collect(df.to_dict("records"), convert)
    return BuildResult(pd.DataFrame(out.rows), out.rejects, str(path), "results")


# --------------------------------------------------------------------------- dispatch


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "xeno-canto"
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
        return "results" if {"status", "prediction_json"} <= names else "manifest"
    if suffix in (".csv", ".tsv", ".txt"):
        with open(path, encoding="utf-8-sig") as fh:
            header = {h.strip().lower() for h in fh.readline().split(",")}
        if {"image_url", "sound_url"} & header or {"observed_on", "user_login"} <= header:
            return "inaturalist"
        if "img_id" in header:
            return "im2gps"
        return "manifest"
    raise TableError(f"cannot tell what {path} is", f"pass --format ({', '.join(FORMATS)})")


def fill_regions(df: pd.DataFrame) -> pd.DataFrame:
    """Fill empty country / admin1 from the coordinates by offline reverse geocoding; a
    country the source gave is kept."""
    df = df.copy()
    for c in ("country", "admin1"):
        if c not in df:
            df[c] = ""
        df[c] = df[c].map(_text).astype(object)
    if not len(df):
        return df
    lat = pd.to_numeric(df.get("lat"), errors="coerce").to_numpy(dtype=np.float64)
    lon = pd.to_numeric(df.get("lon"), errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(lat) & np.isfinite(lon)
    if not ok.any():
        return df
    from avgeo.geo.regions import chain_of_region

    table = chain_of_region(lat[ok], lon[ok])
    idx = np.flatnonzero(ok)
    cc = table["country_code"].astype(str).to_numpy()
    a1 = table["admin1"].astype(str).to_numpy()
    country = df["country"].to_numpy(dtype=object).copy()
    admin1 = df["admin1"].to_numpy(dtype=object).copy()
    for j, i in enumerate(idx):
        if not country[i]:
            country[i] = cc[j]
        if not admin1[i] and country[i].upper() == cc[j].upper():
            admin1[i] = a1[j]
    df["country"], df["admin1"] = country, admin1
    return df


def build(source: str | Path, fmt: str = "auto", coords: str | Path | None = None,
          media_root: str | Path | None = None, skip_bad: bool = False,
          geocode: bool = True) -> BuildResult:
    """Build a manifest from any supported source; see the module docstring."""
    from avgeo.data.schema import normalise_manifest

    src = Path(source)
    if not src.exists():
        raise TableError(f"{src} not found", "check the path")
    fmt = detect_format(src) if fmt == "auto" else fmt
    if fmt == "folder":
        res = build_folder(src, coords, skip_bad)
    elif fmt == "inaturalist":
        res = build_inaturalist(src, media_root, skip_bad)
    elif fmt == "xeno-canto":
        res = build_xeno_canto(src, media_root, skip_bad)
    elif fmt == "im2gps":
        res = build_im2gps(src, media_root, skip_bad)
    elif fmt == "results":
        res = build_results(src, skip_bad)
    elif fmt == "manifest":
        from avgeo.data.manifest import read_manifest

        res = BuildResult(read_manifest(src), [], str(src), "manifest")
    else:
        from avgeo.errors import ConfigError

        raise ConfigError(f"unknown format {fmt!r}", f"choose from {', '.join(FORMATS)}")
    df = res.manifest
    if geocode:
        df = fill_regions(df)
    res.manifest = normalise_manifest(df)
    return res


def relativise(df: pd.DataFrame, base: str | Path) -> pd.DataFrame:
    """Local absolute paths rewritten relative to `base` (the manifest's folder), so that a
    dataset folder can move with its manifest; URIs are left alone."""
    import os

    base = Path(base).resolve()
    df = df.copy()

    def rel(f: str) -> str:
        if "://" in f or not Path(f).is_absolute():
            return f
        try:
            return Path(os.path.relpath(f, base)).as_posix()
        except ValueError:  # another drive (Windows)
            return f

    df["file"] = df["file"].map(lambda f: rel(str(f)))
    return df


def write_rejects(rejects: list[Reject], path: str | Path) -> Path:
    path = Path(path)
    pd.DataFrame({"row": [r.row for r in rejects], "reason": [r.reason for r in rejects],
                  "raw_json": [json.dumps(r.raw, default=str, sort_keys=True) for r in rejects]}
                 ).to_csv(path, index=False)
    return path
