"""Standard geolocation metrics, vectorised over numpy arrays: distance accuracy, GeoScore,
hierarchical accuracy, recall-versus-area, credible-region coverage and NLL on the sphere S².
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from avgeo.geo.sphere import EARTH_RADIUS_KM, haversine_km

THRESHOLDS_KM: tuple[float, ...] = (1.0, 25.0, 200.0, 750.0, 2500.0)
#: The field's names for the thresholds (street, city, region, country, continent).
THRESHOLD_NAMES: dict[float, str] = {1.0: "street", 25.0: "city", 200.0: "region",
                                     750.0: "country", 2500.0: "continent"}
GEOSCORE_MAX = 5000.0
GEOSCORE_SCALE_KM = 1492.7  # GeoGuessr's decay constant, as used by OSV-5M
HIERARCHY_LEVELS: tuple[str, ...] = ("continent", "country", "admin1", "city")
# Chain-of-region tables name the first two levels by their code columns.
# Codes first (stable across languages); the first name present in both tables is used.
_LEVEL_ALIASES: dict[str, tuple[str, ...]] = {
    "continent": ("continent_code", "continent"),
    "country": ("country_code", "country"),
    "admin1": ("admin1", "admin1_code", "region"),
    "city": ("city",),
}
#: Default area budgets (km²) at which a recall-versus-area curve is summarised.
RVA_BUDGETS_KM2: tuple[float, ...] = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7)


def threshold_key(t_km: float) -> str:
    """JSON key for a threshold: "1", "25", "2500", or "0.5" for fractional ones."""
    return f"{t_km:g}"


def geoscore(d_km: Any) -> np.ndarray:
    """GeoGuessr-style score 5000·exp(−d/1492.7 km); 5000 at the truth, ~0 far away."""
    d = np.asarray(d_km, dtype=np.float64)
    return GEOSCORE_MAX * np.exp(-d / GEOSCORE_SCALE_KM)


@dataclass(frozen=True)
class DistanceMetrics:
    """Great-circle metrics of point predictions; `acc` maps threshold km → fraction d ≤ t."""

    n: int
    acc: dict[float, float]
    count: dict[float, int]
    median_km: float
    mean_km: float
    geoscore_mean: float
    geoscore_median: float
    radius_km: float = EARTH_RADIUS_KM

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "acc": {threshold_key(t): v for t, v in self.acc.items()},
            "count": {threshold_key(t): v for t, v in self.count.items()},
            "median_km": self.median_km,
            "mean_km": self.mean_km,
            "geoscore_mean": self.geoscore_mean,
            "geoscore_median": self.geoscore_median,
            "radius_km": self.radius_km,
        }


def _check_same_shape(*arrays: np.ndarray) -> None:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"arrays must have one shape, got {sorted(shapes)}")


def metrics_from_errors(error_km: Any, thresholds_km: Sequence[float] = THRESHOLDS_KM,
                        radius_km: float = EARTH_RADIUS_KM) -> DistanceMetrics:
    """Distance metrics from precomputed great-circle errors in km (NaN-free, 1-D)."""
    d = np.asarray(error_km, dtype=np.float64).ravel()
    if np.isnan(d).any():
        raise ValueError("errors contain NaN; validate inputs first")
    n = int(d.size)
    if n == 0:
        nan = float("nan")
        return DistanceMetrics(0, {float(t): nan for t in thresholds_km},
                               {float(t): 0 for t in thresholds_km}, nan, nan, nan, nan,
                               radius_km)
    # One sort serves every threshold and the median; faster than k full comparisons at 1M.
    d_sorted = np.sort(d)
    counts = np.searchsorted(d_sorted, np.asarray(thresholds_km, dtype=np.float64),
                             side="right")
    score = geoscore(d)
    return DistanceMetrics(
        n=n,
        acc={float(t): float(c) / n for t, c in zip(thresholds_km, counts, strict=True)},
        count={float(t): int(c) for t, c in zip(thresholds_km, counts, strict=True)},
        median_km=float(np.median(d_sorted)),
        mean_km=float(d.mean()),
        geoscore_mean=float(score.mean()),
        # GeoScore is monotone decreasing in d, so its median is the score of the median error.
        geoscore_median=float(geoscore(np.median(d_sorted))),
        radius_km=radius_km,
    )


def distance_metrics(pred_lat: Any, pred_lon: Any, true_lat: Any, true_lon: Any,
                     thresholds_km: Sequence[float] = THRESHOLDS_KM,
                     radius_km: float = EARTH_RADIUS_KM) -> DistanceMetrics:
    """Accuracy at each threshold (d ≤ t), median/mean error, mean GeoScore over all pairs."""
    arrays = [np.asarray(a, dtype=np.float64).ravel()
              for a in (pred_lat, pred_lon, true_lat, true_lon)]
    _check_same_shape(*arrays)
    return metrics_from_errors(haversine_km(*arrays, radius_km=radius_km), thresholds_km,
                               radius_km)


# ---------------------------------------------------------------- hierarchical accuracy


def _normalise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels as stripped case-folded strings, missing mask: None, NaN or blank)."""
    s = pd.Series(values, dtype=object)
    text = s.astype(str).str.strip().str.casefold()
    missing = s.isna().to_numpy() | (text == "").to_numpy()
    return text.to_numpy(dtype=object), missing


