"""Chain of Region: countries from polygons, continents, admin-1 and places, cell labels."""

from __future__ import annotations

import time

import numpy as np
import pytest

from avgeo.geo import regions
from avgeo.geo.grid import global_grid


def test_every_located_manifest_row_gets_its_country(manifest):
    rows = [r for r in manifest if r["lat"] and r["lon"]]
    assert len(rows) >= 10
    lat = np.array([float(r["lat"]) for r in rows])
    lon = np.array([float(r["lon"]) for r in rows])
    got = regions.country_of_points(lat, lon)
    assert got.tolist() == [r["country"] for r in rows]
    # Same answers without the coastal tolerance: none of these is a harbour case.
    assert regions.country_of_points(lat, lon, coast_km=0.0).tolist() == got.tolist()


def test_sea_antimeridian_poles_and_enclaves():
    pts = {
        (30.0, -40.0): "",  # mid-Atlantic
        (-50.0, -140.0): "",  # Southern Pacific
        (-17.8, 178.0): "FJ",  # Viti Levu, west of the antimeridian
        (-16.7, -179.9): "FJ",  # Fiji east of it (Vanua Levu / Taveuni side)
        (66.0, 179.99): "RU",  # Chukotka on both sides of 180
        (67.0, -175.0): "RU",
        (-75.0, 0.0): "AQ",
        (-89.9, 45.0): "AQ",
        (89.9, 0.0): "",  # the North Pole is sea
        (-29.6, 28.2): "LS",  # enclave inside South Africa
        (43.9424, 12.4578): "SM",
        (42.6629, 21.1655): "XK",  # Pristina (no ISO numeric id in Natural Earth)
        (9.56, 44.06): "SO",  # Hargeisa, Somaliland → Somalia
        (35.19, 33.36): "CY",  # north Nicosia
    }
    lat = np.array([k[0] for k in pts])
    lon = np.array([k[1] for k in pts])
    got = regions.country_of_points(lat, lon)
    assert dict(zip(pts, got.tolist(), strict=True)) == pts
    # Broadcast shape is kept and longitudes outside [-180, 180) are wrapped.
    assert regions.country_of_points(np.array([[48.85]]), np.array([[362.35]])).tolist() \
        == [["FR"]]


def test_lookup_agrees_with_a_plain_polygon_test():
    import shapely

    c = regions._countries()
    rng = np.random.default_rng(7)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    lon = rng.uniform(-180, 180, 3000)
    fast = regions.country_of_points(lat, lon, coast_km=0.0)
    hit_p, hit_g = shapely.STRtree(c.geoms).query(shapely.points(lon, lat),
                                                  predicate="intersects")
    slow = np.full(lat.shape, "", dtype="<U2")
    slow[hit_p] = c.codes[c.poly_code[hit_g]]
    assert np.array_equal(fast, slow)


def test_coast_tolerance_only_reaches_a_few_km():
    # Just off a Natural Earth coast (Nice): land with the tolerance, sea without a coast.
    pt_lat, pt_lon = 43.67, 7.27  # Baie des Anges, ~1-3 km offshore of the 1:50m coast
    assert regions.country_of_points(pt_lat, pt_lon, coast_km=5.0).tolist() == ["FR"]
    assert regions.country_of_points(43.3, 7.27, coast_km=5.0).tolist() == [""]  # 40 km out


@pytest.mark.parametrize(("lat", "lon", "cont", "cc", "admin1_code", "city"), [
    (48.8566, 2.3522, "EU", "FR", "FR-IDF", "Paris"),
    (47.6062, -122.3321, "NA", "US", "US-WA", "Seattle"),
    (35.6895, 139.6917, "AS", "JP", "JP-13", "Tokyo"),
    (-33.8688, 151.2093, "OC", "AU", "AU-NSW", "Sydney"),
    (-1.2864, 36.8172, "AF", "KE", "KE-30", "Nairobi"),
])
def test_chain_of_region_for_capitals(lat, lon, cont, cc, admin1_code, city):
    row = regions.chain_of_region(lat, lon).iloc[0]
    assert list(row.index) == list(regions.CHAIN_COLUMNS)
    assert row.continent_code == cont and row.continent == regions.continent_name(cont)
    assert row.country_code == cc and row.country == regions.country_name(cc)
    assert row.admin1 and row.admin1_code == admin1_code
    assert row.city == city and row.city_distance_km < 5.0
    assert row.city_population > 500_000
    assert regions.chain_of_region(lat, lon).shape == (1, len(regions.CHAIN_COLUMNS))


