"""Evaluation: the field's standard metrics (metrics), table reading and joining (tables),
report writing (report), and `evaluate_pairs`, which runs every metric a table supports.

Optional prediction columns (matched case-insensitively) switch on more metrics:
`log_density_sr` (log density per steradian at the truth) gives NLL on S²;
`region_area_km2` with `region_hit` (did the predicted region contain the truth) gives
recall-versus-area; adding `region_level` (the region's nominal credible mass) gives coverage.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from avgeo.errors import TableError
from avgeo.eval.metrics import (
    THRESHOLDS_KM,
    Coverage,
    DistanceMetrics,
    EvalResult,
    HierarchicalAccuracy,
    RecallVsArea,
    cell_log_density_sr,
    coverage,
    distance_metrics,
    geoscore,
    grid_log_density_sr,
    hierarchical_accuracy,
    metrics_from_errors,
    nll_s2,
    recall_vs_area,
)
from avgeo.eval.tables import Pairs, RawTable, find_column, load_pairs, read_table
from avgeo.geo.sphere import EARTH_RADIUS_KM, haversine_km

__all__ = [
    "THRESHOLDS_KM", "Coverage", "DistanceMetrics", "EvalResult", "HierarchicalAccuracy",
    "Pairs", "RawTable", "RecallVsArea", "cell_log_density_sr", "coverage", "distance_metrics",
    "evaluate_pairs", "geoscore", "grid_log_density_sr", "hierarchical_accuracy", "load_pairs",
    "metrics_from_errors", "nll_s2", "read_table", "recall_vs_area",
]

_TRUE_TEXT = {"true", "1", "yes", "y", "t", "1.0"}
_FALSE_TEXT = {"false", "0", "no", "n", "f", "0.0"}


def _bool_column(table: RawTable, column: str) -> np.ndarray:
    text = table.frame[column].astype(str).str.strip().str.casefold()
    is_true = text.isin(_TRUE_TEXT).to_numpy()
    bad = ~(is_true | text.isin(_FALSE_TEXT).to_numpy())
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TableError(f"{table.where(i, column)}: value '{table.frame[column].iloc[i]}' is "
                         f"not a boolean (true/false/1/0)")
    return is_true


def _number_column(table: RawTable, column: str, *, low: float, high: float,
                   allow_neg_inf: bool = False) -> np.ndarray:
    raw = table.frame[column]
    v = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = (v >= low) & (v <= high)
    if allow_neg_inf:
        ok |= np.isneginf(v)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise TableError(f"{table.where(i, column)}: value '{raw.iloc[i]}' is not a number in "
                         f"[{low:g}, {high:g}]")
    return v


def _optional_metrics(pairs: Pairs, result: EvalResult) -> None:
    table = pairs.pred_table
    if table is None:
        return
    col_nll = find_column(table, None, ("log_density_sr",), "log density", required=False)
    if col_nll is not None:
        lp = _number_column(table, col_nll, low=-np.inf, high=np.inf, allow_neg_inf=True)
        result.nll_nats = nll_s2(lp)
    col_area = find_column(table, None, ("region_area_km2",), "region area", required=False)
    col_hit = find_column(table, None, ("region_hit",), "region hit", required=False)
    if col_area is None or col_hit is None:
        return
    hit = _bool_column(table, col_hit)
    area = _number_column(table, col_area, low=0.0, high=np.inf)
    result.rva = recall_vs_area(area, hit)
    col_level = find_column(table, None, ("region_level",), "region level", required=False)
    if col_level is not None:
        level = _number_column(table, col_level, low=0.0, high=1.0)
        nominal = np.unique(level)
        # One column per nominal level; each row only answers for its own level.
        hits_by_level = [hit[level == lv] for lv in nominal]
        covs = [coverage(h, lv) for h, lv in zip(hits_by_level, nominal, strict=True)]
        emp = np.array([c.empirical[0] for c in covs])
        err = emp - nominal
        result.coverage = Coverage(
            n=int(hit.size), nominal=nominal, empirical=emp, error=err,
            stderr=np.array([c.stderr[0] for c in covs]),
            mean_abs_error=float(np.mean(np.abs(err))), max_abs_error=float(np.max(np.abs(err))))


def _hierarchical(pairs: Pairs, result: EvalResult) -> None:
    try:
        from avgeo.geo.regions import chain_of_region
    except ImportError:
        result.notes.append("hierarchical accuracy skipped: avgeo.geo.regions is not available")
        return
    pred_labels = chain_of_region(pairs.pred_lat, pairs.pred_lon)
    true_labels = chain_of_region(pairs.true_lat, pairs.true_lon)
    result.hierarchical = hierarchical_accuracy(pred_labels, true_labels)


def evaluate_pairs(pairs: Pairs, *, radius_km: float = EARTH_RADIUS_KM,
                   thresholds_km: tuple[float, ...] = THRESHOLDS_KM,
                   regions: bool = True) -> tuple[EvalResult, np.ndarray]:
    """Every metric the pairs support; returns the result and the per-row errors in km."""
    error_km = haversine_km(pairs.pred_lat, pairs.pred_lon, pairs.true_lat, pairs.true_lon,
                            radius_km=radius_km)
    inputs = {"pred": str(pairs.pred_path)}
    if pairs.truth_path is not None:
        inputs["truth"] = str(pairs.truth_path)
    inputs.update({f"column {k}": v for k, v in pairs.columns.items()})
    result = EvalResult(metrics_from_errors(error_km, thresholds_km, radius_km),
                        notes=list(pairs.notes), inputs=inputs)
    if pairs.n_truth_unmatched:
        result.inputs["truth rows without prediction"] = pairs.n_truth_unmatched
    _optional_metrics(pairs, result)
    if regions:
        _hierarchical(pairs, result)
    return result, error_km
