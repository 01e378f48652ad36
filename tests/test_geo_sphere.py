"""Sphere geometry against pyproj's WGS84 geodesics and at its edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from avgeo.geo.sphere import (
    EARTH_RADIUS_KM,
    angular_distance_rad,
    destination,
    haversine_km,
    initial_bearing_deg,
    interpolate,
    spherical_mean,
    to_xyz,
    wrap_lon,
)

pyproj = pytest.importorskip("pyproj")

CITY_PAIRS = [
    ((48.8566, 2.3522), (51.5074, -0.1278)),  # Paris - London
    ((40.7128, -74.0060), (51.5074, -0.1278)),  # New York - London
    ((35.6762, 139.6503), (-33.8688, 151.2093)),  # Tokyo - Sydney
    ((-1.2921, 36.8219), (47.6062, -122.3321)),  # Nairobi - Seattle
    ((64.1466, -21.9426), (-54.8019, -68.3030)),  # Reykjavik - Ushuaia
    ((1.3521, 103.8198), (19.4326, -99.1332)),  # Singapore - Mexico City
]


@pytest.mark.parametrize(("a", "b"), CITY_PAIRS)
def test_haversine_matches_wgs84_geodesic_within_spherical_error(a, b):
    _, _, ellipsoid_m = pyproj.Geod(ellps="WGS84").inv(a[1], a[0], b[1], b[0])
    d = haversine_km(a[0], a[1], b[0], b[1])
    assert abs(d - ellipsoid_m / 1000) / (ellipsoid_m / 1000) < 0.005


def test_haversine_is_vectorised_and_symmetric():
    lat1, lon1 = np.array([p[0][0] for p in CITY_PAIRS]), np.array([p[0][1] for p in CITY_PAIRS])
    lat2, lon2 = np.array([p[1][0] for p in CITY_PAIRS]), np.array([p[1][1] for p in CITY_PAIRS])
    d = haversine_km(lat1, lon1, lat2, lon2)
    assert d.shape == (len(CITY_PAIRS),)
    np.testing.assert_allclose(d, haversine_km(lat2, lon2, lat1, lon1))
    one = [haversine_km(*p[0], *p[1]) for p in CITY_PAIRS]
    np.testing.assert_allclose(d, one)


def test_antimeridian_poles_tiny_and_antipodal():
    # 0.2° of longitude on the equator across ±180, not 359.8°.
    across = haversine_km(0.0, 179.9, 0.0, -179.9)
    assert across == pytest.approx(np.radians(0.2) * EARTH_RADIUS_KM, rel=1e-9)
    # Every longitude names the same pole.
    assert haversine_km(90.0, 0.0, 90.0, 123.0) == pytest.approx(0.0, abs=1e-9)
    assert haversine_km(90.0, 0.0, -90.0, 45.0) == pytest.approx(np.pi * EARTH_RADIUS_KM)
    # A 1 mm step stays accurate (no cancellation to 0).
    step_deg = 1e-6 / (np.pi * EARTH_RADIUS_KM / 180.0)
    assert haversine_km(45.0, 10.0, 45.0 + step_deg, 10.0) == pytest.approx(1e-6, rel=1e-6)
    assert haversine_km(12.5, -33.0, 12.5, -33.0) == 0.0
    # Antipodes: half the circumference, never NaN.
    d = haversine_km(37.0, -122.0, -37.0, 58.0)
    assert d == pytest.approx(np.pi * EARTH_RADIUS_KM, rel=1e-12)
    a, b = to_xyz(37.0, -122.0), to_xyz(-37.0, 58.0)
    assert angular_distance_rad(a, b) == pytest.approx(np.pi, abs=1e-12)


def test_wrap_lon():
    np.testing.assert_allclose(wrap_lon([180.0, -180.0, 190.0, -190.0, 540.0]),
                               [-180.0, -180.0, -170.0, 170.0, -180.0])


def test_destination_bearing_round_trip():
    rng = np.random.default_rng(1)
    lat = rng.uniform(-80, 80, 200)
    lon = rng.uniform(-180, 180, 200)
    brg = rng.uniform(0, 360, 200)
    dist = rng.uniform(0.01, 15000, 200)
    lat2, lon2 = destination(lat, lon, brg, dist)
    assert np.all((lon2 >= -180) & (lon2 < 180))
    np.testing.assert_allclose(haversine_km(lat, lon, lat2, lon2), dist, rtol=1e-9, atol=1e-7)
    # Going back along the reverse bearing from the destination returns to the start.
    back = (initial_bearing_deg(lat2, lon2, lat, lon))
    lat3, lon3 = destination(lat2, lon2, back, dist)
    assert np.max(haversine_km(lat, lon, lat3, lon3)) < 1e-5
    np.testing.assert_allclose(initial_bearing_deg(lat, lon, lat2, lon2) % 360,
                               brg % 360, atol=1e-6)


def test_destination_crosses_antimeridian_and_matches_pyproj():
    _, lon2 = destination(0.0, 179.5, 90.0, 111.19508)  # ~1° of longitude east
    assert lon2 == pytest.approx(-179.5, abs=1e-3)
    g = pyproj.Geod(ellps="WGS84")
    lon_g, lat_g, _ = g.fwd(2.3522, 48.8566, 45.0, 500_000.0)
    lat_s, lon_s = destination(48.8566, 2.3522, 45.0, 500.0)
    assert haversine_km(lat_s, lon_s, lat_g, lon_g) < 500 * 0.005


def test_spherical_mean_across_antimeridian_and_weights():
    lat, lon, r = spherical_mean(np.array([10.0, -10.0]), np.array([179.0, -179.0]))
    assert abs(lat) < 1e-9 and abs(abs(lon) - 180.0) < 1e-9 and 0.9 < r < 1.0
    lat, lon, r = spherical_mean(np.array([0.0, 0.0]), np.array([0.0, 90.0]),
                                 weights=np.array([3.0, 1.0]))
    assert lat == pytest.approx(0.0, abs=1e-12)
    assert lon == pytest.approx(np.degrees(np.arctan2(1, 3)))
    _, _, r = spherical_mean(np.array([0.0, 0.0]), np.array([0.0, 180.0]))
    assert r == pytest.approx(0.0, abs=1e-12)
    # Batched: mean over the last axis of a (2, 3) array.
    lat, lon, r = spherical_mean(np.array([[1.0, 2.0, 3.0], [-5.0, -5.0, -5.0]]),
                                 np.array([[10.0, 10.0, 10.0], [170.0, 175.0, 180.0]]))
    assert lat.shape == (2,) and lat[0] == pytest.approx(2.0, abs=1e-3)
    assert lon[1] == pytest.approx(175.0, abs=1e-2)


def test_interpolate_geodesic_and_antipodes():
    lat, lon = interpolate(0.0, 170.0, 0.0, -170.0, 0.5)
    assert np.ndim(lat) == 0  # scalars in, scalars out
    assert lat == pytest.approx(0.0, abs=1e-9) and abs(abs(lon) - 180.0) < 1e-9
    t = np.linspace(0, 1, 11)
    lat, lon = interpolate(48.8566, 2.3522, 35.6762, 139.6503, t)
    total = haversine_km(48.8566, 2.3522, 35.6762, 139.6503)
    np.testing.assert_allclose(haversine_km(48.8566, 2.3522, lat, lon), t * total, atol=1e-6)
    assert haversine_km(lat[-1], lon[-1], 35.6762, 139.6503) < 1e-6
    # Antipodes: any great semicircle is a geodesic; it must still be one (no NaN).
    lat, lon = interpolate(20.0, 30.0, -20.0, -150.0, t)
    assert np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))
    np.testing.assert_allclose(haversine_km(20.0, 30.0, lat, lon), t * np.pi * EARTH_RADIUS_KM,
                               atol=1e-6)
    lat, lon = interpolate(90.0, 0.0, -90.0, 0.0, 0.5)  # pole to pole
    assert lat == pytest.approx(0.0, abs=1e-9)
