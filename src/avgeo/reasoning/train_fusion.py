"""Learn per-engine reliability weights (and the prior's weight) for fusion by minimising the
negative log-likelihood of the true cell on located examples, with a held-out split."""

# The objective is smooth with a handful of parameters, so L-BFGS-B solves it exactly; an SGD
# loop (avgeo.training.fit) would only approximate it. From the shared core this takes the
# typed config (`FusionConfig`, the [fusion] section of a config file) and the metrics log.

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from avgeo.atoms import Atom
from avgeo.geo.grid import Grid, global_grid
from avgeo.reasoning.fusion import FusionWeights, group_atoms, group_map, prior_log

if TYPE_CHECKING:
    from avgeo.training.metrics import MetricsLog


#: Version written into fitted weights files (2: fitted on simulated examples, see
#: `sim_examples`; 1 was fitted on media files).
WEIGHTS_VERSION = 2


@dataclass
class FusionConfig:
    """Settings of `avgeo train fusion` (the `[fusion]` section of a config file)."""

    #: Engines whose atoms are fitted ("all" or a comma list).
    engines: str = "all"
    #: Also fit the metadata engines (GPS tags, place names); off by default.
    use_metadata: bool = False
    #: Held-out fraction of examples (by a hash of each file name).
    heldout: float = 0.25
    #: Prior map: photo, population or uniform.
    prior: str = "photo"
    pool_alpha: float = 0.25
    #: L2 pull of the log weights towards 0 (weight 1).
    l2: float = 0.01
    #: H3 resolution of the grid the NLL is computed on.
    res: int = 3
    #: Fit on this many simulated examples instead of a manifest (0: use the manifest).
    sim: int = 0
    #: Seed of the simulator (`avgeo.reasoning.reasoner.simulate.simulate`).
    sim_seed: int = 0


@dataclass
class Example:
    name: str
    maps: np.ndarray  # (groups, cells): pooled group maps at engine weight 1
    engines: list[str]
    true_idx: np.ndarray  # cells of the truth: the one holding the point, or a country's


def make_example(name: str, atoms: list[Atom], grid: Grid, pool_alpha: float,
                 lat: float | None = None, lon: float | None = None,
                 country: str | None = None) -> Example | None:
    """A training example; the truth is a point (its cell) or, failing that, a country
    (all its cells: the NLL is then of the country's posterior mass)."""
    base = FusionWeights(pool_alpha=pool_alpha)
    groups = group_atoms(atoms, base)
    if lat is not None and lon is not None and np.isfinite(lat) and np.isfinite(lon):
        true_idx = grid.locate(lat, lon)
        if true_idx[0] < 0:
            return None
    elif country:
        from avgeo.geo.regions import cell_countries

        true_idx = np.flatnonzero(np.asarray(cell_countries(grid)) == country)
        if not len(true_idx):
            return None
    else:
        return None
    if groups:
        maps = np.stack([group_map(g, grid) for g in groups]).astype(np.float64)
    else:
        maps = np.zeros((0, len(grid)))
    return Example(name, maps, [g.engine for g in groups], true_idx)


def sim_engine_names(engines: str, use_metadata: bool) -> set[str]:
    """The atom engines kept from simulated examples, as `extract_atoms` would run them."""
    from avgeo.pipeline import parse_engines

    names = set(parse_engines(engines))
    if not use_metadata:
        names.discard("meta")
    return names


def sim_examples(sims: Sequence, grid: Grid, pool_alpha: float, engines: str = "all",
                 use_metadata: bool = False, prefix: str = "sim") -> list[Example]:
    """Training examples from simulated located examples (`simulate.Example`: atoms the
    engines would report at a place drawn from the photo prior, and that place as truth).
    Atoms of engines not selected (metadata unless `use_metadata`) are dropped, as the
    pipeline would not have produced them."""
    keep = sim_engine_names(engines, use_metadata)
    out = []
    for i, s in enumerate(sims):
        atoms = [a for a in s.atoms if a.engine in keep]
        ex = make_example(f"{prefix}-{i}", atoms, grid, pool_alpha, lat=s.truth.lat,
                          lon=s.truth.lon)
        if ex is not None:
            out.append(ex)
    return out


