"""The H3 grid: every cell of a resolution as an array, centres, areas, parents/children,
point → cell lookup and cells covering a radius. Cells are uint64 H3 indexes."""

from __future__ import annotations

from dataclasses import dataclass
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

    def __len__(self) -> int:
        return int(self.cells.size)

    @property
    def xyz(self) -> np.ndarray:
        return _xyz(self)

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


_XYZ_CACHE: dict[int, np.ndarray] = {}


def _xyz(grid: Grid) -> np.ndarray:
    if grid.res not in _XYZ_CACHE:
        _XYZ_CACHE[grid.res] = to_xyz(grid.lat, grid.lon)
    return _XYZ_CACHE[grid.res]


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
