"""Read prediction and truth tables (CSV or Parquet), find their id/lat/lon columns, validate
every value and join them on id; every problem is a TableError naming file, row and column.

Column names match case-insensitively. When a named (or default) column is absent the reader
looks for the usual aliases, in this order:

* id: id, img_id, image_id, imgid, photo_id, sample_id, key, file, filename, file_name, image,
  path, name
* prediction lat: lat, pred_lat, predicted_lat, lat_pred, prediction_lat, latitude,
  pred_latitude, predicted_latitude (lon likewise with lon/long/lng/longitude)
* truth lat in a truth file: lat, true_lat, gt_lat, lat_true, lat_gt, target_lat, label_lat,
  truth_lat, latitude (lon likewise)
* truth lat inside a prediction file (used when no truth file is given): the same list
  without the bare lat/latitude, so that a file with `lat` and `true_lat` reads as both.

CSV files stop at the first blank line after the header: GeoEstimation's result files end
with a blank line and a trailer of summary numbers that is not data.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from avgeo.errors import TableError

ID_ALIASES = ("id", "img_id", "image_id", "imgid", "photo_id", "sample_id", "key", "file",
              "filename", "file_name", "image", "path", "name")
PRED_LAT_ALIASES = ("lat", "pred_lat", "predicted_lat", "lat_pred", "prediction_lat", "latitude",
                    "pred_latitude", "predicted_latitude")
PRED_LON_ALIASES = ("lon", "pred_lon", "predicted_lon", "predicted_long", "pred_long",
                    "lon_pred", "prediction_lon", "lng", "pred_lng", "predicted_lng", "long",
                    "longitude", "pred_longitude", "predicted_longitude")
_TRUTH_LAT = ("true_lat", "gt_lat", "lat_true", "lat_gt", "target_lat", "label_lat", "truth_lat")
_TRUTH_LON = ("true_lon", "gt_lon", "gt_long", "true_long", "true_lng", "gt_lng", "lon_true",
              "lon_gt", "target_lon", "label_lon", "truth_lon")
TRUTH_LAT_ALIASES = ("lat", *_TRUTH_LAT, "latitude")
TRUTH_LON_ALIASES = ("lon", *_TRUTH_LON, "lng", "long", "longitude")
EMBEDDED_TRUTH_LAT_ALIASES = _TRUTH_LAT
EMBEDDED_TRUTH_LON_ALIASES = _TRUTH_LON

_PARQUET_MAGIC = b"PAR1"
_BLANK_LINE = re.compile(r"\n[ \t\r]*(?:\n|$)")
_MISSING_TEXT = {"", "nan", "na", "n/a", "null", "none"}
_MAX_EXAMPLES = 3


@dataclass
class RawTable:
    """A table as read: every CSV cell a string; `line_of_row0` is the file line of data row 1."""

    path: Path
    frame: pd.DataFrame
    kind: str  # "csv" | "parquet"
    line_of_row0: int | None = 2
    notes: list[str] = field(default_factory=list)

    def where(self, i: int, column: str) -> str:
        """'file: row N (line L), column C' for the i-th (0-based) data row."""
        loc = f"row {i + 1}"
        if self.line_of_row0 is not None:
            loc += f" (line {i + self.line_of_row0})"
        return f"{self.path}: {loc}, column '{column}'"


def read_table(path: str | Path, numeric_columns: Collection[str] = ()) -> RawTable:
    """Read a CSV (comma, tab or semicolon separated) or Parquet file, chosen by content.

    CSV cells are kept as text (ids like '007' stay intact) except columns whose name,
    case-folded, is in `numeric_columns`: those are parsed as floats up front, which is
    several times faster on big tables; a column with any non-number stays text and the
    validators report the exact cell.
    """
    p = Path(path)
    if not p.exists():
        raise TableError(f"{p}: file not found", hint="check the path")
    if not p.is_file():
        raise TableError(f"{p}: not a file", hint="pass a CSV or Parquet file")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head == _PARQUET_MAGIC:
        return _read_parquet(p)
    if p.suffix.lower() in {".parquet", ".pq"}:
        raise TableError(f"{p}: named like Parquet but is not a Parquet file (no PAR1 magic)",
                         hint="re-export the table as Parquet or CSV")
    return _read_csv(p, {c.casefold() for c in numeric_columns})


def _read_parquet(p: Path) -> RawTable:
    try:
        frame = pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises many types for damaged files
        raise TableError(f"{p}: cannot read Parquet: {exc}",
                         hint="the file is damaged; re-export it") from exc
    if frame.empty:
        raise TableError(f"{p}: table has no data rows", hint="pass a table with rows")
    return RawTable(p, frame.reset_index(drop=True), "parquet", line_of_row0=None)


def _read_csv(p: Path, numeric: set[str]) -> RawTable:
    data = p.read_bytes()
    if b"\x00" in data[:4096]:
        raise TableError(f"{p}: binary content, not a CSV or Parquet table",
                         hint="pass a CSV or Parquet file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise TableError(f"{p}: file is empty", hint="pass a table with a header and rows")
    first_nl = text.find("\n")
    header = text if first_nl < 0 else text[:first_nl]
    if not header.strip():
        raise TableError(f"{p}: line 1 is blank; expected a header row",
                         hint="put the column names on the first line")
    notes: list[str] = []
    m = _BLANK_LINE.search(text, max(first_nl, 0))
    if first_nl >= 0 and m is not None:
        rest = text[m.end():]
        n_trailer = sum(1 for line in rest.split("\n") if line.strip())
        if n_trailer:
            blank_line_no = text.count("\n", 0, m.start() + 1) + 1
            notes.append(f"{p.name}: stopped at the blank line {blank_line_no}; ignored "
                         f"{n_trailer} trailing line(s)")
        text = text[:m.start() + 1]
    sep = _sniff_sep(header)
    names = [c.strip() for c in next(csv.reader([header], delimiter=sep), [])]
    try:
        frame = _parse_csv(text, sep, names, numeric)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise TableError(f"{p}: cannot parse CSV: {' '.join(str(exc).split())}",
                         hint="check quoting and that every row has as many fields as the "
                              "header") from exc
    except pd.errors.EmptyDataError as exc:
        raise TableError(f"{p}: file is empty", hint="pass a table with rows") from exc
    if frame.empty:
        raise TableError(f"{p}: table has a header but no data rows",
                         hint="pass a table with rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return RawTable(p, frame, "csv", line_of_row0=2, notes=notes)


def _parse_csv(text: str, sep: str, names: list[str], numeric: set[str]) -> pd.DataFrame:
    def parse(dtype: dict[str, object]) -> pd.DataFrame:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=dtype, keep_default_na=False,
                           na_filter=False, skipinitialspace=True, engine="c")

    if any(n.casefold() in numeric for n in names):
        try:
            return parse({n: (np.float64 if n.casefold() in numeric else object)
                          for n in names})
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            raise
        except (ValueError, TypeError):
            pass  # a numeric column holds text: read it as text so the validator names the cell
    return parse(dict.fromkeys(names, object))


def _sniff_sep(header: str) -> str:
    counts = {s: header.count(s) for s in (",", "\t", ";")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def find_column(table: RawTable, name: str | None, aliases: Sequence[str], what: str,
                option: str | None = None, required: bool = True) -> str | None:
    """The actual column for `name` (case-insensitive) or, when not given, the first alias."""
    cols = list(table.frame.columns)
    by_fold: dict[str, list[str]] = {}
    for c in cols:
        by_fold.setdefault(c.casefold(), []).append(c)

    def match(n: str) -> str | None:
        hits = by_fold.get(n.casefold(), [])
        if len(hits) > 1:
            if n in hits:
                return n
            raise TableError(f"{table.path}: column name '{n}' is ambiguous ({hits})",
                             hint="rename the columns so they differ beyond letter case")
        return hits[0] if hits else None

    shown = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
    if name is not None:
        found = match(name)
        if found is None:
            raise TableError(f"{table.path}: missing column '{name}' ({what}); columns are: "
                             f"{shown}",
                             hint=f"name the {what} column with {option or 'the option'}")
        return found
    for alias in aliases:
        found = match(alias)
        if found is not None:
            return found
    if not required:
        return None
    raise TableError(f"{table.path}: no {what} column (looked for {', '.join(aliases[:6])}...); "
                     f"columns are: {shown}",
                     hint=f"name the {what} column with {option or 'the option'}")


def coordinates(table: RawTable, column: str, kind: str) -> np.ndarray:
    """Validated float64 degrees from a lat ('lat', in [-90, 90]) or lon ([-180, 180]) column."""
    raw = table.frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        cell = raw.iloc[i]
        text = "" if cell is None else str(cell).strip()
        if text.casefold() in _MISSING_TEXT:
            why = "missing value (empty or NaN)"
        elif np.isinf(values[i]):
            why = f"value '{text}' is infinite"
        else:
            why = f"value '{text[:40]}' is not a number"
        more = int(bad.sum()) - 1
        extra = f"; {more} more bad value(s) in this column" if more else ""
        raise TableError(f"{table.where(i, column)}: {why}{extra}")
    limit = 90.0 if kind == "lat" else 180.0
    out = np.abs(values) > limit
    if out.any():
        i = int(np.flatnonzero(out)[0])
        more = int(out.sum()) - 1
        extra = f"; {more} more out of range" if more else ""
        raise TableError(
            f"{table.where(i, column)}: {kind} {values[i]:g} is outside [-{limit:g}, {limit:g}]"
            f"{extra}",
            hint="lat/lon must be decimal degrees; check for swapped lat/lon columns")
    return values


def identifiers(table: RawTable, column: str) -> np.ndarray:
    """Validated ids as strings: none empty, none duplicated."""
    raw = table.frame[column]
    ids = raw.astype(str).str.strip()
    if table.kind == "parquet":
        ids = ids.where(raw.notna(), "")
    empty = (ids == "").to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise TableError(f"{table.where(i, column)}: empty id")
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        value = ids.iloc[first]
        rows = np.flatnonzero((ids == value).to_numpy())
        n_dup = int(ids.duplicated().sum())
        raise TableError(
            f"{table.where(int(rows[1]), column)}: duplicate id '{value[:60]}' (also row "
            f"{int(rows[0]) + 1}); {n_dup} duplicate row(s) in all",
            hint="ids must be unique; drop repeated predictions")
    return ids.to_numpy(dtype=object)


@dataclass
class Pairs:
    """Predicted and true coordinates, aligned row by row, and where they came from."""

    pred_lat: np.ndarray
    pred_lon: np.ndarray
    true_lat: np.ndarray
    true_lon: np.ndarray
    ids: np.ndarray | None
    pred_path: Path
    truth_path: Path | None
    columns: dict[str, str]
    notes: list[str] = field(default_factory=list)
    n_truth_unmatched: int = 0
    #: The prediction table as read; its rows are in the same order as the pairs.
    pred_table: RawTable | None = None

    def __len__(self) -> int:
        return int(self.pred_lat.size)


def _examples(values: np.ndarray) -> str:
    shown = ", ".join(f"'{str(v)[:40]}'" for v in values[:_MAX_EXAMPLES])
    return shown + (", ..." if len(values) > _MAX_EXAMPLES else "")


def _numeric_names(*groups: Sequence[str | None]) -> set[str]:
    return {n for g in groups for n in g if n}


def load_pairs(pred_path: str | Path, truth_path: str | Path | None = None, *,
               id_col: str | None = None, lat_col: str | None = None,
               lon_col: str | None = None, truth_id_col: str | None = None,
               truth_lat_col: str | None = None, truth_lon_col: str | None = None,
               allow_partial: bool = False) -> Pairs:
    """Read PRED (and TRUTH, or truth columns inside PRED), validate and join on id.

    Every prediction id must have a truth row. Truth rows without a prediction are an error
    too (a benchmark scored on a subset is not comparable) unless `allow_partial`.
    """
    pred = read_table(pred_path, _numeric_names(PRED_LAT_ALIASES, PRED_LON_ALIASES,
                                                EMBEDDED_TRUTH_LAT_ALIASES,
                                                EMBEDDED_TRUTH_LON_ALIASES,
                                                (lat_col, lon_col, truth_lat_col, truth_lon_col)
                                                if truth_path is None else (lat_col, lon_col)))
    notes = list(pred.notes)
    cols: dict[str, str] = {}
    cols["pred.lat"] = find_column(pred, lat_col, PRED_LAT_ALIASES, "predicted latitude",
                                   "--lat")
    cols["pred.lon"] = find_column(pred, lon_col, PRED_LON_ALIASES, "predicted longitude",
                                   "--lon")
    plat = coordinates(pred, cols["pred.lat"], "lat")
    plon = coordinates(pred, cols["pred.lon"], "lon")

    if truth_path is None:
        tlat_c = find_column(pred, truth_lat_col, EMBEDDED_TRUTH_LAT_ALIASES,
                             "true latitude", "--truth-lat", required=False)
        tlon_c = find_column(pred, truth_lon_col, EMBEDDED_TRUTH_LON_ALIASES,
                             "true longitude", "--truth-lon", required=False)
        if tlat_c is None or tlon_c is None:
            raise TableError(
                f"{pred.path}: no truth given and no truth columns in the table (looked for "
                f"{'/'.join(EMBEDDED_TRUTH_LAT_ALIASES[:3])} and "
                f"{'/'.join(EMBEDDED_TRUTH_LON_ALIASES[:3])})",
                hint="pass --truth TRUTH, or name the columns with --truth-lat/--truth-lon")
        cols["truth.lat"], cols["truth.lon"] = tlat_c, tlon_c
        ids = None
        id_c = find_column(pred, id_col, ID_ALIASES, "id", "--id", required=id_col is not None)
        if id_c is not None:
            cols["pred.id"] = id_c
            ids = identifiers(pred, id_c)
        return Pairs(plat, plon, coordinates(pred, tlat_c, "lat"),
                     coordinates(pred, tlon_c, "lon"), ids, pred.path, None, cols, notes,
                     pred_table=pred)

    truth = read_table(truth_path, _numeric_names(TRUTH_LAT_ALIASES, TRUTH_LON_ALIASES,
                                                  (truth_lat_col, truth_lon_col)))
    notes += truth.notes
    cols["pred.id"] = find_column(pred, id_col, ID_ALIASES, "id", "--id")
    # --id names the prediction column; the truth table often uses the same name.
    truth_id_aliases = ((id_col,) if id_col else ()) + ID_ALIASES
    cols["truth.id"] = find_column(truth, truth_id_col, truth_id_aliases, "id", "--truth-id")
    cols["truth.lat"] = find_column(truth, truth_lat_col, TRUTH_LAT_ALIASES, "true latitude",
                                    "--truth-lat")
    cols["truth.lon"] = find_column(truth, truth_lon_col, TRUTH_LON_ALIASES, "true longitude",
                                    "--truth-lon")
    pred_ids = identifiers(pred, cols["pred.id"])
    truth_ids = identifiers(truth, cols["truth.id"])
    tlat = coordinates(truth, cols["truth.lat"], "lat")
    tlon = coordinates(truth, cols["truth.lon"], "lon")

    index = pd.Index(truth_ids)
    pos = index.get_indexer(pred_ids)
    missing = pos < 0
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise TableError(
            f"{pred.where(first, cols['pred.id'])}: {int(missing.sum())} of {len(pred_ids)} "
            f"prediction ids have no row in {truth.path} (e.g. "
            f"{_examples(pred_ids[missing])})",
            hint="check that both tables use the same ids; name the id columns with "
                 "--id/--truth-id")
    unmatched = np.ones(len(truth_ids), dtype=bool)
    unmatched[pos] = False
    n_unmatched = int(unmatched.sum())
    if n_unmatched and not allow_partial:
        first = int(np.flatnonzero(unmatched)[0])
        raise TableError(
            f"{truth.where(first, cols['truth.id'])}: {n_unmatched} of {len(truth_ids)} truth "
            f"ids have no prediction in {pred.path} (e.g. {_examples(truth_ids[unmatched])})",
            hint="predict every truth row, or pass --partial to score only the predicted ids")
    if n_unmatched:
        notes.append(f"--partial: {n_unmatched} truth row(s) without a prediction were left out")
    return Pairs(plat, plon, tlat[pos], tlon[pos], pred_ids, pred.path, truth.path, cols, notes,
                 n_unmatched, pred_table=pred)
