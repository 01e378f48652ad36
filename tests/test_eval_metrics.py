"""Metric functions against independent references: pure-Python loops, pyproj, closed forms."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from avgeo.eval.metrics import (
    THRESHOLDS_KM,
    cell_log_density_sr,
    coverage,
    distance_metrics,
    geoscore,
    grid_log_density_sr,
    hierarchical_accuracy,
    metrics_from_errors,
    min_hit_area_km2,
    nll_s2,
    recall_vs_area,
    threshold_key,
)

R_KM = 6371.0088


def _ref_distance_km(lat1, lon1, lat2, lon2, r_km=R_KM):
    """Vincenty's special case for the sphere (atan2 form): a different formula from haversine."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    num = math.hypot(math.cos(p2) * math.sin(dl),
                     math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl))
    den = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return r_km * math.atan2(num, den)


def _random_points(rng, n):
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    return lat, lon


def test_geoscore_closed_form():
    assert geoscore(0.0) == pytest.approx(5000.0)
    assert geoscore(1492.7) == pytest.approx(5000.0 / math.e)
    assert geoscore(20015.0) < 1.0
    np.testing.assert_allclose(geoscore([0.0, 1492.7 * 2]), [5000.0, 5000.0 / math.e**2])


def test_distance_metrics_matches_pure_python_reference():
    rng = np.random.default_rng(0)
    n = 2000
    tlat, tlon = _random_points(rng, n)
    # Mix of near and far predictions so every threshold is exercised.
    dist = np.exp(rng.uniform(np.log(0.1), np.log(15000), n))
    from avgeo.geo.sphere import destination

    plat, plon = destination(tlat, tlon, rng.uniform(0, 360, n), dist)
    m = distance_metrics(plat, plon, tlat, tlon)
    ref = [_ref_distance_km(*args) for args in zip(plat, plon, tlat, tlon, strict=True)]
    assert m.n == n
    assert m.mean_km == pytest.approx(statistics.fmean(ref), rel=1e-9)
    assert m.median_km == pytest.approx(statistics.median(ref), rel=1e-9)
    assert m.geoscore_mean == pytest.approx(
        statistics.fmean(5000 * math.exp(-d / 1492.7) for d in ref), rel=1e-9)
    for t in THRESHOLDS_KM:
        # Points constructed at a random distance are never within 1e-6 km of a threshold
        # with overwhelming probability; the reference counts d <= t like the metric.
        assert m.acc[t] == pytest.approx(sum(d <= t for d in ref) / n)
        assert m.count[t] == sum(d <= t for d in ref)


def test_distance_agrees_with_pyproj_on_a_sphere():
    pyproj = pytest.importorskip("pyproj")
    geod = pyproj.Geod(a=R_KM * 1000, b=R_KM * 1000)
    rng = np.random.default_rng(1)
    plat, plon = _random_points(rng, 500)
    tlat, tlon = _random_points(rng, 500)
    _, _, d_m = geod.inv(plon, plat, tlon, tlat)
    m = distance_metrics(plat, plon, tlat, tlon)
    assert m.mean_km == pytest.approx(np.mean(d_m) / 1000, rel=1e-9)


def test_thresholds_are_inclusive_and_keys_are_strings():
    m = metrics_from_errors([1.0, 25.0, 25.0000001, 2500.0, 3000.0])
    assert m.count == {1.0: 1, 25.0: 2, 200.0: 3, 750.0: 3, 2500.0: 4}
    d = m.to_dict()
    assert list(d["acc"]) == ["1", "25", "200", "750", "2500"]
    assert d["acc"]["2500"] == pytest.approx(0.8)
    assert threshold_key(0.5) == "0.5"


def test_known_geometry_equator_degree_and_antipode():
    deg_km = R_KM * math.pi / 180
    m = distance_metrics([0.0, 0.0], [1.0, 180.0], [0.0, 0.0], [0.0, 0.0])
    assert m.median_km == pytest.approx((deg_km + math.pi * R_KM) / 2)
    assert m.acc[200.0] == 0.5
    # Radius is a parameter: OSV-5M used 6371.0 km.
    m0 = distance_metrics([0.0], [1.0], [0.0], [0.0], radius_km=6371.0)
    assert m0.mean_km == pytest.approx(6371.0 * math.pi / 180)


def test_distance_metrics_rejects_mismatched_shapes_and_nan():
    with pytest.raises(ValueError):
        distance_metrics([0, 1], [0, 1], [0], [0])
    with pytest.raises(ValueError):
        distance_metrics([np.nan], [0], [0], [0])


def test_empty_input_gives_nan_not_crash():
    m = distance_metrics([], [], [], [])
    assert m.n == 0 and math.isnan(m.median_km)