def test_chain_at_sea_antarctica_and_across_borders():
    df = regions.chain_of_region(np.array([30.0, -80.0, 47.5596, -17.8]),
                                 np.array([-40.0, 30.0, 7.5886, 178.0]))
    sea = df.iloc[0]
    assert (sea.country_code, sea.continent_code, sea.admin1, sea.city) == ("", "", "", "")
    assert np.isnan(sea.city_distance_km)
    ant = df.iloc[1]
    assert (ant.continent_code, ant.country_code) == ("AN", "AQ") and ant.admin1 == ""
    # Basel sits on the CH/DE/FR tripoint; its admin-1 maps through the GeoNames code.
    basel = df.iloc[2]
    assert (basel.country_code, basel.admin1_code, basel.city) == ("CH", "CH-BS", "Basel")
    fiji = df.iloc[3]
    assert fiji.continent_code == "OC" and fiji.country == "Fiji" and fiji.admin1


def test_continents_and_names():
    got = regions.continent_of(np.array(["FR", "BR", "EG", "RU", "AQ", "NZ", "CN", "", "ZZ"]))
    assert got.tolist() == ["EU", "SA", "AF", "EU", "AN", "OC", "AS", "", ""]
    assert regions.country_name("XK") == "Kosovo" and regions.country_name("") == ""
    assert regions.continent_name("NA") == "North America"
    # Every country that has a polygon has a continent.
    codes = regions._countries().codes
    assert np.all(regions.continent_of(codes) != "")


def test_cell_countries_res2_and_warm_speed():
    g = global_grid(2)
    codes = regions.cell_countries(g)
    assert codes.shape == (len(g),) and codes.dtype.kind == "U"
    paris = g.locate(48.8566, 2.3522)[0]
    assert codes[paris] == "FR"
    assert codes[g.locate(30.0, -40.0)[0]] == ""
    # Coastal and island cells are land, not sea: Sydney, Honolulu, Mauritius.
    for la, lo, cc in [(-33.8688, 151.2093, "AU"), (21.3069, -157.8583, "US"),
                       (-20.16, 57.50, "MU")]:
        assert codes[g.locate(la, lo)[0]] == cc
    frac_land = np.mean(codes != "")
    assert 0.3 < frac_land < 0.5
    assert set(regions.country_cells("FR", g)) >= {paris}
    regions._CELL_COUNTRIES.clear()
    t = time.perf_counter()
    again = regions.cell_countries(g)  # from disk
    assert time.perf_counter() - t < 0.05
    assert np.array_equal(again, codes)


@pytest.mark.slow
def test_cell_countries_res3_warm_under_50ms():
    g = global_grid(3)
    regions.cell_countries(g)
    regions._CELL_COUNTRIES.clear()
    t = time.perf_counter()
    regions.cell_countries(g)
    assert time.perf_counter() - t < 0.05


def test_place_is_always_in_the_points_country():
    # Near borders the nearest place overall is often across the border (Strasbourg/Kehl,
    # Konstanz/Kreuzlingen, El Paso/Juárez): the chosen place must share the country.
    rng = np.random.default_rng(3)
    lat = rng.uniform(35, 60, 4000)
    lon = rng.uniform(-10, 30, 4000)
    cc = regions.country_of_points(lat, lon)
    row, dist_km = regions.nearest_place(lat, lon, cc)
    g = regions._gazetteer()
    land = cc != ""
    assert np.all(row[land] >= 0) and np.all(row[~land] == -1)
    assert np.array_equal(g.cc[row[land]], cc[land])
    assert np.all(dist_km[land] < 300.0)


def test_cell_country_shares_split_straddling_cells():
    g = global_grid(3)
    codes, shares = regions.cell_country_shares(g)
    assert shares.shape == (len(g), len(codes))
    row_sum = np.asarray(shares.sum(axis=1)).ravel()
    assert np.all(row_sum <= 1.0 + 1e-9)
    labels = regions.cell_countries(g)
    assert np.all(row_sum[labels == ""] == 0.0)
    # The Øresund cell holding Lund is shared between Sweden and Denmark, mostly sea.
    i = g.locate(55.698167, 13.195389)[0]
    row = shares.getrow(i).toarray().ravel()
    got = {str(codes[k]): row[k] for k in np.flatnonzero(row)}
    assert set(got) == {"SE", "DK"} and 0.2 < sum(got.values()) < 0.6
    assert labels[i] == max(got, key=got.get)
    # Deep inland cells are wholly one country.
    j = g.locate(50.0, 100.0)[0]  # Mongolia
    assert labels[j] == "MN" and shares.getrow(j).sum() == pytest.approx(1.0)
