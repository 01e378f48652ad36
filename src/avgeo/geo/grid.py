"""The H3 grid: every cell of a resolution as an array, centres, areas, parents/children,
point → cell lookup, cells covering a radius or a polygon. Cells are uint64 H3 indexes."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import h3
import h3.api.numpy_int as h3n
import numpy as np

from avgeo.geo.sphere import EARTH_RADIUS_KM, haversine_km, to_xyz


@dataclass(frozen=True, eq=False)
class Grid:
    """All cells of one H3 resolution, sorted by index, with centres and areas."""

    res: int
    cells: np.ndarray  # uint64, sorted
    lat: np.ndarray  # float64 centres, degrees
    lon: np.ndarray
    area_km2: np.ndarray
    #: Derived arrays computed on first use (the grid itself is immutable).
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _derived(self, key: str, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def __len__(self) -> int:
        return int(self.cells.size)

    @property
    def xyz(self) -> np.ndarray:
        """Unit vectors of the cell centres."""
        return self._derived("xyz", lambda: to_xyz(self.lat, self.lon))

    @property
    def median_area_km2(self) -> float:
        return self._derived("median_area", lambda: float(np.median(self.area_km2)))

    @property
    def radius_km(self) -> np.ndarray:
        """Radius of the disc with each cell's area."""
        return self._derived("radius", lambda: np.sqrt(self.area_km2 / np.pi))

    def index_of(self, cells) -> np.ndarray:
        """Positions of `cells` in this grid (-1 where absent)."""
        c = np.asarray(cells, dtype=np.uint64)
        pos = np.searchsorted(self.cells, c)
        pos = np.clip(pos, 0, len(self.cells) - 1)
        return np.where(self.cells[pos] == c, pos, -1)

    def locate(self, lat, lon) -> np.ndarray:
        """Grid positions of the cells containing the points."""
        lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        cells = points_to_cells(lat_a, lon_a, self.res)
        return self.index_of(cells)

    def cells_within_km(self, lat: float, lon: float, radius_km: float) -> np.ndarray:
        """Positions of cells whose centre lies within radius_km of (lat, lon), plus the
        cell holding the point itself (a small radius still covers something)."""
        d = haversine_km(lat, lon, self.lat, self.lon)
        inside = np.flatnonzero(d <= radius_km)
        own = self.locate(lat, lon)
        return np.union1d(inside, own[own >= 0])


def all_cells(res: int) -> np.ndarray:
    """Every cell of resolution `res` (sorted uint64). Res 3: 41,162 cells."""
    if not 0 <= res <= 7:
        raise ValueError("a global grid above resolution 7 has too many cells to enumerate")
    roots = h3n.get_res0_cells()
    cells = np.concatenate([h3n.cell_to_children(r, res) for r in roots])
    return np.sort(cells.astype(np.uint64))


@lru_cache(maxsize=8)
def global_grid(res: int = 3) -> Grid:
    cells = all_cells(res)
    return grid_from_cells(cells, res)


def grid_from_cells(cells, res: int) -> Grid:
    cells = np.sort(np.asarray(cells, dtype=np.uint64))
    ll = np.array([h3n.cell_to_latlng(c) for c in cells], dtype=np.float64).reshape(-1, 2)
    area = np.array([h3n.cell_area(c, "km^2") for c in cells], dtype=np.float64)
    # h3 computes areas on a sphere of its own radius (6371.007180918475 km); rescale to ours.
    area *= (EARTH_RADIUS_KM / 6371.007180918475) ** 2
    return Grid(res=res, cells=cells, lat=ll[:, 0], lon=ll[:, 1], area_km2=area)


def points_to_cells(lat, lon, res: int) -> np.ndarray:
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    out = np.empty(lat.shape, dtype=np.uint64)
    for i, (a, b) in enumerate(zip(lat.ravel(), lon.ravel(), strict=True)):
        out.ravel()[i] = h3n.latlng_to_cell(a, b, res)
    return out


def cell_parents(cells, res: int) -> np.ndarray:
    return np.array([h3n.cell_to_parent(c, res) for c in np.asarray(cells, dtype=np.uint64)],
                    dtype=np.uint64)


def cell_children(cell, res: int) -> np.ndarray:
    return np.sort(np.asarray(h3n.cell_to_children(np.uint64(cell), res), dtype=np.uint64))


def cell_boundary(cell) -> list[tuple[float, float]]:
    """Polygon vertices (lat, lon) of one cell."""
    return list(h3.cell_to_boundary(h3.int_to_str(int(cell))))


def cell_to_str(cell) -> str:
    return h3.int_to_str(int(cell))