def _get(labels: Any, name: str) -> np.ndarray | None:
    try:
        col = labels[name]
    except (KeyError, IndexError, ValueError):
        return None
    return np.asarray(col, dtype=object).ravel()


def _level_columns(pred: Any, true: Any, level: str) -> tuple[np.ndarray, np.ndarray] | None:
    for name in _LEVEL_ALIASES.get(level, (level,)):
        p, t = _get(pred, name), _get(true, name)
        if p is not None and t is not None:
            return p, t
    return None


@dataclass(frozen=True)
class HierarchicalAccuracy:
    """Fraction of examples whose predicted region equals the true one, per level."""

    acc: dict[str, float]
    n: dict[str, int]
    nested: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"acc": dict(self.acc), "n": dict(self.n), "nested": self.nested}


def hierarchical_accuracy(pred_labels: Any, true_labels: Any,
                          levels: Sequence[str] = HIERARCHY_LEVELS,
                          nested: bool = True) -> HierarchicalAccuracy:
    """Per-level accuracy from label tables (DataFrames or mappings of arrays).

    Columns may be named by level (continent, country, admin1, city) or as chain_of_region
    names them (continent_code, country_code). With `nested` a level counts as a hit only if
    every coarser level also matches, so that same-named cities or admin-1 regions in
    different countries are not credited. Examples whose true label is missing at a level
    are left out of that level's denominator; a missing prediction is a miss.
    """
    acc: dict[str, float] = {}
    n_at: dict[str, int] = {}
    hit_so_far: np.ndarray | None = None
    for level in levels:
        cols = _level_columns(pred_labels, true_labels, level)
        if cols is None:
            continue
        p, t = cols
        if p.shape != t.shape:
            raise ValueError(f"level {level}: {p.shape[0]} predictions vs {t.shape[0]} truths")
        # Compare as normalised strings so 'us' == 'US' and 1 == '1' (codes from mixed sources).
        p_norm, p_missing = _normalise(p)
        t_norm, t_missing = _normalise(t)
        hit = (p_norm == t_norm) & ~p_missing & ~t_missing
        if nested:
            hit_so_far = hit if hit_so_far is None else (hit_so_far & hit)
            hit = hit_so_far
        valid = ~t_missing
        n = int(valid.sum())
        n_at[level] = n
        acc[level] = float(hit[valid].mean()) if n else float("nan")
    return HierarchicalAccuracy(acc, n_at, nested)


# ---------------------------------------------------------------- recall versus area


