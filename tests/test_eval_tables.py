"""Table reading, column detection, validation and joining; every bad table names file/row/col."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avgeo.errors import TableError
from avgeo.eval.tables import load_pairs, read_table

REPO = Path(__file__).resolve().parents[1]
TRUTH_CSV = "id,lat,lon\na,10,20\nb,-30.5,150\nc,45,-75\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _error(pred: Path, truth: Path | None = None, **kw) -> str:
    with pytest.raises(TableError) as ei:
        load_pairs(pred, truth, **kw)
    return ei.value.message


def test_join_reorders_by_id_and_matches_case_insensitively(tmp_path):
    truth = _write(tmp_path, "t.csv", TRUTH_CSV)
    pred = _write(tmp_path, "p.csv", "ID,Lat,LON\nc,45,-75\na,10,21\nb,-30.5,150\n")
    pairs = load_pairs(pred, truth)
    assert list(pairs.ids) == ["c", "a", "b"]
    np.testing.assert_array_equal(pairs.true_lat, [45, 10, -30.5])
    np.testing.assert_array_equal(pairs.true_lon, [-75, 20, 150])
    assert pairs.columns == {"pred.lat": "Lat", "pred.lon": "LON", "pred.id": "ID",
                             "truth.id": "id", "truth.lat": "lat", "truth.lon": "lon"}


def test_ids_are_strings_not_numbers(tmp_path):
    # "007" and "7" are different ids; a numeric parse would join them wrongly.
    truth = _write(tmp_path, "t.csv", "id,lat,lon\n007,1,2\n7,3,4\n")
    pred = _write(tmp_path, "p.csv", "id,lat,lon\n7,3,4\n007,1,2\n")
    pairs = load_pairs(pred, truth)
    np.testing.assert_array_equal(pairs.true_lat, [3, 1])


def test_explicit_columns_and_auto_detected_aliases(tmp_path):
    truth = _write(tmp_path, "t.csv", "IMG_ID,AUTHOR,LAT,LON\nx,me,1,2\ny,you,3,4\n")
    pred = _write(tmp_path, "p.csv",
                  "img_id,gt_lat,predicted_lat,gt_long,predicted_long\ny,3,3.5,4,4\nx,1,1,2,2\n")
    auto = load_pairs(pred, truth)
    named = load_pairs(pred, truth, id_col="img_id", lat_col="predicted_lat",
                       lon_col="PREDICTED_LONG", truth_id_col="img_id")
    for pairs in (auto, named):
        np.testing.assert_array_equal(pairs.pred_lat, [3.5, 1])
        np.testing.assert_array_equal(pairs.true_lat, [3, 1])
    # Without a truth file the gt_* columns are the truth.
    inside = load_pairs(pred)
    assert inside.columns["truth.lat"] == "gt_lat" and inside.columns["truth.lon"] == "gt_long"


def test_blank_line_ends_the_table(tmp_path):
    pred = _write(tmp_path, "p.csv",
                  "id,lat,lon,true_lat,true_lon\r\na,1,2,1,2\r\nb,3,4,3,4\r\n\r\n"
                  "street acc (1km),city acc\r\n0.1,0.2\r\n")
    pairs = load_pairs(pred)
    assert len(pairs) == 2
    assert any("2 trailing" in n for n in pairs.notes)


def test_tab_separated_and_parquet(tmp_path):
    truth = _write(tmp_path, "t.tsv", TRUTH_CSV.replace(",", "\t"))
    df = pd.DataFrame({"id": ["a", "b", "c"], "lat": [10.0, -30.5, 45.0],
                       "lon": [20.0, 150.0, -75.0]})
    pq = tmp_path / "pred.data"  # content decides, not the extension
    df.to_parquet(pq)
    assert read_table(pq).kind == "parquet"
    pairs = load_pairs(pq, truth)
    np.testing.assert_array_equal(pairs.pred_lat, pairs.true_lat)


def test_parquet_bad_value_names_row(tmp_path):
    df = pd.DataFrame({"id": [1, 2, 3], "lat": [10.0, np.nan, 45.0], "lon": [0.0, 0.0, 0.0],
                       "true_lat": [0.0] * 3, "true_lon": [0.0] * 3})
    pq = tmp_path / "pred.parquet"
    df.to_parquet(pq)
    msg = _error(pq)
    assert "pred.parquet: row 2, column 'lat': missing value" in msg


@pytest.mark.parametrize(
    ("pred_text", "expected"),
    [
        ("id,lat,lon\na,10,20\nb,abc,150\nc,45,-75\n",
         "row 2 (line 3), column 'lat': value 'abc' is not a number"),
        ("id,lat,lon\na,10,20\nb,-30.5,150\nc,45,-275\n",
         "row 3 (line 4), column 'lon': lon -275 is outside [-180, 180]"),
        ("id,lat,lon\na,91,20\nb,-30.5,150\nc,45,-75\n",
         "row 1 (line 2), column 'lat': lat 91 is outside [-90, 90]"),
        ("id,lat,lon\na,10,20\nb,,150\nc,45,-75\n",
         "row 2 (line 3), column 'lat': missing value"),
        ("id,lat,lon\na,10,NaN\nb,-30.5,150\nc,45,-75\n",
         "row 1 (line 2), column 'lon': missing value"),
        ("id,lat,lon\na,10,20\nb,-30.5,150\nb,45,-75\n",
         "row 3 (line 4), column 'id': duplicate id 'b' (also row 2)"),
        ("id,lat,lon\na,10,20\n,-30.5,150\nc,45,-75\n",
         "row 2 (line 3), column 'id': empty id"),
        ("id,lat,lon\na,10,20\nb,-30.5,inf\nc,45,-75\n",
         "row 2 (line 3), column 'lon': value 'inf' is infinite"),
    ],
)
def test_bad_values_name_file_row_and_column(tmp_path, pred_text, expected):
    truth = _write(tmp_path, "t.csv", TRUTH_CSV)
    pred = _write(tmp_path, "p.csv", pred_text)
    msg = _error(pred, truth)
    assert str(pred) in msg
    assert expected in msg


def test_missing_columns(tmp_path):
    truth = _write(tmp_path, "t.csv", TRUTH_CSV)
    pred = _write(tmp_path, "p.csv", "id,y,x\na,1,2\n")
    msg = _error(pred, truth)
    assert "no predicted latitude column" in msg and "columns are: id, y, x" in msg
    msg = _error(pred, truth, lat_col="plat")
    assert "missing column 'plat'" in msg
    nolabel = _write(tmp_path, "n.csv", "lat,lon\n1,2\n")
    assert "no id column" in _error(nolabel, truth)
    assert "no truth given" in _error(nolabel)


def test_ids_that_do_not_join(tmp_path):
    truth = _write(tmp_path, "t.csv", TRUTH_CSV)
    pred = _write(tmp_path, "p.csv", "id,lat,lon\na,1,2\nq,1,2\nr,1,2\ns,1,2\nt,1,2\n")
    msg = _error(pred, truth)
    assert "row 2 (line 3), column 'id': 4 of 5 prediction ids have no row in" in msg
    assert "'q', 'r', 's', ..." in msg


def test_truth_without_prediction_needs_partial(tmp_path):
    truth = _write(tmp_path, "t.csv", TRUTH_CSV)
    pred = _write(tmp_path, "p.csv", "id,lat,lon\nb,1,2\n")
    msg = _error(pred, truth)
    assert "2 of 3 truth ids have no prediction" in msg and "'a', 'c'" in msg
    pairs = load_pairs(pred, truth, allow_partial=True)
    assert len(pairs) == 1 and pairs.n_truth_unmatched == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "file is empty"),
        ("id,lat,lon\n", "no data rows"),
        ("\nid,lat,lon\na,1,2\n", "line 1 is blank"),
    ],
)
def test_empty_and_headerless_tables(tmp_path, content, expected):
    p = _write(tmp_path, "p.csv", content)
    with pytest.raises(TableError, match=expected):
        read_table(p)


def test_unreadable_files(tmp_path):
    with pytest.raises(TableError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    fake = tmp_path / "x.parquet"
    fake.write_text("id,lat,lon\n")
    with pytest.raises(TableError, match="not a Parquet file"):
        read_table(fake)
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(TableError, match="binary content"):
        read_table(binary)
    broken = tmp_path / "b.parquet"
    broken.write_bytes(b"PAR1" + b"\x00" * 20)
    with pytest.raises(TableError, match="cannot read Parquet"):
        read_table(broken)


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avgeo", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_cli_bad_table_is_one_error_line(tmp_path):
    truth = _write(tmp_path, "t.csv", TRUTH_CSV)
    pred = _write(tmp_path, "p.csv", "id,lat,lon\na,10,20\nb,north,150\nc,45,-75\n")
    r = _cli("evaluate", pred, "--truth", truth, "--json")
    assert r.returncode == 4
    assert r.stdout == ""
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "row 2 (line 3), column 'lat'" in err[0] and "'north'" in err[0]
    assert "hint:" in err[0]


def test_cli_missing_file_and_non_joining_ids(tmp_path):
    truth = _write(tmp_path, "t.csv", TRUTH_CSV)
    r = _cli("evaluate", tmp_path / "missing.csv", "--truth", truth)
    assert r.returncode != 0 and r.stderr.startswith("error: ") and "file not found" in r.stderr
    pred = _write(tmp_path, "p.csv", "id,lat,lon\nzz,1,2\n")
    r = _cli("evaluate", pred, "--truth", truth, "--json")
    assert r.returncode == 4 and r.stderr.count("\n") == 1
    assert "1 of 1 prediction ids have no row" in r.stderr and "'zz'" in r.stderr


def test_cli_small_table_json(tmp_path):
    truth = _write(tmp_path, "t.csv", TRUTH_CSV)
    pred = _write(tmp_path, "p.csv", "id,lat,lon\na,10,20\nb,-30.5,150.1\nc,0,0\n")
    r = _cli("evaluate", pred, "--truth", truth, "--json", "--no-regions")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 3
    assert out["acc"]["1"] == pytest.approx(1 / 3)
    assert out["acc"]["25"] == pytest.approx(2 / 3)
    assert out["acc"]["2500"] == pytest.approx(2 / 3)