def test_hierarchical_accuracy_nested_and_flat():
    true = pd.DataFrame({"continent_code": ["EU", "EU", "NA", "NA"],
                         "country_code": ["FR", "FR", "US", "US"],
                         "admin1": ["Île-de-France", "Occitanie", "Georgia", ""],
                         "city": ["Paris", "Toulouse", "Athens", "Athens"]})
    pred = pd.DataFrame({"continent_code": ["EU", "EU", "EU", "NA"],
                         "country_code": ["fr", "DE", "GE", "US"],
                         "admin1": ["Île-de-France", "Occitanie", "Georgia", "Texas"],
                         "city": ["Paris", "Toulouse", "Athens", "Athens"]})
    flat = hierarchical_accuracy(pred, true, nested=False)
    assert flat.acc == {"continent": 0.75, "country": 0.5, "admin1": 1.0, "city": 1.0}
    assert flat.n["admin1"] == 3  # the blank true admin1 is left out
    nested = hierarchical_accuracy(pred, true)
    # Row 2 names the right admin1/city only in the wrong country; row 1 the wrong country.
    assert nested.acc == {"continent": 0.75, "country": 0.5, "admin1": pytest.approx(1 / 3),
                          "city": 0.25}


def test_hierarchical_matches_osv5m_hit_columns(shared_data):
    df = pd.read_csv(shared_data / "metrics" / "osv5m_game_select.csv")
    pred = {"country": df["pred_country"], "admin1": df["pred_region"], "city": df["pred_city"]}
    true = {"country": df["country"], "admin1": df["region"], "city": df["city"]}
    h = hierarchical_accuracy(pred, true, nested=False)
    assert h.acc["country"] == pytest.approx(df["country_hit"].mean())
    assert h.acc["admin1"] == pytest.approx(df["region_hit"].mean())
    assert h.acc["city"] == pytest.approx(df["city_hit"].mean())
    assert "continent" not in h.acc


def _rva_reference(areas, hits, budget):
    found = 0
    for row_a, row_h in zip(areas, hits, strict=True):
        if any(h and a <= budget for a, h in zip(row_a, row_h, strict=True)):
            found += 1
    return found / len(areas)


def test_recall_vs_area_against_loop():
    rng = np.random.default_rng(2)
    areas = np.sort(10 ** rng.uniform(0, 8, (300, 4)), axis=1)
    hits = rng.random((300, 4)) < 0.3
    rva = recall_vs_area(areas, hits)
    for b, r in rva.recall_at.items():
        assert r == pytest.approx(_rva_reference(areas, hits, b))
    assert rva.max_recall == pytest.approx(hits.any(axis=1).mean())
    # The step curve is non-decreasing and ends at max recall.
    assert np.all(np.diff(rva.recall) >= 0) and rva.recall[-1] == pytest.approx(rva.max_recall)


def test_recall_vs_area_single_region_and_auc():
    rva = recall_vs_area([1.0, 100.0, 5.0, 1e9], [True, True, False, True])
    assert rva.recall_at[10.0] == 0.25 and rva.recall_at[100.0] == 0.5
    assert rva.median_area_km2 == 100.0
    assert min_hit_area_km2([3.0], [False])[0] == math.inf
    # A truth found at 1 km² is worth full area-under-curve, one at the Earth's area nothing.
    earth = 4 * math.pi * R_KM**2
    assert recall_vs_area([1.0, earth], [True, True]).auc_log_area == pytest.approx(0.5)


def test_coverage_and_calibration_error():
    hits = np.array([[True, True], [False, True], [False, True], [False, False]])
    c = coverage(hits, [0.5, 0.9])
    np.testing.assert_allclose(c.empirical, [0.25, 0.75])
    np.testing.assert_allclose(c.error, [-0.25, -0.15])
    assert c.mean_abs_error == pytest.approx(0.2)
    assert coverage([True, False, True, True], 0.75).max_abs_error == pytest.approx(0.0)
    with pytest.raises(ValueError):
        coverage(hits, [0.5])


def test_nll_uniform_density_is_log_4pi():
    from avgeo.geo.grid import global_grid

    grid = global_grid(1)
    prob = grid.area_km2 / grid.area_km2.sum()
    rng = np.random.default_rng(3)
    lat, lon = _random_points(rng, 50)
    lp = grid_log_density_sr(grid, prob, lat, lon)
    # H3 areas are ellipsoidal; their sum is within 0.2 % of 4πR², so log(4π) to ~2e-3.
    assert nll_s2(lp) == pytest.approx(math.log(4 * math.pi), abs=3e-3)


def test_cell_log_density_per_row_floor_and_units():
    area = np.array([R_KM**2, 2 * R_KM**2])  # 1 sr and 2 sr
    prob = np.array([[0.5, 0.5], [1.0, 0.0]])
    lp = cell_log_density_sr(prob, area, [1, 1])
    assert lp[0] == pytest.approx(math.log(0.25))
    assert lp[1] == -math.inf
    assert cell_log_density_sr(prob, area, [1, 1], floor=1e-6)[1] == pytest.approx(
        math.log(1e-6 / 2))
    assert nll_s2([math.log(0.25), math.log(0.5)]) == pytest.approx(-(math.log(0.125)) / 2)
