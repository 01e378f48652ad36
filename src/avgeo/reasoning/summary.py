"""Read a posterior: point estimates, top-k candidate regions (connected cell groups) and
highest-posterior-density credible regions with their areas."""

from __future__ import annotations

from dataclasses import dataclass

import h3.api.numpy_int as h3n
import numpy as np

from avgeo.atoms import Atom
from avgeo.geo.grid import Grid, cell_to_str
from avgeo.geo.sphere import haversine_km, spherical_mean
from avgeo.reasoning.fusion import Posterior
from avgeo.reasoning.likelihood import PointLikelihood


@dataclass
class Region:
    lat: float
    lon: float
    probability: float
    area_km2: float
    n_cells: int


@dataclass
class CredibleRegion:
    level: float
    probability: float  # mass actually covered (>= level)
    area_km2: float
    n_cells: int
    cells: list[str]  # H3 indexes, highest density first (capped)


def hpd_order(log_prob: np.ndarray, area_km2: np.ndarray) -> np.ndarray:
    """Cell positions by decreasing posterior density (probability per km²)."""
    return np.argsort(-(log_prob - np.log(area_km2)), kind="stable")


def credible_region(cells: np.ndarray, area_km2: np.ndarray, log_prob: np.ndarray,
                    level: float, max_cells_listed: int = 500) -> CredibleRegion:
    """Smallest-area set of cells holding `level` of the mass (highest posterior density).
    Cells may mix resolutions (a refined support)."""
    order = hpd_order(log_prob, area_km2)
    p = np.exp(log_prob[order])
    cum = np.cumsum(p)
    n = int(min(np.searchsorted(cum, level - 1e-12) + 1, len(order)))
    sel = order[:n]
    return CredibleRegion(level=level, probability=float(min(cum[n - 1], 1.0)),
                          area_km2=float(area_km2[sel].sum()), n_cells=n,
                          cells=[cell_to_str(c) for c in cells[sel[:max_cells_listed]]])


def credible_sets(cells: np.ndarray, area_km2: np.ndarray, log_prob: np.ndarray,
                  levels) -> dict[float, tuple[CredibleRegion, np.ndarray]]:
    """Per level, the credible region (no cells listed) and its full cell set, sorted
    (uint64; may mix resolutions), for checking whether a truth falls inside."""
    order = hpd_order(log_prob, area_km2)
    out = {}
    for q in levels:
        cr = credible_region(cells, area_km2, log_prob, q, max_cells_listed=0)
        out[q] = (cr, np.sort(cells[order[:cr.n_cells]]))
    return out


def point_in_cells(cells: np.ndarray, lat: float, lon: float) -> bool:
    """Is the point inside one of these H3 cells (uint64, any mix of resolutions)?"""
    cells = np.asarray(cells, dtype=np.uint64)
    if not cells.size:
        return False
    res = np.array([h3n.get_resolution(c) for c in np.unique(cells)])
    return any(np.isin(np.uint64(h3n.latlng_to_cell(lat, lon, int(r))), cells)
               for r in np.unique(res))


def top_regions(post: Posterior, k: int = 5, mass: float = 0.999,
                max_cells: int = 3000) -> list[Region]:
    """Connected groups of high-posterior cells, by total probability."""
    grid = post.grid
    order = hpd_order(post.log_prob, grid.area_km2)
    cum = np.cumsum(post.prob[order])
    n = int(min(np.searchsorted(cum, mass) + 1, max_cells, len(order)))
    keep = order[:n]
    in_set = dict(zip(grid.cells[keep].tolist(), keep.tolist(), strict=True))
    label: dict[int, int] = {}
    comps: list[list[int]] = []
    for pos in keep.tolist():
        c = int(grid.cells[pos])
        if c in label:
            continue
        comp_id = len(comps)
        stack, members = [c], []
        label[c] = comp_id
        while stack:
            cur = stack.pop()
            members.append(in_set[cur])
            for nb in h3n.grid_disk(np.uint64(cur), 1):
                nb = int(nb)
                if nb in in_set and nb not in label:
                    label[nb] = comp_id
                    stack.append(nb)
        comps.append(members)
    out = []
    for members in comps:
        idx = np.asarray(members)
        p = post.prob[idx]
        best = idx[np.argmax(p - 0.0)]
        out.append(Region(lat=float(grid.lat[best]), lon=float(grid.lon[best]),
                          probability=float(p.sum()), area_km2=float(grid.area_km2[idx].sum()),
                          n_cells=len(idx)))
    out.sort(key=lambda r: -r.probability)
    return out[:k]


@dataclass
class PointEstimate:
    lat: float
    lon: float
    method: str  # "point-atoms" | "mode" | "local-mean"


def point_estimate(post: Posterior, atoms: list[Atom]) -> PointEstimate:
    """Best single coordinate.

    If precise point atoms (GPS fixes, sigma below the cell scale) sit in the mode cell's
    neighbourhood, the within-cell posterior is dominated by them, so their precision-weighted
    spherical mean is the estimate. Otherwise the posterior-weighted mean of the mode cell and
    its neighbours (a local mean: robust, and never lands between two distant modes).
    """
    grid: Grid = post.grid
    mode = int(np.argmax(post.log_prob - np.log(grid.area_km2)))
    scale_km = float(np.sqrt(np.median(grid.area_km2)))
    pts = []
    for a in atoms:
        lik = a.likelihood
        if isinstance(lik, PointLikelihood) and lik.sigma_km < scale_km:
            d = float(haversine_km(lik.lat, lik.lon, grid.lat[mode], grid.lon[mode]))
            if d <= 1.5 * scale_km:
                w = max(a.confidence, 1e-6) / max(lik.sigma_km, 1e-3) ** 2
                pts.append((lik.lat, lik.lon, w))
    if pts:
        arr = np.asarray(pts)
        lat, lon, _ = spherical_mean(arr[:, 0], arr[:, 1], arr[:, 2])
        return PointEstimate(float(lat), float(lon), "point-atoms")
    nbrs = np.array([int(c) for c in h3n.grid_disk(np.uint64(grid.cells[mode]), 1)],
                    dtype=np.uint64)
    pos = grid.index_of(nbrs)
    pos = pos[pos >= 0]
    w = post.prob[pos]
    if w.sum() <= 0:
        return PointEstimate(float(grid.lat[mode]), float(grid.lon[mode]), "mode")
    lat, lon, _ = spherical_mean(grid.lat[pos], grid.lon[pos], w)
    return PointEstimate(float(lat), float(lon), "local-mean")
