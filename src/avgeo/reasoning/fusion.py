"""Bayesian fusion: prior + tempered, pooled atom log-likelihoods → posterior over H3 cells,
refined to a finer resolution inside the top candidates."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from scipy.special import logsumexp

from avgeo.atoms import Atom
from avgeo.geo.grid import Grid, cell_children, global_grid, grid_from_cells

COARSE_RES = 3
FINE_RES = 5


@dataclass
class FusionWeights:
    """Per-engine reliability weights (tempering exponents on atom log-likelihoods)."""

    engine_weight: dict[str, float] = field(default_factory=dict)
    default_weight: float = 1.0
    #: Extra weight per doubling of repeated near-duplicate atoms (pooled evidence grows
    #: only logarithmically with repeats: 40 windows of one species are not 40 species).
    pool_alpha: float = 0.25
    prior: str = "photo"
    prior_weight: float = 1.0
    version: int = 1
    trained_on: str = "untrained defaults"

    def weight(self, engine: str) -> float:
        return float(self.engine_weight.get(engine, self.default_weight))

    @classmethod
    def load(cls, path: str | None = None) -> FusionWeights:
        if path is None:
            ref = resources.files("avgeo.reasoning").joinpath("weights/fusion_v2.json")
            if not ref.is_file():
                return cls()
            data = json.loads(ref.read_text())
        else:
            from avgeo.errors import WeightsError

            try:
                with open(path) as fh:
                    data = json.load(fh)
            except (OSError, ValueError) as exc:
                raise WeightsError(f"cannot read fusion weights {path}: {exc}") from exc
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class AtomGroup:
    """Near-duplicate atoms pooled into one piece of evidence."""

    key: str
    engine: str
    atoms: list[Atom]
    weight: float  # engine weight × pooling factor

    @property
    def best(self) -> Atom:
        return max(self.atoms, key=lambda a: a.confidence)


def group_atoms(atoms: list[Atom], weights: FusionWeights) -> list[AtomGroup]:
    by_key: dict[str, list[Atom]] = defaultdict(list)
    for a in atoms:
        if a.likelihood is not None:
            by_key[f"{a.engine}:{a.pool_key}"].append(a)
    groups = []
    for key, members in by_key.items():
        n = len(members)
        pool = 1.0 + weights.pool_alpha * np.log2(n)
        groups.append(AtomGroup(key, members[0].engine, members,
                                weights.weight(members[0].engine) * pool))
    return groups


def global_log_mean(logl: np.ndarray, grid: Grid) -> float:
    """log of the area-weighted mean of exp(logl) over a global grid."""
    m = float(np.max(logl))
    # Clamped so that exp never yields subnormals (10-100× slower on x86); terms below
    # e^-700 of the peak cannot change the mean.
    w = np.exp(np.maximum(logl - m, -700.0))
    return m + float(np.log(np.dot(w, grid.area_km2) / grid.area_km2.sum()))


def tempered_map(atom: Atom, logl: np.ndarray, log_mean: float) -> np.ndarray:
    """Mix an atom's map with 'the detection is false' by its confidence c.

    The map is first scaled so that its area-weighted mean over the globe is 1: a false
    detection is then as likely everywhere as the evidence is on average, and
    log(c·L/mean(L) + (1 − c)) keeps a sharp atom (a GPS fix: one cell in 41k) decisive
    even at moderate confidence, while a broad one (a continent) stays mild.
    """
    c = float(np.clip(atom.confidence, 0.0, 1.0))
    if c <= 0.0:
        return np.zeros_like(logl)
    scaled = logl - log_mean
    if c >= 1.0:
        return scaled
    # The clamp keeps logaddexp off subnormals; log1p(-c) ≥ -37 dominates there anyway.
    return np.logaddexp(np.log(c) + np.maximum(scaled, -700.0), np.log1p(-c))


def atom_map(atom: Atom, grid: Grid, coarse_map: np.ndarray | None = None,
             parent_idx: np.ndarray | None = None,
             area_share: np.ndarray | None = None) -> np.ndarray:
    """The atom's log map on `grid`.

    On a refined grid (`parent_idx` given), maps with no sub-cell structure are broadcast
    from the coarse map; the others are rendered and then rescaled per parent so that the
    area-weighted mean over a parent's children equals the parent's coarse value. That
    keeps refined and coarse cells on one scale (a density), so a 10 m GPS fix puts ~49×
    the coarse value on the one res-5 child that holds it, and mixed supports stay exact.
    """
    lik = atom.likelihood
    assert lik is not None
    if coarse_map is None:
        return lik.log_map(grid)
    if parent_idx is None:  # `grid` is the coarse grid itself
        return coarse_map
    if not lik.resolves_subcell:
        return coarse_map[parent_idx]
    raw = lik.log_map(grid)
    assert area_share is not None
    order = np.argsort(parent_idx, kind="stable")
    pid = parent_idx[order]
    starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
    vals = raw[order] + np.log(area_share[order])
    mx = np.maximum.reduceat(vals, starts)
    seg_mx = np.repeat(mx, np.diff(np.r_[starts, len(pid)]))
    lse = mx + np.log(np.add.reduceat(np.exp(vals - seg_mx), starts))
    per_child = np.empty_like(raw)
    per_child[order] = np.repeat(lse, np.diff(np.r_[starts, len(pid)]))
    return raw - per_child + coarse_map[parent_idx]


def group_map(group: AtomGroup, grid: Grid, coarse: dict[int, np.ndarray] | None = None,
              parent_idx: np.ndarray | None = None,
              log_means: dict[int, float] | None = None,
              area_share: np.ndarray | None = None) -> np.ndarray:
    """Confidence-weighted mean of the members' tempered maps, times the group weight.

    `grid` must be global unless `log_means` (from the global coarse maps) is given."""
    total = sum(max(a.confidence, 1e-6) for a in group.atoms)
    acc: np.ndarray | None = None
    for a in group.atoms:
        cm = None if coarse is None else coarse[id(a)]
        raw = atom_map(a, grid, cm, parent_idx, area_share)
        lm = log_means[id(a)] if log_means is not None else global_log_mean(raw, grid)
        m = tempered_map(a, raw, lm)
        f = group.weight * max(a.confidence, 1e-6) / total
        acc = m * f if acc is None else acc + m * f
    assert acc is not None
    return acc


def prior_log(grid: Grid, name: str) -> np.ndarray:
    """Log prior per cell of `grid` (normalised). 'uniform' is proportional to area."""
    if name == "uniform":
        lp = np.log(grid.area_km2)
    else:
        from avgeo.geo import priors

        fn = {"photo": priors.photo_prior, "population": priors.population_prior}.get(name)
        if name == "flow":
            from avgeo.precision.prior_map import flow_prior as fn
        if fn is None:
            from avgeo.errors import ConfigError

            raise ConfigError(f"unknown prior {name!r}",
                              "use photo, population, flow or uniform")
        lp = fn(grid)
    return lp - logsumexp(lp)


@dataclass
class Posterior:
    """Posterior over the cells of a grid plus what produced it."""

    grid: Grid
    log_prob: np.ndarray  # normalised: logsumexp == 0
    log_prior: np.ndarray
    group_maps: dict[str, np.ndarray]
    groups: list[AtomGroup]

    @property
    def prob(self) -> np.ndarray:
        return np.exp(self.log_prob)

    def without(self, keys: set[str]) -> Posterior:
        """The exact posterior with some atom groups removed."""
        lp = self.log_prior.copy()
        for k, m in self.group_maps.items():
            if k not in keys:
                lp += m
        lp -= logsumexp(lp)
        return Posterior(self.grid, lp, self.log_prior,
                         {k: m for k, m in self.group_maps.items() if k not in keys},
                         [g for g in self.groups if g.key not in keys])


def _posterior(grid: Grid, log_prior: np.ndarray, groups: list[AtomGroup],
               maps: dict[str, np.ndarray]) -> Posterior:
    lp = log_prior.copy()
    for m in maps.values():
        lp += m
    lp -= logsumexp(lp)
    return Posterior(grid, lp, log_prior, maps, groups)


@dataclass
class Support:
    """The posterior on a mixed-resolution support: the refined (fine) cells where most of
    the mass is, and the coarse cells elsewhere. Sums to one; labels and contributions are
    read here so that a border city is not labelled by a 12,000 km² coarse cell."""

    cells: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    area_km2: np.ndarray
    is_fine: np.ndarray
    log_prob: np.ndarray
    log_prior: np.ndarray
    group_maps: dict[str, np.ndarray]

    @property
    def prob(self) -> np.ndarray:
        return np.exp(self.log_prob)

    def without(self, keys: set[str]) -> Support:
        lp = self.log_prior.copy()
        for k, m in self.group_maps.items():
            if k not in keys:
                lp += m
        lp -= logsumexp(lp)
        return Support(self.cells, self.lat, self.lon, self.area_km2, self.is_fine, lp,
                       self.log_prior, {k: m for k, m in self.group_maps.items()
                                        if k not in keys})


@dataclass
class FusionResult:
    coarse: Posterior
    fine: Posterior | None
    fine_parent_idx: np.ndarray | None  # fine cell → coarse grid position
    fine_mass: float  # coarse posterior mass covered by the refined cells

    def support(self) -> Support:
        c = self.coarse
        if self.fine is None or self.fine_parent_idx is None:
            return Support(c.grid.cells, c.grid.lat, c.grid.lon, c.grid.area_km2,
                           np.zeros(len(c.grid), bool), c.log_prob, c.log_prior, c.group_maps)
        f = self.fine
        rest = np.ones(len(c.grid), bool)
        rest[np.unique(self.fine_parent_idx)] = False
        # Refined maps are on the coarse maps' scale (see atom_map), so one normalisation
        # over the mixed support is exact.
        cat = np.concatenate
        lprior = cat([f.log_prior, c.log_prior[rest]])
        maps = {k: cat([f.group_maps[k], c.group_maps[k][rest]]) for k in c.group_maps}
        lp = lprior + sum(maps.values()) if maps else lprior.copy()
        return Support(cat([f.grid.cells, c.grid.cells[rest]]), cat([f.grid.lat, c.grid.lat[rest]]),
                       cat([f.grid.lon, c.grid.lon[rest]]),
                       cat([f.grid.area_km2, c.grid.area_km2[rest]]),
                       cat([np.ones(len(f.grid), bool), np.zeros(int(rest.sum()), bool)]),
                       lp - logsumexp(lp), lprior, maps)


def fuse(atoms: list[Atom], weights: FusionWeights | None = None, *,
         coarse_res: int = COARSE_RES, fine_res: int = FINE_RES, refine_mass: float = 0.99,
         max_refine_cells: int = 60) -> FusionResult:
    """Fuse atoms into a posterior at `coarse_res`, refined to `fine_res` inside the cells
    holding `refine_mass` of the posterior (at most `max_refine_cells` coarse cells)."""
    weights = weights or FusionWeights.load()
    grid = global_grid(coarse_res)
    groups = group_atoms(atoms, weights)
    atom_coarse: dict[int, np.ndarray] = {}
    log_means: dict[int, float] = {}
    maps: dict[str, np.ndarray] = {}
    for g in groups:
        for a in g.atoms:
            atom_coarse[id(a)] = a.likelihood.log_map(grid)  # type: ignore[union-attr]
            log_means[id(a)] = global_log_mean(atom_coarse[id(a)], grid)
        maps[g.key] = group_map(g, grid, atom_coarse, None, log_means)
    lprior = weights.prior_weight * prior_log(grid, weights.prior)
    lprior -= logsumexp(lprior)
    coarse = _posterior(grid, lprior, groups, maps)
    if fine_res <= coarse_res:
        return FusionResult(coarse, None, None, 1.0)

    order = np.argsort(-coarse.log_prob)
    cum = np.cumsum(np.exp(coarse.log_prob[order]))
    n_top = int(min(np.searchsorted(cum, refine_mass) + 1, max_refine_cells))
    top = order[:n_top]
    kids = [cell_children(grid.cells[i], fine_res) for i in top]
    parent_idx = np.concatenate([np.full(len(k), i) for i, k in zip(top, kids, strict=True)])
    fine_cells = np.concatenate(kids)
    sort = np.argsort(fine_cells)
    fine_cells, parent_idx = fine_cells[sort], parent_idx[sort]
    fgrid = grid_from_cells(fine_cells, fine_res)
    # Within a coarse cell the prior is spread by area; its total stays the coarse prior.
    area_share = fgrid.area_km2 / np.bincount(parent_idx, weights=fgrid.area_km2,
                                              minlength=len(grid))[parent_idx]
    fprior = lprior[parent_idx] + np.log(area_share)
    fmaps = {g.key: group_map(g, fgrid, atom_coarse, parent_idx, log_means, area_share)
             for g in groups}
    fine = _posterior(fgrid, fprior, groups, fmaps)
    return FusionResult(coarse, fine, parent_idx, float(cum[n_top - 1]))