def cell_boundaries(cells) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of many cells as (n, 6) lat and lon arrays; pentagons (5 vertices) and
    cells with extra distortion vertices are resampled to 6 along their own boundary."""
    cells = np.asarray(cells, dtype=np.uint64)
    lat = np.empty((cells.size, 6))
    lon = np.empty((cells.size, 6))
    for i, c in enumerate(cells):
        b = np.asarray(h3n.cell_to_boundary(c), dtype=np.float64)
        if len(b) != 6:
            b = b[np.linspace(0, len(b), 6, endpoint=False).astype(int)]
        lat[i], lon[i] = b[:, 0], b[:, 1]
    return lat, lon


def _split_antimeridian(lonlat: np.ndarray):
    """Planar (lon, lat) polygon for a small spherical ring, cut into pieces inside
    [-180, 180] when it crosses the antimeridian; rings round a pole are closed at it."""
    import shapely
    from shapely.geometry import Polygon

    ring = lonlat.copy()
    d = np.diff(ring[:, 0])
    ring[1:, 0] = ring[0, 0] + np.cumsum(d - 360.0 * np.round(d / 360.0))
    net = ring[-1, 0] - ring[0, 0] + _wrap_delta(ring[0, 0] - ring[-1, 0])
    if abs(net) > 180.0:  # encircles a pole
        pole = 90.0 if ring[:, 1].mean() > 0 else -90.0
        end = ring[-1, 0] + _wrap_delta(ring[0, 0] - ring[-1, 0])
        ring = np.vstack([ring, [[end, ring[0, 1]], [end, pole], [ring[0, 0], pole]]])
    poly = shapely.make_valid(Polygon(ring))
    if ring[:, 0].min() >= -180.0 and ring[:, 0].max() <= 180.0:
        return poly
    pieces = []
    for k in (-1, 0, 1):
        piece = shapely.intersection(poly, shapely.box(-180 + 360 * k, -90, 180 + 360 * k, 90))
        if not piece.is_empty:
            pieces.append(shapely.transform(piece, lambda xy, k=k: xy - [360.0 * k, 0.0]))
    return shapely.union_all(pieces)


def _wrap_delta(d: float) -> float:
    return float(d - 360.0 * np.round(d / 360.0))


def cell_polygon(cell):
    """The cell as a shapely geometry in the (lon, lat) plane, split at the antimeridian
    and closed over a pole, so planar predicates against country polygons are right."""
    b = np.asarray(h3n.cell_to_boundary(np.uint64(cell)), dtype=np.float64)
    return _split_antimeridian(b[:, ::-1])


def cells_in_polygon(geom, res: int, contain: str = "center") -> np.ndarray:
    """Sorted cells of resolution `res` covering a shapely (Multi)Polygon given in (lon, lat)
    degrees. contain='center': cells whose centre is inside (h3shape_to_cells);
    'overlap': every cell touching the polygon; 'full': cells entirely inside."""
    from shapely.geometry import MultiPolygon, Polygon

    if isinstance(geom, Polygon):
        polys = [geom]
    elif isinstance(geom, MultiPolygon):
        polys = list(geom.geoms)
    else:
        raise TypeError(f"expected a shapely Polygon or MultiPolygon, got {type(geom).__name__}")
    out: list[int] = []
    for p in polys:
        if p.is_empty:
            continue
        shape = h3.LatLngPoly([(y, x) for x, y in p.exterior.coords[:-1]],
                              *[[(y, x) for x, y in r.coords[:-1]] for r in p.interiors])
        if contain == "center":
            cells = h3.h3shape_to_cells(shape, res)
        else:
            cells = h3.h3shape_to_cells_experimental(shape, res, contain=contain)
        out.extend(h3.str_to_int(c) for c in cells)
    return np.unique(np.asarray(out, dtype=np.uint64))


def cell_polygons(cells) -> np.ndarray:
    """cell_polygon for many cells at once (object array of shapely geometries); only cells
    that cross the antimeridian or hold a pole take the slow path."""
    import shapely

    cells = np.asarray(cells, dtype=np.uint64)
    rings = [np.asarray(h3n.cell_to_boundary(c), dtype=np.float64)[:, ::-1] for c in cells]
    simple = np.array([np.ptp(r[:, 0]) < 180.0 for r in rings], dtype=bool)
    out = np.empty(cells.size, dtype=object)
    idx = np.flatnonzero(simple)
    if idx.size:
        coords = np.concatenate([np.vstack([rings[i], rings[i][:1]]) for i in idx])
        ring_id = np.repeat(np.arange(idx.size), [len(rings[i]) + 1 for i in idx])
        out[idx] = shapely.polygons(shapely.linearrings(coords, indices=ring_id))
    for i in np.flatnonzero(~simple):
        out[i] = _split_antimeridian(rings[i])
    return out