@dataclass(frozen=True)
class RecallVsArea:
    """Recall as a function of the area budget allowed per prediction.

    `area_km2`/`recall` is the step curve (recall after each distinct area where it rises);
    `recall_at` summarises it at `RVA_BUDGETS_KM2`; `auc_log_area` is the mean recall over
    log10 area from 1 km² to the Earth's area (1.0 = every truth found within 1 km²).
    """

    n: int
    area_km2: np.ndarray
    recall: np.ndarray
    recall_at: dict[float, float]
    max_recall: float
    median_area_km2: float
    auc_log_area: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "recall_at": {f"{a:g}": v for a, v in self.recall_at.items()},
            "max_recall": self.max_recall,
            "median_area_km2": self.median_area_km2,
            "auc_log_area": self.auc_log_area,
        }


def min_hit_area_km2(region_areas_km2: Any, region_hit: Any) -> np.ndarray:
    """Per example, the smallest predicted region area that contains the truth (inf if none).

    Inputs are (n,) for one region per example, or (n, k) for k regions per example (for
    instance nested credible regions or top-k cell sets).
    """
    area = np.asarray(region_areas_km2, dtype=np.float64)
    hit = np.asarray(region_hit, dtype=bool)
    if area.shape != hit.shape:
        raise ValueError(f"areas {area.shape} and hits {hit.shape} differ in shape")
    if area.ndim == 1:
        area, hit = area[:, None], hit[:, None]
    if area.ndim != 2:
        raise ValueError("areas must be (n,) or (n, k)")
    if np.isnan(area).any() or (area < 0).any():
        raise ValueError("areas must be non-negative numbers")
    return np.where(hit, area, np.inf).min(axis=1)


def recall_vs_area(region_areas_km2: Any, region_hit: Any,
                   budgets_km2: Sequence[float] = RVA_BUDGETS_KM2,
                   earth_area_km2: float = 4.0 * np.pi * EARTH_RADIUS_KM**2) -> RecallVsArea:
    """RvA curve: recall(a) = fraction of examples with a truth-containing region of area ≤ a."""
    need = min_hit_area_km2(region_areas_km2, region_hit)
    n = int(need.size)
    if n == 0:
        nan = float("nan")
        return RecallVsArea(0, np.empty(0), np.empty(0), {float(b): nan for b in budgets_km2},
                            nan, nan, nan)
    finite = np.sort(need[np.isfinite(need)])
    area_steps, counts = np.unique(finite, return_counts=True)
    recall_steps = np.cumsum(counts) / n
    recall_at = {float(b): float(np.searchsorted(finite, b, side="right")) / n
                 for b in budgets_km2}
    max_recall = float(finite.size) / n
    k_half = int(np.ceil(0.5 * n))  # examples needed for recall ≥ 0.5
    median = float(finite[k_half - 1]) if finite.size >= k_half else float("inf")
    # Mean recall over u = log10(area) on [0, log10(Earth)]: integral of a step function.
    # Each example found at area a contributes (u_max − clip(log10 a)) / u_max / n.
    u_max = np.log10(earth_area_km2)
    u = np.clip(np.log10(np.maximum(finite, 1e-300)), 0.0, u_max)
    auc = float(np.sum(u_max - u) / u_max / n)
    return RecallVsArea(n, area_steps, recall_steps, recall_at, max_recall, median, auc)


# ---------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Coverage:
    """Empirical coverage of credible regions at each nominal level, and the gap to it."""

    n: int
    nominal: np.ndarray
    empirical: np.ndarray
    error: np.ndarray  # empirical − nominal (negative = over-confident regions)
    stderr: np.ndarray  # binomial standard error of the empirical coverage
    mean_abs_error: float
    max_abs_error: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "levels": [
                {"nominal": float(a), "empirical": float(b), "error": float(c),
                 "stderr": float(s)}
                for a, b, c, s in zip(self.nominal, self.empirical, self.error, self.stderr,
                                      strict=True)
            ],
            "mean_abs_error": self.mean_abs_error,
            "max_abs_error": self.max_abs_error,
        }


