"""Golden metrics from published result files: GeoEstimation on Im2GPS3k and OSV-5M GeoScores."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avgeo.eval import distance_metrics, geoscore, load_pairs
from avgeo.geo.sphere import haversine_km

REPO = Path(__file__).resolve().parents[1]
TRUTH = "geoestimation_im2gps3k_truth_places365.csv"
THRESHOLDS = ("1", "25", "200", "750", "2500")
GOLDEN = {
    "geoestimation_im2gps3k_pred_ISNs_M-fstar-S3.csv": {
        "acc_pct": (10.54, 27.99, 36.64, 49.68, 65.97),
        "counts": (316, 839, 1098, 1489, 1977),
        "median_km": 785.47, "mean_km": 3223.12,
    },
    "geoestimation_im2gps3k_pred_base_M-m.csv": {
        "acc_pct": (8.17, 25.49, 35.10, 48.68, 65.23),
        "counts": (245, 764, 1052, 1459, 1955),
        "median_km": 845.80, "mean_km": 3292.06,
    },
}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avgeo", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_geoestimation_joined_with_truth(shared_data, name):
    d = shared_data / "metrics"
    gold = GOLDEN[name]
    pairs = load_pairs(d / name, d / TRUTH)
    assert len(pairs) == 2997 and pairs.columns["pred.lat"] == "predicted_lat"
    assert pairs.columns["pred.lon"] == "predicted_long"
    m = distance_metrics(pairs.pred_lat, pairs.pred_lon, pairs.true_lat, pairs.true_lon)
    assert m.n == 2997
    assert tuple(m.count.values()) == gold["counts"]
    for t, pct in zip(m.acc, gold["acc_pct"], strict=True):
        assert 100 * m.acc[t] == pytest.approx(pct, abs=0.005)
    assert m.median_km == pytest.approx(gold["median_km"], abs=0.005)
    assert m.mean_km == pytest.approx(gold["mean_km"], abs=0.005)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_geoestimation_distances_match_file_column(shared_data, name):
    """The file's own great_circle_distance (R = 6371.0, 2 decimals) agrees with ours."""
    d = shared_data / "metrics"
    pairs = load_pairs(d / name)  # truth from gt_lat/gt_long inside the file
    ours = haversine_km(pairs.pred_lat, pairs.pred_lon, pairs.true_lat, pairs.true_lon,
                        radius_km=6371.0)
    theirs = pd.to_numeric(pairs.pred_table.frame["great_circle_distance"]).to_numpy()
    np.testing.assert_allclose(ours, theirs, atol=0.0051)
    # The closest case to a threshold sits 2 m under 1 km: counts need d <= t, not d < t - tol.
    near = np.abs(ours - 1.0) < 0.01
    assert near.any()


def test_geoestimation_trailer_is_not_data(shared_data):
    d = shared_data / "metrics"
    pairs = load_pairs(d / "geoestimation_im2gps3k_pred_base_M-m.csv")
    assert len(pairs) == 2997
    assert any("blank line" in n and "2 trailing" in n for n in pairs.notes)


def test_osv5m_geoscore_per_row_and_means(shared_data):
    path = shared_data / "metrics" / "osv5m_game_select.csv"
    df = pd.read_csv(path)
    assert len(df) == 48
    for suffix, mean_score in (("", 3311.39), ("_base", 1738.46)):
        plat, plon = df[f"pred_lat{suffix}"], df[f"pred_lon{suffix}"]
        # OSV-5M used R = 6371.0 km: same radius -> same scores to 0.01.
        d0 = haversine_km(plat, plon, df["true_lat"], df["true_lon"], radius_km=6371.0)
        np.testing.assert_allclose(geoscore(d0), df[f"score{suffix}"], atol=0.01)
        np.testing.assert_allclose(d0, df[f"distance{suffix}"], atol=1e-6)
        # Our default R = 6371.0088 km shifts scores by at most the documented 0.0026 points.
        m = distance_metrics(plat, plon, df["true_lat"], df["true_lon"])
        d1 = haversine_km(plat, plon, df["true_lat"], df["true_lon"])
        assert np.max(np.abs(geoscore(d1) - df[f"score{suffix}"])) <= 0.0027
        assert m.geoscore_mean == pytest.approx(mean_score, abs=0.01)
        m0 = distance_metrics(plat, plon, df["true_lat"], df["true_lon"], radius_km=6371.0)
        assert m0.geoscore_mean == pytest.approx(df[f"score{suffix}"].mean(), abs=1e-6)


def test_cli_json_geoestimation(shared_data):
    d = shared_data / "metrics"
    name = "geoestimation_im2gps3k_pred_ISNs_M-fstar-S3.csv"
    r = _cli("evaluate", d / name, "--truth", d / TRUTH, "--json", "--lat", "predicted_lat",
             "--lon", "predicted_long", "--no-regions")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    out = json.loads(lines[0])
    gold = GOLDEN[name]
    assert out["n"] == 2997
    assert list(out["acc"]) == list(THRESHOLDS)
    for t, pct in zip(THRESHOLDS, gold["acc_pct"], strict=True):
        assert 100 * out["acc"][t] == pytest.approx(pct, abs=0.005)
    assert out["median_km"] == pytest.approx(gold["median_km"], abs=0.005)
    assert out["mean_km"] == pytest.approx(gold["mean_km"], abs=0.005)
    assert math.isfinite(out["geoscore_mean"])


def test_cli_json_osv5m_truth_inside_pred(shared_data):
    r = _cli("evaluate", shared_data / "metrics" / "osv5m_game_select.csv", "--json",
             "--radius-km", "6371.0", "--no-regions")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 48
    assert out["geoscore_mean"] == pytest.approx(3311.39, abs=0.01)
    assert out["mean_km"] == pytest.approx(1480.65, abs=0.01)
    # The baseline columns, named explicitly.
    r = _cli("evaluate", shared_data / "metrics" / "osv5m_game_select.csv", "--json",
             "--lat", "pred_lat_base", "--lon", "PRED_LON_BASE", "--no-regions")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["geoscore_mean"] == pytest.approx(1738.46, abs=0.01)
    assert out["mean_km"] == pytest.approx(4329.39, abs=0.03)