def split_heldout(names: Sequence[str], frac: float) -> np.ndarray:
    """Deterministic held-out mask from a hash of each example's name."""
    h = np.array([int(hashlib.sha1(n.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
                  for n in names])
    return h < frac


def _nll_and_grad(theta: np.ndarray, examples: list[Example], engines: list[str],
                  lprior: np.ndarray, l2: float):
    w = np.exp(theta)  # [prior, engines...]
    idx = {e: i + 1 for i, e in enumerate(engines)}
    nll, grad = 0.0, np.zeros_like(theta)
    for ex in examples:
        cols = np.array([idx[e] for e in ex.engines], dtype=int)
        lp = w[0] * lprior + (w[cols] @ ex.maps if len(cols) else 0.0)
        p = softmax(lp)
        t = ex.true_idx
        nll += logsumexp(lp) - logsumexp(lp[t])
        # d/dw_k of NLL = E_p[feature_k] − E_{p | truth}[feature_k]
        pt = softmax(lp[t])
        grad[0] += p @ lprior - pt @ lprior[t]
        if len(cols):
            per_group = ex.maps @ p - ex.maps[:, t] @ pt
            np.add.at(grad, cols, per_group)
    n = max(len(examples), 1)
    nll, grad = nll / n, grad / n
    grad = grad * w + 2 * l2 * theta  # chain rule through exp, L2 pull towards weight 1
    return nll + l2 * float(theta @ theta), grad


def mean_nll(examples: list[Example], weights: FusionWeights, lprior: np.ndarray) -> float:
    if not examples:
        return float("nan")
    engines = sorted({e for ex in examples for e in ex.engines})
    theta = np.log([weights.prior_weight] + [weights.weight(e) for e in engines])
    return float(_nll_and_grad(theta, examples, engines, lprior, 0.0)[0])


@dataclass
class FitReport:
    n_train: int
    n_heldout: int
    train_nll_before: float
    train_nll_after: float
    heldout_nll_before: float
    heldout_nll_after: float
    weights: FusionWeights
    seconds: float


def fit_weights(examples: list[Example], heldout: np.ndarray, prior: str = "photo",
                pool_alpha: float = 0.25, l2: float = 0.01, res: int = 3,
                trained_on: str = "", metrics: MetricsLog | None = None) -> FitReport:
    """L-BFGS-B on the mean NLL (+ L2) of the training examples; `metrics` gets one row per
    iteration (loss = that objective) and a last row with the held-out NLL."""
    t0 = time.perf_counter()
    grid = global_grid(res)
    lprior = prior_log(grid, prior)
    train = [e for e, h in zip(examples, heldout, strict=True) if not h]
    test = [e for e, h in zip(examples, heldout, strict=True) if h]
    engines = sorted({e for ex in examples for e in ex.engines})
    start = FusionWeights(prior=prior, pool_alpha=pool_alpha)
    theta0 = np.zeros(len(engines) + 1)
    iters = 0

    def on_iteration(intermediate_result) -> None:  # scipy passes the name by keyword
        nonlocal iters
        iters += 1
        if metrics is not None:
            metrics.log(iters, loss=float(intermediate_result.fun))

    if train:
        res_opt = minimize(_nll_and_grad, theta0, args=(train, engines, lprior, l2),
                           jac=True, method="L-BFGS-B", bounds=[(-6.0, 3.0)] * len(theta0),
                           callback=on_iteration)
        theta = res_opt.x
    else:
        theta = theta0
    w = np.exp(theta)
    fitted = FusionWeights(engine_weight={e: round(float(w[i + 1]), 4)
                                          for i, e in enumerate(engines)},
                           default_weight=1.0, pool_alpha=pool_alpha, prior=prior,
                           prior_weight=round(float(w[0]), 4), version=WEIGHTS_VERSION,
                           trained_on=trained_on or f"{len(train)} located examples")
    rep = FitReport(len(train), len(test), mean_nll(train, start, lprior),
                    mean_nll(train, fitted, lprior), mean_nll(test, start, lprior),
                    mean_nll(test, fitted, lprior), fitted, time.perf_counter() - t0)
    if metrics is not None:
        metrics.log(iters, train_nll=rep.train_nll_after, heldout_nll=rep.heldout_nll_after,
                    iterations=iters)
    return rep


@dataclass
class Calibration:
    """How the pipeline's fused posterior does on located examples."""

    n: int
    #: Share of truths inside the credible region of each level.
    coverage: dict[float, float]
    #: Median area of each level's region, km².
    median_area_km2: dict[float, float]
    #: Mean NLL of the truth's cell on the coarse grid (the fit's objective), nats.
    nll: float
    median_error_km: float


def calibration(sims: Sequence, weights: FusionWeights, engines: str = "all",
                use_metadata: bool = False, levels: Sequence[float] = (0.5, 0.9)
                ) -> Calibration:
    """Fuse each simulated example's atoms as `pipeline.locate` does (res-3 posterior refined
    to res 5 where the mass is) and score its highest-density credible regions (those the
    pipeline reports), point estimate and coarse-cell NLL against the truth."""
    from avgeo.geo.sphere import haversine_km
    from avgeo.reasoning import summary
    from avgeo.reasoning.fusion import fuse

    keep = sim_engine_names(engines, use_metadata)
    hits = {q: [] for q in levels}
    areas: dict[float, list[float]] = {q: [] for q in levels}
    nll, err = [], []
    for s in sims:
        atoms = [a for a in s.atoms if a.engine in keep]
        result = fuse(atoms, weights)
        support = result.support()
        lat, lon = float(s.truth.lat), float(s.truth.lon)
        regions = summary.credible_sets(support.cells, support.area_km2, support.log_prob,
                                        levels)
        for q, (cr, cells) in regions.items():
            hits[q].append(summary.point_in_cells(cells, lat, lon))
            areas[q].append(cr.area_km2)
        ti = result.coarse.grid.locate(lat, lon)
        nll.append(-float(logsumexp(result.coarse.log_prob[ti])))
        pe = summary.point_estimate(result.fine or result.coarse, atoms)
        err.append(float(haversine_km(pe.lat, pe.lon, lat, lon)))
    n = len(nll)
    return Calibration(n, {q: float(np.mean(h)) for q, h in hits.items()},
                       {q: float(np.median(a)) for q, a in areas.items()},
                       float(np.mean(nll)) if n else float("nan"),
                       float(np.median(err)) if n else float("nan"))