def coverage(hit_bool: Any, nominal: Any) -> Coverage:
    """Coverage of credible regions: `hit_bool` is (n,) for one nominal level or (n, L)."""
    hit = np.asarray(hit_bool, dtype=bool)
    levels = np.atleast_1d(np.asarray(nominal, dtype=np.float64))
    if hit.ndim == 1:
        hit = hit[:, None]
    if hit.ndim != 2 or hit.shape[1] != levels.size:
        raise ValueError(f"hits {hit.shape} do not match {levels.size} nominal level(s)")
    if ((levels < 0) | (levels > 1)).any():
        raise ValueError("nominal levels are probabilities in [0, 1]")
    n = hit.shape[0]
    emp = hit.mean(axis=0) if n else np.full(levels.size, np.nan)
    err = emp - levels
    se = np.sqrt(emp * (1 - emp) / n) if n else np.full(levels.size, np.nan)
    return Coverage(n, levels, emp, err, se, float(np.mean(np.abs(err))),
                    float(np.max(np.abs(err))))


# ---------------------------------------------------------------- density NLL on S²


def nll_s2(log_density_sr: Any) -> float:
    """Mean negative log-likelihood in nats, from log densities per steradian at the truths.

    The uniform density on S² is 1/(4π) sr⁻¹, so its NLL is log(4π) ≈ 2.531 nats; lower is
    better, and a sharp correct model goes negative.
    """
    lp = np.asarray(log_density_sr, dtype=np.float64).ravel()
    if lp.size == 0:
        return float("nan")
    if np.isnan(lp).any():
        raise ValueError("log densities contain NaN")
    return float(-lp.mean())


def cell_log_density_sr(prob: Any, area_km2: Any, truth_index: Any,
                        radius_km: float = EARTH_RADIUS_KM,
                        floor: float = 0.0) -> np.ndarray:
    """Log density per steradian at the truth for a distribution over grid cells.

    `prob` is (n_cells,) shared by all examples or (n, n_cells), one row per example; mass
    is taken as uniform inside a cell, so density = p / (area_km2 / R²). `truth_index` is
    the index of the cell containing each truth. `floor` (a probability) keeps a zero-mass
    truth cell from making the NLL infinite; 0 reports it honestly as −inf.
    """
    p = np.asarray(prob, dtype=np.float64)
    area_sr = np.asarray(area_km2, dtype=np.float64) / radius_km**2
    idx = np.asarray(truth_index, dtype=np.int64)
    if area_sr.ndim != 1 or area_sr.shape[0] != p.shape[-1]:
        raise ValueError("area_km2 must be (n_cells,) matching prob's last axis")
    if (area_sr <= 0).any():
        raise ValueError("cell areas must be positive")
    if p.ndim == 1:
        p_true = p[idx]
    elif p.ndim == 2:
        idx = np.broadcast_to(idx, (p.shape[0],))
        p_true = p[np.arange(p.shape[0]), idx]
    else:
        raise ValueError("prob must be (n_cells,) or (n, n_cells)")
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(p_true, floor)) - np.log(area_sr[idx])


def grid_log_density_sr(grid: Any, prob: Any, true_lat: Any, true_lon: Any,
                        floor: float = 0.0) -> np.ndarray:
    """`cell_log_density_sr` for an `avgeo.geo.grid.Grid`, locating the truths' cells."""
    idx = grid.locate(np.asarray(true_lat, dtype=np.float64),
                      np.asarray(true_lon, dtype=np.float64))
    return cell_log_density_sr(prob, grid.area_km2, idx, floor=floor)


@dataclass
class EvalResult:
    """Everything `avgeo evaluate` computed, ready to print or serialise."""

    distance: DistanceMetrics
    hierarchical: HierarchicalAccuracy | None = None
    rva: RecallVsArea | None = None
    coverage: Coverage | None = None
    nll_nats: float | None = None
    notes: list[str] = field(default_factory=list)
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.distance.to_dict()
        if self.hierarchical is not None:
            out["hierarchical"] = self.hierarchical.to_dict()
        if self.rva is not None:
            out["recall_vs_area"] = self.rva.to_dict()
        if self.coverage is not None:
            out["coverage"] = self.coverage.to_dict()
        if self.nll_nats is not None:
            out["nll_nats_per_sr"] = self.nll_nats
        if self.notes:
            out["notes"] = list(self.notes)
        if self.inputs:
            out["inputs"] = dict(self.inputs)
        return out
