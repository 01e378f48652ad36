"""The H3 grid: areas, lookup, hierarchy, cells covering a radius or a polygon."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from avgeo.geo.grid import (
    cell_children,
    cell_parents,
    cell_polygon,
    cell_polygons,
    cells_in_polygon,
    global_grid,
    grid_from_cells,
    points_to_cells,
)
from avgeo.geo.sphere import EARTH_AREA_KM2, haversine_km


@pytest.mark.parametrize("res", [0, 1, 2, 3])
def test_cell_areas_sum_to_the_sphere(res):
    g = global_grid(res)
    assert len(g) == 2 + 120 * 7**res
    assert np.all(np.diff(g.cells.astype(np.uint64)) > 0)
    assert g.area_km2.sum() == pytest.approx(EARTH_AREA_KM2, rel=1e-3)


def test_locate_index_of_and_hierarchy():
    g2, g3 = global_grid(2), global_grid(3)
    lat, lon = np.array([48.8566, -33.8688, 0.0, -89.9]), np.array([2.3522, 151.2093, 180.0, 0])
    pos = g3.locate(lat, lon)
    assert np.all(pos >= 0)
    # The cell found holds the point: its centre is within one cell radius.
    assert np.all(haversine_km(lat, lon, g3.lat[pos], g3.lon[pos]) < 80.0)
    parents = cell_parents(g3.cells[pos], 2)
    np.testing.assert_array_equal(parents, g2.cells[g2.locate(lat, lon)])
    kids = cell_children(parents[0], 3)
    assert g3.cells[pos[0]] in kids and len(kids) == 7
    assert g3.index_of(np.array([0, g3.cells[5]], dtype=np.uint64)).tolist() == [-1, 5]
    np.testing.assert_array_equal(points_to_cells(lat, lon, 3), g3.cells[pos])


def test_cells_within_radius():
    g = global_grid(3)
    near = g.cells_within_km(47.6062, -122.3321, 300.0)
    d = haversine_km(47.6062, -122.3321, g.lat[near], g.lon[near])
    assert np.all(d <= 300.0 + 80.0)
    assert 20 < len(near) < 60  # ~ π·300² / 12,400 km² per cell
    tiny = g.cells_within_km(47.6062, -122.3321, 0.001)
    assert tiny.tolist() == g.locate(47.6062, -122.3321).tolist()


def test_cells_in_polygon_modes():
    box = shapely.box(2.0, 48.0, 4.0, 50.0)  # (lon, lat) degrees around Paris
    centre = cells_in_polygon(box, 4)
    overlap = cells_in_polygon(box, 4, contain="overlap")
    assert len(centre) > 10 and set(centre) <= set(overlap) and len(overlap) > len(centre)
    cg = grid_from_cells(centre, 4)
    assert np.all(shapely.contains_xy(box, cg.lon, cg.lat))
    # A polygon smaller than a cell has no centre inside it but is still overlapped.
    dot = shapely.box(2.35, 48.85, 2.36, 48.86)
    assert len(cells_in_polygon(dot, 3)) == 0
    assert len(cells_in_polygon(dot, 3, contain="overlap")) == 1
    with pytest.raises(TypeError):
        cells_in_polygon(shapely.Point(0, 0), 3)


def test_cell_polygon_splits_at_antimeridian_and_closes_poles():
    g = global_grid(2)
    crossing = g.cells[np.argmin(np.abs(np.abs(g.lon) - 180.0) + np.abs(g.lat))]
    poly = cell_polygon(crossing)
    xmin, _, xmax, _ = poly.bounds
    assert xmin >= -180.0 and xmax <= 180.0
    assert poly.geom_type == "MultiPolygon" or xmax - xmin < 30.0
    assert poly.area < 10.0  # a res-2 cell is a few square degrees near the equator
    north = g.cells[g.locate(90.0, 0.0)[0]]
    cap = cell_polygon(north)
    assert cap.contains(shapely.Point(45.0, 89.9)) and cap.contains(shapely.Point(-135.0, 89.9))
    assert not cap.contains(shapely.Point(0.0, 60.0))


def test_xyz_belongs_to_each_grid_not_to_its_resolution():
    g = global_grid(2)
    sub = grid_from_cells(g.cells[:10], 2)
    assert sub.xyz.shape == (10, 3)
    assert g.xyz.shape == (len(g), 3)
    np.testing.assert_allclose(sub.xyz, g.xyz[:10])


def test_cell_polygons_bulk_matches_single():
    g = global_grid(1)
    bulk = cell_polygons(g.cells)
    single = [cell_polygon(c) for c in g.cells]
    areas = shapely.area(bulk)
    np.testing.assert_allclose(areas, shapely.area(single), rtol=1e-9)
    # Every cell's own centre is inside its planar polygon, antimeridian and poles included.
    assert np.all(shapely.contains_xy(bulk, g.lon, g.lat) | shapely.intersects(
        bulk, shapely.points(g.lon, g.lat)))
